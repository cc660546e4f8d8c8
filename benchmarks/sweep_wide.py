#!/usr/bin/env python3
"""Second sweep stage: wide ciphers and the projection, on a stored co-occurrence table.

Like benchmarks/sweep.py, every setting runs the build's own vector step (build_cipher,
raw_blocks, context_marginal, post) and projection (bitcipher.stages.projection.project_matrix,
the arithmetic of the Spark stage) on one machine, from one lake counted at the largest
window. A setting is a list of views (JSON): one view is a set of build options plus
"project" (k), "exponent", "center" and, experimental and not a build option, "alpha"
(context-distribution smoothing: the marginal raised to alpha before the ppmi division). Two
or more views are each L2-normalised and put side by side.

Dev data (used to choose): WS353, the even-numbered pairs of MEN (file order), the Brown dev
probe (with --probe-dir). Held out, with --heldout only (read once for the chosen setting):
SimLex-999, the odd half and the whole of MEN, RW, Google analogies (3CosAdd, 30,000 most
frequent words), the Brown test probe (200,000 sampled train tokens).

Examples:
  bitcipher build --corpus data/mix --lake data/lake-w5 --window 5 --bits 32 \\
      --transform neglog --project none
  python benchmarks/sweep_wide.py --lake data/lake-w5 --probe-dir data/brown \\
      --setting '[{"bits": 4096, "window": 5, "project": 300}]' \\
      --setting '[{"bits": 4096, "window": 5, "project": 150},
                  {"bits": 1024, "window": 2, "mode": "concat", "project": 150}]'
  python benchmarks/sweep_wide.py --lake data/lake-w5 --probe-dir data/brown --heldout \\
      --setting '[{"bits": 4096, "window": 5, "project": 300}]'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import Counts, stored_marginal  # noqa: E402

from bitcipher.evaluation.evaluate import (analogy_dataset, evaluate_analogy,  # noqa: E402
                                           evaluate_similarity, read_similarity,
                                           similarity_datasets)
from bitcipher.options import BuildOptions  # noqa: E402
from bitcipher.query.keyed_vectors import KeyedVectors  # noqa: E402
from bitcipher.stages.cipher import build_cipher  # noqa: E402
from bitcipher.stages.projection import project_matrix  # noqa: E402
from bitcipher.stages.vectors import needs_marginal, post, raw_blocks  # noqa: E402

CHUNK = 3000  # centre words per raw_blocks call (bounds memory at wide ciphers)


def view_vectors(c: Counts, options: BuildOptions, alpha: float = 1.0) -> np.ndarray:
    """The finished (pre-projection) float32 vectors of `options` from the stored counts."""
    keep = np.isin(c.offset, options.offsets)
    center, context, offset, count = (a[keep] for a in (c.center, c.context, c.offset, c.count))
    order = np.argsort(center, kind="stable")
    center, context, offset, count = center[order], context[order], offset[order], count[order]
    cipher = build_cipher(c.counts, options.bits, options.smoothing)
    x = cipher.context()
    counts_ext = np.append(c.counts, 0)
    total = int(c.counts.sum())
    marginal = None
    if needs_marginal(options):
        marginal = stored_marginal(context, offset, count, x, counts_ext, total, options)
        if alpha != 1.0:
            marginal = marginal ** alpha
    blocks = len(options.offsets) if options.mode == "concat" else 1
    out = np.zeros((len(c.counts), blocks * (cipher.bits + 1)), dtype=np.float32)
    bounds = np.searchsorted(center, np.arange(0, len(c.counts) + CHUNK, CHUNK))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi > lo:
            ids, f = raw_blocks(center[lo:hi], context[lo:hi], offset[lo:hi], count[lo:hi], x,
                                counts_ext, total, options)
            out[ids] = post(f, options.transform, options.epsilon, marginal).reshape(len(ids), -1)
    return out


def setting_vectors(c: Counts, views: list) -> np.ndarray:
    parts = []
    for view in views:
        view = dict(view)
        k, p = view.pop("project", None), view.pop("exponent", 0.5)
        center, alpha = view.pop("center", False), view.pop("alpha", 1.0)
        options = BuildOptions(**{"transform": "ppmi", **view, "project": None})
        v = view_vectors(c, options, alpha)
        if k:
            v, _ = project_matrix(v, k, p, center)
        if len(views) > 1:
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            v = v / np.where(norms > 0, norms, 1.0)
        parts.append(v)
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    doc, _, examples = __doc__.partition("Examples:")
    p = argparse.ArgumentParser(description=doc, epilog="examples:" + examples,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", required=True, help="a lake counted at the largest window swept")
    p.add_argument("--setting", action="append", required=True,
                   help="JSON list of views (repeatable: one row per setting)")
    p.add_argument("--probe-dir", default=None, help="Brown CoNLL files (brown_conll.py)")
    p.add_argument("--heldout", action="store_true", help="also score the held-out sets")
    p.add_argument("--json-out", default=None, help="append one JSON line per setting here")
    args = p.parse_args(argv)

    c = Counts(args.lake)
    data = similarity_datasets(True)
    men = read_similarity(data["men"])
    for text in args.setting:
        views = json.loads(text)
        started = time.perf_counter()
        kv = KeyedVectors(c.words, c.counts, setting_vectors(c, views))
        row = {"setting": views, "dim": kv.matrix.shape[1],
               "ws353": evaluate_similarity(kv, data["ws353"])["rho"],
               "men_dev": evaluate_similarity(kv, men[0::2])["rho"],
               "seconds": round(time.perf_counter() - started, 1)}
        if args.probe_dir:
            from bitcipher.evaluation.probe import run_probe

            probe_dir = Path(args.probe_dir)
            row["probe_dev"] = run_probe(kv, probe_dir / "train.conll", probe_dir / "dev.conll",
                                         max_train_tokens=100_000).accuracy
            if args.heldout:
                row["probe_test"] = run_probe(kv, probe_dir / "train.conll",
                                              probe_dir / "test.conll",
                                              max_train_tokens=200_000).accuracy
        if args.heldout:
            row.update(simlex=evaluate_similarity(kv, data["simlex999"])["rho"],
                       men_test=evaluate_similarity(kv, men[1::2])["rho"],
                       men=evaluate_similarity(kv, data["men"])["rho"],
                       rw=evaluate_similarity(kv, data["rw"])["rho"],
                       google=evaluate_analogy(kv, analogy_dataset())["accuracy"])
        print(json.dumps(row), flush=True)
        if args.json_out:
            with open(args.json_out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
