"""Incremental refresh: the plan (which shards changed), the per-shard count store and the
merged totals it keeps."""
