"""The stage jobs (jobs/*.py), run one after another, give the tables of the whole build."""

import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import reference
from conftest import CORPUS_A, write_shards

from bitcipher import BuildOptions, build
from bitcipher.lake.tables import Lake, published, read_table
from bitcipher.runtime.session import local_conf

JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"
STAGES = ("tokens", "unigrams", "cipher", "cooccurrences", "vectors")
JOBS = (*STAGES, "build")
OPTIONS = BuildOptions(project=None, bits=6, window=2, min_count=2)


def load_job(name: str):
    """Import jobs/<name>.py under a name of its own (jobs/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"bitcipher_job_{name}",
                                                  JOBS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def jobs():
    return {name: load_job(name) for name in JOBS}


@pytest.fixture(scope="module")
def session(spark):
    """The shared session. A job's spark_session() call, which returns it, also sets the
    local defaults on it (spark.sql.shuffle.partitions above all): put them back after."""
    saved = {key: spark.conf.get(key, None) for key in local_conf()
             if spark.conf.isModifiable(key)}
    yield spark
    for key, value in saved.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


def frame(spark, path: str, fmt: str = "parquet"):
    return spark.read.format(fmt).load(path).toPandas()


def by_id(df, *columns):
    return df.sort_values("id")[list(columns)].reset_index(drop=True)


def vector_matrix(df) -> np.ndarray:
    return np.stack(df.sort_values("id").vector.to_numpy()).astype(np.float32)


@pytest.fixture(scope="module")
def stages(session, jobs, tmp_path_factory):
    """The corpus, the four stage tables made by the jobs, and the build of the same corpus."""
    root = tmp_path_factory.mktemp("jobs")
    corpus = str(write_shards(root / "corpus", CORPUS_A, shards=2))
    out = {name: str(root / "stages" / name) for name in STAGES}
    runs = [
        ("tokens", ["--corpus", corpus, "--out", out["tokens"]]),
        ("unigrams", ["--tokens", out["tokens"], "--out", out["unigrams"],
                      "--min-count", str(OPTIONS.min_count)]),
        ("cipher", ["--unigrams", out["unigrams"], "--out", out["cipher"],
                    "--bits", str(OPTIONS.bits)]),
        ("cooccurrences", ["--tokens", out["tokens"], "--unigrams", out["unigrams"],
                           "--out", out["cooccurrences"], "--window", str(OPTIONS.window),
                           "--partitions", "2"]),
    ]
    for name, argv in runs:
        assert jobs[name].main(argv) == 0, name
    lake = Lake(str(root / "lake"))
    build(session, corpus, lake, OPTIONS, report=lambda _: None)
    run = published(lake).run
    built = {name: read_table(session, lake, name, run=run).toPandas()
             for name in ("unigrams", "cooccurrences", "cipher")}
    built["vectors"] = read_table(session, lake, "vectors").toPandas()
    return {"root": root, "corpus": corpus, "out": out, "built": built}


def run_vectors(jobs, stages, name: str, *flags: str) -> str:
    path = str(stages["root"] / "vectors" / name)
    argv = ["--cooccurrences", stages["out"]["cooccurrences"], "--cipher",
            stages["out"]["cipher"], "--out", path, "--partitions", "3", *flags]
    assert jobs["vectors"].main(argv) == 0
    return path


def test_stage_tables_equal_the_build(session, jobs, stages):
    out, built = stages["out"], stages["built"]
    tokens = frame(session, out["tokens"])
    expected_docs = reference.documents(CORPUS_A)
    assert sorted(map(list, tokens.tokens)) == sorted(expected_docs)

    unigrams = frame(session, out["unigrams"])
    assert by_id(unigrams, "word", "count", "id").equals(
        by_id(built["unigrams"], "word", "count", "id"))

    cipher = frame(session, out["cipher"])
    assert by_id(cipher, "word", "count").equals(by_id(built["cipher"], "word", "count"))
    assert by_id(cipher, "bits", "beta").equals(by_id(built["cipher"], "bits", "beta"))
    assert ([list(c) for c in cipher.sort_values("id").code]
            == [list(c) for c in built["cipher"].sort_values("id").code])

    def rows(df):
        return sorted(zip(df.center, df.context, df.offset, df["count"]))

    cooc = frame(session, out["cooccurrences"])
    assert len(cooc) > 0
    assert rows(cooc) == rows(built["cooccurrences"])

    vectors = frame(session, run_vectors(jobs, stages, "sum"), "delta")
    assert by_id(vectors, "word", "id", "count").equals(
        by_id(built["vectors"], "word", "id", "count"))
    got, want = vector_matrix(vectors), vector_matrix(built["vectors"])
    assert got.shape == (len(unigrams), OPTIONS.bits + 1)
    assert np.array_equal(got, want)


def test_concat_vectors_from_a_narrower_window_without_self(session, jobs, stages, tmp_path):
    """--window 1 --no-self on cooccurrences counted with window 2 and offset 0."""
    options = BuildOptions(project=None, bits=OPTIONS.bits, window=1, min_count=OPTIONS.min_count,
                           mode="concat", weighting="cosine", include_self=False)
    path = run_vectors(jobs, stages, "concat", "--window", "1", "--no-self",
                       "--mode", "concat", "--weighting", "cosine")
    vectors = frame(session, path, "delta")
    lake = Lake(str(tmp_path / "lake"))
    build(session, stages["corpus"], lake, options, report=lambda _: None)
    built = read_table(session, lake, "vectors").toPandas()
    assert by_id(vectors, "word", "id", "count").equals(by_id(built, "word", "id", "count"))
    got, want = vector_matrix(vectors), vector_matrix(built)
    assert got.shape == (len(built), (OPTIONS.bits + 1) * 2)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_vectors_job_refuses_offsets_the_table_lacks(session, jobs, stages, capsys):
    base = ["--cooccurrences", stages["out"]["cooccurrences"], "--cipher",
            stages["out"]["cipher"], "--out", str(stages["root"] / "refused")]
    assert jobs["vectors"].main([*base, "--window", "3"]) == 2
    assert "counted with window 2" in capsys.readouterr().err
    no_self = str(stages["root"] / "cooc-no-self")  # what --no-self would have counted
    session.read.parquet(stages["out"]["cooccurrences"]).where("offset != 0").write.parquet(
        no_self)
    base[1] = no_self
    assert jobs["vectors"].main(base) == 2
    assert "pass --no-self" in capsys.readouterr().err
    assert not (stages["root"] / "refused").exists()


def job_argv(command: str, name: str) -> list[str]:
    """The arguments of jobs/<name>.py in a spark-submit command line."""
    words = shlex.split(command)
    assert words[0] == "spark-submit", command
    return words[words.index(f"jobs/{name}.py") + 1:]


@pytest.mark.parametrize("name", JOBS)
def test_help_shows_defaults_and_an_example(jobs, name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        jobs[name].main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"jobs/{name}.py" in text
    assert "default" in text
    assert "example" in text
    example = text.split("example:\n", 1)[1].strip().splitlines()[0]
    jobs[name].parser().parse_args(job_argv(example, name))


def test_readme_lists_every_job_with_an_example_that_parses(jobs):
    rows = re.findall(r"^\| `(\w+)\.py` \|.*\| `(spark-submit [^`]+)` \|$",
                      (JOBS_DIR / "README.md").read_text(), flags=re.M)
    assert sorted(name for name, _ in rows) == sorted(JOBS)
    for name, command in rows:
        jobs[name].parser().parse_args(job_argv(command, name))


def test_tokens_table_lowercases_like_the_build(session, jobs, tmp_path):
    lines = ["ΟΔΟΣ ΟΔΟΣ", "Σοφία"]
    corpus = write_shards(tmp_path / "corpus", lines, shards=1)
    out = str(tmp_path / "tokens")
    assert jobs["tokens"].main(["--corpus", str(corpus), "--out", out]) == 0
    tokens = frame(session, out)
    assert sorted(map(list, tokens.tokens)) == sorted(reference.documents(lines))
