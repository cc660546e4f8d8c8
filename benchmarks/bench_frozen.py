#!/usr/bin/env python3
"""Frozen refresh against an exact refresh and a full build: cost and drift.

Takes a shard directory of N shards (e.g. ``python benchmarks/corpora.py mix --out DIR
--shards 101``, about 1 % of the corpus per shard) and, in one Spark session:

cost   holds the last shard back, builds a lake from the others (the epoch, the count
       store and the totals), adds the shard, then times on copies of that lake the first
       ``refresh --frozen`` and ``refresh`` (exact) after the build, and a full ``build`` of
       all N shards into a fresh lake: the ratios to the build are the numbers of interest;
drift  for each --fractions f: a lake refreshed exactly on the first B shards, then the next
       A shards added (A / B ~ f), refreshed frozen and (on a copy) exactly; per word of
       both tables, the cosine between its frozen and its exact vector: as published, and
       after aligning the frozen vectors to the exact ones with one orthogonal matrix
       (Procrustes; a projection fitted again may rotate within near-equal eigenvalues,
       which moves every coordinate and changes no similarity), and the correlation of its
       cosine similarities to 1,000 sampled words (coordinate-free); the same correlation
       between the vectors before and after each refresh (how far an exact refresh moves
       them itself, and a frozen one); similarity scores of both. Mean and 5th percentile, with the
       drift the frozen refresh reported.

examples:
  python benchmarks/corpora.py mix --out data/mix101 --shards 101
  python benchmarks/bench_frozen.py --corpus data/mix101 --warmup
  python benchmarks/bench_frozen.py --corpus data/mix101 --settings paper --fractions ''
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def place(shards, corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for shard in shards:
        target = corpus / shard.name
        if not target.exists():
            shutil.copy2(shard, target)


def vectors(lake_root: str) -> dict:
    from deltalake import DeltaTable

    t = DeltaTable(f"{lake_root}/vectors").to_pyarrow_table(columns=["word", "count", "vector"])
    t = t.sort_by([("count", "descending"), ("word", "ascending")])
    return {"words": t.column("word").to_pylist(), "counts": t.column("count").to_numpy(),
            "matrix": np.stack(t.column("vector").to_numpy(zero_copy_only=False))}


def unit(m: np.ndarray) -> np.ndarray:
    m = m.astype(np.float64)
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(n > 0, n, 1.0)


def scores(v: dict) -> dict:
    """Spearman rho on WS353, SimLex-999 and MEN (when hyperhyper is installed)."""
    from bitcipher.evaluation.evaluate import evaluate_similarity, similarity_datasets
    from bitcipher.query.keyed_vectors import KeyedVectors

    kv = KeyedVectors(v["words"], v["counts"], v["matrix"].astype(np.float32))
    sets = similarity_datasets()
    return {name: round(evaluate_similarity(kv, sets[name])["rho"], 4)
            for name in ("ws353", "simlex999", "men") if name in sets}


def compare(frozen: dict, exact: dict, anchors: int = 1000) -> dict:
    """Per word of both tables: the cosine of its two vectors (direct, and after an
    orthogonal Procrustes alignment), and the correlation of its cosine similarities to
    `anchors` sampled words (coordinate-free: the same whatever basis each table is in)."""
    f_index = {w: i for i, w in enumerate(frozen["words"])}
    e_index = {w: i for i, w in enumerate(exact["words"])}
    words = sorted(set(f_index) & set(e_index) - {"<unk>"})
    a = unit(frozen["matrix"][[f_index[w] for w in words]])
    b = unit(exact["matrix"][[e_index[w] for w in words]])
    out = {"words": len(words)}
    if a.shape[1] == b.shape[1]:
        direct = (a * b).sum(axis=1)
        u, _, vt = np.linalg.svd(a.T @ b)
        aligned = ((a @ (u @ vt)) * b).sum(axis=1)
        out.update(cos_mean=float(direct.mean()), cos_p5=float(np.percentile(direct, 5)),
                   aligned_mean=float(aligned.mean()),
                   aligned_p5=float(np.percentile(aligned, 5)))
    pick = np.random.default_rng(0).choice(len(words), size=min(anchors, len(words)),
                                           replace=False)
    sa, sb = a @ a[pick].T, b @ b[pick].T
    sa -= sa.mean(axis=1, keepdims=True)
    sb -= sb.mean(axis=1, keepdims=True)
    corr = (sa * sb).sum(axis=1) / np.maximum(
        np.linalg.norm(sa, axis=1) * np.linalg.norm(sb, axis=1), 1e-300)
    out.update(simcorr_mean=float(corr.mean()), simcorr_p5=float(np.percentile(corr, 5)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("examples:")[1].join(["examples:", ""]))
    p.add_argument("--corpus", required=True, help="directory of shards (sorted by name)")
    p.add_argument("--fractions", default="0.01,0.1,0.5",
                   help="new shards as fractions of the old ones, for the drift table "
                        "(default 0.01,0.1,0.5; '' skips it)")
    p.add_argument("--settings", choices=("paper", "default"), default="default",
                   help="the paper's options or this release's defaults (default: default)")
    p.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--warmup", action="store_true", help="warm the JVM up with a tiny build")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--no-cost", action="store_true", help="the drift table only")
    args = p.parse_args(argv)

    from bitcipher import build, spark_session
    from bitcipher.incremental.run import refresh
    from bitcipher.lake.tables import Lake
    from bitcipher.options import PAPER, BuildOptions

    options = PAPER if args.settings == "paper" else BuildOptions()
    shards = sorted(x for x in Path(args.corpus).iterdir()
                    if x.is_file() and not x.name.startswith((".", "_")))
    if len(shards) < 3:
        p.error(f"{args.corpus} has {len(shards)} shards; need at least 3")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-frozen-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def log(line: str) -> None:
        print(f"    {line}", flush=True)

    def quiet(_):
        pass

    def copy_lake(src: Path, dst: Path) -> Lake:
        shutil.copytree(src, dst, copy_function=shutil.copy2)
        return Lake(str(dst))

    def timed(label, fn):
        print(label, flush=True)
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        print(f"   {seconds:.1f} s", flush=True)
        return result, seconds

    spark = spark_session()
    if args.warmup:
        tiny = work / "tiny"
        tiny.mkdir()
        (tiny / "t.txt").write_text("the cat sat on the mat\n" * 50)
        refresh(spark, str(tiny), Lake(str(work / "tiny-lake")), options, report=quiet)
        (tiny / "u.txt").write_text("the dog sat on the log\n" * 50)
        refresh(spark, str(tiny), Lake(str(work / "tiny-lake")), options, report=quiet,
                frozen=True)
        build(spark, str(tiny), Lake(str(work / "tiny-lake2")), options, report=quiet)

    results: dict = {"settings": args.settings, "shards": len(shards)}
    if not args.no_cost:
        cost(spark, shards, work, options, results, log, quiet, copy_lake, timed)
    drift_table(spark, shards, work, options, results, args, quiet, copy_lake)
    if "cost" in results:
        c = results["cost"]
        print(f"\n{args.settings} settings, {c['tokens']:,} tokens in {len(shards)} shards, "
              f"+1 shard:")
        print(f"frozen refresh {c['frozen_s']:.1f} s = {c['frozen_ratio']:.2f} x build; exact "
              f"refresh {c['exact_s']:.1f} s = {c['exact_ratio']:.2f} x build; build "
              f"{c['build_s']:.1f} s (--no-count-store {c['one_off_build_s']:.1f} s: frozen "
              f"{c['frozen_to_one_off']:.2f} x, exact {c['exact_to_one_off']:.2f} x)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    spark.stop()
    return 0


def cost(spark, shards, work, options, results, log, quiet, copy_lake, timed):
    """+1 shard: frozen and exact refresh against a full build."""
    from bitcipher import build
    from bitcipher.incremental.run import refresh
    from bitcipher.lake.tables import Lake

    corpus = work / "cost" / "corpus"
    place(shards[:-1], corpus)
    base = work / "cost" / "base"
    timed(f"build of {len(shards) - 1} shards (the epoch, the count store and the totals)",
          lambda: build(spark, str(corpus), Lake(str(base)), options, report=quiet))
    place(shards[-1:], corpus)
    share = shards[-1].stat().st_size / sum(s.stat().st_size for s in shards[:-1])
    frozen_lake = copy_lake(base, work / "cost" / "frozen")
    exact_lake = copy_lake(base, work / "cost" / "exact")
    _, t_frozen = timed(f"frozen refresh, +1 shard ({share:.1%} of the bytes)",
                        lambda: refresh(spark, str(corpus), frozen_lake, options, report=log,
                                        frozen=True))
    _, t_exact = timed("exact refresh, +1 shard",
                       lambda: refresh(spark, str(corpus), exact_lake, options, report=log))
    built, t_build = timed(f"full build of {len(shards)} shards",
                           lambda: build(spark, str(corpus), Lake(str(work / "cost" / "built")),
                                         options, report=log))
    _, t_one_off = timed(f"full build of {len(shards)} shards, --no-count-store",
                         lambda: build(spark, str(corpus), Lake(str(work / "cost" / "one-off")),
                                       options, report=log, count_store=False))
    results["cost"] = {"tokens": built.tokens, "added_share": share, "frozen_s": t_frozen,
                       "exact_s": t_exact, "build_s": t_build, "one_off_build_s": t_one_off,
                       "frozen_ratio": t_frozen / t_build, "exact_ratio": t_exact / t_build,
                       "frozen_to_one_off": t_frozen / t_one_off,
                       "exact_to_one_off": t_exact / t_one_off}
    shutil.rmtree(work / "cost", ignore_errors=True)


def drift_table(spark, shards, work, options, results, args, quiet, copy_lake):
    from bitcipher.incremental.run import refresh
    from bitcipher.lake.tables import Lake

    fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    results["drift"] = []
    for f in fractions:
        n_base = max(1, round(len(shards) / (1 + f)))
        n_new = max(1, min(len(shards) - n_base, round(n_base * f)))
        root = work / f"drift-{f}"
        corpus = root / "corpus"
        place(shards[:n_base], corpus)
        refresh(spark, str(corpus), Lake(str(root / "frozen")), options, report=quiet)
        exact_lake = copy_lake(root / "frozen", root / "exact")
        before = vectors(str(root / "exact"))
        place(shards[n_base:n_base + n_new], corpus)
        lines: list = []
        out = refresh(spark, str(corpus), Lake(str(root / "frozen")), options,
                      report=lines.append, frozen=True)
        refresh(spark, str(corpus), exact_lake, options, report=quiet)
        fv, ev = vectors(str(root / "frozen")), vectors(str(root / "exact"))
        row = {"fraction": n_new / n_base, "base_shards": n_base, "new_shards": n_new,
               **(out.build.drift or {}), **compare(fv, ev)}
        # how far the exact refresh itself moves the vectors it replaces (the same measure)
        moved = compare(before, ev)
        row.update(exact_moved_simcorr_mean=moved["simcorr_mean"],
                   exact_moved_simcorr_p5=moved["simcorr_p5"])
        # and the frozen refresh (in the same space as before: the direct cosine means
        # something here)
        moved = compare(before, fv)
        row.update(frozen_moved_cos_mean=moved.get("cos_mean"),
                   frozen_moved_cos_p5=moved.get("cos_p5"),
                   frozen_moved_simcorr_mean=moved["simcorr_mean"],
                   frozen_moved_simcorr_p5=moved["simcorr_p5"])
        try:
            row["scores_frozen"], row["scores_exact"] = scores(fv), scores(ev)
        except FileNotFoundError:  # gensim's data sets are not installed
            pass
        results["drift"].append(row)
        print(f"+{row['fraction']:.1%} ({n_new} new shards on {n_base}): " + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            if k not in ("fraction", "base_shards", "new_shards")), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
