"""Corpus and lake on S3 (s3a://) against a real S3-protocol server on loopback (moto).

The same build runs on a local directory and on S3 with the same shards, through the
`bitcipher` command in a child process (one Spark session with hadoop-aws on the classpath
for the module's commands, as a scheduler running them back to back in one driver would);
the tables of both lakes are read back here without Spark (pyarrow over the Delta log and
the Parquet files) and checked against the NumPy reference and each other.
Needs the `s3` extra (moto, s3fs); the first run fetches hadoop-aws and its AWS SDK bundle
from Maven Central (about 640 MB) unless `python -m bitcipher.runtime.jars --s3` did.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import subprocess
import sys
import threading
import time
from urllib.parse import unquote

import numpy as np
import pytest
from conftest import CORPUS_A, CORPUS_B, CORPUS_C, write_shards

import reference
from bitcipher.stages.corpus import list_shards
from bitcipher.errors import InputError

pytest.importorskip("moto.server", reason="needs the s3 extra: pip install -e '.[s3]'")
pytest.importorskip("s3fs", reason="needs the s3 extra: pip install -e '.[s3]'")

from s3server import s3_server  # noqa: E402,F401  (the fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "bitcipher-test"
LINES = CORPUS_A + CORPUS_B + CORPUS_C
OPTIONS = ["--bits", "8", "--window", "2", "--min-count", "1", "--transform", "ppmi",
           "--project", "none"]
REFERENCE = dict(bits=8, window=2, min_count=1, transform="ppmi")
BACKENDS = ["local", "s3"]

OUTPUTS: list[str] = []  # every stdout / stderr of a child process, for the credential check


def _child_env() -> dict:
    """The environment of a child that runs `bitcipher` commands: a 1 GiB driver by default,
    the master of the commands themselves, and Spark's defaults (code generation on, as a
    user's command has them; the other tests' children run with tests/conftest.py's
    $BITCIPHER_SPARK_CONF)."""
    env = dict(os.environ)
    env.setdefault("BITCIPHER_DRIVER_MEMORY", "1g")
    env.pop("BITCIPHER_MASTER", None)
    env.pop("BITCIPHER_SPARK_CONF", None)
    return env


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = _child_env()
    result = subprocess.run([sys.executable, "-m", "bitcipher.cli", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    OUTPUTS.extend([result.stdout, result.stderr])
    return result


# One child process, one Spark session with hadoop-aws, for the module's `bitcipher` commands
# (as a scheduler running them back to back in one driver would): each request line on its
# stdin is a JSON list, ["cli", ARG...] for `bitcipher ARG...` or ["spark_read", LAKE]; each
# answer is one "@@result [exit code, stdout, stderr]" line on its stdout. What the JVM writes
# itself (log4j, on the process's stderr) goes to a file the credential test reads.
SESSION = r"""
import contextlib, io, json, sys
from bitcipher.cli import main
from bitcipher.runtime.session import spark_session

spark_session(master="local[2]", storage=[sys.argv[1]])  # started as an s3a command starts it
protocol = sys.stdout


def spark_read(lake):
    from bitcipher.query.keyed_vectors import register_cosine
    from bitcipher.lake.tables import Lake, register_tables

    spark = spark_session(master="local[2]", storage=[lake])  # the running session, reused
    register_tables(spark, Lake(lake))
    register_cosine(spark)
    rows = spark.sql("SELECT count(*) AS n, sum(count) AS tokens FROM vectors").first()
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    print(json.dumps({
        "n": rows["n"], "tokens": rows["tokens"],
        "cooc": spark.sql("SELECT sum(count) FROM cooccurrences").first()[0],
        "endpoint": hadoop.get("fs.s3a.endpoint"),
        "path_style": hadoop.get("fs.s3a.path.style.access"),
        "log_store": spark.conf.get("spark.delta.logStore.s3a.impl"),
        "conf": sorted(f"{k}={v}" for k, v in spark.sparkContext.getConf().getAll()),
        "set": [f"{r[0]}={r[1]}" for r in spark.sql("SET").collect()],
    }))
    return 0


