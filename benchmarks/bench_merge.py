#!/usr/bin/env python3
"""Publishing only the touched vectors: Delta's MERGE with deletion vectors against
rewriting the whole vectors table, on a copy of a built lake.

Copies --lake, turns deletion vectors on for the copy's ``vectors`` table, and, in one
Spark session, --reps times: updates --rows random rows with one ``MERGE`` (what a frozen
refresh would publish instead of the whole table), then writes the whole table again as
Parquet (the rows a frozen refresh rewrites now). Prints the seconds of each and Delta's
own metrics of the MERGE (time to find the touched files, to write the rows and the
deletion vectors).

examples:
  bitcipher build --corpus data/mix --lake /tmp/mix-lake
  python benchmarks/bench_merge.py --lake /tmp/mix-lake --rows 6244
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True, help="a lake a build or refresh made")
    parser.add_argument("--rows", type=int, default=6244,
                        help="rows each MERGE updates (default 6244: the frozen refresh of "
                             "+1 shard of the 6.0M mix)")
    parser.add_argument("--reps", type=int, default=3, help="default 3")
    args = parser.parse_args(argv)

    import numpy as np
    from pyspark.sql import functions as F

    from bitcipher import spark_session
    from bitcipher.lake.tables import Lake

    work = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    try:
        shutil.copytree(Path(args.lake) / "vectors", work / "vectors")
        spark = spark_session()
        path = Lake(str(work)).vectors
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES "
                  f"('delta.enableDeletionVectors' = 'true')")
        for rep in range(args.reps):
            table = spark.read.format("delta").load(path)
            n = table.count()
            ids = np.random.default_rng(rep).choice(n, min(args.rows, n), replace=False)
            source = (table.where(F.col("id").isin(sorted(int(i) for i in ids)))
                      .withColumn("count", F.col("count") + 1).localCheckpoint())
            source.count()
            source.createOrReplaceTempView("bench_merge_source")
            started = time.perf_counter()
            spark.sql(f"MERGE INTO delta.`{path}` t USING bench_merge_source s ON t.id = s.id "
                      f"WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
            merge_s = time.perf_counter() - started
            metrics = json.loads(spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1")
                                 .select(F.to_json("operationMetrics")).first()[0])
            whole = spark.read.format("delta").load(path).localCheckpoint()
            whole.count()
            started = time.perf_counter()
            whole.write.format("parquet").mode("overwrite").save(f"file://{work}/rewrite")
            rewrite_s = time.perf_counter() - started
            print(f"MERGE of {len(ids):,} of {n:,} rows: {merge_s:.2f} s (find the touched "
                  f"files {int(metrics['scanTimeMs']) / 1000:.2f} s, write the rows and "
                  f"deletion vectors {int(metrics['rewriteTimeMs']) / 1000:.2f} s); the "
                  f"whole table as Parquet: {rewrite_s:.2f} s", flush=True)
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
