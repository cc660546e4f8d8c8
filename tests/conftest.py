"""One Spark session for the whole test run (small shuffle partitions, no UI)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `import reference` (the NumPy reference)

# Spark settings of every session the tests start, in this process and in its children (CLI
# commands, the notebook's kernel, a cluster's driver), through $BITCIPHER_SPARK_CONF. The
# tests' tables have a few dozen rows; with code generation on, Spark generates the Java code
# of a projection again inside every task (for Delta's log, about a quarter of the JVM's CPU
# in a small refresh: docs/performance.md, "Code generation in small runs"). Interpreted
# projections give the same rows. The executors of tests/test_cluster.py's cluster run, like
# a local driver, C1 only and with the serial collector (one core each, tasks of a few
# dozen rows). tests/test_s3.py runs its commands with Spark's defaults (code generation on),
# and `BITCIPHER_SPARK_CONF= make test` runs every test with them.
SMALL_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SMALL_DATA_CONF = ("spark.sql.codegen.factoryMode=NO_CODEGEN "
                   f"spark.executor.extraJavaOptions='{SMALL_JVM_OPTIONS}'")
os.environ.setdefault("BITCIPHER_SPARK_CONF", SMALL_DATA_CONF)

# The files that take longest, longest first. `make test` runs the files on two workers
# (pytest-xdist, --dist loadfile --no-loadscope-reorder), handing each worker the next file
# in collection order as it frees up: starting with the longest files keeps the two workers
# busy to the end instead of leaving one of them alone with a long file.
LONGEST_FIRST = ("test_refresh.py", "test_refresh_crash.py", "test_frozen.py", "test_cluster.py",
                 "test_wide.py", "test_s3.py", "test_bad_input.py", "test_notebook.py",
                 "test_pipeline.py", "test_readme.py", "test_invariants.py", "test_keep_runs.py",
                 "test_interrupted.py")


def pytest_collection_modifyitems(config, items):
    """Collect the longest files first (the order within a file is kept)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))

CORPUS_A = [
    "The cat sat on the mat.",
    "The dog sat on the log, and the cat watched the dog.",
    "A cat is a cat; a dog is a dog.",
    "",
    "Don't the cats and dogs know the mat's owner?",
    "the end",
]
CORPUS_B = [
    "one two three four five six seven eight nine ten",
    "two three five seven eleven thirteen",
    "one one two three five eight thirteen",
    "ten nine eight seven six five four three two one",
    "three",
]
CORPUS_C = [
    "Über straße café naïve résumé über café",
    "L'été est là; l'été revient. Ça va? ça va!",
    "über café 2024 2025 2024",
]


@pytest.fixture(scope="session")
def spark():
    from bitcipher.runtime.session import spark_session

    session = spark_session(
        master="local[2]",
        app_name="bitcipher-tests",
        conf={"spark.sql.shuffle.partitions": "3", "spark.default.parallelism": "2",
              "spark.driver.memory": "2g"},
    )
    yield session
    session.stop()


def write_shards(directory, lines, shards=2, prefix="part"):
    """Write `lines` round-robin into `shards` text files; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    buckets = [[] for _ in range(shards)]
    for i, line in enumerate(lines):
        buckets[i % shards].append(line)
    for i, bucket in enumerate(buckets):
        (directory / f"{prefix}-{i:03d}.txt").write_text("\n".join(bucket) + "\n", encoding="utf-8")
    return directory


@pytest.fixture
def quiet():
    messages = []
    return messages.append