for line in sys.stdin:
    request = json.loads(line)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(request[1:]) if request[0] == "cli" else spark_read(*request[1:])
    protocol.write("@@result " + json.dumps([code, out.getvalue(), err.getvalue()]) + "\n")
    protocol.flush()
"""


class Session:
    """The module's child process: `run("build", ...)` is `bitcipher build ...` in it."""

    def __init__(self, directory):
        env = _child_env()
        self.log = open(directory / "session.log", "w+")
        self.other: list[str] = []  # stdout lines that are not answers
        self.proc = subprocess.Popen([sys.executable, "-c", SESSION, f"s3a://{BUCKET}/"],
                                     env=env, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines: queue.Queue = queue.Queue()  # its stdout, line by line; None at the end

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=read, daemon=True).start()

    def _ask(self, request: list, timeout: float = 600) -> subprocess.CompletedProcess:
        """Send one request; its answer, or AssertionError if the process ends or gives none
        within `timeout` seconds (then it is killed)."""
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"no answer to {request[:2]} within {timeout} s: "
                                     f"{self.raw_output()[-3000:]}") from None
            if line is None:
                raise AssertionError(f"the session process ended: {self.raw_output()[-3000:]}")
            if line.startswith("@@result "):
                code, out, err = json.loads(line[len("@@result "):])
                OUTPUTS.extend([out, err])
                return subprocess.CompletedProcess(request, code, out, err)
            self.other.append(line)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return self._ask(["cli", *args])

    def spark_read(self, lake: str) -> subprocess.CompletedProcess:
        return self._ask(["spark_read", lake])

    def raw_output(self) -> str:
        self.log.seek(0)
        return self.log.read() + "".join(self.other)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def session(s3_server, tmp_path_factory):
    child = Session(tmp_path_factory.mktemp("s3session"))
    yield child
    child.close()


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory):
    """Three shards (one gzip) plus files a listing must skip (hidden, `_`-prefixed)."""
    directory = write_shards(tmp_path_factory.mktemp("s3corpus") / "corpus", LINES, shards=3)
    plain = directory / "part-002.txt"
    (directory / "part-002.txt.gz").write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    plain.unlink()
    (directory / "_SUCCESS").write_text("")
    (directory / ".hidden.txt").write_text("never read\n")
    return directory


@pytest.fixture(scope="module")
def s3_corpus(s3_server, shards_dir):
    s3_server.create_bucket(BUCKET)
    return s3_server.upload_dir(shards_dir, BUCKET, "corpus")


@pytest.fixture(scope="module")
def places(shards_dir, s3_corpus, tmp_path_factory):
    return {
        "local": {"corpus": str(shards_dir),
                  "lake": str(tmp_path_factory.mktemp("s3lake") / "lake")},
        "s3": {"corpus": s3_corpus, "lake": f"s3a://{BUCKET}/lakes/lake"},
    }


@pytest.fixture(scope="module")
def builds(places, session):
    """`bitcipher build` once per backend (lazily), with the same shards and options, in the
    module's session."""
    done: dict[str, subprocess.CompletedProcess] = {}

    def get(backend: str) -> subprocess.CompletedProcess:
        if backend not in done:
            where = places[backend]
            done[backend] = session.run("build", "--corpus", where["corpus"], "--lake",
                                        where["lake"], *OPTIONS)
        return done[backend]

    return get


# -- reading a lake without Spark -----------------------------------------------------------

def _filesystem(uri: str, server):
    if uri.startswith("s3a://"):
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=server.endpoint, key=server.access_key,
                               secret=server.secret_key, use_listings_cache=False,
                               client_kwargs={"region_name": "us-east-1"})
        return fs, uri[len("s3a://"):]
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(), uri


