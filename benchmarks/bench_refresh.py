#!/usr/bin/env python3
"""Cost of an incremental refresh against a full build on the same shards.

Takes a shard directory of N shards (e.g. ``python benchmarks/corpora.py mix --out DIR
--shards 101``), holds the last ``--add`` shards back, and in one Spark session (so the
session start counts for neither):

  1. (with --warmup) builds a tiny corpus once, so the JVM's first-use costs hit no timing;
  2. ``refresh`` from an empty lake on the first N - add shards (count store + tables);
  3. adds the held-back shards and times ``refresh`` (the number of interest);
  4. times a full ``build`` of the same N shards into a fresh lake;
  5. (with --check) compares the two vectors tables bit for bit.

It prints each step's stage lines and ``refresh / build`` for step 3 over step 4
(the project's target: <= 0.1).

examples:
  python benchmarks/corpora.py mix --out data/mix101 --shards 101
  python benchmarks/bench_refresh.py --corpus data/mix101 --warmup --check
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("examples:")[1].join(["examples:", ""]))
    p.add_argument("--corpus", required=True, help="directory of shards (sorted by name)")
    p.add_argument("--add", type=int, default=1, help="shards held back and added (default 1)")
    p.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--master", default=None, help="Spark master (default local[*])")
    p.add_argument("--warmup", action="store_true", help="warm the JVM up with a tiny build")
    p.add_argument("--check", action="store_true", help="compare the vectors tables")
    p.add_argument("--settings", choices=("paper", "default"), default="paper",
                   help="build options: the paper's (bits 32, window 5, sum, neglog) or this "
                        "release's defaults (bits 256, window 2, sum, ppmi) (default paper)")
    args = p.parse_args(argv)

    from bitcipher import build, spark_session
    from bitcipher.lake.tables import Lake, read_table
    from bitcipher.incremental.run import refresh

    shards = sorted(x for x in Path(args.corpus).iterdir()
                    if x.is_file() and not x.name.startswith((".", "_")))
    if len(shards) <= args.add:
        p.error(f"{args.corpus} has {len(shards)} shards; need more than --add {args.add}")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-refresh-"))
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    for shard in shards[:-args.add]:
        os.link(shard, corpus / shard.name) if _same_fs(shard, work) else \
            shutil.copy2(shard, corpus / shard.name)
    from bitcipher.options import PAPER, BuildOptions

    options = PAPER if args.settings == "paper" else BuildOptions()

    def log(line: str) -> None:
        print(f"    {line}", flush=True)

    started = time.perf_counter()
    spark = spark_session(master=args.master)
    print(f"spark session {time.perf_counter() - started:.1f} s", flush=True)
    if args.warmup:
        tiny = work / "tiny"
        tiny.mkdir()
        (tiny / "t.txt").write_text("the cat sat on the mat\n" * 50)
        started = time.perf_counter()
        refresh(spark, str(tiny), Lake(str(work / "tiny-lake")), options, report=lambda _: None)
        build(spark, str(tiny), Lake(str(work / "tiny-lake2")), options, report=lambda _: None)
        print(f"warm-up {time.perf_counter() - started:.1f} s", flush=True)

    lake = Lake(str(work / "lake"))
    print(f"1. refresh from empty: {len(shards) - args.add} shards", flush=True)
    started = time.perf_counter()
    refresh(spark, str(corpus), lake, options, report=log)
    initial = time.perf_counter() - started
    print(f"   {initial:.1f} s", flush=True)

    for shard in shards[-args.add:]:
        shutil.copy2(shard, corpus / shard.name)
    added_bytes = sum(s.stat().st_size for s in shards[-args.add:])
    total_bytes = sum(s.stat().st_size for s in shards)
    print(f"2. refresh after adding {args.add} shard(s), {added_bytes / total_bytes:.1%} of the "
          f"bytes", flush=True)
    started = time.perf_counter()
    result = refresh(spark, str(corpus), lake, options, report=log)
    incremental = time.perf_counter() - started
    print(f"   {incremental:.1f} s", flush=True)

    rebuilt = Lake(str(work / "rebuilt"))
    print(f"3. full build of the same {len(shards)} shards", flush=True)
    started = time.perf_counter()
    built = build(spark, str(corpus), rebuilt, options, report=log)
    full = time.perf_counter() - started
    print(f"   {full:.1f} s", flush=True)

    if args.check:
        a = read_table(spark, lake, "vectors")
        b = read_table(spark, rebuilt, "vectors")
        diff = a.exceptAll(b).count() + b.exceptAll(a).count()
        print(f"vectors equal: {diff == 0} ({a.count():,} rows)", flush=True)
        if diff:
            return 1
    print(f"\ncorpus {built.tokens:,} tokens in {built.shards} shards; vocabulary "
          f"{built.vocab_size:,}")
    print(f"refresh from empty {initial:.1f} s; refresh +{args.add} shard(s) {incremental:.1f} s; "
          f"full build {full:.1f} s")
    print(f"refresh / full build = {incremental / full:.2f} (target <= 0.1)")
    assert result.build is not None
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    spark.stop()
    return 0


def _same_fs(a: Path, b: Path) -> bool:
    b.mkdir(parents=True, exist_ok=True)
    return os.stat(a).st_dev == os.stat(b).st_dev


if __name__ == "__main__":
    sys.exit(main())
