"""`bitcipher refresh`: equal to a full build after adds, replacements and removals; idempotent;
one of two racing refreshes wins; history and time travel."""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import reference
from conftest import CORPUS_A, CORPUS_B, CORPUS_C
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipeline import check_against_reference, reference_opts

from bitcipher import BuildOptions, build
from bitcipher.cli import main
from bitcipher.errors import ConflictError, OptionError
from bitcipher.keys import word_keys
from bitcipher.lake.history import lake_history, latest_version
from bitcipher.lake.tables import RUN_TABLES, Lake, published, read_table
from bitcipher.incremental.run import counts_uri, refresh

OPTIONS = BuildOptions(project=None, bits=6, window=2, min_count=2)
TEXTS = {
    "a": CORPUS_A,
    "b": CORPUS_B,
    "c": CORPUS_C,
    "d": ["the cat and the dog", "one two three cat", "the mat the log the end"],
    "e": ["über die straße", "the the the cat cat", "seven eight nine ten the cat"],
}
SORT = {"unigrams": ["id"], "cooccurrences": ["center", "offset", "context"],
        "cipher": ["id"], "vectors": ["id"]}


def quiet(_):
    pass


def put(corpus: Path, name: str, lines: list[str]) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def lake_tables(spark, lake: Lake) -> dict:
    run = published(lake).run
    tables = {name: read_table(spark, lake, name, run=run).toPandas() for name in RUN_TABLES}
    tables["vectors"] = read_table(spark, lake, "vectors").toPandas()
    return tables


def table_rows(df, keys) -> list[tuple]:
    df = df.sort_values(keys)
    return [tuple(tuple(v.tolist()) if isinstance(v, np.ndarray) else v for v in row)
            for row in df.itertuples(index=False)]


def assert_same_tables(got: dict, want: dict) -> None:
    """Every table, every row, every value (vectors bit for bit)."""
    for name, keys in SORT.items():
        assert list(got[name].columns) == list(want[name].columns), name
        assert table_rows(got[name], keys) == table_rows(want[name], keys), name


def corpus_key(corpus: Path, options) -> tuple:
    """What a build's tables depend on: the shards (name and bytes) and the options."""
    return repr(options), tuple((p.name, p.read_bytes()) for p in sorted(corpus.glob("*.txt")))


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """The tables of a full build of a corpus, built once per corpus content and options in
    this module (a corpus state that two tests, or two steps of one, reach is built once).
    A one-off build (no count store): the same tables as a build that keeps one, which
    test_a_build_leaves_what_a_refresh_needs checks, in less time."""
    done: dict = {}
    scratch = tmp_path_factory.mktemp("rebuilt")

    def get(corpus: Path, options=OPTIONS) -> dict:
        key = corpus_key(corpus, options)
        if key not in done:
            rebuilt = Lake(str(scratch / f"lake-{len(done)}"))
            build(spark, str(corpus), rebuilt, options, report=quiet, count_store=False)
            assert corpus_key(corpus, options) == key  # the corpus did not change meanwhile
            done[key] = lake_tables(spark, rebuilt)
        return done[key]

    return get


def assert_equals_build(spark, lake: Lake, corpus: Path, built, options=OPTIONS):
    """The refreshed lake's tables equal those of a full build of the same corpus."""
    assert_same_tables(lake_tables(spark, lake), built(corpus, options))


