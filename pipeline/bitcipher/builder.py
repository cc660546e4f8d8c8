"""The whole build: tokenize -> count -> unigrams -> cipher -> cooccurrences -> vectors, into
a lake, leaving the count store and totals a refresh starts from
(:func:`bitcipher.incremental.run.build_with_counts`; without them, :func:`finish_build`)."""

from __future__ import annotations

import json
import sys
import time
from typing import Callable, Optional, Sequence, Union

import numpy as np

from bitcipher.stages.epoch import (Epoch, drift, drift_line, epoch_at, epoch_problem,
                                    frozen_vocabulary)
from bitcipher.stages.corpus import Shard, check_shards, list_shards, read_documents
from bitcipher.stages.tokenize import TOKENS_DIR
from bitcipher.errors import InputError, OptionError
from bitcipher.lake.history import published_runs
from bitcipher.lake.tables import Lake, check_lake, new_run_id
from bitcipher.options import BuildOptions
from bitcipher.stages.unigrams import UNK, collect_vocabulary, count_documents
from bitcipher.finish import (  # noqa: F401 - the build's parts, importable from here too
    TOKENS_PER_PARTITION,
    BuildResult,
    BuildRun,
    StageLog,
    StageReport,
    cipher_arrow,
    cipher_frame,
    cooccurrence_partitions,
    finish_build,
    plain_path,
)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
        # the run was never published: take its half-written tables away, and the count
        # store's files its tasks wrote unless the store holds them
        lake.remove(lake.run_dir(run_id))
        if count_store:
            from bitcipher.incremental.run import counts_uri, discard_staged, staged_dir

            discard_staged(counts_uri(lake), staged_dir(lake, run_id))
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
    staged, also = None, None
    if count_store:  # the tasks write the count store's files too (committed later)
        from bitcipher.incremental.run import staged_dir, store_writer

        staged = staged_dir(lake, run_id)
        also = store_writer(staged, shards)
    partial = docs.transform(
        count_documents(token_dir, options.lowercase, options.max_document_tokens, also))
    word_table = None
    if count_store:
        # the shards' statistics and every word's count in one job: word rows have no shard,
        # a shard's row no word (the counts are not read again: nothing is cached)
        import pyarrow.compute as pc

        summed = (partial.groupBy("shard", "word")
                  .agg(F.sum("count").alias("count"), F.sum("documents").alias("documents"),
                       F.sum("invalid_utf8").alias("invalid_utf8"))
                  .toArrow())
        is_word = pc.is_valid(summed.column("word"))
        word_table = summed.filter(is_word).select(["word", "count"])
        shard_rows = summed.filter(pc.invert(is_word))
        per_shard = [{"shard": r["shard"], "documents": r["documents"], "tokens": r["count"],
                      "invalid_utf8": r["invalid_utf8"]} for r in shard_rows.to_pylist()]
    else:
        partial = partial.persist(StorageLevel.MEMORY_AND_DISK)
        per_shard = [r.asDict() for r in (
            partial.where(F.col("shard").isNotNull())
            .groupBy("shard")
            .agg(F.sum("documents").alias("documents"), F.sum("count").alias("tokens"),
                 F.sum("invalid_utf8").alias("invalid_utf8"))
            .collect())]
    shard_stats = {plain_path(r["shard"]): r for r in per_shard}
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
        if not count_store:
            partial.unpersist()
        raise InputError(f"corpus {corpus!r} holds no tokens: nothing to build")
    stages.record("tokenize", n_docs, started,
                  f"{len(shards)} shards, {total_tokens:,} tokens")

    if count_store:
        # every word with its count (word_table): the count store and the totals keep them
        # all, and the vocabulary is ranked from them
        from bitcipher.incremental.run import build_with_counts

        return build_with_counts(spark, lake, options, run_id, word_table, shards,
                                 shard_stats, total_tokens, n_docs, warnings, stages,
                                 keep_runs, epoch, token_dir, report, staged)

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


