"""Word-vector evaluation: word similarity (Spearman ρ) and word analogy (3CosAdd accuracy).

Works on any :class:`bitcipher.query.keyed_vectors.KeyedVectors`: the vectors a build publishes, or
vectors read from a word2vec text file with :func:`load_word2vec`.

The evaluation data sets are never copied into this repository; they are located at run
time inside installed packages:

* ``gensim`` (``gensim/test/test_data/``): WordSim-353 (``wordsim353.tsv``, 353 pairs),
  SimLex-999 (``simlex999.txt``, 999 pairs) and Mikolov's Google analogies
  (``questions-words.txt``, 19,544 questions in 14 sections).
* ``hyperhyper`` (optional, ``hyperhyper/evaluation_datasets/en/``): MEN, the Stanford Rare
  Words, MTurk-287 and the WS-353 similarity/relatedness split (``ws/*.tsv``), and the MSR
  syntactic analogies (``analogy/msr.tsv``).

Similarity lookups are case-insensitive: data set words are lowercased and matched against
the lowercased vocabulary, the most frequent case variant (lowest row) winning.

Examples
--------
>>> from bitcipher.evaluation.evaluate import evaluate_all, format_report, load_word2vec
>>> kv = load_word2vec("vectors.txt")                      # doctest: +SKIP
>>> print(format_report(evaluate_all(kv)))                 # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from bitcipher.errors import InputError, OptionError
from bitcipher.query.keyed_vectors import KeyedVectors

PathLike = Union[str, "os.PathLike[str]"]
Pair = tuple[str, str, float]
Question = tuple[str, str, str, str, str]  # (section, a, b, c, d): a is to b as c is to d

GENSIM_PIN = "gensim==4.4.0"
HYPERHYPER_PIN = "hyperhyper==0.3.0"

#: Similarity sets shipped by gensim: name -> file in ``gensim/test/test_data``.
GENSIM_SIMILARITY = {"ws353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
#: The analogy set shipped by gensim.
GENSIM_ANALOGY = "questions-words.txt"
#: Similarity sets shipped by hyperhyper: name -> file in ``evaluation_datasets/en/ws``.
#: hyperhyper's own ``ws353.tsv`` (a de-duplicated 348-pair copy of gensim's WS-353) is left
#: out so that WS-353 is reported once.
HYPERHYPER_SIMILARITY = {
    "men": "bruni_men.tsv",
    "rw": "luong_rare.tsv",
    "mturk287": "radinsky_mturk.tsv",
    "ws353_sim": "ws353_similarity.tsv",
    "ws353_rel": "ws353_relatedness.tsv",
}
#: Analogy sets shipped by hyperhyper: name -> file in ``evaluation_datasets/en/analogy``.
#: Its ``google.tsv`` (a de-duplicated copy of gensim's questions-words) is left out.
HYPERHYPER_ANALOGY = {"msr": "msr.tsv"}

_SIMILARITY_HEADER = ("word1", "word2", "score")
_ANALOGY_HEADER = ("a", "a_prime", "b", "b_prime")


# --------------------------------------------------------------------------- data sets


def _package_dir(package: str) -> Optional[Path]:
    """The directory of an installed package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _data_file(package: str, pin: str, relative: str) -> Path:
    root = _package_dir(package)
    if root is None:
        raise FileNotFoundError(
            f"the {package!r} package is not installed, and it holds the evaluation data set "
            f"{relative!r}: install it with `pip install {pin}`")
    path = root / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed {package!r} package (another version?): "
            f"install the version this module expects with `pip install {pin}`")
    return path


def gensim_data_dir() -> Path:
    """The folder ``gensim/test/test_data`` of the installed gensim.

    Raises
    ------
    FileNotFoundError
        gensim is not installed (the message says ``pip install gensim==4.4.0``).
    """
    return _data_file("gensim", GENSIM_PIN, "test/test_data/" + GENSIM_ANALOGY).parent


def hyperhyper_data_dir() -> Path:
    """The folder ``hyperhyper/evaluation_datasets/en`` of the installed hyperhyper.

    Raises
    ------
    FileNotFoundError
        hyperhyper is not installed (the message says ``pip install hyperhyper==0.3.0``).
    """
    return _data_file("hyperhyper", HYPERHYPER_PIN,
                      "evaluation_datasets/en/ws/" + HYPERHYPER_SIMILARITY["men"]).parent.parent


def _use_hyperhyper(hyperhyper: Optional[bool]) -> bool:
    if hyperhyper is None:
        return _package_dir("hyperhyper") is not None
    return bool(hyperhyper)