def copy_tree(src: Path, dst: Path) -> Path:
    """A copy keeping every file's mtime (the shard manifest and Delta time travel use them)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def corpus_lines(corpus: Path) -> list[str]:
    lines = []
    for path in sorted(corpus.glob("*.txt")):
        lines.extend(path.read_text(encoding="utf-8").split("\n"))
    return lines


def assert_matches_reference(spark, lake: Lake, corpus: Path, options=OPTIONS) -> None:
    """Against the independent NumPy implementation of the algorithm (tests/reference.py)."""
    expected = reference.vectors(corpus_lines(corpus), **reference_opts(options))
    check_against_reference(lake_tables(spark, lake), expected, options)


def manifest_rows(spark, lake: Lake) -> list[str]:
    from pyspark.sql import functions as F

    df = spark.read.format("delta").load(counts_uri(lake))
    return sorted(r["shard"] for r in df.where(F.col("kind") == "shard").collect())


def test_refresh_equals_build_through_add_replace_remove_and_mix(spark, tmp_path, built):
    corpus, lake = tmp_path / "corpus", Lake(str(tmp_path / "lake"))
    put(corpus, "s0", TEXTS["a"])
    put(corpus, "s1", TEXTS["b"])
    put(corpus, "s2", TEXTS["d"])
    # the removal takes the added shard out again (back to the first corpus: its build is
    # reused), and the mix ends at the corpus the totals test below compares with a build
    steps = [
        ("from empty", lambda: None, (3, 0, 0)),
        ("add", lambda: put(corpus, "s3", TEXTS["c"]), (1, 0, 0)),
        ("remove", lambda: (corpus / "s3.txt").unlink(), (0, 0, 1)),
        ("replace", lambda: put(corpus, "s1", TEXTS["e"]), (0, 1, 0)),
        ("mix", lambda: ((corpus / "s0.txt").unlink(), put(corpus, "s3", TEXTS["c"]),
                         put(corpus, "s2", TEXTS["b"])), (1, 1, 1)),
    ]
    versions = []
    for label, change, (added, replaced, removed) in steps:
        change()
        result = refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
        assert (len(result.added), len(result.replaced), len(result.removed)) == \
            (added, replaced, removed), label
        assert not result.nothing_to_do
        assert_equals_build(spark, lake, corpus, built)
        assert manifest_rows(spark, lake) == sorted(f"file://{p}" for p in
                                                    map(str, corpus.glob("*.txt")))
        versions.append(result.counts_version)
    assert versions == sorted(set(versions))  # one count-store commit per refresh
    assert_matches_reference(spark, lake, corpus)


@st.composite
def change_sequences(draw):
    """Up to 3 refreshes, each after one to three changes of a small shard set."""
    names = ["x0", "x1"]
    initial = {n: draw(st.sampled_from(sorted(TEXTS))) for n in names}
    rounds = []
    state = dict(initial)
    for _ in range(draw(st.integers(1, 2))):
        ops = []
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["add", "replace", "remove"]))
            if kind == "add" or len(state) == 1:
                name = f"x{len(names)}"
                names.append(name)
                state[name] = draw(st.sampled_from(sorted(TEXTS)))
                ops.append(("add", name, state[name]))
            elif kind == "replace":
                name = draw(st.sampled_from(sorted(state)))
                text = draw(st.sampled_from(sorted(set(TEXTS) - {state[name]})))
                state[name] = text
                ops.append(("replace", name, text))
            else:
                name = draw(st.sampled_from(sorted(state)))
                del state[name]
                ops.append(("remove", name, None))
        rounds.append(ops)
    return initial, rounds


@settings(max_examples=2, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(change_sequences())
def test_refresh_sequences_match_the_numpy_reference(spark, plan):
    initial, rounds = plan
    with tempfile.TemporaryDirectory() as tmp:
        corpus, lake = Path(tmp) / "corpus", Lake(str(Path(tmp) / "lake"))
        for name, text in initial.items():
            put(corpus, name, TEXTS[text])
        refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
        assert_matches_reference(spark, lake, corpus)
        for ops in rounds:
            for kind, name, text in ops:
                if kind == "remove":
                    (corpus / f"{name}.txt").unlink()
                else:
                    # a replacement always changes the size too (mtime may be coarse)
                    put(corpus, name, TEXTS[text] + ([""] if kind == "replace" else []))
            refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
            assert_matches_reference(spark, lake, corpus)


@pytest.fixture(scope="module")
def first_refresh(spark, tmp_path_factory):
    """One refresh of a two-shard corpus for the module; each test gets a copy of it."""
    base = tmp_path_factory.mktemp("first-refresh")
    corpus, lake = base / "corpus", Lake(str(base / "lake"))
    put(corpus, "s0", TEXTS["a"])
    put(corpus, "s1", TEXTS["d"])
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
    copy_tree(corpus, base / "corpus-as-refreshed")
    return base


@pytest.fixture
def refreshed(first_refresh, tmp_path):
    """The corpus (back in its place: the count store names its shards by path, size and
    mtime, all kept) and a copy of the lake at a path of this test's own."""
    corpus = copy_tree(first_refresh / "corpus-as-refreshed", first_refresh / "corpus")
    lake = Lake(str(copy_tree(first_refresh / "lake", tmp_path / "lake")))
    return corpus, lake


