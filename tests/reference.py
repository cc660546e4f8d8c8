"""Reference implementation of ALGORITHM.md sections 0-3 (pure Python + NumPy).

This module is the *expected result* for tests of the Spark pipeline. It is written
for clarity and obvious correctness, not speed: explicit Python loops over documents
and positions, float64 throughout, and a brute-force cipher code order. Use it on
tiny corpora only. It deliberately does not import anything from ``pipeline``.

Choices made where the spec leaves room (see also the docstrings):
- The vocabulary counts ``<unk>`` as a vocabulary word everywhere: it is ranked like any
  word, it counts in n(f) for the ``nf`` smoothing, and it is a context with its own
  count f_<unk> for the ``cosine`` weighting.
- A document is split into chunks *after* tokenization (chunks of tokens).
- ``bits=1`` (only possible with a one-word vocabulary): u = (1 - q)/(b - 1) is 0/0, so
  rep_t = c_t there. With M = 0 (no tokens at all) q is undefined; q is taken uniform.
- ``bits="auto"`` picks the smallest b with 2**b - 1 >= |V|.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from functools import lru_cache

import numpy as np

EDGE = -1  # context id used for the document edge
UNK = "<unk>"

TOKEN_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")

SMOOTHINGS = ("nf", "f", "none")
WEIGHTINGS = ("flat", "harmonic", "cosine")
TRANSFORMS = ("neglog", "log1p", "none", "pmi", "ppmi")
MODES = ("sum", "concat")


# ---------------------------------------------------------------------------
# §0 Documents and tokens
# ---------------------------------------------------------------------------

def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Maximal runs of letters/digits with internal apostrophes (after lowercasing)."""
    if lowercase:
        text = text.lower()
    return TOKEN_RE.findall(text)


def documents(lines: list[str], lowercase: bool = True,
              max_document_tokens: int = 10000) -> list[list[str]]:
    """One document per line; long lines split into consecutive token chunks.

    Documents with zero tokens are dropped.
    """
    if max_document_tokens < 1:
        raise ValueError("max_document_tokens must be >= 1")
    docs: list[list[str]] = []
    for line in lines:
        tokens = tokenize(line, lowercase=lowercase)
        start = 0
        while start < len(tokens):
            chunk = tokens[start:start + max_document_tokens]
            docs.append(chunk)
            start += max_document_tokens
    return docs


# ---------------------------------------------------------------------------
# §1 Vocabulary and ranks
# ---------------------------------------------------------------------------

def _rank_key(item: tuple[str, int]):
    word, count = item
    return (-count, word)  # count descending, then code points ascending


def vocabulary(docs: list[list[str]], min_count: int = 5,
               max_vocab: int | None = None) -> list[tuple[str, int]]:
    """[(word, count)] in rank order; index in the list = id. Always contains <unk>."""
    counts: Counter[str] = Counter()
    for doc in docs:
        for token in doc:
            counts[token] += 1
    if UNK in counts:
        raise ValueError("the token <unk> cannot occur in the corpus")

    kept = [(w, c) for w, c in counts.items() if c >= min_count]
    kept.sort(key=_rank_key)
    if max_vocab is not None:
        kept = kept[:max_vocab]

    kept_words = {w for w, _ in kept}
    unk_count = 0
    for w, c in counts.items():
        if w not in kept_words:
            unk_count += c

    vocab = kept + [(UNK, unk_count)]
    vocab.sort(key=_rank_key)
    return vocab


def token_ids(docs: list[list[str]], vocab: list[tuple[str, int]]) -> list[list[int]]:
    """Map tokens to ids; words not in the vocabulary map to the id of <unk>."""
    ids = {w: i for i, (w, _) in enumerate(vocab)}
    unk_id = ids[UNK]
    return [[ids.get(token, unk_id) for token in doc] for doc in docs]


# ---------------------------------------------------------------------------
# §2 The cipher
# ---------------------------------------------------------------------------

