#!/usr/bin/env python3
"""Peak memory of a `bitcipher build`, stage by stage.

Runs ``bitcipher build ARGS`` in a child process, notes when each stage line reaches its
stderr, and samples the summed RSS of the whole process tree every 0.1 s (bench_build.py's
sampler: the JVM, the driver's Python, Spark's Python workers). For each stage (from the
previous stage line to its own) it prints the wall time and the peak of the tree and of each
kind of process. A process keeps the memory it once took, so a stage's figure can be left
over from an earlier stage.

examples:
  python benchmarks/memory_by_stage.py --corpus data/mix --lake /tmp/lake
  python benchmarks/memory_by_stage.py --corpus data/mix --lake /tmp/lake --no-count-store
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build import TreeSampler  # noqa: E402

KINDS = ("jvm", "driver python", "python workers")


class Timeline(TreeSampler):
    """TreeSampler that keeps every sample: (time, {kind: summed RSS})."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(pid, interval)
        self.timeline: list[tuple[float, dict]] = []

    def sample(self):
        by_kind: dict = {}
        for proc in self.members():
            try:
                rss = proc.memory_info().rss
                kind = self.kind(proc, (proc.pid, proc.create_time()))
            except self.psutil.Error:
                continue
            by_kind[kind] = by_kind.get(kind, 0) + rss
        self.timeline.append((time.perf_counter(), by_kind))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.usage = "%(prog)s [-h] BUILD_ARGUMENTS (those of `bitcipher build`)"
    _, build_args = parser.parse_known_args(argv)
    if not build_args:
        parser.error("give the arguments of `bitcipher build`, at least --corpus and --lake")
    command = [sys.executable, "-m", "bitcipher.cli", "build", *build_args]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    sampler = Timeline(proc.pid)
    sampler.start()
    marks = []
    for line in proc.stderr:
        words = line.split()
        if (" s " in line or line.rstrip().endswith(" s")) and words and "WARN" not in line:
            marks.append((time.perf_counter(),
                          "session" if line.startswith("spark session") else words[0]))
    code = proc.wait()
    sampler.stop()
    marks.append((time.perf_counter(), "(end)"))
    if code != 0:
        print(f"bitcipher build exited {code}", file=sys.stderr)
        return code
    gib = 2 ** 30
    print(f"{'stage':<15}{'wall s':>8}{'tree':>8}" + "".join(f"{k:>16}" for k in KINDS)
          + "   (peak GiB)")
    previous = started
    for at, name in marks:
        samples = [by for t, by in sampler.timeline if previous <= t <= at]
        if samples:
            tree = max(sum(by.values()) for by in samples)
            kinds = [max(by.get(k, 0) for by in samples) for k in KINDS]
            print(f"{name:<15}{at - previous:>8.1f}{tree / gib:>8.2f}"
                  + "".join(f"{v / gib:>16.2f}" for v in kinds))
        previous = at
    return 0


if __name__ == "__main__":
    sys.exit(main())
