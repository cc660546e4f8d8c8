"""A real Spark standalone cluster (a master and two workers on 127.0.0.1) builds the same
vectors as local mode, with the package shipped to the executors as a zip. The cluster is
stopped whatever happens."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORPUS_A, CORPUS_B, SMALL_JVM_OPTIONS, write_shards

from bitcipher import BuildOptions, build
from bitcipher.lake.tables import Lake, published, read_table
from bitcipher.runtime.session import cache_dir, package_zip
from bitcipher.runtime.standalone import standalone_cluster

ZIP_NAME = re.compile(r"bitcipher-[0-9a-f]{16}\.zip")

# where the executors import bitcipher from; with more arguments, then `bitcipher ARGS` in
# the same application (the command reuses the running session)
PROBE = """
import json, os, sys
from bitcipher.runtime.session import spark_session
spark = spark_session(master=sys.argv[1], app_name="bitcipher-probe")
files = spark.sparkContext.parallelize(range(4), 4).map(
    lambda _: __import__("bitcipher").__file__).collect()
print("PROBE " + json.dumps({"includes": spark.sparkContext._python_includes, "files": files}),
      flush=True)
if len(sys.argv) > 2:
    from bitcipher.cli import main

    sys.exit(main(sys.argv[2:]))
spark.stop()
"""
OPTIONS = ["--bits", "7", "--window", "3", "--min-count", "2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # the master's and workers' JVMs: C1 only, serial collector (as the executors, conftest)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPARK_DAEMON_JAVA_OPTS", SMALL_JVM_OPTIONS)
        with standalone_cluster(tmp_path_factory.mktemp("cluster"), workers=2, cores=1,
                                memory="1g") as running:
            yield running


def _app_dirs(cluster):
    return {p for w in cluster.worker_dirs() for p in w.glob("app-*")}


def _probe(cluster, *command, **env):
    result = subprocess.run([sys.executable, "-c", PROBE, cluster.url, *command],
                            env=dict(cluster.env, **env), capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("PROBE "))
    return json.loads(line[len("PROBE "):]), result


@pytest.fixture(scope="module")
def cluster_build(cluster, tmp_path_factory):
    """One application on the cluster: the probe, then `bitcipher build` of a small corpus."""
    base = tmp_path_factory.mktemp("cluster-build")
    corpus = write_shards(base / "corpus", CORPUS_A * 5 + CORPUS_B * 5, shards=4)
    lake = base / "cluster-lake"
    apps_before = _app_dirs(cluster)
    shipped, result = _probe(cluster, "build", "--corpus", str(corpus), "--lake", str(lake),
                             "--master", cluster.url, *OPTIONS)
    return {"probe": shipped, "result": result, "corpus": corpus, "lake": lake,
            "apps": _app_dirs(cluster) - apps_before}


def test_package_zip_is_content_addressed_and_importable(tmp_path, monkeypatch):
    import zipfile

    import bitcipher

    monkeypatch.setenv("BITCIPHER_CACHE", str(tmp_path / "cache"))
    first = package_zip()
    assert os.path.dirname(first) == str(tmp_path / "cache" / "pyfiles")
    assert ZIP_NAME.fullmatch(os.path.basename(first))
    assert package_zip() == first  # built once, found again
    package = os.path.dirname(bitcipher.__file__)
    modules = {os.path.relpath(os.path.join(d, n), os.path.dirname(package)).replace(os.sep, "/")
               for d, _, files in os.walk(package) for n in files if n.endswith(".py")}
    assert "bitcipher/stages/vectors.py" in modules
    names = set(zipfile.ZipFile(first).namelist())
    assert modules <= names
    assert {f"bitcipher/lake/schema_files/{t}.json" for t in
            ("tokens", "unigrams", "cooccurrences", "cipher", "vectors")} <= names
    assert not any("__pycache__" in n for n in names)
    # a Python that finds the package only in the zip imports it and reads the schemas
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import bitcipher.lake.schemas as s; "
             "print(s.__file__); print(s.schema_of('vectors').fieldNames())")
    out = subprocess.run([sys.executable, "-c", probe, first], capture_output=True, text=True,
                         cwd=str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr
    path, fields = out.stdout.splitlines()
    assert path == os.path.join(first, "bitcipher", "lake", "schemas.py")
    assert fields == "['word', 'id', 'count', 'vector']"


def test_executors_import_the_shipped_zip(cluster, cluster_build):
    shipped = cluster_build["probe"]
    assert len(shipped["includes"]) == 1
    name = shipped["includes"][0]
    assert ZIP_NAME.fullmatch(name)
    assert os.path.exists(os.path.join(cache_dir(), "pyfiles", name))  # built on the fly
    assert len(shipped["files"]) == 4
    for path in shipped["files"]:
        # the executor's copy: <executor work dir>/bitcipher-<hash>.zip/bitcipher/__init__.py
        assert path.endswith(f"{name}{os.sep}bitcipher{os.sep}__init__.py"), path
        assert not path.startswith(cache_dir())

    # without shipping the executors fall back to the installed package
    installed, _ = _probe(cluster, BITCIPHER_SHIP_PACKAGE="0")
    assert installed["includes"] == []
    assert installed["files"] and not any(".zip" in p for p in installed["files"])


def test_cluster_build_equals_local(cluster_build, spark, tmp_path):
    corpus, cluster_lake = cluster_build["corpus"], cluster_build["lake"]
    result = cluster_build["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cooccurrences" in result.stderr
    # the build's executors fetched the package zip into their work dirs
    new_apps = cluster_build["apps"]
    assert new_apps
    fetched = {p.name for app in new_apps for p in app.glob("*/bitcipher-*.zip")}
    assert len(fetched) == 1 and ZIP_NAME.fullmatch(fetched.pop())

    local_lake = tmp_path / "local-lake"
    build(spark, str(corpus), Lake(str(local_lake)),
          BuildOptions(bits=7, window=3, min_count=2), report=lambda _: None)

    def tables(lake):
        lake = Lake(str(lake))
        run = published(lake).run
        out = {name: read_table(spark, lake, name, run=run).toPandas()
               for name in ("unigrams", "cooccurrences")}
        out["vectors"] = read_table(spark, lake, "vectors").toPandas().sort_values("id")
        return out

    on_cluster, local = tables(cluster_lake), tables(local_lake)
    assert on_cluster["unigrams"].sort_values("id").reset_index(drop=True).equals(
        local["unigrams"].sort_values("id").reset_index(drop=True))
    keys = ["center", "offset", "context"]
    assert on_cluster["cooccurrences"].sort_values(keys).reset_index(drop=True).equals(
        local["cooccurrences"].sort_values(keys).reset_index(drop=True))
    assert list(on_cluster["vectors"].word) == list(local["vectors"].word)
    assert np.array_equal(np.stack(on_cluster["vectors"].vector.to_numpy()),
                          np.stack(local["vectors"].vector.to_numpy()))