def test_same_refresh_twice_changes_nothing(spark, refreshed, capsys):
    corpus, lake = refreshed
    counts_before, vectors_before = latest_version(counts_uri(lake)), latest_version(lake.vectors)
    lines = []
    result = refresh(spark, str(corpus), lake, OPTIONS, report=lines.append)
    assert result.nothing_to_do and "nothing to do" in lines[-1]
    args = ["refresh", "--corpus", str(corpus), "--lake", lake.root, "--bits", "6",
            "--window", "2", "--min-count", "2", "--project", "none"]
    assert main(args) == 5
    assert latest_version(counts_uri(lake)) == counts_before
    assert latest_version(lake.vectors) == vectors_before
    put(corpus, "s2", TEXTS["c"])
    assert main(args) == 0
    assert "refreshed" in capsys.readouterr().out
    assert latest_version(counts_uri(lake)) == counts_before + 1


def test_vector_options_change_without_recounting(spark, refreshed, built):
    corpus, lake = refreshed
    counts_before = latest_version(counts_uri(lake))
    other = BuildOptions(project=None, bits=5, window=1, min_count=1, include_self=False, mode="concat",
                         weighting="cosine")
    result = refresh(spark, str(corpus), lake, other, report=quiet)
    assert not result.nothing_to_do and not (result.added or result.replaced or result.removed)
    assert latest_version(counts_uri(lake)) == counts_before  # nothing was counted again
    assert_equals_build(spark, lake, corpus, built, other)
    with pytest.raises(OptionError, match="same lowercase"):
        refresh(spark, str(corpus), lake, BuildOptions(project=None, bits=6, window=2, lowercase=False),
                report=quiet)
    with pytest.raises(OptionError, match="window no larger"):
        refresh(spark, str(corpus), lake, BuildOptions(project=None, bits=6, window=3), report=quiet)


def test_racing_refreshes_one_wins_nothing_counted_twice(spark, refreshed):
    corpus, lake = refreshed
    put(corpus, "s2", TEXTS["b"])
    (corpus / "s0.txt").unlink()
    inner = []

    def other_refresh_commits_first():
        inner.append(refresh(spark, str(corpus), lake, OPTIONS, report=quiet))

    with pytest.raises(ConflictError, match="first"):
        refresh(spark, str(corpus), lake, OPTIONS, report=quiet,
                before_commit=other_refresh_commits_first)
    assert inner and inner[0].added == [f"file://{corpus / 's2.txt'}"]
    assert manifest_rows(spark, lake) == sorted(f"file://{corpus / n}" for n in
                                                ("s1.txt", "s2.txt"))
    assert refresh(spark, str(corpus), lake, OPTIONS, report=quiet).nothing_to_do
    assert_matches_reference(spark, lake, corpus)


def snapshot_state(lake: Lake):
    from bitcipher.incremental import totals

    snap = totals.read_pointer(lake)
    assert snap is not None
    return snap, Path(lake.root) / "totals"


