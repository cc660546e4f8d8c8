"""The one place that builds a SparkSession (CLI, jobs and tests all come through here).

Delta Lake's JARs come from Maven Central through Spark's own resolver on first use and are
cached under ``$BITCIPHER_CACHE`` (default ``~/.cache/bitcipher``). Later sessions put the
cached JARs straight on the classpath, which skips the resolver. Where the resolver cannot
reach Maven Central, point ``BITCIPHER_JARS`` at a folder of the same JARs (for instance
filled by ``mvn dependency:copy``).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
from typing import Mapping, Optional

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def cache_dir() -> str:
    return os.path.expanduser(os.environ.get("BITCIPHER_CACHE", "~/.cache/bitcipher"))


def delta_artifact() -> str:
    """Maven coordinates of the Delta JAR matching the installed delta-spark and pyspark."""
    from importlib.metadata import version

    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def _ivy_dir() -> str:
    artifact = delta_artifact().replace(":", "_")
    return os.path.join(cache_dir(), "ivy", artifact)


def _cached_jars() -> list[str]:
    jars_dir = os.path.join(_ivy_dir(), "jars")
    if not os.path.exists(os.path.join(_ivy_dir(), "COMPLETE")):
        return []
    return sorted(glob.glob(os.path.join(jars_dir, "*.jar")))


def _artifact(jar: str) -> str:
    """`jackson-core` of `.../com.fasterxml.jackson.core_jackson-core-2.13.5.jar`."""
    name = os.path.basename(jar)[: -len(".jar")]
    name = name.split("_", 1)[-1] if "_" in name.split("-", 1)[0] else name
    return re.sub(r"-\d[\w.\-]*$", "", name)


def _missing_from_pyspark(jars: list[str]) -> list[str]:
    """The JARs whose artifact pyspark does not ship already (its own versions win anyway)."""
    import pyspark

    shipped = {_artifact(j) for j in glob.glob(os.path.join(os.path.dirname(pyspark.__file__),
                                                            "jars", "*.jar"))}
    return [j for j in jars if _artifact(j) not in shipped]


def delta_jar_conf(local: bool = True) -> dict[str, str]:
    """Spark settings that put Delta Lake's JARs on the classpath.

    In local mode the JARs go on the driver's own classpath (loaded once, by the JVM's
    application class loader); on a cluster they are shipped with ``spark.jars``.
    """
    jars_env = os.environ.get("BITCIPHER_JARS")
    if jars_env:
        jars = sorted(glob.glob(os.path.join(os.path.expanduser(jars_env), "*.jar")))
        if not jars:
            raise FileNotFoundError(f"BITCIPHER_JARS={jars_env} holds no .jar files")
    else:
        jars = _cached_jars()
    if not jars:
        return {"spark.jars.packages": delta_artifact(), "spark.jars.ivy": _ivy_dir()}
    jars = _missing_from_pyspark(jars)
    if local:
        return {"spark.driver.extraClassPath": os.pathsep.join(jars)}
    return {"spark.jars": ",".join(jars)}


# -- object storage: S3 through Hadoop's s3a:// ---------------------------------------------

S3A_FILESYSTEM = "org.apache.hadoop.fs.s3a.S3AFileSystem"
# Delta 4.4's S3 log store: atomic commits only while ONE Spark driver writes a table at a
# time (its mutual exclusion is a lock inside that JVM). Multi-cluster writers need the
# DynamoDB log store (io.delta:delta-storage-s3-dynamodb), which this package does not set up.
DELTA_S3_LOG_STORE = "io.delta.storage.S3SingleDriverLogStore"
# Hadoop's own keys (fs.s3a.access.key ... in core-site.xml or spark.hadoop.*) first, then
# the AWS SDK's default chain: environment, system properties, web identity, AWS_PROFILE and
# the shared files, container and instance roles.
S3_CREDENTIAL_PROVIDERS = ",".join([
    "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider",
    "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
])


def uses_s3(uris) -> bool:
    """Whether any of `uris` (strings, lists of strings, None) is on S3, or
    ``BITCIPHER_S3=1`` asks for S3 support anyway (e.g. for a job or notebook session)."""
    from bitcipher.lake.storage import is_s3

    if os.environ.get("BITCIPHER_S3", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    stack = [uris]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple, set)):
            stack.extend(item)
        elif is_s3(item):
            return True
    return False


def hadoop_version() -> str:
    """The Hadoop version inside pyspark, from its ``hadoop-client-api-<version>.jar``."""
    import pyspark

    jars = glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars",
                                  "hadoop-client-api-*.jar"))
    if not jars:
        raise RuntimeError("pyspark ships no hadoop-client-api JAR: cannot match hadoop-aws")
    return os.path.basename(jars[0])[len("hadoop-client-api-"):-len(".jar")]


def s3_artifact() -> str:
    """hadoop-aws at pyspark's Hadoop version; its POM brings the AWS SDK v2 bundle it was
    built against (Hadoop 3.4.2: software.amazon.awssdk:bundle:2.29.52)."""
    return f"org.apache.hadoop:hadoop-aws:{hadoop_version()}"


def _s3_ivy_dir() -> str:
    return os.path.join(cache_dir(), "ivy", s3_artifact().replace(":", "_"))


def _cached_s3_jars() -> list[str]:
    if not os.path.exists(os.path.join(_s3_ivy_dir(), "COMPLETE")):
        return []
    return sorted(glob.glob(os.path.join(_s3_ivy_dir(), "jars", "*.jar")))


_S3_RESOLVE = """
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").appName("bitcipher-fetch-s3")
         .config("spark.jars.packages", sys.argv[1]).config("spark.jars.ivy", sys.argv[2])
         .config("spark.ui.enabled", "false").config("spark.driver.memory", "512m")
         .getOrCreate())
