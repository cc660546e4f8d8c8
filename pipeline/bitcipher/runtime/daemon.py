"""Spark's Python daemon (``pyspark.daemon``), with zip archives on ``sys.path`` kept read.

Before every task, a PySpark worker calls ``importlib.invalidate_caches()`` (pyspark's
``worker_util.setup_spark_files``). On Python 3.10 and 3.11 that makes every zip importer
on ``sys.path`` read its archive's whole directory again, in Python (CPython issue 103200,
fixed in 3.12). Spark puts three archives on the workers' path: ``pyspark.zip``, py4j's zip
and the spark-core JAR, about 6,700 entries together. Re-reading them took nine tenths of
the Python workers' CPU in a refresh of a small corpus: about 3 CPU-seconds per refresh.

The archives do not change while a worker lives (Spark refuses to ship a second file of the
same name with other content, and a file it adds is a new ``sys.path`` entry, with a new
importer), so this daemon makes a zip importer's ``invalidate_caches`` keep what it read,
then runs ``pyspark.daemon`` as usual. A local session uses it
(``spark.python.daemon.module``, set by :func:`bitcipher.runtime.session.spark_session`
unless it is set already); a cluster's executors keep Spark's own daemon, as they may not
have bit-cipher installed when they start theirs.
"""

import sys


def keep_zip_directories() -> bool:
    """Make ``zipimport.zipimporter.invalidate_caches`` a no-op on Python < 3.12 (whose
    version re-reads the archive); return whether it was changed."""
    if sys.version_info >= (3, 12):
        return False
    import zipimport

    def invalidate_caches(self) -> None:
        """An archive on sys.path does not change while this worker lives."""

    zipimport.zipimporter.invalidate_caches = invalidate_caches
    return True


def prefer_installed_pyspark() -> list:
    """Take Spark's ``pyspark.zip`` and py4j's zip off ``sys.path`` where they are the
    archives that the pyspark package installed in this Python ships in its own folder (pip's
    pyspark does), and that package and py4j are importable without them: the same modules,
    then imported from the installed files with their compiled bytecode, where from the
    archive every daemon compiled pyspark's sources again (about 1.3 CPU-seconds before its
    first task). Returns the entries taken off."""
    import importlib.util
    import os

    zips = [p for p in sys.path if p.endswith(".zip")
            and os.path.basename(p).startswith(("pyspark", "py4j"))]
    if not zips:
        return []
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if p not in zips]
    try:
        specs = [importlib.util.find_spec(name) for name in ("pyspark", "py4j")]
    except (ImportError, ValueError):
        specs = [None]
    if any(s is None or not s.origin for s in specs):
        sys.path[:] = saved
        return []
    home = os.path.dirname(os.path.realpath(specs[0].origin)) + os.sep
    foreign = [z for z in zips if not os.path.realpath(z).startswith(home)]
    if foreign:  # another Spark's archives: keep them all, in their order
        sys.path[:] = saved
        return []
    return zips


if __name__ == "__main__":
    keep_zip_directories()
    prefer_installed_pyspark()
    from pyspark.daemon import manager

    manager()