def test_totals_track_the_count_store_and_are_rebuilt_when_unusable(spark, refreshed, built):
    """The merged totals: kept at the store's version by every refresh; an older snapshot is
    brought forward over several refreshes' changes; a damaged one, or one whose store
    version was vacuumed away, is summed again from every shard."""
    corpus, lake = refreshed  # s0, s1 refreshed once
    snap, root = snapshot_state(lake)
    assert snap.version == latest_version(counts_uri(lake))
    kept = Path(lake.root).parent / "kept-totals"
    shutil.copytree(root, kept)

    # two refreshes, then the snapshot of before them is put back (as if both had been
    # killed after their counts commit): the next refresh applies both changes to it
    put(corpus, "s2", TEXTS["b"])
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
    put(corpus, "s1", TEXTS["e"])
    (corpus / "s0.txt").unlink()
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
    shutil.rmtree(root)
    shutil.copytree(kept, root)
    put(corpus, "s3", TEXTS["c"])
    lines = []
    refresh(spark, str(corpus), lake, OPTIONS, report=lines.append)
    assert any(f"totals of version {snap.version} -2 +3 shards" in ln for ln in lines), lines
    assert_equals_build(spark, lake, corpus, built)
    now, _ = snapshot_state(lake)
    assert now.version == latest_version(counts_uri(lake)) and now.name != snap.name
    assert sorted(p.name for p in root.iterdir()) == sorted(["current.json", now.name])

    # an old snapshot whose store version was vacuumed away: a warning, then a full sum
    # (the first snapshot again: its shards s0 and s1 were removed and replaced since)
    assert main(["vacuum", "--lake", lake.root, "--retain-hours", "0"]) == 0
    shutil.copytree(kept / snap.name, root / snap.name)
    (root / "current.json").write_text((kept / "current.json").read_text())
    put(corpus, "s4", TEXTS["d"])
    lines = []
    refresh(spark, str(corpus), lake, OPTIONS, report=lines.append)
    assert any("cannot be used" in ln for ln in lines) and \
        any("summed from every shard" in ln for ln in lines), lines
    assert_matches_reference(spark, lake, corpus)

    # a damaged pointer: summed from every shard, silently (there is nothing to warn about)
    (root / "current.json").write_text("{not json")
    put(corpus, "s4", TEXTS["a"])
    lines = []
    refresh(spark, str(corpus), lake, OPTIONS, report=lines.append)
    assert any("summed from every shard" in ln for ln in lines), lines
    assert_matches_reference(spark, lake, corpus)


def test_word_keys_are_stable_blake2b():
    import hashlib

    expected = int.from_bytes(hashlib.blake2b("über".encode(), digest_size=8).digest(),
                              "little", signed=True)
    assert word_keys(["über", "cat"])[0] == expected
    assert word_keys(["cat"])[0] != word_keys(["Cat"])[0]


def test_history_and_time_travel(spark, refreshed, tmp_path, capsys):
    corpus, lake = refreshed
    first_words = sorted(read_table(spark, lake, "vectors").toPandas().word)
    put(corpus, "s2", TEXTS["b"])
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
    now_words = sorted(read_table(spark, lake, "vectors").toPandas().word)
    assert now_words != first_words

    entries = lake_history(lake)
    assert [(e["kind"], e["added"], e["replaced"], e["removed"], e["shards"]) for e in entries] \
        == [("refresh", 2, 0, 0, 2), ("refresh", 1, 0, 0, 3)]
    tokens = sum(len(doc) for t in "adb" for doc in reference.documents(TEXTS[t]))
    assert entries[-1]["tokens"] == tokens
    assert entries[0]["options"]["bits"] == 6
    assert main(["history", "--lake", lake.root]) == 0
    out = capsys.readouterr().out
    assert "+1 ~0 -0" in out and "bits=6" in out
    assert main(["history", "--json", "--lake", lake.root]) == 0
    assert [json.loads(x)["version"] for x in capsys.readouterr().out.splitlines()] == \
        [e["version"] for e in entries]

    first = entries[0]["version"]
    query = "SELECT word FROM vectors ORDER BY word"
    for as_of in (str(first), entries[0]["time"]):
        assert main(["sql", "--as-of", as_of, "--limit", "1000", "--lake", lake.root,
                     query]) == 0
        shown = [line.strip() for line in capsys.readouterr().out.splitlines()[2:]]
        assert shown == first_words
    assert main(["sql", "--as-of", str(first), "--lake", lake.root,
                 "SELECT count(*) AS n FROM unigrams"]) == 0
    assert capsys.readouterr().out.splitlines()[2].strip() == str(len(first_words))
    out = tmp_path / "old.txt"
    assert main(["export", "--as-of", str(first), "--format", "word2vec", str(out), "--lake",
                 lake.root]) == 0
    assert out.read_text().splitlines()[0].split()[0] == str(len(first_words))
    assert main(["neighbors", "cat", "-k", "2", "--as-of", str(first), "--lake",
                 lake.root]) == 0
    assert main(["sql", "--as-of", "1999-01-01T00:00:00Z", "--lake", lake.root, query]) == 4
    assert "no version at or before" in capsys.readouterr().err

    assert main(["vacuum", "--retain-hours", "0", "--lake", lake.root]) == 0
    assert sorted(read_table(spark, lake, "vectors").toPandas().word) == now_words


