"""Key encodings: how words and co-occurrences become int64 keys, and back.

The document edge (the context beyond either end of a document, ALGORITHM.md's EDGE) has
one name, and one representation per encoding:

``EDGE_ID`` = -1
    in tables: ``context`` of the cooccurrences table and of the vectors stage's rows.
``KeyCodec.edge_context`` = ``vocab_size`` (the context after the last word id)
    in co-occurrence keys of one vocabulary (:class:`KeyCodec`: the build's partial counts
    and merge); :meth:`KeyCodec.table_context` turns it into ``EDGE_ID``.
``PACKED_EDGE`` = 2^27 - 1
    in the packed keys of the refresh's merged totals (:func:`pack`, ``lake/totals``), whose
    words are stable word indices, not vocabulary ids.
``EDGE_WORD_KEY`` = -2^63
    in the refresh's count store (``lake/counts``), where words are 64-bit BLAKE2b keys
    (:func:`word_keys`); no word may have it.

Co-occurrence keys and packed keys sort like the triple (centre, offset, context) they
pack, with the edge after every word.

This module depends only on NumPy and the standard library.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

EDGE_ID = -1  # the document edge in tables (cooccurrences.context)

# ---------------------------------------------------------------------------------------
# co-occurrence keys of one vocabulary (the build's merge)


class KeyCodec:
    """Packs (center, offset, context) into one int64 and back.

    ``key = (center * n_offsets + (offset + window)) * n_contexts + context`` with
    ``n_offsets = 2 * window + 1`` and ``n_contexts = vocab_size + 1``: word ids are
    ``0 .. vocab_size - 1`` and context ``edge_context = vocab_size`` is the document edge.
    Sorting keys sorts rows by (center, offset, context).

    The marginal key of a (context, offset) pair (the totals n(·, c, d) summed over centre
    words) is ``context * n_offsets + (offset + window)``, in ``0 .. n_marginal_keys - 1``.
    """

    def __init__(self, vocab_size: int, window: int):
        self.vocab_size = vocab_size
        self.window = window
        self.n_offsets = 2 * window + 1
        self.n_contexts = vocab_size + 1
        if vocab_size * self.n_offsets * self.n_contexts >= 2**62:
            raise OverflowError("vocabulary too large for 64-bit co-occurrence keys")

    @property
    def edge_context(self) -> int:
        """The context that stands for the document edge (``EDGE_ID`` in tables)."""
        return self.vocab_size

    @property
    def n_marginal_keys(self) -> int:
        """Number of (context, offset) marginal keys: contexts times offsets."""
        return self.n_contexts * self.n_offsets

    def encode(self, center, offset, context):
        return (center * self.n_offsets + (offset + self.window)) * self.n_contexts + context

    def decode(self, key):
        """(center, offset, context) of keys; the edge is ``edge_context``."""
        context = key % self.n_contexts
        rest = key // self.n_contexts
        return rest // self.n_offsets, rest % self.n_offsets - self.window, context

    def center_of(self, key):
        """The centre word of keys (what the build partitions by)."""
        return key // (self.n_contexts * self.n_offsets)

    def table_context(self, context):
        """Codec contexts as table ids: ``edge_context`` -> ``EDGE_ID``, words unchanged."""
        return np.where(context == self.edge_context, EDGE_ID, context)

    def marginal_key(self, context, offset):
        """One key per (context, offset): ``context * n_offsets + offset + window``."""
        return context * self.n_offsets + (offset + self.window)

    def decode_marginal(self, key):
        """(context, offset) of marginal keys; the edge is ``edge_context``."""
        return key // self.n_offsets, key % self.n_offsets - self.window


def sum_by_key(keys: np.ndarray, counts: np.ndarray | None = None):
    """Sorted unique keys and their summed counts (each key counted once without `counts`)."""
    if counts is None:
        uniq, n = np.unique(keys, return_counts=True)
        return uniq, n.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    counts = counts[order]
    if len(keys) == 0:
        return keys, counts
    starts = run_starts(keys)
    return keys[starts], np.add.reduceat(counts, starts)


def run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins in sorted `values` (none when empty)."""
    if len(values) == 0:
        return np.empty(0, np.int64)
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    return np.flatnonzero(first)


SUM_EVERY = 1 << 22  # keys a KeySums holds before it sums them