def _colex_key(positions: tuple[int, ...]) -> int:
    # Σ C(p_i, i) with 1-based i  ==  Σ comb(p_i, i+1) with 0-based i.
    return sum(math.comb(p, i + 1) for i, p in enumerate(positions))


@lru_cache(maxsize=None)
def _codes_with_k_ones(bits: int, k: int) -> tuple[tuple[int, ...], ...]:
    """All k-subsets of range(bits), brute force, sorted in colex order."""
    group = list(itertools.combinations(range(bits), k))
    group.sort(key=_colex_key)
    return tuple(group)


def code_positions(rank: int, bits: int) -> tuple[int, ...]:
    """Positions of the ones in code number ``rank`` (brute-force enumeration).

    Codes are ordered by number of ones k, then within one k in colex order. Only the
    k-group containing ``rank`` is enumerated (earlier groups are skipped by their size
    C(bits, k)), so small ranks stay cheap even for bits=32.
    """
    if bits < 1:
        raise ValueError("bits must be >= 1")
    if rank < 0 or rank >= 2 ** bits - 1:
        raise ValueError(f"rank {rank} out of range for bits={bits} "
                         f"(capacity {2 ** bits - 1})")
    r = rank
    for k in range(1, bits + 1):
        size = math.comb(bits, k)
        if r < size:
            return _codes_with_k_ones(bits, k)[r]
        r -= size
    raise AssertionError("unreachable")


def smallest_bits(vocab_size: int) -> int:
    """Smallest b with 2**b - 1 >= vocab_size."""
    b = 1
    while 2 ** b - 1 < vocab_size:
        b += 1
    return b


def resolve_bits(bits, vocab_size: int) -> int:
    if bits == "auto":
        return smallest_bits(vocab_size)
    bits = int(bits)
    if bits < 1:
        raise ValueError("bits must be >= 1")
    if vocab_size > 2 ** bits - 1:
        raise ValueError(f"vocabulary of {vocab_size} words needs bits >= "
                         f"{smallest_bits(vocab_size)} (got bits={bits})")
    return bits


def cipher(vocab: list[tuple[str, int]], bits, smoothing: str = "nf") -> dict:
    """The cipher table.

    Returns {"bits", "code" (V, b) int8 0/1, "k" (V,), "c" (V, b) = code/k,
    "beta" (V,), "q" (b,), "u" (b,), "rep" (V, b), "x" (V+1, b+1)} where x row i < V is
    [0, rep_i] and row V is x(EDGE) = e_0.
    """
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r}")
    V = len(vocab)
    bits = resolve_bits(bits, V)
    counts = [c for _, c in vocab]

    code = np.zeros((V, bits), dtype=np.int8)
    for t in range(V):
        for p in code_positions(t, bits):
            code[t, p] = 1
    k = code.sum(axis=1).astype(np.int64)
    c = code.astype(np.float64) / k[:, None].astype(np.float64)

    # q = Σ_t f_t c_t / Σ_t f_t
    total = float(sum(counts))
    q = np.zeros(bits, dtype=np.float64)
    if total > 0:
        for t in range(V):
            q += counts[t] * c[t]
        q /= total
    else:
        q[:] = 1.0 / bits  # choice: no tokens at all -> uniform share
    if bits > 1:
        u = (1.0 - q) / (bits - 1)
    else:
        u = None  # 0/0; rep = c (choice)

    # β_t
    n_of_f = Counter(counts)  # number of vocabulary words (<unk> included) with count f
    beta = np.zeros(V, dtype=np.float64)
    for t in range(V):
        f = counts[t]
        if smoothing == "nf":
            beta[t] = 1.0 / n_of_f[f]
        elif smoothing == "f":
            beta[t] = f / (f + 1.0)
        else:
            beta[t] = 1.0

    rep = np.zeros((V, bits), dtype=np.float64)
    for t in range(V):
        if u is None:
            rep[t] = c[t]
        else:
            rep[t] = beta[t] * c[t] + (1.0 - beta[t]) * u

    D = bits + 1
    x = np.zeros((V + 1, D), dtype=np.float64)
    for t in range(V):
        x[t, 0] = 0.0
        x[t, 1:] = rep[t]
    x[V, 0] = 1.0  # EDGE

    return {"bits": bits, "code": code, "k": k, "c": c, "beta": beta, "q": q,
            "u": u, "rep": rep, "x": x}