def _parquet(fs, paths):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in paths:
        with fs.open(path, "rb") as fh:
            tables.append(pq.read_table(fh))
    return pa.concat_tables(tables).to_pandas()


def read_lake(uri: str, server) -> dict:
    """Every table of a lake: the vectors by replaying the Delta log (add minus remove), the
    run tables from the Parquet files of the run the last commit names."""
    fs, root = _filesystem(uri, server)
    log = f"{root}/vectors/_delta_log"
    commits = sorted(p for p in fs.ls(log, detail=False) if p.endswith(".json"))
    live: dict[str, None] = {}
    props: dict = {}
    for commit in commits:
        for line in fs.cat(commit).decode().splitlines():
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = None
            if "remove" in action:
                live.pop(action["remove"]["path"], None)
            if "metaData" in action:
                props = action["metaData"].get("configuration") or {}
    run = props["bitcipher.run"]
    out = {"vectors": _parquet(fs, [f"{root}/vectors/{unquote(p)}" for p in live])
           .sort_values("id").reset_index(drop=True),
           "commits": len(commits), "properties": props, "run": run,
           "manifest": json.loads(fs.cat(f"{root}/runs/{run}/_bitcipher.json")),
           "runs": sorted(p.rstrip("/").rsplit("/", 1)[-1]
                          for p in fs.ls(f"{root}/runs", detail=False))}
    keys = {"unigrams": ["id"], "cipher": ["id"],
            "cooccurrences": ["center", "context", "offset"]}
    for name, key in keys.items():
        files = sorted(p for p in fs.find(f"{root}/runs/{run}/{name}") if p.endswith(".parquet"))
        out[name] = _parquet(fs, files).sort_values(key).reset_index(drop=True)
    return out


def _same(a, b) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for column in a.columns:
        left, right = a[column].to_numpy(), b[column].to_numpy()
        if left.dtype == object and len(left) and isinstance(left[0], np.ndarray):
            assert all(np.array_equal(x, y) for x, y in zip(left, right)), column
        else:
            assert list(left) == list(right), column


# -- tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_build_succeeds(builds, backend):
    result = builds(backend)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("tokenize", "unigrams", "cipher", "cooccurrences", "vectors"):
        assert stage in result.stderr
    assert "3 shards" in result.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_tables_match_numpy_reference(builds, places, s3_server, backend):
    assert builds(backend).returncode == 0
    tables = read_lake(places[backend]["lake"], s3_server)
    expected = reference.vectors(LINES, **REFERENCE)
    uni = tables["unigrams"]
    assert list(zip(uni.word, uni["count"])) == expected["vocab"]
    cooc = tables["cooccurrences"]
    got = {(int(t), int(c), int(d)): int(n)
           for t, c, d, n in zip(cooc.center, cooc.context, cooc.offset, cooc["count"])}
    assert got == expected["cooc"]
    vec = tables["vectors"]
    assert list(vec.word) == [w for w, _ in expected["vocab"]]
    np.testing.assert_allclose(np.stack(vec.vector.to_numpy()).astype(np.float64),
                               expected["vectors"], rtol=2e-6, atol=2e-6)


def test_s3_tables_equal_local_tables(builds, places, s3_server):
    assert builds("local").returncode == 0 and builds("s3").returncode == 0
    local = read_lake(places["local"]["lake"], s3_server)
    remote = read_lake(places["s3"]["lake"], s3_server)
    for name in ("unigrams", "cipher", "cooccurrences", "vectors"):
        _same(local[name], remote[name])
    shards = {"local": local["manifest"]["snapshot"]["shards"],
              "s3": remote["manifest"]["snapshot"]["shards"]}
    for backend, prefix in (("local", "file://"), ("s3", f"s3a://{BUCKET}/corpus/")):
        assert all(s["path"].startswith(prefix) for s in shards[backend]), shards[backend]
    strip = [[(s["path"].rsplit("/", 1)[-1], s["size"], s["tokens"], s["format"])
              for s in shards[b]] for b in BACKENDS]
    assert strip[0] == strip[1]
    assert [s[0] for s in strip[0]] == ["part-000.txt", "part-001.txt", "part-002.txt.gz"]
    assert local["properties"]["bitcipher.options"] == remote["properties"]["bitcipher.options"]


