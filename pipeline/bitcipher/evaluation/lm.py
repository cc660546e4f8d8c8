"""Bit-cipher vectors as the embedding layer of a language model.

:func:`embedding_matrix` lines the lake's vectors up with a tokenizer's vocabulary (row i is
token i); :func:`embedding_layer` turns such a matrix into a ``torch.nn`` module, frozen or
trainable, with an optional linear projection to the model width; :func:`save_torch` /
:func:`load_torch` write and read the ``.pt`` file of ``bitcipher export --format torch``.

PyTorch is an optional extra (``pip install .[lm]``): this module imports without it, and only
the functions that make or read torch objects import it, when called.

Which lake word a token gets (first rule that finds a word in the lake wins):

1. ``aliases[token]``, when an alias is given for it (e.g. ``{"<eos>": "eos"}``);
2. the token itself;
3. the token lowercased, when the lake was built lowercased (``lowercase=True``, the build
   default; ``bitcipher export`` reads it from the lake's recorded options);
4. the token as bit-cipher's tokenizer reads it (:func:`bitcipher.stages.tokenize.split_tokens`),
   when that gives exactly one token: ``"'s"`` -> ``"s"``, ``"U.S"`` stays unmatched (two
   tokens);
5. otherwise the token is *missing* and gets the fallback row: the lake's ``<unk>`` vector
   (``fallback="unk"``, the default; every lake has an ``<unk>`` row, the pool of words rarer
   than ``min_count``), zeros (``"zeros"``) or the mean of the lake's vectors (``"mean"``).

``EmbeddingMatrix.found`` says which rows came from a word of their own and ``source`` which
lake word each row holds (``None`` for the fallback).

Standardisation (``standardize=True``) centres every dimension on the mean of the lake's
vectors (all words) and divides it by their standard deviation (dimensions that are constant
are only centred), so the rows have the scale a randomly initialised embedding would have
after multiplying by ``scale``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from bitcipher.errors import BitCipherError, InputError, OptionError
from bitcipher.stages.tokenize import split_tokens
from bitcipher.stages.unigrams import UNK

FALLBACKS = ("unk", "zeros", "mean")
FORMAT = "bitcipher-embeddings/1"

Vocab = Union[Sequence[str], Mapping[str, int], str, os.PathLike]


class MissingTorch(BitCipherError, ImportError):
    """PyTorch, an optional extra, is not installed."""

    exit_code = 1


def _torch(what: str):
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise MissingTorch(f"{what} needs PyTorch, an optional extra: pip install "
                           f"'bit-cipher[lm]' (or pip install torch)") from exc
    return torch


# --------------------------------------------------------------------------- vocabulary

def load_vocabulary(vocab: Vocab) -> list[str]:
    """Tokens in index order, from a list of tokens, a dict token -> index, or a file.

    Files: ``.json`` holding a list of tokens, a dict token -> index, or ``{"words": [...]}``
    (what ``bitcipher export --format npy`` writes beside the matrix); anything else is text
    with one token per line (``vocab.txt``; a line's first tab- or space-separated field is
    the token, so ``token<TAB>count`` lines work too; blank lines are skipped).
    """
    if isinstance(vocab, (str, os.PathLike)):
        path = os.fspath(vocab)
        if not os.path.isfile(path):
            raise InputError(f"vocabulary file {path} does not exist")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if path.endswith(".json"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"vocabulary file {path} is not valid JSON: {exc}") from exc
            if isinstance(data, dict) and "words" in data and isinstance(data["words"], list):
                data = data["words"]
            return load_vocabulary(data)
        tokens = [line.split()[0] for line in text.splitlines() if line.strip()]
        return load_vocabulary(tokens)
    if isinstance(vocab, Mapping):
        n = len(vocab)
        tokens: list[Optional[str]] = [None] * n
        for token, index in vocab.items():
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                    or not 0 <= index < n:
                raise InputError(f"vocabulary index of {token!r} must be an integer in "
                                 f"[0, {n}); got {index!r}")
            if tokens[index] is not None:
                raise InputError(f"vocabulary index {index} is given to both "
                                 f"{tokens[index]!r} and {token!r}")
            tokens[index] = str(token)
        return [t for t in tokens if t is not None]
    if isinstance(vocab, (list, tuple)):
        tokens = [str(t) for t in vocab]
        if not tokens:
            raise InputError("the vocabulary is empty")
        seen: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if t in seen:
                raise InputError(f"token {t!r} appears twice in the vocabulary "
                                 f"(indices {seen[t]} and {i})")
            seen[t] = i
        return tokens
    raise InputError(f"a vocabulary is a list of tokens, a dict token -> index or a file; "
                     f"got {type(vocab).__name__}")


def lake_word(token: str, index: Mapping[str, int], lowercase: bool = True,
              aliases: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The lake word that `token` gets (rules 1-4 of the module docstring), or None."""
    if aliases and token in aliases and aliases[token] in index:
        return aliases[token]
    if token in index:
        return token
    if lowercase and token.lower() in index:
        return token.lower()
    parts = split_tokens(token, lowercase)
    if len(parts) == 1 and parts[0] in index:
        return parts[0]
    return None


