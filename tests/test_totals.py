"""The merged totals' building blocks against direct Python computations."""

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitcipher.keys import MAX_WORDS, PACKED_EDGE, KeyCodec, pack, unpack
from bitcipher.incremental.totals import marginal_totals, merge_sorted

counted = st.dictionaries(st.integers(-1000, 1000), st.integers(-5, 9).filter(bool), max_size=40)


def routed_counts(batches, routes) -> Counter:
    """The signed counts of packed (route, keys, counts) batches by (centre, context or
    reference.EDGE, offset) in word indices, each key checked to be in its centre's bucket."""
    import reference

    from bitcipher.stages.cooccurrences import received

    got: Counter = Counter()
    for out in batches:
        route = out.column(0)[0].as_py()
        k, n = received(out.column(1)[0].as_py(), out.column(2)[0].as_py())
        for (c, d, x), v in zip(zip(*unpack(k)), n):
            assert routes[int(c) % len(routes)] == route
            got[(int(c), reference.EDGE if x == PACKED_EDGE else int(x), int(d))] += int(v)
    return got


@settings(max_examples=200, deadline=None)
@given(counted, counted)
def test_merge_sorted_sums_like_a_counter(a, b):
    def arrays(d):
        keys = np.array(sorted(d), dtype=np.int64)
        return keys, np.array([d[k] for k in keys], dtype=np.int64)

    keys, counts = merge_sorted(*arrays(a), *arrays(b))
    want = Counter(a)
    want.update(b)
    assert keys.tolist() == sorted(want)
    assert counts.tolist() == [want[k] for k in sorted(want)]


def test_pack_round_trips_and_sorts_like_the_triple():
    centers = [0, 1, 2, 77, MAX_WORDS - 1]
    offsets = [-127, -5, -1, 0, 1, 5, 127]
    contexts = [0, 1, 3, 1000, PACKED_EDGE]
    triples = list(itertools.product(centers, offsets, contexts))
    c, d, x = (np.array(v, dtype=np.int64) for v in zip(*triples))
    keys = pack(c, d, x)
    assert (keys >= 0).all()
    back = unpack(keys)
    assert [tuple(int(v) for v in t) for t in zip(*back)] == triples
    assert [triples[i] for i in np.argsort(keys)] == sorted(triples)


def test_marginal_totals_sum_over_centre_words():
    codec = KeyCodec(5, 2)
    rng = np.random.default_rng(3)
    context = rng.integers(0, codec.n_contexts, 300)
    offset = rng.integers(-2, 3, 300)
    counts = rng.integers(1, 1000, 300)
    want = Counter()
    for c, d, n in zip(context, offset, counts):
        want[int(c) * codec.n_offsets + int(d) + 2] += int(n)
    keys, sums = marginal_totals(context, offset, counts, codec)
    assert dict(zip(keys.tolist(), sums.tolist())) == dict(want)


