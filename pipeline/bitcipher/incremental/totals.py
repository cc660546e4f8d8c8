"""Merged totals of a count store: what a refresh aggregates from instead of every shard.

The count store (:mod:`bitcipher.incremental.run`) keeps each shard's counts apart, so a changed
shard can be taken out. Summing all of them again at every refresh costs as much as the
counting it saves. The totals are their sum at one version of the store, kept beside it
under ``lake/totals``:

``<snapshot>/words.parquet``
    every word ever counted: ``idx`` (its stable dense index: the row number; new words are
    appended), ``word``, ``key`` (:func:`bitcipher.keys.word_keys`) and ``count``.
``<snapshot>/shards.parquet``
    the shard manifest those counts describe (path, size, mtime, format, documents, tokens).
``<snapshot>/pairs/part-NNNNN.parquet``
    the co-occurrence totals of bucket NNNNN (centre ``idx`` mod ``buckets``) as
    ``(key, count)``, the key packing (centre idx, offset, context idx) into one int64
    (:func:`bitcipher.keys.pack`), sorted.
``current.json``
    the snapshot in use: its count-store ``version``, refresh ``seq``, ``buckets``, the
    counting options and window, and its ``layers``. Replaced in one write once a snapshot
    is complete, so a refresh killed while writing one leaves the previous snapshot in use.

A snapshot's pairs are either whole (``layers`` empty) or a **delta layer**: the signed
change since the snapshot before it, whose own pairs files (and theirs) it names in
``layers`` (oldest first, the first one whole); the totals of a bucket are the sum of its
files over ``layers`` and the snapshot itself (:func:`read_bucket`). A frozen refresh that
keeps the published vectors of its untouched words writes a delta layer, so its cost does
not grow with the totals; after MAX_DELTAS delta layers, and at every exact refresh, the
snapshot is written whole again.

A refresh updates the totals by adding the counts of new shards and subtracting those of
removed or replaced ones (read from the store at the snapshot's version, by Delta time
travel), then in the same task per bucket maps word indices to this refresh's ids (rare
words to ``<unk>``), writes that bucket's part of the ``cooccurrences`` table and aggregates
its centre words' vectors with the build's own functions. Only ``<unk>`` (rare centre words
from every bucket) and the corpus-wide marginal of pmi/ppmi are finished on the driver, from
integer totals. The tables are the build's, bit for bit: every centre word's rows reach
:func:`bitcipher.stages.vectors.raw_blocks` complete and in the same (offset, context) order.
When there is no usable snapshot (first refresh, damaged or vacuumed history) the totals are
summed from every shard of the store, and the refresh goes on the same way.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from bitcipher.keys import (EDGE_WORD_KEY, FLUSH_PAIRS, PACKED_EDGE, KeyCodec, KeySums,
                            lookup_ids, pack, packed_center, sum_by_key, unpack)
from bitcipher.lake.tables import (SORTED_INTEGERS, Lake, read_parquet, write_npz,
                                   write_parquet_file)

FORMAT = 1
OUT_SCHEMA = "kind string, id int, vector array<double>, keys binary, counts binary"


@dataclass
class Snapshot:
    """The totals in use (``current.json``)."""

    version: int  # count-store version the totals sum
    seq: int  # refresh number of that version
    name: str  # directory under lake/totals
    buckets: int
    window: int  # window the store was counted with
    counting: dict  # counting options of the store
    format: int = FORMAT
    # earlier snapshots whose pairs files this one's add to, oldest first (a delta layer);
    # empty: this snapshot's pairs are the whole totals
    layers: list = field(default_factory=list)

    def pairs_dirs(self, lake: Lake) -> list[str]:
        """The snapshot directories whose pairs files sum to these totals."""
        return [snapshot_dir(lake, n) for n in [*self.layers, self.name]]


def root(lake: Lake) -> str:
    return f"{lake.uri}/totals"


def snapshot_dir(lake: Lake, name: str) -> str:
    return f"{root(lake)}/{name}"


def read_pointer(lake: Lake) -> Optional[Snapshot]:
    """The snapshot in use, or None when there is none (or it cannot be used)."""
    uri = f"{root(lake)}/current.json"
    if not lake.exists(uri):
        return None
    try:
        data = json.loads(lake.read_text(uri))
        snap = Snapshot(**data)
    except (ValueError, TypeError):
        return None
    if snap.format != FORMAT or not all(lake.exists(f"{d}/words.parquet")
                                        for d in snap.pairs_dirs(lake)):
        return None
    return snap


def write_pointer(lake: Lake, snap: Snapshot) -> None:
    """Make `snap` the snapshot in use, in one write (rename on a local disk, one PUT on S3)."""
    from fsspec.core import url_to_fs

    from bitcipher.lake.storage import fsspec_uri

    uri = f"{root(lake)}/current.json"
    fs, path = url_to_fs(fsspec_uri(uri))
    text = json.dumps(asdict(snap), sort_keys=True)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols:
        import os

        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    else:
        with fs.open(path, "w") as fh:
            fh.write(text)


def read_words(lake: Lake, snap: Optional[Snapshot]):
    """(words list, keys int64, counts int64) of a snapshot, in idx order."""
    if snap is None:
        return [], np.empty(0, np.int64), np.empty(0, np.int64)
    t = read_parquet(f"{snapshot_dir(lake, snap.name)}/words.parquet")
    return (t.column("word").to_pylist(), t.column("key").to_numpy().astype(np.int64),
            t.column("count").to_numpy().astype(np.int64))


def read_shards(lake: Lake, snap: Snapshot) -> dict:
    """{path: {size, mtime, format, documents, tokens}} of a snapshot."""
    t = read_parquet(f"{snapshot_dir(lake, snap.name)}/shards.parquet")
    return {r.pop("path"): r for r in t.to_pylist()}


def write_tables(lake: Lake, name: str, words, keys, counts, shards: dict) -> None:
    import pyarrow as pa

    base = snapshot_dir(lake, name)
    _write_parquet(pa.table({"idx": pa.array(np.arange(len(words), dtype=np.int64)),
                             "word": pa.array(words, pa.string()),
                             "key": pa.array(keys, pa.int64()),
                             "count": pa.array(counts, pa.int64())}), f"{base}/words.parquet")
    paths = sorted(shards)
    _write_parquet(pa.table({
        "path": pa.array(paths, pa.string()),
        "size": pa.array([int(shards[p]["size"]) for p in paths], pa.int64()),
        "mtime": pa.array([float(shards[p]["mtime"]) for p in paths], pa.float64()),
        "format": pa.array([shards[p]["format"] for p in paths], pa.string()),
        "documents": pa.array([int(shards[p]["documents"]) for p in paths], pa.int64()),
        "tokens": pa.array([int(shards[p]["tokens"]) for p in paths], pa.int64()),
    }), f"{base}/shards.parquet")


def _write_parquet(table, uri: str, options: Optional[dict] = None) -> None:
    write_parquet_file(table, uri, options or {"compression": "lz4"})


REKEY_ROWS = 1 << 20  # rows of a bucket's totals re-keyed at once (:func:`rekey`)
MAX_DELTAS = 8  # delta layers on a whole snapshot before a refresh writes it whole again


def read_bucket(dirs: list[str], bucket: int, keys: Optional[np.ndarray] = None,
                counts: Optional[np.ndarray] = None):
    """(sorted keys, counts) of one bucket's totals: its pairs files in `dirs` (a snapshot's
    :meth:`Snapshot.pairs_dirs`; a missing file is an empty bucket) summed, plus `keys` and
    `counts` (sorted, unique) when given, the zero sums left out. RuntimeError when a total
    falls below zero."""
    if keys is None:
        keys, counts = np.empty(0, np.int64), np.empty(0, np.int64)
    for d in dirs:
        table = _read_parquet_if_exists(f"{d}/pairs/part-{bucket:05d}.parquet")
        if table is not None:
            k = table.column("key").to_numpy().astype(np.int64)
            n = table.column("count").to_numpy().astype(np.int64)
            keys, counts = (merge_sorted(k, n, keys, counts) if len(k) >= len(keys)
                            else merge_sorted(keys, counts, k, n))
    if (counts < 0).any():
        raise RuntimeError("a count total fell below zero: the count store and its "
                           "totals disagree; delete lake/totals and refresh again")
    nz = counts != 0
    return keys[nz], counts[nz]


def write_bucket(target: str, bucket: int, keys: np.ndarray, counts: np.ndarray) -> None:
    """Write one bucket's pairs file of the snapshot directory `target`."""
    import pyarrow as pa

    _write_parquet(pa.table({"key": pa.array(keys), "count": pa.array(counts)}),
                   f"{target}/pairs/part-{bucket:05d}.parquet", SORTED_INTEGERS)


