"""The whole build: tokenize -> unigrams -> cooccurrences -> cipher -> vectors, into a lake."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from bitcipher.stages.cipher import build_cipher
from bitcipher.stages.epoch import (MARGINAL_FILE, Epoch, drift, drift_line, epoch_at,
                                    epoch_problem, frozen_vocabulary)
from bitcipher.stages.cooccurrences import FLUSH_TOKENS, partial_counts
from bitcipher.stages.corpus import Shard, check_shards, list_shards, read_documents
from bitcipher.stages.tokenize import TOKENS_DIR, token_parts
from bitcipher.errors import InputError, OptionError
from bitcipher.lake.history import PROP_EPOCH, published_runs
from bitcipher.lake.tables import (
    PROP_BITS,
    PROP_OPTIONS,
    PROP_RUN,
    PROP_SNAPSHOT,
    Lake,
    check_lake,
    parquet_rows,
    write_npz,
    write_parquet,
    new_run_id,
    publish_vectors,
    remove_stale_runs,
    write_manifest,
)
from bitcipher.options import BuildOptions
from bitcipher.lake.schemas import FORMAT_VERSION, arrow_schema, conform, schema_of
from bitcipher.stages.merge import cooccurrences_and_vectors
from bitcipher.stages.unigrams import (UNK, Vocabulary, collect_vocabulary, count_documents,
                                       unigram_arrow, unigram_frame)
from bitcipher.stages.merge import SPILL_DIR, parts_frame, remove_tree, spilled_parts
from bitcipher.stages.projection import PROJECTION_FILE, project_spilled, spilled_finisher
from bitcipher.stages.vectors import (cooccurrence_marginal, empty_vector, marginal_post,
                                      needs_marginal, vector_batch, vector_blocks, vector_dim)

TOKENS_PER_PARTITION = 2_000_000  # corpus tokens per co-occurrence merge task


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

    ``spark.bitcipher.partitions`` when set; otherwise the cluster's default parallelism,
    or one per TOKENS_PER_PARTITION corpus tokens if that is more. The result does not
    depend on it (the tables are the same bit for bit), only the memory per task does.
    """
    chosen = spark.conf.get("spark.bitcipher.partitions", None)
    if chosen:
        return int(chosen)
    return max(spark.sparkContext.defaultParallelism,
               math.ceil(total_tokens / TOKENS_PER_PARTITION))


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


def build(
    spark,
    corpus: Union[str, Sequence[str]],
    lake: Union[str, Lake],
    options: Optional[BuildOptions] = None,
    report: Callable[[str], None] = _stderr,
    keep_runs: int = 1,
    cipher_from=None,
    count_store: bool = True,
) -> BuildResult:
    """Build vectors from a corpus into a lake and publish them atomically.

    Parameters
    ----------
    spark : SparkSession
        From :func:`bitcipher.runtime.session.spark_session`.
    corpus : str or list of str
        Directory, glob or file (or a list of them) of shards.
    lake : str or Lake
        Lake directory or URI; created if missing.
    options : BuildOptions
        Algorithm options; defaults from ALGORITHM.md.
    report : callable
        Receives one line per stage (rows, seconds); default: stderr.
    keep_runs : int
        Earlier published runs whose Parquet tables are kept (0 keeps only this one).
    cipher_from : int or str, optional
        A version (or timestamp) of the lake's vectors table: build with the cipher epoch
        of the run it published (its vocabulary, codes and projection; docs/ALGORITHM.md,
        "Frozen refresh"), as ``refresh --frozen`` does. The options must be that run's.
    count_store : bool
        Count every shard into the lake's count store and sum its totals (docs/refresh.md),
        so that the next refresh counts only the shards that changed. False (a one-off
        build, about a third faster) leaves them as they are, and the first refresh then
        counts every shard.
    """
    options = options or BuildOptions()
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    stages = StageLog(report)
    check_lake(lake)
    previous_runs = published_runs(lake)
    epoch = None
    if cipher_from is not None:
        epoch = epoch_at(lake, cipher_from)
        problem = epoch_problem(epoch, options)
        if problem:
            raise OptionError(f"--cipher-from {cipher_from}: {problem}; a frozen build takes "
                              f"the epoch's options: "
                              f"{json.dumps(epoch.options, sort_keys=True)}")

    started = time.perf_counter()
    shards = list_shards(corpus, options.input_format)
    warnings = check_shards(shards)
    for w in warnings:
        report(f"warning: {w}")
    run_id = new_run_id()
    try:
        return _build_run(spark, lake, options, corpus, shards, warnings, run_id, stages,
                          previous_runs, keep_runs, epoch, started, report, count_store)
    except BaseException:
        # the run was never published: take its half-written tables away
        lake.remove(lake.run_dir(run_id))
        raise