@pytest.mark.parametrize("run_tokens", [1_000_000, 1, 4])
def test_delta_router_counts_tokens_rows_as_the_reference_and_reads_pairs_rows(run_tokens):
    """A ``tokens`` row (documents as word keys) and a ``pairs`` row (the co-occurrence counts
    of a store written before tokens rows), signed: the router's summed, routed output equals
    the NumPy reference's co-occurrences of the documents, in word indices."""
    import pyarrow as pa
    from types import SimpleNamespace

    import reference

    from bitcipher.incremental.run import store_rows, token_rows
    from bitcipher.incremental.totals import delta_router
    from bitcipher.keys import EDGE_WORD_KEY, word_keys

    words = ["the", "cat", "sat", "on", "mat", "dog"]
    keys = word_keys(words)
    order = np.argsort(keys)
    map_bc = SimpleNamespace(value=(keys[order], np.arange(len(words))[order]))
    window, buckets, routes = 2, 3, [7, 8, 9]
    kept = [[0, 1, 2, 3, 0, 4], [5], [], [1, 1, 0]]  # documents as word indices
    gone = [[5, 2, 0], [4, 4]]  # a shard taken out: its pairs row, subtracted

    ids = np.array([w for doc in kept for w in doc], dtype=np.int64)
    lengths = np.array([len(doc) for doc in kept], dtype=np.int64)
    token_batches = list(token_rows("s0", ids, lengths, keys))
    assert all(b.column(1)[0].as_py() == "tokens" for b in token_batches)
    old = reference.cooccurrences(gone, window)
    triples = list(old)
    pair_batch = store_rows(
        1, shard="s1", kind="pairs",
        center_keys=[keys[[t for t, _, _ in triples]].astype("<i8").tobytes()],
        context_keys=[np.array([EDGE_WORD_KEY if c == reference.EDGE else keys[c]
                                for _, c, _ in triples], dtype="<i8").tobytes()],
        offsets=[np.array([d for _, _, d in triples], dtype="i1").tobytes()],
        pair_counts=[np.array([old[k] for k in triples], dtype="<i8").tobytes()])

    def store_rows(batch, sign):
        names = ["kind", "center_keys", "context_keys", "offsets", "pair_counts"]
        return pa.RecordBatch.from_arrays([batch.column(batch.schema.get_field_index(n))
                                           for n in names] + [pa.array([sign], pa.int32())],
                                          names=[*names, "s"])

    rows = [store_rows(b, 1) for b in token_batches] + [store_rows(pair_batch, -1)]
    from unittest import mock

    from bitcipher.stages import cooccurrences

    with mock.patch.object(cooccurrences, "COUNT_RUN_TOKENS", run_tokens):
        routed = list(delta_router(map_bc, buckets, routes, window)(iter(rows)))
    got = routed_counts(routed, routes)
    want = Counter(reference.cooccurrences(kept, window))
    want.subtract(old)
    assert +got == +want and -got == -want  # the same non-zero signed counts
    assert sum(got.values()) == sum(want.values())


# vocabulary ids 0..4 of 7 word indices: in no order (<unk> = 4), or in the indices' order
# with <unk> among them (2, a build's numbering), where rekey sums only the rows with <unk>
@pytest.mark.parametrize("id_of_idx, unk", [([2, 0, 3, 1, 4, 4, 4], 4),
                                            ([2, 0, 3, 1, 4, 4, 4], None),
                                            ([0, 1, 3, 4, 2, 2, 2], 2),
                                            ([0, 1, 3, 4, 2, 2, 2], None)])
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(-4, 4), st.integers(0, 7),
                          st.integers(1, 9)), min_size=0, max_size=60),
       st.booleans(), st.integers(1, 8))
def test_rekey_in_slices_sums_like_a_counter(id_of_idx, unk, rows, include_self, slice_rows):
    """Totals in word indices (7 words, context 7 = the edge), re-keyed a few rows at a time:
    the vocabulary's keys within the window (2), offset 0 only with include_self, words
    outside the vocabulary (indices 4-6) as <unk>, counts summed like a Counter; the same
    whether rekey is told which id is <unk> or not."""
    from types import SimpleNamespace
    from unittest import mock

    from bitcipher.incremental import totals

    id_of_idx = np.array(id_of_idx)
    codec = KeyCodec(5, 2)
    triples = {}
    for c, d, x, n in rows:  # totals are unique keys
        triples[(c, d, PACKED_EDGE if x == 7 else x)] = n
    keys = np.array(sorted(pack(c, d, x) for c, d, x in triples), dtype=np.int64)
    counts = np.array([triples[tuple(int(a) for a in t)] for t in zip(*unpack(keys))],
                      dtype=np.int64)
    want = Counter()
    for (c, d, x), n in triples.items():
        if abs(d) <= 2 and (include_self or d != 0):
            ctx = codec.edge_context if x == PACKED_EDGE else int(id_of_idx[x])
            want[int(codec.encode(int(id_of_idx[c]), d, ctx))] += n
    options = SimpleNamespace(window=2, include_self=include_self)
    with mock.patch.object(totals, "REKEY_ROWS", slice_rows):
        got_keys, got_counts = totals.rekey(keys, counts, id_of_idx, codec, options, unk)
    assert list(got_keys) == sorted(want)
    assert dict(zip(got_keys.tolist(), got_counts.tolist())) == dict(want)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=9), min_size=1, max_size=8),
       st.integers(1, 12))
