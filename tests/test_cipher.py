"""Step 1, the cipher: code order, capacity, smoothing (ALGORITHM.md §2)."""

import numpy as np
import pytest
import reference

from bitcipher.stages.cipher import build_cipher, code_matrix, code_positions, resolve_bits, smallest_bits
from bitcipher.errors import CapacityError

# b = 4, written out by hand: one-hot codes, then two ones in colex order, then three, then four.
CODES_B4 = [
    "1000", "0100", "0010", "0001",
    "1100", "1010", "0110", "1001", "0101", "0011",
    "1110", "1101", "1011", "0111",
    "1111",
]


def test_code_order_b4_by_hand():
    codes = code_matrix(15, 4)
    assert ["".join(str(b) for b in row) for row in codes] == CODES_B4


@pytest.mark.parametrize("bits", [2, 3, 5, 7])
def test_code_order_matches_brute_force(bits):
    n = 2**bits - 1
    assert [code_positions(r, bits) for r in range(n)] == [
        reference.code_positions(r, bits) for r in range(n)
    ]


def test_code_of_large_rank_is_cheap_and_consistent():
    assert code_positions(0, 32) == (0,)
    assert code_positions(32, 32) == (0, 1)
    assert code_positions(32 + 496, 32) == (0, 1, 2)
    assert code_positions(100_000, 32) == reference.code_positions(100_000, 32)


def test_capacity_error_names_smallest_bits():
    with pytest.raises(CapacityError, match=r"bits >= 4"):
        resolve_bits(3, 8)  # 2**3 - 1 = 7 codes < 8 words
    assert resolve_bits(4, 8) == 4
    assert resolve_bits(3, 7) == 3


def test_bits_auto():
    assert smallest_bits(7) == 3
    assert smallest_bits(8) == 4
    assert smallest_bits(1) == 2
    assert resolve_bits("auto", 1000) == 10
    assert build_cipher(np.arange(20, 0, -1), "auto").bits == 5


@pytest.mark.parametrize("smoothing", ["nf", "f", "none"])
def test_rep_matches_reference_and_sums_to_one(smoothing):
    vocab = [("a", 9), ("b", 5), ("c", 5), ("<unk>", 3), ("d", 2), ("e", 2), ("f", 2)]
    ours = build_cipher([c for _, c in vocab], 4, smoothing)
    ref = reference.cipher(vocab, 4, smoothing)
    np.testing.assert_allclose(ours.rep, ref["rep"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.context_matrix(), ref["x"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.rep.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("bits,n_words", [(2, 3), (4, 15), (9, 511), (256, 40_000)])
def test_code_matrix_rows_are_code_positions(bits, n_words):
    from bitcipher.stages.cipher import code_matrix

    codes = code_matrix(n_words, bits)
    for rank in sorted(set(range(min(n_words, 600))) | set(range(max(n_words - 50, 0), n_words))):
        assert tuple(np.flatnonzero(codes[rank])) == code_positions(rank, bits), rank
