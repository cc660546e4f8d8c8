"""notebooks/explore_vectors.ipynb runs headless from top to bottom (nbconvert's
ExecutePreprocessor), shows its plots inline and saves them as non-trivial PNGs; the
unigram counts it reports match an independent count of the corpus it built from."""

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the notebook extra: "
                               "pip install -e '.[notebook]'")
pytest.importorskip("nbconvert", reason="needs the notebook extra")
pytest.importorskip("matplotlib", reason="needs the notebook extra")
pytest.importorskip("ipykernel", reason="needs the notebook extra")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "explore_vectors.ipynb"
FIGURES = ("projection.png", "rank_frequency.png", "bits_window.png")
TOKEN_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # ALGORITHM.md's tokenizer


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from nbconvert.preprocessors import ExecutePreprocessor

    tmp = tmp_path_factory.mktemp("notebook")
    figures, work = tmp / "figures", tmp / "work"
    env = {"NOTEBOOK_FIGURES": str(figures), "NOTEBOOK_WORK": str(work),
           "NOTEBOOK_MAX_DOCS": os.environ.get("NOTEBOOK_MAX_DOCS", "4000"),
           "NOTEBOOK_CORPUS": ""}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        ExecutePreprocessor(timeout=900, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(NOTEBOOK.parent)}})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, figures, work


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


def test_runs_and_shows_plots_inline(executed):
    nb, _, _ = executed
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    inline = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(inline) >= len(FIGURES)


def test_figures_are_nontrivial_pngs(executed):
    import matplotlib.image as mpimg
    import numpy as np

    _, figures, _ = executed
    for name in FIGURES:
        path = figures / name
        assert path.exists(), name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000, (name, path.stat().st_size)
        image = mpimg.imread(path)
        height, width = image.shape[:2]
        assert width >= 400 and height >= 250, (name, image.shape)
        gray = image[..., :3].mean(axis=2)
        ink = (gray < 0.5).mean()  # share of dark pixels: axes, labels, points
        assert 0.005 < ink < 0.5, (name, ink)
        assert len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 20  # not flat


def test_reported_counts_match_the_corpus(executed):
    _, figures, work = executed
    summary = json.loads((figures / "summary.json").read_text())
    counts = Counter()
    shards = sorted((work / "corpus").glob("kjv-*.txt"))
    assert shards
    for shard in shards:
        for line in shard.read_text(encoding="utf-8").splitlines():
            counts.update(TOKEN_RE.findall(line.lower()))
    assert summary["tokens"] == sum(counts.values())
    top = summary["top_unigrams"]
    assert [r["count"] for r in top] == [c for _, c in counts.most_common(len(top))]
    assert all(counts[r["word"]] == r["count"] for r in top)
    assert -1.6 < summary["zipf_slope"] < -0.7  # Zipf's law on English text (about -1)
    for word, neighbours in summary["neighbours"].items():
        assert len(neighbours) == 8 and word not in [n for n, _ in neighbours]