def _build_run(spark, lake: Lake, options: BuildOptions, corpus, shards: list[Shard],
               warnings: list[str], run_id: str, stages: StageLog, previous_runs: list[str],
               keep_runs: int, epoch: Optional[Epoch], started: float,
               report: Callable[[str], None], count_store: bool = True) -> BuildResult:
    """The stages of :func:`build` from reading the shards on, into run `run_id`."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    docs = read_documents(spark, shards, options.text_field)
    if docs is None:
        raise InputError(f"corpus {corpus!r} holds only empty shards: nothing to build")
    if any(s.format == "jsonl" for s in shards):
        bad = docs.where(F.col("bad_record").isNotNull()).select("shard", "bad_record").first()
        if bad is not None:
            raise InputError(f"shard {bad['shard']}: {bad['bad_record']}")
    # the tokens are kept beside the run, so the co-occurrence stage tokenizes nothing again
    token_dir = lake.table(run_id, TOKENS_DIR)
    partial = docs.transform(
        count_documents(token_dir, options.lowercase, options.max_document_tokens)
    ).persist(StorageLevel.MEMORY_AND_DISK)
    per_shard = (
        partial.where(F.col("shard").isNotNull())
        .groupBy("shard")
        .agg(F.sum("documents").alias("documents"), F.sum("count").alias("tokens"),
             F.sum("invalid_utf8").alias("invalid_utf8"))
        .collect()
    )
    shard_stats = {plain_path(r["shard"]): r.asDict() for r in per_shard}
    total_tokens = sum(int(r["tokens"]) for r in per_shard)
    n_docs = sum(int(r["documents"]) for r in per_shard)
    for r in per_shard:
        if r["invalid_utf8"]:
            w = (f"shard {r['shard']}: {r['invalid_utf8']} line(s) were not valid UTF-8 and "
                 f"were decoded with replacement characters")
            warnings.append(w)
            report(f"warning: {w}")
    for shard in shards:
        stats = shard_stats.get(plain_path(shard.path))
        if shard.size > 0 and (stats is None or not stats["tokens"]):
            w = f"shard {shard.path} holds no tokens"
            warnings.append(w)
            report(f"warning: {w}")
    if total_tokens == 0:
        partial.unpersist()
        raise InputError(f"corpus {corpus!r} holds no tokens: nothing to build")
    stages.record("tokenize", n_docs, started,
                  f"{len(shards)} shards, {total_tokens:,} tokens")

    if count_store:
        # every word with its count: the count store and the totals keep them all, and the
        # vocabulary is ranked from them
        word_table = (partial.where(F.col("word").isNotNull()).groupBy("word")
                      .agg(F.sum("count").alias("count")).toArrow())
        partial.unpersist()
        from bitcipher.incremental.run import build_with_counts

        return build_with_counts(spark, lake, options, run_id, word_table, shards,
                                 shard_stats, total_tokens, n_docs, warnings, stages,
                                 keep_runs, epoch, token_dir, report)

    started = time.perf_counter()
    word_counts = partial.where(F.col("word").isNotNull()).groupBy("word").agg(
        F.sum("count").alias("count")
    )
    vocab = collect_vocabulary(word_counts, options.min_count, options.max_vocab,
                               total=total_tokens)
    drift_info = None
    if epoch is not None:
        # the current counts of the epoch's words, whatever they are now
        import pyarrow as pa

        names = spark.createDataFrame(pa.table({"word": pa.array(
            [w for w in epoch.words if w != UNK], pa.string())}))
        table = word_counts.join(F.broadcast(names), "word").toArrow()
        counted = dict(zip(table.column("word").to_pylist(),
                           table.column("count").to_pylist()))
        counted.update((w, int(c)) for w, c in zip(vocab.words, vocab.counts) if w != UNK)
        words, counts = list(counted), np.array(list(counted.values()), dtype=np.int64)
        drift_info = drift(epoch, words, counts, total_tokens, options.min_count,
                           options.max_vocab)
        report(f"epoch: run {epoch.run}; {drift_line(drift_info)}")
        vocab = frozen_vocabulary(epoch, words, counts, total_tokens)
    partial.unpersist()
    run = BuildRun(spark=spark, lake=lake, run_id=run_id, options=options, vocab=vocab,
                   shards=shards, shard_stats=shard_stats,
                   total_tokens=total_tokens, n_docs=n_docs, warnings=warnings, stages=stages,
                   previous_runs=previous_runs, keep_runs=keep_runs, started=started,
                   epoch=epoch, drift=drift_info, token_dir=token_dir)
    return finish_build(run)


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
    table and returns (vectors DataFrame (id, vector array<float>), marginal or None,
    detail); with `spill_dir` (a projection follows) it writes the vectors there
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
        partial = parts_frame(spark, token_parts(run.token_dir), tasks).transform(
            partial_counts(spark, vocab.words, vocab.unk_id, options.window,
                           options.include_self, partitions, token_dir=run.token_dir))
        vec = partial.transform(
            cooccurrences_and_vectors(spark, cooc_dir, len(vocab), cipher.context(),
                                      vocab.counts, vocab.total, options, spill_dir, frozen)
        ).persist(StorageLevel.MEMORY_AND_DISK)
        n_vec = vec.count()
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
        vec, projection = project_spilled(
            spark, spill_dir, spilled_parts(spill_dir), finish, dim, len(vocab),
            options.project, options.project_exponent, options.project_center,
            extra=unk_vector)
        vec = vec.persist(StorageLevel.MEMORY_AND_DISK)
        vec.count()  # the projected vectors exist before the spilled ones are removed
        remove_tree(spill_dir)
        if unk_vector is not None:
            unk_vector = projection.apply(unk_vector)
        projection.save(lake.table(run_id, PROJECTION_FILE))
        stages.record("projection", len(vocab), started,
                      f"{vector_dim(options, cipher.bits)} -> {projection.k} dimensions")

    started = time.perf_counter()
    vocab_df = unigram_frame(spark, vocab).select("word", "id", "count")
    vectors = vec.join(F.broadcast(vocab_df), "id")
    if unk_vector is not None:
        # from Arrow, not Python rows: those are unpickled by a Python worker at every
        # action on the plan (about a second each)
        import pyarrow as pa

        rows = pa.Table.from_batches([vector_batch(empty_ids.astype(np.int32), unk_vector)])
        rows = rows.append_column("word", pa.array([vocab.words[i] for i in empty_ids],
                                                   pa.string()))
        rows = rows.append_column("count", pa.array(np.zeros(len(empty_ids), np.int64)))
        vectors = vectors.unionByName(conform(spark.createDataFrame(rows), "vectors"))
    # one file per 500k words, or per 10k words up to one per core: the writing of a table
    # of a few 10k words is a large share of a refresh, and runs in as many tasks as files
    files = max(1, len(vocab) // 500_000,
                min(spark.sparkContext.defaultParallelism, len(vocab) // 10_000))
    vectors = conform(vectors, "vectors").coalesce(files)
    vectors = vectors.sortWithinPartitions("id")
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
        "dim": projection.k if projection else vector_dim(options, cipher.bits),
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
