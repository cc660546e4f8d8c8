"""`bitcipher serve`: Spark's Thrift JDBC/ODBC server on a small lake, queried over the wire.

The server runs as its own process (as a user would start it) on a free loopback port; the
test queries it with PyHive (HiveServer2 Thrift protocol, pure-sasl) and with the beeline
shipped in the pyspark distribution, compares every row with Spark's own read of the Delta
table, and stops it with Ctrl-C (SIGINT) in a finally, killing it if it does not exit.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CORPUS_A, CORPUS_B, write_shards

from bitcipher import BuildOptions, build
from bitcipher.cli import main
from bitcipher.lake.tables import Lake, published, read_table

START_TIMEOUT = 300  # a loaded 2-core CI machine takes a while to start a JVM and Spark


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("thrift")
    corpus = write_shards(tmp / "corpus", CORPUS_A * 2 + CORPUS_B, shards=2)
    lake = Lake(str(tmp / "lake"))
    build(spark, str(corpus), lake, BuildOptions(bits=6, window=2, min_count=1),
          report=lambda _: None)
    return lake


@pytest.fixture(scope="module")
def server(lake, tmp_path_factory):
    """A running `bitcipher serve` process; yields (host, port, log file)."""
    port = free_port()
    log = tmp_path_factory.mktemp("thrift-log") / "serve.log"
    env = dict(os.environ, BITCIPHER_DRIVER_MEMORY=os.environ.get("BITCIPHER_DRIVER_MEMORY", "1g"))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bitcipher.cli", "serve", "--lake", lake.root,
             "--port", str(port), "--host", "127.0.0.1", "--master", "local[2]"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)  # its own process group, as a terminal job has
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "serving vectors" not in log.read_text():
            assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no server after {START_TIMEOUT} s:\n" \
                                                f"{log.read_text()}"
            time.sleep(1)
        yield "127.0.0.1", port, proc, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def cursor(server):
    from pyhive import hive

    host, port, *_ = server
    connection = hive.connect(host=host, port=port, username="bitcipher")
    try:
        yield connection.cursor()
    finally:
        try:
            connection.close()
        except Exception:  # the server may be stopped already (test_ctrl_c_stops_the_server)
            pass


def fetch(cursor, sql):
    cursor.execute(sql)
    return cursor.fetchall()


def float32_bits(values):
    return np.asarray(values, dtype=np.float32).view(np.uint32).tolist()


def test_vectors_rows_equal_spark(cursor, spark, lake):
    want = read_table(spark, lake, "vectors").orderBy("id").collect()
    got = fetch(cursor, "SELECT word, id, count, vector FROM vectors ORDER BY id")
    assert len(got) == len(want) > 10
    for (word, id_, count, vector), row in zip(got, want):
        assert (word, id_, count) == (row.word, row.id, row["count"])
        # arrays travel as text; the shortest decimal of a float32 parses back to it exactly
        assert float32_bits(json.loads(vector)) == float32_bits(row.vector), word


def test_run_tables_equal_spark(cursor, spark, lake):
    run = published(lake).run
    for name, order in [("unigrams", "id"), ("cipher", "id"),
                        ("cooccurrences", "center, context, offset")]:
        df = read_table(spark, lake, name, run=run)
        columns = [c for c in df.columns if c not in ("code", "rep")]  # arrays as text
        want = [tuple(r) for r in df.select(columns).orderBy(*order.split(", ")).collect()]
        got = fetch(cursor, f"SELECT {', '.join(columns)} FROM {name} ORDER BY {order}")
        assert [tuple(r) for r in got] == want, name


def test_cosine_function_matches_numpy(cursor, spark, lake):
    rows = read_table(spark, lake, "vectors").orderBy("id").collect()
    words = [r.word for r in rows]
    m = np.array([r.vector for r in rows], dtype=np.float32).astype(np.float64)
    norms = np.linalg.norm(m, axis=1)
    cat = words.index("cat")
    got = fetch(cursor, "SELECT b.word, cosine(a.vector, b.vector) AS sim FROM vectors a "
                        "JOIN vectors b ON a.word = 'cat' ORDER BY b.id")
    assert [w for w, _ in got] == words
    # a zero vector (possible with ppmi) has no cosine: NULL
    assert [s is None for _, s in got] == list(norms * norms[cat] == 0)
    live = norms * norms[cat] > 0
    sims = (m @ m[cat])[live] / (norms[live] * norms[cat])
    np.testing.assert_allclose([s for _, s in got if s is not None], sims, rtol=1e-12, atol=1e-12)


def test_tables_are_listed(cursor):
    names = {row[1] for row in fetch(cursor, "SHOW TABLES")}
    assert {"vectors", "unigrams", "cooccurrences", "cipher"} <= names


def test_delta_path_query(cursor, lake):
    (n,) = fetch(cursor, f"SELECT count(*) FROM delta.`{lake.vectors}`")[0]
    (m,) = fetch(cursor, "SELECT count(*) FROM vectors")[0]
    assert n == m > 0


def test_beeline_from_pyspark(server, spark, lake):
    import pyspark

    host, port, *_ = server
    beeline = os.path.join(os.path.dirname(pyspark.__file__), "bin", "beeline")
    result = subprocess.run(
        [beeline, "-u", f"jdbc:hive2://{host}:{port}/default", "-n", "bitcipher",
         "--outputformat=csv2", "--silent=true", "--showHeader=false",
         "-e", "SELECT word, count FROM vectors ORDER BY id"],
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
        env=dict(os.environ, SPARK_HOME=os.path.dirname(pyspark.__file__)))
    assert result.returncode == 0, result.stderr[-2000:]
    # beeline may echo its prompt ("0: jdbc:hive2://...> ") before the first row
    lines = [re.sub(r"^\d+: jdbc:hive2://\S+> ", "", line) for line in result.stdout.splitlines()]
    got = [line.split(",") for line in lines if line.strip()]
    want = read_table(spark, lake, "vectors").orderBy("id").collect()
    assert [(w, int(c)) for w, c in got] == [(r.word, r["count"]) for r in want]


def test_ctrl_c_stops_the_server(server):
    """Last in the module: Ctrl-C ends the foreground server cleanly and frees the port.

    A terminal sends SIGINT to the whole process group: Python and the JVM it started."""
    host, port, proc, log = server
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=90) == 0, log.read_text()
    assert "stopped" in log.read_text() and "Traceback" not in log.read_text()
    with socket.socket() as s:
        assert s.connect_ex((host, port)) != 0  # nobody listens any more


def test_serve_refuses_a_lake_without_vectors(tmp_path, capsys):
    assert main(["serve", "--lake", str(tmp_path / "empty"), "--port", str(free_port())]) == 4
    assert "holds no bit-cipher vectors table" in capsys.readouterr().err


def test_serve_refuses_a_busy_port(lake, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--lake", lake.root, "--port", str(port)]) == 2
    assert f"127.0.0.1:{port} is already in use" in capsys.readouterr().err


def test_serve_refuses_a_bad_port(lake, capsys):
    assert main(["serve", "--lake", lake.root, "--port", "70000"]) == 2
    assert "--port 70000 is not a TCP port" in capsys.readouterr().err


def test_serve_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "bitcipher serve --lake ./lake --port 10000" in out
    assert "(default: 10000)" in out and "(default: 127.0.0.1)" in out
    assert "beeline -u jdbc:hive2://" in out
