"""The lake: where tables live (local or S3), their schemas, the published Delta table and
its history."""