def test_rebuild_on_s3_publishes_a_second_commit_and_removes_the_old_run(
        builds, places, s3_server, session):
    assert builds("s3").returncode == 0
    first = read_lake(places["s3"]["lake"], s3_server)
    result = session.run("build", "--corpus", places["s3"]["corpus"], "--lake",
                         places["s3"]["lake"], "--keep-runs", "0", *OPTIONS)
    assert result.returncode == 0, result.stderr[-3000:]
    second = read_lake(places["s3"]["lake"], s3_server)
    assert second["commits"] == first["commits"] + 1
    assert second["run"] != first["run"]
    assert second["runs"] == [second["run"]]  # --keep-runs 0: the old run folder is gone
    for name in ("unigrams", "cipher", "cooccurrences", "vectors"):
        _same(first[name], second[name])


def test_refresh_on_s3_matches_the_reference_and_keeps_its_totals_there(
        s3_server, s3_corpus, session, tmp_path):
    """`bitcipher refresh` with corpus and lake on S3: from empty (exact), then `--frozen`
    after a new shard arrives (counted alone, its change kept on S3 as a layer on the totals, coded with
    the epoch read back from S3); the tables equal the NumPy reference on all shards with
    the first run's vocabulary (refresh = build, table by table, exact and frozen, is tested
    on local disk)."""
    first = write_shards(tmp_path / "first", CORPUS_A + CORPUS_B, shards=2)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "part-009.txt").write_text("\n".join(CORPUS_C) + "\n", encoding="utf-8")
    corpus = s3_server.upload_dir(first, BUCKET, "refresh-corpus")  # the bucket: s3_corpus
    lake = f"s3a://{BUCKET}/lakes/refreshed"
    args = ("--corpus", corpus, "--lake", lake, *OPTIONS)
    # the second refresh, after the upload, reads what the first one left on S3
    first_run = session.run("refresh", *args)
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    s3_server.upload_dir(extra, BUCKET, "refresh-corpus")
    second_run = session.run("refresh", *args, "--frozen")
    assert second_run.returncode == 0, second_run.stderr[-3000:]
    second_err = second_run.stderr
    assert "totals of version 0 -0 +1 shards" in second_err, second_err[-3000:]
    assert "frozen to run" in second_err, second_err[-3000:]

    before = [line for f in sorted(first.iterdir())
              for line in f.read_text(encoding="utf-8").splitlines()]
    exact = reference.vectors(before, **REFERENCE)  # what the first (exact) refresh fixed
    lines = [line for d in (first, extra) for f in sorted(d.iterdir())
             for line in f.read_text(encoding="utf-8").splitlines()]
    tables = read_lake(lake, s3_server)
    expected = reference.vectors(lines, **REFERENCE, epoch_vocab=exact["vocab"],
                                 epoch_marginal=exact["marginal"])
    assert any(w not in {v for v, _ in exact["vocab"]} for w, _ in
               reference.vocabulary(reference.documents(lines), min_count=1))  # new words
    uni = tables["unigrams"]
    assert list(zip(uni.word, uni["count"])) == expected["vocab"]
    cooc = tables["cooccurrences"]
    assert {(int(t), int(c), int(d)): int(n) for t, c, d, n in
            zip(cooc.center, cooc.context, cooc.offset, cooc["count"])} == expected["cooc"]
    np.testing.assert_allclose(np.stack(tables["vectors"].vector.to_numpy()).astype(np.float64),
                               expected["vectors"], rtol=2e-6, atol=2e-6)
    fs, root = _filesystem(lake, s3_server)
    # the frozen refresh's vectors were written by pyarrow to S3 and committed by Delta's
    # own transaction
    last = sorted(p for p in fs.ls(f"{root}/vectors/_delta_log", detail=False)
                  if p.endswith(".json"))[-1]
    info = [json.loads(line)["commitInfo"] for line in fs.cat(last).decode().splitlines()
            if "commitInfo" in line]
    assert info and info[0]["operation"] == "Manual Update", info
    pointer = json.loads(fs.cat(f"{root}/totals/current.json"))
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(f"{root}/totals"))
    # the frozen refresh's totals are a delta layer on the first refresh's: both are kept
    assert len(pointer["layers"]) == 1
    assert names == sorted(["current.json", *pointer["layers"], pointer["name"]])
    assert pointer["version"] == 1


