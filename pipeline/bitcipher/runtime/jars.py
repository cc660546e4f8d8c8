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

Each step prints one line (``fetching Delta Lake JARs (io.delta:delta-spark_4.1_2.13:4.4.0)
from Maven Central ... done in 12.3 s``); what Spark's resolver and the JVMs print (hundreds
of Ivy lines) is captured and shown only when a step fails. The exit status is 1 then.
"""

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

ARCHIVE_RUN = """
import sys
from bitcipher import BuildOptions, build, spark_session
spark = spark_session(app_name="bitcipher-setup-archive")
build(spark, sys.argv[1], sys.argv[2], BuildOptions(bits=6, window=2, min_count=1),
      report=lambda _: None)
spark.stop()
"""


class StepFailed(RuntimeError):
    """A set-up step failed; its captured output was printed."""


def run_step(title: str, action: Callable[[], Optional[str]], out=None,
             log_tail: int = 20000, optional: bool = False) -> Optional[str]:
    """Print ``title ...``, run `action` with everything written to file descriptors 1 and 2
    captured (Python's prints, child processes, the JVM and its Ivy resolver), then finish the
    line with ``done in N s`` (and the note `action` returns, if any).

    On failure the line ends with ``failed``, the captured output (its last `log_tail`
    characters) and the error follow on stderr, and :class:`StepFailed` is raised (an
    `optional` step returns None instead). `out` is where the progress lines go (default:
    stdout, as it was before the capture).
    """
    out = out or sys.stdout
    print(f"{title} ...", end=" ", file=out, flush=True)
    started = time.perf_counter()
    error: Optional[BaseException] = None
    note: Optional[str] = None
    with tempfile.TemporaryFile(mode="w+b") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            # Python's own prints go there too, whatever sys.stdout is (a notebook, pytest)
            text = io.TextIOWrapper(os.fdopen(os.dup(log.fileno()), "wb"), encoding="utf-8",
                                    errors="replace", write_through=True)
            try:
                with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                    note = action()
            except Exception as exc:  # reported below with the captured output
                error = exc
            finally:
                text.close()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        seconds = time.perf_counter() - started
        if error is None:
            print(f"done in {seconds:.1f} s" + (f" ({note})" if note else ""), file=out,
                  flush=True)
            return note
        log.seek(0)
        captured = log.read().decode("utf-8", "replace")
    print(f"failed after {seconds:.1f} s" + (" (optional step; setup goes on)" if optional
                                             else ""), file=out, flush=True)
    if len(captured) > log_tail:
        captured = "[...]\n" + captured[-log_tail:]
    print(f"--- output of: {title} ---\n{captured.rstrip() or '(none)'}\n--- end of output ---\n"
          f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
    if optional:
        return None
    raise StepFailed(f"{title}: {type(error).__name__}: {error}") from error


def fetch_jars() -> str:
    """Start (and stop) a local session: Spark's resolver fetches Delta's JARs into the cache
    on the first run; later runs put the cached JARs on the classpath. Returns a note."""
    from bitcipher.runtime.session import spark_session

    spark = spark_session(app_name="bitcipher-setup")
    spark.range(1).count()
    version = spark.version
    spark.stop()
    return f"Spark {version}"


def fetch_s3() -> str:
    """hadoop-aws and the AWS SDK bundle into the cache; the full local classpath of an S3
    session (Delta's JARs, then these)."""
    from bitcipher.runtime.session import delta_jar_conf, fetch_s3_jars, s3_conf

    fetch_s3_jars(report=lambda line: print(line, flush=True))
    s3 = s3_conf(local=True)["spark.driver.extraClassPath"]
    delta = delta_jar_conf(local=True).get("spark.driver.extraClassPath", "")
    return os.pathsep.join(p for p in (delta, s3) if p)


def delta_jars_cached() -> bool:
    """Whether a session finds Delta's JARs without the resolver (cache or BITCIPHER_JARS)."""
    from bitcipher.runtime.session import delta_jar_conf

    try:
        return "spark.jars.packages" not in delta_jar_conf(local=True)
    except FileNotFoundError:  # BITCIPHER_JARS names a folder without JARs
        return False


def make_archive(classpath: str = "") -> str:
    """Record the class archive of sessions whose driver classpath is Delta's (default) or
    `classpath` (Delta's plus the S3 JARs). Returns a note; raises when the JVM made none
    (sessions then start without one, a little slower)."""
    from bitcipher.runtime.session import class_archive

    archive = class_archive(extra_classpath=classpath)
    if os.path.exists(archive):
        return f"{archive} was already recorded"
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    partial = archive + ".partial"
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
        print(result.stdout[-4000:], result.stderr[-8000:], sep="\n", file=sys.stderr)
        raise RuntimeError("no class archive made (sessions start without one, a little "
                           "slower)")
    os.replace(partial, archive)
    return f"{archive}, {os.path.getsize(archive) / 2**20:.0f} MB"


def main(argv=None) -> int:
    from bitcipher.runtime.session import delta_artifact, s3_artifact

    argv = sys.argv[1:] if argv is None else argv
    unknown = [a for a in argv if a not in ("--s3", "--no-archive")]
    if unknown:
        print(f"usage: python -m bitcipher.runtime.jars [--s3] [--no-archive]\n\n{__doc__}",
              file=sys.stdout if unknown in (["-h"], ["--help"]) else sys.stderr)
        return 0 if unknown in (["-h"], ["--help"]) else 2
    try:
        if os.environ.get("BITCIPHER_JARS"):
            title = (f"starting Spark with the Delta Lake JARs in "
                     f"BITCIPHER_JARS={os.environ['BITCIPHER_JARS']}")
        elif delta_jars_cached():
            title = f"starting Spark with the cached Delta Lake JARs ({delta_artifact()})"
        else:
            title = f"fetching Delta Lake JARs ({delta_artifact()}) from Maven Central"
        run_step(title, fetch_jars)
        s3_classpath = []

        def s3() -> str:
            s3_classpath.append(fetch_s3())
            return f"{len(s3_classpath[0].split(os.pathsep))} JARs on an S3 session's classpath"

        if "--s3" in argv:
            run_step(f"fetching {s3_artifact()} and the AWS SDK bundle (about 640 MB) from "
                     f"Maven Central", s3)
        if "--no-archive" not in argv:
            run_step("recording the JVM class archive", make_archive, optional=True)
            if s3_classpath:
                run_step("recording the JVM class archive of S3 sessions",
                         lambda: make_archive(s3_classpath[0]), optional=True)
    except StepFailed as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
