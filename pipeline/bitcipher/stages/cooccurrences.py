"""Stage 3, cooccurrences: n(t, c, d) for every word t, context c and offset d (ALGORITHM.md §3).

The hot path is vectorised: each Python worker turns its tokens into word ids with one hash
lookup (``pyarrow.compute.index_in``; a build looks up only the dictionary of the tokens
each tokenize task kept, :func:`bitcipher.stages.tokenize.write_tokens`), builds the window
keys with NumPy, and pre-aggregates them; Spark then shuffles the partial counts by centre
word and a second vectorised pass sums them. The partial counts travel as a few rows of
compact slices (one row per task and destination partition: :func:`encode_slice`), so the
shuffle moves bytes, not millions of small rows. Only pairs at positive offsets are
counted and sorted, as 32-bit keys where both words are frequent
(:func:`bitcipher.keys.distinct_pairs`); n(c, t, -d) = n(t, c, d) gives the other half,
edge contexts and d = 0 are counted directly.

A count is keyed by one int64 (:class:`bitcipher.keys.KeyCodec`), so sorting keys sorts rows
by (center, offset, context). The merge task that writes the table and aggregates vectors
from the same arrays is :mod:`bitcipher.stages.merge`.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from bitcipher.keys import PACKED_EDGE, KeyCodec, KeySums, distinct_pairs, pack

PARTIAL_SCHEMA = "route long, keys binary, counts binary"
OUTPUT_BATCH_ROWS = 1 << 20
FLUSH_TOKENS = 3_000_000  # tokens pre-aggregated together in one Python worker
# tokens whose windows a build's or a refresh's counting task counts at once, in runs of
# whole documents (their keys, sort and sum take about 200 bytes a token; each run's summed
# keys go to the shuffle, and the buckets sum them all the same)
COUNT_RUN_TOKENS = 500_000


def window_counts(ids: np.ndarray, lengths: np.ndarray, window: int, include_self: bool,
                  n_words: int, edge: int) -> list:
    """Every (centre, offset, context) of one batch of documents (concatenated word indices
    `ids`, below `n_words`, and the documents' `lengths`) with its count, once each, as a
    list of (centres, offset, contexts, counts): `offset` one int per part, `contexts` an
    array or `edge` (the document edge) for the whole part. Each part is sorted by
    (centre, context), so what a bucket receives is mostly sorted runs.

    The pairs at positive offsets are counted (:func:`bitcipher.keys.distinct_pairs`) and
    mirrored, n(c, t, -d) = n(t, c, d); the edge and self keys, one word each, are counted
    per word.
    """
    n = len(ids)
    if n == 0:
        return []
    ends = np.cumsum(lengths)
    starts = ends - lengths
    index = np.arange(n, dtype=np.int64)
    before = index - np.repeat(starts, lengths)  # tokens before i in its document
    after = np.repeat(ends, lengths) - 1 - index  # tokens after i
    parts = []
    for d in range(1, window + 1):
        has = np.flatnonzero(after >= d)
        for center, context, counts in distinct_pairs(ids[has], ids[has + d]):
            parts.append((center, d, context, counts))
            # mirrored, sorted by (context, centre) again: a stable sort by context alone
            # (a linear radix sort for 16-bit contexts) keeps the centres in order
            order = (np.argsort(context.astype(np.uint16), kind="stable")
                     if len(context) and int(context.max()) < 2**16
                     else np.lexsort((center, context)))
            parts.append((context[order], -d, center[order], counts[order]))
    singles = [(ids[after < d], d, edge) for d in range(1, window + 1)]
    singles += [(ids[before < d], -d, edge) for d in range(1, window + 1)]
    if include_self:
        singles.append((ids, 0, None))
    for centers, d, context in singles:
        if n_words <= 4 * n:  # counted per word, no sort
            per_word = np.bincount(centers, minlength=n_words)
            word = np.flatnonzero(per_word)
            counts = per_word[word].astype(np.int64)
        else:
            word, counts = np.unique(centers, return_counts=True)
            word, counts = word.astype(np.int64), counts.astype(np.int64)
        if len(word):
            parts.append((word, d, word if context is None else context, counts))
    return parts


def window_keys(ids: np.ndarray, lengths: np.ndarray, codec: KeyCodec, include_self: bool):
    """Partial counts of one batch of documents given as concatenated ids and lengths.

    Returns (keys, counts) with every key of the batch once, both signs of d included.
    """
    return _encoded(window_counts(ids, lengths, codec.window, include_self, codec.vocab_size,
                                  codec.edge_context), codec.encode)


def packed_window_keys(ids: np.ndarray, lengths: np.ndarray, window: int, n_words: int):
    """:func:`window_keys` of word indices (below `n_words`) as packed keys
    (:func:`bitcipher.keys.pack`, the edge ``PACKED_EDGE``), self pairs included."""
    return _encoded(window_counts(ids, lengths, window, True, n_words, PACKED_EDGE), pack)


def _encoded(parts: list, encode: Callable) -> tuple[np.ndarray, np.ndarray]:
    """(keys, counts) int64 of :func:`window_counts`' parts, each key ``encode(centres,
    offset, contexts)``."""
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return (np.concatenate([encode(t, d, c) for t, d, c, _ in parts]),
            np.concatenate([n for *_, n in parts]))


def _partial_counter(words_bc, unk_id: int, window: int, include_self: bool,
                     routes: list[int], exchange: Optional[str] = None) -> Callable:
    def count_batches(batches: Iterator):
        import pyarrow as pa
        import pyarrow.compute as pc

        words = pa.array(words_bc.value, pa.string())
        codec = KeyCodec(len(words), window)
        buffered: list = []
        n_buffered = 0

        def flush():
            ids = np.concatenate([b[0] for b in buffered])
            lengths = np.concatenate([b[1] for b in buffered])
            keys, counts = window_keys(ids, lengths, codec, include_self)
            yield from routed_batches(keys, counts, codec, routes, exchange)

        for batch in batches:
            tokens = batch.column(0)
            lengths = pc.list_value_length(tokens).fill_null(0).to_numpy().astype(np.int64)
            flat = pc.list_flatten(tokens)
            ids = pc.index_in(flat, value_set=words).fill_null(unk_id)
            buffered.append((ids.to_numpy().astype(np.int64), lengths))
            n_buffered += len(flat)
            if n_buffered >= FLUSH_TOKENS:
                yield from flush()
                buffered, n_buffered = [], 0
        if buffered:
            yield from flush()

    return count_batches


def _token_part_counter(words_bc, unk_id: int, window: int, include_self: bool,
                        routes: list[int], token_dir: str,
                        exchange: Optional[str] = None) -> Callable:
    """count_batches over part numbers: the tokens one tokenize task kept
    (:func:`bitcipher.stages.tokenize.write_tokens`), mapped to word ids through that
    task's own dictionary, counted like :func:`_partial_counter` counts documents."""
    def count_parts(batches: Iterator):
        import pyarrow as pa
        import pyarrow.compute as pc

        from bitcipher.stages.tokenize import read_tokens

        words = pa.array(words_bc.value, pa.string())
        codec = KeyCodec(len(words), window)
        for batch in batches:
            for part in batch.column(0).to_pylist():
                local, ids, lengths = read_tokens(token_dir, part)
                to_global = pc.index_in(local, value_set=words).fill_null(unk_id)
                ids = to_global.to_numpy(zero_copy_only=False).astype(np.int64)[ids]
                lengths = lengths.astype(np.int64)
                for start, end, lo, hi in document_runs(lengths):
                    keys, counts = window_keys(ids[start:end], lengths[lo:hi], codec,
                                               include_self)
                    yield from routed_batches(keys, counts, codec, routes, exchange)

    return count_parts


