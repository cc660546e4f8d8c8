"""A token-tagging probe: how much of a tagging task word vectors can solve on their own.

The probe reads CoNLL-style files (one ``token tag`` per line, a blank line between
sentences), represents every token by the vectors of the previous, current and next word,
and trains a multinomial logistic regression on the train file; it reports accuracy and
macro-F1 on the test file beside the most-frequent-tag-per-word baseline on the same split.

Files
-----
One token per line. With more than two whitespace-separated columns the first is the token
and the last the tag (so CoNLL-2003 NER files and UD-derived ``form upos`` files work as they
are). A blank line ends a sentence; lines starting with ``-DOCSTART-`` are skipped.

Features
--------
For token ``i`` of a sentence the features are ``[v(i-1), v(i), v(i+1)]`` where ``v`` is the
word's vector standardised with the mean and standard deviation of the current-word vectors
over the train tokens (dimensions with zero spread are only centred). Sentence edges and
words without a vector give zeros (= the train mean). A token is looked up as written
(lowercased when ``lowercase=True``); if that misses, it is split by the pipeline's tokenizer
(``term-end`` -> ``term``, ``end``; ``Jr.`` -> ``jr``) and gets the mean of the vectors of the
pieces that have one. With ``lowercase=True`` the most frequent case variant of a word in the
vocabulary (the lowest row) answers for it.

Model
-----
Softmax regression with a bias, minimising the mean cross-entropy plus
``l2 / 2 * ||W||^2`` (the bias is not penalised) with L-BFGS (scipy), from zero weights, so
the fit is deterministic. It is this module's own code, not scikit-learn's (see
:class:`SoftmaxProbe` for why). The products run on distinct word types, not tokens (the token x
feature matrix is never built), in float32. By default the model trains on a random subset
of 200,000 train tokens (``max_train_tokens``, chosen with ``seed``; their neighbours'
vectors are still used) and L-BFGS stops after at most 100 iterations, or earlier once an
iteration improves the objective by less than :data:`LBFGS_FTOL`: the same stopping rule
for every set of vectors, so that scores compare. On the Brown POS files (0.81M train
tokens) a probe of 257-dimensional vectors takes well under a minute on an idle machine
(it took about 7 minutes on two busy cores with float64 and 200 iterations); pass
``max_train_tokens=None`` to use every token.

Metrics
-------
* accuracy: correct / test tokens (a test tag never seen in training counts as an error);
* macro-F1: the mean F1 over the tags that occur in the gold test tags or the predictions
  (F1 = 0 for a tag never predicted correctly);
* baseline: every word gets the tag it had most often in the (whole) train file, by the
  same lookup key (lowercased when ``lowercase=True``); ties go to the globally more
  frequent tag, then alphabetical order; words not seen in training get the globally most
  frequent train tag;
* coverage: the share of test tokens whose own vector is known.

Example
-------
>>> from bitcipher.evaluation.evaluate import load_word2vec
>>> from bitcipher.evaluation.probe import run_probe
>>> kv = load_word2vec("vectors.txt")                                  # doctest: +SKIP
>>> print(run_probe(kv, "brown/train.conll", "brown/test.conll").table())  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

from bitcipher.errors import InputError, OptionError
from bitcipher.query.keyed_vectors import KeyedVectors
from bitcipher.stages.tokenize import PY_TOKEN_PATTERN

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_L2 = 1e-5
DEFAULT_MAX_ITER = 100
DEFAULT_MAX_TRAIN_TOKENS = 200_000
LBFGS_FTOL = 1e-4
"""L-BFGS stops when an iteration lowers the objective by at most this much (relative to
max(|loss|, 1)). On Brown POS (200k train tokens, 72 tags, 257-dimensional vectors) the
test accuracy stops moving after 50-100 iterations while the training loss still falls by
~1e-4 per iteration; the old setting (no tolerance, 200 iterations) spent twice the time
for the same accuracy (0.924 at 200 iterations, 0.926 at 75-100)."""
LBFGS_GTOL = 1e-5
"""... or when the largest gradient component is at most this (scipy's default)."""


# --------------------------------------------------------------------------- reading


@dataclass
class TaggedCorpus:
    """Tokens and tags of a CoNLL file, flat, with sentence boundaries.

    ``starts[k]`` is the index of the first token of sentence ``k``; ``starts[-1]`` is the
    number of tokens.
    """

    tokens: list[str]
    tags: list[str]
    starts: np.ndarray

    @property
    def sentences(self) -> int:
        return len(self.starts) - 1

    def sentence_tokens(self, k: int) -> list[tuple[str, str]]:
        lo, hi = self.starts[k], self.starts[k + 1]
        return list(zip(self.tokens[lo:hi], self.tags[lo:hi]))


def read_conll(path: PathLike, encoding: str = "utf-8") -> TaggedCorpus:
    """Read a CoNLL-style file: ``token ... tag`` per line, blank lines between sentences.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    encoding : str
        Its text encoding.

    Returns
    -------
    TaggedCorpus
        Tokens and tags in file order and the sentence starts. Empty sentences (several blank
        lines, a ``-DOCSTART-`` block) are dropped.

    Raises
    ------
    bitcipher.errors.InputError
        The file is missing, a non-blank line has fewer than two columns, or the file holds
        no tokens (the message gives the file and line).
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such CoNLL file")
    tokens: list[str] = []
    tags: list[str] = []
    starts = [0]
    try:
        with open(path, encoding=encoding) as fh:
            for lineno, line in enumerate(fh, 1):
                fields = line.split()
                if not fields:
                    if len(tokens) > starts[-1]:
                        starts.append(len(tokens))
                    continue
                if fields[0] == "-DOCSTART-":
                    continue
                if len(fields) < 2:
                    raise InputError(f"{path}:{lineno}: expected 'token tag' (whitespace "
                                     f"separated), got {line.rstrip()[:200]!r}")
                tokens.append(fields[0])
                tags.append(fields[-1])
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not {encoding} text ({exc.reason} at byte "
                         f"{exc.start})") from None
    if len(tokens) > starts[-1]:
        starts.append(len(tokens))
    if not tokens:
        raise InputError(f"{path}: no tokens; a CoNLL file has one 'token tag' per line")
    return TaggedCorpus(tokens, tags, np.asarray(starts, dtype=np.int64))


def write_conll(path: PathLike, sentences: Sequence[Sequence[tuple[str, str]]]) -> None:
    """Write sentences of (token, tag) pairs as a CoNLL file (tab-separated)."""
    with open(path, "w", encoding="utf-8") as fh:
        for sentence in sentences:
            for token, tag in sentence:
                if not token or not tag or any(c.isspace() for c in token + tag):
                    raise InputError(f"token {token!r} / tag {tag!r}: CoNLL columns may not "
                                     f"be empty or hold whitespace")
                fh.write(f"{token}\t{tag}\n")
            fh.write("\n")


# --------------------------------------------------------------------------- metrics


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Share of positions where `predicted` equals `gold` (NaN when empty)."""
    if len(gold) != len(predicted):
        raise OptionError(f"gold and predicted differ in length: {len(gold)} vs "
                          f"{len(predicted)}")
    if not gold:
        return math.nan
    return sum(g == p for g, p in zip(gold, predicted)) / len(gold)


def macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean per-tag F1 over the tags in `gold` or `predicted` (NaN when empty).

    F1 of a tag is ``2 tp / (2 tp + fp + fn)``; a tag that is predicted but never right, or
    never predicted, scores 0.
    """
    if len(gold) != len(predicted):
        raise OptionError(f"gold and predicted differ in length: {len(gold)} vs "
                          f"{len(predicted)}")
    if not gold:
        return math.nan
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    for g, p in zip(gold, predicted):
        if g == p:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    labels = set(gold) | set(predicted)
    return float(np.mean([2 * tp[t] / (2 * tp[t] + fp[t] + fn[t]) for t in labels]))


# --------------------------------------------------------------------------- lookup


_PIECES = re.compile(PY_TOKEN_PATTERN)


def _key(token: str, lowercase: bool) -> str:
    return token.lower() if lowercase else token


def _word_index(kv: KeyedVectors, lowercase: bool) -> dict[str, int]:
    if not lowercase:
        return dict(kv.index)
    index: dict[str, int] = {}
    for i, word in enumerate(kv.words):
        index.setdefault(word.lower(), i)
    return index


def _rows_of(key: str, index: dict[str, int]) -> list[int]:
    """Vocabulary rows whose mean is the vector of `key` (empty: unknown)."""
    row = index.get(key)
    if row is not None:
        return [row]
    return [index[p] for p in _PIECES.findall(key) if p in index]


def most_frequent_tag_baseline(train: TaggedCorpus, test_tokens: Sequence[str],
                               lowercase: bool = True) -> list[str]:
    """Tag every test token with its most frequent train tag (see the module docstring)."""
    overall = Counter(train.tags)
    rank = {tag: r for r, (tag, _) in enumerate(sorted(overall.items(),
                                                          key=lambda kv: (-kv[1], kv[0])))}
    by_word: dict[str, Counter] = {}
    for token, tag in zip(train.tokens, train.tags):
        by_word.setdefault(_key(token, lowercase), Counter())[tag] += 1
    best = {w: min(c.items(), key=lambda kv: (-kv[1], rank[kv[0]]))[0]
            for w, c in by_word.items()}
    fallback = min(rank, key=rank.get)
    return [best.get(_key(t, lowercase), fallback) for t in test_tokens]


# --------------------------------------------------------------------------- model


def neighbour_matrix(corpus: TaggedCorpus, type_ids: np.ndarray, shift: int, n_types: int):
    """Sparse (tokens x types) one-hot of the word `shift` places away (-1, 0, +1);
    an empty row at a sentence edge or where that word has no vector."""
    from scipy import sparse

    n = len(type_ids)
    source = np.arange(n) + shift
    sentence = np.repeat(np.arange(corpus.sentences), np.diff(corpus.starts))
    valid = (source >= 0) & (source < n)
    valid[valid] &= sentence[source[valid]] == sentence[valid]
    cols = np.full(n, -1, dtype=np.int64)
    cols[valid] = type_ids[source[valid]]
    keep = cols >= 0
    return sparse.csr_matrix((np.ones(int(keep.sum())), (np.flatnonzero(keep), cols[keep])),
                             shape=(n, n_types))


class SoftmaxProbe:
    """Multinomial logistic regression on logits ``sum_j S_j (Z W_j) + b``.

    Written here rather than taken from scikit-learn, on purpose: the probe is a core
    feature (scikit-learn is not a dependency), the features never exist as a tokens x
    (3 x dim) matrix (``S_j`` are sparse one-hots of word types, so the products run on the
    types: a third of the memory and time at 200k tokens), and the fit is deterministic from
    zero weights with fixed stopping rules, the same for every set of vectors.
    tests/test_probe.py checks the loss and gradient against a dense NumPy construction
    and, when scikit-learn is installed, the accuracy against its LogisticRegression.

    The features and every token-sized array are float32 (half the memory traffic of
    float64 in the two matrix products that dominate an evaluation); the weights handed to
    L-BFGS, the loss sum and the gradient are float64. Only the word types that occur in
    the training blocks enter the products.
    """

    def __init__(self, blocks, z: np.ndarray, y: np.ndarray, classes: int, l2: float):
        from scipy import sparse

        self.nb = len(blocks)
        self.z_all = np.ascontiguousarray(z, dtype=np.float32)  # (U, d): every type
        u_all = self.z_all.shape[0]
        s = sparse.hstack(blocks, format="csr", dtype=np.float32)  # (n, nb*U)
        used = np.unique(s.indices % u_all) if s.nnz else np.zeros(0, dtype=np.int64)
        remap = np.full(u_all, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        cols = s.indices // u_all * len(used) + remap[s.indices % u_all]
        self.s = sparse.csr_matrix((s.data, cols, s.indptr),
                                   shape=(s.shape[0], self.nb * len(used)))  # (n, nb*U')
        self.s_t = self.s.T.tocsr()
        self.z = self.z_all[used]  # (U', d)
        self.y = np.asarray(y, dtype=np.int64)
        self.k = classes
        self.l2 = l2
        self.d = self.z_all.shape[1]
        self.n = self.s.shape[0]
        self.rows = np.arange(self.n)
        self.evaluations = 0

    def unpack(self, theta: np.ndarray):
        w = theta[: self.nb * self.d * self.k].reshape(self.nb, self.d, self.k)
        b = theta[self.nb * self.d * self.k:]
        return w, b

    def _zw(self, z: np.ndarray, w: np.ndarray) -> np.ndarray:
        """(nb*U, k): Z W_j stacked block under block, float32, from one matrix product."""
        u = z.shape[0]
        wide = np.concatenate(list(w), axis=1).astype(np.float32)  # (d, nb*k)
        return (z @ wide).reshape(u, self.nb, self.k).transpose(1, 0, 2).reshape(
            self.nb * u, self.k)

    def logits(self, blocks, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        from scipy import sparse

        s = sparse.hstack(blocks, format="csr", dtype=np.float32)
        return s @ self._zw(self.z_all, w) + b.astype(np.float32)

    def loss_grad(self, theta: np.ndarray):
        self.evaluations += 1
        w, b = self.unpack(theta)
        g = self.s @ self._zw(self.z, w)  # logits, (n, k) float32
        g += b.astype(np.float32)
        g -= g.max(axis=1, keepdims=True)
        picked = g[self.rows, self.y].astype(np.float64)
        np.exp(g, out=g)
        norm = g.sum(axis=1, dtype=np.float64)
        loss = float(np.mean(np.log(norm) - picked))
        g /= norm[:, None].astype(np.float32)  # probabilities
        g[self.rows, self.y] -= 1.0
        g /= np.float32(self.n)  # dLoss/dlogits
        a = self.s_t @ g  # (nb*U', k) float32
        u = self.z.shape[0]
        wide = a.reshape(self.nb, u, self.k).transpose(1, 0, 2).reshape(u, self.nb * self.k)
        grad_w = (self.z.T @ wide).astype(np.float64)  # (d, nb*k), one matrix product
        grad_w = grad_w.reshape(self.d, self.nb, self.k).transpose(1, 0, 2)
        grad_w += self.l2 * w
        grad_b = g.sum(axis=0, dtype=np.float64)
        loss += 0.5 * self.l2 * float(np.sum(w * w))
        return loss, np.concatenate([grad_w.ravel(), grad_b])


# --------------------------------------------------------------------------- the probe


@dataclass
class ProbeResult:
    """What :func:`run_probe` measured (accuracies and F1 as fractions in [0, 1])."""

    accuracy: float
    macro_f1: float
    baseline_accuracy: float
    baseline_macro_f1: float
    coverage: float
    train_tokens: int
    trained_on: int
    test_tokens: int
    tags: int
    dim: int
    iterations: int
    converged: bool
    seconds: float
    lowercase: bool
    predictions: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out.pop("predictions")
        return out

    def table(self) -> str:
        """A small plain-text table of the scores."""
        rows = [("", "accuracy", "macro-F1"),
                ("probe", f"{self.accuracy:.4f}", f"{self.macro_f1:.4f}"),
                ("most frequent tag", f"{self.baseline_accuracy:.4f}",
                 f"{self.baseline_macro_f1:.4f}")]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        lines.append(f"test tokens {self.test_tokens:,}, coverage {self.coverage:.1%}; "
                     f"trained on {self.trained_on:,} of {self.train_tokens:,} train tokens, "
                     f"{self.tags} tags, features 3 x {self.dim}; "
                     f"{self.iterations} L-BFGS iterations"
                     f"{'' if self.converged else ' (stopped at the limit)'}, "
                     f"{self.seconds:.1f} s")
        return "\n".join(lines)


def design(vectors: KeyedVectors, train: TaggedCorpus, test: TaggedCorpus,
           lowercase: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The standardised vectors of the word types the probe sees, and each token's type.

    Returns
    -------
    (z, train_ids, test_ids)
        ``z[t]`` is the standardised vector of type ``t`` (the mean of its rows' vectors,
        see :func:`_rows_of`, minus the train mean, over the train standard deviation);
        ``train_ids[i]`` / ``test_ids[i]`` is the type of token ``i``, or -1 when it has no
        vector.
    """
    matrix = np.asarray(vectors.matrix)
    # word types with a vector, over both files
    index = _word_index(vectors, lowercase)
    type_of: dict[str, int] = {}
    type_rows: list[list[int]] = []

    def type_ids(corpus: TaggedCorpus) -> np.ndarray:
        ids = np.empty(len(corpus.tokens), dtype=np.int64)
        cache: dict[str, int] = {}
        for i, token in enumerate(corpus.tokens):
            t = cache.get(token)
            if t is None:
                key = _key(token, lowercase)
                t = type_of.get(key)
                if t is None:
                    rows = _rows_of(key, index)
                    if rows:
                        t = type_of[key] = len(type_rows)
                        type_rows.append(rows)
                    else:
                        t = -1
                cache[token] = t
            ids[i] = t
        return ids

    train_ids = type_ids(train)
    test_ids = type_ids(test)
    n_types = len(type_rows)
    dim = matrix.shape[1]
    raw = np.zeros((n_types, dim), dtype=np.float64)
    for t, rows in enumerate(type_rows):
        raw[t] = matrix[rows].astype(np.float64).mean(axis=0)
    known_train = train_ids[train_ids >= 0]
    counts = np.bincount(known_train, minlength=n_types).astype(np.float64)
    if counts.sum() > 0:
        mean = counts @ raw / counts.sum()
        var = counts @ (raw - mean) ** 2 / counts.sum()
    else:
        mean, var = np.zeros(dim), np.ones(dim)
    std = np.sqrt(var)
    z = (raw - mean) / np.where(std > 0, std, 1.0)
    return z, train_ids, test_ids


def run_probe(vectors: KeyedVectors, train_path: PathLike, test_path: PathLike, *,
              lowercase: bool = True, seed: int = 0, l2: float = DEFAULT_L2,
              max_iter: int = DEFAULT_MAX_ITER,
              max_train_tokens: Optional[int] = DEFAULT_MAX_TRAIN_TOKENS) -> ProbeResult:
    """Train the tagging probe on `train_path` and score it on `test_path`.

    Parameters
    ----------
    vectors : KeyedVectors
        The word vectors (a lake's, or :func:`bitcipher.evaluation.evaluate.load_word2vec`'s).
    train_path, test_path : str or os.PathLike
        CoNLL-style files (see :func:`read_conll`).
    lowercase : bool
        Look words up lowercased (for vectors built from lowercased text); also the key of
        the most-frequent-tag baseline.
    seed : int
        Seed of the train-token subsample (only used with `max_train_tokens`).
    l2 : float
        L2 penalty on the weights (objective: mean cross-entropy + l2/2 ||W||^2).
    max_iter : int
        L-BFGS iteration limit (it also stops once an iteration improves the objective by
        less than :data:`LBFGS_FTOL`).
    max_train_tokens : int or None
        Train on at most this many train tokens (default 200,000), drawn at random with
        `seed`; None: all of them.

    Returns
    -------
    ProbeResult

    Raises
    ------
    bitcipher.errors.InputError
        A file is missing or malformed.
    bitcipher.errors.OptionError
        A bad `l2`, `max_iter` or `max_train_tokens`, or vectors with no rows.
    """
    from scipy.optimize import minimize

    if not (isinstance(l2, (int, float)) and l2 >= 0 and math.isfinite(l2)):
        raise OptionError(f"l2 must be a finite number >= 0, got {l2!r}")
    if max_iter < 1:
        raise OptionError(f"max_iter must be at least 1, got {max_iter}")
    if max_train_tokens is not None and max_train_tokens < 1:
        raise OptionError(f"max_train_tokens must be at least 1, got {max_train_tokens}")
    matrix = np.asarray(vectors.matrix)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise OptionError("the vectors are empty: nothing to probe with")
    started = time.perf_counter()
    train = read_conll(train_path)
    test = read_conll(test_path)

    z, train_ids, test_ids = design(vectors, train, test, lowercase)
    n_types, dim = z.shape

    classes = sorted(set(train.tags))
    class_index = {c: i for i, c in enumerate(classes)}
    y = np.array([class_index[t] for t in train.tags], dtype=np.int64)
    blocks = [neighbour_matrix(train, train_ids, s, n_types) for s in (-1, 0, 1)]
    chosen = np.arange(len(y))
    if max_train_tokens is not None and max_train_tokens < len(y):
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(y), size=max_train_tokens, replace=False))
        blocks = [s[chosen] for s in blocks]
        y = y[chosen]
    model = SoftmaxProbe(blocks, z, y, len(classes), float(l2))
    theta0 = np.zeros(3 * dim * len(classes) + len(classes))
    fit = minimize(model.loss_grad, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": int(max_iter), "maxfun": int(max_iter) * 2 + 20,
                            "ftol": LBFGS_FTOL, "gtol": LBFGS_GTOL})
    w, b = model.unpack(fit.x)

    test_blocks = [neighbour_matrix(test, test_ids, s, n_types) for s in (-1, 0, 1)]
    predicted_ids = model.logits(test_blocks, w, b).argmax(axis=1)
    predictions = [classes[i] for i in predicted_ids]
    baseline = most_frequent_tag_baseline(train, test.tokens, lowercase)
    return ProbeResult(
        accuracy=accuracy(test.tags, predictions),
        macro_f1=macro_f1(test.tags, predictions),
        baseline_accuracy=accuracy(test.tags, baseline),
        baseline_macro_f1=macro_f1(test.tags, baseline),
        coverage=float(np.mean(test_ids >= 0)),
        train_tokens=len(train.tokens),
        trained_on=len(y),
        test_tokens=len(test.tokens),
        tags=len(classes),
        dim=dim,
        iterations=int(fit.nit),
        converged=bool(fit.success),
        seconds=time.perf_counter() - started,
        lowercase=lowercase,
        predictions=predictions,
    )