@pytest.mark.parametrize("command", ["refresh", "history", "vacuum"])
def test_help_shows_defaults_and_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "bitcipher " + command in out and "(default:" in out


def store_counts(spark, lake: Lake):
    """{shard: ({word: count}, [document as a tuple of word keys, ...])} of the count store's
    latest version: a shard's word counts (unpacked here, independently of the package's
    reader), the documents of its tokens rows."""
    from pyspark.sql import functions as F

    df = spark.read.format("delta").load(counts_uri(lake))
    out: dict = {}
    for r in df.where(F.col("kind").isin("word", "words", "tokens")).collect():
        words, docs = out.setdefault(r["shard"], ({}, []))
        if r["kind"] == "word":  # a store written before the packed rows
            words[r["word"]] = words.get(r["word"], 0) + r["count"]
            continue
        if r["kind"] == "words":  # UTF-8 bytes, int64 end offsets, int64 counts
            ends = np.frombuffer(r["offsets"], dtype="<i8")
            for lo, hi, n in zip(ends[:-1], ends[1:], np.frombuffer(r["pair_counts"], "<i8")):
                w = bytes(r["center_keys"][lo:hi]).decode("utf-8")
                words[w] = words.get(w, 0) + int(n)
            continue
        distinct = np.frombuffer(r["center_keys"], dtype="<i8")
        tokens = distinct[np.frombuffer(r["context_keys"], dtype="<i4")]
        ends = np.cumsum(np.frombuffer(r["pair_counts"], dtype="<i8"))
        docs.extend(tuple(int(k) for k in tokens[lo:hi])
                    for lo, hi in zip(np.concatenate(([0], ends[:-1])), ends))
    return out


