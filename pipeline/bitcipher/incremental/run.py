"""Incremental refresh: count only new or changed shards, take out removed ones, republish.

The lake keeps a count store, the Delta table ``lake/counts``, partitioned by ``shard``.
Its rows do not depend on frequency ranks, so they stay valid when the vocabulary changes:

=========  ===================================================================================
kind       row
=========  ===================================================================================
shard      the manifest entry of one shard: size, mtime, format
stats      documents, tokens (``count``) and invalid UTF-8 lines of (part of) one shard
words      the unigram counts of one shard, packed: ``center_keys`` the UTF-8 bytes of its
           distinct words, ``offsets`` where each ends (int64, little-endian, from 0 to the
           end of the last), ``pair_counts`` their counts (int64)
word       (stores written before the ``words`` rows, still read) unigram count of one word
           in one shard
tokens     a run of whole documents of one shard (about FLUSH_TOKENS tokens a row), as packed
           little-endian arrays: ``center_keys`` the run's distinct word keys (int64),
           ``context_keys`` its tokens as indices into them (int32), ``pair_counts`` the
           documents' lengths (int64); the co-occurrences are counted from them when a
           refresh sums or takes out the shard (:func:`bitcipher.incremental.totals.
           delta_router`), at any window up to the store's
pairs      (stores written before the ``tokens`` rows, still read) co-occurrence counts of
           one shard: ``center_keys`` and ``context_keys`` (int64 word keys), ``offsets``
           (int8), ``pair_counts`` (int64)
refresh    one per committed refresh, in its own partition ``refresh:<seq>``: ``seq`` and
           ``info`` (JSON: time, shards added / replaced / removed, counting options)
=========  ===================================================================================

A word's key is the first 8 bytes of BLAKE2b of its UTF-8 bytes (signed, little-endian:
:func:`bitcipher.keys.word_keys`); :data:`bitcipher.keys.EDGE_WORD_KEY` stands for the
document edge. Collisions are checked against the summed unigram counts at every aggregation
and stop the refresh.

One refresh is one Delta commit on ``counts``: it removes the files of the changed shards'
partitions (and ``refresh:<seq>``) and adds their new rows and the manifest entries
together, so counts and manifest never disagree. The counting tasks write the rows as
Parquet files in a folder of the table (``refresh-<id>/``, ``build-<run>/`` for a build;
:func:`store_writer`, :func:`_shard_counter`), and Delta's own transaction commits them
(:func:`bitcipher.lake.tables.commit_direct`, with a Delta ``txn`` action: app id
``bitcipher-refresh``, version ``seq``), so the rows do not pass through the JVM; where that
transaction cannot be used (a store of a later Delta protocol), Spark writes the same rows
(``replaceWhere shard IN (...)``, an idempotent write with ``txnAppId``/``txnVersion``). A
second refresh that planned from the same state writes the same ``seq``: it finds the store
moved on, or Delta refuses its commit, or (Spark's write) skips it; each becomes
:class:`ConflictError` (exit 6) and nothing is counted twice. Files of a count that was
never committed are removed when it fails, or left for VACUUM when it is killed.

Then the vocabulary comes from the summed unigram counts, keys become ids (rare words the
``<unk>`` id), and the co-occurrences are re-keyed and fed to the build's own merge, cipher,
vector and publish steps, so every table equals what ``build`` makes from the same shards.
The published vectors record the counts version they were made from: a refresh killed after
its counts commit is completed by the next run, and a run with nothing new exits 5.

A build leaves the same state (:func:`build_with_counts`): it counts every shard of its kept
tokens into the store in one commit that replaces it, and sums the totals in the same bucket
tasks (:func:`publish_from_totals`), so its first refresh counts only what changed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np

from bitcipher.finish import (DRIVER_VECTOR_FLOATS, BuildResult, BuildRun, StageLog,
                              finish_build, plain_path)
from fsspec.core import url_to_fs

from bitcipher.keys import (EDGE_WORD_KEY, MAX_WORDS, KeyCodec, sum_by_key,
                            word_keys)
from bitcipher.incremental import totals
from bitcipher.lake.storage import fsspec_uri
from bitcipher.stages.corpus import Shard, check_shards, list_shards, read_documents
from bitcipher.errors import ConflictError, InputError, LakeError, OptionError
from bitcipher.lake.history import (PROP_COUNTS_VERSION, PROP_REFRESH, delta_commits,
                                    latest_version, published_runs)
from bitcipher.lake.tables import (PROP_OPTIONS, Lake, check_lake, published, session_conf,
                                   sql_string)
from bitcipher.options import BuildOptions
from bitcipher.stages.epoch import (drift, drift_line, epoch_problem, frozen_vocabulary,
                                    published_epoch)
from bitcipher.stages.unigrams import rank_vocabulary

APP_ID = "bitcipher-refresh"
LOCAL_WORDS = 1 << 26  # distinct words one counting task may meet
COUNTING_OPTIONS = ("lowercase", "max_document_tokens", "input_format", "text_field")
COUNTS_SCHEMA = (
    "shard string, kind string, word string, count long, size long, mtime double, "
    "format string, documents long, invalid_utf8 long, seq long, info string, "
    "center_keys binary, context_keys binary, offsets binary, pair_counts binary"
)


def counts_uri(lake: Lake) -> str:
    return f"{lake.uri}/counts"


# ---------------------------------------------------------------------------------------
# counting (Python workers)


def store_rows(n: int, **columns):
    """A record batch of COUNTS_SCHEMA with `n` rows; columns not given are null."""
    import pyarrow as pa

    types = {"shard": pa.string(), "kind": pa.string(), "word": pa.string(),
             "count": pa.int64(), "size": pa.int64(), "mtime": pa.float64(),
             "format": pa.string(), "documents": pa.int64(), "invalid_utf8": pa.int64(),
             "seq": pa.int64(), "info": pa.string(), "center_keys": pa.binary(),
             "context_keys": pa.binary(), "offsets": pa.binary(), "pair_counts": pa.binary()}
    arrays = []
    for name, typ in types.items():
        value = columns.get(name)
        if value is None:
            arrays.append(pa.nulls(n, typ))
        elif isinstance(value, pa.Array):
            arrays.append(value.cast(typ))
        elif isinstance(value, (list, np.ndarray)):
            arrays.append(pa.array(value, typ))
        else:
            arrays.append(pa.array([value] * n, typ))
    return pa.RecordBatch.from_arrays(arrays, names=list(types))


def words_row(shard: str, words, counts: np.ndarray):
    """The ``words`` row of one shard: its distinct words (an Arrow string array) and their
    counts, packed in one row (a row per word made the store's Delta commits and reads
    several times slower)."""
    import pyarrow as pa

    words = pa.concat_arrays([words.cast(pa.large_string())])
    _, offsets, data = words.buffers()
    n = len(words)
    ends = np.frombuffer(offsets, dtype="<i8", count=n + 1, offset=8 * words.offset)
    first, last = int(ends[0]), int(ends[-1])
    data = (memoryview(data)[first:last].tobytes() if data is not None else b"")
    return store_rows(1, shard=shard, kind="words", center_keys=[data],
                      offsets=[(ends - first).astype("<i8").tobytes()],
                      pair_counts=[np.asarray(counts, dtype="<i8").tobytes()])


def unpack_words(rows):
    """(word, count) pyarrow table of store rows (kind, word, count, center_keys, offsets,
    pair_counts): the ``words`` rows unpacked, the ``word`` rows of older stores as they
    are; other rows are ignored."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = rows.column("kind")
    parts = [rows.filter(pc.equal(kind, "word")).select(["word", "count"])
             .cast(pa.schema([("word", pa.string()), ("count", pa.int64())]))]
    packed = rows.filter(pc.equal(kind, "words"))
    for data, ends, counts in zip(packed.column("center_keys").to_pylist(),
                                  packed.column("offsets").to_pylist(),
                                  packed.column("pair_counts").to_pylist()):
        ends = np.frombuffer(ends, dtype="<i8")
        words = pa.Array.from_buffers(pa.large_string(), len(ends) - 1,
                                      [None, pa.py_buffer(ends.tobytes()), pa.py_buffer(data)])
        parts.append(pa.table({"word": words.cast(pa.string()),
                               "count": pa.array(np.frombuffer(counts, dtype="<i8"))}))
    return pa.concat_tables(parts)


