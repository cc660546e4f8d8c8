"""The fused merge task of stages 3 and 5: co-occurrence counts -> table part and vectors.

Each merge task holds every partial count of its centre words (:mod:`bitcipher.stages.cooccurrences`
routes them there), sums them, writes them as one Parquet file of the cooccurrences table and
aggregates its centre words' vectors (:mod:`bitcipher.stages.vectors`) from the same arrays,
so the table is not read back. The build runs it on Spark's partitions
(:func:`cooccurrences_and_vectors`); the refresh calls :func:`cooccurrence_part` on the
buckets of its merged totals.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from bitcipher.keys import KeyCodec, run_starts
from bitcipher.lake.schemas import arrow_schema
from bitcipher.lake.tables import (SORTED_INTEGERS, npz_parts, read_npz, write_npz,
                                    write_parquet)
from bitcipher.options import BuildOptions
from bitcipher.stages.cooccurrences import summed_keys
from bitcipher.stages.vectors import (aggregate_rows, context_dim, needs_marginal, raw_blocks,
                                      vector_batch, vector_blocks)


SPILL_DIR = "spill"  # under the run folder, removed once the projection is done


def spilled_parts(spill_dir: str) -> list[int]:
    """Part numbers of the files :func:`spill_vectors` wrote under `spill_dir`."""
    return npz_parts(spill_dir, "part")


def parts_frame(spark, parts: list[int], tasks: Optional[int] = None):
    """DataFrame (part int) of numbered files in `tasks` tasks (default: one per part),
    consecutive parts together in equal numbers, one apart at most (hash partitioning of the
    part numbers would put some parts in the same task and leave cores idle)."""
    from pyspark.sql import functions as F

    parts = sorted(int(p) for p in parts)
    # the JVM makes the rows (spark.range splits them evenly): a DataFrame of a Python RDD
    # would start a second set of Python workers, for RDD jobs, beside the SQL ones of the
    # tasks that read the files (about 200 MiB more in a local build)
    frame = spark.range(0, len(parts), 1, max(min(tasks or len(parts), len(parts)), 1))
    first = parts[0] if parts else 0
    if parts == list(range(first, first + len(parts))):
        part = F.col("id") + first
    else:
        part = F.element_at(F.array(*[F.lit(p) for p in parts]), (F.col("id") + 1).cast("int"))
    return frame.select(part.cast("int").alias("part"))


def remove_tree(uri: str) -> None:
    """Remove a folder (local or object storage) if it exists."""
    from fsspec.core import url_to_fs

    from bitcipher.lake.storage import fsspec_uri

    fs, path = url_to_fs(fsspec_uri(uri))
    if fs.exists(path):
        fs.rm(path, recursive=True)


def spilled_file(spill_dir: str, part: int, kind: str = "part") -> str:
    """``spill_dir/part-NNNNN.npz``, where :func:`spill_vectors` writes part `part`; `kind`
    ``"finished"`` names the copy the projection makes once a part's vectors are finished
    (``finished-NNNNN.npz``), ``"vectors"`` the finished vectors tasks write for the driver
    (:func:`made_vectors`)."""
    return f"{spill_dir}/{kind}-{part:05d}.npz"


def spill_vectors(spill_dir: str, part: int, ids: np.ndarray, vecs: np.ndarray,
                  kind: str = "part") -> None:
    """Write one task's vectors (``ids``, ``vectors``) to :func:`spilled_file` (wide vectors
    on their way to the projection stay out of the JVM)."""
    write_npz(spilled_file(spill_dir, part, kind), ids=ids, vectors=vecs)


def read_spilled(spill_dir: str, part: int, kind: str = "part"):
    """(ids, vectors) of :func:`spill_vectors`."""
    z = read_npz(spilled_file(spill_dir, part, kind))
    return z["ids"], z["vectors"]


def made_vectors(folder: str, dim: int, unk_vector=None):
    """(ids int32, float32 rows) of the vectors tasks wrote to `folder` (``vectors-NNNNN.npz``:
    ids, vectors; a frozen run's bucket tasks, a projection's vector tasks), and the rows of
    `unk_vector` = (ids, rows) after them."""
    ids, rows = [np.empty(0, np.int32)], [np.empty((0, dim), np.float32)]
    for part in npz_parts(folder, "vectors"):
        z = read_npz(spilled_file(folder, part, "vectors"))
        ids.append(z["ids"].astype(np.int32))
        rows.append(z["vectors"].astype(np.float32, copy=False))
    if unk_vector is not None:
        ids.append(np.asarray(unk_vector[0], np.int32))
        rows.append(np.asarray(unk_vector[1], np.float32))
    return np.concatenate(ids), np.concatenate(rows)


def cooccurrence_part(keys: np.ndarray, counts: np.ndarray, codec: KeyCodec, out_dir: str,
                      part: int, x: np.ndarray, counts_ext: np.ndarray, total: int, options,
                      raw: bool, spill_dir: Optional[str] = None, frozen=None,
                      only: Optional[np.ndarray] = None):
    """Summed, sorted co-occurrence keys of whole centre words -> file `part` of the
    cooccurrences table under `out_dir`, and those words' vectors: (ids, 2-D array), the raw
    float64 blocks when `raw` (pmi/ppmi, finished later), else the finished float32 ones.
    With `spill_dir` the vectors go to a file there (:func:`spill_vectors`), or, raw ones,
    nowhere (the projection makes them from the table part: :func:`table_blocks`), and the
    array returned has no columns. `frozen` = (marginal or None, projection or None) of a cipher
    epoch: the vectors are finished here with the epoch's marginal and projected with its
    basis (float32, nothing spilled). `only` (sorted ids, with `frozen`): the vectors of
    these centre words only; the table part holds every row all the same."""
    import pyarrow as pa

    center, offset, context = codec.decode(keys)
    context = codec.table_context(context)
    center, context, offset = (center.astype(np.int32), context.astype(np.int32),
                               offset.astype(np.int8))
    write_parquet(pa.Table.from_arrays(
        [pa.array(center), pa.array(context), pa.array(offset), pa.array(counts)],
        schema=arrow_schema("cooccurrences")), out_dir, part, SORTED_INTEGERS)
    if frozen is not None:
        marginal, projection = frozen
        if only is not None:
            pick = np.isin(center, only)
            center, context, offset, counts = (center[pick], context[pick], offset[pick],
                                               counts[pick])
            if not len(center):
                dim = (projection.k if projection is not None
                       else vector_blocks(options) * context_dim(x))
                return np.empty(0, np.int32), np.empty((0, dim), np.float32)
        ids, vecs = aggregate_rows(center, context, offset, counts, x, counts_ext, total,
                                   options, marginal)
        if projection is not None:
            vecs = projection.apply(vecs)
        return ids, vecs
    if raw and spill_dir is not None:
        # the projection makes these words' raw blocks from the part just written
        # (:func:`table_blocks`): no wide float64 blocks written and read back; the keys
        # are sorted, so the centres are too
        ids = center[run_starts(center)]
        return ids, np.empty((len(ids), 0))
    if raw:
        ids, f = raw_blocks(center, context, offset, counts, x, counts_ext, total, options)
        vecs = f.reshape(len(ids), -1)
    else:
        ids, vecs = aggregate_rows(center, context, offset, counts, x, counts_ext, total,
                                   options)
    if spill_dir is not None:
        spill_vectors(spill_dir, part, ids, vecs)
        vecs = vecs[:, :0]
    return ids, vecs


def table_blocks(cooc_dir: str, x_bc, counts_bc, total: int, options: BuildOptions,
                 rows: int) -> Callable:
    """blocks_of(part) for :func:`bitcipher.stages.projection.project_spilled`: the raw
    blocks (pmi/ppmi, before `post`) of the centre words of file `part` of the
    cooccurrences table at `cooc_dir`, made from its rows as :func:`cooccurrence_part`
    would make them: a context manager giving (the part's centre ids, sorted; an iterator
    of their blocks, (n, n_blocks * D) float64, `rows` words at a time, in id order). A
    word's block depends on its own rows only, in the order the part holds them, so it is
    the same, bit for bit, whichever words it is made with."""
    from contextlib import contextmanager

    @contextmanager
    def blocks_of(part: int):
        from bitcipher.lake.tables import read_parquet_part

        table = read_parquet_part(cooc_dir, part)
        center = table.column("center").to_numpy()
        context = table.column("context").to_numpy()
        offset = table.column("offset").to_numpy()
        counts = table.column("count").to_numpy()
        del table
        starts = run_starts(center)
        ids = center[starts]  # the part is sorted by centre
        bounds = np.append(starts, len(center))
        counts_ext = np.append(counts_bc.value, 0)

        def blocks():
            for lo in range(0, len(ids), rows):
                a, b = bounds[lo], bounds[min(lo + rows, len(ids))]
                made, f = raw_blocks(center[a:b], context[a:b], offset[a:b], counts[a:b],
                                     x_bc.value, counts_ext, total, options)
                yield f.reshape(len(made), -1)

        yield ids, blocks()

    return blocks_of


def _fused(vocab_size: int, out_dir: str, x_bc, counts_bc, total: int,
           options: BuildOptions, spill_dir: Optional[str] = None, frozen_bc=None) -> Callable:
    raw = needs_marginal(options) and frozen_bc is None

    def merge_write_aggregate(batches: Iterator):
        import pyarrow as pa
        from pyspark import TaskContext

        keys, counts = summed_keys(batches)
        if not len(keys):
            return
        ids, vecs = cooccurrence_part(keys, counts, KeyCodec(vocab_size, options.window),
                                      out_dir, TaskContext.get().partitionId(), x_bc.value,
                                      np.append(counts_bc.value, 0), total, options, raw,
                                      spill_dir,
                                      frozen_bc.value if frozen_bc is not None else None)
        yield vector_batch(ids, vecs, pa.float64() if raw else None)

    return merge_write_aggregate


def cooccurrences_and_vectors(spark, out_dir: str, vocab_size: int, x: np.ndarray,
                              counts: np.ndarray, total: int, options: BuildOptions,
                              spill_dir: Optional[str] = None, frozen=None) -> Callable:
    """Transformation partial counts (partitioned by center) -> (id, vector).

    Each task sums its partial counts, writes them as one Parquet file of the
    cooccurrences table under `out_dir` (named by partition, so a retried task overwrites
    its own file) and aggregates the vectors of its centre words from the same arrays.
    For pmi/ppmi (:func:`bitcipher.stages.vectors.needs_marginal`) the vectors are the raw
    blocks in float64, to be finished by :func:`bitcipher.stages.vectors.marginal_post` once
    the whole table is known. With `spill_dir` (a projection follows) the vectors go to files
    there and the rows carry empty vectors. With `frozen` (:func:`cooccurrence_part`) they
    are the finished, projected float32 vectors.
    """
    x_bc = spark.sparkContext.broadcast(x)
    counts_bc = spark.sparkContext.broadcast(np.asarray(counts, dtype=np.int64))
    frozen_bc = spark.sparkContext.broadcast(frozen) if frozen is not None else None
    fused = _fused(vocab_size, out_dir, x_bc, counts_bc, total, options, spill_dir, frozen_bc)
    kind = "double" if needs_marginal(options) and frozen is None else "float"

    def transform(partial_df):
        return partial_df.mapInArrow(fused, f"id int, vector array<{kind}>")

    return transform
