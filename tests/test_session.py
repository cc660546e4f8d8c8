"""The session: an active one must have Delta's extension and catalog; `python -m
bitcipher.runtime.jars` shows one line per step and the captured log only on failure."""

import os
import subprocess
import sys

import pytest

from bitcipher.errors import OptionError
from bitcipher.runtime import jars
from bitcipher.runtime.session import (DELTA_CATALOG, DELTA_EXTENSION, SPARK_CONF_ENV,
                                       check_delta_session, env_conf, missing_delta_settings,
                                       spark_session)

EXTENSIONS = "spark.sql.extensions"
CATALOG = "spark.sql.catalog.spark_catalog"


class FakeConf:
    def __init__(self, values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        self.values[key] = value


class FakeSession:
    def __init__(self, values):
        self.conf = FakeConf(dict(values))


# --------------------------------------------------------------------------- Delta check


def test_our_session_has_delta_and_is_reused(spark):
    assert missing_delta_settings(spark) == []
    check_delta_session(spark)
    assert spark_session() is spark  # the active session, accepted as it is


def test_settings_from_the_environment(spark, monkeypatch):
    # the tests' session was started with conftest's $BITCIPHER_SPARK_CONF
    assert os.environ[SPARK_CONF_ENV] == "" or env_conf()
    for key, value in env_conf().items():
        assert spark.conf.get(key) == value
    monkeypatch.setenv(SPARK_CONF_ENV, "spark.a=1  'spark.b=x y' spark.c= spark.d=p=q")
    assert env_conf() == {"spark.a": "1", "spark.b": "x y", "spark.c": "", "spark.d": "p=q"}
    monkeypatch.setenv(SPARK_CONF_ENV, "")
    assert env_conf() == {}
    for bad in ("spark.a=1 oops", "=1"):
        monkeypatch.setenv(SPARK_CONF_ENV, bad)
        with pytest.raises(OptionError, match="BITCIPHER_SPARK_CONF: '(oops|=1)' is not key=value"):
            env_conf()
    monkeypatch.setenv(SPARK_CONF_ENV, "spark.a='x y")
    with pytest.raises(OptionError, match="BITCIPHER_SPARK_CONF: No closing quotation"):
        env_conf()


def _huge_page_advice() -> bool:
    """Whether NumPy advises huge pages in this process (its switch returns the old value)."""
    import numpy as np

    switch = np._core.multiarray._set_madvise_hugepage
    before = switch(True)
    switch(before)
    return bool(before)


def test_driver_and_workers_run_without_numpys_huge_page_advice(spark):
    # fresh workers stalled for seconds in page compaction with it (docs/performance.md)
    assert os.environ.get("NUMPY_MADVISE_HUGEPAGE") == "0"
    assert spark.conf.get("spark.executorEnv.NUMPY_MADVISE_HUGEPAGE") == "0"
    assert _huge_page_advice() is False

    def probe(_):  # self-contained: the workers cannot import this test module
        import os

        import numpy as np

        switch = np._core.multiarray._set_madvise_hugepage
        before = switch(True)
        switch(before)
        yield os.environ.get("NUMPY_MADVISE_HUGEPAGE"), bool(before)

    seen = spark.sparkContext.parallelize(range(2), 2).mapPartitions(probe).collect()
    assert seen == [("0", False), ("0", False)]


def test_local_workers_keep_sparks_zip_directories_read(spark):
    """A local session's Python workers come from bitcipher.runtime.daemon: pyspark and py4j
    are imported from the installed packages (with their compiled files), not from the
    copies of them in Spark's pyspark.zip and py4j zip, which are off sys.path; on Python
    3.11, invalidating the import caches before each task no longer re-reads the
    directories of the archives still there (the spark-core JAR), and modules still import
    after it."""
    import pyspark

    assert spark.conf.get("spark.python.daemon.module") == "bitcipher.runtime.daemon"

    def probe(_):  # self-contained: the workers cannot import this test module
        import importlib
        import sys
        import zipimport

        archives = [p for p in sys.path if p.endswith((".zip", ".jar"))]
        reads = []
        original = zipimport._read_directory
        zipimport._read_directory = lambda path: reads.append(path) or original(path)
        try:
            importlib.invalidate_caches()
            import pyspark.sql.streaming.listener  # noqa: F401
        finally:
            zipimport._read_directory = original
        import py4j

        yield (sys.argv[0], archives, reads, pyspark.sql.streaming.listener.__file__,
               py4j.__file__)

    seen = spark.sparkContext.parallelize(range(2), 2).mapPartitions(probe).collect()
    main, archives, reads, listener, py4j_file = seen[0]
    assert main.endswith(os.path.join("bitcipher", "runtime", "daemon.py"))
    assert not any(os.path.basename(a).startswith(("pyspark", "py4j")) for a in archives)
    assert any(a.endswith(".jar") for a in archives), archives
    installed = os.path.dirname(pyspark.__file__)
    assert listener.startswith(installed + os.sep) and listener.endswith(".py")
    assert ".zip" not in py4j_file
    if sys.version_info < (3, 12):
        assert reads == []  # each archive re-read before: as many reads as archives


def test_prefer_installed_pyspark_takes_only_the_installed_archives_off(monkeypatch,
                                                                      tmp_path):
    """The archives in the installed pyspark's own folder come off sys.path; another
    Spark's archives (a cluster's SPARK_HOME) keep every entry where it was."""
    import pyspark

    from bitcipher.runtime.daemon import prefer_installed_pyspark

    lib = os.path.join(os.path.dirname(pyspark.__file__), "python", "lib")
    own = [os.path.join(lib, "pyspark.zip"), os.path.join(lib, "py4j-0.10.9.9-src.zip")]
    rest = [p for p in sys.path if not p.endswith(".zip")]
    monkeypatch.setattr(sys, "path", [own[0], own[1], *rest])
    assert prefer_installed_pyspark() == own
    assert sys.path == rest
    foreign = [str(tmp_path / "spark" / "python" / "lib" / "pyspark.zip"), own[1]]
    monkeypatch.setattr(sys, "path", [*foreign, *rest])
    assert prefer_installed_pyspark() == []
    assert sys.path == [*foreign, *rest]


def test_keep_zip_directories_skips_the_rereading(tmp_path):
    """The patch itself, in a fresh interpreter: without it importlib.invalidate_caches()
    reads a zip archive on sys.path again; with it, it does not, and a module added to
    sys.path later in a new archive still imports."""
    import zipfile

    for name in ("one", "two"):
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as z:
            z.writestr(f"mod_{name}.py", f"VALUE = {name!r}\n")
    code = """
import importlib, sys, zipimport
sys.path.insert(0, sys.argv[1])
import mod_one
if sys.argv[3] == "patched":
    from bitcipher.runtime.daemon import keep_zip_directories
    keep_zip_directories()
reads = []
original = zipimport._read_directory
zipimport._read_directory = lambda path: reads.append(path) or original(path)
importlib.invalidate_caches()
sys.path.insert(0, sys.argv[2])
import mod_two
print(len([r for r in reads if r == sys.argv[1]]), mod_one.VALUE, mod_two.VALUE)
"""
    out = {}
    for mode in ("plain", "patched"):
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "one.zip"),
                               str(tmp_path / "two.zip"), mode],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        out[mode] = done.stdout.split()
    assert out["patched"] == ["0", "one", "two"]
    if sys.version_info < (3, 12):
        assert out["plain"] == ["1", "one", "two"]  # what the patch spares