def test_a_build_leaves_what_a_refresh_needs(spark, tmp_path, built):
    """A build counts every shard into the count store and sums the totals, as a refresh
    would: the next refresh finds nothing to do, then counts only the shards that changed
    and starts from the build's totals (tests/test_frozen.py: a frozen refresh after a
    build keeps the vectors of the words the change did not touch)."""

    corpus, lake = tmp_path / "corpus", Lake(str(tmp_path / "lake"))
    put(corpus, "s0", TEXTS["a"])
    put(corpus, "s1", TEXTS["d"])
    put(corpus, "s2", TEXTS["e"])
    build(spark, str(corpus), lake, OPTIONS, report=quiet)

    # the store: per shard, the word counts and the documents (word keys in their order,
    # from which a refresh counts the co-occurrences) that NumPy's reference finds in its
    # text
    stored = store_counts(spark, lake)
    assert sorted(stored) == sorted(f"file://{p}" for p in map(str, corpus.glob("*.txt")))
    for path in corpus.glob("*.txt"):
        docs = reference.documents(path.read_text(encoding="utf-8").split("\n"))
        vocab = sorted({w for doc in docs for w in doc})
        keys = dict(zip(vocab, word_keys(vocab).tolist()))
        want_words = {w: sum(doc.count(w) for doc in docs) for w in vocab}
        got_words, got_docs = stored[f"file://{path}"]
        assert got_words == want_words, path.name
        assert sorted(d for d in got_docs if d) == sorted(tuple(keys[w] for w in doc)
                                                          for doc in docs if doc), path.name

    # --no-count-store: the same tables, and no count store or totals
    one_off = Lake(str(tmp_path / "one-off"))
    assert main(["build", "--corpus", str(corpus), "--lake", one_off.root, "--bits", "6",
                 "--window", "2", "--min-count", "2", "--project", "none",
                 "--no-count-store"]) == 0
    assert_same_tables(lake_tables(spark, one_off), lake_tables(spark, lake))
    assert not (Path(one_off.root) / "counts").exists()
    assert not (Path(one_off.root) / "totals").exists()

    assert refresh(spark, str(corpus), lake, OPTIONS, report=quiet).nothing_to_do
    put(corpus, "s3", TEXTS["c"])
    lines = []
    result = refresh(spark, str(corpus), lake, OPTIONS, report=lines.append)
    assert result.added == [f"file://{corpus / 's3.txt'}"]
    assert any("1 shards counted" in ln for ln in lines), lines
    assert any("-0 +1 shards" in ln for ln in lines), lines  # from the build's totals
    assert_equals_build(spark, lake, corpus, built)

    # a build after the refresh replaces the whole store, and the next refresh starts from
    # its totals
    build(spark, str(corpus), lake, OPTIONS, report=quiet)
    assert sorted(store_counts(spark, lake)) == sorted([*stored, f"file://{corpus / 's3.txt'}"])
    (corpus / "s0.txt").unlink()
    lines = []
    refresh(spark, str(corpus), lake, OPTIONS, report=lines.append)
    assert any("-1 +0 shards" in ln for ln in lines), lines
    assert_matches_reference(spark, lake, corpus)


def test_a_build_commits_the_count_store_its_tasks_wrote(spark, tmp_path, monkeypatch):
    """A build's tokenize tasks write the count store's files and the driver commits them
    with Delta's own transaction, as refresh number 1 (Delta's txn action) of a table Spark
    reads; where that transaction cannot be used, Spark writes the same rows and the
    tasks' files go; a build that fails before its commit leaves neither its files nor a
    change to the store."""
    from bitcipher.incremental import run
    from bitcipher.lake import tables
    from bitcipher.lake.history import delta_commits

    corpus, lake = tmp_path / "corpus", Lake(str(tmp_path / "lake"))
    put(corpus, "s0", TEXTS["a"])
    put(corpus, "s1", TEXTS["e"])
    result = build(spark, str(corpus), lake, OPTIONS, report=quiet)
    (commit,) = delta_commits(counts_uri(lake))
    assert commit.operation == "Manual Update" and commit.txn == {run.APP_ID: 1}
    staged = Path(lake.root) / "counts" / f"build-{result.run}"
    live = tables.delta_files(counts_uri(lake), 0)
    assert sorted(f"file://{p}" for p in staged.iterdir()) == sorted(live)
    direct = store_counts(spark, lake)
    assert sorted(direct) == sorted(f"file://{p}" for p in map(str, corpus.glob("*.txt")))
    assert refresh(spark, str(corpus), lake, OPTIONS, report=quiet).nothing_to_do

    # Spark's write where the transaction cannot be used: the same rows, no staged files
    direct_transaction = tables.direct_transaction
    monkeypatch.setattr(tables, "direct_transaction", lambda spark, uri, *a: None
                        if uri == counts_uri(lake) else direct_transaction(spark, uri, *a))
    result = build(spark, str(corpus), lake, OPTIONS, report=quiet)
    assert delta_commits(counts_uri(lake))[-1].operation == "WRITE"
    assert delta_commits(counts_uri(lake))[-1].txn == {run.APP_ID: 2}
    assert not (Path(lake.root) / "counts" / f"build-{result.run}").exists()
    assert store_counts(spark, lake) == direct
    monkeypatch.setattr(tables, "direct_transaction", direct_transaction)

    # a failed commit: the build fails, its files are gone, the store is as it was
    def failing(*args, **kwargs):
        raise RuntimeError("the commit failed")

    monkeypatch.setattr(tables, "commit_direct", failing)
    put(corpus, "s2", TEXTS["d"])
    before = latest_version(counts_uri(lake))
    with pytest.raises(RuntimeError, match="the commit failed"):
        build(spark, str(corpus), lake, OPTIONS, report=quiet)
    assert latest_version(counts_uri(lake)) == before
    assert sorted(p.name for p in (Path(lake.root) / "counts").iterdir()
                  if p.name.startswith("build-")) == [staged.name]
    assert store_counts(spark, lake) == direct


