"""The Spark build against an independent NumPy computation (tests/reference.py)."""

import itertools

import numpy as np
import pytest
import reference
from conftest import CORPUS_A, CORPUS_B, CORPUS_C, write_shards

from bitcipher import BuildOptions, build
from bitcipher.lake.tables import Lake, published, read_table
from bitcipher.stages.cipher import cipher_from_table
from bitcipher.stages.tokenize import TOKENS_DIR, read_tokens, token_parts, write_tokens
from bitcipher.stages.vectors import aggregate_rows, context_marginal

CORPORA = {"a": CORPUS_A, "b": CORPUS_B, "c": CORPUS_C}


def reference_opts(options: BuildOptions) -> dict:
    return dict(bits=options.bits, window=options.window, mode=options.mode,
                weighting=options.weighting, smoothing=options.smoothing,
                transform=options.transform, epsilon=options.epsilon,
                min_count=options.min_count, max_vocab=options.max_vocab,
                include_self=options.include_self, lowercase=options.lowercase,
                max_document_tokens=options.max_document_tokens)


def build_tables(spark, tmp_path, lines, options, shards=2):
    corpus = write_shards(tmp_path / "corpus", lines, shards)
    lake = Lake(str(tmp_path / "lake"))
    build(spark, str(corpus), lake, options, report=lambda _: None)
    run = published(lake).run
    # the tokens the tokenize stage kept for the co-occurrence stage are gone
    assert not [p for p in (tmp_path / "lake").rglob(f"{TOKENS_DIR}*")]
    tables = {name: read_table(spark, lake, name, run=run).toPandas()
              for name in ("unigrams", "cooccurrences", "cipher")}
    tables["vectors"] = read_table(spark, lake, "vectors").toPandas()
    return tables


def check_against_reference(tables, expected, options):
    uni = tables["unigrams"].sort_values("id")
    assert list(zip(uni.word, uni["count"])) == expected["vocab"]
    assert list(uni.id) == list(range(len(expected["vocab"])))

    cooc = tables["cooccurrences"]
    got = {(int(t), int(c), int(d)): int(n)
           for t, c, d, n in zip(cooc.center, cooc.context, cooc.offset, cooc["count"])}
    assert got == expected["cooc"]

    vec = tables["vectors"].sort_values("id")
    assert list(vec.word) == [w for w, _ in expected["vocab"]]
    assert list(vec["count"]) == [c for _, c in expected["vocab"]]
    matrix = np.stack(vec.vector.to_numpy()).astype(np.float64)
    np.testing.assert_allclose(matrix, expected["vectors"], rtol=2e-6, atol=2e-6)


# Full Spark builds: every value of every option appears at least once.
BUILDS = [
    ("a", BuildOptions(project=None, bits=6, window=2, min_count=2)),
    ("a", BuildOptions(project=None, bits=5, window=3, mode="concat", weighting="flat", smoothing="f",
                       transform="log1p", min_count=1)),
    ("b", BuildOptions(project=None, bits=4, window=2, weighting="cosine", smoothing="none",
                       transform="none", min_count=2, include_self=False)),
    ("b", BuildOptions(project=None, bits="auto", window=1, mode="concat", weighting="harmonic",
                       min_count=1, max_vocab=6, epsilon=0.01)),
    ("c", BuildOptions(project=None, bits=8, window=4, weighting="cosine", min_count=1, lowercase=False,
                       max_document_tokens=3)),
    ("c", BuildOptions(project=None, bits=5, window=2, mode="concat", weighting="cosine", smoothing="nf",
                       transform="neglog", min_count=2, include_self=False)),
    ("a", BuildOptions(project=None, bits=6, window=2, transform="pmi", min_count=1)),
    ("b", BuildOptions(project=None, bits=5, window=3, mode="concat", transform="ppmi", min_count=2)),
]


@pytest.mark.parametrize("corpus,options", BUILDS, ids=[f"{c}-{i}" for i, (c, _) in
                                                         enumerate(BUILDS)])
def test_build_matches_numpy_reference(spark, tmp_path, corpus, options):
    tables = build_tables(spark, tmp_path, CORPORA[corpus], options)
    expected = reference.vectors(CORPORA[corpus], **reference_opts(options))
    check_against_reference(tables, expected, options)
    cipher = tables["cipher"].sort_values("id")
    stored = cipher_from_table(int(cipher.bits.iloc[0]), cipher["count"].to_numpy(),
                               [list(c) for c in cipher.code], cipher.beta.to_numpy())
    np.testing.assert_allclose(stored.rep, expected["cipher"]["rep"], atol=1e-12)
    assert [list(c) for c in cipher.code] == [list(np.flatnonzero(row))
                                              for row in expected["cipher"]["code"]]