def similarity_datasets(hyperhyper: Optional[bool] = None) -> dict[str, Path]:
    """The word-similarity data sets found in installed packages.

    Parameters
    ----------
    hyperhyper : bool or None
        ``None`` (default): add hyperhyper's sets when hyperhyper is installed. ``True``:
        require them. ``False``: gensim's sets only.

    Returns
    -------
    dict of str to pathlib.Path
        ``ws353`` and ``simlex999`` (gensim), then ``men``, ``rw``, ``mturk287``,
        ``ws353_sim`` and ``ws353_rel`` (hyperhyper), in that order.

    Raises
    ------
    FileNotFoundError
        gensim is missing, or hyperhyper is missing while ``hyperhyper=True``; the message
        names the ``pip install`` that fixes it.
    """
    found = {name: _data_file("gensim", GENSIM_PIN, "test/test_data/" + file)
             for name, file in GENSIM_SIMILARITY.items()}
    if _use_hyperhyper(hyperhyper):
        for name, file in HYPERHYPER_SIMILARITY.items():
            found[name] = _data_file("hyperhyper", HYPERHYPER_PIN,
                                     "evaluation_datasets/en/ws/" + file)
    return found


def analogy_dataset() -> Path:
    """Mikolov et al.'s Google analogy questions (``questions-words.txt``) from gensim.

    Raises
    ------
    FileNotFoundError
        gensim is not installed (the message says ``pip install gensim==4.4.0``).
    """
    return _data_file("gensim", GENSIM_PIN, "test/test_data/" + GENSIM_ANALOGY)


def analogy_datasets(hyperhyper: Optional[bool] = None) -> dict[str, Path]:
    """The analogy data sets found in installed packages: ``google`` (gensim), ``msr``.

    Parameters
    ----------
    hyperhyper : bool or None
        As in :func:`similarity_datasets`: ``None`` adds MSR (from hyperhyper) when
        hyperhyper is installed, ``True`` requires it, ``False`` leaves it out.

    Raises
    ------
    FileNotFoundError
        As in :func:`similarity_datasets`.
    """
    found = {"google": analogy_dataset()}
    if _use_hyperhyper(hyperhyper):
        for name, file in HYPERHYPER_ANALOGY.items():
            found[name] = _data_file("hyperhyper", HYPERHYPER_PIN,
                                     "evaluation_datasets/en/analogy/" + file)
    return found


# --------------------------------------------------------------------------- parsers


def _data_lines(path: PathLike, header: tuple[str, ...]):
    """(line number, fields) of each data row of an evaluation file.

    Skips blank lines and ``#`` comment lines (gensim's ``# Word 1 ...`` lines and
    hyperhyper's ``# key: value`` preamble) and, once, a header row equal to `header`
    (hyperhyper's TSV header). A line holding a tab is split on tabs (so a field may hold a
    space), any other line on runs of whitespace.
    """
    seen_data = False
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if "\t" in stripped:
                fields = [f.strip() for f in stripped.split("\t")]
            else:
                fields = stripped.split()
            if not seen_data and tuple(f.lower() for f in fields) == header:
                seen_data = True
                continue
            seen_data = True
            yield lineno, line, fields


def read_similarity(path: PathLike) -> list[Pair]:
    """Read a word-similarity file: rows ``word1 word2 score``.

    Reads gensim's files (``#`` comment lines, tab-separated) and hyperhyper's strict TSV
    (``# key: value`` preamble, then a ``word1 word2 score`` header row) alike; a file with
    no tab is split on whitespace.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    list of (str, str, float)
        The pairs in file order, words as written (lookups lowercase them).

    Raises
    ------
    bitcipher.errors.InputError
        A row without exactly three fields or with a score that is not a finite number
        (a ValueError; the message gives the file and line).
    """
    pairs = []
    for lineno, line, fields in _data_lines(path, _SIMILARITY_HEADER):
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise InputError(f"{path}:{lineno}: expected 'word1<TAB>word2<TAB>score', got "
                             f"{len(fields)} field(s): {line.rstrip()!r}")
        try:
            score = float(fields[2])
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise InputError(f"{path}:{lineno}: the score {fields[2]!r} is not a finite "
                             f"number: {line.rstrip()!r}")
        pairs.append((fields[0], fields[1], score))
    return pairs


