"""bitcipher.evaluation.lm: embedding matrices aligned to a tokenizer vocabulary, the torch export, the
embedding helper, and a tiny language model that learns with it.

The tests that need PyTorch (an optional extra, `pip install .[lm]`) skip when it is absent;
the rest run everywhere.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORPUS_A, CORPUS_B, write_shards

from bitcipher.cli import main
from bitcipher.errors import InputError, OptionError
from bitcipher.query.keyed_vectors import KeyedVectors
from bitcipher.evaluation.lm import (
    embedding_matrix,
    embedding_matrix_from_lake,
    fit_width,
    lake_word,
    load_vocabulary,
)

try:
    import torch
except ImportError:  # the lm extra is not installed
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="PyTorch is not installed (optional extra: pip install '.[lm]')")


def small_kv():
    words = ["<unk>", "the", "cat", "s", "dog"]
    matrix = np.array([[0.5, 0.5, 0.0], [1.0, 2.0, 3.0], [4.0, 0.0, 1.0], [2.0, 2.0, 2.0],
                       [0.0, 1.0, 5.0]], dtype=np.float32)
    return KeyedVectors(words, np.array([3, 10, 5, 2, 1]), matrix)


# --------------------------------------------------------------------------- no torch needed

def test_module_imports_without_torch():
    code = ("import sys, bitcipher.evaluation.lm, bitcipher.cli; "
            "assert 'torch' not in sys.modules, 'bitcipher.evaluation.lm imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vocabulary_from_list_dict_and_files(tmp_path):
    assert load_vocabulary(["b", "a"]) == ["b", "a"]
    assert load_vocabulary({"a": 1, "b": 0, "c": 2}) == ["b", "a", "c"]
    txt = tmp_path / "vocab.txt"
    txt.write_text("the\t10\ncat 5\n\n<eos>\n", encoding="utf-8")
    assert load_vocabulary(txt) == ["the", "cat", "<eos>"]
    js = tmp_path / "vocab.json"
    js.write_text(json.dumps({"x": 1, "y": 0}))
    assert load_vocabulary(str(js)) == ["y", "x"]
    js.write_text(json.dumps({"words": ["p", "q"], "counts": [2, 1]}))
    assert load_vocabulary(js) == ["p", "q"]


@pytest.mark.parametrize("vocab, message", [
    (["a", "b", "a"], "appears twice"),
    ({"a": 0, "b": 0}, "given to both"),
    ({"a": 0, "b": 5}, "must be an integer in"),
    ([], "empty"),
    (42, "a vocabulary is"),
])
def test_bad_vocabulary(vocab, message):
    with pytest.raises(InputError, match=message):
        load_vocabulary(vocab)


def test_bad_vocabulary_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_vocabulary(tmp_path / "none.txt")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_vocabulary(bad)


def test_lookup_rules():
    index = {"<unk>": 0, "the": 1, "cat": 2, "s": 3, "unk": 4}
    assert lake_word("cat", index) == "cat"
    assert lake_word("Cat", index) == "cat"            # lowercased lake
    assert lake_word("Cat", index, lowercase=False) is None
    assert lake_word("'s", index) == "s"               # the tokenizer's reading
    assert lake_word("u.s", index) is None             # two tokens: no single word
    assert lake_word("<eos>", index) is None           # reads as "eos": not there
    assert lake_word("<eos>", {**index, "eos": 5}) == "eos"
    assert lake_word("<unk>", index) == "<unk>"        # the word itself before its reading
    assert lake_word("<unk>", index, aliases={"<unk>": "unk"}) == "unk"
    assert lake_word("<eos>", index, aliases={"<eos>": "nope"}) is None  # alias not in lake


def test_matrix_rows_fallbacks_and_standardisation():
    kv = small_kv()
    m = kv.matrix.astype(np.float64)
    vocab = ["dog", "Cat", "zebra", "'s", "<unk>"]
    em = embedding_matrix(kv, vocab)
    assert em.tokens == vocab
    assert em.source == ["dog", "cat", None, "s", "<unk>"]
    assert em.found.tolist() == [True, True, False, True, True]
    assert em.missing == ["zebra"]
    assert np.array_equal(em.matrix, m[[4, 2, 0, 3, 0]].astype(np.float32))

    zeros = embedding_matrix(kv, vocab, fallback="zeros")
    assert np.array_equal(zeros.matrix[2], np.zeros(3))
    mean = embedding_matrix(kv, vocab, fallback="mean")
    np.testing.assert_allclose(mean.matrix[2], m.mean(axis=0), rtol=1e-6)
    with pytest.raises(OptionError, match="fallback must be one of"):
        embedding_matrix(kv, vocab, fallback="random")

    std = embedding_matrix(kv, vocab, standardize=True)
    z = (m - m.mean(axis=0)) / m.std(axis=0)  # numpy, by hand: statistics of all lake words
    np.testing.assert_allclose(std.matrix, z[[4, 2, 0, 3, 0]], rtol=1e-5, atol=1e-6)
    assert std.standardized

    whole = embedding_matrix(kv)  # no vocabulary: the lake's words in id order
    assert whole.tokens == kv.words and np.array_equal(whole.matrix, kv.matrix)


def test_constant_dimension_is_only_centred():
    kv = KeyedVectors(["<unk>", "a", "b"], np.array([1, 2, 3]),
                      np.array([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]], dtype=np.float32))
    em = embedding_matrix(kv, ["a", "b"], standardize=True)
    np.testing.assert_allclose(em.matrix[:, 1], [0.0, 0.0])
    np.testing.assert_allclose(em.matrix[:, 0], [0.0, 1.0 / np.sqrt(2 / 3)], rtol=1e-6)


def test_fit_width_pads_and_projects():
    rng = np.random.default_rng(0)
    small = rng.normal(size=(6, 3))
    padded = fit_width(small, 5)
    assert padded.shape == (6, 5)
    np.testing.assert_allclose(padded[:, :3], small, rtol=1e-6)
    assert not padded[:, 3:].any()

    # rank-2 data in 5 dimensions: projecting on 2 principal components keeps every distance
    basis = rng.normal(size=(2, 5))
    wide = rng.normal(size=(8, 2)) @ basis + 3.0
    narrow = fit_width(wide, 2)
    assert narrow.shape == (8, 2)

    def dists(x):
        return np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)

    np.testing.assert_allclose(dists(narrow), dists(wide), rtol=1e-4, atol=1e-4)
    scaled = fit_width(wide, 2, std=0.02)
    assert abs(float(scaled.std()) - 0.02) < 1e-6


# --------------------------------------------------------------------------- against the lake

@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    corpus = write_shards(tmp / "corpus", CORPUS_A * 3)
    lake = tmp / "lake"
    assert main(["build", "--corpus", str(corpus), "--lake", str(lake), "--bits", "6",
                 "--window", "2", "--min-count", "2"]) == 0
    return lake


def delta_vectors(spark, lake):
    """The vectors table read straight from Delta: word -> float32 vector."""
    rows = spark.read.format("delta").load(str(lake / "vectors")).collect()
    return {r["word"]: np.asarray(r["vector"], dtype=np.float32) for r in rows}


VOCAB = ["the", "Cat", "dog", "sat", "zebra", "<unk>", "mat's", "'s", "<eos>"]
# by hand: CORPUS_A x 3 with min_count 2 keeps the, cat, dog, sat, mat's (and <unk>);
# "'s" reads as "s", which the corpus never has alone; zebra and <eos> are not there
EXPECTED = ["the", "cat", "dog", "sat", None, "<unk>", "mat's", None, None]


def test_matrix_rows_equal_the_delta_table(lake, spark):
    table = delta_vectors(spark, lake)
    em = embedding_matrix_from_lake(spark, str(lake), VOCAB)
    assert em.source == EXPECTED
    assert em.found.tolist() == [w is not None for w in EXPECTED]
    for token, row, word in zip(VOCAB, em.matrix, EXPECTED):
        assert np.array_equal(row, table[word or "<unk>"]), token
    assert em.meta["lowercase"] is True


@needs_torch
def test_cli_export_torch_equals_the_delta_table(lake, spark, tmp_path, capsys):
    from bitcipher.evaluation.lm import load_torch

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    out = tmp_path / "emb.pt"
    assert main(["export", "--format", "torch", str(out), "--vocab", str(vocab),
                 "--lake", str(lake)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = torch.load(out, weights_only=True)  # plain tensors, lists and strings
    assert data["tokens"] == VOCAB
    table = delta_vectors(spark, lake)
    expected = np.stack([table[w or "<unk>"] for w in EXPECTED])
    assert np.array_equal(data["matrix"].numpy(), expected)
    assert data["found"].tolist() == [w is not None for w in EXPECTED]
    em = load_torch(str(out))
    assert em.missing == ["zebra", "'s", "<eos>"] and em.source == EXPECTED

    # no --vocab: every lake word in id order; --standardize against numpy
    out2 = tmp_path / "all.pt"
    assert main(["export", "--format", "torch", str(out2), "--standardize",
                 "--lake", str(lake)]) == 0
    data = torch.load(out2, weights_only=True)
    m = np.stack([table[w] for w in data["tokens"]]).astype(np.float64)
    assert sorted(data["tokens"]) == sorted(table)
    std = m.std(axis=0)
    z = (m - m.mean(axis=0)) / np.where(std > 0, std, 1)
    np.testing.assert_allclose(data["matrix"].numpy(), z, rtol=1e-5, atol=1e-5)


def test_cli_export_torch_bad_vocabulary(lake, tmp_path, capsys):
    assert main(["export", "--format", "torch", str(tmp_path / "x.pt"), "--vocab",
                 str(tmp_path / "missing.txt"), "--lake", str(lake)]) in (1, 3)
    err = capsys.readouterr().err
    assert "missing.txt does not exist" in err or "needs PyTorch" in err


def test_export_help_names_torch(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "torch" in out and "--vocab" in out and "(default: unk)" in out
    assert "bitcipher export --format torch" in out


# --------------------------------------------------------------------------- torch helper

@needs_torch
def test_frozen_layer_with_projection():
    from bitcipher.evaluation.lm import embedding_layer

    em = embedding_matrix(small_kv(), ["the", "cat", "dog"])
    layer = embedding_layer(em, freeze=True, width=8)
    emb, proj = layer[0], layer[1]
    assert not emb.weight.requires_grad and proj.weight.requires_grad
    assert tuple(proj.weight.shape) == (8, 3) and proj.bias is None
    ids = torch.tensor([[0, 2], [1, 1]])
    out = layer(ids)
    assert tuple(out.shape) == (2, 2, 8)
    before = emb.weight.detach().clone()
    opt = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.1)
    out.pow(2).sum().backward()
    opt.step()
    assert torch.equal(emb.weight, before)
    np.testing.assert_array_equal(emb.weight.numpy(), em.matrix)


@needs_torch
def test_trainable_layer_without_projection():
    from bitcipher.evaluation.lm import embedding_layer

    m = small_kv().matrix
    layer = embedding_layer(m, freeze=False, scale=2.0)
    assert isinstance(layer, torch.nn.Embedding) and layer.weight.requires_grad
    np.testing.assert_array_equal(layer.weight.detach().numpy(), 2.0 * m)
    ids = torch.tensor([1, 3])
    assert tuple(layer(ids).shape) == (2, 3)
    layer(ids).sum().backward()
    grad = layer.weight.grad.numpy()
    assert grad[[1, 3]].all() and not grad[[0, 2, 4]].any()  # only looked-up rows move
    with_bias = embedding_layer(m, freeze=False, width=4, bias=True)
    assert with_bias[0].weight.requires_grad and with_bias[1].bias is not None
    with pytest.raises(OptionError, match="width must be a positive integer"):
        embedding_layer(m, width=0)
    with pytest.raises(InputError, match="non-empty"):
        embedding_layer(np.zeros((0, 3), dtype=np.float32))


@needs_torch
def test_tiny_language_model_learns(tmp_path):
    """Next-token prediction on CORPUS_B with frozen cipher-like embeddings + projection:
    a few Adam steps on CPU lower the training loss."""
    from bitcipher.evaluation.lm import embedding_layer

    torch.manual_seed(0)
    text = " ".join(CORPUS_B).split()
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(w) for w in text])
    rng = np.random.default_rng(0)
    kv = KeyedVectors(["<unk>"] + vocab, np.ones(len(vocab) + 1),
                      rng.normal(size=(len(vocab) + 1, 6)).astype(np.float32))
    em = embedding_matrix(kv, vocab, standardize=True)
    assert em.found.all()
    model = torch.nn.Sequential(embedding_layer(em, freeze=True, width=16), torch.nn.Tanh(),
                                torch.nn.Linear(16, len(vocab)))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(ids[:-1]), ids[1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert np.array_equal(model[0][0].weight.numpy(), em.matrix)  # frozen stayed frozen


@needs_torch
def test_save_and_load_round_trip(tmp_path):
    from bitcipher.evaluation.lm import load_torch, save_torch

    em = embedding_matrix(small_kv(), ["cat", "zebra"], standardize=True)
    path = save_torch(em, str(tmp_path / "sub" / "e.pt"))
    back = load_torch(path)
    assert back.tokens == em.tokens and back.source == em.source
    assert np.array_equal(back.matrix, em.matrix) and back.found.tolist() == [True, False]
    assert back.standardized and back.meta["fallback"] == "unk"
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a bit-cipher embedding file"):
        load_torch(str(tmp_path / "other.pt"))