def table_part(folder: str, part: int, codec: KeyCodec):
    """(sorted keys, counts) of file `part` of a cooccurrences table written by
    :func:`bitcipher.stages.merge.cooccurrence_part` with the same `codec` (empty when there
    is no such file): its rows as the keys they were written from."""
    from bitcipher.keys import EDGE_ID

    table = _read_parquet_if_exists(f"{folder}/part-{part:05d}.parquet")
    if table is None:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    center = table.column("center").to_numpy().astype(np.int64)
    offset = table.column("offset").to_numpy().astype(np.int64)
    context = table.column("context").to_numpy().astype(np.int64)
    context[context == EDGE_ID] = codec.edge_context
    return (codec.encode(center, offset, context),
            table.column("count").to_numpy().astype(np.int64))


# ---------------------------------------------------------------------------------------
# Python workers


def delta_router(map_bc, buckets: int, routes: list[int], window: int,
                 exchange: Optional[str] = None) -> Callable:
    """mapInArrow: store rows (kind, center_keys, context_keys, offsets, pair_counts, sign)
    -> packed (route, keys, counts) of summed signed counts, one batch per bucket. A
    ``tokens`` row's co-occurrences are counted here, up to `window` (the store's); a
    ``pairs`` row holds them already."""

    def route_batches(batches: Iterator):
        from bitcipher.stages import cooccurrences
        from bitcipher.stages.cooccurrences import (batches_by_partition, document_runs,
                                                    packed_window_keys)

        sorted_keys, idx = map_bc.value
        keys_buf: list = []
        counts_buf: list = []
        pending = 0

        def flush():
            keys, counts = sum_by_key(np.concatenate(keys_buf), np.concatenate(counts_buf))
            nz = counts != 0
            keys, counts = keys[nz], counts[nz]
            yield from batches_by_partition(keys, counts, packed_center(keys) % buckets, routes,
                                            exchange)

        def row_counts(kind, cb, xb, ob, nb):
            """(packed keys, counts) of one store row: a ``tokens`` row's documents counted
            in runs of whole documents, a ``pairs`` row's counts as they are."""
            if kind == "tokens":
                distinct = lookup_ids(sorted_keys, idx,
                                      np.frombuffer(cb, dtype="<i8").astype(np.int64))
                ids = distinct[np.frombuffer(xb, dtype="<i4")]
                lengths = np.frombuffer(nb, dtype="<i8").astype(np.int64)
                runs = document_runs(lengths, cooccurrences.COUNT_RUN_TOKENS)
                for start, end, lo, hi in runs:
                    yield packed_window_keys(ids[start:end], lengths[lo:hi], window,
                                             len(idx))
                return
            ck = np.frombuffer(cb, dtype="<i8").astype(np.int64)
            xk = np.frombuffer(xb, dtype="<i8").astype(np.int64)
            off = np.frombuffer(ob, dtype=np.int8).astype(np.int64)
            n = np.frombuffer(nb, dtype="<i8").astype(np.int64)
            center = lookup_ids(sorted_keys, idx, ck)
            edge = xk == EDGE_WORD_KEY
            context = np.where(edge, PACKED_EDGE,
                               lookup_ids(sorted_keys, idx, np.where(edge, ck, xk)))
            yield pack(center, off, context), n

        for batch in batches:
            columns = [batch.column(i).to_pylist() for i in range(6)]
            for kind, cb, xb, ob, nb, sign in zip(*columns):
                for packed, n in row_counts(kind, cb, xb, ob, nb):
                    keys_buf.append(packed)
                    counts_buf.append(n * int(sign))
                    pending += len(n)
                    if pending >= FLUSH_PAIRS:
                        yield from flush()
                        keys_buf, counts_buf, pending = [], [], 0
        if keys_buf:
            yield from flush()

    return route_batches