def x_row(x: np.ndarray, context_id: int) -> np.ndarray:
    """x(c) for a word id c, or x(EDGE) (the last row) for c == EDGE."""
    if context_id == EDGE:
        return x[x.shape[0] - 1]
    return x[context_id]


# ---------------------------------------------------------------------------
# §3 Contextual vectors
# ---------------------------------------------------------------------------

def cooccurrences(docs_ids: list[list[int]], window: int = 5,
                  include_self: bool = True) -> dict[tuple[int, int, int], int]:
    """n(t, c, d): key (center_id, context_id, d), context EDGE beyond either end."""
    n: dict[tuple[int, int, int], int] = {}
    for doc in docs_ids:
        L = len(doc)
        for i in range(L):
            t = doc[i]
            for d in range(-window, window + 1):
                if d == 0 and not include_self:
                    continue
                j = i + d
                if 0 <= j < L:
                    ctx = doc[j]
                else:
                    ctx = EDGE
                key = (t, ctx, d)
                n[key] = n.get(key, 0) + 1
    return n


def weight(d: int, context_id: int, counts: list[int], M: int, weighting: str) -> float:
    """w(d, c). counts[c] = f_c (vocabulary counts, <unk> included); f_EDGE = 0."""
    if weighting == "flat":
        return 1.0
    if weighting == "harmonic":
        if d == 0:
            return 1.0
        return 1.0 / abs(d)
    if weighting == "cosine":
        if context_id == EDGE:
            f_c = 0
        else:
            f_c = counts[context_id]
        return (math.cos(2.0 * math.pi * abs(d) * f_c / M) + 1.0) / 2.0
    raise ValueError(f"unknown weighting {weighting!r}")


def post(block: np.ndarray, transform: str = "neglog", epsilon: float = 1e-3,
         marginal=None) -> np.ndarray:
    """Post-process one D-block. pmi/ppmi compare it with `marginal`, the sum of every
    word's block at the same position: log(block_j / Σ block) - log(marginal_j / Σ marginal),
    element by element (pmi: zeros -> epsilon in both, as neglog; ppmi: max(., 0), 0 where the
    block is 0)."""
    block = np.asarray(block, dtype=np.float64)
    if transform in ("pmi", "ppmi"):
        out = np.zeros(len(block))
        msum = float(sum(marginal))
        if transform == "pmi":
            filled = [v if v != 0 else epsilon for v in block]
            bsum = sum(filled)
            for j, v in enumerate(filled):
                p_bit = marginal[j] / msum if marginal[j] > 0 else epsilon
                out[j] = math.log(v / bsum) - math.log(p_bit)
            return out
        bsum = float(sum(block))
        for j, v in enumerate(block):
            if v > 0 and marginal[j] > 0:
                out[j] = max(math.log((v / bsum) / (marginal[j] / msum)), 0.0)
        return out
    if transform == "neglog":
        b = block.copy()
        b[b == 0] = epsilon
        b = b / b.sum()
        return -np.log10(b)
    if transform == "log1p":
        return np.log1p(block)
    if transform == "none":
        return block.copy()
    raise ValueError(f"unknown transform {transform!r}")


