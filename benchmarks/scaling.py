#!/usr/bin/env python3
"""Scaling curve of `bitcipher build`: time and memory per stage on growing corpora.

For every size (default 1M, 4M, 16M tokens) the script writes a corpus once (cached under
--data) and runs

    bitcipher build --corpus DIR --lake TMP/lake [--bits B --window M --mode X] [--master URL]

as a subprocess in a fresh temporary lake, then prints Markdown tables: seconds per stage
(the lines the build prints on stderr), total wall time, tokens per second, vocabulary size;
and peak memory (RSS in MiB) of the whole process tree, of the driver (the driver JVM and
the driver's Python process, separately and together), of the Python workers and, on a
cluster, of the executor JVMs, plus the peak of the whole tree within each stage.

Corpora
  synthetic (default): text drawn deterministically (--seed) from a Zipf law over a fixed
      vocabulary (--vocab 50,000 word types, exponent --zipf 1.07); document lengths are
      log-normal (median 12 tokens) with a few long documents mixed in. Word types are
      made of letters only, so every word is exactly one token for bitcipher.
  --source DIR: real text shards instead; their lines are repeated (whole passes, then a
      prefix) or cut to each size, like ``corpora.py mix``.

Memory is sampled every --interval seconds per process (psutil RSS) and classified by
command line: the build's own Python process (driver Python), the JVM started by PySpark
(``org.apache.spark.deploy.SparkSubmit``: driver JVM, which in local mode also runs the
executor threads), ``pyspark.daemon``/``pyspark.worker`` (Python workers), and on a cluster
``CoarseGrainedExecutorBackend`` (executor JVMs) and the master/worker daemons. Summed RSS
counts shared pages once per process; spikes shorter than the interval can be missed. The
"whole tree" leaves out the cluster's master and worker daemons (shown apart).

--cluster runs every size twice, on local[*] and on a standalone master with --workers
workers (--worker-cores cores each) that the script starts on 127.0.0.1 and stops at the
end (pipeline/standalone.py), so the two timings are on the same corpus and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_build import TreeSampler, drop_spawning, kill_session  # noqa: E402

STAGES = ("spark session", "tokenize", "count", "unigrams", "cipher", "cooccurrences",
          "projection", "vectors")
CLASSES = ("driver_jvm", "driver_python", "python_workers", "executor_jvms", "daemons", "other")
DEFAULT_SIZES = "1M,4M,16M"
CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"

EXAMPLES = """\
examples:
  python benchmarks/scaling.py --sizes 1M,4M
  python benchmarks/scaling.py --sizes 1M,4M --cluster          # local and a 2-worker cluster
  python benchmarks/scaling.py --sizes 2M,8M --source data/kjv  # real text, repeated
  python benchmarks/scaling.py --json-out /tmp/scaling.json     # 1M, 4M, 16M

