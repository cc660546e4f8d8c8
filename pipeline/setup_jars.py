"""Fetch and cache Delta Lake's JARs (and check the JVM) by starting one Spark session.

Run once on a new machine: ``python -m pipeline.setup_jars``. Later sessions reuse the cache.
"""

import sys
import time


def main() -> int:
    from .session import delta_artifact, spark_session

    started = time.perf_counter()
    spark = spark_session(app_name="bitcipher-setup")
    spark.range(1).count()
    print(f"Spark {spark.version} with {delta_artifact()} ready "
          f"({time.perf_counter() - started:.1f} s)")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