def test_packed_word_counts_round_trip_and_old_rows_still_read():
    """A shard's words row packs its words and counts (from a sliced Arrow array too);
    unpack_words reads it, and the per-word rows of stores written before it, alike."""
    import pyarrow as pa

    from bitcipher.incremental.run import store_rows, unpack_words, words_row

    words = pa.array(["skip", "naïve", "l'eau", "ünï", "a", "zz"]).slice(1, 4)
    counts = np.array([3, 1, 7, 2], dtype=np.int64)
    packed = words_row("s1", words, counts)
    assert packed.column("kind").to_pylist() == ["words"]
    assert bytes(packed.column("center_keys")[0].as_py()) == "naïvel'eauünïa".encode()
    old = store_rows(2, shard="s0", kind="word", word=["naïve", "b"], count=[5, 4])
    other = store_rows(1, shard="s0", kind="stats", count=9)
    table = unpack_words(pa.Table.from_batches([old, packed, other]))
    got = sorted(zip(table.column("word").to_pylist(), table.column("count").to_pylist()))
    assert got == sorted([("naïve", 5), ("b", 4), ("naïve", 3), ("l'eau", 1), ("ünï", 7),
                          ("a", 2)])
    empty = unpack_words(pa.Table.from_batches([words_row("s2", pa.array([], pa.string()),
                                                          np.empty(0, np.int64))]))
    assert empty.num_rows == 0


def test_a_store_of_per_word_rows_is_still_read(spark, refreshed, built):
    """A count store written before the packed words rows (one row per word and shard) is
    read as it is: its totals summed again from every shard, then a new shard added, give
    the tables a build makes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from bitcipher.incremental.run import COUNTS_SCHEMA, store_rows, unpack_words

    corpus, lake = refreshed
    uri = counts_uri(lake)
    rows = spark.read.format("delta").load(uri).toArrow()
    kind = rows.column("kind")
    assert pc.any(pc.equal(kind, "words")).as_py()
    old = [rows.filter(pc.not_equal(kind, "words")).select(
        [f.name for f in rows.schema]).to_batches()]
    for shard in pc.unique(rows.filter(pc.equal(kind, "words")).column("shard")).to_pylist():
        mine = rows.filter(pc.and_(pc.equal(kind, "words"), pc.equal(rows.column("shard"), shard)))
        words = unpack_words(mine)
        old.append([store_rows(words.num_rows, shard=shard, kind="word",
                               word=words.column("word").combine_chunks(),
                               count=words.column("count").combine_chunks())])
    table = pa.Table.from_batches([b for batches in old for b in batches])
    (spark.createDataFrame(table, schema=COUNTS_SCHEMA).write.format("delta").mode("overwrite")
     .partitionBy("shard").save(uri))
    shutil.rmtree(Path(lake.root) / "totals")  # summed again from the per-word rows
    put(corpus, "s2", TEXTS["b"])
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet)
    assert_equals_build(spark, lake, corpus, built)