def test_spark_reads_the_s3_lake_with_the_settings_from_the_environment(
        builds, places, s3_server, session):
    """The module's session (started for s3a:// as a command starts it) reads the lake with
    SQL; its S3A settings came from the environment, never the credentials."""
    assert builds("s3").returncode == 0
    result = session.spark_read(places["s3"]["lake"])
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    expected = reference.vectors(LINES, **REFERENCE)
    assert got["n"] == len(expected["vocab"])
    assert got["tokens"] == sum(c for _, c in expected["vocab"])
    assert got["cooc"] == sum(expected["cooc"].values())
    assert got["endpoint"] == s3_server.endpoint
    assert got["path_style"] == "true"
    assert got["log_store"] == "io.delta.storage.S3SingleDriverLogStore"
    recorded = "\n".join(got["conf"] + got["set"])
    assert s3_server.access_key not in recorded and s3_server.secret_key not in recorded
    assert "hadoop-aws" in recorded  # the JARs went in with spark.jars


def test_listing_shards_on_s3_matches_the_local_directory(s3_corpus, shards_dir):
    local = list_shards(str(shards_dir))
    remote = list_shards(s3_corpus)
    assert [(s.name, s.size, s.format) for s in remote] == \
        [(s.name, s.size, s.format) for s in local]
    assert [s.name for s in remote] == ["part-000.txt", "part-001.txt", "part-002.txt.gz"]
    assert all(s.path.startswith(f"s3a://{BUCKET}/corpus/") and s.mtime > 0 for s in remote)
    # the s3:// spelling and a glob list the same objects
    assert [s.path for s in list_shards(s3_corpus.replace("s3a://", "s3://"))] == \
        [s.path for s in remote]
    assert [s.name for s in list_shards(f"{s3_corpus}/*.gz")] == ["part-002.txt.gz"]


@pytest.mark.parametrize("missing", ["corpus-nope", "corpus/nope/", "corpus/part-9.txt"])
def test_missing_prefix_on_s3_is_an_input_error(s3_corpus, missing):
    with pytest.raises(InputError, match="does not exist"):
        list_shards(f"s3a://{BUCKET}/{missing}")


def test_missing_bucket_is_an_input_error(s3_server):
    with pytest.raises(InputError, match="does not exist"):
        list_shards("s3a://no-such-bucket-bitcipher/corpus")


def test_build_with_a_missing_s3_prefix_exits_3_and_writes_nothing(s3_server, s3_corpus,
                                                                   session):
    lake = f"s3a://{BUCKET}/lakes/never"
    result = session.run("build", "--corpus", f"s3a://{BUCKET}/missing-prefix", "--lake", lake,
                         *OPTIONS)
    assert result.returncode == 3, result.stderr[-3000:]
    assert f"s3a://{BUCKET}/missing-prefix" in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert s3_server.keys(BUCKET, "lakes/never") == []