# --------------------------------------------------------------------------- command line


def words_are_lowercase(words: Sequence[str]) -> bool:
    """True when no word has an upper-case letter (vectors built from lowercased text)."""
    return all(w == w.lower() for w in words)


def lake_lowercase(lake) -> bool:
    """The ``lowercase`` build option recorded with a lake's vectors (True if unrecorded)."""
    import json

    from bitcipher.lake.tables import PROP_OPTIONS, published

    options = published(lake).properties.get(PROP_OPTIONS)
    try:
        return bool(json.loads(options).get("lowercase", True)) if options else True
    except (ValueError, AttributeError):
        return True


def run_probe_cli(args, lake_vectors, lake) -> int:
    """`bitcipher probe`: the vectors from --vectors or the lake, the table on stdout."""
    import json

    from bitcipher.evaluation.evaluate import load_word2vec

    for path in (args.train, args.test):
        if not os.path.isfile(path):
            raise InputError(f"{path}: no such CoNLL file")
    if args.vectors:
        kv = load_word2vec(args.vectors, counts="ranks")
        lowercase = words_are_lowercase(kv.words) if args.case == "auto" else None
    else:
        lowercase = lake_lowercase(lake) if args.case == "auto" else None
        kv = lake_vectors()
    if lowercase is None:
        lowercase = args.case == "lower"
    result = run_probe(kv, args.train, args.test, lowercase=lowercase, seed=args.seed,
                       l2=args.l2, max_iter=args.max_iter,
                       max_train_tokens=args.max_train_tokens or None)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(result.table())
    return 0