# --------------------------------------------------------------------------- the matrix

@dataclass
class EmbeddingMatrix:
    """Row i of `matrix` is the vector of `tokens[i]`."""

    tokens: list[str]
    matrix: np.ndarray  # float32 (len(tokens), dim)
    found: np.ndarray  # bool: the row is the token's own lake word (not the fallback)
    source: list[Optional[str]]  # the lake word of each row; None for the fallback
    standardized: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def missing(self) -> list[str]:
        """Tokens that got the fallback row."""
        return [t for t, f in zip(self.tokens, self.found) if not f]

    def coverage(self) -> float:
        return float(self.found.mean()) if len(self.found) else 0.0


def standardize_columns(matrix: np.ndarray, reference: Optional[np.ndarray] = None
                        ) -> np.ndarray:
    """(matrix - mean) / std per column, with mean and std of `reference` (default: matrix).

    Columns whose standard deviation is 0 are only centred.
    """
    ref = (matrix if reference is None else reference).astype(np.float64)
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((matrix.astype(np.float64) - mean) / std).astype(np.float32)


def embedding_matrix(kv, vocabulary: Optional[Vocab] = None, *, lowercase: bool = True,
                     aliases: Optional[Mapping[str, str]] = None, fallback: str = "unk",
                     standardize: bool = False) -> EmbeddingMatrix:
    """The lake's vectors lined up with a tokenizer vocabulary.

    Parameters
    ----------
    kv : KeyedVectors
        The lake's vectors (``KeyedVectors.from_frame(read_table(spark, lake, "vectors"))``).
    vocabulary : list of tokens, dict token -> index, or a vocabulary file; None
        Row order of the result. None: the lake's own words in id order.
    lowercase : bool
        The lake was built lowercased (the build default), so a token may be looked up
        lowercased.
    aliases : dict token -> lake word, optional
        Looked up first (e.g. ``{"<eos>": "eos"}`` for a corpus written with an ``eos`` word).
    fallback : {"unk", "zeros", "mean"}
        Row of a token with no lake word: the lake's ``<unk>`` vector, zeros, or the mean
        vector.
    standardize : bool
        Standardise each dimension with the lake's mean and standard deviation.
    """
    if fallback not in FALLBACKS:
        raise OptionError(f"fallback must be one of {', '.join(FALLBACKS)}; got {fallback!r}")
    tokens = list(kv.words) if vocabulary is None else load_vocabulary(vocabulary)
    lake = kv.matrix.astype(np.float32)
    if lake.shape[0] == 0:
        raise InputError("the lake holds no vectors")
    if standardize:
        lake = standardize_columns(lake)
    if fallback == "unk":
        if UNK not in kv.index:
            raise InputError(f"the lake has no {UNK} vector; choose fallback 'zeros' or 'mean'")
        fallback_row = lake[kv.index[UNK]]
    elif fallback == "zeros":
        fallback_row = np.zeros(lake.shape[1], dtype=np.float32)
    else:
        fallback_row = lake.mean(axis=0, dtype=np.float64).astype(np.float32)
    source = [lake_word(t, kv.index, lowercase, aliases) for t in tokens]
    found = np.array([s is not None for s in source], dtype=bool)
    rows = np.array([kv.index[s] if s is not None else -1 for s in source], dtype=np.int64)
    matrix = np.where(found[:, None], lake[np.maximum(rows, 0)], fallback_row[None, :])
    meta = {"fallback": fallback, "lowercase": bool(lowercase), "aliases": dict(aliases or {}),
            "lake_words": len(kv.words)}
    return EmbeddingMatrix(tokens, matrix.astype(np.float32), found, source,
                           standardized=bool(standardize), meta=meta)


def lake_lowercase(lake) -> bool:
    """Whether the lake's published build lowercased its text (from its recorded options)."""
    from bitcipher.lake.tables import PROP_OPTIONS, published

    options = json.loads(published(lake).properties.get(PROP_OPTIONS, "{}") or "{}")
    return bool(options.get("lowercase", True))


def embedding_matrix_from_lake(spark, lake, vocabulary: Optional[Vocab] = None,
                               **kwargs) -> EmbeddingMatrix:
    """:func:`embedding_matrix` of the vectors a lake serves; case handling from the lake."""
    from bitcipher.query.keyed_vectors import KeyedVectors
    from bitcipher.lake.tables import Lake, read_table

    lake = lake if isinstance(lake, Lake) else Lake(lake)
    kv = KeyedVectors.from_frame(read_table(spark, lake, "vectors"))
    kwargs.setdefault("lowercase", lake_lowercase(lake))
    return embedding_matrix(kv, vocabulary, **kwargs)