def test_build_help_offers_no_credential_flags():
    result = _cli("build", "--help")
    assert result.returncode == 0
    text = result.stdout.lower()
    for word in ("secret", "access-key", "access_key", "password", "credential", "token="):
        assert word not in text


def test_credentials_appear_in_no_output_table_or_object(builds, places, s3_server, session):
    """After the child-process tests above: every child's stdout/stderr so far (the session
    process's own log too), every object written to the bucket (Delta log with its table
    properties, manifests, Parquet) and the local lake."""
    assert builds("local").returncode == 0 and builds("s3").returncode == 0
    secrets_ = [s3_server.access_key, s3_server.secret_key]
    assert OUTPUTS, "no child output was recorded"
    for text in [*OUTPUTS, session.raw_output()]:
        for secret in secrets_:
            assert secret not in text
    keys = s3_server.keys(BUCKET, "lakes/")
    assert any(k.endswith("_delta_log/00000000000000000000.json") for k in keys)
    assert any(k.endswith("_bitcipher.json") for k in keys)
    for key in keys:
        data = s3_server.get(BUCKET, key)
        for secret in secrets_:
            assert secret.encode() not in data, key
    for dirpath, _, filenames in os.walk(places["local"]["lake"]):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                data = fh.read()
            for secret in secrets_:
                assert secret.encode() not in data


# -- settings, without a server or Spark ------------------------------------------------------

@pytest.fixture
def fake_s3_jars(tmp_path, monkeypatch):
    """A folder standing in for the S3 JARs (BITCIPHER_S3_JARS), so nothing is fetched."""
    folder = tmp_path / "s3jars"
    folder.mkdir()
    for name in ("hadoop-aws-3.4.2.jar", "bundle-2.29.52.jar"):
        (folder / name).write_bytes(b"")
    monkeypatch.setenv("BITCIPHER_S3_JARS", str(folder))
    for name in ("BITCIPHER_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                 "BITCIPHER_S3_PATH_STYLE", "AWS_REGION", "AWS_DEFAULT_REGION", "BITCIPHER_S3"):
        monkeypatch.delenv(name, raising=False)
    return folder


def test_hadoop_aws_matches_the_hadoop_inside_pyspark():
    import glob
    import zipfile

    import pyspark

    from bitcipher.runtime.session import s3_artifact

    (jar,) = glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars",
                                    "hadoop-client-api-*.jar"))
    with zipfile.ZipFile(jar) as zf:
        props = zf.read("META-INF/maven/org.apache.hadoop/hadoop-client-api/pom.properties")
    version = dict(line.split("=", 1) for line in props.decode().splitlines()
                   if "=" in line and not line.startswith("#"))["version"]
    assert s3_artifact() == f"org.apache.hadoop:hadoop-aws:{version.strip()}"


