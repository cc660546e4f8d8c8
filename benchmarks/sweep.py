#!/usr/bin/env python3
"""Sweep the vector options on a development split and print one table per stage.

The co-occurrence counts do not depend on bits, mode, weighting, smoothing or transform,
and the counts of a smaller window (or without offset 0) are a subset of a larger one's, so
one build at the largest window gives every setting: for each setting this script runs the
build's own vector step (bitcipher.stages.cipher.build_cipher, bitcipher.stages.vectors.raw_blocks,
context_marginal and post: the functions the Spark stage calls) on the stored
co-occurrence table, on one machine, and scores the vectors on the development data only:

  ws353      Spearman rho on WordSim-353 (gensim's test data)
  probe      Brown POS probe accuracy, train on train.conll, score dev.conll
             (benchmarks/brown_conll.py), 3 x dim features

Held-out sets (SimLex-999, MEN, RW, Google analogies, Brown test) are never read here: score
the chosen defaults on them with `bitcipher evaluate` / `bitcipher probe` or
benchmarks/compare.py.

Examples:
  python benchmarks/corpora.py mix --out data/mix
  bitcipher build --corpus data/mix --lake data/lake-w10 --window 10
  python benchmarks/brown_conll.py --out data/brown
  python benchmarks/sweep.py --lake data/lake-w10 --probe-dir data/brown --out docs/sweep.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bitcipher.stages.cipher import build_cipher  # noqa: E402
from bitcipher.evaluation.evaluate import evaluate_similarity, similarity_datasets  # noqa: E402
from bitcipher.query.keyed_vectors import KeyedVectors  # noqa: E402
from bitcipher.options import PAPER, BuildOptions  # noqa: E402
from bitcipher.stages.vectors import context_marginal, needs_marginal, post, raw_blocks  # noqa: E402


class Counts:
    """A published run's unigrams and co-occurrences, in memory."""

    def __init__(self, lake: str):
        import pyarrow.parquet as pq

        from bitcipher.lake.tables import Lake, published

        lk = Lake(lake)
        pub = published(lk)
        self.run = pub.run
        uni = pq.read_table(lk.table(pub.run, "unigrams")).sort_by("id")
        self.words = uni.column("word").to_pylist()
        self.counts = uni.column("count").to_numpy().astype(np.int64)
        co = pq.read_table(lk.table(pub.run, "cooccurrences")).combine_chunks()
        self.center = co.column("center").to_numpy()
        self.context = co.column("context").to_numpy()
        self.offset = co.column("offset").to_numpy()
        self.count = co.column("count").to_numpy()
        self.max_window = int(np.abs(self.offset).max())


def stored_marginal(context, offset, count, x, counts_ext, total, options: BuildOptions):
    """The pmi/ppmi marginal of stored co-occurrence rows (integer totals per context and
    offset first, as the build sums them)."""
    n_words = len(counts_ext) - 1
    k = 2 * options.window + 1
    key = np.where(context < 0, n_words, context).astype(np.int64) * k + offset + options.window
    keys, inverse = np.unique(key, return_inverse=True)
    totals = np.bincount(inverse, weights=count.astype(np.float64)).astype(np.int64)
    ctx = keys // k
    return context_marginal(np.where(ctx == n_words, -1, ctx), keys % k - options.window,
                            totals, x, counts_ext, total, options)


def vectors(c: Counts, options: BuildOptions) -> np.ndarray:
    """The build's vector step on the stored counts, for `options`."""
    keep = np.isin(c.offset, options.offsets)
    center, context, offset, count = (a[keep] for a in (c.center, c.context, c.offset, c.count))
    cipher = build_cipher(c.counts, options.bits, options.smoothing)
    x = cipher.context()
    counts_ext = np.append(c.counts, 0)
    total = int(c.counts.sum())
    marginal = (stored_marginal(context, offset, count, x, counts_ext, total, options)
                if needs_marginal(options) else None)
    ids, f = raw_blocks(center, context, offset, count, x, counts_ext, total, options)
    out = np.zeros((len(c.counts), f.shape[1] * f.shape[2]), dtype=np.float32)
    out[ids] = post(f, options.transform, options.epsilon, marginal).reshape(len(ids), -1)
    missing = np.setdiff1d(np.arange(len(c.counts)), ids)
    if len(missing):  # only <unk> with count 0
        empty = post(np.zeros((1,) + f.shape[1:]), options.transform, options.epsilon, marginal)
        out[missing] = empty.reshape(1, -1)
    return out


def probe(kv: KeyedVectors, probe_dir: Path, tokens: int, iterations: int):
    from bitcipher.evaluation.probe import run_probe

    return run_probe(kv, probe_dir / "train.conll", probe_dir / "dev.conll",
                     max_train_tokens=tokens, max_iter=iterations)


STAGES = {
    # stage 1: transform x bits, sum mode, the paper's other defaults
    "transform x bits (sum, window 5)": [
        dict(transform=t, bits=b) for b in (32, 128, 256) for t in ("neglog", "pmi", "ppmi")
    ] + [dict(transform="log1p", bits=32), dict(transform="neglog", bits=32, smoothing="none")],
    # stage 2: around the best of stage 1 (settings are changes to the paper's options)
    "window, weighting, smoothing, self": "around",
    # stage 3: concat (dimension grows with the window)
    "concat": "concat",
}


