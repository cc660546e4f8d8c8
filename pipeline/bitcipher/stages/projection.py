"""Stage 6 (optional), projection: every vector onto its top-k principal directions
(docs/ALGORITHM.md, "Projection").

The Gramian G = Σ_t v_t v_tᵀ (D × D) is summed on the executors and decomposed on the
driver, so the driver holds O(D²) whatever the vocabulary. To make the result the same bit
for bit for any partitioning, the vectors are first quantised to integers on a power-of-two
grid small enough that every partial sum of G is an integer below 2**52: float64 sums of
such integers are exact, so they do not depend on the order Spark adds them in. The
projection of a vector is computed the same way (quantised vector times quantised basis),
so a word's projected vector depends only on that word's vector and the basis.

Basis: the eigenvectors of G (centred: G - n μ μᵀ, when ``center``) for the k largest
eigenvalues λ, each with its largest-magnitude component made positive (the first such
component on ties). A vector v maps to ((v - μ) · V_k) λ^((p - 1) / 2) with p the
singular-value ``exponent``: p = 1 is the plain projection (U Σ of the SVD), p = 0.5 the
U Σ^0.5 common for count-based embeddings, p = 0 whitens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Optional

import numpy as np

BOUND = 64.0  # |vector values| are clipped here before quantisation
EXACT = 2.0**52  # every partial sum stays below this: exact in float64
MAX_INPUT_DIM = 8193  # D x D float64 Gramian of at most 512 MiB per task and on the driver
ROW_CHUNK = 512  # rows finished or projected at once in a Python worker
GRAM_CHUNK = 512  # rows of one Gramian product (as fast as 2,048 at D = 4,097; less memory)
SYM_BLOCK = 512  # rows (and columns) of a D x D matrix updated at once
PROJECTION_FILE = "projection.npz"  # beside the run's tables


def grid(n_rows: int, bound: float = BOUND) -> float:
    """The power-of-two scale s of the vector grid: n_rows * (bound * s)**2 <= 2**52, so
    every partial sum of the quantised Gramian is an exact float64 integer."""
    return 2.0 ** math.floor(math.log2(math.sqrt(EXACT / max(n_rows, 1)) / bound))


def quantize(v: np.ndarray, scale: float, bound: float = BOUND) -> np.ndarray:
    """round(clip(v, -bound, bound) * scale), float64 integers.

    float32 input is quantised in float32, which gives the same integers: `bound` and the
    power-of-two `scale` are exact in float32, so are the clip and the product, and every
    |value| <= bound * scale < 2**24 rounds exactly; only then is it widened."""
    v = np.asarray(v)
    if v.dtype == np.float32 and bound * scale < 2.0**24 and float(scale).is_integer():
        return np.rint(np.clip(v, np.float32(-bound), np.float32(bound))
                       * np.float32(scale)).astype(np.float64)
    return np.rint(np.clip(np.asarray(v, dtype=np.float64), -bound, bound) * scale)


@dataclass(frozen=True)
class Projection:
    """What a projected table was made with: saved beside the run (``projection.npz``)."""

    k: int
    exponent: float
    center: bool
    scale: float  # vector grid
    basis_scale: float  # basis grid
    mean: np.ndarray  # (D,) μ of the vectors (zeros without centring)
    basis: np.ndarray  # (D, k) V_k λ^((p-1)/2), float64
    quantized_basis: np.ndarray  # (D, k) round(basis * basis_scale)
    offset: np.ndarray  # (k,) μ · basis
    eigenvalues: np.ndarray  # (k,) λ, descending

    def apply(self, v: np.ndarray) -> np.ndarray:
        """Projected float32 rows of float vectors `v` (n, D)."""
        out = np.empty((len(v), self.k), dtype=np.float32)
        for lo in range(0, len(v), ROW_CHUNK):
            q = quantize(v[lo:lo + ROW_CHUNK], self.scale)
            y = (q @ self.quantized_basis) / (self.scale * self.basis_scale)
            out[lo:lo + ROW_CHUNK] = (y - self.offset).astype(np.float32)
        return out

    def save(self, uri: str) -> None:
        """Write the projection as one ``.npz`` file (:data:`PROJECTION_FILE` of a run)."""
        from bitcipher.lake.tables import write_npz

        write_npz(uri, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, uri: str) -> "Projection":
        from bitcipher.lake.tables import read_npz

        z = read_npz(uri)
        return cls(k=int(z["k"]), exponent=float(z["exponent"]), center=bool(z["center"]),
                   scale=float(z["scale"]), basis_scale=float(z["basis_scale"]),
                   mean=z["mean"], basis=z["basis"], quantized_basis=z["quantized_basis"],
                   offset=z["offset"], eigenvalues=z["eigenvalues"])


def partial_gram(v: np.ndarray, scale: float, gram: np.ndarray | None = None,
                 colsum: np.ndarray | None = None):
    """(Gramian, column sums) of the quantised rows of `v`: exact integers in float64, added
    to `gram` and `colsum` in place when given.

    Only the Gramian's lower triangle (diagonal included) is summed, by BLAS's symmetric
    rank-k update straight into `gram` (no product-sized temporary); the upper triangle is
    left as it was: :func:`mirror_lower` fills it once every part is summed. Every sum is an
    exact integer (:func:`grid`), so the triangle holds the same numbers as ``q.T @ q``
    summed in any order."""
    from scipy.linalg.blas import dsyrk

    d = v.shape[1]
    if gram is None:
        gram, colsum = np.zeros((d, d)), np.zeros(d)
    for lo in range(0, len(v), GRAM_CHUNK):
        q = quantize(v[lo:lo + GRAM_CHUNK], scale)
        # gram.T is the same memory in Fortran order, so BLAS updates it in place; its upper
        # triangle is gram's lower one
        out = dsyrk(1.0, q.T, beta=1.0, c=gram.T, trans=0, lower=0, overwrite_c=1)
        if not np.shares_memory(out, gram):
            raise RuntimeError("the Gramian was not updated in place")
        colsum += q.sum(axis=0)
    return gram, colsum


def mirror_lower(gram: np.ndarray, block: int = SYM_BLOCK) -> np.ndarray:
    """Copy the lower triangle of a square matrix onto its upper one, in place, a block of
    rows at a time (no matrix-sized temporary); returns `gram`."""
    d = gram.shape[0]
    for lo in range(0, d, block):
        hi = min(lo + block, d)
        gram[:lo, lo:hi] = gram[lo:hi, :lo].T
        diag = np.tril(gram[lo:hi, lo:hi])
        gram[lo:hi, lo:hi] = diag + np.tril(diag, -1).T
    return gram


def sign_convention(vectors: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude component (the first on ties) is
    positive."""
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def symmetrize(g: np.ndarray, block: int = SYM_BLOCK) -> np.ndarray:
    """(g + gᵀ) / 2 in place, a block at a time; returns `g`."""
    d = g.shape[0]
    for lo in range(0, d, block):
        for lo2 in range(lo, d, block):
            a = g[lo:lo + block, lo2:lo2 + block]
            b = g[lo2:lo2 + block, lo:lo + block]
            s = (a + b.T) / 2.0
            a[...] = s
            b[...] = s.T
    return g


