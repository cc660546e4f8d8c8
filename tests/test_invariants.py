"""ALGORITHM.md §4: same tables for any partitioning and input order; count totals."""

import random

import numpy as np
import pytest
from conftest import CORPUS_A, CORPUS_B, write_shards

from bitcipher import BuildOptions, build
from bitcipher.lake.tables import Lake, published, read_table

LINES = CORPUS_A * 3 + CORPUS_B * 2 + [
    "the quick brown fox jumps over the lazy dog " * 3,
    "a b c d e f g a b c",
]
OPTIONS = BuildOptions(bits=7, window=3, min_count=2)


def tables_of(spark, lake):
    run = published(lake).run
    out = {}
    for name in ("unigrams", "cooccurrences", "cipher"):
        df = read_table(spark, lake, name, run=run).toPandas()
        out[name] = df.sort_values(list(df.columns[:3])).reset_index(drop=True)
    vec = read_table(spark, lake, "vectors").toPandas().sort_values("id").reset_index(drop=True)
    out["vectors"] = vec
    return out


def assert_identical(a, b):
    for name in ("unigrams", "cooccurrences"):
        assert a[name].equals(b[name]), name
    assert list(a["vectors"].word) == list(b["vectors"].word)
    left = np.stack(a["vectors"].vector.to_numpy())
    right = np.stack(b["vectors"].vector.to_numpy())
    assert left.dtype == right.dtype
    assert np.array_equal(left, right)  # bit for bit
    assert a["cipher"].drop(columns="code").equals(b["cipher"].drop(columns="code"))
    assert [list(c) for c in a["cipher"].code] == [list(c) for c in b["cipher"].code]


@pytest.fixture(scope="module")
def baseline(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    corpus = write_shards(tmp / "corpus", LINES, shards=4)
    lake = Lake(str(tmp / "lake"))
    build(spark, str(corpus), lake, OPTIONS, report=lambda _: None)
    return corpus, tables_of(spark, lake)


@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_same_tables_for_any_partition_count(spark, tmp_path, baseline, partitions):
    corpus, expected = baseline
    spark.conf.set("spark.bitcipher.partitions", str(partitions))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(64 * partitions))
    try:
        lake = Lake(str(tmp_path / "lake"))
        build(spark, str(corpus), lake, OPTIONS, report=lambda _: None)
    finally:
        spark.conf.unset("spark.bitcipher.partitions")
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert_identical(tables_of(spark, lake), expected)


def test_same_tables_for_shuffled_shards_and_lines(spark, tmp_path, baseline):
    _, expected = baseline
    lines = list(LINES)
    random.Random(7).shuffle(lines)
    corpus = write_shards(tmp_path / "corpus", lines, shards=5, prefix="x")
    files = sorted(str(p) for p in corpus.iterdir())
    random.Random(3).shuffle(files)
    lake = Lake(str(tmp_path / "lake"))
    build(spark, files, lake, OPTIONS, report=lambda _: None)
    assert_identical(tables_of(spark, lake), expected)


@pytest.mark.parametrize("include_self", [True, False])
def test_context_total_per_word(spark, tmp_path, include_self):
    m = 3
    corpus = write_shards(tmp_path / "corpus", LINES, shards=3)
    lake = Lake(str(tmp_path / "lake"))
    build(spark, str(corpus), lake, BuildOptions(bits=7, window=m, min_count=2,
                                                 include_self=include_self),
          report=lambda _: None)
    run = published(lake).run
    uni = read_table(spark, lake, "unigrams", run=run).toPandas().set_index("id")["count"]
    cooc = read_table(spark, lake, "cooccurrences", run=run).toPandas()
    per_word = cooc.groupby("center")["count"].sum()
    per_cell = cooc.groupby(["center", "offset"])["count"].sum()
    offsets = 2 * m + 1 if include_self else 2 * m
    for word_id, f in uni.items():
        assert per_word[word_id] == f * offsets
        for d in range(-m, m + 1):
            if d or include_self:
                assert per_cell[(word_id, d)] == f  # one context per offset, EDGE included
    assert cooc.context.min() == -1  # EDGE is present
