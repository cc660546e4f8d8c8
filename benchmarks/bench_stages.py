#!/usr/bin/env python3
"""Builds in one session, stage by stage: wall time and CPU per kind of process.

Starts a local session, then builds --corpus --builds times into a fresh lake each time
and prints, for every stage line the build reports, its wall time and the CPU seconds the
driver's Python, the JVM and the Python workers took during it. The first build pays the
JVM's and the workers' warm-up (class loading, the JIT, imports); the later ones show what
a stage costs in a warm process. The builds use --bits / --window / --mode / --transform /
--project (default: the paper's settings, as `make bench` runs them).

examples:
  python benchmarks/corpora.py mix --out data/mix
  python benchmarks/bench_stages.py --corpus data/mix
  python benchmarks/bench_stages.py --corpus data/mix --builds 2 --bits 4096 --project 300
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_small import cpu_by_kind  # noqa: E402

KINDS = ("driver python", "jvm", "python workers")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="shard directory")
    parser.add_argument("--builds", type=int, default=3, help="builds (default 3)")
    parser.add_argument("--bits", type=int, default=32, help="default 32")
    parser.add_argument("--window", type=int, default=5, help="default 5")
    parser.add_argument("--mode", default="sum", help="default sum")
    parser.add_argument("--transform", default="neglog", help="default neglog")
    parser.add_argument("--project", type=int, default=None,
                        help="projection dimensions (default: none)")
    args = parser.parse_args(argv)

    import psutil

    from bitcipher import BuildOptions, build, spark_session
    from bitcipher.lake.tables import Lake

    me = psutil.Process()
    options = BuildOptions(bits=args.bits, window=args.window, mode=args.mode,
                           transform=args.transform, project=args.project)
    started = time.perf_counter()
    spark = spark_session()
    print(f"spark session: {time.perf_counter() - started:.1f} s", flush=True)
    print(f"{'build':>5}  {'stage':<16} {'wall s':>7} " + " ".join(f"{k:>15}" for k in KINDS))
    work = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    try:
        for n in range(1, args.builds + 1):
            lake = work / "lake"
            shutil.rmtree(lake, ignore_errors=True)
            mark = [time.perf_counter(), cpu_by_kind(me)]

            def report(line: str, n=n, mark=mark) -> None:
                now, cpu = time.perf_counter(), cpu_by_kind(me)
                stage = line.split()[0] if line.strip() else "?"
                if not line.startswith(("warning", "epoch", "frozen", "built")):
                    print(f"{n:>5}  {stage:<16} {now - mark[0]:7.2f} "
                          + " ".join(f"{cpu[k] - mark[1][k]:15.1f}" for k in KINDS),
                          flush=True)
                mark[:] = [now, cpu]

            t = time.perf_counter()
            build(spark, args.corpus, Lake(str(lake)), options, report=report)
            print(f"{n:>5}  {'build':<16} {time.perf_counter() - t:7.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