spark.stop()
"""


def fetch_s3_jars(report=None) -> list[str]:
    """hadoop-aws and the AWS SDK bundle from Maven Central, once, through Spark's resolver
    (a short child JVM with ``spark.jars.packages``) into ``$BITCIPHER_CACHE/ivy``.

    About 640 MB (the SDK bundle is most of it) and a minute or two on a fresh machine;
    ivy's second copy of each JAR is deleted after the resolve. Concurrent callers wait on
    a lock file. Returns the JARs.
    """
    import fcntl
    import shutil
    import subprocess
    import time

    jars = _cached_s3_jars()
    if jars:
        return jars
    ivy = _s3_ivy_dir()
    os.makedirs(ivy, exist_ok=True)
    with open(os.path.join(ivy, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jars = _cached_s3_jars()
        if jars:
            return jars
        started = time.perf_counter()
        if report:
            report(f"fetching {s3_artifact()} and the AWS SDK bundle (about 640 MB) "
                   f"into {ivy}")
        env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
        env.pop("PYSPARK_SUBMIT_ARGS", None)
        result = subprocess.run([sys.executable, "-c", _S3_RESOLVE, s3_artifact(), ivy],
                                env=env, capture_output=True, text=True)
        jars = sorted(glob.glob(os.path.join(ivy, "jars", "*.jar")))
        if result.returncode != 0 or not any("hadoop-aws" in j for j in jars):
            raise RuntimeError(
                f"could not fetch {s3_artifact()} from Maven Central (set BITCIPHER_S3_JARS to "
                f"a folder holding hadoop-aws and its AWS SDK bundle instead):\n"
                + result.stderr[-2000:])
        shutil.rmtree(os.path.join(ivy, "cache"), ignore_errors=True)
        with open(os.path.join(ivy, "COMPLETE"), "w") as fh:
            fh.write("\n".join(jars) + "\n")
        if report:
            size = sum(os.path.getsize(j) for j in jars) / 2**20
            report(f"{len(jars)} JARs, {size:.0f} MB, in {time.perf_counter() - started:.0f} s")
        return jars


def s3_jars() -> list[str]:
    """The JARs S3 needs: ``BITCIPHER_S3_JARS`` (a folder) or the cache, fetched if missing."""
    folder = os.environ.get("BITCIPHER_S3_JARS")
    if folder:
        jars = sorted(glob.glob(os.path.join(os.path.expanduser(folder), "*.jar")))
        if not any("hadoop-aws" in os.path.basename(j) for j in jars):
            raise FileNotFoundError(f"BITCIPHER_S3_JARS={folder} holds no hadoop-aws JAR")
        return jars
    return fetch_s3_jars(report=lambda line: print(line, file=sys.stderr, flush=True))


def s3_conf(local: bool = True) -> dict[str, str]:
    """Spark settings for corpus and lake on S3 through ``s3a://``.

    The JARs go on the driver's classpath in local mode (``spark.jars`` would copy the
    640 MB SDK bundle into every session's work folder) and are shipped with ``spark.jars``
    to a cluster. Endpoint, path-style and TLS come from the environment
    (``BITCIPHER_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL[_S3]``, ``BITCIPHER_S3_PATH_STYLE``,
    ``AWS_REGION``); credentials never pass through here: S3A's providers read them from
    the environment or the Hadoop/AWS configuration.
    """
    from bitcipher.lake.storage import s3_endpoint, s3_path_style, s3_region

    jars = _missing_from_pyspark(s3_jars())
    conf = {
        ("spark.driver.extraClassPath" if local else "spark.jars"):
            (os.pathsep if local else ",").join(jars),
        "spark.hadoop.fs.s3a.impl": S3A_FILESYSTEM,
        "spark.hadoop.fs.s3.impl": S3A_FILESYSTEM,
        "spark.hadoop.fs.s3a.aws.credentials.provider": S3_CREDENTIAL_PROVIDERS,
        "spark.delta.logStore.s3a.impl": DELTA_S3_LOG_STORE,
        "spark.delta.logStore.s3.impl": DELTA_S3_LOG_STORE,
    }
    endpoint = s3_endpoint()
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            not endpoint.lower().startswith("http://")).lower()
    conf["spark.hadoop.fs.s3a.path.style.access"] = str(s3_path_style()).lower()
    region = s3_region()
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    if not local:  # the executors' Python workers open S3 with s3fs: same endpoint there
        for name in ("BITCIPHER_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                     "BITCIPHER_S3_PATH_STYLE", "AWS_REGION", "AWS_DEFAULT_REGION"):
            if os.environ.get(name):
                conf[f"spark.executorEnv.{name}"] = os.environ[name]
    return conf


def _check_s3_classes(spark) -> None:
    """A running session cannot take JARs on its classpath any more: say so plainly rather
    than fail later with 'No FileSystem for scheme "s3a"'."""
    utils = spark.sparkContext._jvm.org.apache.spark.util.Utils
    if not utils.classIsLoadable(S3A_FILESYSTEM):
        raise RuntimeError(
            "this Spark session was started without hadoop-aws, so it cannot read or write "
            "s3a:// paths; stop it first, or start the first session with "
            "spark_session(storage=[...s3a:// URIs]) or BITCIPHER_S3=1")


def with_s3(settings: dict[str, str], local: bool) -> dict[str, str]:
    """`settings` plus :func:`s3_conf`, the JAR lists joined rather than replaced."""
    s3 = s3_conf(local=local)
    for key, sep in (("spark.driver.extraClassPath", os.pathsep), ("spark.jars", ",")):
        if key in s3 and settings.get(key):
            s3[key] = settings[key] + sep + s3[key]
    options = settings.get("spark.driver.extraJavaOptions", "")
    if local and "-XX:SharedArchiveFile=" in options:
        # the class archive was recorded with Delta's classpath alone: the JVM refuses it
        # (with a warning) on a longer one, so use the S3 one if setup made it, or none
        archive = class_archive(extra_classpath=s3["spark.driver.extraClassPath"])
        replacement = f"-XX:SharedArchiveFile={archive}" if os.path.exists(archive) else ""
        options = re.sub(r"-XX:SharedArchiveFile=\S+", replacement, options)
        settings["spark.driver.extraJavaOptions"] = " ".join(options.split())
    settings.update(s3)
    return settings


def class_archive(extra_classpath: str = "") -> str:
    """Where the JVM class-data-sharing archive of this installation lives.

    The archive (made by ``python -m bitcipher.runtime.jars``) lets the driver JVM map the
    classes of Spark and Delta instead of loading them one by one: a local session starts
    in about half the time. It is keyed by everything that must match: the java binary,
    pyspark's version and the driver classpath (``extra_classpath``: the full classpath of
    a session that adds JARs to Delta's, such as hadoop-aws for S3).
    """
    import hashlib
    import shutil

    import pyspark

    java = os.path.realpath(shutil.which("java") or "java")
    key = "|".join([java, pyspark.__version__, extra_classpath or delta_jar_conf(
        local=True).get("spark.driver.extraClassPath", "")])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), "cds", f"driver-{digest}.jsa")


DRIVER_JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m -XX:+UseSerialGC "
                       "-Xms64m")


def driver_java_options(archive: bool = True) -> str:
    """JVM options of a driver started here: C1 only (a short batch job gains nothing from
    C2's warm-up) with a code cache of 256 MiB (C1 alone gets 48 MiB, which a long session,
    e.g. a notebook or many builds in one process, fills: the JVM then stops compiling and
    runs everything interpreted), the serial collector (G1 grows the heap toward its limit
    and keeps it; the serial one keeps it near what is live: on the 6.0M-token mix the JVM
    peaked at 0.9-1.2 GiB instead of 1.5-1.7 GiB, in the same time; docs/performance.md),
    bitcipher's log4j settings, plus the class-data-sharing archive when one was made and
    `archive` is true (it matches a local driver's classpath only)."""
    options = os.environ.get("BITCIPHER_DRIVER_JAVA_OPTIONS", DRIVER_JAVA_OPTIONS)
    if "log4j2.configurationFile" not in options:
        config = os.environ.get("BITCIPHER_LOG4J") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "log4j2.properties")
        options += f" -Dlog4j2.configurationFile=file:{config}"
    if archive and "SharedArchiveFile" not in options and "ArchiveClassesAtExit" not in options:
        path = class_archive()
        if os.path.exists(path):
            options += f" -XX:SharedArchiveFile={path} -Xshare:auto"
    return options


