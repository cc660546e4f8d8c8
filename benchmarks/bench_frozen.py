#!/usr/bin/env python3
"""Frozen refresh against an exact refresh and a full build: cost and drift.

Takes a shard directory of N shards (e.g. ``python benchmarks/corpora.py mix --out DIR
--shards 101``, about 1 % of the corpus per shard) and, in one Spark session:

cost   holds the last shard back, refreshes (exactly) from an empty lake on the others
       (count store, totals and the epoch), adds the shard, then times on copies of that
       lake ``refresh --frozen`` and ``refresh`` (exact), and a full ``build`` of all N
       shards into a fresh lake: the ratios to the build are the numbers of interest;
drift  for each --fractions f: a lake refreshed exactly on the first B shards, then the next
       A shards added (A / B ~ f), refreshed frozen and (on a copy) exactly; per word of
       both tables, the cosine between its frozen and its exact vector: as published, and
       after aligning the frozen vectors to the exact ones with one orthogonal matrix
       (Procrustes; a projection fitted again may rotate within near-equal eigenvalues,
       which moves every coordinate and changes no similarity). Mean and 5th percentile,
       with the drift the frozen refresh reported.

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

    t = DeltaTable(f"{lake_root}/vectors").to_pyarrow_table(columns=["word", "vector"])
    return dict(zip(t.column("word").to_pylist(),
                    np.stack(t.column("vector").to_numpy(zero_copy_only=False))))


def compare(frozen: dict, exact: dict) -> dict:
    words = sorted(set(frozen) & set(exact) - {"<unk>"})
    a = np.stack([frozen[w] for w in words]).astype(np.float64)
    b = np.stack([exact[w] for w in words]).astype(np.float64)

    def cosines(x, y):
        num = (x * y).sum(axis=1)
        den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        return num / np.where(den > 0, den, 1.0)

    direct = cosines(a, b)
    out = {"words": len(words), "cos_mean": float(direct.mean()),
           "cos_p5": float(np.percentile(direct, 5))}
    if a.shape[1] == b.shape[1]:
        u, _, vt = np.linalg.svd(a.T @ b)
        aligned = cosines(a @ (u @ vt), b)
        out.update(aligned_mean=float(aligned.mean()),
                   aligned_p5=float(np.percentile(aligned, 5)))
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
    # cost: +1 shard
    corpus = work / "cost" / "corpus"
    place(shards[:-1], corpus)
    base = work / "cost" / "base"
    timed(f"exact refresh from empty on {len(shards) - 1} shards (the epoch)",
          lambda: refresh(spark, str(corpus), Lake(str(base)), options, report=quiet))
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
    results["cost"] = {"tokens": built.tokens, "added_share": share, "frozen_s": t_frozen,
                       "exact_s": t_exact, "build_s": t_build,
                       "frozen_ratio": t_frozen / t_build, "exact_ratio": t_exact / t_build}
    shutil.rmtree(work / "cost", ignore_errors=True)

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
        place(shards[n_base:n_base + n_new], corpus)
        lines: list = []
        out = refresh(spark, str(corpus), Lake(str(root / "frozen")), options,
                      report=lines.append, frozen=True)
        refresh(spark, str(corpus), exact_lake, options, report=quiet)
        row = {"fraction": n_new / n_base, "base_shards": n_base, "new_shards": n_new,
               **(out.build.drift or {}),
               **compare(vectors(str(root / "frozen")), vectors(str(root / "exact")))}
        results["drift"].append(row)
        print(f"+{row['fraction']:.1%} ({n_new} new shards on {n_base}): " + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            if k not in ("fraction", "base_shards", "new_shards")), flush=True)
        shutil.rmtree(root, ignore_errors=True)

    c = results["cost"]
    print(f"\n{args.settings} settings, {c['tokens']:,} tokens in {len(shards)} shards, +1 shard:")
    print(f"frozen refresh {c['frozen_s']:.1f} s = {c['frozen_ratio']:.2f} x build; exact "
          f"refresh {c['exact_s']:.1f} s = {c['exact_ratio']:.2f} x build; build "
          f"{c['build_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
