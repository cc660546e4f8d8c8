"""Runtime: the one SparkSession factory (Delta's JARs, S3, local or cluster), the JAR set-up
and a standalone Spark cluster for tests and benchmarks."""
