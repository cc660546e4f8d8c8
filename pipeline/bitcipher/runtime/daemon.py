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


if __name__ == "__main__":
    keep_zip_directories()
    from pyspark.daemon import manager

    manager()
