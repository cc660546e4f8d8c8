"""Stage 5, vectors: aggregate the cipher vectors of each word's contexts (ALGORITHM.md §3).

Per partition of the co-occurrence table (all rows of a centre word together, sorted by
(center, offset, context)), the weighted counts form one sparse matrix S and
F = S @ X with X the broadcast context matrix (x(t) = [0, rep_t], x(EDGE) = e_0). Sums run
in float64 in a fixed row order, so the result does not depend on partitioning.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from .options import BuildOptions


def post(blocks: np.ndarray, transform: str, epsilon: float) -> np.ndarray:
    """Post-process rows of D-blocks (last axis): neglog, log1p or none."""
    if transform == "neglog":
        filled = np.where(blocks == 0, epsilon, blocks)
        return -np.log10(filled / filled.sum(axis=-1, keepdims=True))
    if transform == "log1p":
        return np.log1p(blocks)
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


def aggregate_rows(center, context, offset, count, x, counts_ext, total, options: BuildOptions):
    """Vectors of the centre words present in these rows: (ids, float32 matrix)."""
    from scipy import sparse

    edge = len(counts_ext) - 1
    ctx = np.where(context < 0, edge, context).astype(np.int64)
    d = offset.astype(np.int64)
    weights = count.astype(np.float64) * offset_weights(
        d, ctx, counts_ext, total, options.weighting
    )
    ids, row = np.unique(center, return_inverse=True)
    dim = x.shape[1]
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
    f = np.asarray(s @ x)
    v = post(f, options.transform, options.epsilon)
    return ids.astype(np.int32), v.reshape(len(ids), n_blocks * dim).astype(np.float32)


def _aggregator(x_bc, counts_bc, total: int, options: BuildOptions) -> Callable:
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
                                   total, options)
        yield _vector_batch(ids, vecs)

    return aggregate_partition


def contextual_vectors(spark, x: np.ndarray, counts: np.ndarray, total: int,
                       options: BuildOptions) -> Callable:
    """Transformation cooccurrences (partitioned by center, sorted) -> (id, vector)."""
    x_bc = spark.sparkContext.broadcast(x)
    counts_bc = spark.sparkContext.broadcast(np.asarray(counts, dtype=np.int64))
    aggregate = _aggregator(x_bc, counts_bc, total, options)

    def transform(cooc_df):
        return cooc_df.mapInArrow(aggregate, "id int, vector array<float>")

    return transform


def empty_vector(bits: int, options: BuildOptions) -> list[float]:
    """The vector of a word with no co-occurrences (only `<unk>` with count 0)."""
    block = post(np.zeros((vector_blocks(options), bits + 1)), options.transform, options.epsilon)
    return block.ravel().astype(np.float32).tolist()


def _fused(vocab_size: int, out_dir: str, x_bc, counts_bc, total: int,
           options: BuildOptions) -> Callable:
    def merge_write_aggregate(batches: Iterator):
        import pyarrow as pa
        from pyspark import TaskContext

        from .cooccurrences import KeyCodec, merged_counts
        from .lake import write_parquet
        from .schemas import arrow_schema

        center, context, offset, count = merged_counts(
            batches, KeyCodec(vocab_size, options.window)
        )
        if not len(center):
            return
        table = pa.Table.from_arrays(
            [pa.array(center), pa.array(context), pa.array(offset), pa.array(count)],
            schema=arrow_schema("cooccurrences"),
        )
        write_parquet(table, out_dir, TaskContext.get().partitionId())
        counts_ext = np.append(counts_bc.value, 0)
        ids, vecs = aggregate_rows(center, context, offset, count, x_bc.value, counts_ext,
                                   total, options)
        yield _vector_batch(ids, vecs)

    return merge_write_aggregate


def _vector_batch(ids, vecs):
    import pyarrow as pa

    values = pa.array(vecs.ravel(), pa.float32())
    offsets = pa.array(np.arange(0, vecs.size + 1, vecs.shape[1], dtype=np.int32))
    return pa.RecordBatch.from_arrays(
        [pa.array(ids), pa.ListArray.from_arrays(offsets, values)], names=["id", "vector"]
    )


def cooccurrences_and_vectors(spark, out_dir: str, vocab_size: int, x: np.ndarray,
                              counts: np.ndarray, total: int, options: BuildOptions) -> Callable:
    """Transformation partial counts (partitioned by center) -> (id, vector).

    Each task sums its partial counts, writes them as one Parquet file of the
    cooccurrences table under `out_dir` (named by partition, so a retried task overwrites
    its own file) and aggregates the vectors of its centre words from the same arrays.
    """
    x_bc = spark.sparkContext.broadcast(x)
    counts_bc = spark.sparkContext.broadcast(np.asarray(counts, dtype=np.int64))
    fused = _fused(vocab_size, out_dir, x_bc, counts_bc, total, options)

    def transform(partial_df):
        return partial_df.mapInArrow(fused, "id int, vector array<float>")

    return transform
