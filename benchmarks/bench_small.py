#!/usr/bin/env python3
"""Small runs in one warm session: wall time and CPU per kind of process.

Starts a local session (2 cores, the tests' settings), then, on a corpus of a few dozen
lines, runs --refreshes refreshes (one new shard before each) and --builds one-off builds,
and prints for each its wall time and the CPU seconds it took in the driver's Python, the
JVM and the Python workers (pyspark's daemon and the workers it forks). The first refresh
pays the session's warm-up; compare the later ones. Extra Spark settings (``--conf
key=value``, repeatable) go to the session, e.g. to compare a setting with Spark's default:

examples:
  python benchmarks/bench_small.py
  python benchmarks/bench_small.py --conf spark.python.daemon.module=pyspark.daemon
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import process_kind  # noqa: E402

LINES = [
    "The cat sat on the mat.",
    "The dog sat on the log, and the cat watched the dog.",
    "A cat is a cat; a dog is a dog.",
    "one two three four five six seven eight nine ten",
    "two three five seven eleven thirteen",
    "Über straße café naïve résumé über café",
]


def cpu_by_kind(me) -> dict:
    """CPU seconds so far of this process, the JVM and the Python workers."""
    kinds = {"driver python": 0.0, "jvm": 0.0, "python workers": 0.0}
    for proc in [me] + me.children(recursive=True):
        try:
            times = proc.cpu_times()
            kind = process_kind(proc.name(), " ".join(proc.cmdline()))
        except Exception:  # noqa: BLE001 - a worker may exit between listing and reading
            continue
        if kind in kinds:
            kinds[kind] += times.user + times.system
    return kinds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refreshes", type=int, default=6, help="refreshes (default 6)")
    parser.add_argument("--builds", type=int, default=3, help="one-off builds (default 3)")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting for the session (repeatable)")
    args = parser.parse_args(argv)

    import psutil

    from bitcipher import BuildOptions, build
    from bitcipher.incremental.run import refresh
    from bitcipher.lake.tables import Lake
    from bitcipher.runtime.session import spark_session

    conf = {"spark.sql.shuffle.partitions": "3", "spark.default.parallelism": "2"}
    conf.update(dict(kv.split("=", 1) for kv in args.conf))
    started = time.perf_counter()
    spark = spark_session(master="local[2]", app_name="bench-small", conf=conf)
    print(f"session {time.perf_counter() - started:.2f} s")
    options = BuildOptions(project=None, bits=6, window=2, min_count=2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-small-"))
    corpus = tmp / "corpus"
    corpus.mkdir()
    for i in range(2):
        (corpus / f"s{i}.txt").write_text("\n".join(LINES[i::2]) + "\n", encoding="utf-8")
    me = psutil.Process()
    print(f"{'run':<10} {'wall s':>7} {'driver python':>14} {'jvm':>6} {'python workers':>15}")

    def timed(label, action):
        before = cpu_by_kind(me)
        t = time.perf_counter()
        action()
        wall = time.perf_counter() - t
        after = cpu_by_kind(me)
        cpu = {k: after[k] - before[k] for k in after}
        print(f"{label:<10} {wall:7.2f} {cpu['driver python']:14.2f} {cpu['jvm']:6.2f} "
              f"{cpu['python workers']:15.2f}", flush=True)

    lake = Lake(str(tmp / "lake"))
    for i in range(args.refreshes):
        timed(f"refresh {i}", lambda: refresh(spark, str(corpus), lake, options,
                                              report=lambda _: None))
        (corpus / f"n{i}.txt").write_text(LINES[i % len(LINES)] + "\n", encoding="utf-8")
    for i in range(args.builds):
        timed(f"build {i}", lambda: build(spark, str(corpus), Lake(str(tmp / f"b{i}")),
                                          options, report=lambda _: None,
                                          count_store=False))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