def read_analogy(path: PathLike) -> list[Question]:
    """Read an analogy file: questions ``a b c d`` (a is to b as c is to d).

    Reads the word2vec/gensim format (``: section`` lines open a section, rows of four
    whitespace-separated words) and hyperhyper's TSV (``# key: value`` preamble, header
    ``a a_prime b b_prime``; one section named after the file).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    list of (section, a, b, c, d)
        The questions in file order, words as written.

    Raises
    ------
    bitcipher.errors.InputError
        A row without exactly four words (a ValueError; the message gives the file and
        line).
    """
    section = Path(path).stem
    questions = []
    for lineno, line, fields in _data_lines(path, _ANALOGY_HEADER):
        if fields[0].startswith(":"):
            section = " ".join(fields)[1:].strip() or section
            continue
        if len(fields) != 4 or not all(fields):
            raise InputError(f"{path}:{lineno}: expected four words 'a b c d' (a is to b as c "
                             f"is to d), got {len(fields)} field(s): {line.rstrip()!r}")
        questions.append((section, *fields))
    return questions


# --------------------------------------------------------------------------- statistics


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation ρ, tied values given their average rank.

    ρ is Pearson's correlation of the two rank vectors; without ties it equals
    ``1 - 6 Σd² / (n (n² - 1))``. Computed by ``scipy.stats.spearmanr``; this wrapper adds
    the input checks and returns NaN (without scipy's warning) where ρ is undefined.

    Parameters
    ----------
    x, y : sequence of float
        Paired observations, of equal length.

    Returns
    -------
    float
        ρ in [-1, 1]; NaN when there are fewer than two pairs or either side is constant.

    Raises
    ------
    ValueError
        The sequences differ in length, are not one-dimensional, or hold NaN or infinity.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"spearman needs two 1-D sequences of equal length, got shapes "
                         f"{a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("spearman needs finite values: drop the NaN/infinite pairs first")
    if len(a) < 2 or a.min() == a.max() or b.min() == b.max():
        return math.nan  # fewer than two pairs, or a constant side: no ranking
    from scipy.stats import spearmanr

    return float(np.clip(spearmanr(a, b).statistic, -1.0, 1.0))


# --------------------------------------------------------------------------- evaluation


def _lower_index(words: Sequence[str]) -> dict[str, int]:
    """lowercased word -> its first row (the most frequent case variant)."""
    index: dict[str, int] = {}
    for i, word in enumerate(words):
        index.setdefault(word.lower(), i)
    return index


def _unit_rows(matrix: np.ndarray, dtype=np.float64) -> np.ndarray:
    rows = np.asarray(matrix, dtype=dtype)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def evaluate_similarity(kv: KeyedVectors, pairs: Union[PathLike, Iterable[Pair]],
                        restrict: Optional[int] = None) -> dict:
    """Spearman ρ between human scores and cosine similarities, over covered pairs.

    Parameters
    ----------
    kv : KeyedVectors
        The vectors.
    pairs : path or iterable of (str, str, float)
        A similarity file (read with :func:`read_similarity`) or the pairs themselves.
    restrict : int, optional
        Look words up among the `restrict` first (most frequent) rows only; all by default.

    Returns
    -------
    dict
        ``rho`` (Spearman ρ over the covered pairs; NaN below two), ``pairs`` (all pairs),
        ``covered`` (pairs whose two words are in the vocabulary, compared lowercased) and
        ``coverage`` (covered / pairs).
    """
    if isinstance(pairs, (str, os.PathLike)):
        pairs = read_similarity(pairs)
    pairs = list(pairs)
    if restrict is not None and restrict < 1:
        raise OptionError(f"restrict must be a positive number of words, got {restrict}")
    words = kv.words if restrict is None else kv.words[:restrict]
    index = _lower_index(words)
    rows_a, rows_b, gold = [], [], []
    for a, b, score in pairs:
        ia, ib = index.get(a.lower()), index.get(b.lower())
        if ia is not None and ib is not None:
            rows_a.append(ia)
            rows_b.append(ib)
            gold.append(float(score))
    covered = len(gold)
    if covered:
        used = np.unique(rows_a + rows_b)
        unit = _unit_rows(kv.matrix[used])
        where = {row: k for k, row in enumerate(used)}
        ua = unit[[where[r] for r in rows_a]]
        ub = unit[[where[r] for r in rows_b]]
        cosines = np.einsum("ij,ij->i", ua, ub)
        rho = spearman(cosines, gold)
    else:
        rho = math.nan
    return {"rho": rho, "pairs": len(pairs), "covered": covered,
            "coverage": covered / len(pairs) if pairs else math.nan}


def evaluate_analogy(kv: KeyedVectors, path: PathLike, restrict: int = 30000,
                     batch_size: int = 256) -> dict:
    """3CosAdd analogy accuracy over the `restrict` most frequent words.

    For a question "a is to b as c is to d" the answer is the word w of the restricted
    vocabulary, other than a, b and c, that maximises ``cos(w, b) - cos(w, a) + cos(w, c)``
    on unit-normalised vectors (the same argmax as gensim's ``most_similar`` with
    ``positive=[b, c], negative=[a]``). Rows are taken to be in frequency order (row index =
    rank), as in a build's vectors. Lookups are lowercased; of the case variants of a word
    among the restricted rows, only the most frequent is a candidate answer.

    Parameters
    ----------
    kv : KeyedVectors
        The vectors.
    path : str or os.PathLike
        An analogy file, read with :func:`read_analogy`.
    restrict : int
        How many of the first rows are the vocabulary (30,000 by default, as usual for the
        Google set).
    batch_size : int
        Questions scored per matrix product (memory ~ batch_size × restrict × 4 bytes).

    Returns
    -------
    dict
        ``accuracy`` (correct / covered; NaN if nothing is covered), ``questions``,
        ``covered`` (questions whose four words are in the restricted vocabulary),
        ``coverage`` (covered / questions), ``correct`` and ``per_section`` (section ->
        the same keys, in file order).

    Raises
    ------
    bitcipher.errors.OptionError
        `restrict` or `batch_size` is below 1.
    bitcipher.errors.InputError
        The file is malformed (see :func:`read_analogy`).
    """
    if restrict < 1:
        raise OptionError(f"restrict must be a positive number of words, got {restrict}")
    if batch_size < 1:
        raise OptionError(f"batch_size must be positive, got {batch_size}")
    questions = read_analogy(path)

    index = _lower_index(kv.words[:restrict])  # lowercased word -> row
    candidate_rows = np.fromiter(sorted(index.values()), dtype=np.int64, count=len(index))
    position = {row: k for k, row in enumerate(candidate_rows.tolist())}
    unit = _unit_rows(kv.matrix[candidate_rows], dtype=np.float32)  # (R, dim)

    section_of = []
    covered_ids = []
    for section, *words in questions:
        rows = [index.get(w.lower()) for w in words]
        if all(r is not None for r in rows):
            covered_ids.append([position[r] for r in rows])
        else:
            covered_ids.append(None)
        section_of.append(section)

    ids = np.array([q for q in covered_ids if q is not None], dtype=np.int64).reshape(-1, 4)
    correct = np.zeros(len(ids), dtype=bool)
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size]
        a, b, c, d = batch.T
        query = unit[b] - unit[a] + unit[c]  # (B, dim)
        scores = query @ unit.T  # (B, R)
        rows = np.arange(len(batch))[:, None]
        scores[rows, batch[:, :3]] = -np.inf
        correct[start:start + batch_size] = scores.argmax(axis=1) == d

    totals = {s: [0, 0, 0] for s in dict.fromkeys(section_of)}  # questions, covered, correct
    k = 0
    for section, q in zip(section_of, covered_ids):
        totals[section][0] += 1
        if q is not None:
            totals[section][1] += 1
            totals[section][2] += int(correct[k])
            k += 1

    def summary(n: int, covered: int, right: int) -> dict:
        return {"accuracy": right / covered if covered else math.nan, "questions": n,
                "covered": covered, "coverage": covered / n if n else math.nan,
                "correct": right}

    result = summary(len(questions), len(ids), int(correct.sum()))
    result["per_section"] = {s: summary(*t) for s, t in totals.items()}
    return result