def test_pyarrows_first_check_skips_pandas_and_pandas_still_converts():
    """In a fresh interpreter: after the probe, pyarrow's array calls leave pandas unimported
    (without it, the first one imports it); pandas imported later converts both ways, and
    pyarrow treats pandas objects as pandas ones again (a categorical Series becomes a
    dictionary array, as without the probe)."""
    code = """
import sys
import pyarrow as pa
if sys.argv[1] == "probe":
    from bitcipher.runtime.daemon import arrow_without_pandas_probe
    print(arrow_without_pandas_probe())
pa.array([1, 2]); pa.scalar(3); pa.array(["a"], pa.string())
print("pandas" in sys.modules)
import pandas as pd
frame = pa.table({"x": [1.5, None]}).to_pandas()
print(frame["x"].isna().tolist())
print(pa.array(pd.Series(pd.Categorical(["b", "a", "b"]))).type)
print(pa.array(pd.Series([0.5, float("nan")]), from_pandas=True).null_count)
"""
    out = {}
    for mode in ("plain", "probe"):
        done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        out[mode] = done.stdout.split("\n")[:-1]
    assert out["plain"][0] == "True"  # what the probe spares
    assert out["probe"][0] == "True"  # the probe ran
    assert out["probe"][1] == "False"  # no pandas after pyarrow's array calls
    assert out["probe"][2:] == out["plain"][1:] == [
        "[False, True]", "dictionary<values=string, indices=int8, ordered=0>", "1"]


