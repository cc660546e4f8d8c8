"""Incremental refresh: count only new or changed shards, take out removed ones, republish.

The lake keeps a count store, the Delta table ``lake/counts``, partitioned by ``shard``.
Its rows do not depend on frequency ranks, so they stay valid when the vocabulary changes:

=========  ===================================================================================
kind       row
=========  ===================================================================================
shard      the manifest entry of one shard: size, mtime, format
stats      documents, tokens (``count``) and invalid UTF-8 lines of (part of) one shard
word       unigram count of one word in one shard
pairs      co-occurrence counts of one shard as packed little-endian arrays: ``center_keys``
           and ``context_keys`` (int64 word keys), ``offsets`` (int8), ``pair_counts`` (int64)
refresh    one per committed refresh, in its own partition ``refresh:<seq>``: ``seq`` and
           ``info`` (JSON: time, shards added / replaced / removed, counting options)
=========  ===================================================================================

A word's key is the first 8 bytes of BLAKE2b of its UTF-8 bytes (signed, little-endian);
``EDGE_KEY`` stands for the document edge. Collisions are checked against the summed
unigram counts at every aggregation and stop the refresh.

One refresh is one Delta commit on ``counts``: ``replaceWhere shard IN (added, replaced,
removed, refresh:<seq>)`` removes the rows of the changed shards and writes their new rows
and the manifest entries together, so counts and manifest never disagree. The commit is an
idempotent write (``txnAppId`` = ``bitcipher-refresh``, ``txnVersion`` = ``seq``): a second
refresh that planned from the same state writes the same ``seq`` and is either skipped by
Delta or refused by its conflict check; both become :class:`ConflictError` (exit 6) and
nothing is counted twice.

Then the vocabulary comes from the summed unigram counts, keys become ids (rare words the
``<unk>`` id), and the co-occurrences are re-keyed and fed to the build's own merge, cipher,
vector and publish steps, so every table equals what ``build`` makes from the same shards.
The published vectors record the counts version they were made from: a refresh killed after
its counts commit is completed by the next run, and a run with nothing new exits 5.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .build import (
    BuildResult,
    _build_run,
    _local_path,
    _Stages,
    cooccurrence_partitions,
)
from .corpus import Shard, check_shards, list_shards, read_documents
from .errors import ConflictError, InputError, LakeError, OptionError
from .history import PROP_COUNTS_VERSION, PROP_REFRESH, delta_commits, latest_version
from .lake import PROP_OPTIONS, Lake, _sql_string, check_lake, published
from .options import BuildOptions
from .unigrams import rank_vocabulary

APP_ID = "bitcipher-refresh"
EDGE_KEY = -(2**63)
LOCAL_WORDS = 1 << 26  # distinct words one counting task may meet
PAIRS_PER_ROW = 1 << 20
FLUSH_PAIRS = 4_000_000
COUNTING_OPTIONS = ("lowercase", "max_document_tokens", "input_format", "text_field")
COUNTS_SCHEMA = (
    "shard string, kind string, word string, count long, size long, mtime double, "
    "format string, documents long, invalid_utf8 long, seq long, info string, "
    "center_keys binary, context_keys binary, offsets binary, pair_counts binary"
)
PARTIAL_SCHEMA = "route long, keys binary, counts binary"


def counts_uri(lake: Lake) -> str:
    return f"{lake.uri}/counts"


def word_keys(words: Sequence[str]) -> np.ndarray:
    """Stable 64-bit keys of words: the first 8 bytes of BLAKE2b(UTF-8), signed little-endian."""
    digest = b"".join(hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                      for w in words)
    return np.frombuffer(digest, dtype="<i8").astype(np.int64)


# ---------------------------------------------------------------------------------------
# counting (Python workers)


def _arrow_rows(n: int, **columns):
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


def _shard_counter(canonical_bc, lowercase: bool, max_document_tokens: int, window: int
                   ) -> Callable:
    """mapInArrow: documents (shard, text, invalid_utf8) -> count-store rows per shard."""

    def count_batches(batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        from .cooccurrences import KeyCodec, _aggregate, window_keys
        from .tokenize import tokenize_batch

        canonical = canonical_bc.value
        codec = KeyCodec(LOCAL_WORDS - 1, window)  # task-local word ids; EDGE = codec.V
        local: dict = {}
        state: dict = {}

        def compact(st):
            for k, n in (("keys", "counts"), ("uids", "ucounts")):
                if len(st[k]) > 1:
                    a, b = _aggregate(np.concatenate(st[k]), np.concatenate(st[n]))
                    st[k], st[n] = [a], [b]
            st["pending"] = 0

        for batch in batches:
            shard_col, text, invalid = batch.column(0), batch.column(1), batch.column(2)
            flat, lengths, lines = tokenize_batch(text, lowercase, max_document_tokens)
            encoded = pc.dictionary_encode(shard_col)
            codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            names = [canonical.get(_local_path(n), n) for n in encoded.dictionary.to_pylist()]
            bad = np.bincount(codes, weights=invalid.to_numpy(zero_copy_only=False)
                              .astype(np.int64), minlength=len(names))
            lengths = np.asarray(lengths, dtype=np.int64)
            chunk_code = codes[np.asarray(lines, dtype=np.int64)]
            if flat:
                tokens = pc.dictionary_encode(pa.array(flat, pa.string()))
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
                st = state.setdefault(name, {"docs": 0, "tokens": 0, "bad": 0, "keys": [],
                                             "counts": [], "uids": [], "ucounts": [],
                                             "pending": 0})
                st["bad"] += int(bad[c])
                chosen = chunk_code == c
                if not chosen.any():
                    continue
                doc_lengths = lengths[chosen]
                doc_ids = ids[token_code == c]
                st["docs"] += len(doc_lengths)
                st["tokens"] += len(doc_ids)
                keys, counts = window_keys(doc_ids, doc_lengths, codec, True)
                st["keys"].append(keys)
                st["counts"].append(counts)
                u, n = np.unique(doc_ids, return_counts=True)
                st["uids"].append(u)
                st["ucounts"].append(n.astype(np.int64))
                st["pending"] += len(keys)
                if st["pending"] >= FLUSH_PAIRS:
                    compact(st)

        words = pa.array(list(local), pa.string())
        keys_of = word_keys(words.to_pylist())
        for name, st in state.items():
            yield _arrow_rows(1, shard=name, kind="stats", documents=st["docs"],
                              count=st["tokens"], invalid_utf8=st["bad"])
            if not st["keys"]:
                continue
            compact(st)
            u, n = st["uids"][0], st["ucounts"][0]
            yield _arrow_rows(len(u), shard=name, kind="word", word=words.take(pa.array(u)),
                              count=n)
            center, offset, context = codec.decode(st["keys"][0])
            counts = st["counts"][0]
            edge = context == codec.V
            ck = keys_of[center]
            xk = np.where(edge, EDGE_KEY, keys_of[np.where(edge, 0, context)])
            off = offset.astype(np.int8)
            for lo in range(0, len(ck), PAIRS_PER_ROW):
                hi = lo + PAIRS_PER_ROW
                yield _arrow_rows(1, shard=name, kind="pairs",
                                  center_keys=[ck[lo:hi].astype("<i8").tobytes()],
                                  context_keys=[xk[lo:hi].astype("<i8").tobytes()],
                                  offsets=[off[lo:hi].tobytes()],
                                  pair_counts=[counts[lo:hi].astype("<i8").tobytes()])

    return count_batches


# ---------------------------------------------------------------------------------------
# aggregation (Python workers): stable keys -> ids, in the build's partial-count format


def _lookup(sorted_keys: np.ndarray, ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_keys, keys)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    if len(keys) and not np.array_equal(sorted_keys[pos], keys):
        raise RuntimeError("the counts table holds a co-occurrence of a word that has no "
                           "unigram count; the count store is damaged: refresh into a new lake")
    return ids[pos]


def _rekeyer(map_bc, vocab_size: int, window: int, include_self: bool, routes: list[int]
             ) -> Callable:
    def rekey(batches):
        from .cooccurrences import KeyCodec, _aggregate, routed_batches

        sorted_keys, ids = map_bc.value
        codec = KeyCodec(vocab_size, window)
        buffered_keys: list = []
        buffered_counts: list = []
        pending = 0

        def flush():
            keys, counts = _aggregate(np.concatenate(buffered_keys),
                                      np.concatenate(buffered_counts))
            yield from routed_batches(keys, counts, codec, routes)

        for batch in batches:
            columns = [batch.column(i).to_pylist() for i in range(4)]
            for cb, xb, ob, nb in zip(*columns):
                ck = np.frombuffer(cb, dtype="<i8").astype(np.int64)
                xk = np.frombuffer(xb, dtype="<i8").astype(np.int64)
                off = np.frombuffer(ob, dtype=np.int8).astype(np.int64)
                n = np.frombuffer(nb, dtype="<i8").astype(np.int64)
                keep = np.abs(off) <= window
                if not include_self:
                    keep &= off != 0
                ck, xk, off, n = ck[keep], xk[keep], off[keep], n[keep]
                center = _lookup(sorted_keys, ids, ck)
                edge = xk == EDGE_KEY
                context = np.where(edge, codec.V, _lookup(sorted_keys, ids, np.where(edge, ck, xk)))
                buffered_keys.append(codec.encode(center, off, context))
                buffered_counts.append(n)
                pending += len(n)
            if pending >= FLUSH_PAIRS:
                yield from flush()
                buffered_keys, buffered_counts, pending = [], [], 0
        if buffered_keys:
            yield from flush()

    return rekey


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


def _is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("Concurrent", "CONCURRENT", "ProtocolChanged",
                                   "MetadataChanged", "FileAlreadyExists",
                                   "DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED"))


def refresh(
    spark,
    corpus: Union[str, Sequence[str]],
    lake: Union[str, Lake],
    options: Optional[BuildOptions] = None,
    report: Callable[[str], None] = _stderr,
    keep_runs: int = 1,
    before_commit: Optional[Callable[[], None]] = None,
) -> RefreshResult:
    """Bring a lake up to date with a corpus, counting only new or changed shards.

    Parameters are those of :func:`pipeline.build.build`. `before_commit` (tests) runs
    between planning and the count-store commit. Raises ConflictError when another refresh
    committed first, InputError for bad shards, OptionError when the counting options
    (lowercase, max_document_tokens, format, text field, a larger window) differ from the
    ones the store was counted with.
    """
    from pyspark.sql import functions as F

    options = options or BuildOptions()
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    stages = _Stages(report)
    check_lake(lake)
    uri = counts_uri(lake)

    # plan: what changed since the last committed refresh
    started = time.perf_counter()
    shards = list_shards(corpus, options.input_format)
    listed = {s.path: s for s in shards}
    version = latest_version(uri)
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

        head = [_arrow_rows(1, shard=f"refresh:{seq:010d}", kind="refresh", seq=seq,
                            info=json.dumps(info, sort_keys=True))]
        if changed:
            head.append(_arrow_rows(len(changed), shard=[s.path for s in changed], kind="shard",
                                    size=[s.size for s in changed],
                                    mtime=[s.mtime for s in changed],
                                    format=[s.format for s in changed]))
        frame = spark.createDataFrame(pa.Table.from_batches(head), schema=COUNTS_SCHEMA)
        docs = read_documents(spark, changed, options.text_field)
        if docs is not None:
            if any(s.format == "jsonl" for s in changed):
                bad = (docs.where(F.col("bad_record").isNotNull())
                       .select("shard", "bad_record").first())
                if bad is not None:
                    raise InputError(f"shard {bad['shard']}: {bad['bad_record']}")
            canonical = spark.sparkContext.broadcast({_local_path(s.path): s.path
                                                      for s in changed})
            counter = _shard_counter(canonical, options.lowercase, options.max_document_tokens,
                                     count_window)
            frame = docs.select("shard", "text", "invalid_utf8").mapInArrow(
                counter, COUNTS_SCHEMA).unionByName(frame)
        touched = added + replaced + removed + [f"refresh:{seq:010d}"]
        predicate = f"shard IN ({', '.join(_sql_string(p) for p in touched)})"
        if before_commit is not None:
            before_commit()
        try:
            (frame.write.format("delta").mode("overwrite").partitionBy("shard")
             .option("replaceWhere", predicate)
             .option("txnAppId", APP_ID).option("txnVersion", seq)
             .option("userMetadata", refresh_id)
             .save(uri))
        except Exception as exc:  # noqa: BLE001 - Delta's conflicts come as JVM errors
            if _is_conflict(exc):
                raise ConflictError(
                    f"another refresh changed {uri} at the same time; nothing of this one was "
                    f"committed: run it again") from None
            raise
        mine = [c for c in delta_commits(uri)
                if c.user_metadata == refresh_id and (version is None or c.version > version)]
        if not mine:
            raise ConflictError(
                f"another refresh committed refresh {seq} to {uri} first (this one was "
                f"skipped by Delta's idempotent write); nothing was counted twice: run it "
                f"again")
        version = mine[0].version
        stages.record("count", len(changed), started,
                      f"{len(changed)} shards counted, {len(removed)} taken out; count store "
                      f"version {version} (refresh {seq})")
        result.seq, result.counts_version = seq, version
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

    result.build = aggregate(spark, lake, options, version, seq, stages, keep_runs,
                             {"added": len(added), "replaced": len(replaced),
                              "removed": len(removed)}, result.warnings)
    return result


def aggregate(spark, lake: Lake, options: BuildOptions, version: int, seq: int, stages,
              keep_runs: int = 1, changes: Optional[dict] = None,
              warnings: Optional[list] = None) -> BuildResult:
    """Vocabulary, cipher, co-occurrences and vectors from version `version` of the count
    store, published like a build."""
    from pyspark.sql import functions as F

    from .lake import new_run_id

    started = time.perf_counter()
    uri = counts_uri(lake)
    store = spark.read.format("delta").option("versionAsOf", version).load(uri)
    per_shard = (store.where(F.col("kind").isin("shard", "stats")).groupBy("shard")
                 .agg(F.first("size", ignorenulls=True).alias("size"),
                      F.first("mtime", ignorenulls=True).alias("mtime"),
                      F.first("format", ignorenulls=True).alias("format"),
                      F.sum("documents").alias("documents"), F.sum("count").alias("tokens"))
                 .collect())
    words = (store.where(F.col("kind") == "word").groupBy("word")
             .agg(F.sum("count").alias("count")).toArrow())
    shards = sorted((Shard(r["shard"], int(r["size"]), float(r["mtime"]), r["format"])
                     for r in per_shard), key=lambda s: s.path)
    shard_stats = {_local_path(r["shard"]): {"tokens": int(r["tokens"] or 0)} for r in per_shard}
    total = sum(int(r["tokens"] or 0) for r in per_shard)
    n_docs = sum(int(r["documents"] or 0) for r in per_shard)
    all_words = words.column("word").to_pylist()
    all_counts = np.asarray(words.column("count").to_numpy(zero_copy_only=False), np.int64)
    if total == 0:
        raise InputError("the corpus holds no tokens: nothing to build")
    if int(all_counts.sum()) != total:
        raise LakeError(f"{uri} version {version}: word counts sum to {int(all_counts.sum())} "
                        f"but the shards hold {total} tokens; the count store is damaged")
    keys = word_keys(all_words)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    clash = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if len(clash) or (len(keys) and (sorted_keys == EDGE_KEY).any()):
        i = order[clash[0]] if len(clash) else order[np.flatnonzero(sorted_keys == EDGE_KEY)[0]]
        raise LakeError(f"word key collision: {all_words[i]!r} shares its 64-bit key with "
                        f"another word or the edge marker; this corpus cannot be refreshed "
                        f"incrementally: use `bitcipher build`")
    kept = [(w, int(c)) for w, c in zip(all_words, all_counts) if c >= options.min_count]
    vocab = rank_vocabulary(kept, total, options.max_vocab)
    id_of = {w: i for i, w in enumerate(vocab.words)}
    unk = vocab.unk_id
    ids = np.fromiter((id_of.get(w, unk) for w in all_words), np.int64, len(all_words))
    stages.record("counts", len(all_words), started,
                  f"{len(shards)} shards, {total:,} tokens, {len(all_words):,} word types "
                  f"(count store version {version})")

    started = time.perf_counter()
    partitions = cooccurrence_partitions(spark, total)
    from .cooccurrences import partition_routes

    map_bc = spark.sparkContext.broadcast((sorted_keys, ids[order]))
    rekey = _rekeyer(map_bc, len(vocab), options.window, options.include_self,
                     partition_routes(spark, partitions))
    partial = (store.where(F.col("kind") == "pairs")
               .select("center_keys", "context_keys", "offsets", "pair_counts")
               .mapInArrow(rekey, PARTIAL_SCHEMA)
               .repartition(partitions, "route"))
    run = new_run_id()
    try:
        previous_runs = [published(lake).run]
    except LakeError:
        previous_runs = []
    extra = {PROP_COUNTS_VERSION: str(version),
             PROP_REFRESH: json.dumps({"seq": seq, "counts_version": version,
                                       **(changes or {})}, sort_keys=True)}
    try:
        return _build_run(spark, lake, run, options, vocab, None, shards, shard_stats, total,
                          n_docs, list(warnings or []), stages, previous_runs, keep_runs,
                          started, partial=partial, extra_properties=extra)
    except BaseException as exc:
        lake.remove(lake.run_dir(run))
        if _is_conflict(exc):
            raise ConflictError(f"another build or refresh published {lake.vectors} at the "
                                f"same time: run this refresh again") from None
        raise


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
