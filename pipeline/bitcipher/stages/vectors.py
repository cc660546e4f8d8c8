"""Stage 5, vectors: aggregate the cipher vectors of each word's contexts (ALGORITHM.md §3).

Per partition of the co-occurrence table (all rows of a centre word together, sorted by
(center, offset, context)), the weighted counts form one sparse matrix S and
F = S @ X with X the broadcast context matrix (x(t) = [0, rep_t], x(EDGE) = e_0). Sums run
in float64 in a fixed row order, so the result does not depend on partitioning.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from bitcipher.options import BuildOptions


GLOBAL_TRANSFORMS = ("pmi", "ppmi")
BLOCK_ROWS = 1024  # rows of wide blocks built at once (33 MiB of float64 at 4,097 dims)


def needs_marginal(options: BuildOptions) -> bool:
    """Whether the transform compares each block with the corpus-wide block (PMI)."""
    return options.transform in GLOBAL_TRANSFORMS


def post(blocks: np.ndarray, transform: str, epsilon: float,
         marginal: Optional[np.ndarray] = None) -> np.ndarray:
    """Post-process rows of D-blocks (last axis).

    neglog: -log10 of the block normalised to sum 1 (zeros -> epsilon first); log1p;
    none; pmi: log P(bit | word, offset) - log P(bit | offset), the word's normalised block
    against the normalised `marginal` block (the sum of every word's block; zeros ->
    epsilon first, as neglog); ppmi: max(pmi, 0) without the epsilon (a zero stays 0).
    """
    if transform == "neglog":
        filled = np.where(blocks == 0, epsilon, blocks)
        return -np.log10(filled / filled.sum(axis=-1, keepdims=True))
    if transform == "log1p":
        return np.log1p(blocks)
    if transform in GLOBAL_TRANSFORMS:
        if marginal is None:
            raise ValueError(f"transform {transform!r} needs the corpus-wide marginal")
        total = marginal.sum(axis=-1, keepdims=True)
        p_bit = np.divide(marginal, total, out=np.zeros_like(marginal), where=total > 0)
        if transform == "pmi":
            filled = np.where(blocks == 0, epsilon, blocks)
            p_word = filled / filled.sum(axis=-1, keepdims=True)
            return np.log(p_word) - np.log(np.where(p_bit > 0, p_bit, epsilon))
        # in place, and zeros set after each division: the same numbers as dividing with a
        # `where=` mask, without its slow broadcast path (50x on wide blocks)
        sums = blocks.sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.divide(blocks, sums)
            ratio[np.broadcast_to(~(sums > 0), ratio.shape)] = 0.0
            np.divide(ratio, p_bit, out=ratio)
        ratio[np.broadcast_to(~(p_bit > 0), ratio.shape)] = 0.0
        np.maximum(ratio, 1.0, out=ratio)
        return np.log(ratio, out=ratio)
    return blocks


def offset_weights(offsets: np.ndarray, contexts: np.ndarray, counts_ext: np.ndarray,
                   total: int, weighting: str) -> np.ndarray:
    """w(d, c) per row; `contexts` index `counts_ext` (EDGE = last, with count 0)."""
    if weighting == "flat":
        return np.ones(len(offsets))
    dist = np.abs(offsets).astype(np.float64)
    if weighting == "harmonic":
        return 1.0 / np.maximum(dist, 1.0)
    f_c = counts_ext[contexts].astype(np.float64)
    return (np.cos(2 * np.pi * dist * f_c / max(total, 1)) + 1.0) / 2.0


def vector_blocks(options: BuildOptions) -> int:
    """D-blocks per vector: one per offset in concat mode, else one."""
    return len(options.offsets) if options.mode == "concat" else 1


def vector_dim(options: BuildOptions, bits: int) -> int:
    """Dimension of the vectors: D = bits + 1 per block."""
    return (bits + 1) * vector_blocks(options)


def context_dim(x) -> int:
    """D of a context matrix: a dense (V + 1, D) array or the (sparse, coef, u_ext) parts of
    a wide cipher (:meth:`bitcipher.stages.cipher.Cipher.context`)."""
    return x[2].shape[0] if isinstance(x, tuple) else x.shape[1]


def raw_blocks(center, context, offset, count, x, counts_ext, total, options: BuildOptions):
    """F blocks of the centre words present in these rows, before `post`:
    (ids, float64 array (n_words, n_blocks, D)).

    `x` is the dense context matrix, or for a wide cipher its parts (sparse, coef, u_ext):
    then F = S @ sparse + (S @ coef) u_ext, O(1) work per co-occurrence whatever the bits
    (ALGORITHM.md, wide ciphers)."""
    from scipy import sparse

    edge = len(counts_ext) - 1
    ctx = np.where(context < 0, edge, context).astype(np.int64)
    d = offset.astype(np.int64)
    weights = count.astype(np.float64) * offset_weights(
        d, ctx, counts_ext, total, options.weighting
    )
    ids, row = np.unique(center, return_inverse=True)
    dim = context_dim(x)
    if options.mode == "concat":
        m = options.window
        slot = np.full(2 * m + 1, -1, dtype=np.int64)
        for i, off in enumerate(options.offsets):
            slot[off + m] = i
        n_blocks = len(options.offsets)
        row = row * n_blocks + slot[d + m]
    else:
        n_blocks = 1
    s = sparse.csr_matrix((weights, (row, ctx)), shape=(len(ids) * n_blocks, len(counts_ext)))
    if isinstance(x, tuple):  # a wide cipher: sparse codes + rank-one smoothing
        sparse_x, coef, u_ext = x
        # filled BLOCK_ROWS rows at a time: the products of a slice of rows are those rows
        # of the whole product, and the dense temporaries stay a slice's size instead of
        # two more copies of every block
        f = np.empty((s.shape[0], dim))
        for lo in range(0, s.shape[0], BLOCK_ROWS):
            rows = s[lo:lo + BLOCK_ROWS]
            out = f[lo:lo + BLOCK_ROWS]
            out[...] = (rows @ sparse_x).toarray()
            out += np.outer(rows @ coef, u_ext)
    else:
        f = np.asarray(s @ x)
    return ids.astype(np.int32), f.reshape(len(ids), n_blocks, dim)


def context_marginal(context, offset, count, x, counts_ext, total,
                     options: BuildOptions) -> np.ndarray:
    """Σ_t F_t per block, (n_blocks, D), from the totals n(·, c, d) = Σ_t n(t, c, d) given as
    rows (context, offset, count) in a fixed order: what PMI compares each word with."""
    center = np.zeros(len(context), dtype=np.int64)
    _, f = raw_blocks(center, np.asarray(context), np.asarray(offset), np.asarray(count), x,
                      counts_ext, total, options)
    return f[0] if len(f) else np.zeros((vector_blocks(options), context_dim(x)))


def aggregate_rows(center, context, offset, count, x, counts_ext, total, options: BuildOptions,
                   marginal: Optional[np.ndarray] = None):
    """Vectors of the centre words present in these rows: (ids, float32 matrix).
    `marginal` (:func:`context_marginal`) is needed by the pmi/ppmi transforms."""
    ids, f = raw_blocks(center, context, offset, count, x, counts_ext, total, options)
    v = post(f, options.transform, options.epsilon, marginal)
    return ids, v.reshape(len(ids), -1).astype(np.float32)


def _aggregator(x_bc, counts_bc, total: int, options: BuildOptions,
                marginal_bc=None) -> Callable:
    def aggregate_partition(batches: Iterator):
        cols = [[], [], [], []]
        for batch in batches:
            for i in range(4):
                cols[i].append(batch.column(i).to_numpy())
        if not cols[0]:
            return
        center, context, offset, count = (np.concatenate(c) for c in cols)
        counts_ext = np.append(counts_bc.value, 0)
        ids, vecs = aggregate_rows(center, context, offset, count, x_bc.value, counts_ext,
                                   total, options,
                                   marginal_bc.value if marginal_bc is not None else None)
        yield vector_batch(ids, vecs)

    return aggregate_partition


def cooccurrence_marginal(cooc_df, x: np.ndarray, counts: np.ndarray, total: int,
                          options: BuildOptions) -> np.ndarray:
    """:func:`context_marginal` of a co-occurrence table: the totals n(·, c, d) are integer
    sums (exact in any order), sorted before the float arithmetic, so the marginal does not
    depend on partitioning."""
    from pyspark.sql import functions as F

    rows = (cooc_df.groupBy("context", "offset").agg(F.sum("count").alias("count"))
            .orderBy("context", "offset").toArrow())
    return context_marginal(rows.column("context").to_numpy(), rows.column("offset").to_numpy(),
                            rows.column("count").to_numpy(), x,
                            np.append(np.asarray(counts, dtype=np.int64), 0), total, options)


def contextual_vectors(spark, x: np.ndarray, counts: np.ndarray, total: int,
                       options: BuildOptions, marginal: Optional[np.ndarray] = None) -> Callable:
    """Transformation cooccurrences (partitioned by center, sorted) -> (id, vector).
    For pmi/ppmi pass `marginal` (:func:`cooccurrence_marginal` of the same table)."""
    x_bc = spark.sparkContext.broadcast(x)
    counts_bc = spark.sparkContext.broadcast(np.asarray(counts, dtype=np.int64))
    marginal_bc = spark.sparkContext.broadcast(marginal) if marginal is not None else None
    aggregate = _aggregator(x_bc, counts_bc, total, options, marginal_bc)

    def transform(cooc_df):
        return cooc_df.mapInArrow(aggregate, "id int, vector array<float>")

    return transform


def empty_vector(bits: int, options: BuildOptions,
                 marginal: Optional[np.ndarray] = None) -> list[float]:
    """The vector of a word with no co-occurrences (only `<unk>` with count 0)."""
    block = post(np.zeros((vector_blocks(options), bits + 1)), options.transform,
                 options.epsilon, marginal)
    return block.ravel().astype(np.float32).tolist()


def vector_batch(ids, vecs, value_type=None):
    """Arrow batch (id, vector) of ids and their vectors (the rows of a 2-D array), with
    float32 values unless `value_type` says otherwise (pa.float64() for raw blocks)."""
    import pyarrow as pa

    values = pa.array(vecs.ravel(), value_type or pa.float32())
    width = vecs.shape[1]
    offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int32) * width)
    return pa.RecordBatch.from_arrays(
        [pa.array(ids), pa.ListArray.from_arrays(offsets, values)], names=["id", "vector"]
    )


def marginal_post(spark, marginal: np.ndarray, options: BuildOptions) -> Callable:
    """Transformation raw (id, vector array<double>) -> (id, vector array<float>) for the
    pmi/ppmi transforms."""
    marginal_bc = spark.sparkContext.broadcast(marginal)
    n_blocks, dim = marginal.shape

    def finish(batches: Iterator):
        for batch in batches:
            ids = batch.column(0).to_numpy()
            f = batch.column(1).flatten().to_numpy().reshape(len(ids), n_blocks, dim)
            v = post(f, options.transform, options.epsilon, marginal_bc.value)
            yield vector_batch(ids, v.reshape(len(ids), -1).astype(np.float32))

    def transform(raw_df):
        return raw_df.mapInArrow(finish, "id int, vector array<float>")

    return transform
