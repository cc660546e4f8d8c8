#!/usr/bin/env python3
"""Time `bitcipher build` against gensim Word2Vec CBOW on the same shard directory.

(a) build: runs the build command as a subprocess, by default
        bitcipher build --corpus {corpus} --lake {lake} --bits 32 --window 5 --mode sum
    into a fresh temporary lake; wall time covers everything, Spark session start included.
(b) gensim: runs Word2Vec CBOW (vector_size 100, window 5, min_count 5, epochs 5, workers 2,
    sg 0, seed 1) in a subprocess of this script. It reads the shard files (every non-hidden
    file under --corpus, sorted by path, as bitcipher does), tokenizes each line with the
    regex [^\\W_]+(?:['’][^\\W_]+)* on lowercased text, drops lines without tokens, cuts lines
    longer than 10,000 tokens into chunks (as bitcipher does; gensim would truncate them), and
    trains. Its time is tokenization + training as measured inside the subprocess; the
    subprocess's whole wall time (interpreter start, gensim import) is reported too.

Peak memory of each is the maximum over time of the summed RSS of the whole process tree
(the command, the JVM, Python workers...), sampled every 0.1 s with psutil. Summed RSS counts
pages shared between processes once per process, and a spike shorter than the sampling
interval can be missed.

With --repeat N every measurement is repeated N times and the median is reported.

With --fixed-cost, each round also times the same build command on a corpus of one short
line (made in a temporary folder): what a build costs before any data, its fixed cost (JVM
and Spark session start, the first run of each code path, the Delta commits). The build's
time less that one is its marginal cost, the part that grows with the corpus.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence

TOKEN_PATTERN = r"[^\W_]+(?:['’][^\W_]+)*"  # same as benchmarks/corpora.py
MAX_DOCUMENT_TOKENS = 10_000
DEFAULT_BUILD_CMD = "bitcipher build --corpus {corpus} --lake {lake}"
W2V_PARAMS = dict(vector_size=100, window=5, min_count=5, epochs=5, workers=2, sg=0, seed=1)
RESULT_MARK = "BENCH_GENSIM_RESULT "

EXAMPLES = """\
examples:
  python benchmarks/corpora.py mix --out /tmp/bench-mix
  python benchmarks/bench_build.py --corpus /tmp/bench-mix
  python benchmarks/bench_build.py --corpus /tmp/bench-mix --repeat 3 --warmup \\
      --build-arg=--some-option --build-arg=value
  # before the bitcipher command exists: any template with {corpus} and {lake}
  python benchmarks/bench_build.py --corpus /tmp/bench-ptb \\
      --build-cmd 'python -m bitcipher.cli build --corpus {corpus} --lake {lake}'
  # gensim only
  python benchmarks/bench_build.py --corpus /tmp/bench-ptb --skip-build
  # also the fixed cost: the same build of a one-line corpus, in each round
  python benchmarks/bench_build.py --corpus /tmp/bench-mix --fixed-cost

