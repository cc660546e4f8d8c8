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
    for text in ["cipher bits, or 'auto' (default: 4096)", "(default: 300)", "(default: 5)",
                 "(default: 0.5)",
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


# --------------------------------------------------------------------------- help text


@pytest.mark.parametrize("command", ["build", "refresh"])
def test_help_describes_every_transform(command, capsys):
    from bitcipher.options import TRANSFORMS

    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for transform in TRANSFORMS:
        assert f"{transform} = " in out, transform  # "neglog = -log10 of F ...", ...
    assert "replaces zeros before the neglog and pmi normalisation" in out


def test_build_help_gives_the_real_stage_order(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.index("tokenize -> count") < out.index("-> unigrams") < out.index("-> cipher") \
        < out.index("-> cooccurrences + vectors") < out.index("-> projection")


# --------------------------------------------------------------------------- options


NON_DEFAULT = {  # BuildOptions field: (flags, value), every value unlike the default
    "bits": (["--bits", "17"], 17),
    "window": (["--window", "4"], 4),
    "mode": (["--mode", "concat"], "concat"),
    "weighting": (["--weighting", "cosine"], "cosine"),
    "smoothing": (["--smoothing", "f"], "f"),
    "transform": (["--transform", "log1p"], "log1p"),
    "epsilon": (["--epsilon", "0.25"], 0.25),
    "min_count": (["--min-count", "3"], 3),
    "max_vocab": (["--max-vocab", "999"], 999),
    "include_self": (["--no-self"], False),
    "lowercase": (["--keep-case"], False),
    "max_document_tokens": (["--max-document-tokens", "77"], 77),
    "input_format": (["--format", "jsonl"], "jsonl"),
    "text_field": (["--text-field", "body"], "body"),
    "project": (["--project", "37"], 37),
    "project_exponent": (["--project-exponent", "0.25"], 0.25),
    "project_center": (["--project-center"], True),
}


def _subparser(command):
    import argparse

    from bitcipher.cli import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", ["build", "refresh"])
def test_every_build_option_reaches_build_options(command):
    import dataclasses

    from bitcipher.cli import build_options_from_args, parser
    from bitcipher.options import DEFAULTS, BuildOptions

    fields = [f.name for f in dataclasses.fields(BuildOptions)]
    assert set(NON_DEFAULT) <= set(fields)
    flags = {flag for action in _subparser(command)._actions for flag in action.option_strings}
    for name in set(fields) - set(NON_DEFAULT):  # a field the CLI does not expose (yet)
        assert f"--{name.replace('_', '-')}" not in flags, \
            f"--{name.replace('_', '-')} is on the command line: add it to NON_DEFAULT"
    for name, (_, value) in NON_DEFAULT.items():
        assert getattr(DEFAULTS, name) != value, name
    base = [command, "--corpus", "c", "--lake", "l"]
    everything = build_options_from_args(parser().parse_args(
        base + [flag for flags, _ in NON_DEFAULT.values() for flag in flags]))
    for name, (_, value) in NON_DEFAULT.items():
        assert getattr(everything, name) == value, name
    for name, (flags, value) in NON_DEFAULT.items():  # one at a time: nothing else moves
        one = build_options_from_args(parser().parse_args(base + flags))
        assert dataclasses.asdict(one) == {**dataclasses.asdict(DEFAULTS), name: value}, name
    assert build_options_from_args(parser().parse_args(base)) == DEFAULTS


# --------------------------------------------------------------------------- fail fast


@pytest.fixture
def no_spark(monkeypatch):
    """Any attempt to start Spark fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("spark_session was called")

    monkeypatch.setattr("bitcipher.runtime.session.spark_session", refuse)


def _other_format_lake(root):
    log = root / "vectors" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text(
        '{"metaData": {"configuration": {"bitcipher.format_version": "99"}}}\n')
    return root


@pytest.mark.parametrize("command", ["build", "refresh"])
def test_bad_input_fails_before_spark(command, no_spark, tmp_path, capsys):
    import time

    corpus = write_shards(tmp_path / "corpus", ["a b c"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    lake = str(tmp_path / "lake")
    cases = [
        (["--corpus", "/nonexistent", "--lake", lake], 3,
         "corpus path '/nonexistent' does not exist"),
        (["--corpus", str(corpus), "file:///nonexistent/x", "--lake", lake], 3,
         "corpus path 'file:///nonexistent/x' does not exist"),
        (["--corpus", str(tmp_path / "empty"), "--lake", lake], 3, "holds no files"),
        (["--corpus", str(tmp_path / "nothing-*.txt"), "--lake", lake], 3, "holds no files"),
        (["--corpus", str(corpus), "--lake", lake, "--keep-runs", "-1"], 2,
         "--keep-runs must be >= 0"),
        (["--corpus", str(corpus), "--lake", str(tmp_path / "file")], 4, "is a file"),
        (["--corpus", str(corpus), "--lake", str(_other_format_lake(tmp_path / "old"))], 4,
         "table format 99"),
    ]
    for args, code, message in cases:
        started = time.perf_counter()
        assert main([command, *args]) == code, args
        assert time.perf_counter() - started < 5, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert "bitcipher: error: " in err


def test_s3_corpus_is_not_checked_before_spark(no_spark, tmp_path):
    with pytest.raises(AssertionError, match="spark_session was called"):
        main(["build", "--corpus", "s3a://bucket/corpus", "--lake", str(tmp_path / "lake")])


def test_missing_corpus_exits_3_without_a_jvm(tmp_path):
    import time

    code = ("import sys; from bitcipher.cli import main; "
            "rc = main(['build', '--corpus', '/nonexistent', '--lake', sys.argv[1]]); "
            "assert 'pyspark' not in sys.modules and 'py4j' not in sys.modules, 'JVM path'; "
            "sys.exit(rc)")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lake")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert time.perf_counter() - started < 30
    assert "corpus path '/nonexistent' does not exist" in result.stderr
    assert "spark session" not in result.stderr


# --------------------------------------------------------------------------- gensim


def test_export_round_trips_through_gensim(lake, tmp_path):
    from gensim.models import KeyedVectors as GensimKeyedVectors

    import bitcipher

    kv = bitcipher.load_vectors(str(lake))
    out = tmp_path / "vectors.txt"
    assert main(["export", "--format", "word2vec", str(out), "--lake", str(lake)]) == 0
    exported = GensimKeyedVectors.load_word2vec_format(str(out), binary=False)
    assert exported.index_to_key == kv.words
    assert exported.vectors.dtype == np.float32
    assert np.array_equal(exported.vectors, kv.matrix)
    assert [w for w, _ in exported.most_similar("cat", topn=3)] == \
        [w for w, _ in kv.most_similar("cat", 3)]
    # gensim's own writer, from to_gensim(), read back: the same vectors
    again_path = tmp_path / "gensim.txt"
    kv.to_gensim().save_word2vec_format(str(again_path), binary=False)
    again = GensimKeyedVectors.load_word2vec_format(str(again_path), binary=False)
    assert sorted(again.index_to_key) == sorted(kv.words)
    for word in kv.words:
        assert np.array_equal(again[word], kv.vector(word)), word