# --------------------------------------------------------------------------- torch

def save_torch(em: EmbeddingMatrix, path: str) -> str:
    """Write `em` as a ``.pt`` file: a dict with ``matrix`` (float32 tensor), ``tokens``,
    ``found`` (bool tensor), ``source``, ``standardized``, ``meta`` and ``format``.
    Loads with ``torch.load(path, weights_only=True)`` or :func:`load_torch`."""
    torch = _torch("export --format torch")
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    torch.save({
        "format": FORMAT,
        "tokens": list(em.tokens),
        "matrix": torch.from_numpy(np.ascontiguousarray(em.matrix, dtype=np.float32)),
        "found": torch.from_numpy(np.asarray(em.found, dtype=bool)),
        "source": ["" if s is None else s for s in em.source],
        "standardized": bool(em.standardized),
        "meta": json.dumps(em.meta, sort_keys=True),
    }, path)
    return path


def load_torch(path: str) -> EmbeddingMatrix:
    """Read a file written by :func:`save_torch`."""
    torch = _torch("load_torch")
    if not os.path.isfile(path):
        raise InputError(f"{path} does not exist")
    data = torch.load(path, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not a bit-cipher embedding file ({FORMAT})")
    found = data["found"].numpy().astype(bool)
    source = [s if f else None for s, f in zip(data["source"], found)]
    return EmbeddingMatrix(list(data["tokens"]), data["matrix"].numpy(), found, source,
                           bool(data["standardized"]), json.loads(data["meta"]))


def export_torch(kv, out: str, vocabulary: Optional[Vocab] = None, **kwargs) -> list[str]:
    """`bitcipher export --format torch`: :func:`embedding_matrix` saved with
    :func:`save_torch`."""
    _torch("export --format torch")  # fail before the work when torch is missing
    return [save_torch(embedding_matrix(kv, vocabulary, **kwargs), out)]


def embedding_layer(weights, *, freeze: bool = True, width: Optional[int] = None,
                    bias: bool = False, padding_idx: Optional[int] = None, scale: float = 1.0):
    """A ``torch.nn`` module mapping token ids to vectors from `weights`.

    Parameters
    ----------
    weights : EmbeddingMatrix, numpy array or tensor of shape (vocab, dim)
    freeze : bool
        Keep the embedding fixed (True) or train it (False).
    width : int, optional
        Model width: adds a trainable ``nn.Linear(dim, width, bias=bias)`` after the
        embedding (always trainable, even when the embedding is frozen). None: no projection;
        the output has ``dim`` columns.
    padding_idx : int, optional
        Passed to ``nn.Embedding``.
    scale : float
        Multiplies the weights before they are copied in.

    Returns
    -------
    ``nn.Embedding`` when `width` is None, else ``nn.Sequential(embedding, projection)``
    (``module[0]`` is the embedding, ``module[1]`` the projection).
    """
    torch = _torch("embedding_layer")
    if isinstance(weights, EmbeddingMatrix):
        weights = weights.matrix
    if isinstance(weights, np.ndarray):
        weights = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))
    weights = weights.detach().to(torch.float32)
    if weights.dim() != 2 or weights.shape[0] == 0 or weights.shape[1] == 0:
        raise InputError(f"embedding weights must be a non-empty (vocab, dim) matrix; "
                         f"got shape {tuple(weights.shape)}")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int)
                              or width < 1):
        raise OptionError(f"width must be a positive integer; got {width!r}")
    emb = torch.nn.Embedding.from_pretrained(weights * scale, freeze=freeze,
                                             padding_idx=padding_idx)
    if width is None:
        return emb
    return torch.nn.Sequential(emb, torch.nn.Linear(weights.shape[1], width, bias=bias))


def fit_width(matrix: np.ndarray, width: int, std: Optional[float] = None) -> np.ndarray:
    """`matrix` (vocab, dim) brought to `width` columns, for initialising a learned embedding.

    dim > width: the top `width` principal components (rows centred, projected on the right
    singular vectors); dim < width: zero columns appended; equal: unchanged. With `std`, the
    result is then scaled so that its overall standard deviation is `std` (e.g. that of the
    random initialisation it replaces).
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"matrix must be 2-D; got shape {x.shape}")
    if x.shape[1] > width:
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        x = centred @ vt[:width].T
    elif x.shape[1] < width:
        x = np.concatenate([x, np.zeros((x.shape[0], width - x.shape[1]))], axis=1)
    if std is not None:
        current = x.std()
        if current > 0:
            x = x * (std / current)
    return x.astype(np.float32)
