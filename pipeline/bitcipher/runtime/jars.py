"""Set up a machine once: fetch and cache Delta Lake's JARs, then record a class archive.

``python -m bitcipher.runtime.jars`` (what ``make setup`` runs):

1. starts a Spark session, which resolves ``io.delta:delta-spark_<spark>_2.13`` from Maven
   Central through Spark's own resolver and caches the JARs under ``~/.cache/bitcipher``;
2. runs one tiny build in a child process whose JVM dumps the classes it loaded into a
   class-data-sharing archive (``-XX:ArchiveClassesAtExit``); later local sessions map that
   archive and start about twice as fast. Skipped with ``--no-archive``; harmless if the
   JVM cannot make one.

With ``--s3`` it also fetches hadoop-aws (matched to pyspark's Hadoop) and the AWS SDK
bundle for ``s3a://`` corpora and lakes (about 640 MB, a minute or two; otherwise the first
S3 session fetches them) and records a second class archive for sessions with them on the
classpath.
"""

import os
import subprocess
import sys
import tempfile
import time

ARCHIVE_RUN = """
import sys
from bitcipher import BuildOptions, build, spark_session
spark = spark_session(app_name="bitcipher-setup-archive")
build(spark, sys.argv[1], sys.argv[2], BuildOptions(bits=6, window=2, min_count=1),
      report=lambda _: None)
spark.stop()
"""


def fetch_jars() -> None:
    from bitcipher.runtime.session import delta_artifact, spark_session

    started = time.perf_counter()
    spark = spark_session(app_name="bitcipher-setup")
    spark.range(1).count()
    print(f"Spark {spark.version} with {delta_artifact()} ready "
          f"({time.perf_counter() - started:.1f} s)", flush=True)
    spark.stop()


def fetch_s3() -> str:
    """hadoop-aws and the AWS SDK bundle into the cache; the full local classpath of an S3
    session (Delta's JARs, then these)."""
    from bitcipher.runtime.session import delta_jar_conf, fetch_s3_jars, s3_conf

    fetch_s3_jars(report=lambda line: print(line, flush=True))
    s3 = s3_conf(local=True)["spark.driver.extraClassPath"]
    delta = delta_jar_conf(local=True).get("spark.driver.extraClassPath", "")
    print(f"S3 ready: {s3_conf(local=True)['spark.hadoop.fs.s3a.impl']} with "
          f"{len(s3.split(os.pathsep))} JARs", flush=True)
    return os.pathsep.join(p for p in (delta, s3) if p)


def make_archive(classpath: str = "") -> None:
    """Record the class archive of sessions whose driver classpath is Delta's (default) or
    `classpath` (Delta's plus the S3 JARs)."""
    from bitcipher.runtime.session import class_archive

    archive = class_archive(extra_classpath=classpath)
    if os.path.exists(archive):
        print(f"class archive {archive} exists")
        return
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    partial = archive + ".partial"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus")
        os.makedirs(corpus)
        with open(os.path.join(corpus, "a.txt"), "w") as fh:
            fh.write("the cat sat on the mat\nthe dog sat on the log\n" * 20)
        env = dict(os.environ, BITCIPHER_DRIVER_JAVA_OPTIONS=(
            f"-XX:TieredStopAtLevel=1 -XX:ArchiveClassesAtExit={partial}"))
        if classpath:
            env["BITCIPHER_S3"] = "1"  # the session puts the S3 JARs on its classpath
        result = subprocess.run([sys.executable, "-c", ARCHIVE_RUN, corpus,
                                 os.path.join(tmp, "lake")], env=env, capture_output=True,
                                text=True)
    size = -1
    for _ in range(120):  # the JVM writes the archive as it exits: wait until it is whole
        if result.returncode != 0:
            break
        now = os.path.getsize(partial) if os.path.exists(partial) else -1
        if now > 0 and now == size:
            break
        size = now
        time.sleep(0.5)
    if result.returncode != 0 or not os.path.exists(partial):
        print("no class archive made (sessions start without one):\n"
              + result.stderr[-2000:], file=sys.stderr)
        return
    os.replace(partial, archive)
    print(f"class archive {archive} made ({time.perf_counter() - started:.1f} s)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fetch_jars()
    s3_classpath = fetch_s3() if "--s3" in argv else ""
    if "--no-archive" not in argv:
        make_archive()
        if s3_classpath:
            make_archive(s3_classpath)
    return 0


if __name__ == "__main__":
    sys.exit(main())
