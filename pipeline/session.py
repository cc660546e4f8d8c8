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


def class_archive() -> str:
    """Where the JVM class-data-sharing archive of this installation lives.

    The archive (made by ``python -m pipeline.setup_jars``) lets the driver JVM map the
    classes of Spark and Delta instead of loading them one by one: a local session starts
    in about half the time. It is keyed by everything that must match: the java binary,
    pyspark's version and the driver classpath.
    """
    import hashlib
    import shutil

    import pyspark

    java = os.path.realpath(shutil.which("java") or "java")
    key = "|".join([java, pyspark.__version__, delta_jar_conf(local=True).get(
        "spark.driver.extraClassPath", "")])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), "cds", f"driver-{digest}.jsa")


def driver_java_options() -> str:
    """JVM options of a local driver: C1 only (a short batch job gains nothing from C2's
    warm-up), plus the class-data-sharing archive when one was made."""
    options = os.environ.get("BITCIPHER_DRIVER_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")
    if "log4j2.configurationFile" not in options:
        config = os.environ.get("BITCIPHER_LOG4J") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "log4j2.properties")
        options += f" -Dlog4j2.configurationFile=file:{config}"
    if "SharedArchiveFile" not in options and "ArchiveClassesAtExit" not in options:
        archive = class_archive()
        if os.path.exists(archive):
            options += f" -XX:SharedArchiveFile={archive} -Xshare:auto"
    return options


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
        "spark.driver.memory": os.environ.get("BITCIPHER_DRIVER_MEMORY", "4g"),
        "spark.driver.extraJavaOptions": driver_java_options(),
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1024",
    }


def spark_session(
    master: Optional[str] = None,
    app_name: str = "bitcipher",
    conf: Optional[Mapping[str, str]] = None,
):
    """Build (or reuse) a SparkSession with Delta Lake's extension and catalog.

    Parameters
    ----------
    master : str, optional
        Spark master URL; default ``$BITCIPHER_MASTER`` or ``local[*]``.
    app_name : str
        Application name shown by the cluster.
    conf : mapping, optional
        Extra Spark settings; they win over the defaults.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in dict(conf or {}).items():
            active.conf.set(key, value)
        return active
    master = master or os.environ.get("BITCIPHER_MASTER", "local[*]")
    # Python workers must run the interpreter that has this package's dependencies, not
    # whatever `python3` is first on PATH; a cluster can point PYSPARK_PYTHON elsewhere.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings: dict[str, str] = {}
    if master.startswith("local"):
        settings.update(local_conf())
    settings.update(
        {
            "spark.ui.showConsoleProgress": "false",  # stages report their own lines
            "spark.sql.extensions": DELTA_EXTENSION,
            "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
            "spark.sql.session.timeZone": "UTC",
        }
    )
    settings.update(delta_jar_conf(local=master.startswith("local")))
    settings.update(dict(conf or {}))
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("BITCIPHER_SPARK_LOG_LEVEL", "ERROR"))
    if "spark.jars.packages" in settings:
        _mark_cached()
    return spark


def _mark_cached() -> None:
    """After a successful resolve, remember that the ivy folder holds every JAR."""
    jars = glob.glob(os.path.join(_ivy_dir(), "jars", "*.jar"))
    if jars:
        with open(os.path.join(_ivy_dir(), "COMPLETE"), "w") as fh:
            fh.write("\n".join(sorted(jars)) + "\n")
