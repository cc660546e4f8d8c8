"""A Spark standalone cluster on this machine: one master and N workers on 127.0.0.1,
started from the installed pyspark (``spark-class org.apache.spark.deploy.master.Master`` /
``...deploy.worker.Worker``) and always stopped again.

Used by ``tests/test_cluster.py`` and ``benchmarks/scaling.py --cluster``::

    with standalone_cluster("/tmp/cluster", workers=2) as cluster:
        subprocess.run(["bitcipher", "build", ..., "--master", cluster.url], env=cluster.env)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_class() -> tuple[str, str]:
    """The ``spark-class`` script of the installed pyspark, and its SPARK_HOME."""
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    return os.path.join(home, "bin", "spark-class"), home


def wait_for(path: Union[str, Path], text: str, timeout: float = 90,
             proc: Optional[subprocess.Popen] = None) -> None:
    """Wait until the log at `path` holds `text`; TimeoutError (with the log's tail) if not."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and text in open(path, errors="replace").read():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = open(path, errors="replace").read()[-3000:] if os.path.exists(path) else "(no log)"
    why = (f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None
           else f"after {timeout} s")
    raise TimeoutError(f"no {text!r} in {path} ({why}):\n{tail}")


@dataclass
class StandaloneCluster:
    """A running master and its workers."""

    url: str                      # spark://127.0.0.1:PORT
    env: dict                     # environment for drivers that talk to it
    workdir: Path                 # logs (master.log, workerN.log) and the workers' work dirs
    procs: list = field(default_factory=list)  # subprocess.Popen: master first

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def worker_dirs(self) -> list[Path]:
        return sorted(self.workdir.glob("work*"))


@contextlib.contextmanager
def standalone_cluster(workdir: Union[str, Path], workers: int = 2, cores: int = 1,
                       memory: str = "1g", python: Optional[str] = None,
                       timeout: float = 300) -> Iterator[StandaloneCluster]:
    """Start a master and `workers` workers (each `cores` cores, `memory` for executors) on
    127.0.0.1, yield the cluster, and stop every process it started, also on errors.

    The daemons run with SPARK_HOME set to the installed pyspark, SPARK_LOCAL_IP=127.0.0.1
    and PYSPARK_PYTHON = `python` (default: this interpreter). Each daemon has `timeout`
    seconds to come up (a JVM on a busy machine can take minutes).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    script, home = spark_class()
    env = dict(os.environ, SPARK_HOME=home, SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=python or sys.executable)
    port = free_port()
    cluster = StandaloneCluster(f"spark://127.0.0.1:{port}", env, workdir)
    logs = []
    try:
        master_log = workdir / "master.log"
        logs.append(open(master_log, "w"))
        cluster.procs.append(subprocess.Popen(
            [script, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(free_port())],
            env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
        wait_for(master_log, "I have been elected leader", timeout, cluster.procs[0])
        for i in range(workers):
            log = workdir / f"worker{i}.log"
            logs.append(open(log, "w"))
            cluster.procs.append(subprocess.Popen(
                [script, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                 "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port()),
                 "--work-dir", str(workdir / f"work{i}"), cluster.url],
                env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
            wait_for(log, "Successfully registered with master", timeout, cluster.procs[-1])
        yield cluster
    finally:
        stop(cluster.procs)
        for fh in logs:
            fh.close()


def stop(procs: list, grace: float = 30) -> None:
    """Terminate the daemons (workers first); kill what is still alive after `grace` s.

    A worker stops its executors (and their Python workers) when it is terminated."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