The last line printed is one JSON object with every number (seconds, MiB).
"""


# --------------------------------------------------------------------------- corpora

def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a token count: {text!r} (e.g. 1M, 500k, 2000000)")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def label(tokens: int) -> str:
    for unit, scale in (("M", 10**6), ("k", 10**3)):
        if tokens >= scale and tokens % scale == 0:
            return f"{tokens // scale}{unit}"
    return f"{tokens:,}"


def word_forms(n: int) -> List[str]:
    """`n` distinct lowercase words of letters only: 1, 2, 3... consonant-vowel syllables."""
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    base = len(syllables)
    words: List[str] = []
    length = 1
    while len(words) < n:
        for i in range(min(base ** length, n - len(words))):
            digits = []
            for _ in range(length):
                i, d = divmod(i, base)
                digits.append(syllables[d])
            words.append("".join(reversed(digits)))
        length += 1
    return words


def zipf_documents(tokens: int, vocab: int, exponent: float, seed: int) -> List[str]:
    """`tokens` tokens of Zipfian text (rank r has probability ∝ r^-exponent), as documents
    of log-normal length (median 12) with 0.5% long ones (200 to 5,000 tokens)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = np.arange(1, vocab + 1, dtype=np.float64) ** -exponent
    ids = rng.choice(vocab, size=tokens, p=p / p.sum())
    # enough document lengths to cover `tokens`, then cut to the exact sum
    lengths = np.empty(0, dtype=np.int64)
    while lengths.sum() < tokens:
        n = max(1000, (tokens - int(lengths.sum())) // 10)
        more = np.clip(np.rint(rng.lognormal(np.log(12), 0.8, n)), 1, 200).astype(np.int64)
        long = rng.random(n) < 0.005
        more[long] = rng.integers(200, 5001, int(long.sum()))
        lengths = np.concatenate([lengths, more])
    ends = np.cumsum(lengths)
    cut = int(np.searchsorted(ends, tokens))  # first document reaching `tokens`
    ends = np.concatenate([ends[:cut], [tokens]])
    words = np.array(word_forms(vocab), dtype=object)
    text = words[ids]
    starts = np.concatenate([[0], ends[:-1]])
    return [" ".join(text[a:b]) for a, b in zip(starts.tolist(), ends.tolist())]


def source_documents(source: str, tokens: int) -> List[str]:
    """Lines of the text shards under `source`, repeated or cut to about `tokens` tokens."""
    from bench_build import corpus_files, open_text
    from corpora import count_tokens

    docs, counts = [], []
    for path in corpus_files(source):
        with open_text(path) as fh:
            for line in fh:
                line = line.rstrip("\n")
                c = count_tokens(line)
                if c:
                    docs.append(line)
                    counts.append(c)
    if not docs:
        raise SystemExit(f"error: {source} holds no tokens")
    out, total = [], 0
    while total < tokens:
        for doc, c in zip(docs, counts):
            out.append(doc)
            total += c
            if total >= tokens:
                break
    return out


def corpus_for(args, tokens: int) -> tuple[Path, dict]:
    """The corpus directory of one size (written once, reused while its recipe is the same)."""
    from corpora import write_shards

    if args.source:
        src = Path(args.source).resolve()
        recipe = {"kind": "source", "source": str(src), "tokens": tokens, "shards": args.shards}
        name = f"{src.name}-{label(tokens)}"
    else:
        recipe = {"kind": "zipf", "tokens": tokens, "vocab": args.vocab, "zipf": args.zipf,
                  "seed": args.seed, "shards": args.shards}
        name = f"zipf-{label(tokens)}-v{args.vocab}-s{args.zipf}-seed{args.seed}"
    out = Path(args.data) / name
    info_path = out / "_corpus.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("recipe") == recipe:
            return out, info
    started = time.perf_counter()
    docs = (source_documents(args.source, tokens) if args.source
            else zipf_documents(tokens, args.vocab, args.zipf, args.seed))
    summary = write_shards(docs, out, "part", args.shards)
    info = {"recipe": recipe, "documents": summary["lines"], "tokens": summary["tokens"],
            "bytes": summary["bytes"], "sha256": summary["sha256"]}
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {out}: {info['documents']:,} documents, {info['tokens']:,} tokens, "
          f"{info['bytes'] / 2**20:.1f} MiB in {time.perf_counter() - started:.1f} s",
          file=sys.stderr, flush=True)
    return out, info


# --------------------------------------------------------------------------- measuring

class ClassSampler(TreeSampler):
    """Per-process RSS of the build's process tree (and of extra roots: a cluster's
    daemons and their children), summed per class of process, with a timestamp."""

    def __init__(self, pid: int, interval: float, extra_roots: Sequence[int] = ()):
        super().__init__(pid, interval)
        self.extra_roots = list(extra_roots)
        self.kinds: Dict[tuple, str] = {}
        self.timeline: List[tuple] = []  # (time, {class: bytes})

    def members(self):
        procs = {p.pid: p for p in super().members()}
        for root in self.extra_roots:
            try:
                r = self.psutil.Process(root)
                procs.setdefault(r.pid, r)
                for child in r.children(recursive=True):
                    procs.setdefault(child.pid, child)
            except self.psutil.Error:
                pass
        return drop_spawning(procs, self.psutil).values()

    def kind(self, proc) -> str:
        # a process keeps its pid across exec (spark-submit is a shell script that execs
        # java): a process not recognised yet is looked at again in the next sample
        key = (proc.pid, proc.create_time())
        if self.kinds.get(key, "other") == "other":
            if proc.pid == self.pid:
                kind = "driver_python"
            else:
                cmd = " ".join(proc.cmdline())
                if "org.apache.spark.deploy.SparkSubmit" in cmd:
                    kind = "driver_jvm"
                elif "CoarseGrainedExecutorBackend" in cmd:
                    kind = "executor_jvms"
                elif "deploy.master.Master" in cmd or "deploy.worker.Worker" in cmd:
                    kind = "daemons"
                elif "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
                    kind = "python_workers"
                else:
                    kind = "other"
            self.kinds[key] = kind
        return self.kinds[key]

    def sample(self):
        sums = dict.fromkeys(CLASSES, 0)
        for proc in self.members():
            try:
                sums[self.kind(proc)] += proc.memory_info().rss
            except self.psutil.Error:
                continue
        self.samples += 1
        total = sum(sums.values())
        self.peak = max(self.peak, total)
        self.timeline.append((time.perf_counter(), sums))