def vectors(lines, bits=32, window=5, mode="sum", weighting="harmonic", smoothing="nf",
            transform="neglog", epsilon=1e-3, min_count=5, max_vocab=None,
            include_self=True, lowercase=True, max_document_tokens=10000,
            epoch_vocab=None, epoch_marginal=None) -> dict:
    """Full pipeline, sections 0-3.

    `epoch_vocab` ([(word, count)] of an earlier run, in its id order): a frozen run
    (docs/ALGORITHM.md, "Frozen refresh"): the ids and the cipher come from it (its counts
    make the codes and the smoothing), every other word is <unk>; the vocabulary's counts
    (and so the weights and the totals) are the current ones. `epoch_marginal` (the
    "marginal" this function returned for the epoch's corpus): pmi/ppmi compare with it
    instead of the current marginal.

    Returns {"vocab", "ids", "unigram_total" (M), "bits", "docs", "docs_ids", "cooc",
    "cipher", "x", "F" (V, 2m+1, D) per-offset blocks indexed by d + m, "offsets",
    "vectors" (V, D) for mode "sum", (V, D * number of offsets) for "concat"}.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}")

    docs = documents(lines, lowercase=lowercase, max_document_tokens=max_document_tokens)
    if epoch_vocab is None:
        vocab = vocabulary(docs, min_count=min_count, max_vocab=max_vocab)
        cipher_vocab = vocab
    else:
        now = Counter(token for doc in docs for token in doc)
        in_epoch = {w for w, _ in epoch_vocab}
        unk_now = sum(c for w, c in now.items() if w not in in_epoch)
        vocab = [(w, unk_now if w == UNK else now.get(w, 0)) for w, _ in epoch_vocab]
        cipher_vocab = list(epoch_vocab)
    ids = {w: i for i, (w, _) in enumerate(vocab)}
    counts = [c for _, c in vocab]
    M = sum(counts)
    V = len(vocab)

    ciph = cipher(cipher_vocab, bits, smoothing=smoothing)
    b = ciph["bits"]
    x = ciph["x"]
    D = b + 1

    docs_ids = token_ids(docs, vocab)
    cooc = cooccurrences(docs_ids, window=window, include_self=include_self)

    # F_t[d] = Σ_c n(t, c, d) · w(d, c) · x(c), stored at F[t, d + m]
    F = np.zeros((V, 2 * window + 1, D), dtype=np.float64)
    for (t, ctx, d), n in cooc.items():
        F[t, d + window] += n * weight(d, ctx, counts, M, weighting) * x_row(x, ctx)

    offsets = [d for d in range(-window, window + 1) if include_self or d != 0]

    if mode == "sum":
        summed = np.zeros((V, D), dtype=np.float64)
        for t in range(V):
            for d in offsets:
                summed[t] += F[t, d + window]
        marginal = summed.sum(axis=0)  # Σ over every word, <unk> included
        marginal_out = marginal[None, :]
        if epoch_marginal is not None:
            marginal = np.asarray(epoch_marginal)[0]
        out = np.zeros((V, D), dtype=np.float64)
        for t in range(V):
            out[t] = post(summed[t], transform, epsilon, marginal)
    else:
        marginals = {d: F[:, d + window].sum(axis=0) for d in offsets}
        marginal_out = np.stack([marginals[d] for d in offsets])
        if epoch_marginal is not None:
            marginals = {d: np.asarray(epoch_marginal)[i] for i, d in enumerate(offsets)}
        out = np.zeros((V, D * len(offsets)), dtype=np.float64)
        for t in range(V):
            parts = [post(F[t, d + window], transform, epsilon, marginals[d]) for d in offsets]
            out[t] = np.concatenate(parts)

    return {"vocab": vocab, "ids": ids, "unigram_total": M, "bits": b, "docs": docs,
            "docs_ids": docs_ids, "cooc": cooc, "cipher": ciph, "x": x, "F": F,
            "offsets": offsets, "vectors": out, "marginal": marginal_out}


# ---------------------------------------------------------------------------
# Self-check
# ---------------------------------------------------------------------------

if __name__ == "__main__":
    corpus = [
        "The cat sat on the mat. The dog sat on the log!",
        "A cat and a dog; the cat's toy, the dog’s bone.",
        "",
        "the the the cat dog mat log sat on a",
        "Numbers 42 and 7 and under_score words.",
    ]

    # tokenizer
    assert tokenize("The cat's toy, the dog’s bone_2!") == \
        ["the", "cat's", "toy", "the", "dog’s", "bone", "2"]
    assert tokenize("Ab CD", lowercase=False) == ["Ab", "CD"]

    # documents: empty line dropped, long line chunked
    docs = documents(corpus, max_document_tokens=4)
    assert all(1 <= len(doc) <= 4 for doc in docs)
    assert sum(len(doc) for doc in docs) == sum(len(tokenize(line)) for line in corpus)
    assert documents(["a b c d e"], max_document_tokens=2) == [["a", "b"], ["c", "d"], ["e"]]

    # vocabulary: <unk> always present, ranks by (count desc, word asc)
    docs = documents(corpus)
    vocab = vocabulary(docs, min_count=2)
    words = [w for w, _ in vocab]
    assert UNK in words
    assert vocab == sorted(vocab, key=lambda wc: (-wc[1], wc[0]))
    assert sum(c for _, c in vocab) == sum(len(doc) for doc in docs)
    assert len(vocabulary(docs, min_count=1, max_vocab=3)) == 4
    assert dict(vocabulary([["a"]], min_count=5)) == {UNK: 1}
    assert dict(vocabulary([["a"] * 5], min_count=5)) == {"a": 5, UNK: 0}

    # code order for bits=4
    codes = [code_positions(r, 4) for r in range(15)]
    assert len(set(codes)) == 15
    assert codes[:4] == [(0,), (1,), (2,), (3,)]
    assert codes[4] == (0, 1)
    assert codes[4:10] == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    assert codes[14] == (0, 1, 2, 3)
    try:
        code_positions(15, 4)
    except ValueError:
        pass
    else:
        raise AssertionError("rank 15 with bits=4 must raise")
    # colex keys of one k-group are exactly 0 .. C(b,k)-1 (combinatorial number system)
    for b in range(1, 8):
        for kk in range(1, b + 1):
            keys = [_colex_key(p) for p in _codes_with_k_ones(b, kk)]
            assert keys == list(range(math.comb(b, kk)))

    # §4 invariant: Σ_{c,d} n(t,c,d) = f_t (2m+1)
    for m in (1, 2, 5):
        ids = token_ids(docs, vocab)
        n = cooccurrences(ids, window=m)
        per_center = Counter()
        for (t, _, _), cnt in n.items():
            per_center[t] += cnt
        for t, (_, f) in enumerate(vocab):
            assert per_center[t] == f * (2 * m + 1), (t, per_center[t], f, m)
        n_noself = cooccurrences(ids, window=m, include_self=False)
        assert sum(n_noself.values()) == sum(f for _, f in vocab) * 2 * m

    # rep rows sum to 1 for each smoothing
    for smoothing in SMOOTHINGS:
        for b in (4, 5, 8, 32):
            ci = cipher(vocab, b, smoothing=smoothing)
            assert np.all(np.abs(ci["rep"].sum(axis=1) - 1.0) <= 1e-12), (smoothing, b)
            assert np.allclose(ci["c"].sum(axis=1), 1.0)
            assert ci["x"].shape == (len(vocab) + 1, b + 1)
            assert np.array_equal(ci["x"][-1], np.eye(b + 1)[0])
    try:
        cipher(vocab, 3)
    except ValueError:
        pass
    else:
        raise AssertionError("too small bits must raise")

    # full pipeline shapes
    for mode in MODES:
        for include_self in (True, False):
            for weighting in WEIGHTINGS:
                for transform in TRANSFORMS:
                    r = vectors(corpus, bits=8, window=2, mode=mode, weighting=weighting,
                                transform=transform, min_count=2,
                                include_self=include_self)
                    V = len(r["vocab"])
                    nd = 5 if include_self else 4
                    want = (V, 9) if mode == "sum" else (V, 9 * nd)
                    assert r["vectors"].shape == want, (r["vectors"].shape, want)
                    assert np.all(np.isfinite(r["vectors"]))
    r = vectors(corpus, bits="auto", min_count=2)
    assert r["bits"] == smallest_bits(len(r["vocab"]))

    print("OK")
