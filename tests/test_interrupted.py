"""A build killed half way leaves the lake serving the previous build; the next build
completes and clears what the killed one left."""

import os
import signal
import subprocess
import sys
import time

from conftest import CORPUS_A, CORPUS_B, write_shards

from bitcipher import BuildOptions, build
from bitcipher.lake.tables import Lake, published, read_table


def test_killed_build_is_never_visible(spark, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    first = write_shards(tmp_path / "first", CORPUS_A)
    build(spark, str(first), lake, BuildOptions(bits=6, window=2, min_count=1),
          report=lambda _: None)
    before = published(lake).run
    words_before = sorted(read_table(spark, lake, "vectors").toPandas().word)

    second = write_shards(tmp_path / "second", CORPUS_B * 50, shards=3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bitcipher.cli", "build", "--corpus", str(second), "--lake",
         lake.root, "--bits", "6", "--window", "2", "--min-count", "1"],
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in proc.stderr:  # kill it once its run folder holds tables
            if line.startswith("cipher"):
                break
        else:
            raise AssertionError("the build ended before the cipher stage")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its JVM and Python workers
        proc.wait(timeout=60)
    time.sleep(1)

    runs = sorted(p.name for p in (tmp_path / "lake" / "runs").iterdir())
    assert len(runs) == 2 and before in runs  # the killed run's folder is there...
    assert published(lake).run == before  # ...but nothing points at it
    assert sorted(read_table(spark, lake, "vectors").toPandas().word) == words_before
    assert read_table(spark, lake, "unigrams").count() == len(words_before)

    build(spark, str(second), lake, BuildOptions(bits=6, window=2, min_count=1),
          report=lambda _: None, keep_runs=0)
    after = published(lake).run
    assert sorted(p.name for p in (tmp_path / "lake" / "runs").iterdir()) == [after]
    words = set(read_table(spark, lake, "vectors").toPandas().word)
    assert "thirteen" in words and "cat" not in words