def test_s3_settings_come_from_the_environment(fake_s3_jars, monkeypatch):
    from bitcipher.runtime.session import s3_conf, uses_s3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANEVERINCONF")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-in-conf")
    assert not uses_s3(["data/kjv", "./lake", None])
    assert uses_s3([["data/a", "s3a://bucket/corpus"], "./lake"])
    assert uses_s3("s3://bucket/lake")
    plain = s3_conf(local=True)  # AWS itself: no endpoint, virtual-host style
    assert "spark.hadoop.fs.s3a.endpoint" not in plain
    assert plain["spark.hadoop.fs.s3a.path.style.access"] == "false"
    assert plain["spark.delta.logStore.s3a.impl"] == "io.delta.storage.S3SingleDriverLogStore"
    assert plain["spark.hadoop.fs.s3a.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert str(fake_s3_jars / "hadoop-aws-3.4.2.jar") in plain["spark.driver.extraClassPath"]

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    conf = s3_conf(local=False)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://10.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-3"
    assert conf["spark.executorEnv.AWS_ENDPOINT_URL"] == "http://10.0.0.1:9000"
    assert "hadoop-aws-3.4.2.jar" in conf["spark.jars"]

    monkeypatch.setenv("BITCIPHER_S3_ENDPOINT", "https://s3.example.org")
    monkeypatch.setenv("BITCIPHER_S3_PATH_STYLE", "0")
    conf = s3_conf(local=True)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "https://s3.example.org"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "false"
    text = json.dumps([plain, conf])
    assert "AKIANEVERINCONF" not in text and "never-in-conf" not in text
    assert "access.key" not in text and "secret.key" not in text


def test_s3_jars_join_the_driver_classpath_and_drop_a_class_archive_that_no_longer_fits(
        fake_s3_jars, monkeypatch, tmp_path):
    from bitcipher.runtime.session import with_s3

    monkeypatch.setenv("BITCIPHER_CACHE", str(tmp_path / "cache"))
    settings = {"spark.driver.extraClassPath": "/delta/a.jar:/delta/b.jar",
                "spark.driver.extraJavaOptions":
                    "-XX:TieredStopAtLevel=1 -XX:SharedArchiveFile=/x/driver-1.jsa -Xshare:auto"}
    out = with_s3(dict(settings), local=True)
    classpath = out["spark.driver.extraClassPath"].split(os.pathsep)
    assert classpath[:2] == ["/delta/a.jar", "/delta/b.jar"]
    assert str(fake_s3_jars / "hadoop-aws-3.4.2.jar") in classpath
    assert "SharedArchiveFile" not in out["spark.driver.extraJavaOptions"]
    assert "-XX:TieredStopAtLevel=1" in out["spark.driver.extraJavaOptions"]
    cluster = with_s3({"spark.jars": "/delta/a.jar"}, local=False)
    assert cluster["spark.jars"].startswith("/delta/a.jar,")


def test_missing_s3_jar_folder_is_reported(tmp_path, monkeypatch):
    from bitcipher.runtime.session import s3_jars

    monkeypatch.setenv("BITCIPHER_S3_JARS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="holds no hadoop-aws JAR"):
        s3_jars()


def test_fsspec_spelling_and_s3fs_options(monkeypatch):
    from fsspec.config import conf

    from bitcipher.lake.storage import fsspec_uri, s3_storage_options

    for name in ("BITCIPHER_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                 "BITCIPHER_S3_PATH_STYLE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(conf, "s3", {})
    assert fsspec_uri("s3a://bucket/lake/vectors") == "s3://bucket/lake/vectors"
    assert fsspec_uri("s3://bucket/x") == "s3://bucket/x"
    assert fsspec_uri("file:///tmp/lake") == "file:///tmp/lake"
    assert fsspec_uri("/tmp/s3a://odd") == "/tmp/s3a://odd"
    assert s3_storage_options() == {"use_listings_cache": False}
    monkeypatch.setenv("BITCIPHER_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    fsspec_uri("s3a://bucket/x")
    assert conf["s3"] == {"use_listings_cache": False, "endpoint_url": "http://127.0.0.1:9",
                          "client_kwargs": {"region_name": "us-west-2"},
                          "config_kwargs": {"s3": {"addressing_style": "path"}}}


ACTIVE_WITHOUT_S3 = """
from bitcipher.runtime.session import spark_session
spark = spark_session(master="local[1]")
try:
    spark_session(storage=["s3a://bucket/lake"])
except RuntimeError as exc:
    print("refused:", exc)
same = spark_session(storage=["/tmp/lake"])
print("reused:", same is spark)
spark.stop()
"""


def test_a_running_session_without_hadoop_aws_is_refused_for_s3():
    env = {k: v for k, v in os.environ.items() if k != "BITCIPHER_S3"}
    env["BITCIPHER_DRIVER_MEMORY"] = "1g"
    result = subprocess.run([sys.executable, "-c", ACTIVE_WITHOUT_S3], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "refused: this Spark session was started without hadoop-aws" in result.stdout
    assert "reused: True" in result.stdout