The last line printed is one JSON object with all numbers (seconds, MiB).
Arguments of --build-arg that start with '-' need the '=' form: --build-arg=--flag.
"""


# --------------------------------------------------------------------------- corpus files

def corpus_files(corpus: str) -> List[Path]:
    """Every shard under `corpus` (a file or a directory), skipping hidden parts (. or _)."""
    root = Path(corpus)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise SystemExit(f"error: corpus {corpus!r} does not exist")
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).parts
        if path.is_file() and not any(p.startswith((".", "_")) for p in rel):
            files.append(path)
    if not files:
        raise SystemExit(f"error: corpus {corpus!r} holds no files")
    return sorted(files, key=lambda p: str(p))


def open_text(path: Path):
    name = path.name.lower()
    if name.endswith((".jsonl", ".json", ".ndjson", ".parquet")) or ".jsonl." in name or ".json." in name:
        raise SystemExit(f"error: {path}: the gensim side reads plain text shards only")
    if name.endswith(".gz"):
        raw = gzip.open(path, "rb")
    elif name.endswith(".bz2"):
        raw = bz2.open(path, "rb")
    else:
        raw = open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)


# --------------------------------------------------------------------------- memory sampling

def process_kind(name: str, cmd: str) -> str:
    """"jvm", "python workers" (pyspark's daemon or bitcipher's, and the workers they fork:
    their command names pyspark.worker), "driver python" or "other", from a process's name
    and command line."""
    if name == "java" or cmd.startswith("java") or "/java " in cmd:
        return "jvm"
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
        return "python workers"
    if "python" in name or "python" in cmd:
        return "driver python"
    return "other"


def drop_spawning(procs: dict, psutil) -> dict:
    """`procs` (pid -> process) without the children a JVM is starting a command through.

    Java starts a command (Hadoop's local file system runs `chmod` and `readlink` for the
    files and commits it makes; a standalone worker starts its executors) by a vfork-like
    spawn: until the child execs, it shares the JVM's memory and shows its command line, so
    its RSS is the JVM's counted a second time. Such a child is recognised by its command
    line being its parent's."""
    keep = {}
    for pid, proc in procs.items():
        try:
            parent = procs.get(proc.ppid())
            if parent is not None and proc.cmdline() == parent.cmdline() and process_kind(
                    parent.name(), " ".join(parent.cmdline())) == "jvm":
                continue  # (a Python worker forked by pyspark's daemon is not one)
        except psutil.Error:
            continue
        keep[pid] = proc
    return keep


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process, its descendants and its session every `interval` s."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.pid = pid
        self.interval = interval
        self.stop_event = threading.Event()
        self.peak = 0
        self.peak_procs = 0
        self.samples = 0
        self.seen = {}  # (pid, create_time) -> name
        try:
            self.sid = os.getsid(pid)
        except OSError:
            self.sid = None
        self.known = {}
        self.kinds = {}  # (pid, create_time) -> "jvm" | "python workers" | "driver python" | ...
        self.kind_peak = {}  # kind -> peak of its summed RSS
        self.process_peak = {}  # kind -> peak RSS of one process of that kind

    def kind(self, proc, key) -> str:
        try:
            name = proc.name()
        except self.psutil.Error:
            name = "?"
        key = (*key, name)  # a launcher script that execs the JVM keeps its pid
        if key not in self.kinds:
            try:
                cmd = " ".join(proc.cmdline())
            except self.psutil.Error:
                cmd = ""
            self.kinds[key] = process_kind(name, cmd)
        return self.kinds[key]

    def members(self):
        psutil = self.psutil
        procs = {}
        try:
            root = psutil.Process(self.pid)
            procs[root.pid] = root
            for child in root.children(recursive=True):
                procs[child.pid] = child
        except psutil.Error:
            pass
        # processes that left the tree (reparented) but stay in the session started for the child
        if self.sid is not None and self.sid == self.pid:
            for pid in psutil.pids():
                if pid in procs:
                    continue
                try:
                    if os.getsid(pid) == self.sid:
                        procs[pid] = self.known.get(pid) or psutil.Process(pid)
                except (OSError, psutil.Error):
                    pass
        self.known = procs
        return drop_spawning(procs, psutil).values()

    def sample(self):
        total, n = 0, 0
        by_kind: dict = {}
        for proc in self.members():
            try:
                rss = proc.memory_info().rss
                total += rss
                n += 1
                key = (proc.pid, proc.create_time())
                if key not in self.seen:
                    self.seen[key] = proc.name()
                kind = self.kind(proc, key)
                by_kind[kind] = by_kind.get(kind, 0) + rss
                self.process_peak[kind] = max(self.process_peak.get(kind, 0), rss)
            except self.psutil.Error:
                continue
        for kind, rss in by_kind.items():
            self.kind_peak[kind] = max(self.kind_peak.get(kind, 0), rss)
        self.samples += 1
        if total > self.peak:
            self.peak, self.peak_procs = total, n

    def run(self):
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join()


def session_leftovers(sid: int) -> list:
    import psutil

    left = []
    for pid in psutil.pids():
        try:
            if pid != os.getpid() and os.getsid(pid) == sid:
                left.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            pass
    return left


def kill_session(sid: int, grace: float = 5.0) -> int:
    """Terminate whatever is left of the session we started (only our own processes)."""
    import psutil

    procs = session_leftovers(sid)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(procs)