def document_runs(lengths: np.ndarray, tokens: int = FLUSH_TOKENS) -> Iterator:
    """(first token, end token, first document, end document) of consecutive runs of about
    `tokens` tokens, cut between documents of the given lengths."""
    ends = np.cumsum(lengths)
    cuts = np.searchsorted(ends, np.arange(tokens, ends[-1] if len(ends) else 0, tokens),
                           side="right")
    bounds = np.unique(np.concatenate(([0], cuts, [len(lengths)])))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        yield (int(ends[lo - 1]) if lo else 0), int(ends[hi - 1]), int(lo), int(hi)


def summed_keys(batches: Iterator):
    """Sum the packed partial counts of one partition: (sorted unique keys, counts)."""
    sums = KeySums()
    for batch in batches:
        for kb, nb in zip(batch.column(1).to_pylist(), batch.column(2).to_pylist()):
            sums.add(*received(kb, nb))
    return sums.summed()


def local_exchange(spark) -> Optional[str]:
    """A new folder on this machine for the routed partial counts of one stage where Spark
    runs in local mode (its tasks run here), so they do not pass through the JVM's shuffle:
    the counting tasks write them there (:func:`batches_by_partition`), and only a reference
    to each partition's slice goes through Spark to the task that sums it
    (:func:`received`). None elsewhere (a cluster: Spark's shuffle carries them). The caller
    removes the folder once the summing tasks are done."""
    import tempfile

    if not spark.sparkContext.master.startswith("local"):
        return None
    return tempfile.mkdtemp(prefix="bitcipher-exchange-")


