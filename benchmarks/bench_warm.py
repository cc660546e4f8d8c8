#!/usr/bin/env python3
"""Builds of one corpus in one long-lived driver, against gensim CBOW in the same run.

`bench_build.py` times `bitcipher build` as a scheduled job runs it: a new process, a new
JVM and Spark session, every code path run for the first time. This script runs the same
build --builds times in one driver process (one Spark session, started once), each into a
fresh lake, and prints the session's start and each build's wall time, then gensim CBOW's
time (bench_build.py's worker) and the ratios. The first build pays the JVM's warm-up
(class loading, the JIT, the Python workers' start); the later ones show what the build
costs in a driver that stays up. Build options are the CLI's, after --.

The whole driver process is measured too (wall, peak RSS of its process tree), as
bench_build.py measures a build.

examples:
  python benchmarks/bench_warm.py --corpus /tmp/bench-mix -- --transform neglog \\
      --project none --bits 32 --window 5 --mode sum
  python benchmarks/bench_warm.py --corpus /tmp/bench-mix --builds 4   # the defaults
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import mib, run_gensim, run_measured  # noqa: E402

RESULT_MARK = "BENCH_WARM_RESULT "


def driver(corpus: str, builds: int, options: list, tmp) -> int:
    """In the measured subprocess: one session, then `builds` builds; prints a result line."""
    started = time.perf_counter()
    from bitcipher import build, spark_session
    from bitcipher.cli import build_options_from_args, parser

    args = parser().parse_args(["build", "--corpus", corpus, "--lake", "unused", *options])
    build_options = build_options_from_args(args)
    spark = spark_session()
    session_s = time.perf_counter() - started
    print(f"session (with imports) {session_s:.2f} s", file=sys.stderr, flush=True)
    times = []
    for i in range(builds):
        folder = tempfile.mkdtemp(prefix="bitcipher-bench-warm-", dir=tmp)
        t = time.perf_counter()
        build(spark, corpus, str(Path(folder) / "lake"), build_options,
              report=lambda line: None)
        times.append(time.perf_counter() - t)
        shutil.rmtree(folder, ignore_errors=True)
        print(f"build {i + 1}: {times[-1]:.2f} s", file=sys.stderr, flush=True)
    print(RESULT_MARK + json.dumps({"session_s": session_s, "build_s": times}), flush=True)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = []
    if "--" in argv:
        cut = argv.index("--")
        argv, options = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="shard directory (or one file)")
    ap.add_argument("--builds", type=int, default=3, help="builds in the one driver (default 3)")
    ap.add_argument("--skip-gensim", action="store_true", help="time the builds only")
    ap.add_argument("--tmp", help="where temporary lakes go (default: system temp dir)")
    ap.add_argument("--interval", type=float, default=0.1, help="RSS sampling interval, s")
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.builds < 1:
        ap.error("--builds must be at least 1")
    corpus = str(Path(args.corpus).resolve())
    if args.driver:
        return driver(corpus, args.builds, options, args.tmp)

    cmd = [sys.executable, str(Path(__file__).resolve()), "--driver", "--corpus", corpus,
           "--builds", str(args.builds)] + (["--tmp", args.tmp] if args.tmp else []) \
        + ["--", *options]
    print(f"driver: {' '.join(cmd)}", file=sys.stderr, flush=True)
    res = run_measured(cmd, interval=args.interval, capture=True)
    found = [json.loads(line[len(RESULT_MARK):]) for line in (res["stdout"] or "").splitlines()
             if line.startswith(RESULT_MARK)]
    if res["rc"] != 0 or not found:
        print(f"error: the driver exited with {res['rc']}", file=sys.stderr)
        return 1
    out = found[0]
    gensim_s = None
    if not args.skip_gensim:
        gensim_s = run_gensim(args, corpus, "gensim")["tokenize_train_s"]

    def ratio(v):
        return f"{v / gensim_s:>8.2f}" if gensim_s else ""

    print(f"{'':<32}{'wall s':>8}" + (f"{'/ CBOW':>8}" if gensim_s else ""))
    print(f"{'session start (with imports)':<32}{out['session_s']:>8.2f}")
    for i, t in enumerate(out["build_s"]):
        label = f"build {i + 1}" + (" + session start" if i == 0 else "")
        value = t + out["session_s"] if i == 0 else t
        print(f"{label:<32}{value:>8.2f}{ratio(value)}")
    if gensim_s:
        print(f"{'gensim CBOW (tok+train)':<32}{gensim_s:>8.2f}")
    print(f"{'whole driver process':<32}{res['wall_s']:>8.2f}   peak "
          f"{mib(res['peak_rss_bytes']):.0f} MiB")
    print(json.dumps({**out, "gensim_s": gensim_s, "driver_wall_s": res["wall_s"],
                      "driver_peak_mib": mib(res["peak_rss_bytes"]), "options": options}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
