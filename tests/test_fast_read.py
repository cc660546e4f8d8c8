"""The JVM-free read path (delta-rs + pyarrow) against Spark's read of the same Delta table."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORPUS_A, CORPUS_B, CORPUS_C, write_shards

from bitcipher import BuildOptions, build
from bitcipher.cli import main
from bitcipher.errors import LakeError
from bitcipher.query.fast_read import keyed_vectors, read_vectors
from bitcipher.lake.tables import Lake, read_table


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """Two builds into one lake: Delta versions 0 (sum, bits 6) and 1 (concat, bits 7)."""
    tmp = tmp_path_factory.mktemp("fast")
    corpus = write_shards(tmp / "corpus", CORPUS_A * 3 + CORPUS_B + CORPUS_C, shards=3)
    lake = Lake(str(tmp / "lake"))
    build(spark, str(corpus), lake, BuildOptions(bits=6, window=2, min_count=1),
          report=lambda _: None)
    build(spark, str(corpus), lake, BuildOptions(bits=7, window=2, mode="concat",
                                                 min_count=2), report=lambda _: None)
    return lake


def spark_rows(spark, lake, version=None):
    df = read_table(spark, lake, "vectors", as_of=version).orderBy("id")
    return [(r.word, r.id, r["count"], np.array(r.vector, dtype=np.float32))
            for r in df.collect()]


def same_rows(arrow_table, rows):
    assert arrow_table.column_names == ["word", "id", "count", "vector"]
    assert arrow_table.column("word").to_pylist() == [r[0] for r in rows]
    assert arrow_table.column("id").to_pylist() == [r[1] for r in rows]
    assert arrow_table.column("count").to_pylist() == [r[2] for r in rows]
    got = [np.array(v, dtype=np.float32) for v in arrow_table.column("vector").to_pylist()]
    for (word, *_, want), have in zip(rows, got):
        # bit-identical float32, not merely close
        assert have.view(np.uint32).tolist() == want.view(np.uint32).tolist(), word


def test_latest_version_equals_spark(spark, lake):
    rows = spark_rows(spark, lake)
    table = read_vectors(lake)
    assert table.num_rows == len(rows) > 10
    same_rows(table, rows)
    assert len(rows[0][3]) == (2 * 2 + 1) * (7 + 1)  # concat: offsets -2..2, blocks of b + 1


def test_time_travel_equals_spark(spark, lake):
    rows = spark_rows(spark, lake, version=0)
    assert len(rows[0][3]) == 6 + 1  # sum, bits 6
    same_rows(read_vectors(lake, version=0), rows)


def test_keyed_vectors_equal_spark_keyed_vectors(spark, lake):
    from bitcipher.query.keyed_vectors import KeyedVectors

    want = KeyedVectors.from_frame(read_table(spark, lake, "vectors"))
    have = keyed_vectors(lake)
    assert have.words == want.words
    assert have.counts.tolist() == want.counts.tolist()
    assert have.matrix.dtype == np.float32 and have.matrix.shape == want.matrix.shape
    assert np.array_equal(have.matrix.view(np.uint32), want.matrix.view(np.uint32))


def test_neighbors_engines_agree_and_match_numpy(spark, lake, capsys):
    outputs = {}
    for engine in ("fast", "spark"):
        assert main(["neighbors", "cat", "-k", "4", "--lake", lake.root,
                     "--engine", engine]) == 0
        outputs[engine] = capsys.readouterr().out
    assert outputs["fast"] == outputs["spark"]
    # the neighbours themselves, from Spark's rows with NumPy
    rows = spark_rows(spark, lake)
    words = [r[0] for r in rows]
    m = np.stack([r[3] for r in rows]).astype(np.float64)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    sims = m @ m[words.index("cat")]
    sims[words.index("cat")] = -2
    expected = [words[j] for j in np.argsort(-sims, kind="stable")[:4]]
    got = [line.split()[0] for line in outputs["fast"].splitlines()[2:]]
    assert got == expected
    scores = [float(line.split()[1]) for line in outputs["fast"].splitlines()[2:]]
    np.testing.assert_allclose(scores, np.sort(sims)[::-1][:4], rtol=1e-5)


def testfast_engine_starts_no_jvm(lake):
    code = ("import sys; from bitcipher.cli import main; "
            f"rc = main(['neighbors', 'dog', '-k', '2', '--lake', {lake.root!r}]); "
            "assert rc == 0, rc; "
            "assert 'pyspark' not in sys.modules and 'py4j' not in sys.modules, 'JVM path'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "spark session" not in result.stderr
    assert len(result.stdout.splitlines()) == 4  # header, rule, 2 neighbours


def test_unknown_word_exit_code(lake, capsys):
    assert main(["neighbors", "zebra", "--lake", lake.root, "--engine", "fast"]) == 3
    assert "'zebra' is not in the vocabulary" in capsys.readouterr().err


def test_empty_lake_is_refused(tmp_path, capsys):
    assert main(["neighbors", "cat", "--lake", str(tmp_path / "none"), "--engine", "fast"]) == 4
    assert "holds no bit-cipher vectors table" in capsys.readouterr().err


def _copy_with_log(lake, tmp_path, edit, extra=()):
    """A copy of the lake whose latest vectors commit is rewritten by `edit(action)`, with
    the actions `extra` added."""
    copy = tmp_path / "lake"
    shutil.copytree(lake.root, copy)
    log = copy / "vectors" / "_delta_log"
    for crc in log.glob("*.crc"):
        crc.unlink()
    latest = sorted(log.glob("*.json"))[-1]
    actions = [json.loads(line) for line in latest.read_text().splitlines() if line]
    actions = [edit(a) for a in actions if not any(k in a for e in extra for k in e)]
    latest.write_text("".join(json.dumps(a) + "\n" for a in actions + list(extra)))
    return Lake(str(copy))


def test_other_format_version_is_refused(lake, tmp_path):
    def edit(action):
        if "metaData" in action:
            action["metaData"]["configuration"]["bitcipher.format_version"] = "99"
        return action

    with pytest.raises(LakeError, match="format 99"):
        read_vectors(_copy_with_log(lake, tmp_path, edit))


def test_foreign_delta_table_is_refused(lake, tmp_path):
    def edit(action):
        if "metaData" in action:
            action["metaData"]["configuration"] = {}
        return action

    with pytest.raises(LakeError, match="did not write"):
        read_vectors(_copy_with_log(lake, tmp_path, edit))


def test_newer_reader_protocol_is_refused(lake, tmp_path):
    protocol = {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                             "readerFeatures": ["deletionVectors"],
                             "writerFeatures": ["deletionVectors"]}}
    with pytest.raises(LakeError, match="reader protocol 3.*use --engine spark"):
        read_vectors(_copy_with_log(lake, tmp_path, lambda a: a, extra=[protocol]))


def test_missing_deltalake_is_a_clear_error(lake, monkeypatch):
    monkeypatch.setitem(sys.modules, "deltalake", None)  # import fails as if not installed
    with pytest.raises(LakeError, match=r"pip install 'bit-cipher\[sql\]'"):
        read_vectors(lake)


def test_auto_engine_without_deltalake_uses_spark(lake, monkeypatch):
    from bitcipher.cli import fast_engine, parser

    args = parser().parse_args(["neighbors", "cat", "--lake", lake.root])
    assert args.engine == "auto" and fast_engine(args)
    assert not fast_engine(parser().parse_args(["neighbors", "cat", "--master", "local[1]"]))
    assert not fast_engine(parser().parse_args(["neighbors", "cat", "--lake", "s3a://b/lake"]))
    assert fast_engine(parser().parse_args(["neighbors", "cat", "--lake", "s3a://b/lake",
                                             "--engine", "fast"]))
    assert fast_engine(parser().parse_args(["neighbors", "cat", "--lake", "file:///x/lake"]))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert not fast_engine(args)


def test_neighbors_help_documents_engines(capsys):
    with pytest.raises(SystemExit):
        main(["neighbors", "--help"])
    out = capsys.readouterr().out
    assert "(default: auto)" in out and "--engine {auto,fast,spark}" in out
    assert "no JVM" in out


# --------------------------------------------------------------------------- --as-of


@pytest.fixture
def no_spark(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("spark_session was called")

    monkeypatch.setattr("bitcipher.runtime.session.spark_session", refuse)


def _neighbors(lake, *extra):
    return ["neighbors", "cat", "-k", "4", "--lake", lake.root, *extra]


def test_fast_engine_time_travels_like_spark(spark, lake, capsys, monkeypatch):
    from bitcipher.lake.history import delta_commits

    outputs = {}
    for as_of in ("0", "1"):
        assert main(_neighbors(lake, "--engine", "spark", "--as-of", as_of)) == 0
        outputs["spark", as_of] = capsys.readouterr().out
    latest_spark = main(_neighbors(lake, "--engine", "spark")), capsys.readouterr().out

    def refuse(*args, **kwargs):
        raise AssertionError("spark_session was called")

    monkeypatch.setattr("bitcipher.runtime.session.spark_session", refuse)
    commits = delta_commits(lake.vectors)
    assert [c.version for c in commits] == [0, 1]
    for engine in ("fast", "auto"):
        for as_of in ("0", "1"):
            assert main(_neighbors(lake, "--engine", engine, "--as-of", as_of)) == 0
            assert capsys.readouterr().out == outputs["spark", as_of], (engine, as_of)
        # a timestamp: the last version at or before it
        for commit in commits:
            stamp = commit.timestamp.isoformat()
            assert main(_neighbors(lake, "--engine", engine, "--as-of", stamp)) == 0
            assert capsys.readouterr().out == outputs["spark", str(commit.version)], stamp
    # version 0 (sum, bits 6) is not the latest (concat, bits 7): the answers differ
    assert outputs["spark", "0"] != outputs["spark", "1"] == latest_spark[1]
    assert main(_neighbors(lake, "--engine", "fast", "--as-of", "7")) == 4
    assert "has no version 7" in capsys.readouterr().err
    assert main(_neighbors(lake, "--engine", "fast", "--as-of", "1999-01-01")) == 4
    assert "has no version at or before" in capsys.readouterr().err


def test_fast_engine_as_of_starts_no_jvm(lake):
    code = ("import sys; from bitcipher.cli import main; "
            f"rc = main(['neighbors', 'dog', '-k', '2', '--lake', {lake.root!r}, "
            "'--engine', 'fast', '--as-of', '0']); "
            "assert rc == 0, rc; "
            "assert 'pyspark' not in sys.modules and 'py4j' not in sys.modules, 'JVM path'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "spark session" not in result.stderr
    assert len(result.stdout.splitlines()) == 4


# --------------------------------------------------------------------------- load_vectors


def test_load_vectors_engines_and_versions_agree(spark, lake):
    import bitcipher

    from bitcipher.query.keyed_vectors import KeyedVectors

    for as_of in (None, 0, "1"):
        want = KeyedVectors.from_frame(read_table(
            spark, lake, "vectors", as_of=None if as_of is None else int(as_of)))
        for engine in ("fast", "spark", "auto"):
            have = bitcipher.load_vectors(lake.root, as_of=as_of, engine=engine)
            assert have.words == want.words, (engine, as_of)
            assert have.matrix.dtype == np.float32
            assert np.array_equal(have.matrix.view(np.uint32), want.matrix.view(np.uint32))
    assert bitcipher.load_vectors(lake, as_of=0).matrix.shape[1] == 6 + 1
    assert bitcipher.load_vectors(lake).matrix.shape[1] == (2 * 2 + 1) * (7 + 1)


def test_load_vectors_fast_starts_no_spark(lake, no_spark):
    import bitcipher

    assert bitcipher.load_vectors(lake.root, engine="fast").most_similar("cat", 2)
    assert bitcipher.load_vectors(lake.root, as_of=0).most_similar("cat", 2)  # auto: local
