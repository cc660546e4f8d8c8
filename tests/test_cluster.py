"""A real Spark standalone cluster (a master and two workers on 127.0.0.1) builds the same
vectors as local mode. The cluster is stopped whatever happens."""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CORPUS_A, CORPUS_B, write_shards

from pipeline import BuildOptions, build
from pipeline.lake import Lake, published, read_table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_class():
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    return os.path.join(home, "bin", "spark-class"), home


def wait_for(path, text, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and text in open(path, errors="replace").read():
            return
        time.sleep(0.5)
    raise TimeoutError(f"no {text!r} in {path} after {timeout} s:\n"
                       + (open(path, errors="replace").read()[-3000:] if os.path.exists(path)
                          else "(no log)"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    script, home = spark_class()
    env = dict(os.environ, SPARK_HOME=home, SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=sys.executable)
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    procs = []
    try:
        master_log = tmp / "master.log"
        procs.append(subprocess.Popen(
            [script, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(free_port())],
            env=env, stdout=open(master_log, "w"), stderr=subprocess.STDOUT))
        wait_for(master_log, "I have been elected leader")
        for i in range(2):
            log = tmp / f"worker{i}.log"
            procs.append(subprocess.Popen(
                [script, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                 "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                 "--work-dir", str(tmp / f"work{i}"), url],
                env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT))
            wait_for(log, "Successfully registered with master")
        yield url, env
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_cluster_build_equals_local(cluster, spark, tmp_path):
    url, env = cluster
    corpus = write_shards(tmp_path / "corpus", CORPUS_A * 5 + CORPUS_B * 5, shards=4)
    options = ["--bits", "7", "--window", "3", "--min-count", "2"]
    cluster_lake = tmp_path / "cluster-lake"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "build", "--corpus", str(corpus), "--lake",
         str(cluster_lake), "--master", url, *options],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cooccurrences" in result.stderr

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
