"""Finishing a run: from its vocabulary to the published tables, shared by the build and the
refresh (:class:`BuildRun`, :func:`finish_build`), with what both report (:class:`StageLog`,
:class:`BuildResult`)."""


from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa

from bitcipher.stages.cipher import build_cipher
from bitcipher.stages.epoch import (MARGINAL_FILE, Epoch)
from bitcipher.stages.cooccurrences import FLUSH_TOKENS, local_exchange, partial_counts
from bitcipher.stages.corpus import Shard
from bitcipher.stages.tokenize import token_parts
from bitcipher.lake.history import PROP_EPOCH
from bitcipher.lake.tables import (
    PROP_BITS,
    PROP_OPTIONS,
    PROP_RUN,
    PROP_SNAPSHOT,
    Lake,
    parquet_parts,
    parquet_rows,
    write_npz,
    write_parquet,
    publish_arrow,
    publish_vectors,
    remove_stale_runs,
    write_manifest,
)
from bitcipher.options import BuildOptions
from bitcipher.lake.schemas import FORMAT_VERSION, arrow_schema, conform, schema_of
from bitcipher.stages.merge import cooccurrences_and_vectors
from bitcipher.stages.unigrams import (Vocabulary, unigram_arrow, unigram_frame)
from bitcipher.stages.merge import (SPILL_DIR, made_vectors, parts_frame, remove_tree,
                                    spilled_parts, table_blocks)
from bitcipher.stages.projection import (GRAM_CHUNK, PROJECTION_FILE, project_spilled,
                                         spilled_finisher)
from bitcipher.stages.vectors import (cooccurrence_marginal, empty_vector, marginal_post,
                                      needs_marginal, vector_batch, vector_blocks, vector_dim)

# corpus tokens per co-occurrence merge task (and totals bucket): a task's memory follows
# it (on the 6.0M-token mix, 1M gave the Python workers' peak 0.2-0.3 GiB below 2M's, and
# 0.5M another 0.2 GiB below 1M's, and the driver JVM's 0.1-0.2 GiB; the build took as long)
TOKENS_PER_PARTITION = 500_000
# vectors are published from the driver (pyarrow and Delta's transaction) up to this many
# floats (4 bytes each, in two or three copies at once: 0.4 GiB at most); more go through a
# Spark write
DRIVER_VECTOR_FLOATS = 1 << 25


@dataclass
class StageReport:
    name: str
    rows: int
    seconds: float
    detail: str = ""

    def line(self) -> str:
        extra = f"  {self.detail}" if self.detail else ""
        return f"{self.name:<14}{self.rows:>14,} rows  {self.seconds:>7.2f} s{extra}"