def around(best: dict, max_window: int) -> list[dict]:
    out = []
    for w in (2, 5, 8):
        if w <= max_window:
            out.append({**best, "window": w})
    for key, values in (("weighting", ("flat", "harmonic")),
                        ("smoothing", ("nf", "f")),
                        ("include_self", (True, False))):
        for v in values:
            out.append({**best, key: v})
    unique, seen = [], set()
    for o in out:  # settings equal once defaults are filled in run once
        key = setting_options(o).to_json()
        if key not in seen:
            seen.add(key)
            unique.append(o)
    return unique


def concat(best: dict) -> list[dict]:
    return [{**best, "mode": "concat", "bits": b, "window": w, "transform": t}
            for b, w, t in itertools.product((32,), (1, 2), ("neglog", "ppmi"))]


def objective(row: dict) -> float:
    """What picks the defaults: WS353 rho plus probe accuracy (both on dev data)."""
    return row["ws353"] + row.get("probe", 0.0)


def setting_options(o: dict) -> BuildOptions:
    """A setting is a change to the paper's options (bits 32, window 5, neglog, ...)."""
    return BuildOptions(**{**PAPER.recorded(), **o})


def label(o: dict) -> str:
    base = PAPER
    return ", ".join(f"{k}={v}" for k, v in o.items() if getattr(base, k) != v or k in
                     ("bits", "transform", "window", "mode")) or "defaults"


def main(argv: Optional[Sequence[str]] = None) -> int:
    doc, _, examples = __doc__.partition("Examples:")
    p = argparse.ArgumentParser(description=doc, epilog="examples:" + examples,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", required=True,
                   help="a lake built with the largest window to sweep (e.g. --window 10)")
    p.add_argument("--probe-dir", default=None,
                   help="Brown CoNLL files (benchmarks/brown_conll.py); without it, WS353 only")
    p.add_argument("--probe-tokens", type=int, default=20_000,
                   help="train tokens the probe samples (default: %(default)s)")
    p.add_argument("--probe-iterations", type=int, default=60,
                   help="L-BFGS iterations of the probe (default: %(default)s)")
    p.add_argument("--probe-top", type=int, default=2,
                   help="probe this many settings per stage, the best by WS353 "
                        "(default: %(default)s)")
    p.add_argument("--out", default=None, help="also write the tables (Markdown) here")
    p.add_argument("--json-out", default=None, help="every row as JSON")
    args = p.parse_args(argv)

    c = Counts(args.lake)
    ws353 = similarity_datasets(False)["ws353"]
    probe_dir = Path(args.probe_dir) if args.probe_dir else None
    lines = [f"Sweep on {args.lake} (run {c.run}, {int(c.counts.sum()):,} tokens, "
             f"vocabulary {len(c.words):,}, counted window {c.max_window}); dev data only.",
             "", "Command: `python benchmarks/sweep.py " + " ".join(argv or sys.argv[1:]) + "`",
             "", "Objective: WS353 ρ + Brown dev probe accuracy; the probe (sampled train "
             f"tokens {args.probe_tokens:,}, {args.probe_iterations} L-BFGS iterations) runs on "
             f"the {args.probe_top} best settings of each stage by WS353.", ""]
    rows_all = []
    best: dict = {}
    best_row: dict = {}
    for stage, settings in STAGES.items():
        if settings == "around":
            settings = around(best, c.max_window)
        elif settings == "concat":
            settings = concat(best)
        lines += [f"### {stage}", "",
                  "| setting | dim | WS353 ρ | Brown dev probe | seconds |", "|---|---|---|---|---|"]
        print(stage, file=sys.stderr)
        stage_rows = []
        for s in settings:
            options = setting_options(s)
            if options.window > c.max_window:
                continue
            started = time.perf_counter()
            kv = KeyedVectors(c.words, c.counts, vectors(c, options))
            row = {"setting": s, "dim": kv.matrix.shape[1],
                   "ws353": evaluate_similarity(kv, ws353)["rho"], "kv": kv,
                   "seconds": time.perf_counter() - started}
            stage_rows.append(row)
            print(f"  {label(s)}: WS353 {row['ws353']:.3f}", file=sys.stderr, flush=True)
        if probe_dir is not None:  # the probe is slow: the stage's best by WS353 only
            for row in sorted(stage_rows, key=lambda r: -r["ws353"])[:args.probe_top]:
                started = time.perf_counter()
                r = probe(row["kv"], probe_dir, args.probe_tokens, args.probe_iterations)
                row.update(probe=r.accuracy, baseline=r.baseline_accuracy)
                row["seconds"] += time.perf_counter() - started
                print(f"  {label(row['setting'])}: probe {r.accuracy:.4f}", file=sys.stderr,
                      flush=True)
        for row in stage_rows:
            row.pop("kv")
            rows_all.append({**row, "stage": stage})
            p_text = f"{row['probe']:.4f}" if "probe" in row else "—"
            lines.append(f"| {label(row['setting'])} | {row['dim']} | {row['ws353']:.3f} | "
                         f"{p_text} | {row['seconds']:.0f} |")
        candidates = [r for r in stage_rows if "probe" in r] or stage_rows
        top = max(candidates, key=objective)
        if not best or objective(top) > objective(best_row):
            best, best_row = dict(top["setting"]), top
        lines += ["", f"best so far: {label(best)} (WS353 {best_row['ws353']:.3f}"
                  + (f", probe {best_row['probe']:.4f}" if "probe" in best_row else "") + ")", ""]
    if "baseline" in best_row:
        lines.append(f"Brown dev most-frequent-tag baseline: {best_row['baseline']:.4f}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows_all, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
