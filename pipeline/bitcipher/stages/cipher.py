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
    """(n_words, bits) 0/1 matrix: row r is the code of rank r (:func:`code_positions`),
    laid out by :func:`code_position_matrix`."""
    return dense_codes(code_position_matrix(n_words, bits), bits)


DENSE_MAX_BITS = 256  # up to here the vector step multiplies by the dense context matrix


def code_position_matrix(n_words: int, bits: int) -> np.ndarray:
    """(n_words, k_max) int32: row r holds the positions of the ones of code r
    (:func:`code_positions`), ascending, padded with -1; O(n_words * k_max) whatever `bits`
    is. The one-hot and two-hot codes, all a vocabulary of up to b + C(b, 2) words needs,
    are laid out with NumPy in the same order (colex: p2 ascending, then p1); any further
    ranks take :func:`code_positions` one by one."""
    ones = min(n_words, bits)
    twos = min(max(n_words - bits, 0), comb(bits, 2))
    rest = n_words - ones - twos
    k_max = 1 if twos == 0 else 2
    extra = [code_positions(rank, bits) for rank in range(ones + twos, n_words)] if rest else []
    if extra:
        k_max = max(k_max, max(len(e) for e in extra))
    pos = np.full((n_words, k_max), -1, dtype=np.int32)
    pos[:ones, 0] = np.arange(ones)
    if twos:
        p2 = np.repeat(np.arange(1, bits), np.arange(1, bits))[:twos]
        p1 = np.arange(twos) - p2 * (p2 - 1) // 2
        pos[ones:ones + twos, 0] = p1
        pos[ones:ones + twos, 1] = p2
    for i, e in enumerate(extra):
        pos[ones + twos + i, :len(e)] = e
    return pos


def dense_codes(positions: np.ndarray, bits: int) -> np.ndarray:
    """(V, bits) int8 0/1 matrix of codes given by their positions (-1 padded)."""
    codes = np.zeros((len(positions), bits), dtype=np.int8)
    rows, cols = np.nonzero(positions >= 0)
    codes[rows, positions[rows, cols]] = 1
    return codes


@dataclass(frozen=True)
class Cipher:
    """The cipher table: one row per vocabulary word, indexed by id (= rank).

    Stored sparsely, so that wide ciphers (thousands of bits) stay small: the positions of
    each code's ones and the smoothing weight beta_t. The smoothed base vector is
    rep_t = beta_t * c_t + (1 - beta_t) * u with c_t = code_t / k_t and u the spread of the
    unigram bit mass (ALGORITHM.md §2): a sparse part plus a rank-one part.
    """

    bits: int
    counts: np.ndarray  # (V,) int64
    positions: np.ndarray  # (V, k_max) int32, ascending, -1 padded
    beta: np.ndarray  # (V,) float64
    u: np.ndarray  # (b,) float64

    @property
    def dim(self) -> int:
        """D = b + 1: the edge channel plus the b bits."""
        return self.bits + 1

    @property
    def ones(self) -> np.ndarray:
        """(V,) number of ones k_t of each code."""
        return (self.positions >= 0).sum(axis=1)

    def code_lists(self) -> list[list[int]]:
        """Positions of the ones of each code, as lists (the cipher table's ``code``)."""
        return [[int(p) for p in row if p >= 0] for row in self.positions]

    @property
    def codes(self) -> np.ndarray:
        """(V, b) int8 dense codes (small ciphers and tests)."""
        return dense_codes(self.positions, self.bits)

    @property
    def rep(self) -> np.ndarray:
        """(V, b) float64 dense smoothed base vectors, each row sums to 1."""
        c = self.codes / self.ones[:, None]
        return self.beta[:, None] * c + (1.0 - self.beta[:, None]) * self.u[None, :]

    def context_matrix(self) -> np.ndarray:
        """(V + 1, D) float64: row t < V is x(t) = [0, rep_t]; row V is x(EDGE) = e_0."""
        x = np.zeros((len(self.counts) + 1, self.dim), dtype=np.float64)
        x[:-1, 1:] = self.rep
        x[-1, 0] = 1.0
        return x

    def context_parts(self):
        """The context matrix as sparse + rank-one: (csr (V + 1, D), coef (V + 1,),
        u_ext (D,)) with x = sparse + coef[:, None] * u_ext[None, :]; the EDGE row (last)
        is e_0 with coef 0."""
        from scipy import sparse

        v = len(self.counts)
        k = self.ones
        rows, cols = np.nonzero(self.positions >= 0)
        data = (self.beta / k)[rows]
        s = sparse.csr_matrix(
            (np.append(data, 1.0), (np.append(rows, v), np.append(self.positions[rows, cols] + 1, 0))),
            shape=(v + 1, self.dim))
        coef = np.append(1.0 - self.beta, 0.0)
        return s, coef, np.append(0.0, self.u)

    def context(self):
        """What the vector step multiplies by: the dense context matrix up to
        :data:`DENSE_MAX_BITS` bits (the float sums of the paper's settings stay as they
        were), else :meth:`context_parts`."""
        return self.context_matrix() if self.bits <= DENSE_MAX_BITS else self.context_parts()


def cipher_u(counts: np.ndarray, positions: np.ndarray, bits: int) -> np.ndarray:
    """u = (1 - q) / (b - 1), q = the share of the unigram mass on each bit (q uniform for an
    empty corpus). Up to :data:`DENSE_MAX_BITS` with the dense arithmetic of earlier
    versions (same float results), above it from the positions."""
    counts = np.asarray(counts, dtype=np.int64)
    total = counts.sum()
    if total <= 0:
        q = np.full(bits, 1.0 / bits)
    elif bits <= DENSE_MAX_BITS:
        codes = dense_codes(positions, bits)
        c = codes / codes.sum(axis=1, keepdims=True)
        q = (counts[:, None] * c).sum(axis=0) / total
    else:
        k = (positions >= 0).sum(axis=1)
        rows, cols = np.nonzero(positions >= 0)
        q = np.zeros(bits)
        np.add.at(q, positions[rows, cols], counts[rows] / k[rows])
        q = q / total
    return (1.0 - q) / (bits - 1)


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
    positions = code_position_matrix(len(counts), bits)
    return Cipher(bits=bits, counts=counts, positions=positions,
                  beta=smoothing_beta(counts, smoothing), u=cipher_u(counts, positions, bits))


def cipher_from_table(bits: int, counts, codes: list, beta) -> Cipher:
    """The Cipher of a stored cipher table, rows in id order: ``code`` holds the positions
    of each code's ones, ``beta`` the smoothing weight; u follows from them."""
    counts = np.asarray(counts, dtype=np.int64)
    k_max = max((len(c) for c in codes), default=1)
    positions = np.full((len(codes), k_max), -1, dtype=np.int32)
    for i, c in enumerate(codes):
        positions[i, :len(c)] = c
    return Cipher(bits=bits, counts=counts, positions=positions,
                  beta=np.asarray(beta, dtype=np.float64), u=cipher_u(counts, positions, bits))