def evaluate_all(kv: KeyedVectors, restrict: int = 30000,
                 hyperhyper: Optional[bool] = None) -> dict:
    """Every available similarity set and analogy set on `kv`.

    Parameters
    ----------
    kv : KeyedVectors
        The vectors.
    restrict : int
        The analogy vocabulary (see :func:`evaluate_analogy`); similarity uses all words.
    hyperhyper : bool or None
        Whether to add hyperhyper's sets (see :func:`similarity_datasets`).

    Returns
    -------
    dict
        ``{"similarity": {name: evaluate_similarity(...)}, "analogy": {name:
        evaluate_analogy(...)}}``, each result with its ``path`` added.

    Raises
    ------
    FileNotFoundError
        gensim is not installed (or hyperhyper, with ``hyperhyper=True``).
    """
    results: dict = {"similarity": {}, "analogy": {}}
    for name, path in similarity_datasets(hyperhyper).items():
        results["similarity"][name] = {**evaluate_similarity(kv, path), "path": str(path)}
    for name, path in analogy_datasets(hyperhyper).items():
        results["analogy"][name] = {**evaluate_analogy(kv, path, restrict=restrict),
                                    "path": str(path)}
    return results


def format_report(results: dict, sections: bool = False) -> str:
    """A plain-text table of :func:`evaluate_all`'s results.

    Parameters
    ----------
    results : dict
        What :func:`evaluate_all` returns.
    sections : bool
        Also list each analogy section on its own row.

    Returns
    -------
    str
        One row per data set: name, task, metric, score, covered/total, coverage.
    """
    def fmt(value: float, spec: str) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
            else format(value, spec)

    rows = [("dataset", "task", "metric", "score", "covered", "coverage")]
    for name, r in results.get("similarity", {}).items():
        rows.append((name, "similarity", "spearman", fmt(r["rho"], ".4f"),
                     f"{r['covered']}/{r['pairs']}", fmt(r["coverage"], ".1%")))
    for name, r in results.get("analogy", {}).items():
        rows.append((name, "analogy", "3cosadd", fmt(r["accuracy"], ".4f"),
                     f"{r['covered']}/{r['questions']}", fmt(r["coverage"], ".1%")))
        if sections:
            for section, s in r.get("per_section", {}).items():
                rows.append(("  " + section, "", "", fmt(s["accuracy"], ".4f"),
                             f"{s['covered']}/{s['questions']}", fmt(s["coverage"], ".1%")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {3, 4, 5}
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- word2vec text


def load_word2vec(path: PathLike, counts: str = "zeros", encoding: str = "utf-8"
                  ) -> KeyedVectors:
    """Read vectors in the word2vec text format.

    The first line is ``n dim``; each of the `n` lines after it is a word and `dim`
    numbers, separated by whitespace (a trailing space is allowed, as gensim writes it).
    Rows are assumed to be in frequency order, as :meth:`KeyedVectors.save_word2vec` and
    gensim write them.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    counts : {"zeros", "ranks"}
        What goes in ``KeyedVectors.counts`` (the format has no counts): zeros, or
        descending ranks ``n, n-1, ..., 1`` so that row order reads as frequency order.
    encoding : str
        The text encoding.

    Returns
    -------
    KeyedVectors
        Words in file order, float32 matrix ``(n, dim)``.

    Raises
    ------
    bitcipher.errors.InputError
        A malformed header, a line without exactly `dim` numbers, a number that does not
        parse or is not finite, a repeated word, or more or fewer than `n` vector lines
        (a ValueError; the message gives the file and line).
    bitcipher.errors.OptionError
        `counts` is neither "zeros" nor "ranks".
    """
    if counts not in ("zeros", "ranks"):
        raise OptionError(f"counts must be 'zeros' or 'ranks', got {counts!r}")
    with open(path, encoding=encoding) as fh:
        header = fh.readline()
        try:
            n, dim = (int(v) for v in header.split())
            if n < 0 or dim < 1:
                raise ValueError
        except ValueError:
            raise InputError(f"{path}:1: the word2vec text format starts with 'count "
                             f"dimensions' (two positive integers), got "
                             f"{header.rstrip()!r}") from None
        words: list[str] = []
        seen: dict[str, int] = {}
        matrix = np.empty((n, dim), dtype=np.float32)
        for lineno, line in enumerate(fh, 2):
            fields = line.split()
            if not fields:
                continue
            if len(words) == n:
                raise InputError(f"{path}:{lineno}: more vector lines than the {n} the header "
                                 f"announces; fix the header or drop the extra lines")
            if len(fields) != dim + 1:
                raise InputError(f"{path}:{lineno}: expected a word and {dim} numbers, got "
                                 f"{len(fields) - 1} number(s) after {fields[0]!r} (a word "
                                 f"with a space in it cannot be stored in this format)")
            word = fields[0]
            if word in seen:
                raise InputError(f"{path}:{lineno}: the word {word!r} repeats line "
                                 f"{seen[word]}; each word may have one vector")
            try:
                row = np.array(fields[1:], dtype=np.float32)
            except ValueError:
                raise InputError(f"{path}:{lineno}: a value of {word!r} is not a number: "
                                 f"{line.rstrip()[:200]!r}") from None
            if not np.isfinite(row).all():
                raise InputError(f"{path}:{lineno}: the vector of {word!r} holds NaN or "
                                 f"infinity (or a value too large for float32)")
            matrix[len(words)] = row
            seen[word] = lineno
            words.append(word)
    if len(words) != n:
        raise InputError(f"{path}: the header announces {n} vectors but the file holds "
                         f"{len(words)}; the file is truncated or the header is wrong")
    count_values = (np.zeros(n, dtype=np.int64) if counts == "zeros"
                    else np.arange(n, 0, -1, dtype=np.int64))
    return KeyedVectors(words, count_values, matrix)
