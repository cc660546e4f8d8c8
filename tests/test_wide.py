"""Wide ciphers (sparse codes + rank-one smoothing) and the projection stage, against the
dense NumPy reference (tests/reference.py) and a NumPy SVD."""

import hashlib
import random

import numpy as np
import pytest
import reference
from conftest import CORPUS_A, CORPUS_B, write_shards
from test_pipeline import check_against_reference, reference_opts

from bitcipher import BuildOptions, build
from bitcipher.lake.tables import Lake, published, read_table
from bitcipher.stages.cipher import DENSE_MAX_BITS, build_cipher
from bitcipher.stages.projection import (BOUND, PROJECTION_FILE, Projection, basis_from_gram, grid,
                                         mirror_lower, partial_gram, quantize, sign_convention)


def zipf_lines(n_words=420, n_lines=160, length=14, seed=0):
    """Lines over `n_words` distinct words with Zipf-like frequencies; every word occurs."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(n_words)]
    weights = [1.0 / (i + 1) for i in range(n_words)]
    lines = [" ".join(rng.choices(words, weights, k=length)) for _ in range(n_lines)]
    lines.append(" ".join(words))  # every word at least once
    return lines


LINES = zipf_lines()
WIDE = 300  # above DENSE_MAX_BITS, below the vocabulary: two-hot codes in use


def test_wide_context_parts_equal_the_dense_reference():
    counts = np.sort(np.random.default_rng(1).integers(1, 50, 700))[::-1]
    vocab = [(f"w{i:03d}", int(c)) for i, c in enumerate(counts)]
    cipher = build_cipher(counts, WIDE, "nf")
    assert cipher.bits > DENSE_MAX_BITS and (cipher.ones == 2).any()
    s, coef, u_ext = cipher.context_parts()
    x = s.toarray() + coef[:, None] * u_ext[None, :]
    ref = reference.cipher(vocab, WIDE, "nf")
    np.testing.assert_allclose(x, ref["x"], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(cipher.codes, ref["code"])


def test_wide_blocks_built_in_slices_equal_the_dense_product(monkeypatch):
    """raw_blocks fills the wide blocks BLOCK_ROWS rows at a time: every bit as in one
    product, and the values those of the dense S @ X."""
    from bitcipher.stages import vectors

    rng = np.random.default_rng(7)
    counts = np.sort(rng.integers(1, 80, 700))[::-1]
    cipher = build_cipher(counts, WIDE, "nf")
    x = cipher.context()
    n = 5000
    center = np.sort(rng.integers(0, 60, n))
    context = rng.integers(-1, len(counts), n)  # -1: the document edge
    offset = rng.choice([-2, -1, 1, 2], n)
    count = rng.integers(1, 9, n)
    options = BuildOptions(bits=WIDE, window=2, mode="concat", min_count=1, project=None)
    counts_ext = np.append(counts, 0)
    args = (center, context, offset, count, x, counts_ext, int(counts.sum()), options)
    monkeypatch.setattr(vectors, "BLOCK_ROWS", 7)
    ids, sliced = vectors.raw_blocks(*args)
    monkeypatch.setattr(vectors, "BLOCK_ROWS", 10**9)
    ids_whole, whole = vectors.raw_blocks(*args)
    np.testing.assert_array_equal(ids, ids_whole)
    assert sliced.tobytes() == whole.tobytes()
    # the dense product, computed apart: S (word x offset rows, weighted counts) @ X
    s_parts, coef, u_ext = cipher.context_parts()
    dense_x = s_parts.toarray() + coef[:, None] * u_ext[None, :]
    total = int(counts.sum())
    weights = [n * reference.weight(int(d), int(t) if t >= 0 else reference.EDGE,
                                    counts.tolist(), total, options.weighting)
               for n, d, t in zip(count, offset, context)]
    slot = {d: i for i, d in enumerate(options.offsets)}
    expected = np.zeros((len(ids), len(options.offsets), dense_x.shape[1]))
    row_of = {int(c): i for i, c in enumerate(ids)}
    for c, t, d, w in zip(center, context, offset, weights):
        expected[row_of[int(c)], slot[int(d)]] += w * dense_x[t if t >= 0 else len(counts)]
    np.testing.assert_allclose(sliced, expected, rtol=1e-10, atol=1e-12)


def tables(spark, tmp_path, options, lines=LINES, shards=3):
    corpus = write_shards(tmp_path / "corpus", lines, shards)
    lake = Lake(str(tmp_path / "lake"))
    build(spark, str(corpus), lake, options, report=lambda _: None)
    run = published(lake).run
    out = {name: read_table(spark, lake, name, run=run).toPandas()
           for name in ("unigrams", "cooccurrences")}
    out["vectors"] = read_table(spark, lake, "vectors").toPandas()
    return lake, out


@pytest.mark.parametrize("options", [
    BuildOptions(bits=WIDE, window=2, min_count=1, project=None),  # ppmi, sum
    BuildOptions(bits=WIDE, window=1, mode="concat", transform="neglog", min_count=1,
                 smoothing="f", project=None),
], ids=["ppmi-sum", "neglog-concat"])
def test_wide_build_matches_the_dense_reference(spark, tmp_path, options):
    _, got = tables(spark, tmp_path, options)
    expected = reference.vectors(LINES, **reference_opts(options))
    assert len(expected["vocab"]) > WIDE
    check_against_reference(got, expected, options)


def numpy_projection(v, k, exponent, center):
    """An independent projection: SVD of the (centred) float64 matrix, the same sign
    convention (largest-magnitude component of each right singular vector positive)."""
    x = v.astype(np.float64)
    mean = x.mean(axis=0) if center else 0.0
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = sign_convention(vt[:k].T)
    return ((x - mean) @ basis) * s[:k] ** (exponent - 1.0)


@pytest.mark.parametrize("center,exponent", [(False, 0.5), (True, 1.0)])
def test_projection_equals_a_numpy_svd(spark, tmp_path, center, exponent):
    base = BuildOptions(bits=WIDE, window=2, min_count=1, project=None)
    options = BuildOptions(**{**base.recorded(), "project": 12, "project_center": center,
                              "project_exponent": exponent})
    lake, got = tables(spark, tmp_path, options)
    expected = reference.vectors(LINES, **reference_opts(base))
    vec = got["vectors"].sort_values("id")
    matrix = np.stack(vec.vector.to_numpy()).astype(np.float64)
    assert matrix.shape == (len(expected["vocab"]), 12)
    want = numpy_projection(expected["vectors"].astype(np.float32), 12, exponent, center)
    scale = np.abs(want).max()
    np.testing.assert_allclose(matrix, want, rtol=0, atol=2e-3 * scale)
    # the basis is saved with the run and reproduces the table from the raw vectors
    proj = Projection.load(lake.table(published(lake).run, PROJECTION_FILE))
    assert (proj.k, proj.center, proj.exponent) == (12, center, exponent)
    again = proj.apply(expected["vectors"].astype(np.float32))
    np.testing.assert_allclose(again, matrix, rtol=0, atol=2e-3 * scale)


def test_quantised_gramian_is_exact_whatever_the_split():
    rng = np.random.default_rng(3)
    v = (rng.standard_normal((5000, 40)) * 8).astype(np.float32)
    s = grid(len(v))
    q = quantize(v, s)
    whole = q.T @ q
    parts = sum(q[i:i + 700].T @ q[i:i + 700] for i in range(0, len(q), 700))
    assert np.array_equal(whole, parts)
    assert np.abs(whole).max() < 2.0**52


def test_gramian_summed_in_place_by_parts_equals_the_integer_product():
    """partial_gram adds each part's lower triangle into one matrix (BLAS's rank-k update);
    mirrored, it is Qᵀ Q computed in exact int64 arithmetic, and the column sums too."""
    rng = np.random.default_rng(5)
    v = (rng.standard_normal((4100, 33)) * rng.exponential(4, 33)).astype(np.float32)
    s = grid(len(v))
    gram, colsum = None, None
    for lo in range(0, len(v), 1300):  # parts of uneven size, one of them over GRAM_CHUNK
        gram, colsum = partial_gram(v[lo:lo + 1300], s, gram, colsum)
    assert np.array_equal(np.triu(gram, 1), np.zeros_like(gram))  # upper left for mirror_lower
    q = np.rint(np.clip(v.astype(np.float64), -BOUND, BOUND) * s).astype(np.int64)
    want = (q.T @ q).astype(np.float64)
    for block in (7, 16, 512):  # blocks of rows that do and do not divide D = 33
        assert np.array_equal(mirror_lower(gram.copy(), block), want)
    assert np.array_equal(colsum, q.sum(axis=0).astype(np.float64))


def test_spilled_files_read_and_written_a_slice_of_rows_at_a_time(tmp_path):
    """npz_row_writer's file is what np.savez writes (np.load and read_npz read it);
    npz_rows gives its rows back in slices; a wrong slice or count is refused."""
    from bitcipher.lake.tables import npz_row_writer, npz_rows, read_npz, write_npz

    rng = np.random.default_rng(7)
    v = rng.standard_normal((1037, 19)).astype(np.float32)
    ids = np.arange(1037, dtype=np.int32) * 3
    uri = str(tmp_path / "finished-00001.npz")
    with npz_row_writer(uri, {"ids": ids}, "vectors", v.shape, np.float32) as write:
        for lo in range(0, len(v), 400):
            write(v[lo:lo + 400])
    z = read_npz(uri)
    assert np.array_equal(z["ids"], ids) and np.array_equal(z["vectors"], v)
    with np.load(uri) as plain:
        assert np.array_equal(plain["vectors"], v)
    write_npz(str(tmp_path / "part.npz"), ids=ids, vectors=v.astype(np.float64))
    assert read_npz(str(tmp_path / "part.npz"), names=("ids",)).keys() == {"ids"}
    with npz_rows(str(tmp_path / "part.npz"), "vectors") as (shape, read):
        got = [read(300) for _ in range(4)]
        assert shape == v.shape and [len(g) for g in got] == [300, 300, 300, 137]
        assert np.array_equal(np.concatenate(got), v.astype(np.float64))
        assert len(read(300)) == 0
    with pytest.raises(ValueError, match="not of float32"):
        with npz_row_writer(uri, {}, "vectors", v.shape, np.float32) as write:
            write(v.astype(np.float64))
    with pytest.raises(ValueError, match="3 rows of vectors written, not 1037"):
        with npz_row_writer(uri, {}, "vectors", v.shape, np.float32) as write:
            write(v[:3])


def test_in_place_basis_equals_the_whole_matrix_expressions():
    """basis_from_gram works on the driver's one D x D matrix in place; its basis is that of
    the plain expressions (G / s², minus n μ μᵀ, (G + Gᵀ) / 2, then eigh of a copy)."""
    from scipy.linalg import eigh

    rng = np.random.default_rng(6)
    v = (rng.standard_normal((900, 1100)) * rng.exponential(2, 1100)).astype(np.float32)
    s = grid(len(v))
    q = quantize(v, s)
    gram, colsum = q.T @ q, q.sum(axis=0)
    proj = basis_from_gram(gram.copy(), colsum, len(v), s, 12, 1.0, True, overwrite=True)
    mean = colsum / (len(v) * s)
    g = gram / (s * s) - len(v) * np.outer(mean, mean)
    values, vecs = eigh((g + g.T) / 2.0, subset_by_index=[1100 - 12, 1099])
    assert np.array_equal(proj.eigenvalues, np.maximum(values[::-1], 0.0))
    assert np.array_equal(np.abs(proj.basis), np.abs(vecs[:, ::-1]))
    kept = gram.copy()
    basis_from_gram(kept, colsum, len(v), s, 12, 1.0, True)  # without overwrite
    assert np.array_equal(kept, gram)


def test_float32_quantisation_gives_the_float64_integers():
    """quantize's float32 path against the definition in float64, values past the bound,
    exact halves and tiny values included, at grids from 1 to 2**12."""
    rng = np.random.default_rng(5)
    v = np.concatenate([(rng.standard_normal(20000) * 30).astype(np.float32),
                        np.float32([64.0, -64.0, 70.0, -1e9, 0.5, 1.5, -2.5, 1e-30, 0.0])])
    for scale in (1.0, 2.0**5, 2.0**12, grid(27370)):
        want = np.rint(np.clip(v.astype(np.float64), -64.0, 64.0) * scale)
        got = quantize(v, scale)
        assert got.dtype == np.float64
        assert np.array_equal(got, want), scale


PROJECTED = BuildOptions(bits=WIDE, window=2, min_count=1, project=10, project_center=True)


def projected_digest(spark, tmp_path, parts):
    spark.conf.set("spark.bitcipher.partitions", str(parts))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(256 * parts))
    try:
        _, got = tables(spark, tmp_path, PROJECTED, shards=parts + 1)
    finally:
        spark.conf.unset("spark.bitcipher.partitions")
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    vec = got["vectors"].sort_values("id")
    return hashlib.sha256(np.stack(vec.vector.to_numpy()).astype(np.float32).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def projected_baseline(spark, tmp_path_factory):
    return projected_digest(spark, tmp_path_factory.mktemp("projected"), 2)


@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_projected_tables_identical_for_any_partition_count(spark, tmp_path, partitions,
                                                            projected_baseline):
    assert projected_digest(spark, tmp_path, partitions) == projected_baseline


def test_projected_tables_identical_through_files_or_spark(spark, tmp_path, monkeypatch,
                                                           projected_baseline):
    """The projected vectors of a small vocabulary are written to files by their tasks and
    read on the driver (the baseline); past DRIVER_VECTOR_FLOATS they are cached and written
    by Spark: the same table."""
    from bitcipher import finish
    from bitcipher.stages import projection

    out_dirs = []
    project_spilled = projection.project_spilled
    monkeypatch.setattr(finish, "project_spilled", lambda *a, **k: out_dirs.append(
        k.get("out_dir")) or project_spilled(*a, **k))
    assert projected_digest(spark, tmp_path / "files", 2) == projected_baseline
    monkeypatch.setattr(finish, "DRIVER_VECTOR_FLOATS", 0)
    assert projected_digest(spark, tmp_path / "spark", 2) == projected_baseline
    assert out_dirs[0] and out_dirs[0].endswith("/projected") and out_dirs[1:] == [None]


# sha256 of the float32 vectors (rows by id) built by bit-cipher 0.1.0 (before wide ciphers
# and the projection) from these corpora, each line three times, 2 shards, min_count 1
BEFORE = {
    ("a", "paper"): "40839c29e84330cfdb96bc23fb94202256f80e3b581b423b8db0f02d3703eacc",
    ("a", "ppmi256"): "e0578955727a9a680110052fde2897902f308594345ec3eac7a1d044055d0406",
    ("b", "paper"): "313204705fd746406e3033daf82410996b40191385734b9436501bcaf4fd0810",
    ("b", "ppmi256"): "662c598bd948c235612fdcad076e44850e85e1f3bfd77637c7704adb7e6c8b83",
}
SETTINGS = {"paper": BuildOptions(bits=32, window=5, transform="neglog", min_count=1,
                                   project=None),
            "ppmi256": BuildOptions(bits=256, window=2, transform="ppmi", min_count=1,
                                    project=None)}


@pytest.mark.parametrize("corpus,setting", sorted(BEFORE))
def test_narrow_ciphers_unchanged_bit_for_bit(spark, tmp_path, corpus, setting):
    lines = {"a": CORPUS_A, "b": CORPUS_B}[corpus] * 3
    _, got = tables(spark, tmp_path, SETTINGS[setting], lines=lines, shards=2)
    vec = got["vectors"].sort_values("id")
    m = np.stack(vec.vector.to_numpy()).astype(np.float32)
    assert hashlib.sha256(m.tobytes()).hexdigest() == BEFORE[(corpus, setting)]


def test_refresh_with_projection_equals_a_build(spark, tmp_path):
    """The refresh's buckets spill their wide vectors like the build's merge tasks: after a
    shard is added, the refreshed table equals a fresh build bit for bit."""
    from bitcipher.incremental.run import refresh

    corpus = write_shards(tmp_path / "corpus", LINES[:100], 2)
    lake = Lake(str(tmp_path / "refreshed"))
    refresh(spark, str(corpus), lake, PROJECTED, report=lambda _: None)
    write_shards(tmp_path / "corpus", LINES[100:], 1, prefix="more")
    refresh(spark, str(corpus), lake, PROJECTED, report=lambda _: None)
    fresh = Lake(str(tmp_path / "built"))
    build(spark, str(corpus), fresh, PROJECTED, report=lambda _: None)

    def matrix(lk):
        vec = read_table(spark, lk, "vectors").toPandas().sort_values("id")
        return list(vec.word), np.stack(vec.vector.to_numpy()).astype(np.float32)

    (words_a, a), (words_b, b) = matrix(lake), matrix(fresh)
    assert words_a == words_b and a.shape[1] == 10
    assert np.array_equal(a, b)
    assert not any("spill" in str(p) for p in (tmp_path / "refreshed").rglob("*"))