def bucket_processor(job_bc, x_bc, counts_bc) -> Callable:
    """mapInArrow: packed deltas of some buckets (plus one empty marker per bucket) ->
    for each bucket: new totals file, cooccurrences part, vectors of its centre words
    (``kind`` = ``vector``), and in files of ``job["sums_dir"]`` (named by bucket, so a
    retried task replaces its own) the ``<unk>`` centre's rows (``unk-NNNNN.npz``) and the
    marginal totals n(·, c, d) (``marginal-NNNNN.npz``) as int64 keys and counts: read one
    at a time by :func:`summed_files`, so the driver's memory does not grow with the number
    of buckets.

    With ``job["previous"]`` (a frozen run keeping the published vectors of its untouched
    words: the published run's cooccurrences folder, made with the same epoch and options
    from the totals the deltas go on) a bucket's part of the table is that run's part plus
    the re-keyed delta, and its ``unk`` file holds the change of the ``<unk>`` rows only:
    the totals are not re-keyed, and with ``job["delta_only"]`` not read either (the new
    snapshot is a delta layer). With ``job["vectors_dir"]`` (finished float32 vectors, a
    frozen run) the vectors go to ``vectors-NNNNN.npz`` there (``ids``, ``vectors``), not
    through the JVM."""

    def process(batches: Iterator):
        from bitcipher.stages.cooccurrences import received
        from bitcipher.stages.merge import cooccurrence_part, spilled_file
        from bitcipher.stages.vectors import needs_marginal

        job = job_bc.value
        options = job["options"]
        bucket_of_route = {r: b for b, r in enumerate(job["routes"])}
        deltas: dict = {}
        for batch in batches:
            routes = batch.column(0).to_pylist()
            keys = batch.column(1).to_pylist()
            counts = batch.column(2).to_pylist()
            for r, kb, nb in zip(routes, keys, counts):
                deltas.setdefault(bucket_of_route[r], KeySums()).add(*received(kb, nb))

        id_of_idx = job["id_of_idx"]
        unk = job["unk_id"]
        codec = KeyCodec(len(counts_bc.value), options.window)
        counts_ext = np.append(counts_bc.value, 0)
        frozen = job.get("frozen")  # (marginal, projection) of a cipher epoch, or None
        raw = needs_marginal(options) and frozen is None
        touched_only = job.get("touched_only", False)
        previous = job.get("previous")  # cooccurrences of the run whose vectors are kept
        for b in sorted(deltas):
            keys, counts = deltas.pop(b).summed()  # the bucket's incoming batches can go
            only = None
            if touched_only:  # the vectors of the centre words whose rows changed
                only = np.unique(id_of_idx[packed_center(keys[counts != 0])])
                only = only[only != unk]
            if previous is not None:
                # the kept run's table is its totals re-keyed (same epoch, options and
                # counts): add this delta re-keyed; the totals get it as a layer, or whole
                if job["target"] is not None:
                    if job["delta_only"]:
                        nz = counts != 0
                        write_bucket(job["target"], b, keys[nz], counts[nz])
                    else:
                        write_bucket(job["target"], b,
                                     *read_bucket(job["base_dirs"], b, keys, counts))
                ck, cn = rekey(keys, counts, id_of_idx, codec, options, unk)
                del keys, counts
                is_unk = codec.center_of(ck) == unk
                if is_unk.any():  # summed with the kept run's <unk> rows on the driver
                    write_npz(f"{job['sums_dir']}/unk-{b:05d}.npz", keys=ck[is_unk],
                              counts=cn[is_unk])
                pk, pn = table_part(previous, b, codec)
                ck, cn = merge_sorted(pk, pn, ck[~is_unk], cn[~is_unk])
                del pk, pn
                if (cn < 0).any():
                    raise RuntimeError("a co-occurrence count fell below zero: the published "
                                       "cooccurrences and the count store disagree; refresh "
                                       "without --frozen")
                nz = cn != 0
                ck, cn = ck[nz], cn[nz]
            else:
                keys, counts = read_bucket(job["base_dirs"] or [], b, keys, counts)
                if job["target"] is not None:
                    write_bucket(job["target"], b, keys, counts)
                ck, cn = rekey(keys, counts, id_of_idx, codec, options, unk)
                # the bucket's totals in word indices are written: only the re-keyed ones
                # are needed from here on (a bucket of a few million rows holds ~30 MB per
                # array)
                del keys, counts
                is_unk = codec.center_of(ck) == unk
                if is_unk.any():
                    write_npz(f"{job['sums_dir']}/unk-{b:05d}.npz", keys=ck[is_unk],
                              counts=cn[is_unk])
                ck, cn = ck[~is_unk], cn[~is_unk]
            if raw:
                _, c_off, c_ctx = codec.decode(ck)
                mk, mn = marginal_totals(c_ctx, c_off, cn, codec)
                write_npz(f"{job['sums_dir']}/marginal-{b:05d}.npz", keys=mk, counts=mn)
                del mk, mn, c_off, c_ctx
            if len(ck):
                ids, vecs = cooccurrence_part(ck, cn, codec, job["cooc_dir"], b, x_bc.value,
                                              counts_ext, job["total"], options, raw,
                                              job.get("spill_dir"), frozen, only)
                if len(ids) and job.get("vectors_dir"):  # finished: read by the driver
                    write_npz(spilled_file(job["vectors_dir"], b, "vectors"),
                              ids=ids.astype(np.int32), vectors=vecs.astype(np.float32))
                elif len(ids):
                    yield _vector_rows(ids, vecs)

    return process


