"""The `bitcipher` command line: help, build, sql, neighbors, export."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import CORPUS_A, write_shards

from bitcipher.cli import main

COMMANDS = ["build", "sql", "neighbors", "export", "evaluate"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_defaults_and_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "bitcipher " + command in out
    assert "(default: ./lake)" in out or "(default:" in out


def test_build_help_lists_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ["cipher bits, or 'auto' (default: 256)", "(default: 2)", "(default: 5)",
                 "(default: sum)", "(default: harmonic)", "(default: nf)", "(default: ppmi)",
                 "(default: 0.001)", "(default: 10000)"]:
        assert text in out, text


def test_bad_option_fails_before_spark(capsys):
    assert main(["build", "--corpus", "x", "--window", "0"]) == 2
    assert "window must be between 1 and 50" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "bitcipher.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "build" in out and "neighbors" in out


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    corpus = write_shards(tmp / "corpus", CORPUS_A * 4)
    lake = tmp / "lake"
    assert main(["build", "--corpus", str(corpus), "--lake", str(lake), "--bits", "6",
                 "--window", "2", "--min-count", "2"]) == 0
    return lake


def test_sql_with_cosine(lake, capsys):
    assert main(["sql", "--lake", str(lake),
                 "SELECT a.word, b.word AS other, cosine(a.vector, b.vector) AS sim "
                 "FROM vectors a JOIN vectors b ON a.word = 'cat' AND b.word = 'cat'"]) == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("cat")][0]
    assert abs(float(row.split()[-1]) - 1.0) < 1e-6


def test_sql_sees_every_table(lake, capsys):
    for table in ["vectors", "unigrams", "cooccurrences", "cipher"]:
        assert main(["sql", "--lake", str(lake), f"SELECT count(*) AS n FROM {table}"]) == 0
        out = capsys.readouterr().out.split()
        assert int(out[-1]) > 0


def test_neighbors_match_numpy(lake, spark, capsys):
    from bitcipher.lake.tables import Lake, read_table

    assert main(["neighbors", "cat", "-k", "3", "--lake", str(lake)]) == 0
    out = capsys.readouterr().out.splitlines()[2:]
    got = [line.split()[0] for line in out]
    vec = read_table(spark, Lake(str(lake)), "vectors").toPandas()
    m = np.stack(vec.vector.to_numpy()).astype(np.float64)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    i = list(vec.word).index("cat")
    sims = m @ m[i]
    sims[i] = -2
    assert got == [vec.word.iloc[j] for j in np.argsort(-sims, kind="stable")[:3]]


def test_neighbors_of_unknown_word(lake, capsys):
    assert main(["neighbors", "zebra", "--lake", str(lake)]) == 3
    assert "'zebra' is not in the vocabulary" in capsys.readouterr().err


def test_export_word2vec_round_trip(lake, spark, tmp_path):
    from gensim.models import KeyedVectors

    from bitcipher.lake.tables import Lake, read_table

    out = tmp_path / "vectors.txt"
    assert main(["export", "--format", "word2vec", str(out), "--lake", str(lake)]) == 0
    kv = KeyedVectors.load_word2vec_format(str(out), binary=False)
    vec = read_table(spark, Lake(str(lake)), "vectors").toPandas()
    assert len(kv.index_to_key) == len(vec)
    for word, v in zip(vec.word, vec.vector):
        assert np.array_equal(kv[word], np.asarray(v, dtype=np.float32))


def test_export_npy(lake, spark, tmp_path):
    import json

    from bitcipher.lake.tables import Lake, read_table

    out = tmp_path / "vectors.npy"
    assert main(["export", "--format", "npy", str(out), "--lake", str(lake)]) == 0
    matrix = np.load(out)
    vocab = json.loads((tmp_path / "vectors.vocab.json").read_text())
    vec = read_table(spark, Lake(str(lake)), "vectors").toPandas().sort_values("id")
    assert vocab["words"] == list(vec.word)
    assert np.array_equal(matrix, np.stack(vec.vector.to_numpy()).astype(np.float32))


def test_sql_on_a_lake_without_vectors(tmp_path, capsys):
    assert main(["sql", "--lake", str(tmp_path / "none"), "SELECT 1"]) == 4
    assert "run `bitcipher build` first" in capsys.readouterr().err


def test_evaluate_lake_and_word2vec_agree(lake, tmp_path, capsys):
    out = tmp_path / "vectors.txt"
    assert main(["export", "--format", "word2vec", str(out), "--lake", str(lake)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--lake", str(lake)]) == 0
    from_lake = capsys.readouterr().out
    assert main(["evaluate", "--word2vec", str(out)]) == 0
    from_file = capsys.readouterr().out
    assert "ws353" in from_lake and "google" in from_lake
    assert from_lake == from_file