def parse_stage(line: str) -> Optional[tuple]:
    for name in STAGES:
        if line.startswith(name):
            m = re.search(r"([\d.]+) s\b", line[len(name):])
            if m:
                return name, float(m.group(1))
    return None


def run_build(args, corpus: Path, master: Optional[str], env: dict,
              extra_roots: Sequence[int] = ()) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bitcipher-scaling-", dir=args.tmp))
    argv = [args.bitcipher, "build", "--corpus", str(corpus), "--lake", str(tmp / "lake"),
            *(["--bits", str(args.bits)] if args.bits is not None else []),
            *(["--window", str(args.window)] if args.window is not None else []),
            *(["--mode", args.mode] if args.mode is not None else []),
            *(["--master", master] if master else []), *(args.build_arg or [])]
    print(f"  $ {' '.join(argv)}", file=sys.stderr, flush=True)
    lines: List[tuple] = []  # (time, line) of every stderr line, as it arrives
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)
    sampler = ClassSampler(proc.pid, args.interval, extra_roots)
    sampler.start()

    def read():
        for raw in proc.stderr:
            lines.append((time.perf_counter(), raw.decode("utf-8", "replace").rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = proc.wait()
    except BaseException:
        kill_session(proc.pid)
        raise
    finally:
        wall = time.perf_counter() - t0
        sampler.stop()
        reader.join(timeout=10)
    kill_session(proc.pid)
    shutil.rmtree(tmp, ignore_errors=True)
    if rc != 0:
        print("\n".join(line for _, line in lines[-40:]), file=sys.stderr)
        raise SystemExit(f"error: build exited with {rc}")

    stages, bounds, vocab, tokens = {}, [], None, None
    for t, line in lines:
        parsed = parse_stage(line)
        if parsed:
            stages[parsed[0]] = parsed[1]
            bounds.append((parsed[0], t))
            print(f"    {line}", file=sys.stderr, flush=True)
        m = re.search(r"vocabulary ([\d,]+)", line)
        if m and line.startswith("unigrams"):
            vocab = int(m.group(1).replace(",", ""))
        m = re.search(r"([\d,]+) tokens", line)
        if m and line.startswith("tokenize"):
            tokens = int(m.group(1).replace(",", ""))

    def peak(select, lo=float("-inf"), hi=float("inf")):
        values = [select(s) for t, s in sampler.timeline if lo <= t <= hi]
        return max(values, default=0) / 2**20

    stage_peak, previous = {}, t0
    for name, t in bounds:  # a stage runs from the previous stage line to its own
        stage_peak[name] = peak(lambda s: sum(s.values()) - s["daemons"], previous, t)
        previous = t
    return {
        "master": master or "local[*]",
        "wall_s": wall,
        "stages_s": stages,
        "tokens": tokens,
        "vocab": vocab,
        "tokens_per_s": tokens / wall if tokens else None,
        "peak_tree_mib": peak(lambda s: sum(s.values()) - s["daemons"]),
        "peak_driver_mib": peak(lambda s: s["driver_jvm"] + s["driver_python"]),
        "peak_mib": {k: peak(lambda s, k=k: s[k]) for k in CLASSES},
        "peak_stage_mib": stage_peak,
        "samples": sampler.samples,
        "argv": argv,
    }


# --------------------------------------------------------------------------- tables

def markdown(results: List[dict]) -> str:
    def f(v, fmt=".1f"):
        return "-" if v is None else format(v, fmt)

    out = ["### Time (seconds)", "",
           "| mode | tokens | vocabulary | " + " | ".join(STAGES) + " | total | tokens/s | s per M tokens (without session) |",
           "|---|---:|---:|" + "---:|" * len(STAGES) + "---:|---:|---:|"]
    for r in results:
        out.append(f"| {r['mode']} | {label(r['size'])} | {f(r['vocab'], ',')} | "
                   + " | ".join(f(r["stages_s"].get(s)) for s in STAGES)
                   + f" | {r['wall_s']:.1f} | {f(r['tokens_per_s'], ',.0f')} | "
                   f"{f(work_s(r) / (r['tokens'] / 1e6) if r['tokens'] else None, '.2f')} |")
    out += ["", "### Peak memory (RSS, MiB)", "",
            "| mode | tokens | whole tree | driver (JVM + Python) | driver JVM | driver Python "
            "| Python workers | executor JVMs | cluster daemons | "
            + " | ".join(f"tree during {s}" for s in STAGES[1:]) + " |",
            "|---|---:|" + "---:|" * 7 + "---:|" * len(STAGES[1:])]
    for r in results:
        p = r["peak_mib"]
        out.append(f"| {r['mode']} | {label(r['size'])} | {r['peak_tree_mib']:.0f} | "
                   f"{r['peak_driver_mib']:.0f} | {p['driver_jvm']:.0f} | {p['driver_python']:.0f} | "
                   f"{p['python_workers']:.0f} | {p['executor_jvms']:.0f} | {p['daemons']:.0f} | "
                   + " | ".join(f(r["peak_stage_mib"].get(s), ".0f") for s in STAGES[1:]) + " |")
    out += ["", "### Growth from one size to the next (targets: time linear in tokens, i.e. "
            "a steady marginal cost per token; driver memory x near 1 once the vocabulary is "
            "complete)", "",
            "| mode | sizes | tokens x | time x (without session) | marginal s per M tokens "
            "| vocabulary x | driver memory x |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for a, b in zip(results, results[1:]):
        if a["mode"] != b["mode"] or not (a["tokens"] and b["tokens"]):
            continue
        out.append(f"| {a['mode']} | {label(a['size'])} -> {label(b['size'])} | "
                   f"{b['tokens'] / a['tokens']:.2f} | {work_s(b) / work_s(a):.2f} | "
                   f"{(work_s(b) - work_s(a)) / ((b['tokens'] - a['tokens']) / 1e6):.2f} | "
                   f"{f(b['vocab'] / a['vocab'] if a['vocab'] and b['vocab'] else None, '.2f')} | "
                   f"{b['peak_driver_mib'] / max(a['peak_driver_mib'], 1):.2f} |")
    return "\n".join(out)


def work_s(r: dict) -> float:
    """Wall time without the Spark session's start."""
    return r["wall_s"] - r["stages_s"].get("spark session", 0.0)


# --------------------------------------------------------------------------- main

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"comma-separated token counts (default {DEFAULT_SIZES})")
    parser.add_argument("--source", help="real text shards to repeat/cut to each size "
                                         "(default: synthetic Zipfian text)")
    parser.add_argument("--vocab", type=int, default=50_000,
                        help="synthetic: word types (default 50000)")
    parser.add_argument("--zipf", type=float, default=1.07,
                        help="synthetic: Zipf exponent (default 1.07)")
    parser.add_argument("--seed", type=int, default=1, help="synthetic: random seed (default 1)")
    parser.add_argument("--shards", type=int, default=8, help="shard files per corpus (default 8)")
    parser.add_argument("--data", default="data/scaling",
                        help="where the corpora are written and cached (default data/scaling)")
    parser.add_argument("--cluster", action="store_true",
                        help="also run every size on a standalone master + workers on 127.0.0.1")
    parser.add_argument("--cluster-only", action="store_true",
                        help="run on the standalone cluster only")
    parser.add_argument("--workers", type=int, default=2, help="cluster workers (default 2)")
    parser.add_argument("--worker-cores", type=int, default=1,
                        help="cores per cluster worker (default 1)")
    parser.add_argument("--worker-memory", default="2g",
                        help="memory per cluster worker for executors (default 2g)")
    parser.add_argument("--bits", type=int, help="--bits of the build (default: the build's)")
    parser.add_argument("--window", type=int, help="--window of the build (default: the build's)")
    parser.add_argument("--mode", help="--mode of the build (default: the build's)")
    parser.add_argument("--build-arg", action="append", metavar="ARG",
                        help="extra argument for bitcipher build (repeatable; --build-arg=--flag)")
    beside = Path(sys.executable).parent / "bitcipher"  # this interpreter's, e.g. .venv/bin
    parser.add_argument("--bitcipher", default=shutil.which("bitcipher") or (
                            str(beside) if beside.exists() else "bitcipher"),
                        help="the bitcipher executable (default: the one on PATH)")
    parser.add_argument("--interval", type=float, default=0.2,
                        help="memory sampling interval, s (default 0.2)")
    parser.add_argument("--corpora-only", action="store_true",
                        help="write (or find) the corpora, print their directories, build nothing")
    parser.add_argument("--driver-memory", metavar="SIZE",
                        help="heap of the driver JVM (BITCIPHER_DRIVER_MEMORY; default: the "
                             "project's, 2g); a small one shows what the driver needs")
    parser.add_argument("--tmp", help="where temporary lakes go (default: system temp dir)")
    parser.add_argument("--json-out", help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if not sizes or min(sizes) < 1000:
        parser.error("--sizes needs token counts of at least 1000")
    if args.source and not Path(args.source).exists():
        parser.error(f"--source {args.source} does not exist")
    if not args.corpora_only and shutil.which(args.bitcipher) is None \
            and not os.path.exists(args.bitcipher):
        parser.error(f"bitcipher executable {args.bitcipher!r} not found; pass --bitcipher")

    corpora = [corpus_for(args, n) for n in sizes]
    if args.corpora_only:
        for corpus, _ in corpora:
            print(corpus)
        return 0
    modes = (["cluster"] if args.cluster_only else
             ["local", "cluster"] if args.cluster else ["local"])
    env = dict(os.environ, PYSPARK_PYTHON=os.environ.get("PYSPARK_PYTHON", sys.executable))
    extra_env = {"BITCIPHER_DRIVER_MEMORY": args.driver_memory} if args.driver_memory else {}
    env.update(extra_env)
    results: List[dict] = []

    def run_all(mode, master=None, run_env=env, roots=()):
        for size, (corpus, info) in zip(sizes, corpora):
            print(f"[{mode}] {label(size)} tokens: {corpus}", file=sys.stderr, flush=True)
            r = run_build(args, corpus, master, run_env, roots)
            r.update(mode=mode, size=size, corpus=str(corpus), corpus_info=info)
            results.append(r)
            print(f"[{mode}] {label(size)}: {r['wall_s']:.1f} s, tree {r['peak_tree_mib']:.0f} MiB,"
                  f" driver {r['peak_driver_mib']:.0f} MiB", file=sys.stderr, flush=True)

    try:
        if "local" in modes:
            run_all("local")
        if "cluster" in modes:
            sys.path.insert(0, str(HERE.parent))
            from bitcipher.runtime.standalone import standalone_cluster

            with tempfile.TemporaryDirectory(prefix="bitcipher-cluster-", dir=args.tmp) as work:
                with standalone_cluster(work, workers=args.workers, cores=args.worker_cores,
                                        memory=args.worker_memory) as cluster:
                    label_ = f"cluster {args.workers}x{args.worker_cores}"
                    run_all(label_, cluster.url, {**cluster.env, **extra_env}, cluster.pids)
    finally:  # what was measured is printed even when a later run fails
        if results:
            print(markdown(results))
        host = {"python": platform.python_version(), "cpus": os.cpu_count(),
                "machine": platform.machine(), "load_average": os.getloadavg()}
        line = json.dumps({"sizes": sizes, "results": results, "host": host})
        if args.json_out:
            Path(args.json_out).write_text(line + "\n")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