class KeySums:
    """:func:`sum_by_key` of keys and counts received a slice at a time, summed every
    SUM_EVERY keys (integer sums: the same keys and sums as summing them all at once), so
    what it holds is about what the distinct keys take, not every partial sum: the bucket of
    a frequent word gets a partial sum of its rows from every counting run."""

    def __init__(self):
        self.keys: list = []
        self.counts: list = []
        self.pending = 0  # keys received since the last sum
        self.distinct = 0  # keys of the last sum

    def add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        self.keys.append(keys)
        self.counts.append(counts)
        self.pending += len(keys)
        if self.pending >= max(SUM_EVERY, self.distinct):
            self._sum()

    def _sum(self) -> None:
        empty = [np.empty(0, np.int64)]
        keys, counts = sum_by_key(np.concatenate(self.keys + empty),
                                  np.concatenate(self.counts + empty))
        self.keys, self.counts = [keys], [counts]
        self.pending, self.distinct = 0, len(keys)

    def summed(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted unique keys, summed counts) of everything received."""
        self._sum()
        return self.keys[0], self.counts[0]


SMALL_INDEX = 1 << 16  # pairs of two word indices below it are sorted as one uint32 each


def distinct_pairs(a: np.ndarray, b: np.ndarray) -> list:
    """The distinct pairs (a[i], b[i]) of two arrays of non-negative word indices (below
    2^31) with how often each occurs: a list of (a, b, counts) parts, int64, each part
    sorted by (a, b) and no pair in two parts.

    Pairs of two indices below SMALL_INDEX (the frequent words, where indices follow the
    vocabulary's rank) are sorted as uint32 keys, which NumPy sorts about twice as fast as
    int64; the others as int64."""
    a = np.asarray(a)
    b = np.asarray(b)
    if len(a) == 0:
        return []
    if int(a.max()) < SMALL_INDEX and int(b.max()) < SMALL_INDEX:
        small, rest = slice(None), None
    else:
        small = (a < SMALL_INDEX) & (b < SMALL_INDEX)
        rest = ~small
    parts = []
    keys = np.sort((a[small].astype(np.uint32) << 16) | b[small].astype(np.uint32))
    if len(keys):
        keys, n = _run_counts(keys)
        parts.append(((keys >> 16).astype(np.int64), (keys & 0xFFFF).astype(np.int64), n))
    if rest is not None and rest.any():
        keys, n = _run_counts(np.sort((a[rest].astype(np.int64) << 32)
                                      | b[rest].astype(np.int64)))
        parts.append((keys >> 32, keys & 0xFFFFFFFF, n))
    return parts


def _run_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, how often each occurs) of sorted, non-empty `keys`."""
    starts = run_starts(keys)
    return keys[starts], np.diff(np.append(starts, len(keys))).astype(np.int64)


# ---------------------------------------------------------------------------------------
# packed keys of the merged totals (refresh): stable word indices, not vocabulary ids

CTX_BITS = 27
PACKED_EDGE = (1 << CTX_BITS) - 1  # the context slot of the document edge
MAX_WORDS = PACKED_EDGE  # word indices 0 .. MAX_WORDS - 1
OFF_BIAS = 128


def pack(center, offset, context):
    """One int64 per (centre idx, offset, context idx or PACKED_EDGE); sorts like the triple."""
    return (((np.asarray(center, np.int64) << 8) | (np.asarray(offset, np.int64) + OFF_BIAS))
            << CTX_BITS) | np.asarray(context, np.int64)


def unpack(keys: np.ndarray):
    """(centre idx, offset, context idx or PACKED_EDGE) of packed keys."""
    return packed_center(keys), ((keys >> CTX_BITS) & 255) - OFF_BIAS, keys & PACKED_EDGE


def packed_center(keys: np.ndarray):
    """The centre word index of packed keys."""
    return keys >> (CTX_BITS + 8)


# ---------------------------------------------------------------------------------------
# word keys of the count store (refresh): stable across vocabularies

EDGE_WORD_KEY = -(2**63)  # the context key of the document edge; no word may have it
FLUSH_PAIRS = 4_000_000  # co-occurrence pairs a Python worker collects before summing them


def word_keys(words: Sequence[str]) -> np.ndarray:
    """Stable 64-bit keys of words: the first 8 bytes of BLAKE2b(UTF-8), signed little-endian."""
    digest = b"".join(hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                      for w in words)
    return np.frombuffer(digest, dtype="<i8").astype(np.int64)


def lookup_ids(sorted_keys: np.ndarray, ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The id of each key in `keys`, given every known key sorted (`sorted_keys`) with its
    id (`ids`, same order); a key that is not known is an error (a damaged count store)."""
    pos = np.searchsorted(sorted_keys, keys)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    if len(keys) and not np.array_equal(sorted_keys[pos], keys):
        raise RuntimeError("the counts table holds a co-occurrence of a word that has no "
                           "unigram count; the count store is damaged: refresh into a new lake")
    return ids[pos]