def test_local_workers_run_arrow_tasks_without_pandas_and_pandas_tasks_with_it(spark):
    """A worker of the local daemon makes Arrow arrays without importing pandas; a pandas
    UDF in the same workers still gets pandas and Arrow's conversions (time zones,
    categoricals, NaN as null)."""
    def arrow_task(batches):
        import sys

        import pyarrow as pa

        for _ in batches:
            pass
        pa.array([1, 2])
        yield pa.RecordBatch.from_arrays([pa.array(["pandas" in sys.modules])], names=["p"])

    seen = spark.range(0, 4, 1, 2).mapInArrow(arrow_task, "p boolean").collect()
    assert [r["p"] for r in seen] == [False, False]

    def pandas_task(frames):
        import pandas as pd

        for df in frames:
            df["t"] = pd.to_datetime(df["id"], unit="s", utc=True)
            df["c"] = pd.Categorical(["odd" if i % 2 else "even" for i in df["id"]])
            df["x"] = [float("nan") if i == 1 else i / 2 for i in df["id"]]
            yield df

    rows = (spark.range(0, 4, 1, 2)
            .mapInPandas(pandas_task, "id long, t timestamp, c string, x double")
            .orderBy("id").collect())
    assert [r["c"] for r in rows] == ["even", "odd", "even", "odd"]
    assert [r["x"] for r in rows] == [0.0, None, 1.0, 1.5]
    assert [r["t"].timestamp() for r in rows] == [0.0, 1.0, 2.0, 3.0]


def test_release_free_memory_gives_freed_heap_back():
    """After many freed mid-sized arrays, glibc's heap keeps them; the call gives them back
    (a fresh interpreter, so that nothing else moves its memory meanwhile)."""
    code = """
import numpy as np
from bitcipher.runtime.daemon import release_free_memory
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
keep = []
for i in range(40):
    a = np.ones(1 << 20)  # 8 MiB: below glibc's largest mmap threshold
    keep.append(a)
    np.ones(1 << 20)  # raises the threshold once freed
keep = keep[-1:]  # the others freed, below the last in the heap
before = rss()
print(release_free_memory(), before - rss())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    released, freed_mib = done.stdout.split()
    if not os.path.exists("/proc/self/status") or released == "False":
        pytest.skip("not glibc")
    assert int(freed_mib) >= 100, done.stdout


@pytest.mark.parametrize("values, missing", [
    ({}, [EXTENSIONS, CATALOG]),
    ({CATALOG: DELTA_CATALOG}, [EXTENSIONS]),
    ({EXTENSIONS: DELTA_EXTENSION}, [CATALOG]),
    ({EXTENSIONS: "com.example.Other", CATALOG: DELTA_CATALOG}, [EXTENSIONS]),
    ({EXTENSIONS: DELTA_EXTENSION, CATALOG: "org.apache.spark.sql.hive.HiveCatalog"}, [CATALOG]),
    ({EXTENSIONS: f"com.example.Other, {DELTA_EXTENSION}", CATALOG: DELTA_CATALOG}, []),
])
def test_missing_delta_settings(values, missing):
    assert missing_delta_settings(FakeSession(values)) == missing


def test_error_names_both_settings_exactly():
    with pytest.raises(OptionError) as info:
        check_delta_session(FakeSession({CATALOG: DELTA_CATALOG}))
    message = str(info.value)
    assert f"{EXTENSIONS}={DELTA_EXTENSION}" in message
    assert f"{CATALOG}={DELTA_CATALOG}" in message
    assert "lacks Delta Lake's spark.sql.extensions:" in message
    assert info.value.exit_code == 2


def test_active_session_without_delta_is_refused(monkeypatch):
    """Someone else's session (Databricks, EMR, a notebook) started without Delta."""
    from pyspark.sql import SparkSession

    other = FakeSession({"spark.sql.extensions": "com.example.Other"})
    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: other))
    with pytest.raises(OptionError, match="spark.sql.catalog.spark_catalog="):
        spark_session()
    assert other.conf.values == {"spark.sql.extensions": "com.example.Other"}  # untouched