def test_build_counter_in_runs_of_documents_counts_as_the_reference(tmp_path_factory, docs,
                                                                    run_tokens):
    """A build's counting tasks count the kept tokens in runs of whole documents of about
    COUNT_RUN_TOKENS tokens; for any run size the routed, summed counts are the NumPy
    reference's co-occurrences of the documents, in word indices, each in its bucket."""
    from types import SimpleNamespace
    from unittest import mock

    import pyarrow as pa
    import reference

    from bitcipher.incremental import run
    from bitcipher.keys import word_keys
    from bitcipher.stages import cooccurrences
    from bitcipher.stages.tokenize import write_tokens

    token_dir = str(tmp_path_factory.mktemp("tokens"))
    local = pa.array(["mat", "the", "cat", "on", "sat"])  # the task's own dictionary
    words = ["the", "cat", "sat", "on", "mat"]  # the build's word indices
    to_idx = np.array([4, 0, 1, 3, 2])  # local index -> word index
    lengths = np.array([len(d) for d in docs], dtype=np.int32)
    flat = np.array([t for d in docs for t in d], dtype=np.int32)
    write_tokens(token_dir, 0, local, flat, lengths, ["shard-a"], np.zeros(len(docs), np.int32))
    window, buckets, routes = 2, 3, [5, 6, 7]
    words_bc = SimpleNamespace(value=(pa.array(words, pa.string()), word_keys(words)))
    canonical = SimpleNamespace(value={})
    batch = pa.RecordBatch.from_arrays([pa.array([0], pa.int32())], names=["part"])
    with mock.patch.object(cooccurrences, "COUNT_RUN_TOKENS", run_tokens):
        counter = run._part_counter(words_bc, canonical, window, buckets, routes, token_dir,
                                    False)
        got = routed_counts(counter(iter([batch])), routes)
    want = reference.cooccurrences([[int(to_idx[t]) for t in d] for d in docs], window)
    assert dict(got) == {k: v for k, v in want.items() if v}