# Every combination of mode, weighting, smoothing and transform on the vector step,
# fed with the reference's own co-occurrence counts (the Spark counts are checked above).
@pytest.mark.parametrize(
    "mode,weighting,smoothing,transform",
    list(itertools.product(["sum", "concat"], ["flat", "harmonic", "cosine"],
                           ["nf", "f", "none"], ["neglog", "log1p", "none", "pmi", "ppmi"])),
)
@pytest.mark.parametrize("include_self", [True, False])
def test_vector_step_matches_reference(mode, weighting, smoothing, transform, include_self):
    options = BuildOptions(project=None, bits=5, window=2, mode=mode, weighting=weighting,
                           smoothing=smoothing, transform=transform, min_count=2,
                           include_self=include_self)
    expected = reference.vectors(CORPUS_A, **reference_opts(options))
    from bitcipher.stages.cipher import build_cipher

    counts = np.array([c for _, c in expected["vocab"]])
    cipher = build_cipher(counts, options.bits, smoothing)
    rows = sorted(expected["cooc"].items())
    center, context, offset = (np.array(col) for col in zip(*(k for k, _ in rows)))
    n = np.array([v for _, v in rows])
    # the corpus-wide totals n(., c, d) that pmi/ppmi compare with
    totals = {}
    for (_, c, d), v in rows:
        totals[(c, d)] = totals.get((c, d), 0) + v
    keys = sorted(totals)
    marginal = context_marginal(np.array([c for c, _ in keys]), np.array([d for _, d in keys]),
                                np.array([totals[k] for k in keys]), cipher.context_matrix(),
                                np.append(counts, 0), int(counts.sum()), options)
    ids, vecs = aggregate_rows(center, context, offset, n, cipher.context_matrix(),
                               np.append(counts, 0), int(counts.sum()), options, marginal)
    np.testing.assert_array_equal(ids, np.arange(len(counts)))
    np.testing.assert_allclose(vecs, expected["vectors"], rtol=2e-6, atol=2e-6)


def test_kept_tokens_round_trip(tmp_path):
    """The tokenize stage's files give back each task's dictionary, ids and lengths."""
    import pyarrow as pa

    words = pa.array(["the", "éclair", "naïve", "o'clock", "日本"])
    ids = np.array([0, 1, 0, 4, 3, 2, 0], dtype=np.int32)
    write_tokens(str(tmp_path), 7, words, ids, np.array([3, 4], dtype=np.int32))
    write_tokens(str(tmp_path), 2, pa.array([], pa.string()), np.empty(0, np.int32),
                 np.empty(0, np.int32))
    assert token_parts(str(tmp_path)) == [2, 7]
    got_words, got_ids, got_lengths = read_tokens(str(tmp_path), 7)
    assert got_words.to_pylist() == words.to_pylist()
    assert [got_words[i].as_py() for i in got_ids] == [words[i].as_py() for i in ids]
    assert got_lengths.tolist() == [3, 4]
    empty = read_tokens(str(tmp_path), 2)
    assert len(empty[0]) == 0 and len(empty[1]) == 0 and len(empty[2]) == 0


@pytest.mark.parametrize("seed", range(4))
def test_tokenize_batch_gives_the_reference_tokens(seed):
    """tokenize_batch (ASCII lines from their bytes, the others through the regex) gives
    the reference's documents in line order: random lines of ASCII letters, digits,
    apostrophes and separators, mixed with non-ASCII ones (’, É, ß, Σ), empty and null
    lines, a sliced batch, with and without lowercasing, chunks of 1, 3 and 10,000."""
    import random

    import pyarrow as pa
    import reference

    from bitcipher.stages.tokenize import tokenize_batch

    rng = random.Random(seed)
    for _ in range(400):
        lines = []
        for _ in range(rng.randint(0, 9)):
            r = rng.random()
            alphabet = ("aZ9'’ _-.\tÉé ßΣ'x'y''z0" if r < 0.3 else "ab'C 9_-'. Q" if r < 0.85
                        else "")
            lines.append(None if r > 0.93 else
                         "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
                         if alphabet else "")
        texts = pa.array(lines, pa.string())
        if len(lines) > 2 and rng.random() < 0.3:
            texts, lines = texts.slice(1, len(lines) - 2), lines[1:-1]
        lowercase, n = rng.random() < 0.7, rng.choice([1, 3, 10_000])
        tokens, lengths, rows = tokenize_batch(texts, lowercase, n)
        want = [(i, chunk) for i, line in enumerate(lines) if line
                for chunk in reference.documents([line], lowercase, n)]
        assert rows.tolist() == [i for i, _ in want]
        assert lengths.tolist() == [len(c) for _, c in want]
        assert tokens.to_pylist() == [t for _, c in want for t in c]


def test_ascii_tokens_of_null_and_adjacent_lines():
    """ascii_tokens: a token never spans two lines (the text buffer has no separators
    between them), an apostrophe at a line's edge is no part of a token, a null line has
    no tokens whatever its buffer holds."""
    import pyarrow as pa

    from bitcipher.stages.tokenize import ascii_tokens

    texts = pa.array(["ab", "cd'", "'ef", "", "g'h i''j k'", None, "X9_y"], pa.string())
    tokens, per_line = ascii_tokens(texts, True)
    assert tokens.to_pylist() == ["ab", "cd", "ef", "g'h", "i", "j", "k", "x9", "y"]
    assert per_line.tolist() == [1, 1, 1, 0, 4, 0, 2]
    # a null whose slot still holds bytes (Arrow allows it): they are not read as text
    data = b"abcdefgh"
    masked = pa.Array.from_buffers(pa.string(), 3, [
        pa.py_buffer(np.packbits([1, 0, 1], bitorder="little").tobytes()),
        pa.py_buffer(np.array([0, 2, 6, 8], np.int32).tobytes()), pa.py_buffer(data)])
    tokens, per_line = ascii_tokens(masked, False)
    assert tokens.to_pylist() == ["ab", "gh"] and per_line.tolist() == [1, 0, 1]