def rekey(keys: np.ndarray, counts: np.ndarray, id_of_idx: np.ndarray, codec: KeyCodec,
          options, unk_id: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Packed totals (word indices) -> the summed co-occurrence keys of the vocabulary's
    ids (`codec`), within the build's window and without offset 0 under ``--no-self``.

    Re-keyed REKEY_ROWS rows at a time into one array, then summed: the same keys in the
    same order as re-keying all rows at once, with the temporaries (the unpacked triples,
    the masks, the looked-up ids) a slice's size instead of a bucket's.

    `keys` are sorted (packed keys sort like their triples). Where the vocabulary's ids
    follow the word indices (a build numbers the words so), the rows without ``<unk>``
    (`unk_id`) keep that order and stay distinct: only the rows with ``<unk>`` (the words
    below min_count, folded into it) are summed and merged in. Otherwise, or without
    `unk_id`, every row is sorted and summed."""
    out_keys = np.empty(len(keys), np.int64)
    out_counts = np.empty(len(keys), np.int64)
    with_unk = np.zeros(len(keys), bool)
    n = 0
    for lo in range(0, len(keys), REKEY_ROWS):
        center_idx, off, ctx_slot = unpack(keys[lo:lo + REKEY_ROWS])
        keep = np.abs(off) <= options.window
        if not options.include_self:
            keep &= off != 0
        center = id_of_idx[center_idx[keep]]
        edge = ctx_slot[keep] == PACKED_EDGE
        context = np.where(edge, codec.edge_context,
                           id_of_idx[np.where(edge, 0, ctx_slot[keep])])
        m = len(center)
        out_keys[n:n + m] = codec.encode(center, off[keep], context)
        out_counts[n:n + m] = counts[lo:lo + REKEY_ROWS][keep]
        if unk_id is not None:
            with_unk[n:n + m] = (center == unk_id) | (context == unk_id)
        n += m
    out_keys, out_counts, with_unk = out_keys[:n], out_counts[:n], with_unk[:n]
    if unk_id is not None:
        kept_keys, kept_counts = out_keys[~with_unk], out_counts[~with_unk]
        if np.all(kept_keys[1:] > kept_keys[:-1]):
            return merge_sorted(kept_keys, kept_counts,
                                *sum_by_key(out_keys[with_unk], out_counts[with_unk]))
    return sum_by_key(out_keys, out_counts)


def merge_sorted(keys: np.ndarray, counts: np.ndarray, add_keys: np.ndarray,
                 add_counts: np.ndarray):
    """Sum two (sorted unique keys, counts) lists into one, in linear time."""
    if not len(add_keys):
        return keys, counts
    pos = np.searchsorted(keys, add_keys)
    hit = pos < len(keys)
    hit[hit] = keys[pos[hit]] == add_keys[hit]
    counts = counts.copy()
    counts[pos[hit]] += add_counts[hit]
    miss = ~hit
    return (np.insert(keys, pos[miss], add_keys[miss]),
            np.insert(counts, pos[miss], add_counts[miss]))


def marginal_totals(context: np.ndarray, offset: np.ndarray, counts: np.ndarray,
                    codec: KeyCodec):
    """n(·, c, d) = Σ_t n(t, c, d) as (:meth:`KeyCodec.marginal_key`, total) of the non-zero
    ones; integer sums (float64 bincount is exact below 2^53)."""
    sums = np.bincount(codec.marginal_key(context, offset), weights=counts,
                       minlength=codec.n_marginal_keys)
    keys = np.flatnonzero(sums)
    return keys.astype(np.int64), sums[keys].astype(np.int64)


def summed_files(folder: str, kind: str, size: int, first: int = 0):
    """(sorted keys, counts) summed over the files ``folder/{kind}-N.npz`` of the bucket
    tasks, whose keys lie in ``first .. first + size - 1``, the zero sums left out: one
    dense int64 accumulator of `size` and one file in memory at a time (the same keys and
    sums as :func:`bitcipher.keys.sum_by_key` of every file's rows, whose counts are
    positive)."""
    from bitcipher.lake.tables import npz_parts, read_npz

    acc = np.zeros(size, np.int64)
    for part in npz_parts(folder, kind):
        z = read_npz(f"{folder}/{kind}-{part:05d}.npz")
        acc[z["keys"] - first] += z["counts"]  # a file's keys are unique
        del z
    keys = np.flatnonzero(acc)
    return keys.astype(np.int64) + first, acc[keys]


def _read_parquet_if_exists(uri: str):
    from fsspec.core import url_to_fs

    from bitcipher.lake.storage import fsspec_uri

    fs, path = url_to_fs(fsspec_uri(uri))
    if not fs.exists(path):
        return None
    return read_parquet(uri)


def _vector_rows(ids: np.ndarray, vecs: np.ndarray):
    import pyarrow as pa

    from bitcipher.stages.vectors import vector_batch

    batch = vector_batch(ids, vecs.astype(np.float64), pa.float64())
    n = batch.num_rows
    return pa.RecordBatch.from_arrays(
        [pa.array(["vector"] * n), batch.column(0).cast(pa.int32()), batch.column(1),
         pa.nulls(n, pa.large_binary()), pa.nulls(n, pa.large_binary())],
        names=["kind", "id", "vector", "keys", "counts"])