def basis_from_gram(gram: np.ndarray, colsum: np.ndarray, n: int, scale: float, k: int,
                    exponent: float, center: bool, overwrite: bool = False) -> Projection:
    """The projection of `k` dimensions from the exact quantised Gramian of `n` vectors
    (the whole matrix, both triangles); with `overwrite`, `gram` is used up."""
    from scipy.linalg import eigh

    d = gram.shape[0]
    if not 1 <= k <= d:
        raise ValueError(f"projection to {k} dimensions needs 1 <= k <= {d}")
    # in place, a block of rows at a time: the driver holds one D x D matrix (134 MiB at
    # D = 4,097), not one per step; the same numbers as the whole-matrix expressions
    # (gram / s², minus n μ μᵀ, (g + gᵀ) / 2), element by element
    g = gram if overwrite else gram.copy()
    np.divide(g, scale * scale, out=g)
    mean = colsum / (max(n, 1) * scale)
    if center:
        for lo in range(0, d, SYM_BLOCK):
            g[lo:lo + SYM_BLOCK] -= n * np.outer(mean[lo:lo + SYM_BLOCK], mean)
    else:
        mean = np.zeros(d)
    symmetrize(g)
    # g is symmetric, so g.T (its memory in Fortran order) is the matrix LAPACK would get
    # from a Fortran-order copy of g, byte for byte: it works on it in place, without a copy
    values, vecs = eigh(g.T, subset_by_index=[d - k, d - 1], overwrite_a=True)
    del g
    order = np.argsort(-values, kind="stable")
    values, vecs = np.maximum(values[order], 0.0), sign_convention(vecs[:, order])
    power = np.where(values > 0, values, 1.0) ** ((exponent - 1.0) / 2.0)
    power[values <= 0] = 0.0
    basis = vecs * power[None, :]
    peak = float(np.abs(basis).max()) or 1.0
    # |q| <= BOUND * scale; D terms of |q| * |qb| must stay below 2**52
    limit = EXACT / (d * BOUND * scale * peak)
    basis_scale = 2.0 ** math.floor(math.log2(limit))
    quantized_basis = np.rint(basis * basis_scale)
    offset = mean @ basis if center else np.zeros(k)
    return Projection(k=k, exponent=exponent, center=center, scale=scale,
                      basis_scale=basis_scale, mean=mean, basis=basis,
                      quantized_basis=quantized_basis, offset=offset, eigenvalues=values)