def test_real_session_with_a_conf_lacking_delta_is_refused(spark, monkeypatch):
    """The conftest session, its conf lookup patched to lack Delta's catalog (no second
    JVM is started)."""
    real = spark.conf  # a cached property: the instance attribute is what callers see

    class Patched:
        def __init__(self, conf):
            self._conf = conf

        def get(self, key, default=None):
            return default if key == CATALOG else self._conf.get(key, default)

        def set(self, key, value):
            self._conf.set(key, value)

    monkeypatch.setattr(spark, "conf", Patched(real))
    assert missing_delta_settings(spark) == [CATALOG]
    with pytest.raises(OptionError, match=f"{CATALOG}={DELTA_CATALOG}"):
        spark_session()
    monkeypatch.undo()
    assert spark.conf is real and spark_session() is spark


# --------------------------------------------------------------------------- set-up output


def noisy(fail):
    """A fake set-up step that writes the way Spark's resolver does (a child process on the
    inherited file descriptors) and the way Python code does."""
    def step():
        subprocess.run([sys.executable, "-c",
                        "import sys; print(':: resolving dependencies :: ivy line'); "
                        "print('ivy on stderr', file=sys.stderr)"], check=True)
        os.write(1, b"raw fd 1 line\n")
        print("python print line")
        if fail:
            raise RuntimeError("resolver failed")
        return "Spark 9.9"
    return step


def test_step_output_is_one_line_on_success(capfd):
    assert jars.run_step("fetching Delta Lake JARs (x:y:1) from Maven Central",
                         noisy(fail=False)) == "Spark 9.9"
    out, err = capfd.readouterr()
    assert out.startswith("fetching Delta Lake JARs (x:y:1) from Maven Central ... done in ")
    assert out.rstrip().endswith("s (Spark 9.9)") and out.count("\n") == 1
    assert err == ""
    assert "ivy" not in out + err and "python print" not in out + err


def test_step_output_shows_the_log_on_failure(capfd):
    with pytest.raises(jars.StepFailed, match="resolver failed"):
        jars.run_step("fetching Delta Lake JARs (x:y:1) from Maven Central", noisy(fail=True))
    out, err = capfd.readouterr()
    assert out.startswith("fetching Delta Lake JARs (x:y:1) from Maven Central ... failed after ")
    for line in (":: resolving dependencies :: ivy line", "ivy on stderr", "raw fd 1 line",
                 "python print line", "RuntimeError: resolver failed"):
        assert line in err, line
    # the descriptors are restored: later output is not captured
    print("after")
    os.write(2, b"after on fd 2\n")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == "after on fd 2\n"


def test_optional_step_failure_goes_on(capfd):
    assert jars.run_step("recording the JVM class archive", noisy(fail=True),
                         optional=True) is None
    out, err = capfd.readouterr()
    assert "failed after" in out and "setup goes on" in out
    assert "raw fd 1 line" in err


def test_setup_main_prints_one_line_per_step(monkeypatch, capfd):
    monkeypatch.setattr(jars, "delta_jars_cached", lambda: False)
    monkeypatch.setattr(jars, "fetch_jars", noisy(fail=False))
    monkeypatch.setattr(jars, "make_archive", lambda classpath="": "archive.jsa")
    assert jars.main([]) == 0
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 and err == ""
    assert lines[0].startswith("fetching Delta Lake JARs (io.delta:delta-spark_")
    assert "from Maven Central ... done in" in lines[0]
    assert lines[1].startswith("recording the JVM class archive ... done in")
    assert jars.main(["--no-archive"]) == 0
    assert len(capfd.readouterr().out.splitlines()) == 1

    monkeypatch.setattr(jars, "fetch_jars", noisy(fail=True))
    assert jars.main([]) == 1
    out, err = capfd.readouterr()
    assert len(out.splitlines()) == 1 and "failed" in out  # no archive step after a failure
    assert ":: resolving dependencies :: ivy line" in err and "setup failed" in err
