"""A refresh really killed (SIGKILL to its whole process group) at several stages leaves every
table readable at its last consistent version, and the next run completes it; two refresh
processes at once never count a shard twice."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import reference
from pyspark.sql import functions as F
from test_pipeline import reference_opts
from test_refresh import (
    OPTIONS,
    TEXTS,
    assert_matches_reference,
    copy_tree,
    manifest_rows,
    put,
    quiet,
)

from bitcipher.lake.history import latest_version
from bitcipher.lake.tables import Lake, read_table
from bitcipher.incremental.run import counts_uri, refresh


def refresh_command(corpus, lake):
    return [sys.executable, "-m", "bitcipher.cli", "refresh", "--corpus", str(corpus), "--lake",
            lake.root, "--bits", "6", "--window", "2", "--min-count", "2",
            "--project", "none", "--master", "local[2]"]


def child_env():
    return {**os.environ, "BITCIPHER_DRIVER_MEMORY": os.environ.get("BITCIPHER_DRIVER_MEMORY",
                                                                      "1g")}


@pytest.fixture(scope="module")
def refreshed_before_change(spark, tmp_path_factory):
    """One refresh for the module, then the change every test's refresh works on (the corpus
    is only read from here on; each test gets its own copy of the lake)."""
    base = tmp_path_factory.mktemp("crash")
    corpus, lake = base / "corpus", Lake(str(base / "lake"))
    put(corpus, "s0", TEXTS["a"])
    put(corpus, "s1", TEXTS["d"])
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
    put(corpus, "s2", TEXTS["b"] * 30)  # the change the killed refresh works on
    put(corpus, "s1", TEXTS["e"])
    (corpus / "s0.txt").unlink()
    return corpus, base / "lake"


@pytest.fixture
def lake_with_change(refreshed_before_change, tmp_path):
    corpus, lake = refreshed_before_change
    return corpus, Lake(str(copy_tree(lake, tmp_path / "lake")))


@pytest.mark.parametrize("stage", ["plan", "count", "cooccurrences"])
def test_killed_refresh_is_completed_by_the_next_run(spark, lake_with_change, stage):
    corpus, lake = lake_with_change
    words_before = sorted(read_table(spark, lake, "vectors").toPandas().word)
    counts_before = latest_version(counts_uri(lake))
    proc = subprocess.Popen(refresh_command(corpus, lake), stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=child_env())
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(stage):
                break
        else:
            raise AssertionError(f"the refresh ended before stage {stage}: {''.join(seen)}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its JVM and Python workers
        proc.wait(timeout=60)
    time.sleep(1)

    # readable, at the last consistent versions: the vectors still those published before
    assert sorted(read_table(spark, lake, "vectors").toPandas().word) == words_before
    assert read_table(spark, lake, "unigrams").count() == len(words_before)
    counts_now = latest_version(counts_uri(lake))
    if stage != "plan":
        assert counts_now == counts_before + 1  # the counts were committed before the kill
    old = sorted(f"file://{corpus / n}" for n in ("s0.txt", "s1.txt"))
    new = sorted(f"file://{corpus / n}" for n in ("s1.txt", "s2.txt"))
    assert manifest_rows(spark, lake) == (old if counts_now == counts_before else new)

    result = refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
    assert not result.nothing_to_do
    assert_matches_reference(spark, lake, corpus)
    assert manifest_rows(spark, lake) == sorted(f"file://{corpus / n}" for n in
                                                ("s1.txt", "s2.txt"))
    assert refresh(spark, str(corpus), lake, OPTIONS, report=quiet).nothing_to_do


@pytest.mark.parametrize("stage", ["count", "cooccurrences"])
def test_killed_frozen_refresh_is_completed_by_the_next_one(spark, lake_with_change,
                                                            refreshed_before_change, stage):
    """SIGKILL while a frozen refresh counts or aggregates: the next frozen refresh finishes
    the job, with the same epoch, counts no shard twice and equals the NumPy reference run
    with that epoch."""
    from test_frozen import check_frozen_reference

    from bitcipher.lake.tables import published

    corpus, lake = lake_with_change
    epoch_run = published(lake).run
    # the epoch: what the module's first refresh (shards s0 = a, s1 = d) fixed
    exact = reference.vectors(TEXTS["a"] + [""] + TEXTS["d"] + [""],
                              **reference_opts(OPTIONS))
    proc = subprocess.Popen(refresh_command(corpus, lake) + ["--frozen"], stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=child_env())
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(stage):
                break
        else:
            raise AssertionError(f"the refresh ended before stage {stage}: {''.join(seen)}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert published(lake).run == epoch_run  # still the vectors published before
    result = refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    assert result.build.frozen_to == epoch_run
    check_frozen_reference(spark, lake, corpus, {"epoch_vocab": exact["vocab"],
                                                 "epoch_marginal": exact["marginal"]}, OPTIONS)
    assert refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True).nothing_to_do


@pytest.mark.parametrize("flags", [[], ["--frozen"]], ids=["exact", "frozen"])
def test_two_refresh_processes_at_once(spark, lake_with_change, flags):
    corpus, lake = lake_with_change
    procs = [subprocess.Popen(refresh_command(corpus, lake) + flags, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=child_env())
             for _ in range(2)]
    outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    # one refreshes; the other conflicts (6), finds nothing left to do (5) or, when it
    # planned after the winner's commit, only republishes (0)
    assert codes in ([0, 0], [0, 5], [0, 6]), outcomes
    for code, err in outcomes:
        if code == 6:
            assert "run it again" in err
    # each shard is counted once, whoever won
    assert manifest_rows(spark, lake) == sorted(f"file://{corpus / n}" for n in
                                                ("s1.txt", "s2.txt"))
    store = spark.read.format("delta").load(counts_uri(lake))
    tokens = store.where(F.col("kind") == "stats").agg(F.sum("count")).first()[0]
    words = sum(int(np.frombuffer(r["pair_counts"], "<i8").sum())
                for r in store.where(F.col("kind") == "words").select("pair_counts").collect())
    expected = sum(len(doc) for doc in reference.documents(TEXTS["e"] + TEXTS["b"] * 30))
    assert tokens == words == expected
    if not flags:
        refresh(spark, str(corpus), lake, OPTIONS, report=quiet)  # completes a lost publish
        assert_matches_reference(spark, lake, corpus)
        return
    from test_frozen import check_frozen_reference

    # the winner kept the epoch of the module's first refresh (shards s0 = a, s1 = d)
    result = refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    assert result.nothing_to_do or result.build.frozen_to is not None
    exact = reference.vectors(TEXTS["a"] + [""] + TEXTS["d"] + [""], **reference_opts(OPTIONS))
    check_frozen_reference(spark, lake, corpus, {"epoch_vocab": exact["vocab"],
                                                 "epoch_marginal": exact["marginal"]}, OPTIONS)