def dense_unique(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` of non-negative integers, without a sort where
    their range is not much larger than their number (a flag per value instead)."""
    if not len(ids) or int(ids.max()) > 4 * len(ids) + 1024:
        return np.unique(ids, return_inverse=True)
    seen = np.zeros(int(ids.max()) + 1, dtype=bool)
    seen[ids] = True
    distinct = np.flatnonzero(seen)
    place = np.cumsum(seen) - 1
    return distinct, place[ids]


def token_rows(shard: str, ids: np.ndarray, lengths: np.ndarray, keys_of: np.ndarray):
    """The ``tokens`` rows of one shard's documents, given as word indices `ids` whose word
    keys are `keys_of` and the documents' `lengths`: one row per run of about FLUSH_TOKENS
    tokens, cut between documents."""
    from bitcipher.stages.cooccurrences import document_runs

    for start, end, lo, hi in document_runs(lengths):
        distinct, index = dense_unique(ids[start:end])
        yield store_rows(1, shard=shard, kind="tokens",
                         center_keys=[keys_of[distinct].astype("<i8").tobytes()],
                         context_keys=[index.astype("<i4").tobytes()],
                         pair_counts=[lengths[lo:hi].astype("<i8").tobytes()])


STAGED_FILE = re.compile(r"part-(\d{5})-s(\d{5})\.parquet")


def write_store_file(folder: str, name: str, rows) -> None:
    """Write count-store rows (a pyarrow table of COUNTS_SCHEMA, one shard's) as the Parquet
    file `name` in `folder`, without the ``shard`` column (a Delta partition column is not in
    the data files)."""
    import pyarrow.parquet as pq

    fs, root = url_to_fs(fsspec_uri(folder))
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/{name}", "wb") as fh:
        pq.write_table(rows.drop_columns(["shard"]), fh, compression="snappy")


def staged_name(part: int, index: int) -> str:
    """The staged file of task partition `part` and shard number `index` (STAGED_FILE)."""
    return f"part-{part:05d}-s{index:05d}.parquet"


def staged_dir(lake: Lake, run_id: str) -> str:
    """Where a build's tokenize tasks write its count-store files (:func:`store_writer`):
    a folder of the store's table, committed to it or removed."""
    return f"{counts_uri(lake)}/build-{run_id}"


def store_writer(staged: str, shards: list) -> Callable:
    """``also`` of a build's tokenize tasks (:func:`bitcipher.stages.unigrams.
    count_documents`): writes the count-store rows of each shard a task read (its ``words``
    row and ``tokens`` rows, as a refresh counts them; COUNTS_SCHEMA less the ``shard``
    partition column) as one Parquet file, ``staged/part-PPPPP-sSSSSS.parquet``, named by
    the task's partition and the shard's place in `shards` (so a retried task replaces its
    own files). :func:`_commit_build_counts` commits them to the store."""
    place = {plain_path(s.path): i for i, s in enumerate(shards)}
    paths = [s.path for s in shards]

    def write(part: int, words, ids, lengths, names: list, chunk_shards) -> None:
        import pyarrow as pa

        if not len(ids):
            return
        keys_of = word_keys(words.to_pylist())
        lengths = np.asarray(lengths, dtype=np.int64)
        for c, chunks, tokens in shard_pieces(np.asarray(chunk_shards), lengths, len(names)):
            index = place[plain_path(names[c])]
            doc_lengths, doc_ids = lengths[chunks], ids[tokens]
            n = np.bincount(doc_ids, minlength=len(words))
            u = np.flatnonzero(n)
            n = n[u]
            rows = pa.Table.from_batches(
                [words_row(paths[index], words.take(pa.array(u)), n),
                 *token_rows(paths[index], doc_ids, doc_lengths, keys_of)])
            write_store_file(staged, staged_name(part, index), rows)

    return write


def _shard_counter(canonical_bc, lowercase: bool, max_document_tokens: int,
                   staged: Optional[str] = None) -> Callable:
    """mapInArrow: documents (shard, text, invalid_utf8) -> count-store rows per shard. With
    `staged`, the rows are not returned but written there, one Parquet file per shard,
    ``part-PPPPP-sSSSSS.parquet`` (S: the shard's place in `canonical_bc`'s values, as
    :func:`store_writer` names them) for :func:`_commit_staged`."""

    def count_batches(batches):
        rows = _counted_rows(batches)
        if staged is None:
            yield from rows
            return
        import pyarrow as pa
        from pyspark import TaskContext

        place = {path: i for i, path in enumerate(canonical_bc.value.values())}
        by_shard: dict = {}
        for batch in rows:
            by_shard.setdefault(batch.column(0)[0].as_py(), []).append(batch)
        part = TaskContext.get().partitionId()
        for name, batches in by_shard.items():
            write_store_file(staged, staged_name(part, place[name]),
                             pa.Table.from_batches(batches))

    def _counted_rows(batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        from bitcipher.stages.tokenize import tokenize_batch

        canonical = canonical_bc.value
        local: dict = {}  # task-local word ids
        state: dict = {}
        for batch in batches:
            shard_col, text, invalid = batch.column(0), batch.column(1), batch.column(2)
            flat, lengths, lines = tokenize_batch(text, lowercase, max_document_tokens)
            encoded = pc.dictionary_encode(shard_col)
            codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            names = [canonical.get(plain_path(n), n) for n in encoded.dictionary.to_pylist()]
            bad = np.bincount(codes, weights=invalid.to_numpy(zero_copy_only=False)
                              .astype(np.int64), minlength=len(names))
            chunk_code = codes[lines]
            if len(flat):
                tokens = pc.dictionary_encode(flat)
                uniq = tokens.dictionary.to_pylist()
                to_local = np.fromiter((local.setdefault(w, len(local)) for w in uniq),
                                       dtype=np.int64, count=len(uniq))
                ids = to_local[tokens.indices.to_numpy(zero_copy_only=False)]
                if len(local) >= LOCAL_WORDS - 1:
                    raise RuntimeError("more distinct words in one task than a refresh counts")
            else:
                ids = np.empty(0, np.int64)
            token_code = np.repeat(chunk_code, lengths)
            for c, name in enumerate(names):
                st = state.setdefault(name, {"bad": 0, "ids": [], "lengths": []})
                st["bad"] += int(bad[c])
                chosen = chunk_code == c
                if not chosen.any():
                    continue
                st["lengths"].append(lengths[chosen])
                st["ids"].append(ids[token_code == c])

        words = pa.array(list(local), pa.string())
        keys_of = word_keys(words.to_pylist())
        for name, st in state.items():
            lengths = np.concatenate(st["lengths"] or [np.empty(0, np.int64)])
            ids = np.concatenate(st["ids"] or [np.empty(0, np.int64)])
            yield store_rows(1, shard=name, kind="stats", documents=len(lengths),
                             count=len(ids), invalid_utf8=st["bad"])
            if not len(lengths):
                continue
            u, n = np.unique(ids, return_counts=True)
            yield words_row(name, words.take(pa.array(u)), n)
            yield from token_rows(name, ids, lengths, keys_of)

    return count_batches


def shard_pieces(chunk_shards: np.ndarray, lengths: np.ndarray, n_shards: int):
    """(shard index, its chunks, its tokens) for each of `n_shards` shards that has chunks
    (`chunk_shards`: each chunk's shard; `lengths`: its tokens): slices where a shard's chunks
    follow one another (a task reads its files one after the other), no copy; boolean masks
    otherwise."""
    ends = np.cumsum(lengths)
    token_shard = None
    for c in range(n_shards):
        where = np.flatnonzero(chunk_shards == c)
        if not len(where):
            continue
        lo, hi = int(where[0]), int(where[-1]) + 1
        if hi - lo == len(where):
            yield c, slice(lo, hi), slice(int(ends[lo - 1]) if lo else 0, int(ends[hi - 1]))
            continue
        if token_shard is None:
            token_shard = np.repeat(chunk_shards, lengths)
        yield c, chunk_shards == c, token_shard == c


def _part_counter(words_bc, canonical_bc, window: int, buckets: int, routes: list[int],
                  token_dir: str, store: bool, exchange: Optional[str] = None) -> Callable:
    """mapInArrow over the part numbers of a build's kept tokens: for each shard of each
    part, with `store` its count-store rows (``word`` and ``tokens``, as a refresh counts
    them, COUNTS_SCHEMA), otherwise its co-occurrence counts as packed word-index keys
    (:func:`bitcipher.keys.pack`) routed to their totals bucket (PARTIAL_SCHEMA)."""

    def count_parts(batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        from bitcipher.keys import packed_center
        from bitcipher.runtime.daemon import release_free_memory
        from bitcipher.stages import cooccurrences
        from bitcipher.stages.cooccurrences import (batches_by_partition, document_runs,
                                                    packed_window_keys)
        from bitcipher.stages.tokenize import read_tokens

        words, keys_of = words_bc.value
        canonical = canonical_bc.value
        for batch in batches:
            for part in batch.column(0).to_pylist():
                local, ids, lengths, names, chunk_shards = read_tokens(token_dir, part, True)
                to_idx = pc.index_in(local, value_set=words)
                if to_idx.null_count:
                    raise RuntimeError("a kept token has no unigram count")
                # int32 word indices (MAX_WORDS < 2**31), made int64 a run at a time: a part
                # holds all the tokens of a tokenize task (a Spark file split of text)
                ids = to_idx.to_numpy(zero_copy_only=False).astype(np.int32)[ids]
                lengths = lengths.astype(np.int64)
                for c, chunks, tokens in shard_pieces(chunk_shards, lengths, len(names)):
                    name = canonical.get(plain_path(names[c]), names[c])
                    doc_lengths, doc_ids = lengths[chunks], ids[tokens]
                    if store:
                        doc_ids = doc_ids.astype(np.int64)
                        u, n = np.unique(doc_ids, return_counts=True)
                        yield words_row(name, words.take(pa.array(u)), n)
                        yield from token_rows(name, doc_ids, doc_lengths, keys_of)
                        continue
                    for start, end, lo, hi in document_runs(
                            doc_lengths, cooccurrences.COUNT_RUN_TOKENS):
                        packed, counts = packed_window_keys(
                            doc_ids[start:end].astype(np.int64), doc_lengths[lo:hi],
                            window, len(words))
                        yield from batches_by_partition(packed, counts,
                                                        packed_center(packed) % buckets,
                                                        routes, exchange)
                        # the run's arrays freed and given back: glibc's heap otherwise
                        # holds a growing share of them from run to run (about 100 MiB
                        # more at the peak of a worker counting 0.5M-token runs)
                        del packed, counts
                        release_free_memory()

    return count_parts


def _vocabulary(words: list, wcounts: np.ndarray, total: int, options: BuildOptions,
                epoch, report: Callable[[str], None], max_drift: Optional[float] = None):
    """(vocabulary, epoch, drift) from every word's count: the epoch's (its drift reported)
    unless there is none or it drifted past `max_drift` (then epoch and drift are None and
    the vocabulary is ranked from the counts)."""
    drift_info = None
    if epoch is not None:
        drift_info = drift(epoch, words, wcounts, total, options.min_count, options.max_vocab)
        report(f"epoch: run {epoch.run}; {drift_line(drift_info)}")
        if max_drift is not None and drift_info["drift"] > max_drift:
            report(f"drift {drift_info['drift']:.4f} > --max-drift {max_drift}: an exact "
                   f"refresh makes a new epoch")
            epoch, drift_info = None, None
    if epoch is not None:
        return frozen_vocabulary(epoch, words, wcounts, total), epoch, drift_info
    present = wcounts >= options.min_count
    return (rank_vocabulary([(w, int(c)) for w, c, k in zip(words, wcounts, present) if k],
                            total, options.max_vocab), None, None)


def build_with_counts(spark, lake: Lake, options: BuildOptions, run_id: str, word_table,
                      shards: list, shard_stats: dict, total: int, n_docs: int,
                      warnings: list, stages, keep_runs: int, epoch, token_dir: str,
                      report: Callable[[str], None],
                      staged: Optional[str] = None) -> BuildResult:
    """The rest of a build once its tokenize stage has kept the tokens in `token_dir` and
    counted every word (`word_table`: word, count): counts every shard into the count store
    (one Delta commit replacing the whole store) and the co-occurrences into a totals
    snapshot, then aggregates and publishes as a refresh does. The lake is left as a
    refresh leaves it, so the next refresh, exact or frozen, counts only the shards that
    changed. `staged`: the folder where the tokenize tasks wrote the store's files
    (:func:`store_writer`), committed as they are where Delta's transaction can be used
    (:func:`bitcipher.lake.tables.direct_transaction`); otherwise they are removed and the
    store's rows are counted again from the kept tokens and written by Spark."""
    import pyarrow as pa

    from bitcipher.finish import cooccurrence_partitions
    from bitcipher.stages.cooccurrences import FLUSH_TOKENS, PARTIAL_SCHEMA, partition_routes
    from bitcipher.stages.merge import parts_frame, remove_tree
    from bitcipher.stages.tokenize import token_parts

    started = time.perf_counter()
    words = word_table.column("word").to_pylist()
    wcounts = word_table.column("count").to_numpy().astype(np.int64)
    if len(words) >= MAX_WORDS:
        raise InputError(f"{len(words):,} distinct words: more than a lake can count "
                         f"({MAX_WORDS:,})")
    vocab, epoch, drift_info = _vocabulary(words, wcounts, total, options, epoch, report)
    # word indices (the totals' idx) in the vocabulary's id order, then the other words by
    # word: mapping the totals to ids then keeps their order, but for <unk>, so the bucket
    # tasks sort nearly sorted keys
    position = pc_index_in(words, vocab.words)
    rest = np.flatnonzero(position < 0)
    order = np.concatenate([np.flatnonzero(position >= 0)[np.argsort(position[position >= 0])],
                            rest[sorted(range(len(rest)), key=lambda i: words[rest[i]])]])
    words = [words[i] for i in order]
    wcounts = wcounts[order]
    keys = word_keys(words)
    store = True
    try:
        _check_keys(words, keys)
    except LakeError as exc:
        store = False
        if staged is not None:
            remove_tree(staged)
        w = f"{exc}; this build leaves the lake's count store as it was"
        warnings.append(w)
        report(f"warning: {w}")

    buckets = cooccurrence_partitions(spark, total)
    routes = partition_routes(spark, buckets)
    sc = spark.sparkContext
    canonical = sc.broadcast({plain_path(s.path): s.path for s in shards})
    tasks = max(sc.defaultParallelism, -(-total // FLUSH_TOKENS))
    words_bc = sc.broadcast((pa.array(words, pa.string()), keys))
    parts = parts_frame(spark, token_parts(token_dir), tasks)

    def counted(for_store: bool, exchange: Optional[str] = None):
        counter = _part_counter(words_bc, canonical, options.window, buckets, routes,
                                token_dir, for_store, exchange)
        return parts.mapInArrow(counter, COUNTS_SCHEMA if for_store else PARTIAL_SCHEMA)

    info = {}  # the totals' shard manifest
    for s in shards:
        st = shard_stats.get(plain_path(s.path)) or {}
        info[s.path] = {"size": s.size, "mtime": s.mtime, "format": s.format,
                        "documents": int(st.get("documents") or 0),
                        "tokens": int(st.get("tokens") or 0)}
    counting = _counting(options)
    version = seq = None
    if store:
        version, seq = _commit_build_counts(spark, lake, counted, shards, shard_stats,
                                            counting, staged)
        stages.record("count", len(shards), started,
                      f"{len(shards)} shards into the count store, version {version} "
                      f"(refresh {seq})")
    tr = TotalsRun(words=words, keys=keys, counts=wcounts, shard_info=info, version=version,
                   seq=seq, counting=counting, base=None, buckets=buckets, reuse=None,
                   deltas=lambda _routes, exchange=None: counted(False, exchange))
    extra = {PROP_COUNTS_VERSION: str(version)} if store else {}
    result = publish_from_totals(spark, lake, options, vocab, tr, shards, shard_stats, total,
                                 n_docs, stages, keep_runs, warnings, epoch, drift_info, extra,
                                 run_id)
    remove_tree(token_dir)
    return result


def _commit_build_counts(spark, lake: Lake, counted: Callable, shards: list,
                         shard_stats: dict, counting: dict,
                         staged: Optional[str] = None) -> tuple[int, int]:
    """Replace the whole count store with a build's counts in one Delta commit, as the next
    refresh number; (version, seq). ConflictError when a refresh committed first. The rows
    are the files the tokenize tasks wrote to `staged` where Delta's own transaction can
    commit them (:func:`_commit_staged`), else ``counted(True)`` written by Spark."""
    import pyarrow as pa

    uri = counts_uri(lake)
    version = latest_version(uri)
    seq = 0
    if version is not None:
        snap = totals.read_pointer(lake)
        seq = snap.seq if snap is not None and snap.version == version else \
            _read_state(spark, uri, version)[1]
    seq += 1
    refresh_id = uuid.uuid4().hex
    paths = [s.path for s in shards]
    record = {"refresh_id": refresh_id,
              "time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "build": True, "added": paths, "replaced": [], "removed": [],
              "counting": counting}
    stats = [shard_stats.get(plain_path(p)) or {} for p in paths]
    head = [store_rows(1, shard=f"refresh:{seq:010d}", kind="refresh", seq=seq,
                       info=json.dumps(record, sort_keys=True))]
    if shards:
        head.append(store_rows(len(shards), shard=paths, kind="shard",
                               size=[s.size for s in shards],
                               mtime=[s.mtime for s in shards],
                               format=[s.format for s in shards]))
        head.append(store_rows(len(shards), shard=paths, kind="stats",
                               documents=[int(st.get("documents") or 0) for st in stats],
                               count=[int(st.get("tokens") or 0) for st in stats],
                               invalid_utf8=[int(st.get("invalid_utf8") or 0) for st in stats]))
    head = pa.Table.from_batches(head)
    refused = f"a refresh changed {uri} while this build counted: run the build again"
    skipped = (f"a refresh committed refresh {seq} to {uri} while this build counted: run "
               f"the build again")
    if staged is not None:
        made = _commit_staged(spark, uri, staged, shards, head, seq, refresh_id, refused,
                              skipped, version)
        if made is not None:
            return made, seq
    frame = counted(True).unionByName(spark.createDataFrame(head, schema=COUNTS_SCHEMA))
    made = _commit_counts(spark, uri, frame, seq, refresh_id, version, None, refused=refused,
                          skipped=skipped)
    return made, seq


def _commit_staged(spark, uri: str, staged: str, shards: list, head, seq: int,
                   refresh_id: str, refused: str, skipped: str, version: Optional[int],
                   replace: Optional[list] = None, count: Optional[Callable] = None,
                   before_commit: Optional[Callable] = None) -> Optional[int]:
    """Commit the count-store files in `staged` (:func:`store_writer`, or the files
    ``count(staged)`` writes first) and the `head` rows (refresh record, shard entries, and
    statistics; one more file per partition) as refresh `seq`, in one commit of Delta's own
    transaction that removes the files of the shards in `replace` (None: the whole store);
    the version made. ConflictError(`refused`) where the store is no longer at `version`
    (what the caller planned from) or another commit came first, ConflictError(`skipped`)
    where refresh `seq` is committed already. None, with `staged` removed and `count` not
    called, where the transaction cannot be used (a store this release does not write that
    way): the caller writes the rows through Spark."""
    import pyarrow.compute as pc
    from pyspark.sql.types import StructType

    from bitcipher.lake.tables import add_action, commit_direct, direct_transaction
    from bitcipher.stages.merge import remove_tree

    schema = StructType.fromDDL(COUNTS_SCHEMA)
    txn = direct_transaction(spark, uri, schema, ["shard"])
    if txn is None:
        remove_tree(staged)
        return None
    fs, root = url_to_fs(fsspec_uri(staged))
    folder = staged[len(uri):].strip("/")
    written = []
    try:
        if count is not None:
            count(staged)
        shard_col = head.column("shard")
        for value in pc.unique(shard_col).to_pylist():
            name = f"head-{len(written):05d}.parquet"
            write_store_file(staged, name, head.filter(pc.equal(shard_col, value)))
            written.append((name, value))
        adds = []
        for info in fs.ls(root, detail=True):
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            m = STAGED_FILE.fullmatch(name)
            value = (shards[int(m.group(2))].path if m else
                     next((v for n, v in written if n == name), None))
            if value is None:
                raise LakeError(f"{staged}/{name}: not a file of this count")
            adds.append(add_action(f"{folder}/{name}", {"shard": value}, info))
        if before_commit is not None:
            before_commit()

        def lost() -> ConflictError:  # to a commit of `seq` (skipped), or to another one
            won = any(c.txn.get(APP_ID, -1) >= seq for c in delta_commits(uri)
                      if version is None or c.version > version)
            return ConflictError(skipped if won else refused)

        # the store still at the version planned from (a commit of `seq` would be a later
        # one), and any commit from now on a conflict (commit_direct)
        if txn.readVersion() != (-1 if version is None else version):
            raise lost()
        gone = None if replace is None else set(replace)
        try:
            return commit_direct(
                spark, uri, txn, adds, schema, ["shard"], app=(APP_ID, seq),
                user_metadata=refresh_id,
                remove=None if gone is None else
                (lambda add: (add.get("partitionValues") or {}).get("shard") in gone))
        except Exception as exc:  # noqa: BLE001 - Delta's conflicts come as JVM errors
            if is_conflict(exc):
                raise lost() from None
            raise
    except BaseException:
        discard_staged(uri, staged)
        raise


def discard_staged(uri: str, staged: str) -> None:
    """Remove the files of `staged` (:func:`store_writer`) that the newest version of the
    count store at `uri` does not hold: what a build that failed left there."""
    from bitcipher.lake.tables import remove_uncommitted

    fs, root = url_to_fs(fsspec_uri(staged))
    try:
        names = [n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return
    remove_uncommitted(uri, [f"{staged}/{n}" for n in names])
    if fs.exists(root) and not fs.ls(root, detail=False):  # an empty folder (local storage)
        fs.rm(root, recursive=True)


# ---------------------------------------------------------------------------------------
# the refresh


@dataclass
class RefreshResult:
    lake: str
    seq: int  # number of the last committed refresh of the count store
    counts_version: Optional[int]
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    nothing_to_do: bool = False
    build: Optional[BuildResult] = None
    warnings: list[str] = field(default_factory=list)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _counting(options: BuildOptions) -> dict:
    recorded = options.recorded()
    return {**{k: recorded[k] for k in COUNTING_OPTIONS}, "window": options.window}


def _read_state(spark, uri: str, version: Optional[int]):
    """(manifest {path: (size, mtime, format)}, last refresh seq, its info) at `version`."""
    from pyspark.sql import functions as F

    if version is None:
        return {}, 0, None
    rows = (spark.read.format("delta").option("versionAsOf", version).load(uri)
            .where(F.col("kind").isin("shard", "refresh"))
            .select("shard", "kind", "size", "mtime", "format", "seq", "info").collect())
    manifest = {r["shard"]: (int(r["size"]), float(r["mtime"]), r["format"])
                for r in rows if r["kind"] == "shard"}
    refreshes = sorted((int(r["seq"]), r["info"]) for r in rows if r["kind"] == "refresh")
    if not refreshes:
        raise LakeError(f"{uri} is a Delta table without refresh records; it is not a "
                        f"bit-cipher count store")
    seq, info = refreshes[-1]
    return manifest, seq, json.loads(info)


def _commit_counts(spark, uri: str, frame, seq: int, refresh_id: str,
                   version: Optional[int], predicate: Optional[str], refused: str,
                   skipped: str) -> int:
    """Write count-store rows as refresh number `seq` in one idempotent Delta commit
    (``txnAppId``/``txnVersion``), replacing the rows `predicate` selects (None: the whole
    store); the version it made. ConflictError(`refused`) when Delta's conflict check
    refuses it, ConflictError(`skipped`) when another writer committed `seq` first and
    Delta skipped this one."""
    writer = frame.write.format("delta").mode("overwrite").partitionBy("shard")
    if predicate is not None:
        writer = writer.option("replaceWhere", predicate)
    try:
        with _no_file_statistics(spark):
            (writer.option("txnAppId", APP_ID).option("txnVersion", seq)
             .option("userMetadata", refresh_id).save(uri))
    except Exception as exc:  # noqa: BLE001 - Delta's conflicts come as JVM errors
        if is_conflict(exc):
            raise ConflictError(refused) from None
        raise
    mine = [c for c in delta_commits(uri)
            if c.user_metadata == refresh_id and (version is None or c.version > version)]
    if not mine:
        raise ConflictError(skipped)
    return mine[0].version


def _no_file_statistics(spark):
    """Delta's per-file column statistics off for a write to the count store: its columns
    are packed blobs and the shard it is partitioned by, which statistics do not help to
    skip, and collecting them is a large share of a small commit."""
    return session_conf(spark, "spark.databricks.delta.stats.collect", "false")


def is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("Concurrent", "CONCURRENT", "ProtocolChanged",
                                   "MetadataChanged", "FileAlreadyExists",
                                   "DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED"))


def check_refresh_mode(frozen: bool, max_drift: Optional[float]) -> None:
    """OptionError for `max_drift` without `frozen`, or below 0 (the CLI checks this before
    Spark starts)."""
    if max_drift is not None and not frozen:
        raise OptionError("--max-drift applies to a frozen refresh: add --frozen")
    if max_drift is not None and max_drift < 0:
        raise OptionError(f"--max-drift must be >= 0; got {max_drift}")


def refresh(
    spark,
    corpus: Union[str, Sequence[str]],
    lake: Union[str, Lake],
    options: Optional[BuildOptions] = None,
    report: Callable[[str], None] = _stderr,
    keep_runs: int = 1,
    before_commit: Optional[Callable[[], None]] = None,
    frozen: bool = False,
    max_drift: Optional[float] = None,
) -> RefreshResult:
    """Bring a lake up to date with a corpus, counting only new or changed shards.

    Parameters are those of :func:`bitcipher.builder.build`. `before_commit` (tests) runs
    between planning and the count-store commit. `frozen` keeps the cipher epoch of the
    published version (:mod:`bitcipher.stages.epoch`): its vocabulary, codes and projection;
    without one, or with other options than the epoch's, or when the epoch has drifted past
    `max_drift`, the refresh is exact (a new epoch), with a line saying why. Raises ConflictError when another refresh
    committed first, InputError for bad shards, OptionError when the counting options
    (lowercase, max_document_tokens, format, text field, a larger window) differ from the
    ones the store was counted with.
    """
    from pyspark.sql import functions as F

    options = options or BuildOptions()
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    check_refresh_mode(frozen, max_drift)
    stages = StageLog(report)
    check_lake(lake)
    uri = counts_uri(lake)

    # plan: what changed since the last committed refresh
    started = time.perf_counter()
    shards = list_shards(corpus, options.input_format)
    listed = {s.path: s for s in shards}
    version = latest_version(uri)
    snap = totals.read_pointer(lake)
    if snap is not None and version is not None and snap.version == version:
        # the totals describe the newest counts: no need to scan the store
        manifest = {p: (int(s["size"]), float(s["mtime"]), s["format"])
                    for p, s in totals.read_shards(lake, snap).items()}
        seq, last = snap.seq, {"counting": snap.counting}
    else:
        manifest, seq, last = _read_state(spark, uri, version)
    if last is not None:
        counted = last.get("counting", {})
        same = {k: counted.get(k) == v for k, v in _counting(options).items() if k != "window"}
        if not all(same.values()) or options.window > int(counted.get("window", 0)):
            raise OptionError(
                f"the counts in {uri} were made with {json.dumps(counted, sort_keys=True)}; "
                f"a refresh must use the same lowercase, max_document_tokens, format and "
                f"text field, and a window no larger (refresh into a new lake to change them)")
        count_window = int(counted["window"])
    else:
        count_window = options.window
    added = sorted(p for p in listed if p not in manifest)
    removed = sorted(p for p in manifest if p not in listed)
    replaced = sorted(p for p in listed if p in manifest and manifest[p] != (
        listed[p].size, listed[p].mtime, listed[p].format))
    stages.record("plan", len(shards), started,
                  f"+{len(added)} added ~{len(replaced)} replaced -{len(removed)} removed "
                  f"(count store version {version if version is not None else 'none'}, "
                  f"refresh {seq})")
    result = RefreshResult(lake.root, seq, version, added, replaced, removed)

    if added or replaced or removed:
        started = time.perf_counter()
        changed = [listed[p] for p in added + replaced]
        warnings = check_shards(changed)
        for w in warnings:
            report(f"warning: {w}")
        result.warnings.extend(warnings)
        seq += 1
        refresh_id = uuid.uuid4().hex
        info = {"refresh_id": refresh_id,
                "time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "added": added, "replaced": replaced, "removed": removed,
                "counting": {**_counting(options), "window": count_window}}
        import pyarrow as pa

        head = [store_rows(1, shard=f"refresh:{seq:010d}", kind="refresh", seq=seq,
                           info=json.dumps(info, sort_keys=True))]
        if changed:
            head.append(store_rows(len(changed), shard=[s.path for s in changed], kind="shard",
                                   size=[s.size for s in changed],
                                   mtime=[s.mtime for s in changed],
                                   format=[s.format for s in changed]))
        head = pa.Table.from_batches(head)
        docs = read_documents(spark, changed, options.text_field)
        if docs is not None and any(s.format == "jsonl" for s in changed):
            bad = (docs.where(F.col("bad_record").isNotNull())
                   .select("shard", "bad_record").first())
            if bad is not None:
                raise InputError(f"shard {bad['shard']}: {bad['bad_record']}")
        canonical = spark.sparkContext.broadcast({plain_path(s.path): s.path for s in changed})
        touched = added + replaced + removed + [f"refresh:{seq:010d}"]
        refused = (f"another refresh changed {uri} at the same time; nothing of this one was "
                   f"committed: run it again")
        skipped = (f"another refresh committed refresh {seq} to {uri} first (this one was "
                   f"skipped by Delta's idempotent write); nothing was counted twice: run it "
                   f"again")
        # the tasks write the changed shards' rows as files, which Delta's own transaction
        # commits with the removal of the touched shards' files; Spark's write of the same
        # rows where that transaction cannot be used
        staged = f"{uri}/refresh-{refresh_id}"

        def count_into(folder):
            if docs is not None:
                counter = _shard_counter(canonical, options.lowercase,
                                         options.max_document_tokens, folder)
                docs.select("shard", "text", "invalid_utf8").mapInArrow(
                    counter, COUNTS_SCHEMA).collect()

        made = _commit_staged(spark, uri, staged, changed, head, seq, refresh_id, refused,
                              skipped, version, replace=touched, count=count_into,
                              before_commit=before_commit)
        if made is None:
            frame = spark.createDataFrame(head, schema=COUNTS_SCHEMA)
            if docs is not None:
                counter = _shard_counter(canonical, options.lowercase,
                                         options.max_document_tokens)
                frame = docs.select("shard", "text", "invalid_utf8").mapInArrow(
                    counter, COUNTS_SCHEMA).unionByName(frame)
            predicate = f"shard IN ({', '.join(sql_string(p) for p in touched)})"
            if before_commit is not None:
                before_commit()
            made = _commit_counts(spark, uri, frame, seq, refresh_id, version, predicate,
                                  refused=refused, skipped=skipped)
        version = made
        stages.record("count", len(changed), started,
                      f"{len(changed)} shards counted, {len(removed)} taken out; count store "
                      f"version {version} (refresh {seq})")
        result.seq, result.counts_version = seq, version
        counting = info["counting"]
        manifest = {p: m for p, m in manifest.items() if p not in removed and p not in replaced}
        manifest.update({s.path: (s.size, s.mtime, s.format) for s in changed})
    else:
        try:
            props = published(lake).properties
        except LakeError:
            props = {}
        if version is not None and props.get(PROP_COUNTS_VERSION) == str(version) \
                and props.get(PROP_OPTIONS) == options.to_json():
            report("nothing to do: no shard changed and the published vectors are current")
            result.nothing_to_do = True
            return result
        if version is None:
            raise InputError(f"corpus {corpus!r} holds no shards to refresh from")
        counting = last["counting"]
    result.build = aggregate(spark, lake, options, version, seq, stages, keep_runs,
                             {"added": len(added), "replaced": len(replaced),
                              "removed": len(removed)}, result.warnings,
                             counting=counting, manifest=manifest, report=report,
                             frozen=frozen, max_drift=max_drift)
    return result


def _store_at(spark, uri: str, version: int, kinds: Sequence[str],
              shards: Optional[Sequence[str]]):
    """Rows of the given kinds at `version`, of the given shards only (None: all)."""
    from pyspark.sql import functions as F

    df = spark.read.format("delta").option("versionAsOf", version).load(uri)
    if shards is not None:
        df = df.where(F.col("shard").isin(list(shards)))
    return df.where(F.col("kind").isin(list(kinds)))


def _store_part_files(uri: str, version: int, shards: Sequence[str]) -> Optional[list]:
    """[(file URI, shard)] of the count store's data files in the partitions of `shards` at
    `version`, listed from the Delta log. None for a store of another Delta reader protocol
    than 1, or when the log does not reach `version`."""
    from urllib.parse import unquote

    from bitcipher.lake.tables import live_adds, reader_protocol_1

    if not reader_protocol_1(uri):
        return None
    adds = live_adds(uri, version)
    if adds is None:
        return None
    wanted = set(shards)
    return [(f"{uri}/{unquote(path)}", add["partitionValues"]["shard"])
            for path, add in sorted(adds.items())
            if (add.get("partitionValues") or {}).get("shard") in wanted]


def _read_store_file(file: str, kinds: Sequence[str], columns: list):
    """The rows of the given kinds of one count-store data file, its `columns` (``shard``
    aside: the partition column is not in the file)."""
    import fsspec
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with fsspec.open(fsspec_uri(file), "rb") as fh:
        t = pq.read_table(fh, columns=[c for c in columns if c != "shard"])
    return t.filter(pc.is_in(t.column("kind"), pa.array(list(kinds))))


def _store_files(uri: str, version: int, kinds: Sequence[str], shards: Sequence[str],
                 columns: list):
    """The count store's rows of the given kinds and shards at `version`, read by pyarrow
    from the files of those shards' partitions (listed from the Delta log): a few shards'
    rows without Spark's reading of the whole log. None where :func:`_store_part_files`
    gives no list, or a file is of an older layout."""
    import pyarrow as pa

    files = _store_part_files(uri, version, shards)
    if not files:
        return None
    parts = []
    for file, shard in files:
        try:
            t = _read_store_file(file, kinds, columns)
        except (KeyError, ValueError, pa.ArrowInvalid):  # a file of an older layout
            return None
        parts.append(t.append_column("shard", pa.array([shard] * t.num_rows, pa.string()))
                     .select(columns))
    return pa.concat_tables(parts)


def _store_rows_frame(spark, uri: str, parts: list, columns: tuple):
    """A DataFrame of the count store's ``tokens`` and ``pairs`` rows (`columns`, then
    ``s``) of the shards in `parts` [(version, shards, sign)], each row with its part's
    sign: the files the Delta log lists, read by pyarrow in up to as many tasks as the
    default parallelism. None where a part's files are not listed that way or a file lacks
    a column (an older layout): the caller reads the store through Spark."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    files, signs = [], []
    for version, shards, sign in parts:
        listed = _store_part_files(uri, version, shards)
        if listed is None:
            return None
        files += [f for f, _ in listed]
        signs += [sign] * len(listed)
    if not files:
        return None
    for file in files:  # a footer each: a few shards' files
        try:
            with fsspec.open(fsspec_uri(file), "rb") as fh:
                if not set(columns) <= set(pq.read_schema(fh).names):
                    return None
        except (OSError, ValueError, pa.ArrowInvalid):
            return None
    kinds = ("tokens", "pairs")
    schema = pa.schema([("file", pa.string()), ("s", pa.int32())])
    listing = spark.createDataFrame(pa.table({"file": files, "s": signs}, schema=schema))
    listing = listing.repartition(min(len(files), spark.sparkContext.defaultParallelism))
    out = ", ".join(f"{c} {'string' if c == 'kind' else 'binary'}" for c in columns)

    def read(batches):
        for batch in batches:
            for file, sign in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                t = _read_store_file(file, kinds, list(columns))
                yield from t.append_column("s", pa.array([sign] * t.num_rows, pa.int32())
                                           ).to_batches()

    return listing.mapInArrow(read, f"{out}, s int")


def _changed_counts(spark, uri: str, parts):
    """Word counts and shard entries of `parts` [(version, shards or None, sign)], one query
    each: (pyarrow table (word, count) of the signed word counts summed over the parts,
    {path: {size, mtime, format, documents, tokens}} of the parts with sign +1)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = ["shard", "kind", "word", "count", "size", "mtime", "format", "documents",
               "center_keys", "offsets", "pair_counts"]
    kinds = ("word", "words", "shard", "stats")
    words, info = [], {}
    for version, shards, sign in parts:
        rows = _store_files(uri, version, kinds, shards, columns) if shards else None
        if rows is None:
            rows = (_store_at(spark, uri, version, kinds, shards).select(*columns).toArrow())
        kind = rows.column("kind")
        w = unpack_words(rows)
        words.append(pa.table({"word": w.column("word"),
                               "count": pc.multiply(w.column("count"), sign)}))
        if sign < 0:
            continue
        for r in (rows.filter(pc.is_in(kind, pa.array(["shard", "stats"])))
                  .select(["shard", "kind", "count", "size", "mtime", "format", "documents"])
                  .to_pylist()):
            entry = info.setdefault(r["shard"], {"size": 0, "mtime": 0.0, "format": None,
                                                 "documents": 0, "tokens": 0})
            if r["kind"] == "shard":
                entry.update(size=int(r["size"]), mtime=float(r["mtime"]), format=r["format"])
            else:
                entry["documents"] += int(r["documents"] or 0)
                entry["tokens"] += int(r["count"] or 0)
    if not words:
        empty = pa.table({"word": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        return empty, info
    delta = (pa.concat_tables(words).group_by("word").aggregate([("count", "sum")])
             .rename_columns(["word", "count"]))
    return delta, {p: e for p, e in info.items() if e["format"] is not None}


def _update_words(words: list, keys: np.ndarray, counts: np.ndarray, delta):
    """Apply signed per-word deltas; new words get the next indices (sorted by word)."""
    counts = counts.copy()
    d_words = delta.column("word").to_pylist()
    d_counts = delta.column("count").to_numpy().astype(np.int64)
    pos = pc_index_in(d_words, words)
    found = pos >= 0
    np.add.at(counts, pos[found], d_counts[found])
    new = sorted((w, int(c)) for w, c, f in zip(d_words, d_counts, found) if not f and c != 0)
    if any(c < 0 for _, c in new) or (counts < 0).any():
        raise LakeError("a word count fell below zero: the count store is damaged; refresh "
                        "into a new lake")
    if new:
        words = list(words) + [w for w, _ in new]
        keys = np.concatenate([keys, word_keys([w for w, _ in new])])
        counts = np.concatenate([counts, np.array([c for _, c in new], np.int64)])
    if len(words) >= MAX_WORDS:
        raise LakeError(f"{len(words):,} distinct words: more than a refresh can count "
                        f"({MAX_WORDS:,}); use `bitcipher build`")
    return words, keys, counts


def _check_keys(words: list, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys and their word indices; a key collision is an error."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    clash = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if len(clash) or (len(keys) and (sorted_keys == EDGE_WORD_KEY).any()):
        i = (order[clash[0]] if len(clash)
             else order[np.flatnonzero(sorted_keys == EDGE_WORD_KEY)[0]])
        raise LakeError(f"word key collision: {words[i]!r} shares its 64-bit key with "
                        f"another word or the edge marker; this corpus cannot be refreshed "
                        f"incrementally: use `bitcipher build`")
    return sorted_keys, order.astype(np.int64)


def aggregate(spark, lake: Lake, options: BuildOptions, version: int, seq: int, stages,
              keep_runs: int = 1, changes: Optional[dict] = None,
              warnings: Optional[list] = None, counting: Optional[dict] = None,
              manifest: Optional[dict] = None, report: Callable[[str], None] = _stderr,
              frozen: bool = False, max_drift: Optional[float] = None) -> BuildResult:
    """Vocabulary, cipher, co-occurrences and vectors from version `version` of the count
    store, published like a build.

    Starts from the totals snapshot (:mod:`bitcipher.incremental.totals`) when there is one for the same
    counting options, adding the shards that changed since its version and subtracting
    their old counts; otherwise sums every shard. `manifest` ({path: (size, mtime,
    format)} at `version`) saves reading it from the store; `counting` is the store's
    counting options (with its window). `frozen`, `max_drift`: as :func:`refresh`.
    """
    from pyspark.sql import functions as F

    from bitcipher.finish import cooccurrence_partitions
    from bitcipher.stages.cooccurrences import PARTIAL_SCHEMA
    from bitcipher.lake.tables import new_run_id

    started = time.perf_counter()
    uri = counts_uri(lake)
    epoch = None
    if frozen:
        epoch = published_epoch(lake)
        if epoch is None:
            report("frozen: the lake serves no run whose cipher can be kept (no epoch yet): "
                   "an exact refresh makes one")
        elif (problem := epoch_problem(epoch, options)) is not None:
            report(f"frozen: {problem}; an exact refresh makes a new epoch")
            epoch = None
    if manifest is None or counting is None:
        manifest, _, last = _read_state(spark, uri, version)
        counting = last["counting"]
    base = totals.read_pointer(lake)
    if base is not None and (base.counting != counting or base.version > version):
        base = None
    words, keys, wcounts = [], np.empty(0, np.int64), np.empty(0, np.int64)
    shard_info: dict = {}
    add: Optional[list] = None  # shards whose counts at `version` are added (None: all)
    sub: list = []  # shards whose counts at base.version are subtracted
    if base is not None:
        try:
            shard_info = totals.read_shards(lake, base)
            old = {p: (s["size"], s["mtime"], s["format"]) for p, s in shard_info.items()}
            sub = sorted(p for p in old if manifest.get(p) != old[p])
            add = sorted(p for p in manifest if old.get(p) != manifest[p])
            parts = [(version, add, 1)] if add else []
            if sub:
                parts.append((base.version, sub, -1))
            delta, added_info = _changed_counts(spark, uri, parts)
            words, keys, wcounts = totals.read_words(lake, base)
        except Exception as exc:  # noqa: BLE001 - vacuumed history, damaged snapshot
            report(f"warning: the totals snapshot {base.name} cannot be used ({type(exc).__name__}: "
                   f"{str(exc).splitlines()[0][:200]}); summing every shard")
            base, add, sub = None, None, []
            words, keys, wcounts, shard_info = [], np.empty(0, np.int64), np.empty(0, np.int64), {}
    if base is None:
        delta, added_info = _changed_counts(spark, uri, [(version, None, 1)])
    for p in sub:
        shard_info.pop(p, None)
    shard_info.update(added_info)
    words, keys, wcounts = _update_words(words, keys, wcounts, delta)
    shards = sorted((Shard(p, int(s["size"]), float(s["mtime"]), s["format"])
                     for p, s in shard_info.items()), key=lambda s: s.path)
    shard_stats = {plain_path(p): {"tokens": s["tokens"]} for p, s in shard_info.items()}
    total = sum(s["tokens"] for s in shard_info.values())
    n_docs = sum(s["documents"] for s in shard_info.values())
    if total == 0:
        raise InputError("the corpus holds no tokens: nothing to build")
    if int(wcounts.sum()) != total:
        raise LakeError(f"{uri} version {version}: word counts sum to {int(wcounts.sum())} "
                        f"but the shards hold {total} tokens; the count store is damaged")
    sorted_keys, idx_sorted = _check_keys(words, keys)
    vocab, epoch, drift_info = _vocabulary(words, wcounts, total, options, epoch, report,
                                           max_drift)
    stages.record("counts", len(words), started,
                  f"{len(shards)} shards, {total:,} tokens, {len(words):,} word types; "
                  + (f"totals of version {base.version} -{len(sub)} +{len(add)} shards"
                     if base is not None else "summed from every shard")
                  + f" (count store version {version})")

    reuse = _reusable_vectors(lake, epoch, base, options)
    if reuse is not None:
        report(f"frozen: the vectors of words whose counts did not change since count store "
               f"version {base.version} are kept from vectors version {reuse}")
    if base is not None:
        buckets = base.buckets
    else:
        buckets = cooccurrence_partitions(spark, total)
    map_bc = spark.sparkContext.broadcast((sorted_keys, idx_sorted))

    def deltas(routes: list[int], exchange: Optional[str] = None):
        """The changed shards' signed co-occurrence counts, routed to their buckets."""
        cols = ("kind", "center_keys", "context_keys", "offsets", "pair_counts")
        router = totals.delta_router(map_bc, buckets, routes, int(counting["window"]),
                                     exchange)
        if add is not None:  # a few shards: their files read by pyarrow, not a Delta scan
            listed = [(version, add, 1)] if add else []
            listed += [(base.version, sub, -1)] if sub else []
            rows = _store_rows_frame(spark, uri, listed, cols) if listed else None
            if rows is not None:
                return rows.mapInArrow(router, PARTIAL_SCHEMA)
        parts = []
        if add is None or add:
            parts.append(_store_at(spark, uri, version, ("tokens", "pairs"), add)
                         .select(*cols, F.lit(1).alias("s")))
        if sub:
            parts.append(_store_at(spark, uri, base.version, ("tokens", "pairs"), sub)
                         .select(*cols, F.lit(-1).alias("s")))
        if not parts:
            return None
        union = parts[0]
        for extra in parts[1:]:
            union = union.unionByName(extra)
        return union.mapInArrow(router, PARTIAL_SCHEMA)

    extra = {PROP_COUNTS_VERSION: str(version),
             PROP_REFRESH: json.dumps({"seq": seq, "counts_version": version,
                                       "mode": "frozen" if epoch is not None else "exact",
                                       **(changes or {})}, sort_keys=True)}
    totals_run = TotalsRun(words=words, keys=keys, counts=wcounts, shard_info=shard_info,
                           version=version, seq=seq, counting=counting, base=base,
                           buckets=buckets, reuse=reuse, deltas=deltas)
    return publish_from_totals(spark, lake, options, vocab, totals_run, shards, shard_stats,
                               total, n_docs, stages, keep_runs, warnings, epoch, drift_info,
                               extra, new_run_id())


@dataclass
class TotalsRun:
    """What :func:`publish_from_totals` sums into a new totals snapshot: every word counted
    (in idx order), the shards, and the co-occurrence deltas to add to `base`."""

    words: list
    keys: np.ndarray
    counts: np.ndarray
    shard_info: dict  # {path: {size, mtime, format, documents, tokens}}
    version: int  # count-store version the new snapshot sums
    seq: int
    counting: dict
    base: Optional["totals.Snapshot"]  # the snapshot the deltas go on, or None
    buckets: int
    reuse: Optional[int]  # vectors version whose untouched words' vectors are kept
    deltas: Callable  # deltas(routes, exchange) -> DataFrame PARTIAL_SCHEMA (packed keys)
    # or None; exchange: bitcipher.stages.cooccurrences.local_exchange


def publish_from_totals(spark, lake: Lake, options: BuildOptions, vocab, tr: TotalsRun,
                        shards: list, shard_stats: dict, total: int, n_docs: int, stages,
                        keep_runs: int, warnings: Optional[list], epoch, drift_info,
                        extra: dict, run_id: str) -> BuildResult:
    """Add the deltas to the totals in one task per bucket, which writes the new totals
    bucket, that bucket's part of ``cooccurrences`` and its centre words' vectors; then
    finish and publish the run like a build (:func:`bitcipher.finish.finish_build`) and
    make the new snapshot the one in use."""
    import pyarrow as pa
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from bitcipher.stages.cooccurrences import (PARTIAL_SCHEMA, local_exchange,
                                                partition_routes)
    from bitcipher.stages.merge import cooccurrence_part, made_vectors, remove_tree
    from bitcipher.stages.vectors import (context_marginal, marginal_post, needs_marginal,
                                          vector_batch, vector_dim)

    base, buckets, reuse, counting = tr.base, tr.buckets, tr.reuse, tr.counting
    unk = vocab.unk_id
    id_of_idx = pc_index_in(tr.words, vocab.words)
    id_of_idx[id_of_idx < 0] = unk
    target = uuid.uuid4().hex if tr.version is not None else None  # None: keep no totals
    # a frozen run that keeps the published vectors of its untouched words adds its delta
    # to the published run's cooccurrences (its totals re-keyed), and its totals snapshot is
    # a delta layer on `base` (whole again after MAX_DELTAS of them)
    previous = lake.table(epoch.folder_run, "cooccurrences") if reuse is not None else None
    layers = []
    if previous is not None and len(base.layers) < totals.MAX_DELTAS:
        layers = [*base.layers, base.name]
    sc = spark.sparkContext
    persisted, exchanges = [], []

    def vectors_stage(cipher, cooc_dir, spill_dir=None, frozen=None):
        x = cipher.context()
        sums_dir = lake.table(run_id, "sums")  # the bucket tasks' <unk> rows and marginals
        # the kept and the new vectors put together on the driver, if they are few enough:
        # the published ones read by pyarrow and the new ones from the tasks' files, not
        # decoded and encoded again float by float in the JVM
        dim = None
        if reuse is not None:
            dim = (frozen[1].k if frozen[1] is not None
                   else vector_dim(options, cipher.bits))
        vectors_dir = (lake.table(run_id, "made") if reuse is not None
                       and len(vocab) * dim <= DRIVER_VECTOR_FLOATS else None)
        routes = partition_routes(spark, buckets)
        markers = spark.createDataFrame(
            pa.table({"route": pa.array(routes, pa.int64()),
                      "keys": pa.array([b""] * buckets, pa.binary()),
                      "counts": pa.array([b""] * buckets, pa.binary())}),
            schema=PARTIAL_SCHEMA)
        exchange = local_exchange(spark)  # the routed counts through local files
        if exchange is not None:
            exchanges.append(exchange)
        partial = tr.deltas(routes, exchange)
        partial = markers if partial is None else partial.unionByName(markers)
        job = {"options": options, "buckets": buckets, "routes": routes,
               "id_of_idx": id_of_idx, "unk_id": unk, "total": vocab.total,
               "base_dirs": base.pairs_dirs(lake) if base is not None else None,
               "target": totals.snapshot_dir(lake, target) if target else None,
               "delta_only": bool(layers), "previous": previous,
               "cooc_dir": cooc_dir, "sums_dir": sums_dir, "vectors_dir": vectors_dir,
               "spill_dir": spill_dir, "frozen": frozen, "touched_only": reuse is not None}
        counts_arr = np.asarray(vocab.counts, dtype=np.int64)
        routed = partial.repartition(buckets, "route")
        if previous is not None:
            # a bucket's work is its change and its touched words: as many tasks as the
            # default parallelism (two a core locally), each taking its buckets one after
            # the other, cost less than a task per bucket
            routed = routed.coalesce(min(buckets, max(1, sc.defaultParallelism)))
        out = (routed
               .mapInArrow(totals.bucket_processor(sc.broadcast(job), sc.broadcast(x),
                                                   sc.broadcast(counts_arr)),
                           totals.OUT_SCHEMA)
               .persist(StorageLevel.MEMORY_AND_DISK))
        persisted.append(out)
        out.count()  # runs the bucket tasks (their vectors kept for what follows)
        if exchange is not None:
            remove_tree(exchange)

        if target is not None:  # the totals snapshot of `version` is complete: in use now
            totals.write_tables(lake, target, tr.words, tr.keys, tr.counts, tr.shard_info)
            totals.write_pointer(lake, totals.Snapshot(
                version=tr.version, seq=tr.seq, name=target, buckets=buckets,
                window=int(counting["window"]), counting=counting, layers=layers))

        codec = KeyCodec(len(vocab), options.window)
        # the <unk> centre's keys: one centre, so a dense range of n_offsets * n_contexts
        per_center = codec.n_offsets * codec.n_contexts
        uk, un = totals.summed_files(sums_dir, "unk", per_center, unk * per_center)
        if previous is not None:  # the bucket tasks summed the change of the <unk> rows
            pk, pn = totals.table_part(previous, buckets, codec)
            uk, un = sum_by_key(np.concatenate([pk, uk]), np.concatenate([pn, un]))
            if (un < 0).any():
                raise LakeError("a co-occurrence count of <unk> fell below zero: the "
                                "published cooccurrences and the count store disagree; "
                                "refresh without --frozen")
            uk, un = uk[un != 0], un[un != 0]
        counts_ext = np.append(counts_arr, 0)
        raw = needs_marginal(options) and frozen is None
        unk_rows = None  # the <unk> centre's row, as an Arrow batch (id, vector)
        unk_vector = None  # the same: (ids, 2-D array), of a frozen run
        marginal = frozen[0] if frozen is not None else None
        if raw:
            mk, mn = totals.summed_files(sums_dir, "marginal", codec.n_marginal_keys)
            if len(uk):  # and the <unk> centre's share, added to the same keys
                _, off, ctx = codec.decode(uk)
                uk_m, un_m = totals.marginal_totals(ctx, off, un, codec)
                mk, mn = sum_by_key(np.concatenate([mk, uk_m]), np.concatenate([mn, un_m]))
        remove_tree(sums_dir)
        if len(uk):
            ids, v = cooccurrence_part(uk, un, codec, cooc_dir, buckets, x, counts_ext,
                                       vocab.total, options, raw, spill_dir, frozen)
            unk_rows = vector_batch(ids[:1], v[:1].astype(np.float64), pa.float64())
            unk_vector = (ids[:1], v[:1])
        if raw:
            ctx, off = codec.decode_marginal(mk)
            ctx = codec.table_context(ctx)
            order = np.lexsort((off, ctx))  # the build's ORDER BY context, offset
            marginal = context_marginal(ctx[order], off[order], mn[order], x, counts_ext,
                                        vocab.total, options)
        detail = f"{buckets} buckets"
        if vectors_dir is not None:
            made_ids, made_rows = made_vectors(vectors_dir, dim, unk_vector)
            remove_tree(vectors_dir)
            skip = sorted({*made_ids.tolist(), *np.flatnonzero(counts_arr == 0).tolist(),
                           int(unk)})
            detail += f"; {len(made_ids) - (unk_vector is not None):,} vectors made " \
                      f"again, the others kept"
            kept = _published_vectors(lake, reuse, skip, dim, len(vocab))
            if kept is not None:  # published by pyarrow and Delta's transaction
                ids = np.concatenate([made_ids, kept[0]])
                order = np.argsort(ids, kind="stable")
                rows = np.concatenate([made_rows, kept[1]])[order]
                return (pa.Table.from_batches([vector_batch(ids[order], rows)]), marginal,
                        detail)
            # a table changed by hand since it was published: its rows through Spark
            skip_df = spark.createDataFrame(pa.table({"id": pa.array(skip, pa.int32())}))
            kept = (spark.read.format("delta").option("versionAsOf", reuse).load(lake.vectors)
                    .select("id", "vector").join(F.broadcast(skip_df), "id", "left_anti"))
            made = pa.Table.from_batches([vector_batch(made_ids, made_rows)])
            return spark.createDataFrame(made).unionByName(kept), marginal, detail
        vec = out.where(F.col("kind") == "vector").select("id", "vector")
        if unk_rows is not None:  # from Arrow: no Python worker unpickles it at each action
            vec = vec.unionByName(spark.createDataFrame(pa.Table.from_batches([unk_rows])))
        if spill_dir is not None:  # the projection reads the vectors from the spilled files
            return vec, marginal, f"{buckets} buckets"
        if raw:
            vec = vec.transform(marginal_post(spark, marginal, options))
        else:
            vec = vec.select("id", F.col("vector").cast("array<float>").alias("vector"))
        if reuse is not None:
            # the other words' vectors as published: the same rows, epoch and options made
            # them; <unk> (made again above) and words with no count now (the empty vector,
            # made by finish_build) aside
            made = [r[0] for r in out.where(F.col("kind") == "vector").select("id").collect()]
            skip = sorted({*made, *np.flatnonzero(counts_arr == 0).tolist(), int(unk)})
            skip_df = spark.createDataFrame(pa.table({"id": pa.array(skip, pa.int32())}))
            kept = (spark.read.format("delta").option("versionAsOf", reuse).load(lake.vectors)
                    .select("id", "vector").join(F.broadcast(skip_df), "id", "left_anti"))
            vec = vec.unionByName(kept)
            detail += f"; {len(made):,} vectors made again, the others kept"
        return vec, marginal, detail

    previous_runs = published_runs(lake)
    started = time.perf_counter()
    run = BuildRun(spark=spark, lake=lake, run_id=run_id, options=options, vocab=vocab,
                   shards=shards, shard_stats=shard_stats, total_tokens=total,
                   n_docs=n_docs, warnings=list(warnings or []), stages=stages,
                   previous_runs=previous_runs, keep_runs=keep_runs, started=started,
                   epoch=epoch, drift=drift_info)
    try:
        result = finish_build(run, vectors_stage=vectors_stage, extra_properties=extra)
    except BaseException as exc:
        lake.remove(lake.run_dir(run.run_id))
        if is_conflict(exc):
            raise ConflictError(f"another build or refresh published {lake.vectors} at the "
                                f"same time: run this one again") from None
        raise
    finally:
        for df in persisted:
            df.unpersist()
        for folder in exchanges:
            remove_tree(folder)
    _remove_stale_snapshots(lake)
    return result


def _published_vectors(lake: Lake, version: int, skip: list, dim: int, n_ids: int):
    """(ids int32, float32 rows) of the vectors table at `version` but the ids in `skip`,
    read by pyarrow from its data files at that version (read from the
    Delta log: :func:`bitcipher.lake.tables.delta_files`);
    None unless those files hold each id 0 .. n_ids - 1 once, with `dim` floats (a table
    changed by hand, rows deleted with deletion vectors say, is read through Spark). The
    version must be the latest: only a table of Delta reader protocol 1 is read here, whose
    data files hold its rows as they are."""
    import fsspec
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from bitcipher.lake.tables import delta_files, latest_action, reader_protocol_1

    meta = latest_action(lake.vectors, "metaData") or {}
    if not reader_protocol_1(lake.vectors) or meta.get("partitionColumns"):
        return None
    files = delta_files(lake.vectors, version)
    if files is None:
        return None
    parts = []
    for f in sorted(files):
        with fsspec.open(fsspec_uri(f), "rb") as fh:
            parts.append(pq.read_table(fh, columns=["id", "vector"]))
    if not parts:
        return None
    table = pa.concat_tables(parts)
    ids = table.column("id").to_numpy()
    if len(ids) != n_ids or not np.array_equal(np.sort(ids), np.arange(n_ids)):
        return None
    vec = table.column("vector").combine_chunks()
    if vec.null_count or not pc.all(pc.equal(pc.list_value_length(vec), dim)).as_py():
        return None
    keep = ~np.isin(ids, np.asarray(skip, dtype=ids.dtype))
    values = vec.flatten().cast(pa.float32()).to_numpy(zero_copy_only=False)
    return ids[keep].astype(np.int32), values.reshape(len(ids), dim)[keep]


def _reusable_vectors(lake: Lake, epoch, base, options: BuildOptions) -> Optional[int]:
    """The vectors version whose vectors a frozen run may keep for the words whose
    co-occurrences did not change, or None. A frozen vector depends only on its word's
    co-occurrence rows, the epoch and the options (unless the weighting is ``cosine``, which
    reads every word's current count), so the published vectors serve if they were made with
    this epoch and these options from the counts the totals snapshot `base` holds."""
    if epoch is None or base is None or options.weighting == "cosine":
        return None
    try:
        pub = published(lake)
    except LakeError:
        return None
    props = pub.properties
    if (pub.run != epoch.folder_run or props.get(PROP_COUNTS_VERSION) != str(base.version)
            or props.get(PROP_OPTIONS) != options.to_json()):
        return None
    return latest_version(lake.vectors)


def pc_index_in(values: list, value_set: list) -> np.ndarray:
    """Position of each value in `value_set`, -1 where absent."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pos = pc.index_in(pa.array(values, pa.string()), value_set=pa.array(value_set, pa.string()))
    return pos.fill_null(-1).to_numpy().astype(np.int64)


def _remove_stale_snapshots(lake: Lake) -> None:
    """Remove totals snapshots other than the one in use and the layers it adds to."""
    current = totals.read_pointer(lake)
    if current is None:
        return
    keep = {current.name, *current.layers}
    fs, path = url_to_fs(fsspec_uri(totals.root(lake)))
    for entry in fs.ls(path, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] == "directory" and name not in keep:
            fs.rm(entry["name"], recursive=True)


def vacuum(spark, lake: Union[str, Lake], retain_hours: float,
           report: Callable[[str], None] = _stderr) -> None:
    """VACUUM the lake's Delta tables (vectors, counts), keeping `retain_hours` of history.

    Time travel (``--as-of``) reaches back only as far as the files VACUUM keeps.
    """
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    if retain_hours < 0:
        raise OptionError(f"--retain-hours must be >= 0; got {retain_hours}")
    key = "spark.databricks.delta.retentionDurationCheck.enabled"
    before = spark.conf.get(key, "true")
    spark.conf.set(key, "false")  # the check refuses less than the default 7 days
    # VACUUM lists files in this many tasks (Spark's default, 10,000, is for huge tables)
    listing = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
    listing_before = spark.conf.get(listing, None)
    spark.conf.set(listing, str(max(2, spark.sparkContext.defaultParallelism * 2)))
    try:
        for uri in (lake.vectors, counts_uri(lake)):
            if lake.exists(f"{uri}/_delta_log"):
                started = time.perf_counter()
                spark.sql(f"VACUUM delta.`{uri}` RETAIN {float(retain_hours)} HOURS").collect()
                report(f"{'vacuum':<14}{'':>14}       {time.perf_counter() - started:>7.2f} s  "
                       f"{uri} (retain {retain_hours} h)")
    finally:
        spark.conf.set(key, before)
        if listing_before is None:
            spark.conf.unset(listing)
        else:
            spark.conf.set(listing, listing_before)
