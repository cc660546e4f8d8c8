"""Step 1 of bit-cipher: a b-bit code per word from its frequency rank (ALGORITHM.md §2).

Everything here is small (one row per vocabulary word) and runs on the driver with NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

from bitcipher.errors import CapacityError, OptionError


def capacity(bits: int) -> int:
    """Number of distinct non-zero codes of `bits` bits."""
    return 2**bits - 1


def smallest_bits(vocab_size: int) -> int:
    """Smallest b >= 2 whose 2**b - 1 codes cover `vocab_size` words."""
    bits = 2
    while capacity(bits) < vocab_size:
        bits += 1
    return bits


def resolve_bits(bits, vocab_size: int) -> int:
    """The number of bits to use: `bits` itself, or the smallest sufficient one for "auto"."""
    if bits == "auto":
        return smallest_bits(vocab_size)
    if capacity(bits) < vocab_size:
        raise CapacityError(
            f"bits={bits} gives {capacity(bits)} codes but the vocabulary has {vocab_size} words; "
            f"use bits >= {smallest_bits(vocab_size)} (or bits='auto'), or raise min_count / "
            f"set max_vocab"
        )
    return bits


def code_positions(rank: int, bits: int) -> tuple[int, ...]:
    """Positions of the ones in the code of the word of rank `rank`.

    Codes are ordered by their number of ones k; within one k by colex order of the
    position set {p1 < ... < pk}, i.e. by sum C(p_i, i) (the combinatorial number system).
    """
    if rank < 0 or rank >= capacity(bits):
        raise CapacityError(f"rank {rank} has no code with bits={bits} (capacity {capacity(bits)})")
    k = 1
    while rank >= comb(bits, k):
        rank -= comb(bits, k)
        k += 1
    positions = []
    p = bits
    for i in range(k, 0, -1):
        p -= 1
        while comb(p, i) > rank:
            p -= 1
        positions.append(p)
        rank -= comb(p, i)
    return tuple(reversed(positions))


def code_matrix(n_words: int, bits: int) -> np.ndarray:
    """(n_words, bits) 0/1 matrix: row r is the code of rank r (:func:`code_positions`).

    The one-hot and two-hot codes, all a vocabulary of up to b + C(b, 2) words needs, are
    laid out with NumPy in the same order (colex: p2 ascending, then p1); any further ranks
    take :func:`code_positions` one by one.
    """
    codes = np.zeros((n_words, bits), dtype=np.int8)
    ones = min(n_words, bits)
    codes[np.arange(ones), np.arange(ones)] = 1
    twos = min(max(n_words - bits, 0), comb(bits, 2))
    if twos:
        p2 = np.repeat(np.arange(1, bits), np.arange(1, bits))[:twos]
        p1 = (np.arange(twos) - p2 * (p2 - 1) // 2)
        rows = bits + np.arange(twos)
        codes[rows, p1] = 1
        codes[rows, p2] = 1
    for rank in range(bits + comb(bits, 2), n_words):
        codes[rank, list(code_positions(rank, bits))] = 1
    return codes


@dataclass(frozen=True)
class Cipher:
    """The cipher table: one row per vocabulary word, indexed by id (= rank)."""

    bits: int
    counts: np.ndarray  # (V,) int64
    codes: np.ndarray  # (V, b) int8
    rep: np.ndarray  # (V, b) float64, each row sums to 1

    @property
    def dim(self) -> int:
        """D = b + 1: the edge channel plus the b bits."""
        return self.bits + 1

    def context_matrix(self) -> np.ndarray:
        """(V + 1, D) float64: row t < V is x(t) = [0, rep_t]; row V is x(EDGE) = e_0."""
        x = np.zeros((len(self.counts) + 1, self.dim), dtype=np.float64)
        x[:-1, 1:] = self.rep
        x[-1, 0] = 1.0
        return x


def smoothing_beta(counts: np.ndarray, smoothing: str) -> np.ndarray:
    """beta_t per ALGORITHM §2."""
    counts = np.asarray(counts, dtype=np.int64)
    if smoothing == "nf":
        values, inverse, n_of_f = np.unique(counts, return_inverse=True, return_counts=True)
        return 1.0 / n_of_f[inverse].astype(np.float64)
    if smoothing == "f":
        return counts / (counts + 1.0)
    if smoothing == "none":
        return np.ones(len(counts), dtype=np.float64)
    raise OptionError(f"unknown smoothing {smoothing!r}")


def build_cipher(counts, bits: int, smoothing: str = "nf") -> Cipher:
    """Cipher of a vocabulary whose counts are given in rank order."""
    counts = np.asarray(counts, dtype=np.int64)
    bits = resolve_bits(bits, len(counts))
    codes = code_matrix(len(counts), bits)
    c = codes / codes.sum(axis=1, keepdims=True)
    total = counts.sum()
    q = (counts[:, None] * c).sum(axis=0) / total if total > 0 else np.full(bits, 1.0 / bits)
    u = (1.0 - q) / (bits - 1)
    beta = smoothing_beta(counts, smoothing)[:, None]
    rep = beta * c + (1.0 - beta) * u[None, :]
    return Cipher(bits=bits, counts=counts, codes=codes, rep=rep)