def test_routed_counts_through_an_exchange_folder_are_the_packed_ones(tmp_path):
    """Through an exchange folder (local mode), each routed row carries a reference to its
    slice of one file, and reading it back gives the keys and counts that the packed row
    carries, partition by partition (each partition's keys in their order, with their
    counts); an empty marker reads as nothing."""
    from bitcipher.stages.cooccurrences import batches_by_partition, received

    rng = np.random.default_rng(7)
    keys = rng.integers(0, 2**40, 5000)
    counts = rng.integers(-5, 50, 5000)
    routes = [1000 + 3 * p for p in range(9)]
    part = keys % 7  # partitions 7 and 8 get nothing
    packed = list(batches_by_partition(keys, counts, part, routes))
    via = list(batches_by_partition(keys, counts, part, routes, str(tmp_path)))
    assert [b.column(0).to_pylist() for b in via] == [b.column(0).to_pylist() for b in packed]
    assert len(via) == 7 and len(list(tmp_path.iterdir())) == 1
    for p, a in enumerate(packed):
        k, n = received(a.column(1)[0].as_py(), a.column(2)[0].as_py())
        assert k.tolist() == keys[part == p].tolist() and n.tolist() == counts[part == p].tolist()
    for a, b in zip(packed, via):
        ref, empty = b.column(1)[0].as_py(), b.column(2)[0].as_py()
        assert empty == b"" and ref.startswith(str(tmp_path).encode())
        ka, na = received(a.column(1)[0].as_py(), a.column(2)[0].as_py())
        kb, nb = received(ref, empty)
        assert np.array_equal(ka, kb) and np.array_equal(na, nb) and len(kb)
    got_keys = np.concatenate([received(b.column(1)[0].as_py(), b"")[0] for b in via])
    assert sorted(got_keys.tolist()) == sorted(keys.tolist())
    k, n = received(b"", b"")
    assert len(k) == 0 and len(n) == 0


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_encoded_slices_decode_to_what_was_encoded(n):
    """encode_slice/decode_slice give back any int64 keys and counts: sorted runs, random
    and extreme keys; counts of 0 to 254 in one byte, the others (255, larger, negative,
    extreme) escaped; from bytes or memoryviews. Sorted runs of small counts take a small
    part of their 16 bytes a key."""
    from bitcipher.stages.cooccurrences import decode_slice, encode_slice

    rng = np.random.default_rng(n)
    runs = np.concatenate([np.sort(rng.integers(0, 2**50, n // 2)),
                           np.sort(rng.integers(0, 2**50, n - n // 2))])
    extreme = np.array([0, -1, 2**63 - 1, -2**63, 254, 255, 256], np.int64)
    for keys in (runs, rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64),
                 extreme[rng.integers(0, len(extreme), n)]):
        for counts in (rng.integers(1, 4, n), rng.integers(-300, 300, n),
                       extreme[rng.integers(0, len(extreme), n)]):
            kb, nb = encode_slice(keys, counts)
            for k, c in (decode_slice(kb, nb), decode_slice(memoryview(kb), memoryview(nb))):
                assert k.dtype == np.int64 and c.dtype == np.int64
                assert k.tolist() == keys.tolist() and c.tolist() == counts.tolist()
    if n == 1000:
        kb, nb = encode_slice(runs, rng.integers(1, 4, n))
        assert len(kb) + len(nb) < 16 * n * 0.6


def test_a_local_build_removes_its_exchange_folders(spark, tmp_path, monkeypatch):
    """A local build and a refresh route their counts through exchange folders and remove
    them; the tables are the NumPy reference's (tests/test_pipeline.py,
    tests/test_refresh.py run the same code on every build)."""
    import tempfile

    from conftest import CORPUS_A, CORPUS_B, write_shards

    from bitcipher import BuildOptions, build
    from bitcipher.incremental.run import refresh
    from bitcipher.stages import cooccurrences

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made = []
    local_exchange = cooccurrences.local_exchange
    from bitcipher import finish

    for module in (cooccurrences, finish):
        monkeypatch.setattr(module, "local_exchange",
                            lambda s: made.append(local_exchange(s)) or made[-1])
    options = BuildOptions(bits=6, window=2, min_count=1, project=None)
    corpus = write_shards(tmp_path / "corpus", CORPUS_A)
    build(spark, str(corpus), str(tmp_path / "lake"), options, report=lambda _: None)
    build(spark, str(corpus), str(tmp_path / "one-off"), options, report=lambda _: None,
          count_store=False)
    write_shards(tmp_path / "corpus2", CORPUS_B)
    (tmp_path / "corpus" / "more.txt").write_text(
        (tmp_path / "corpus2" / sorted(p.name for p in (tmp_path / "corpus2").iterdir())[0])
        .read_text())
    refresh(spark, str(corpus), str(tmp_path / "lake"), options, report=lambda _: None)
    assert len(made) == 3 and all(m and m.startswith(str(scratch)) for m in made)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("vocab_size", [12, 100_000])  # edge keys per word, or sorted
@pytest.mark.parametrize("include_self", [True, False])
def test_window_keys_count_what_the_reference_counts(vocab_size, include_self):
    """The keys of one batch of documents, summed, are the reference's n(t, c, d) (edges
    included), whether the edge and self keys are counted per word (a vocabulary not much
    larger than the batch) or sorted (a larger one), and whether the pairs' words are all
    below 2^16 (uint32 pair keys) or not (some pairs sorted as int64)."""
    import reference

    from bitcipher.keys import sum_by_key
    from bitcipher.stages.cooccurrences import window_keys

    rng = np.random.default_rng(vocab_size + include_self)
    words = np.arange(12) if vocab_size == 12 else np.array(
        [0, 1, 2, 3, 7, 65_535, 65_536, 65_537, 70_000, 99_998, 99_999, 40_000])
    docs = [words[rng.integers(0, 12, int(n))].tolist() for n in rng.integers(1, 9, 30)]
    codec = KeyCodec(vocab_size, 3)
    keys, counts = window_keys(np.concatenate([np.array(d, np.int64) for d in docs]),
                               np.array([len(d) for d in docs], np.int64), codec,
                               include_self)
    keys, counts = sum_by_key(keys, counts)
    center, offset, context = codec.decode(keys)
    got = {(int(t), reference.EDGE if c == codec.edge_context else int(c), int(d)): int(k)
           for t, c, d, k in zip(center, context, offset, counts)}
    assert got == reference.cooccurrences(docs, window=3, include_self=include_self)


def test_run_starts_against_a_loop():
    """run_starts: the first index of each run of equal sorted values; none when empty."""
    from bitcipher.keys import run_starts

    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 50):
        values = np.sort(rng.integers(0, 6, n))
        expected = [i for i in range(n) if i == 0 or values[i] != values[i - 1]]
        got = run_starts(values)
        assert got.tolist() == expected and got.dtype == np.int64


@pytest.mark.parametrize("high", [3, 300, 65_536, 2**27])  # uint32 keys, int64 keys, both
def test_distinct_pairs_count_every_pair_once(high):
    """distinct_pairs gives np.unique's pairs and counts, each part sorted, no pair twice."""
    from bitcipher.keys import distinct_pairs

    rng = np.random.default_rng(high)
    for n in (0, 1, 9, 5_000):
        a = rng.integers(0, high, n) if high < 2**20 else np.where(
            rng.random(n) < 0.5, rng.integers(0, 5, n), rng.integers(2**16 - 2, high, n))
        b = rng.permutation(a) if n else a
        parts = distinct_pairs(a, b)
        got = {}
        for pa_, pb, counts in parts:
            keys = pa_ * 2**32 + pb
            assert (np.diff(keys) > 0).all()  # sorted, distinct within the part
            for x, y, k in zip(pa_.tolist(), pb.tolist(), counts.tolist()):
                assert (x, y) not in got
                got[(x, y)] = k
        pairs, counts = np.unique(np.stack([a, b]), axis=1, return_counts=True)
        assert got == {(int(x), int(y)): int(k) for (x, y), k in zip(pairs.T, counts)}
        if high == 2**27 and n > 100:
            assert len(parts) == 2


def test_packed_window_keys_count_what_the_reference_counts():
    """packed_window_keys: every (centre, context or the edge, offset) of the documents once,
    as packed keys (PACKED_EDGE for the edge), with the NumPy reference's counts, self pairs
    included; word indices on both sides of 2^16."""
    import reference

    from bitcipher.keys import PACKED_EDGE, unpack
    from bitcipher.stages.cooccurrences import packed_window_keys

    rng = np.random.default_rng(5)
    words = np.array([0, 1, 2, 9, 65_535, 65_536, 80_000])
    lengths = rng.integers(1, 12, 40)
    ids = words[rng.integers(0, len(words), int(lengths.sum()))].astype(np.int64)
    docs = np.split(ids, np.cumsum(lengths)[:-1])
    packed, n = packed_window_keys(ids, lengths, 4, 80_001)
    assert len(np.unique(packed)) == len(packed)
    t, d, c = unpack(packed)
    got = {(int(a), reference.EDGE if x == PACKED_EDGE else int(x), int(b)): int(k)
           for a, b, x, k in zip(t, d, c, n)}
    assert got == reference.cooccurrences([doc.tolist() for doc in docs], window=4,
                                          include_self=True)


@pytest.mark.parametrize("high", [5, 40, 10**9])  # flags per value, or np.unique's sort
def test_dense_unique_is_np_unique(high):
    from bitcipher.incremental.run import dense_unique

    rng = np.random.default_rng(high)
    for n in (0, 1, 7, 500):
        ids = rng.integers(0, high, n)
        distinct, index = dense_unique(ids)
        want_distinct, want_index = np.unique(ids, return_inverse=True)
        assert distinct.tolist() == want_distinct.tolist()
        assert index.tolist() == want_index.tolist()


@pytest.mark.parametrize("parts, tasks", [
    ([0, 1, 2, 3, 4], 2), ([3, 7, 9, 12, 20, 21, 22], 3), ([5], 4), ([4, 2, 3], None),
    (list(range(0, 40, 2)), 6), ([], None)])
def test_parts_frame_splits_parts_in_equal_runs(spark, parts, tasks):
    """The part numbers, made in the JVM, in the tasks asked for (one per part by default):
    consecutive parts together, in order, the tasks' numbers of parts at most one apart."""
    from bitcipher.stages.merge import parts_frame

    frame = parts_frame(spark, parts, tasks)
    assert frame.schema.simpleString() == "struct<part:int>"
    got = [[r["part"] for r in task] for task in frame.rdd.glom().collect()]
    got = [t for t in got if t]
    assert [p for t in got for p in t] == sorted(parts)
    want = min(tasks or len(parts), len(parts))
    assert len(got) == want
    if parts:
        assert {len(t) for t in got} <= {len(parts) // want, -(-len(parts) // want)}


def test_partition_routes_are_the_ones_sparks_hash_gives(spark):
    """spark_hash_long is Spark SQL's hash() of a long (negative and large values too), and
    the routes are those a Spark query finds: the smallest value each partition gets."""
    from pyspark.sql import functions as F

    from bitcipher.stages.cooccurrences import partition_routes, spark_hash_long

    values = [0, 1, -1, 7, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 123456789012345]
    rows = spark.createDataFrame([(v,) for v in values], "v long").select(
        "v", F.hash("v").alias("h")).collect()
    assert {r["v"]: r["h"] for r in rows} == {v: spark_hash_long(v) for v in values}
    for partitions in (1, 2, 3, 16, 37, 128):
        found = (spark.range(0, 64 * partitions)
                 .select("id", F.expr(f"pmod(hash(id), {partitions})").alias("p"))
                 .groupBy("p").agg(F.min("id").alias("id")).collect())
        want = {int(r["p"]): int(r["id"]) for r in found}
        assert partition_routes(spark, partitions) == [want.get(p, p)
                                                       for p in range(partitions)]


@pytest.mark.parametrize("chunk_shards", [
    [0, 0, 0, 1, 1, 2], [2, 2, 0, 0, 1], [0, 1, 0, 1, 1], [1, 1, 1], [0], [0, 2, 2, 0]])
def test_shard_pieces_select_what_masks_select(chunk_shards):
    """Each shard's chunks and tokens, as slices where its chunks follow one another, are
    those the masks over every chunk and token select."""
    from bitcipher.incremental.run import shard_pieces

    chunk_shards = np.asarray(chunk_shards, dtype=np.int32)
    rng = np.random.default_rng(len(chunk_shards))
    lengths = rng.integers(1, 6, len(chunk_shards)).astype(np.int64)
    ids = np.arange(int(lengths.sum()))
    token_shard = np.repeat(chunk_shards, lengths)
    got = {c: (lengths[chunks], ids[tokens])
           for c, chunks, tokens in shard_pieces(chunk_shards, lengths, 4)}
    assert sorted(got) == sorted(set(chunk_shards.tolist()))
    for c, (doc_lengths, doc_ids) in got.items():
        assert np.array_equal(doc_lengths, lengths[chunk_shards == c])
        assert np.array_equal(doc_ids, ids[token_shard == c])


@pytest.mark.parametrize("every", [1, 7, 50, 10_000])
def test_key_sums_in_steps_are_summed_once(monkeypatch, every):
    """A bucket's received counts summed every few keys (signed, repeated keys across and
    within slices) give sum_by_key's keys and sums of them all at once."""
    from bitcipher import keys as keys_module
    from bitcipher.keys import KeySums, sum_by_key

    monkeypatch.setattr(keys_module, "SUM_EVERY", every)
    rng = np.random.default_rng(every)
    slices = [(np.sort(rng.integers(0, 60, rng.integers(0, 30))).astype(np.int64), None)
              for _ in range(25)]
    slices = [(k, rng.integers(-3, 5, len(k)).astype(np.int64)) for k, _ in slices]
    got = KeySums()
    for k, n in slices:
        got.add(k, n)
    keys, counts = got.summed()
    want = sum_by_key(np.concatenate([k for k, _ in slices]),
                      np.concatenate([n for _, n in slices]))
    assert np.array_equal(keys, want[0]) and np.array_equal(counts, want[1])


def test_sorted_integer_tables_are_delta_encoded_and_read_by_spark(spark, tmp_path):
    """write_parquet with SORTED_INTEGERS (the co-occurrence parts, the totals' pairs):
    every column delta-encoded, no compression, and what pyarrow and Spark read back is
    what was written, int8 and extreme values included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bitcipher.lake.schemas import arrow_schema
    from bitcipher.lake.tables import SORTED_INTEGERS, write_parquet

    rng = np.random.default_rng(3)
    n = 5000
    center = np.sort(rng.integers(0, 2**31 - 1, n)).astype(np.int32)
    table = pa.Table.from_arrays(
        [pa.array(center), pa.array(rng.integers(-1, 2**31 - 1, n).astype(np.int32)),
         pa.array(rng.integers(-127, 128, n).astype(np.int8)),
         pa.array(np.concatenate([[2**63 - 1, -2**63], rng.integers(1, 9, n - 2)]))],
        schema=arrow_schema("cooccurrences"))
    write_parquet(table, str(tmp_path / "t"), 3, SORTED_INTEGERS)
    meta = pq.ParquetFile(tmp_path / "t" / "part-00003.parquet").metadata
    for i in range(meta.num_columns):
        column = meta.row_group(0).column(i)
        assert "DELTA_BINARY_PACKED" in column.encodings and column.compression == "UNCOMPRESSED"
    assert pq.read_table(tmp_path / "t").equals(table)
    got = spark.read.parquet(str(tmp_path / "t")).toArrow()
    assert got.cast(table.schema).equals(table)
