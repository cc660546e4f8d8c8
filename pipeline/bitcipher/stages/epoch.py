"""Cipher epochs: what a frozen refresh keeps fixed (docs/ALGORITHM.md, "Frozen refresh").

An epoch is fixed by an exact run (a build, or an exact refresh): its vocabulary and ids, the
code of every word, the ``<unk>`` set, its pmi/ppmi marginal and its projection basis when
it has them. A frozen run (``refresh --frozen``, ``build --cipher-from VERSION``) counts the
current shards but codes them with the epoch: a word outside the epoch's vocabulary is
``<unk>``, a word of the epoch keeps its id and code whatever its count now, pmi/ppmi
compare with the epoch's marginal and the projection is applied, not fitted again.
Everything else computed from the counts (the unigram counts, the co-occurrences, the
vectors) is current.

Every frozen run writes the epoch's cipher table, marginal and projection into its own run
folder and names the exact run that fixed them (``manifest["epoch"]``), so the epoch of the
published version can always be read from that version's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np

from bitcipher.errors import LakeError
from bitcipher.lake.tables import MANIFEST, Lake
from bitcipher.stages.cipher import Cipher, build_cipher, cipher_from_table
from bitcipher.stages.projection import PROJECTION_FILE, Projection
from bitcipher.stages.unigrams import UNK, Vocabulary, rank_vocabulary


MARGINAL_FILE = "marginal.npz"  # the pmi/ppmi marginal of a run, beside its tables


@dataclass(frozen=True)
class Epoch:
    run: str  # the exact run that fixed the epoch
    folder_run: str  # the run whose folder it was read from (the epoch run or a frozen one)
    words: list[str]  # id order
    cipher: Cipher  # its counts are the ones the ranks came from
    projection: Optional[Projection]
    options: dict  # the recorded options of the epoch run
    marginal: Optional[np.ndarray] = None  # the pmi/ppmi marginal of the epoch run

    @property
    def unk_id(self) -> int:
        return self.words.index(UNK)


def _read_table(uri: str):
    import pyarrow.parquet as pq
    from fsspec.core import url_to_fs

    from bitcipher.lake.storage import fsspec_uri

    fs, path = url_to_fs(fsspec_uri(uri))
    files = sorted(n for n in fs.find(path) if n.endswith(".parquet"))
    if not files:
        raise LakeError(f"{uri} holds no Parquet files")
    import pyarrow as pa

    tables = []
    for name in files:
        with fs.open(name, "rb") as fh:
            tables.append(pq.read_table(fh))
    return pa.concat_tables(tables)


def read_epoch(lake: Lake, run: str) -> Epoch:
    """The epoch a run was made with, read from its folder: its own (an exact run) or the one
    it was frozen to (a frozen run). LakeError when the folder or a table is missing."""
    manifest_uri = f"{lake.run_dir(run)}/{MANIFEST}"
    if not lake.exists(manifest_uri):
        raise LakeError(f"run {run} has no folder in {lake.root} (removed by --keep-runs?)")
    manifest = json.loads(lake.read_text(manifest_uri))
    table = _read_table(lake.table(run, "cipher")).sort_by("id")
    ids = table.column("id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise LakeError(f"the cipher table of run {run} is not one row per id 0..{len(ids) - 1}")
    counts = table.column("count").to_numpy().astype(np.int64)
    cipher = cipher_from_table(int(table.column("bits")[0].as_py()), counts,
                               table.column("code").to_pylist(),
                               table.column("beta").to_numpy())
    projection = None
    if manifest.get("projection"):
        projection = Projection.load(lake.table(run, manifest["projection"].get(
            "file", PROJECTION_FILE)))
    marginal = None
    if manifest.get("marginal"):
        from bitcipher.lake.tables import read_npz

        marginal = read_npz(lake.table(run, manifest["marginal"]))["marginal"]
    origin = (manifest.get("epoch") or {}).get("run", run)
    return Epoch(run=origin, folder_run=run, words=table.column("word").to_pylist(),
                 cipher=cipher, projection=projection,
                 options=manifest.get("options", {}), marginal=marginal)


def frozen_vocabulary(epoch: Epoch, words: list[str], counts: np.ndarray, total: int
                      ) -> Vocabulary:
    """The epoch's words in the epoch's id order, with their current counts (0 for a word no
    longer in the corpus); ``<unk>`` holds every other token. `words`/`counts`: the current
    count of every word type (any order, no ``<unk>``)."""
    current = dict(zip(words, np.asarray(counts, dtype=np.int64).tolist()))
    out = np.array([0 if w == UNK else current.get(w, 0) for w in epoch.words], dtype=np.int64)
    unk = epoch.unk_id
    out[unk] = int(total) - int(out.sum())
    if out[unk] < 0:
        raise LakeError("the counts exceed the corpus's tokens: the count store is damaged")
    return Vocabulary(words=list(epoch.words), counts=out, total=int(total))


def drift(epoch: Epoch, words: list[str], counts: np.ndarray, total: int, min_count: int,
          max_vocab: Optional[int]) -> dict:
    """How far the current counts have moved from the epoch.

    The exact vocabulary and cipher of the current counts are made as an exact run would
    make them, and compared with the epoch's:

    - ``code_words``: share of the epoch's words (``<unk>`` aside) whose code an exact run
      would change (a new rank, or no longer in the vocabulary);
    - ``code_tokens``: the same, weighted by the words' current counts (share of the tokens
      of the epoch's words);
    - ``unk_tokens``: share of all tokens that the epoch counts as ``<unk>`` but an exact run
      would give a vector of their own (words new to the vocabulary);
    - ``new_words``: how many such words;
    - ``tier_tokens``: share of the tokens of the epoch's words whose code would change
      tier: the number of its ones (one-hot for the b most frequent words, two-hot for the
      next ones, ...), or no code at all (the word left the vocabulary);
    - ``drift``: max(tier_tokens, unk_tokens), the number ``--max-drift`` compares.

    ``code_words`` is near 1 after almost any change: codes follow ranks, and a few new
    shards move most ranks in the long tail. Within a tier one code serves a word as well as
    another (all have the same number of ones), so ``drift`` counts what an exact run would
    change in kind: which words hold the one-hot codes, and which words have a vector.
    """
    counts = np.asarray(counts, dtype=np.int64)
    kept = [(w, int(c)) for w, c in zip(words, counts.tolist()) if c >= min_count]
    exact = rank_vocabulary(kept, int(total), max_vocab)
    bits = epoch.cipher.bits
    exact_positions = build_cipher(exact.counts, bits,
                                   epoch.options.get("smoothing", "nf")).positions
    # vectorised over the vocabulary: the exact rank of each epoch word (-1: gone)
    rank_now = {w: i for i, w in enumerate(exact.words)}
    current = dict(zip(words, counts.tolist()))
    keep = np.array([w != UNK for w in epoch.words], dtype=bool)
    now = np.array([current.get(w, 0) for w in epoch.words], dtype=np.int64)[keep]
    j = np.array([rank_now.get(w, -1) for w in epoch.words], dtype=np.int64)[keep]
    old = epoch.cipher.positions[keep]
    width = max(old.shape[1], exact_positions.shape[1])
    old = np.pad(old, ((0, 0), (0, width - old.shape[1])), constant_values=-1)
    new = np.pad(exact_positions, ((0, 0), (0, width - exact_positions.shape[1])),
                 constant_values=-1)[np.maximum(j, 0)]
    present = j >= 0
    same = present & (old == new).all(axis=1)  # positions ascending, -1 padded: one layout
    same_tier = present & ((old >= 0).sum(axis=1) == (new >= 0).sum(axis=1))
    n_words = int(keep.sum())
    epoch_tokens = int(now.sum())
    changed_words = int((~same).sum())
    changed_tokens = int(now[~same].sum())
    tier_tokens = int(now[~same_tier].sum())
    in_epoch = set(epoch.words)
    new_words = [w for w in exact.words if w != UNK and w not in in_epoch]
    unk_tokens = sum(current.get(w, 0) for w in new_words)
    out = {
        "code_words": changed_words / max(n_words, 1),
        "code_tokens": changed_tokens / max(epoch_tokens, 1),
        "unk_tokens": unk_tokens / max(int(total), 1),
        "new_words": len(new_words),
        "tier_tokens": tier_tokens / max(epoch_tokens, 1),
    }
    out["drift"] = max(out["tier_tokens"], out["unk_tokens"])
    return out


def drift_line(d: dict) -> str:
    return (f"drift {d['drift']:.4f}: {d['tier_tokens']:.2%} of the epoch's tokens would "
            f"change code tier, {d['new_words']:,} new words ({d['unk_tokens']:.2%} of the "
            f"tokens) are <unk>; codes of {d['code_words']:.2%} of the epoch's words "
            f"({d['code_tokens']:.2%} of their tokens) would change")


def epoch_at(lake: Lake, version) -> Epoch:
    """The epoch of the run that version `version` (or a timestamp) of the vectors table
    published (``build --cipher-from VERSION``)."""
    from bitcipher.lake.history import properties_at, resolve_version
    from bitcipher.lake.tables import PROP_RUN

    v = resolve_version(lake, version)
    run = properties_at(lake, v).get(PROP_RUN)
    if not run:
        raise LakeError(f"version {v} of {lake.vectors} names no run")
    try:
        return read_epoch(lake, run)
    except LakeError as exc:
        raise LakeError(f"version {v} of {lake.vectors} (run {run}): {exc}; a build or refresh "
                        f"with --keep-runs N keeps the folders of the N runs before it") from None


def published_epoch(lake: Lake) -> Optional[Epoch]:
    """The epoch of the version the lake serves; None when it serves none, or its run's
    folder cannot give one."""
    from bitcipher.lake.tables import published

    try:
        return read_epoch(lake, published(lake).run)
    except LakeError:
        return None


def differing_options(epoch: Epoch, options) -> list[str]:
    """The options (BuildOptions) that differ from the ones the epoch was made with: a frozen
    run must use the epoch's options, which define its codes and its projection."""
    return sorted(k for k, v in options.recorded().items() if epoch.options.get(k) != v)


def epoch_problem(epoch: Epoch, options) -> Optional[str]:
    """Why `epoch` cannot serve a frozen run with `options` (None: it can)."""
    from bitcipher.stages.vectors import needs_marginal

    differ = differing_options(epoch, options)
    if differ:
        return (f"these options differ from the epoch's (run {epoch.run}): "
                f"{', '.join(differ)}")
    if needs_marginal(options) and epoch.marginal is None:
        return (f"the epoch's run {epoch.folder_run} kept no {options.transform} marginal "
                f"(made by an earlier version)")
    if options.project and epoch.projection is None:
        return f"the epoch's run {epoch.folder_run} kept no projection"
    return None