def package_zip() -> str:
    """A zip of the installed ``bitcipher`` package, for the executors of a cluster.

    Built on first use from the package's own files (modules, log4j properties and the
    table schemas, as ``bitcipher/lake/schema_files/*.json``) into ``$BITCIPHER_CACHE/pyfiles``
    and named by the SHA-256 of its content, so a changed package gets a new name (Spark
    refuses a second file of the same name with other content) and an unchanged one is
    built once.
    """
    import hashlib
    import zipfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bitcipher/
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith((".py", ".properties", ".json")):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                entries[f"bitcipher/{rel}"] = path
    schemas = os.path.join(os.path.dirname(os.path.dirname(root)), "schemas")  # a checkout
    if not any(a.startswith("bitcipher/lake/schema_files/") for a in entries) and os.path.isdir(schemas):
        for name in sorted(os.listdir(schemas)):
            if name.endswith(".json"):
                entries[f"bitcipher/lake/schema_files/{name}"] = os.path.join(schemas, name)
    digest = hashlib.sha256()
    contents = {}
    for arcname in sorted(entries):
        with open(entries[arcname], "rb") as fh:
            contents[arcname] = fh.read()
        digest.update(arcname.encode() + b"\0" + contents[arcname] + b"\0")
    out_dir = os.path.join(cache_dir(), "pyfiles")
    target = os.path.join(out_dir, f"bitcipher-{digest.hexdigest()[:16]}.zip")
    if not os.path.exists(target):
        os.makedirs(out_dir, exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for arcname, data in contents.items():
                info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
        os.replace(tmp, target)
    return target


def ship_package(spark) -> Optional[str]:
    """Send the package zip to the executors (``SparkContext.addPyFile``); their Python
    workers put it first on ``sys.path``, so they run the driver's code whatever is
    installed on the nodes. Skipped when ``BITCIPHER_SHIP_PACKAGE=0`` or when
    ``--py-files`` / ``spark.submit.pyFiles`` already ship code. Returns the zip's path."""
    if os.environ.get("BITCIPHER_SHIP_PACKAGE", "1").lower() in ("0", "false", "no"):
        return None
    sc = spark.sparkContext
    if sc.getConf().get("spark.submit.pyFiles", ""):
        return None
    path = package_zip()
    sc.addPyFile(path)
    return path


def local_conf(cores: Optional[int] = None) -> dict[str, str]:
    """Defaults that suit one machine: few shuffle partitions, no UI, Arrow on."""
    cores = cores or os.cpu_count() or 2
    return {
        "spark.sql.shuffle.partitions": str(max(2, 2 * cores)),
        "spark.default.parallelism": str(max(2, 2 * cores)),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "65536",
        "spark.sql.adaptive.enabled": "true",
        # 2 GiB: the whole test suite runs with it; 4 GiB only made the JVM larger (on the
        # 6M-token mix: the same time, 1.1 GiB more RSS; docs/performance.md)
        "spark.driver.memory": os.environ.get("BITCIPHER_DRIVER_MEMORY", "2g"),
        "spark.driver.extraJavaOptions": driver_java_options(),
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1024",
    }


SPARK_CONF_ENV = "BITCIPHER_SPARK_CONF"


def env_conf() -> dict[str, str]:
    """The Spark settings of ``$BITCIPHER_SPARK_CONF``: ``key=value`` pairs separated by
    spaces (shell quoting for a value with spaces), as spark-submit's ``--conf`` takes them,
    for every session this package starts (a scheduled job's settings without code). They win
    over this package's defaults.

    Raises
    ------
    bitcipher.errors.OptionError
        A pair without ``=`` or with an empty key, or an unclosed quote, naming the
        variable.
    """
    import shlex

    from bitcipher.errors import OptionError

    try:
        pairs = shlex.split(os.environ.get(SPARK_CONF_ENV, ""))
    except ValueError as exc:  # an unclosed quote
        raise OptionError(f"{SPARK_CONF_ENV}: {exc} (quote a value with spaces whole, e.g. "
                          f"'spark.app.name=nightly refresh')") from None
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{SPARK_CONF_ENV}: {pair!r} is not key=value (pairs are separated "
                              f"by spaces, e.g. 'spark.sql.shuffle.partitions=8 "
                              f"spark.local.dir=/mnt/tmp')")
        settings[key.strip()] = value
    return settings


DELTA_SETTINGS = {
    "spark.sql.extensions": DELTA_EXTENSION,
    "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
}
"""The two static settings a session must have for Delta Lake (its SQL extension and its
catalog); a session started elsewhere must have been started with them."""


def missing_delta_settings(spark) -> list[str]:
    """The settings of :data:`DELTA_SETTINGS` that `spark` lacks (empty: Delta is set up).

    ``spark.sql.extensions`` may list several extensions (comma-separated); Delta's must be
    one of them. The catalog must be Delta's."""
    def value(key: str) -> str:
        return spark.conf.get(key, None) or ""

    missing = []
    extensions = [e.strip() for e in value("spark.sql.extensions").split(",")]
    if DELTA_EXTENSION not in extensions:
        missing.append("spark.sql.extensions")
    if value("spark.sql.catalog.spark_catalog").strip() != DELTA_CATALOG:
        missing.append("spark.sql.catalog.spark_catalog")
    return missing


def check_delta_session(spark) -> None:
    """Refuse a session without Delta Lake's extension and catalog (an already running
    session, e.g. on Databricks, EMR or in a notebook, that this package did not start).

    Raises
    ------
    bitcipher.errors.OptionError
        The message names both settings and their values; they are static, so they must be
        given when the session (or the cluster) starts.
    """
    from bitcipher.errors import OptionError

    missing = missing_delta_settings(spark)
    if missing:
        wanted = " and ".join(f"{key}={value}" for key, value in DELTA_SETTINGS.items())
        raise OptionError(
            f"the active Spark session lacks Delta Lake's {' and '.join(missing)}: start it "
            f"(or configure the cluster) with {wanted} (spark.sql.extensions may list other "
            f"extensions too, comma-separated), or stop it and let bitcipher start its own")


HUGEPAGE_ENV = "NUMPY_MADVISE_HUGEPAGE"


def no_hugepage_advice() -> None:
    """Keep NumPy from advising transparent huge pages for its large arrays, in this process
    and (through the environment) in the Python workers, unless ``NUMPY_MADVISE_HUGEPAGE`` is
    set already. With the kernel's usual ``defrag=madvise``, each such array may wait for
    memory to be compacted into huge pages; a fresh worker that allocates one wide block after
    another then spends seconds in the kernel (measured in docs/performance.md, "Huge pages").
    """
    import numpy as np

    os.environ.setdefault(HUGEPAGE_ENV, "0")
    if os.environ[HUGEPAGE_ENV] == "0":
        try:
            np._core.multiarray._set_madvise_hugepage(False)
        except AttributeError:  # the private switch moved: the environment still serves
            pass


def spark_session(
    master: Optional[str] = None,
    app_name: str = "bitcipher",
    conf: Optional[Mapping[str, str]] = None,
    storage=(),
):
    """Build (or reuse) a SparkSession with Delta Lake's extension and catalog.

    An already active session (Databricks, EMR, a notebook) is returned as it is, after
    :func:`check_delta_session`: it must have been started with Delta's extension and
    catalog, else an :class:`~bitcipher.errors.OptionError` names the two settings.

    Parameters
    ----------
    master : str, optional
        Spark master URL; default ``$BITCIPHER_MASTER`` or ``local[*]``.
    app_name : str
        Application name shown by the cluster.
    conf : mapping, optional
        Extra Spark settings; they win over the defaults and over ``$BITCIPHER_SPARK_CONF``
        (:func:`env_conf`).
    storage : str or list, optional
        The corpus and lake URIs the session will touch: any ``s3a://`` among them adds
        hadoop-aws and the S3 settings (:func:`s3_conf`); so does ``BITCIPHER_S3=1``.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        # someone else's session (Databricks, EMR, a notebook): its static settings are
        # fixed, so one without Delta Lake is refused here rather than failing later
        check_delta_session(active)
        for key, value in dict(conf or {}).items():
            active.conf.set(key, value)
        if uses_s3(storage):
            _check_s3_classes(active)
        return active
    master = master or os.environ.get("BITCIPHER_MASTER", "local[*]")
    # Python workers must run the interpreter that has this package's dependencies, not
    # whatever `python3` is first on PATH; a cluster can point PYSPARK_PYTHON elsewhere.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    no_hugepage_advice()
    settings: dict[str, str] = {
        # the same for executors of a cluster (local workers inherit the environment)
        f"spark.executorEnv.{HUGEPAGE_ENV}": os.environ[HUGEPAGE_ENV],
    }
    if master.startswith("local"):
        settings.update(local_conf())
        # Python workers forked from bitcipher's daemon: pyspark's own, minus re-reading
        # Spark's zip archives before every task on Python 3.11 (bitcipher.runtime.daemon)
        settings["spark.python.daemon.module"] = "bitcipher.runtime.daemon"
    else:
        # a client-mode driver of a cluster is a short batch process too (the executors do
        # the heavy work); the cluster's own JVMs keep their settings
        settings["spark.driver.extraJavaOptions"] = driver_java_options(archive=False)
    settings.update(
        {
            "spark.ui.showConsoleProgress": "false",  # stages report their own lines
            **DELTA_SETTINGS,
            "spark.sql.session.timeZone": "UTC",
        }
    )
    settings.update(delta_jar_conf(local=master.startswith("local")))
    if uses_s3(storage):
        settings = with_s3(settings, local=master.startswith("local"))
    settings.update(env_conf())
    settings.update(dict(conf or {}))
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("BITCIPHER_SPARK_LOG_LEVEL", "ERROR"))
    if not master.startswith("local"):
        ship_package(spark)
    if "spark.jars.packages" in settings:
        _mark_cached()
    return spark


def _mark_cached() -> None:
    """After a successful resolve, remember that the ivy folder holds every JAR."""
    jars = glob.glob(os.path.join(_ivy_dir(), "jars", "*.jar"))
    if jars:
        with open(os.path.join(_ivy_dir(), "COMPLETE"), "w") as fh:
            fh.write("\n".join(sorted(jars)) + "\n")
