"""docs/ALGORITHM.md's worked example of the pmi and ppmi transforms is right.

The test reads the example from the page (its two documents, its options, its tables of
blocks, shares, ppmi and pmi vectors) and checks every number against

(a) a NumPy computation written here from the page's own definitions (sections 1-3 and
    "The pmi and ppmi transforms"), from the documents up;
(b) the package's `post()` on the page's blocks and marginal, and the package's cipher and
    block aggregation (`build_cipher`, `raw_blocks`, `context_marginal`) on the same counts;
(c) the NumPy reference implementation (`tests/reference.py`) run on the documents.

No Spark: the Spark build is checked against (c) elsewhere.
"""

from __future__ import annotations

import math
import re
import shlex
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import reference
from bitcipher.cli import build_options_from_args, parser
from bitcipher.stages.cipher import build_cipher
from bitcipher.stages.vectors import context_marginal, post, raw_blocks

PAGE = Path(__file__).resolve().parent.parent / "docs" / "ALGORITHM.md"
ROUNDING = 0.5e-4 + 1e-9  # the page writes 4 decimals
COLUMNS = ["EDGE", "bit 0", "bit 1", "bit 2"]


def example_text() -> str:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("### Worked example")
    end = text.index("\n## ", start)
    return text[start:end]


def tables(text: str) -> dict[str, dict[str, list[float]]]:
    """Every table of the example by the title of its first column: row label -> the first
    number of each further cell."""
    out: dict[str, dict[str, list[float]]] = {}
    current = None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if re.fullmatch(r"[\s:-]*", "".join(cells)):
            continue
        if current is None:
            current = out.setdefault(cells[0], {})
            assert cells[1:5] == COLUMNS, cells
            continue
        label = cells[0].replace("`", "").replace("\\|", "|")
        current[label] = [float(re.match(r"-?\d+(?:\.\d+)?", c).group(0)) for c in cells[1:]]
    return out


@pytest.fixture(scope="module")
def page():
    text = example_text()
    documents = re.search(r"```text\n(.*?)```", text, flags=re.S).group(1).splitlines()
    flags = re.search(r"built with `([^`]+)`", text.replace("\n", " ")).group(1)
    transforms = re.findall(r"`--transform (\w+)`", text)
    args = parser().parse_args(["build", "--corpus", "x", *shlex.split(flags)])
    return {"documents": documents, "options": build_options_from_args(args),
            "transforms": transforms, "tables": tables(text)}


def test_page_has_the_example(page):
    assert page["documents"] == ["a b a a", "a b c"]
    assert sorted(page["transforms"]) == ["pmi", "ppmi"]
    assert set(page["tables"]) == {"block", "share", "ppmi", "pmi"}
    options = page["options"]
    assert (options.bits, options.window, options.mode) == (3, 1, "sum")


# --------------------------------------------------------------------------- (a)


def first_principles(documents, options):
    """Sections 1-3 of the page for this example, written out: words, ids, blocks, marginal,
    shares, and the ppmi / pmi vectors."""
    docs = [line.split() for line in documents]  # lowercase one-letter words: no tokenizer work
    counts = Counter(t for doc in docs for t in doc)
    kept = {w: c for w, c in counts.items() if c >= options.min_count}
    unk = sum(c for w, c in counts.items() if w not in kept)
    ranked = sorted([*kept.items(), ("<unk>", unk)], key=lambda wc: (-wc[1], wc[0]))
    words = [w for w, _ in ranked]
    f = np.array([c for _, c in ranked], dtype=float)
    b = options.bits
    assert len(words) <= b  # every code one-hot: rank r -> bit r
    c = np.eye(b)[: len(words)]
    n_f = Counter(f.tolist())
    beta = np.array([1 / n_f[x] for x in f.tolist()])  # nf
    q = (f[:, None] * c).sum(0) / f.sum()
    u = (1 - q) / (b - 1)
    rep = beta[:, None] * c + (1 - beta[:, None]) * u
    x = {w: np.concatenate([[0.0], rep[i]]) for i, w in enumerate(words)}
    x["EDGE"] = np.eye(b + 1)[0]
    F = {w: np.zeros(b + 1) for w in words}
    m = options.window
    for doc in docs:
        ids = [w if w in kept else "<unk>" for w in doc]
        for i, t in enumerate(ids):
            for d in range(-m, m + 1):
                if d == 0 and not options.include_self:
                    continue
                context = ids[i + d] if 0 <= i + d < len(ids) else "EDGE"
                weight = 1.0 if d == 0 else 1.0 / abs(d)  # harmonic
                F[t] += weight * x[context]
    marginal = sum(F.values())
    p_offset = marginal / marginal.sum()
    eps = options.epsilon
    ppmi, pmi, shares = {}, {}, {}
    for w, block in F.items():
        shares[w] = block / block.sum()
        ppmi[w] = np.array([max(math.log(p / p0), 0.0) if p > 0 and p0 > 0 else 0.0
                            for p, p0 in zip(shares[w], p_offset)])
        filled = np.where(block == 0, eps, block)
        p_eps = filled / filled.sum()
        pmi[w] = np.log(p_eps) - np.log(np.where(p_offset > 0, p_offset, eps))
    return {"words": words, "F": F, "marginal": marginal, "p_offset": p_offset,
            "shares": shares, "ppmi": ppmi, "pmi": pmi}


