"""A SQL endpoint on the lake: Spark's Thrift JDBC/ODBC server (HiveServer2 protocol).

``bitcipher serve --lake ./lake`` starts a Spark session with Delta Lake's extension and
catalog (the one session factory, :func:`bitcipher.runtime.session.spark_session`), registers the
lake's tables as views (``vectors``, ``unigrams``, ``cooccurrences``, ``cipher``) and the
SQL function ``cosine(a, b)``, and then starts Spark's Thrift server in the same JVM
(``HiveThriftServer2.startWithSparkSession``; its JAR ships inside the pyspark wheel). It
serves in the foreground until Ctrl-C or SIGTERM.

The server runs in single-session mode (``spark.sql.hive.thriftServer.singleSession``): every
JDBC/ODBC connection shares the session that holds the views, so a client sees them without
any setup. Connect with ``beeline -u jdbc:hive2://127.0.0.1:10000`` (``beeline`` is in the
pyspark distribution's ``bin/``), PyHive (``hive.connect("127.0.0.1", 10000)``) or any
HiveServer2 JDBC/ODBC driver; there is no authentication (any user name, no password), so
bind it to loopback unless the network around it is trusted.

The views follow the run that was published when the server started: restart the server
after a new build (a query on ``delta.`<lake>/vectors``` always reads the latest commit).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from bitcipher.errors import OptionError
from bitcipher.lake.tables import RUN_TABLES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10000
THRIFT_SERVER = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


def scratch_dir() -> str:
    """Hive's scratch folders and Derby's log (the Thrift server's in-memory metastore)."""
    return os.path.join(tempfile.gettempdir(), f"bitcipher-thrift-{os.getuid()}")


def thrift_conf(host: str, port: int, scratch: Optional[str] = None) -> dict[str, str]:
    """Spark settings of a session that will serve over Thrift on host:port."""
    if not 0 < port < 65536:
        raise OptionError(f"--port {port} is not a TCP port (1-65535)")
    scratch = scratch or scratch_dir()
    for sub in ("scratch", "local", "resources", "operation_logs"):
        os.makedirs(os.path.join(scratch, sub), exist_ok=True)
    return {
        # every JDBC connection uses the session that holds the lake's views and cosine()
        "spark.sql.hive.thriftServer.singleSession": "true",
        "spark.hadoop.hive.server2.thrift.port": str(port),
        "spark.hadoop.hive.server2.thrift.bind.host": host,
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.hadoop.hive.server2.authentication": "NONE",
        "spark.hadoop.hive.server2.enable.doAs": "false",
        # Hive's scratch folders, away from a shared /tmp/hive
        "spark.hadoop.hive.exec.scratchdir": os.path.join(scratch, "scratch"),
        "spark.hadoop.hive.exec.local.scratchdir": os.path.join(scratch, "local"),
        "spark.hadoop.hive.downloaded.resources.dir": os.path.join(scratch, "resources"),
        "spark.hadoop.hive.server2.logging.operation.log.location":
            os.path.join(scratch, "operation_logs"),
    }


def wait_for_port(host: str, port: int, timeout: float = 60.0,
                  alive: Callable[[], bool] = lambda: True) -> bool:
    """True once something accepts TCP connections on host:port (False after `timeout`, or
    as soon as `alive()` says the server side is gone)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection((target, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.2)
    return False


@dataclass
class ThriftServer:
    """A running Thrift server and the Spark session behind it."""

    spark: object
    server: object  # the JVM HiveThriftServer2
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"jdbc:hive2://{self.host}:{self.port}/default"

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            self.spark.stop()


def start(lake, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          master: Optional[str] = None, timeout: float = 120.0) -> ThriftServer:
    """Start a session, register the lake's tables and serve them over Thrift on host:port.

    Raises LakeError (before any JVM starts) if the lake has no published build.
    """
    from bitcipher.query.keyed_vectors import register_cosine
    from bitcipher.lake.tables import Lake, published, register_tables
    from bitcipher.runtime.session import spark_session

    lake = lake if isinstance(lake, Lake) else Lake(lake)
    published(lake)  # a clear error for an empty or foreign lake, before the JVM starts
    conf = thrift_conf(host, port)
    if _port_taken(host, port):
        raise OptionError(f"{host}:{port} is already in use; choose another --port")
    spark = spark_session(master=master, app_name="bitcipher-sql", conf=conf)
    try:
        register_tables(spark, lake)
        register_cosine(spark)
        jvm = spark.sparkContext._jvm
        # Derby (the server's in-memory metastore) logs to derby.log in the working directory
        jvm.java.lang.System.setProperty("derby.stream.error.file",
                                         os.path.join(scratch_dir(), "derby.log"))
        server_class = getattr(jvm, THRIFT_SERVER)
        server = server_class.startWithSparkSession(spark._jsparkSession, False)
        if not wait_for_port(host, port, timeout):
            server.stop()
            raise OptionError(f"the Thrift server did not open {host}:{port} within "
                              f"{timeout:.0f} s")
    except BaseException:
        spark.stop()
        raise
    return ThriftServer(spark, server, host, port)


def _port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def serve(lake, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          master: Optional[str] = None) -> int:
    """Serve in the foreground until Ctrl-C (SIGINT) or SIGTERM; return the exit code.

    Ctrl-C in a terminal reaches the JVM too (same process group); whichever goes first,
    the server and the session are stopped once and the command exits 0.
    """
    started = time.perf_counter()
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server = start(lake, host, port, master)
    except BaseException:
        signal.signal(signal.SIGTERM, previous)
        raise
    # replaces pyspark's SIGINT handler (cancel all jobs, raise KeyboardInterrupt anywhere)
    previous_int = signal.signal(signal.SIGINT, _stop)
    try:
        tables = ", ".join(("vectors",) + RUN_TABLES)
        print(f"serving {tables} from {getattr(lake, 'root', lake)} on {server.url} "
              f"(started in {time.perf_counter() - started:.1f} s); Ctrl-C stops", flush=True)
        print(f"  beeline -u {server.url}", file=sys.stderr, flush=True)
        while not stop.is_set():
            stop.wait(0.5)
    finally:
        try:
            server.stop()
        except Exception as exc:  # the JVM may be gone already (it got the Ctrl-C too)
            print(f"(the JVM had stopped: {type(exc).__name__})", file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
        print("stopped", file=sys.stderr, flush=True)
    return 0