def run_measured(argv: Sequence[str], *, interval: float, cwd: Optional[str] = None,
                 log_path: Optional[Path] = None, capture: bool = False, env=None) -> dict:
    """Run argv in a new session; return rc, wall seconds, peak tree RSS and output."""
    log = open(log_path, "wb") if log_path else None
    stdout = subprocess.PIPE if capture else (log or subprocess.DEVNULL)
    stderr = log if log else (None if capture else subprocess.DEVNULL)
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=stdout, stderr=stderr,
                            start_new_session=True, env=env)
    sampler = TreeSampler(proc.pid, interval)
    sampler.start()
    try:
        out, _ = proc.communicate()
    except BaseException:
        kill_session(proc.pid)
        proc.kill()
        raise
    finally:
        wall = time.perf_counter() - t0
        sampler.stop()
        if log:
            log.close()
    left = kill_session(proc.pid)
    return {
        "rc": proc.returncode,
        "wall_s": wall,
        "peak_rss_bytes": sampler.peak,
        "peak_processes": sampler.peak_procs,
        "peak_by_kind_bytes": dict(sampler.kind_peak),
        "peak_one_process_by_kind_bytes": dict(sampler.process_peak),
        "processes_seen": len(sampler.seen),
        "samples": sampler.samples,
        "leftover_processes_killed": left,
        "stdout": out.decode("utf-8", "replace") if capture and out is not None else None,
    }


# --------------------------------------------------------------------------- gensim worker

def gensim_worker(corpus: str) -> int:
    """Runs inside the measured subprocess: tokenize the shards, train CBOW, print a result line."""
    import re

    t_start = time.perf_counter()
    from gensim.models import Word2Vec
    import gensim

    t_import = time.perf_counter()
    token_re = re.compile(TOKEN_PATTERN)
    sentences: List[List[str]] = []
    lines = tokens = chunked = 0
    files = corpus_files(corpus)
    for path in files:
        with open_text(path) as fh:
            for line in fh:
                lines += 1
                toks = token_re.findall(line.lower())
                if not toks:
                    continue
                tokens += len(toks)
                if len(toks) <= MAX_DOCUMENT_TOKENS:
                    sentences.append(toks)
                else:
                    chunked += 1
                    for i in range(0, len(toks), MAX_DOCUMENT_TOKENS):
                        sentences.append(toks[i:i + MAX_DOCUMENT_TOKENS])
    t_tok = time.perf_counter()
    model = Word2Vec(sentences=sentences, **W2V_PARAMS)
    t_train = time.perf_counter()
    result = {
        "gensim_version": gensim.__version__,
        "import_s": t_import - t_start,
        "tokenize_s": t_tok - t_import,
        "train_s": t_train - t_tok,
        "tokenize_train_s": t_train - t_import,
        "files": len(files),
        "lines": lines,
        "documents": len(sentences),
        "tokens": tokens,
        "documents_chunked": chunked,
        "vocab": len(model.wv),
        "params": W2V_PARAMS,
    }
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- driver

def build_argv(args, corpus: str, lake: str) -> List[str]:
    argv = [part.replace("{corpus}", corpus).replace("{lake}", lake) for part in shlex.split(args.build_cmd)]
    if not args.no_default_opts:
        argv += ["--bits", str(args.bits), "--window", str(args.window), "--mode", args.mode]
    return argv + list(args.build_arg or [])


def run_build(args, corpus: str, label: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bitcipher-bench-", dir=args.tmp))
    lake = tmp / "lake"
    log_path = tmp / "build.log"
    argv = build_argv(args, corpus, str(lake))
    print(f"[{label}] build: {shlex.join(argv)}", file=sys.stderr, flush=True)
    res = run_measured(argv, interval=args.interval, cwd=args.cwd, log_path=log_path)
    res["argv"] = argv
    res.pop("stdout", None)
    if res["rc"] != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        print(f"error: build exited with {res['rc']} (log {log_path}; lake {lake})", file=sys.stderr)
        raise SystemExit(1)
    stages = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
              if line.startswith(("spark session", "tokenize", "count", "unigrams", "cipher",
                                  "cooccurrences", "projection", "vectors"))]
    res["stages"] = stages
    print("\n".join(f"[{label}]   {line}" for line in stages), file=sys.stderr, flush=True)
    if args.keep_lake:
        res["lake"] = str(lake)
        res["log"] = str(log_path)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"[{label}] build: {res['wall_s']:.2f} s, peak {res['peak_rss_bytes'] / 2**20:.0f} MiB",
          file=sys.stderr, flush=True)
    kinds = ", ".join(
        f"{kind} {res['peak_by_kind_bytes'][kind] / 2**20:.0f} MiB (one process "
        f"{res['peak_one_process_by_kind_bytes'][kind] / 2**20:.0f})"
        for kind in sorted(res["peak_by_kind_bytes"]))
    print(f"[{label}] peak by process kind (each kind's own peak): {kinds}", file=sys.stderr,
          flush=True)
    return res