def close(written, computed) -> bool:
    return np.allclose(np.asarray(written, float), np.asarray(computed, float), rtol=0,
                       atol=ROUNDING)


def test_numbers_follow_from_the_definitions(page):
    a = first_principles(page["documents"], page["options"])
    t = page["tables"]
    for w in a["words"]:
        row = t["block"][f"F({w})"]
        assert row[:4] == a["F"][w].tolist() and row[4] == a["F"][w].sum()
        assert close(t["share"][f"P(j | {w})"], a["shares"][w])
        assert close(t["ppmi"][w], a["ppmi"][w]), (w, a["ppmi"][w])
        assert close(t["pmi"][w], a["pmi"][w]), (w, a["pmi"][w])
    assert t["block"]["F_Σ"][:4] == a["marginal"].tolist()
    assert t["block"]["F_Σ"][4] == a["marginal"].sum()
    share_row = next(v for k, v in t["share"].items() if k.startswith("P(j | offset)"))
    assert close(share_row, a["p_offset"])


# --------------------------------------------------------------------------- (b)


def page_blocks(page):
    rows = page["tables"]["block"]
    words = [k[2:-1] for k in rows if k.startswith("F(")]
    blocks = np.array([rows[f"F({w})"][:4] for w in words])
    return words, blocks, np.array(rows["F_Σ"][:4])


@pytest.mark.parametrize("transform", ["ppmi", "pmi"])
def test_package_post_gives_the_page_vectors(page, transform):
    words, blocks, marginal = page_blocks(page)
    assert np.array_equal(blocks.sum(axis=0), marginal)
    vectors = post(blocks[:, None, :], transform, page["options"].epsilon, marginal[None, :])
    for i, w in enumerate(words):
        assert close(page["tables"][transform][w], vectors[i, 0]), (w, vectors[i, 0])


def test_package_blocks_and_marginal_are_the_page_ones(page):
    options = page["options"]
    ref = reference.vectors(page["documents"], bits=options.bits, window=options.window,
                            mode=options.mode, weighting=options.weighting,
                            smoothing=options.smoothing, transform="none",
                            epsilon=options.epsilon, min_count=options.min_count,
                            include_self=options.include_self)
    counts = np.array([c for _, c in ref["vocab"]], dtype=np.int64)
    x = build_cipher(counts, options.bits, options.smoothing).context_matrix()
    rows = sorted(ref["cooc"].items())
    center = np.array([t for (t, _, _), _ in rows])
    context = np.array([c for (_, c, _), _ in rows])  # EDGE is -1, as in the table
    offset = np.array([d for (_, _, d), _ in rows])
    count = np.array([n for _, n in rows])
    counts_ext = np.append(counts, 0)
    total = int(counts.sum())
    ids, f = raw_blocks(center, context, offset, count, x, counts_ext, total, options)
    words, blocks, marginal = page_blocks(page)
    assert [w for w, _ in ref["vocab"]] == words
    assert np.array_equal(f[:, 0, :], blocks)
    totals = Counter()
    for (_, c, d), n in rows:
        totals[(c, d)] += n
    keys = sorted(totals)
    m = context_marginal(np.array([c for c, _ in keys]), np.array([d for _, d in keys]),
                         np.array([totals[k] for k in keys]), x, counts_ext, total, options)
    assert np.array_equal(m[0], marginal)


# --------------------------------------------------------------------------- (c)


@pytest.mark.parametrize("transform", ["ppmi", "pmi"])
def test_reference_implementation_gives_the_page_vectors(page, transform):
    options = page["options"]
    ref = reference.vectors(page["documents"], bits=options.bits, window=options.window,
                            mode=options.mode, weighting=options.weighting,
                            smoothing=options.smoothing, transform=transform,
                            epsilon=options.epsilon, min_count=options.min_count,
                            include_self=options.include_self)
    for i, (w, _) in enumerate(ref["vocab"]):
        assert close(page["tables"][transform][w], ref["vectors"][i]), (w, ref["vectors"][i])