@dataclass
class BuildResult:
    run: str
    lake: str
    bits: int
    dim: int
    vocab_size: int
    tokens: int
    shards: int
    stages: list[StageReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    frozen_to: Optional[str] = None  # a frozen run: the exact run whose epoch it kept
    drift: Optional[dict] = None  # a frozen run: :func:`bitcipher.stages.epoch.drift`


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StageLog:
    """The stages of one build or refresh, in order: each is recorded as a
    :class:`StageReport` and reported as one line."""

    def __init__(self, report: Callable[[str], None]):
        self.report = report
        self.done: list[StageReport] = []

    def record(self, name: str, rows: int, started: float, detail: str = "") -> None:
        stage = StageReport(name, rows, time.perf_counter() - started, detail)
        self.done.append(stage)
        self.report(stage.line())


def cooccurrence_partitions(spark, total_tokens: int) -> int:
    """Merge tasks of the co-occurrence stage.

    ``spark.bitcipher.partitions`` when set; otherwise one per TOKENS_PER_PARTITION corpus
    tokens, rounded up to a multiple of the cluster's default parallelism (every wave of
    tasks fills the cores: 8 tasks on 2 cores, not 7). The result does not depend on it
    (the tables are the same bit for bit), only the memory per task does.
    """
    chosen = spark.conf.get("spark.bitcipher.partitions", None)
    if chosen:
        return int(chosen)
    cores = max(spark.sparkContext.defaultParallelism, 1)
    return cores * max(1, math.ceil(total_tokens / TOKENS_PER_PARTITION / cores))


def plain_path(uri: str) -> str:
    """One spelling of a shard's path, whatever Spark or fsspec made of it: a ``file:`` URI
    becomes a plain path; other URIs are kept."""
    if uri.startswith("file:"):
        return "/" + uri[len("file:"):].lstrip("/")
    return uri


def cipher_frame(spark, words: list[str], cipher):
    """DataFrame of the cipher table."""
    return spark.createDataFrame(cipher_arrow(words, cipher), schema=schema_of("cipher"))


def cipher_arrow(words: list[str], cipher):
    """The cipher table as a pyarrow Table (built on the driver)."""
    import pyarrow as pa

    v = len(cipher.counts)
    k = cipher.ones.astype(np.int32)
    table = pa.table(
        {
            "word": pa.array(words, pa.string()),
            "id": pa.array(np.arange(v, dtype=np.int32)),
            "count": pa.array(cipher.counts, pa.int64()),
            "bits": pa.array(np.full(v, cipher.bits, dtype=np.int32)),
            "code": pa.ListArray.from_arrays(
                pa.array(np.concatenate([[0], np.cumsum(k)]).astype(np.int32)),
                pa.array(cipher.positions[cipher.positions >= 0].astype(np.int32)),
            ),
            "beta": pa.array(cipher.beta, pa.float64()),
        }
    )
    return table.cast(arrow_schema("cipher"))


@dataclass
class BuildRun:
    """What a build or a refresh knows once it has its vocabulary: the input of
    :func:`finish_build`, which writes the run's tables and publishes them."""

    spark: Any  # SparkSession
    lake: Lake
    run_id: str  # the new run (lake.run_dir(run_id)), from new_run_id()
    options: BuildOptions
    vocab: Vocabulary
    shards: list[Shard]
    shard_stats: dict  # plain_path(shard path) -> {"tokens": ...}
    total_tokens: int
    n_docs: int
    warnings: list[str]
    stages: StageLog
    previous_runs: list[str]  # the runs published before this one, oldest first
    keep_runs: int  # how many of the latest previous_runs keep their folders
    started: float  # time.perf_counter() when the unigrams stage began
    epoch: Optional[Epoch] = None  # a frozen run: the cipher and projection it keeps
    drift: Optional[dict] = None  # a frozen run: how far the counts moved from the epoch
    token_dir: Optional[str] = None  # a build: the tokens its tokenize stage kept, to count


def finish_build(run: BuildRun, vectors_stage: Optional[Callable] = None,
                 extra_properties: Optional[dict] = None) -> BuildResult:
    """Write a run's tables and publish it, then remove the run folders no longer kept.

    `vectors_stage(cipher, cooc_dir, spill_dir, frozen)` (a refresh, from stored totals)
    instead of counting the tokens in `run.token_dir` (a build): it writes the cooccurrences
    table and returns (vectors DataFrame (id, vector array<float>), or a pyarrow table of
    the same columns (published by :func:`bitcipher.lake.tables.publish_arrow`), marginal or
    None, detail); with `spill_dir` (a projection follows) it writes the vectors there
    (:func:`bitcipher.stages.merge.spill_vectors`) instead; `extra_properties` go with the
    publishing commit."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark, lake, options, vocab, stages = run.spark, run.lake, run.options, run.vocab, run.stages
    run_id = run.run_id

    write_parquet(unigram_arrow(vocab), lake.table(run_id, "unigrams"))
    stages.record("unigrams", len(vocab), run.started,
                  f"vocabulary {len(vocab):,} (<unk> {int(vocab.counts[vocab.unk_id]):,})")

    started = time.perf_counter()
    if run.epoch is not None:  # frozen: the epoch's codes, whatever the counts are now
        cipher = run.epoch.cipher
    else:
        cipher = build_cipher(vocab.counts, options.bits, options.smoothing)
    write_parquet(cipher_arrow(vocab.words, cipher), lake.table(run_id, "cipher"))
    stages.record("cipher", len(vocab), started, f"bits {cipher.bits}" + (
        f", frozen to run {run.epoch.run}" if run.epoch is not None else ""))

    started = time.perf_counter()
    cooc_dir = lake.table(run_id, "cooccurrences")
    # a frozen run finishes and projects every vector in the task that aggregates it, with
    # the epoch's marginal and basis
    frozen = None
    if run.epoch is not None:
        frozen = (run.epoch.marginal if needs_marginal(options) else None,
                  run.epoch.projection if options.project else None)
    # a projection follows: the wide vectors go to files, not through the JVM
    spill_dir = lake.table(run_id, SPILL_DIR) if options.project and frozen is None else None
    if vectors_stage is not None:
        vec, marginal, detail = vectors_stage(cipher, cooc_dir, spill_dir, frozen)
    else:
        partitions = cooccurrence_partitions(spark, run.total_tokens)
        # the kept token files in as many tasks as the cores, or one per FLUSH_TOKENS tokens
        # if that is more: a corpus read in many small splits is not as many small tasks
        tasks = max(spark.sparkContext.defaultParallelism,
                    -(-run.total_tokens // FLUSH_TOKENS))
        exchange = local_exchange(spark)  # the routed counts through local files
        try:
            partial = parts_frame(spark, token_parts(run.token_dir), tasks).transform(
                partial_counts(spark, vocab.words, vocab.unk_id, options.window,
                               options.include_self, partitions, token_dir=run.token_dir,
                               exchange=exchange))
            vec = partial.transform(
                cooccurrences_and_vectors(spark, cooc_dir, len(vocab), cipher.context(),
                                          vocab.counts, vocab.total, options, spill_dir,
                                          frozen)
            ).persist(StorageLevel.MEMORY_AND_DISK)
            n_vec = vec.count()
        finally:
            if exchange is not None:
                remove_tree(exchange)
        marginal = frozen[0] if frozen is not None else None
        if needs_marginal(options) and frozen is None:
            marginal = cooccurrence_marginal(spark.read.parquet(cooc_dir),
                                             cipher.context(), vocab.counts,
                                             vocab.total, options)
            if spill_dir is None:
                vec = vec.transform(marginal_post(spark, marginal, options))
        detail = f"{partitions} partitions; {n_vec:,} vectors aggregated on the way"
        remove_tree(run.token_dir)
    n_cooc = parquet_rows(cooc_dir)
    stages.record("cooccurrences", n_cooc, started, detail)

    # words with no contexts get the vector of an empty block, built here: <unk> when every
    # word is in the vocabulary; in a frozen run also an epoch word no longer in the corpus
    empty_ids = np.flatnonzero(np.asarray(vocab.counts) == 0)
    unk_vector = None
    if len(empty_ids):
        unk_vector = np.repeat(
            np.asarray([empty_vector(cipher.bits, options, marginal)], np.float32),
            len(empty_ids), axis=0)
    if marginal is not None:  # kept with the run: a frozen run of this epoch reuses it
        write_npz(lake.table(run_id, MARGINAL_FILE), marginal=marginal)
    projection = None
    if frozen is not None and options.project:  # applied by the vector tasks already
        projection = run.epoch.projection
        if unk_vector is not None:
            unk_vector = projection.apply(unk_vector)
        projection.save(lake.table(run_id, PROJECTION_FILE))
    elif options.project:
        started = time.perf_counter()
        dim = vector_dim(options, cipher.bits)
        finish = spilled_finisher(spark, options, marginal, vector_blocks(options))
        # few enough projected vectors for the driver (publish_arrow) are written to files by
        # their tasks and read here, not cached in the JVM and collected through it
        out_dir = (f"{spill_dir}/projected"
                   if len(vocab) * min(options.project, dim) <= DRIVER_VECTOR_FLOATS else None)
        parts, blocks_of = spilled_parts(spill_dir), None
        if needs_marginal(options):
            # raw blocks were not spilled: made again from the table's parts by the
            # projection's tasks (merge.cooccurrence_part)
            sc = spark.sparkContext
            parts = parquet_parts(cooc_dir)
            blocks_of = table_blocks(cooc_dir, sc.broadcast(cipher.context()),
                                     sc.broadcast(np.asarray(vocab.counts, np.int64)),
                                     vocab.total, options, GRAM_CHUNK)
        vec, projection = project_spilled(
            spark, spill_dir, parts, finish, dim, len(vocab),
            options.project, options.project_exponent, options.project_center,
            extra=unk_vector, out_dir=out_dir, blocks_of=blocks_of)
        if out_dir is not None:
            vec.collect()
            vec = pa.Table.from_batches(
                [vector_batch(*made_vectors(out_dir, projection.k))])
        else:
            vec = vec.persist(StorageLevel.MEMORY_AND_DISK)
            vec.count()  # the projected vectors exist before the spilled ones are removed
        remove_tree(spill_dir)
        if unk_vector is not None:
            unk_vector = projection.apply(unk_vector)
        projection.save(lake.table(run_id, PROJECTION_FILE))
        stages.record("projection", len(vocab), started,
                      f"{vector_dim(options, cipher.bits)} -> {projection.k} dimensions")

    started = time.perf_counter()
    # one file per 500k words, or per 10k words up to one per core: the writing of a table
    # of a few 10k words is a large share of a refresh, and runs in as many tasks as files
    files = max(1, len(vocab) // 500_000,
                min(spark.sparkContext.defaultParallelism, len(vocab) // 10_000))
    dim = projection.k if projection else vector_dim(options, cipher.bits)
    if not isinstance(vec, pa.Table) and len(vocab) * dim <= DRIVER_VECTOR_FLOATS:
        # few enough to publish from the driver (publish_arrow): collected as Arrow, not
        # decoded and encoded again float by float by a Spark write
        made = vec.select("id", F.col("vector").cast("array<float>").alias("vector"))
        made = made.toArrow()
        vec.unpersist()
        vec = made
    if isinstance(vec, pa.Table):  # put together on the driver
        vectors = _vectors_arrow(vec, vocab, empty_ids, unk_vector)
    else:
        vectors = _vectors_frame(spark, vec, vocab, empty_ids, unk_vector, files)
    snapshot = {
        "shards": [
            {"path": s.path, "size": s.size, "mtime": s.mtime, "format": s.format,
             "tokens": int((run.shard_stats.get(plain_path(s.path)) or {}).get("tokens") or 0)}
            for s in run.shards
        ],
        "tokens": run.total_tokens,
        "documents": run.n_docs,
    }
    digest = hashlib.sha256(json.dumps(snapshot["shards"], sort_keys=True).encode()).hexdigest()
    manifest = {
        "format_version": FORMAT_VERSION,
        "run": run_id,
        "options": options.recorded(),
        "bits": cipher.bits,
        "dim": dim,
        "projection": ({"file": PROJECTION_FILE, "k": projection.k,
                        "exponent": projection.exponent, "center": projection.center,
                        "input_dim": vector_dim(options, cipher.bits)}
                       if projection else None),
        "vocab_size": len(vocab),
        "snapshot": snapshot,
        "shards_sha256": digest,
        "warnings": run.warnings,
        "epoch": ({"run": run.epoch.run, "drift": run.drift} if run.epoch is not None
                  else None),
        "marginal": MARGINAL_FILE if marginal is not None else None,
    }
    write_manifest(lake, run_id, manifest)
    properties = {
        PROP_RUN: run_id,
        PROP_OPTIONS: options.to_json(),
        PROP_BITS: str(cipher.bits),
        PROP_SNAPSHOT: json.dumps({"shards": len(run.shards), "tokens": run.total_tokens,
                                   "documents": run.n_docs, "shards_sha256": digest}),
    }
    if run.epoch is not None:
        properties[PROP_EPOCH] = json.dumps({"run": run.epoch.run, "drift": run.drift},
                                            sort_keys=True)
    properties.update(extra_properties or {})
    if isinstance(vectors, pa.Table):
        publish_arrow(spark, lake, vectors, properties, files)
    else:
        publish_vectors(spark, lake, vectors, properties)
        vec.unpersist()
    stages.record("vectors", len(vocab), started, f"dim {manifest['dim']}")
    earlier = run.previous_runs[-run.keep_runs:] if run.keep_runs > 0 else []
    remove_stale_runs(lake, keep=[run_id, *earlier])
    return BuildResult(run=run_id, lake=lake.root, bits=cipher.bits, dim=manifest["dim"],
                       vocab_size=len(vocab), tokens=run.total_tokens, shards=len(run.shards),
                       stages=stages.done, warnings=run.warnings,
                       frozen_to=run.epoch.run if run.epoch is not None else None,
                       drift=run.drift)


def _vectors_frame(spark, vec, vocab, empty_ids: np.ndarray, unk_vector, files: int):
    """The vectors table as a DataFrame: `vec` (id, vector) with each id's word and count,
    and the rows of the words with no contexts (`empty_ids`, `unk_vector`), in `files`
    partitions sorted by id."""
    from pyspark.sql import functions as F

    vocab_df = unigram_frame(spark, vocab).select("word", "id", "count")
    vectors = vec.join(F.broadcast(vocab_df), "id")
    if unk_vector is not None:
        # from Arrow, not Python rows: those are unpickled by a Python worker at every
        # action on the plan (about a second each)
        rows = pa.Table.from_batches([vector_batch(empty_ids.astype(np.int32), unk_vector)])
        rows = rows.append_column("word", pa.array([vocab.words[i] for i in empty_ids],
                                                   pa.string()))
        rows = rows.append_column("count", pa.array(np.zeros(len(empty_ids), np.int64)))
        vectors = vectors.unionByName(conform(spark.createDataFrame(rows), "vectors"))
    return conform(vectors, "vectors").coalesce(files).sortWithinPartitions("id")


def _vectors_arrow(vec, vocab, empty_ids: np.ndarray, unk_vector):
    """The same as :func:`_vectors_frame` from a pyarrow table (id, vector): one table
    sorted by id."""
    table = vec.select(["id", "vector"])
    if unk_vector is not None:
        empty = pa.Table.from_batches([vector_batch(empty_ids.astype(np.int32), unk_vector)])
        table = pa.concat_tables([table, empty.cast(table.schema)])
    ids = table.column("id").to_numpy()
    if len(ids) > 1 and (np.diff(ids) < 0).any():
        table = table.sort_by("id")
    ids = table.column("id").to_numpy()
    counts = np.asarray(vocab.counts, dtype=np.int64)
    return pa.table({"word": pa.array([vocab.words[i] for i in ids], pa.string()),
                     "id": table.column("id"), "count": pa.array(counts[ids]),
                     "vector": table.column("vector")}).cast(arrow_schema("vectors"))
