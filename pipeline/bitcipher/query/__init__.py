"""Reading the vectors: keyed vectors (neighbours, similarity, export), a JVM-free reader and
the SQL endpoint."""