def project_matrix(v: np.ndarray, k: int, exponent: float, center: bool) -> tuple:
    """Projection of a whole (n, D) matrix on one machine: (projected float32, Projection).
    The same arithmetic as the Spark stage (:func:`project_spilled`)."""
    scale = grid(len(v))
    gram, colsum = partial_gram(v, scale)
    proj = basis_from_gram(mirror_lower(gram), colsum, len(v), scale, k, exponent, center,
                           overwrite=True)
    return proj.apply(v), proj


def spilled_finisher(spark, options, marginal, blocks: int) -> Callable:
    """finish(ids, values) for spilled vectors: the pmi/ppmi `post` of raw blocks against the
    broadcast `marginal` (float32 out), or the already finished vectors as they are."""
    if marginal is None:
        return lambda ids, v: v
    marginal_bc = spark.sparkContext.broadcast(marginal)

    def finish(ids, v):
        from bitcipher.stages.vectors import post

        out = np.empty((len(v), v.shape[1]), dtype=np.float32)
        for lo in range(0, len(v), ROW_CHUNK):
            f = v[lo:lo + ROW_CHUNK].reshape(-1, blocks, v.shape[1] // blocks)
            out[lo:lo + ROW_CHUNK] = post(f, options.transform, options.epsilon,
                                          marginal_bc.value).reshape(len(f), -1)
        return out

    return finish


def project_spilled(spark, spill_dir: str, parts: list[int], finish: Callable, dim: int,
                    n_rows: int, k: int, exponent: float, center: bool, extra=None,
                    out_dir: Optional[str] = None, blocks_of: Optional[Callable] = None):
    """Project vectors spilled to files (``spill_dir/part-NNNNN.npz``, see
    :func:`bitcipher.stages.merge.spill_vectors`; ``finish(ids, values)`` turns a file's
    values into the float32 vectors the table would hold): the Python workers read them,
    write their partial Gramians beside them and return only the projected vectors, so no
    wide vector passes through the JVM. `extra` (n, D) rows built on the driver (``<unk>``
    without contexts) join the Gramian; `n_rows` bounds the number of vectors (it sets the
    grid). Returns (DataFrame (id, vector array<float>), Projection); with `out_dir`, the
    DataFrame's tasks write the projected vectors there instead (``vectors-NNNNN.npz``: ids,
    vectors; :func:`bitcipher.stages.merge.made_vectors` reads them) and return (part, n).
    With `blocks_of` (:func:`bitcipher.stages.merge.table_blocks`) a part's values are made
    by ``blocks_of(part)`` (a context manager giving the ids and an iterator of their
    values, GRAM_CHUNK rows at a time) instead of read from a spilled file."""
    if dim > MAX_INPUT_DIM:
        from bitcipher.errors import OptionError

        raise OptionError(f"a projection needs vectors of at most {MAX_INPUT_DIM} dimensions "
                          f"(its Gramian is D x D on the driver); these have {dim}: lower "
                          f"--bits, or use mode sum")
    scale = grid(n_rows)

    def gram_parts(batches: Iterator):
        from contextlib import contextmanager

        import pyarrow as pa

        from bitcipher.lake.tables import npz_row_writer, npz_rows, read_npz, write_npz
        from bitcipher.stages.merge import spilled_file

        # one Gramian per task, summed over its parts (exact integers: the sum does not
        # depend on how the parts are grouped), so the driver reads one per core, not one
        # per part
        @contextmanager
        def spilled_values(part: int):
            ids = read_npz(spilled_file(spill_dir, part), names=("ids",))["ids"]
            with npz_rows(spilled_file(spill_dir, part), "vectors") as (shape, read):
                yield ids, (read(GRAM_CHUNK) for _ in range(0, shape[0], GRAM_CHUNK))

        gram, colsum, done = np.zeros((dim, dim)), np.zeros(dim), []
        for batch in batches:
            for part in batch.column(0).to_pylist():
                # GRAM_CHUNK rows at a time: read (or made), finished, summed into the
                # Gramian's lower triangle and written, so a part's vectors are never whole
                # in memory; the finished (float32) vectors go to their own file (a retried
                # task still finds what it read): the projection reads them as they are
                with (blocks_of or spilled_values)(part) as (ids, values), \
                        npz_row_writer(spilled_file(spill_dir, part, "finished"),
                                       {"ids": ids}, "vectors", (len(ids), dim),
                                       np.float32) as write:
                    lo = 0
                    for raw in values:
                        v = finish(ids[lo:lo + len(raw)], raw)
                        partial_gram(v, scale, gram, colsum)
                        write(v)
                        lo += len(raw)
                done.append((part, len(ids)))
        if done:
            first = done[0][0]  # names the task's file: a retried task replaces it
            # the lower triangle only, in blocks of rows up to their diagonal (views, no
            # copy): about half the bytes to write and read
            write_npz(f"{spill_dir}/gram-{first:05d}.npz", colsum=colsum,
                      **{f"rows_{lo:05d}": gram[lo:lo + SYM_BLOCK, :lo + SYM_BLOCK]
                         for lo in range(0, dim, SYM_BLOCK)})
            yield pa.RecordBatch.from_arrays(
                [pa.array([p for p, _ in done], pa.int32()),
                 pa.array([k for _, k in done], pa.int64()),
                 pa.array([first] * len(done), pa.int32())],
                names=["part", "n", "gram"])

    from bitcipher.lake.tables import read_npz
    from bitcipher.runtime.daemon import release_free_memory
    from bitcipher.stages.merge import parts_frame

    tasks = spark.sparkContext.defaultParallelism
    done = parts_frame(spark, parts, tasks).mapInArrow(
        gram_parts, "part int, n long, gram int").collect()
    gram = np.zeros((dim, dim))
    colsum = np.zeros(dim)
    n = sum(int(row["n"]) for row in done)
    for first in sorted({int(row["gram"]) for row in done}):
        z = read_npz(f"{spill_dir}/gram-{first:05d}.npz")
        for lo in range(0, dim, SYM_BLOCK):  # lower triangles (partial_gram), upper zeros
            gram[lo:lo + SYM_BLOCK, :lo + SYM_BLOCK] += z[f"rows_{lo:05d}"]
        colsum += z["colsum"]
        del z
    if extra is not None and len(extra):
        partial_gram(np.asarray(extra), scale, gram, colsum)
        n += len(extra)
    proj = basis_from_gram(mirror_lower(gram), colsum, n, scale, min(k, dim), exponent,
                           center, overwrite=True)
    del gram
    release_free_memory()
    proj_bc = spark.sparkContext.broadcast(proj)

    def project_parts(batches: Iterator):
        import pyarrow as pa

        from bitcipher.lake.tables import write_npz
        from bitcipher.stages.merge import read_spilled, spilled_file
        from bitcipher.stages.vectors import vector_batch

        for batch in batches:
            for part in batch.column(0).to_pylist():
                ids, v = read_spilled(spill_dir, part, kind="finished")  # by gram_parts
                if out_dir is None:
                    yield vector_batch(ids, proj_bc.value.apply(v))
                    continue
                write_npz(spilled_file(out_dir, part, "vectors"), ids=ids.astype(np.int32),
                          vectors=proj_bc.value.apply(v))
                yield pa.RecordBatch.from_arrays([pa.array([part], pa.int32()),
                                                  pa.array([len(ids)], pa.int64())],
                                                 names=["part", "n"])

    schema = "id int, vector array<float>" if out_dir is None else "part int, n long"
    return parts_frame(spark, parts).mapInArrow(project_parts, schema), proj
