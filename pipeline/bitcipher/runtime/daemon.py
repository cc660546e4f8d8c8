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


def release_free_memory() -> bool:
    """Give the memory that this process has freed back to the system where the C library
    is glibc (``malloc_trim``): NumPy's arrays of up to 32 MiB come from malloc's heap, which
    otherwise keeps what they used once they are freed, so a Python worker between tasks,
    or the driver after the projection's Gramian, still held a few hundred MiB it no longer
    used. Returns whether memory was given back."""
    import ctypes
    import ctypes.util

    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc: nothing to do
            _LIBC = False
    return bool(_LIBC) and bool(_LIBC.malloc_trim(0))


_LIBC = None


def arrow_without_pandas_probe() -> bool:
    """Let pyarrow record, once, that it need not import pandas to tell whether an object is
    a pandas one. Its first ``pa.array``, ``pa.scalar``... imports pandas only to check
    that (42 MiB in each Python worker, where no task of this package uses pandas): the
    check is made here with pandas hidden, so pyarrow records that it has none. Whatever
    needs pandas from pyarrow still gets it: pyarrow's conversions to and from pandas
    (a pandas UDF's first step, ``to_pandas``) import it when first called, and from then
    on pyarrow sees pandas as before. Returns whether the check was made here (False where
    pandas was imported already)."""
    if "pandas" in sys.modules:
        return False

    class HidePandas:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "pandas":
                raise ImportError("pandas is hidden from pyarrow's first check")
            return None

    hide = HidePandas()
    sys.meta_path.insert(0, hide)
    try:
        import pyarrow

        pyarrow.array([0])
    except Exception:  # whatever happens, the worker goes on as it would have
        return False
    finally:
        sys.meta_path.remove(hide)
    return "pandas" not in sys.modules


def worker_hooks(daemon) -> None:
    """Make the daemon's workers run :func:`arrow_without_pandas_probe` before their first
    task and :func:`release_free_memory` after every task (the daemon calls its module's
    ``worker_main`` once a task)."""
    run_task = daemon.worker_main
    first = [True]

    def worker_main(infile, outfile):
        if first[0]:
            first[0] = False
            arrow_without_pandas_probe()
        try:
            return run_task(infile, outfile)
        finally:
            release_free_memory()

    daemon.worker_main = worker_main


if __name__ == "__main__":
    keep_zip_directories()
    prefer_installed_pyspark()
    import pyspark.daemon

    worker_hooks(pyspark.daemon)
    pyspark.daemon.manager()