def received(kb: bytes, nb: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(keys, counts) int64 of one routed row: the slice encoded in the row itself
    (:func:`encode_slice`), or, for a row with keys and no counts, the slice ``FILE:AT:KLEN:
    CLEN`` (byte offset and the two parts' lengths) of the file :func:`batches_by_partition`
    wrote to an exchange folder."""
    if nb or not kb:
        return decode_slice(kb, nb)
    name, at, klen, clen = kb.decode("utf-8").rsplit(":", 3)
    with open(name, "rb") as fh:
        fh.seek(int(at))
        data = fh.read(int(klen) + int(clen))
    view = memoryview(data)
    return decode_slice(view[:int(klen)], view[int(klen):])


ESCAPED = 255  # a count byte that stands for the next escaped count


def encode_slice(keys: np.ndarray, counts: np.ndarray) -> tuple[bytes, bytes]:
    """One partition's (keys, counts), int64, as two compact blobs (about a fifth of the
    16 bytes a key that they take raw, so the exchange files and the shuffle are that much
    smaller; writing them was the costliest part of the window pass):

    - keys: their number (8 bytes), then their differences (the first from 0), LZ4. The
      keys come in sorted runs, so the differences are mostly small.
    - counts: their number and the number of escaped counts (8 bytes each), the escaped
      counts (int64), then one byte a count, LZ4: the count itself from 0 to 254, else
      ESCAPED for the next escaped count (a larger or a negative one)."""
    import pyarrow as pa

    codec = pa.Codec("lz4")
    keys = np.asarray(keys, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    n = len(keys)
    header = np.array([n], "<i8").tobytes()
    kb = header + codec.compress(np.diff(keys, prepend=np.int64(0)).astype("<i8"),
                                 asbytes=True)
    small = (counts >= 0) & (counts < ESCAPED)
    escaped = counts[~small].astype("<i8")
    nb = (np.array([n, len(escaped)], "<i8").tobytes() + escaped.tobytes()
          + codec.compress(np.where(small, counts, ESCAPED).astype(np.uint8), asbytes=True))
    return kb, nb


def decode_slice(kb, nb) -> tuple[np.ndarray, np.ndarray]:
    """The (keys, counts) of :func:`encode_slice`'s blobs (bytes or memoryviews)."""
    import pyarrow as pa

    if not len(kb):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    codec = pa.Codec("lz4")
    n = int(np.frombuffer(kb, "<i8", count=1)[0])
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    deltas = codec.decompress(pa.py_buffer(kb[8:]), decompressed_size=8 * n)
    keys = np.cumsum(np.frombuffer(deltas, "<i8"), dtype=np.int64)
    n_escaped = int(np.frombuffer(nb, "<i8", count=2)[1])
    escaped = np.frombuffer(nb, "<i8", count=n_escaped, offset=16)
    small = np.frombuffer(codec.decompress(pa.py_buffer(nb[16 + 8 * n_escaped:]),
                                           decompressed_size=n), np.uint8)
    counts = small.astype(np.int64)
    if n_escaped:
        counts[small == ESCAPED] = escaped
    return keys, counts


def merged_counts(batches: Iterator, codec: KeyCodec):
    """Sum the partial counts of one partition: (center, context, offset, count) arrays,
    sorted by (center, offset, context)."""
    keys, counts = summed_keys(batches)
    center, offset, context = codec.decode(keys)
    context = codec.table_context(context)
    return (center.astype(np.int32), context.astype(np.int32), offset.astype(np.int8),
            counts.astype(np.int64))


def cooccurrence_batches(center, context, offset, count):
    import pyarrow as pa

    for lo in range(0, max(len(center), 1), OUTPUT_BATCH_ROWS):
        hi = lo + OUTPUT_BATCH_ROWS
        yield pa.RecordBatch.from_arrays(
            [pa.array(center[lo:hi]), pa.array(context[lo:hi]), pa.array(offset[lo:hi]),
             pa.array(count[lo:hi])],
            names=["center", "context", "offset", "count"],
        )


def _merger(vocab_size: int, window: int) -> Callable:
    def merge_partition(batches: Iterator):
        columns = merged_counts(batches, KeyCodec(vocab_size, window))
        if len(columns[0]):
            yield from cooccurrence_batches(*columns)

    return merge_partition


def spark_hash_long(value: int) -> int:
    """Spark SQL's ``hash(value)`` of a long: Murmur3 x86 32-bit with seed 42, as
    ``Murmur3_x86_32.hashLong`` computes it (a signed 32-bit result)."""
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    def mix_k1(k1: int) -> int:
        return (rotl((k1 * 0xCC9E2D51) & mask, 15) * 0x1B873593) & mask

    def mix_h1(h1: int, k1: int) -> int:
        return (rotl(h1 ^ k1, 13) * 5 + 0xE6546B64) & mask

    value &= 0xFFFFFFFFFFFFFFFF
    h1 = mix_h1(mix_h1(42, mix_k1(value & mask)), mix_k1(value >> 32))
    h1 ^= 8  # the input's length in bytes
    h1 ^= h1 >> 16
    h1 = (h1 * 0x85EBCA6B) & mask
    h1 ^= h1 >> 13
    h1 = (h1 * 0xC2B2AE35) & mask
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 >= 1 << 31 else h1


def partition_routes(spark, partitions: int) -> list[int]:
    """For each partition p, a long value that Spark's hash partitioning sends to p.

    Centre word t goes to partition t % partitions; its partial counts carry the route
    value of that partition, so the shuffle places them exactly there: the smallest value
    v < 64 * partitions with pmod(hash(v), partitions) = p (p itself where there is none),
    computed here with Spark's hash (:func:`spark_hash_long`) rather than by a Spark job.
    A route only places a bucket's counts: the summing task reads the bucket from the route
    value, so a route in another partition would cost balance, not correctness.
    """
    found: dict[int, int] = {}
    for value in range(64 * partitions):
        found.setdefault(spark_hash_long(value) % partitions, value)
        if len(found) == partitions:
            break
    return [found.get(p, p) for p in range(partitions)]


def routed_batches(keys: np.ndarray, counts: np.ndarray, codec: KeyCodec,
                   routes, exchange: Optional[str] = None) -> Iterator:
    """Packed (route, keys, counts) batches, one per merge partition that gets any key:
    the partition of a key is its centre word's (:func:`partition_routes`)."""
    yield from batches_by_partition(keys, counts, codec.center_of(keys) % len(routes), routes,
                                    exchange)


def batches_by_partition(keys: np.ndarray, counts: np.ndarray, part: np.ndarray,
                         routes, exchange: Optional[str] = None) -> Iterator:
    """Packed (route, keys, counts) batches, one per partition p (``part`` of each key, in
    0 .. len(routes) - 1) that gets any key, carrying the route value ``routes[p]``. With
    `exchange` (:func:`local_exchange`) the slices (:func:`encode_slice`) go to one file
    there and each batch carries only its slice's reference (:func:`received`)."""
    import uuid

    # a stable sort of 16-bit integers is NumPy's radix sort: linear, the same order
    small = part.astype(np.int16) if len(routes) < 2**15 else part
    order = np.argsort(small, kind="stable")
    bounds = np.searchsorted(small[order], np.arange(len(routes) + 1))
    if exchange is not None and len(order):
        name = f"{exchange}/{uuid.uuid4().hex}.bin"
        refs = []
        with open(name, "wb") as fh:
            for p in range(len(routes)):
                chosen = order[bounds[p]:bounds[p + 1]]
                if len(chosen):
                    kb, nb = encode_slice(keys[chosen], counts[chosen])
                    refs.append((p, f"{name}:{fh.tell()}:{len(kb)}:{len(nb)}"))
                    fh.write(kb)
                    fh.write(nb)
        for p, ref in refs:
            yield _routed_batch(routes[p], ref.encode("utf-8"), b"")
        return
    for p in range(len(routes)):
        chosen = order[bounds[p]:bounds[p + 1]]
        if len(chosen):
            yield _routed_batch(routes[p], *encode_slice(keys[chosen], counts[chosen]))


def _routed_batch(route: int, kb: bytes, nb: bytes):
    """One PARTIAL_SCHEMA row: a partition's route value and its slice (or reference)."""
    import pyarrow as pa

    return pa.RecordBatch.from_arrays(
        [pa.array([route], pa.int64()), pa.array([kb], pa.large_binary()),
         pa.array([nb], pa.large_binary())],
        names=["route", "keys", "counts"])


def partial_counts(spark, words: list[str], unk_id: int, window: int, include_self: bool,
                   partitions: int, token_dir: Optional[str] = None,
                   exchange: Optional[str] = None) -> Callable:
    """Transformation -> partial counts (center, key, count), partitioned by center.

    The input is the tokens table (column `tokens`), or, with `token_dir`, part numbers
    (column `part`, :func:`bitcipher.stages.merge.parts_frame`) of the tokens the tokenize
    stage kept there.
    """
    words_bc = spark.sparkContext.broadcast(list(words))
    routes = partition_routes(spark, partitions)
    if token_dir is not None:
        counter = _token_part_counter(words_bc, unk_id, window, include_self, routes,
                                      token_dir, exchange)
        column = "part"
    else:
        counter = _partial_counter(words_bc, unk_id, window, include_self, routes, exchange)
        column = "tokens"

    def transform(df):
        partial = df.select(column).mapInArrow(counter, PARTIAL_SCHEMA)
        return partial.repartition(partitions, "route")

    return transform


def count_cooccurrences(spark, words: list[str], unk_id: int, window: int, include_self: bool,
                        partitions: int) -> Callable:
    """Transformation (tokens array<string>) -> cooccurrences table, hash-partitioned by center.

    Within each output partition rows are sorted by (center, offset, context), and all
    rows of one centre word are in one partition: the vectors stage relies on both.
    """
    from bitcipher.lake.schemas import schema_of

    partial = partial_counts(spark, words, unk_id, window, include_self, partitions)
    merger = _merger(len(words), window)

    def transform(tokens_df):
        return tokens_df.transform(partial).mapInArrow(merger, schema_of("cooccurrences"))

    return transform