FIXED_COST_TEXT = "the fixed cost of a build is what it takes before any data\n"


def one_line_corpus(args) -> Path:
    """A shard folder with one short line (--fixed-cost), in the temporary directory."""
    folder = Path(tempfile.mkdtemp(prefix="bitcipher-bench-one-line-", dir=args.tmp))
    (folder / "one-line.txt").write_text(FIXED_COST_TEXT, encoding="utf-8")
    return folder


def run_gensim(args, corpus: str, label: str) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--gensim-worker", corpus]
    print(f"[{label}] gensim CBOW on {corpus}", file=sys.stderr, flush=True)
    res = run_measured(argv, interval=args.interval, capture=True)
    result = None
    for line in (res.pop("stdout") or "").splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    if res["rc"] != 0 or result is None:
        print(f"error: gensim worker exited with {res['rc']}", file=sys.stderr)
        raise SystemExit(1)
    res.update(result)
    print(f"[{label}] gensim: tokenize+train {result['tokenize_train_s']:.2f} s "
          f"(process {res['wall_s']:.2f} s), peak {res['peak_rss_bytes'] / 2**20:.0f} MiB",
          file=sys.stderr, flush=True)
    return res


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def mib(n):
    return None if n is None else n / 2**20


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", help="shard directory (or one file) to build from; required")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; medians reported (default 1)")
    parser.add_argument("--warmup", action="store_true",
                        help="run the build once untimed first (JAR download, JIT, page cache)")
    parser.add_argument("--skip-gensim", action="store_true", help="time the build only")
    parser.add_argument("--skip-build", action="store_true", help="time gensim only")
    parser.add_argument("--fixed-cost", action="store_true",
                        help="each round, also time the build of a one-line corpus (its fixed cost)")
    parser.add_argument("--build-cmd", default=DEFAULT_BUILD_CMD,
                        help="command template with {corpus} and {lake} (default: %(default)r)")
    parser.add_argument("--bits", type=int, default=32, help="--bits passed to the build (default 32)")
    parser.add_argument("--window", type=int, default=5, help="--window passed to the build (default 5)")
    parser.add_argument("--mode", default="sum", help="--mode passed to the build (default sum)")
    parser.add_argument("--no-default-opts", action="store_true",
                        help="do not append --bits/--window/--mode to the build command")
    parser.add_argument("--build-arg", action="append", metavar="ARG",
                        help="extra argument for the build command (repeatable; use --build-arg=--flag)")
    parser.add_argument("--cwd", help="working directory of the build (default: current)")
    parser.add_argument("--tmp", help="where temporary lakes go (default: system temp dir)")
    parser.add_argument("--keep-lake", action="store_true", help="keep the temporary lakes and build logs")
    parser.add_argument("--interval", type=float, default=0.1, help="RSS sampling interval, s (default 0.1)")
    parser.add_argument("--json-out", help="also write the JSON result to this file")
    parser.add_argument("--gensim-worker", metavar="CORPUS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.gensim_worker:
        return gensim_worker(args.gensim_worker)
    if not args.corpus:
        parser.error("--corpus is required")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.skip_build and args.skip_gensim:
        parser.error("nothing to do with both --skip-build and --skip-gensim")
    if args.fixed_cost and args.skip_build:
        parser.error("--fixed-cost times a build: not with --skip-build")
    try:
        import psutil  # noqa: F401
    except ImportError:
        parser.error("psutil is needed: pip install psutil")
    corpus = str(Path(args.corpus).resolve())
    files = corpus_files(corpus)
    corpus_bytes = sum(f.stat().st_size for f in files)
    if not args.skip_build:
        beside = Path(sys.executable).parent / "bitcipher"  # this interpreter's, e.g. .venv/bin
        if args.build_cmd == DEFAULT_BUILD_CMD and shutil.which("bitcipher") is None \
                and beside.exists():
            args.build_cmd = shlex.quote(str(beside)) + DEFAULT_BUILD_CMD[len("bitcipher"):]
        exe = shlex.split(args.build_cmd)[0]
        if shutil.which(exe) is None and not os.path.exists(exe):
            parser.error(f"build command {exe!r} not found; pass --build-cmd TEMPLATE or --skip-build")

    builds, gensims, fixed = [], [], []
    one_line = one_line_corpus(args) if args.fixed_cost else None
    if args.warmup and not args.skip_build:
        run_build(args, corpus, "warmup")
    for r in range(args.repeat):
        label = f"{r + 1}/{args.repeat}"
        if not args.skip_build:
            builds.append(run_build(args, corpus, label))
        if one_line is not None:
            fixed.append(run_build(args, str(one_line), f"{label} one line"))
        if not args.skip_gensim:
            gensims.append(run_gensim(args, corpus, label))
    if one_line is not None:
        shutil.rmtree(one_line, ignore_errors=True)

    build_s = median([b["wall_s"] for b in builds])
    build_mib = mib(median([b["peak_rss_bytes"] for b in builds]))
    gensim_s = median([g["tokenize_train_s"] for g in gensims])
    gensim_proc_s = median([g["wall_s"] for g in gensims])
    gensim_mib = mib(median([g["peak_rss_bytes"] for g in gensims]))
    ratio_s = build_s / gensim_s if build_s and gensim_s else None
    ratio_mib = build_mib / gensim_mib if build_mib and gensim_mib else None
    fixed_s = median([b["wall_s"] for b in fixed])
    fixed_mib = mib(median([b["peak_rss_bytes"] for b in fixed]))
    # each round's build less its own one-line build (the same sitting), then the median
    marginal_s = median([b["wall_s"] - o["wall_s"] for b, o in zip(builds, fixed)])

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    print(f"corpus {corpus}: {len(files)} files, {corpus_bytes / 2**20:.1f} MiB"
          + (f", {gensims[0]['tokens']:,} tokens, {gensims[0]['documents']:,} documents" if gensims else "")
          + f"; {args.repeat} run(s), medians")
    print(f"{'':<28}{'wall s':>10}{'peak MiB':>10}")
    if builds:
        print(f"{'bitcipher build':<28}{f(build_s, '.2f'):>10}{f(build_mib, '.0f'):>10}")
    if gensims:
        g = gensims[0]
        print(f"{'gensim CBOW (tok+train)':<28}{f(gensim_s, '.2f'):>10}{f(gensim_mib, '.0f'):>10}")
        print(f"{'  tokenize / train':<28}{median([x['tokenize_s'] for x in gensims]):>10.2f}"
              f"{median([x['train_s'] for x in gensims]):>10.2f}   (s / s)")
        print(f"{'  whole gensim process':<28}{gensim_proc_s:>10.2f}   (vocab {g['vocab']:,})")
    if builds and gensims:
        print(f"{'ratio build/gensim':<28}{f(ratio_s, '.2f'):>10}{f(ratio_mib, '.2f'):>10}")
    if fixed:
        print(f"{'one-line build (fixed)':<28}{f(fixed_s, '.2f'):>10}{f(fixed_mib, '.0f'):>10}")
        print(f"{'build less one-line build':<28}{f(marginal_s, '.2f'):>10}")
        if gensim_s:
            print(f"{'  fixed / gensim':<28}{fixed_s / gensim_s:>10.2f}")
            print(f"{'  marginal / gensim':<28}{marginal_s / gensim_s:>10.2f}")
    if builds and builds[0]["argv"][0] in ("true", "/bin/true", ":"):
        print("note: the build command is a placeholder; its numbers mean nothing")

    result = {
        "corpus": corpus,
        "files": len(files),
        "corpus_bytes": corpus_bytes,
        "repeat": args.repeat,
        "build_s": build_s,
        "build_peak_mib": build_mib,
        "gensim_s": gensim_s,
        "gensim_process_s": gensim_proc_s,
        "gensim_peak_mib": gensim_mib,
        "ratio_s": ratio_s,
        "ratio_peak_mib": ratio_mib,
        "fixed_s": fixed_s,
        "fixed_peak_mib": fixed_mib,
        "marginal_s": marginal_s,
        "tokens": gensims[0]["tokens"] if gensims else None,
        "documents": gensims[0]["documents"] if gensims else None,
        "gensim_vocab": gensims[0]["vocab"] if gensims else None,
        "build_argv": builds[0]["argv"] if builds else None,
        "runs": {"build": builds, "gensim": gensims, "one_line_build": fixed},
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()},
    }
    line = json.dumps(result)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n", encoding="utf-8")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
