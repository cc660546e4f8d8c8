"""The merged totals' building blocks against direct Python computations."""

import itertools
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bitcipher.keys import MAX_WORDS, PACKED_EDGE, KeyCodec, pack, unpack
from bitcipher.incremental.totals import marginal_totals, merge_sorted

counted = st.dictionaries(st.integers(-1000, 1000), st.integers(-5, 9).filter(bool), max_size=40)


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
