"""Querying built vectors: nearest neighbours, similarity, export (apart from the trainer)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from bitcipher.errors import InputError

COSINE_SQL = """
CREATE OR REPLACE TEMPORARY FUNCTION cosine(a ARRAY<FLOAT>, b ARRAY<FLOAT>) RETURNS DOUBLE
RETURN try_divide(
  aggregate(zip_with(a, b, (x, y) -> CAST(x AS DOUBLE) * y), 0D, (acc, x) -> acc + x),
  sqrt(aggregate(a, 0D, (acc, x) -> acc + CAST(x AS DOUBLE) * x)
       * aggregate(b, 0D, (acc, x) -> acc + CAST(x AS DOUBLE) * x)))
"""
# try_divide: NULL, not an error, for a zero vector (a ppmi vector can be all zeros)


def register_cosine(spark) -> None:
    """Make `cosine(vector_a, vector_b)` available to Spark SQL."""
    spark.sql(COSINE_SQL)


@dataclass
class KeyedVectors:
    """Vectors by word: rows of `matrix` in id order, `words[i]` the word of row i.

    Not gensim's class of the same name (a different API): :meth:`to_gensim` gives one.
    """

    words: list[str]
    counts: np.ndarray
    matrix: np.ndarray  # float32 (V, dim)

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}
        norms = np.linalg.norm(self.matrix.astype(np.float64), axis=1, keepdims=True)
        self._unit = self.matrix / np.where(norms == 0, 1, norms)

    @classmethod
    def from_frame(cls, vectors_df) -> "KeyedVectors":
        table = vectors_df.orderBy("id").select("word", "count", "vector").toArrow()
        words = table.column("word").to_pylist()
        counts = table.column("count").to_numpy()
        flat = table.column("vector").combine_chunks()
        values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        dim = len(values) // max(len(words), 1)
        return cls(words, counts, values.reshape(len(words), dim))

    def vector(self, word: str) -> np.ndarray:
        if word not in self.index:
            raise InputError(f"{word!r} is not in the vocabulary ({len(self.words):,} words)")
        return self.matrix[self.index[word]]

    def similarity(self, a: str, b: str) -> float:
        return float(self._unit[self.index[a]] @ self._unit[self.index[b]]) \
            if a in self.index and b in self.index else float("nan")

    def most_similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to `word` (itself excluded)."""
        self.vector(word)
        scores = self._unit @ self._unit[self.index[word]]
        scores[self.index[word]] = -np.inf
        k = min(k, len(scores) - 1)
        top = np.argpartition(-scores, k)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]
        return [(self.words[i], float(scores[i])) for i in top[:k]]

    def to_gensim(self):
        """The same words and vectors as a ``gensim.models.KeyedVectors``.

        Keys in the same order (row i = ``words[i]``), float32 vectors of ``vector_size``
        dimensions, and each word's corpus count as gensim's ``count`` attribute
        (``get_vecattr(word, "count")``; gensim's ``save_word2vec_format`` orders its
        output by it). gensim's ``most_similar`` then ranks as :meth:`most_similar` does.

        Raises
        ------
        ImportError
            gensim is not installed (``pip install gensim``, or the ``test`` extra).
        """
        try:
            from gensim.models import KeyedVectors as GensimKeyedVectors
        except ImportError as exc:
            raise ImportError("KeyedVectors.to_gensim() needs gensim: pip install "
                              "'gensim>=4.4' (or bit-cipher[test])") from exc
        matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        kv = GensimKeyedVectors(vector_size=matrix.shape[1], count=0, dtype=np.float32)
        kv.add_vectors(list(self.words), matrix)
        kv.allocate_vecattrs(["count"], [np.int64])
        kv.expandos["count"][:] = np.asarray(self.counts, dtype=np.int64)
        return kv

    def save_word2vec(self, path: str) -> None:
        """word2vec text format, loadable by gensim's KeyedVectors.load_word2vec_format."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"{len(self.words)} {self.matrix.shape[1]}\n")
            for word, row in zip(self.words, self.matrix):
                fh.write(word + " " + " ".join(repr(float(x)) for x in row) + "\n")

    def save_npy(self, path: str) -> tuple[str, str]:
        """`path` (.npy matrix, row i = id i) and a sibling .vocab.json with words and counts."""
        base = path[:-4] if path.endswith(".npy") else path
        np.save(base + ".npy", self.matrix)
        with open(base + ".vocab.json", "w", encoding="utf-8") as fh:
            json.dump({"words": self.words, "counts": [int(c) for c in self.counts]}, fh)
        return base + ".npy", base + ".vocab.json"


def export(kv: KeyedVectors, fmt: str, out: str) -> list[str]:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if fmt == "word2vec":
        kv.save_word2vec(out)
        return [out]
    if fmt == "npy":
        return list(kv.save_npy(out))
    raise InputError(f"unknown export format {fmt!r}; use word2vec or npy")
