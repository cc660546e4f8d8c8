"""`refresh --frozen` and `build --cipher-from`: the cipher epoch (vocabulary, codes,
projection) is kept; every table equals the NumPy reference run with the epoch's vocabulary,
and a frozen refresh equals a frozen build of the same shards bit for bit."""

import json
from pathlib import Path

import numpy as np
import pytest
import reference
from conftest import CORPUS_A, CORPUS_B, CORPUS_C
from test_pipeline import check_against_reference, reference_opts
from test_refresh import assert_same_tables, copy_tree, corpus_lines, lake_tables, put, quiet

from bitcipher import BuildOptions, build
from bitcipher.cli import main
from bitcipher.errors import LakeError, OptionError
from bitcipher.incremental.run import refresh
from bitcipher.lake.history import PROP_EPOCH, delta_commits, lake_history, latest_version
from bitcipher.lake.schemas import arrow_schema
from bitcipher.lake.tables import MANIFEST, Lake, publish_arrow, published
from bitcipher.stages.cipher import build_cipher
from bitcipher.stages.epoch import Epoch, drift, read_epoch
from bitcipher.stages.projection import PROJECTION_FILE, Projection
from bitcipher.stages.unigrams import UNK

OPTIONS = BuildOptions(project=None, bits=6, window=2, min_count=2)
PROJECTED = BuildOptions(bits=8, window=2, min_count=1, transform="ppmi", project=4)
NEW = ["zebra yurt zebra quill yurt zebra", "quill zebra yurt"]


def epoch_vocab(lines, options):
    """The reference's (word, count) vocabulary of an exact run over `lines`."""
    docs = reference.documents(lines)
    return reference.vocabulary(docs, min_count=options.min_count, max_vocab=options.max_vocab)


def reference_epoch(lines, options) -> dict:
    """What an exact run over `lines` fixes, by the reference: vocabulary and marginal."""
    exact = reference.vectors(lines, **reference_opts(options))
    return {"epoch_vocab": exact["vocab"], "epoch_marginal": exact["marginal"]}


def check_frozen_reference(spark, lake, corpus, epoch, options):
    expected = reference.vectors(corpus_lines(corpus), **reference_opts(options), **epoch)
    check_against_reference(lake_tables(spark, lake), expected, options)


@pytest.fixture(scope="module")
def epoch_lake(spark, tmp_path_factory):
    """A lake built (exactly) from shards a and b, and a copy of its corpus; each test copies
    both."""
    base = tmp_path_factory.mktemp("epoch")
    corpus, lake = base / "corpus", Lake(str(base / "lake"))
    put(corpus, "s0", CORPUS_A)
    put(corpus, "s1", CORPUS_B)
    build(spark, str(corpus), lake, OPTIONS, report=quiet)
    return base


@pytest.fixture
def lake_copy(epoch_lake, tmp_path):
    corpus = copy_tree(epoch_lake / "corpus", tmp_path / "corpus")
    lake = Lake(str(copy_tree(epoch_lake / "lake", tmp_path / "lake")))
    twin = Lake(str(copy_tree(epoch_lake / "lake", tmp_path / "twin")))
    return corpus, lake, twin


def test_frozen_refresh_keeps_the_epoch_and_matches_the_reference(spark, lake_copy):
    corpus, lake, twin = lake_copy
    first = published(lake).run
    vocab_before = epoch_vocab(corpus_lines(corpus), OPTIONS)
    epoch = reference_epoch(corpus_lines(corpus), OPTIONS)
    put(corpus, "s2", CORPUS_C)
    put(corpus, "s3", NEW)  # words new to the corpus, frequent enough for an exact run
    lines = []
    result = refresh(spark, str(corpus), lake, OPTIONS, report=lines.append, frozen=True)
    assert result.build.frozen_to == first
    # the reference, run with the epoch's vocabulary: ids, codes, counts, co-occurrences,
    # vectors
    check_frozen_reference(spark, lake, corpus, epoch, OPTIONS)
    tables = lake_tables(spark, lake)
    words = set(tables["vectors"].word)
    assert "über" not in words and "zebra" not in words  # new words stay <unk>
    assert [w for w, _ in vocab_before] == list(tables["unigrams"].sort_values("id").word)
    # the exact vocabulary would have them: the drift says so
    exact = [w for w, _ in epoch_vocab(corpus_lines(corpus), OPTIONS)]
    assert "über" in exact and "zebra" in exact
    assert result.build.drift["new_words"] == len(set(exact) - {w for w, _ in vocab_before})
    assert any(line.startswith("epoch: run " + first) for line in lines)
    # the build left its count store and totals: the refresh started from them (the corpus
    # is a copy at another path, so its two shards count as removed and added again), and
    # the vectors of the words the change does not touch were kept
    assert any("totals of version 0 -2 +4 shards" in line for line in lines), lines
    assert any("are kept from vectors version" in line for line in lines), lines
    # the same shards built with --cipher-from: the same tables, bit for bit
    build(spark, str(corpus), twin, OPTIONS, report=quiet, cipher_from=0)
    assert_same_tables(lake_tables(spark, lake), lake_tables(spark, twin))
    # history: which mode made each version, and from which epoch
    kinds = [e["kind"] for e in lake_history(lake)]
    assert kinds == ["build", "refresh (frozen)"]
    assert lake_history(lake)[-1]["epoch"]["run"] == first
    assert json.loads(published(lake).properties[PROP_EPOCH])["run"] == first
    # a second frozen refresh keeps the same epoch (read from the frozen run's own folder);
    # it makes again only the vectors of the words whose co-occurrences changed and keeps
    # the others as published
    (corpus / "s2.txt").unlink()
    lines = []
    again = refresh(spark, str(corpus), lake, OPTIONS, report=lines.append, frozen=True)
    assert again.build.frozen_to == first
    assert read_epoch(lake, published(lake).run).run == first
    assert any("are kept from vectors version" in line for line in lines)
    check_frozen_reference(spark, lake, corpus, epoch, OPTIONS)
    build(spark, str(corpus), twin, OPTIONS, report=quiet, cipher_from=0)
    assert_same_tables(lake_tables(spark, lake), lake_tables(spark, twin))


def test_removed_words_keep_their_id_with_the_empty_vector(spark, lake_copy):
    corpus, lake, twin = lake_copy
    epoch = reference_epoch(corpus_lines(corpus), OPTIONS)
    (corpus / "s1.txt").unlink()  # the number words are gone
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    tables = lake_tables(spark, lake)
    vec = tables["vectors"].set_index("word")
    assert vec.loc["three", "count"] == 0
    check_frozen_reference(spark, lake, corpus, epoch, OPTIONS)
    # the command line's --cipher-from (the options as flags)
    assert main(["build", "--cipher-from", "0", "--corpus", str(corpus), "--lake", twin.root,
                 "--bits", "6", "--window", "2", "--min-count", "2", "--project", "none"]) == 0
    assert_same_tables(tables, lake_tables(spark, twin))
    assert lake_history(twin)[-1]["kind"] == "build (frozen)"


def test_fallbacks_to_an_exact_refresh_say_why(spark, lake_copy, tmp_path):
    corpus, lake, _ = lake_copy
    put(corpus, "s3", NEW)
    # an epoch run that kept no ppmi marginal (made by an earlier version): exact
    manifest_uri = f"{lake.run_dir(published(lake).run)}/{MANIFEST}"
    manifest = json.loads(lake.read_text(manifest_uri))
    lake.write_text(manifest_uri, json.dumps({**manifest, "marginal": None}))
    lines = []
    result = refresh(spark, str(corpus), lake, OPTIONS, report=lines.append, frozen=True)
    assert result.build.frozen_to is None
    assert any("kept no ppmi marginal" in line for line in lines)
    put(corpus, "s4", CORPUS_C)
    # other options than the epoch's: exact, a new epoch
    other = BuildOptions(project=None, bits=7, window=2, min_count=2)
    lines = []
    result = refresh(spark, str(corpus), lake, other, report=lines.append, frozen=True)
    assert result.build.frozen_to is None
    assert any("differ from the epoch's" in line and "bits" in line for line in lines)
    assert lake_history(lake)[-1]["kind"] == "refresh"
    # drift past --max-drift: exact
    put(corpus, "s5", ["kiwi lemon kiwi lemon kiwi"])  # words no run has seen
    lines = []
    result = refresh(spark, str(corpus), lake, other, report=lines.append, frozen=True,
                     max_drift=0.0)
    assert result.build.frozen_to is None
    assert any("> --max-drift 0.0" in line for line in lines)
    # no epoch at all (an empty lake): exact, with a line
    empty = Lake(str(tmp_path / "empty"))
    lines = []
    result = refresh(spark, str(corpus), empty, OPTIONS, report=lines.append, frozen=True)
    assert result.build.frozen_to is None
    assert any("no epoch yet" in line for line in lines)
    # a frozen build with other options is refused
    latest = lake_history(lake)[-1]["version"]
    with pytest.raises(OptionError, match="--cipher-from"):
        build(spark, str(corpus), lake, BuildOptions(project=None, bits=5), report=quiet,
              cipher_from=latest)
    # an epoch whose run folder is gone (--keep-runs): a clear error
    with pytest.raises(LakeError, match="keep-runs"):
        build(spark, str(corpus), lake, other, report=quiet, cipher_from=0)


def totals_by_word(lake: Lake) -> dict:
    """{(centre word, context word or None for the edge, offset): count} of the totals in
    use, summed over the files of its layers here (not with the package's reader)."""
    import pyarrow.parquet as pq

    from bitcipher.incremental import totals

    snap = totals.read_pointer(lake)
    root = Path(lake.root) / "totals"
    words = pq.read_table(root / snap.name / "words.parquet")
    words = dict(zip(words.column("idx").to_pylist(), words.column("word").to_pylist()))
    out: dict = {}
    for name in [*snap.layers, snap.name]:
        for f in sorted((root / name / "pairs").glob("*.parquet")):
            t = pq.read_table(f)
            for key, n in zip(t.column("key").to_pylist(), t.column("count").to_pylist()):
                center, offset, context = key >> 35, ((key >> 27) & 255) - 128, key & (2**27 - 1)
                k = (words[center], None if context == 2**27 - 1 else words[context], offset)
                out[k] = out.get(k, 0) + n
    return {k: n for k, n in out.items() if n}


def reference_totals(corpus: Path, window: int) -> dict:
    """The same, by the NumPy reference: every word's windows over the corpus's text."""
    docs = reference.documents(corpus_lines(corpus))
    vocab = sorted({w for doc in docs for w in doc})
    ids = {w: i for i, w in enumerate(vocab)}
    n = reference.cooccurrences([[ids[w] for w in doc] for doc in docs], window=window)
    return {(vocab[t], None if c == reference.EDGE else vocab[c], d): k
            for (t, c, d), k in n.items()}


def test_frozen_refreshes_layer_the_totals_and_an_exact_one_sums_them(spark, lake_copy,
                                                                     monkeypatch):
    """A frozen refresh that keeps the untouched vectors writes its totals as a delta layer
    on the snapshot before it; the layers sum to the corpus's co-occurrences, the layers
    are kept while in use, MAX_DELTAS of them are written whole again, and an exact refresh
    over layered totals equals a full build."""
    from bitcipher.incremental import totals

    from bitcipher.incremental import run

    corpus, lake, twin = lake_copy
    root = Path(lake.root) / "totals"
    built = totals.read_pointer(lake)
    assert built.layers == []
    monkeypatch.setattr(totals, "MAX_DELTAS", 2)
    # the kept vectors: read by pyarrow, or through Spark when the files are not one row
    # per id (forced for one refresh below); the tables are the same either way
    read_kept, through_spark = [], []
    published_vectors = run._published_vectors
    monkeypatch.setattr(run, "_published_vectors", lambda *a: read_kept.append(
        None if through_spark else published_vectors(*a)) or read_kept[-1])
    put(corpus, "s2", CORPUS_C)
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    first = totals.read_pointer(lake)
    assert first.layers == [built.name]
    assert totals_by_word(lake) == reference_totals(corpus, OPTIONS.window)
    (corpus / "s1.txt").unlink()  # a removal: negative counts in the delta
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    second = totals.read_pointer(lake)
    assert second.layers == [built.name, first.name]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["current.json", built.name, first.name, second.name])
    assert totals_by_word(lake) == reference_totals(corpus, OPTIONS.window)
    check_frozen_reference(spark, lake, corpus, reference_epoch(
        [*CORPUS_A, *CORPUS_B], OPTIONS), OPTIONS)
    assert len(read_kept) == 2 and all(t is not None for t in read_kept)
    # published by pyarrow and Delta's own transaction (the other way: Spark's CREATE OR
    # REPLACE)
    assert delta_commits(lake.vectors)[-1].operation == "Manual Update"
    # read by delta-rs (--engine fast) as by Spark
    from bitcipher.query.fast_read import read_vectors

    fast = read_vectors(lake).to_pandas()
    slow = lake_tables(spark, lake)["vectors"].sort_values("id").reset_index(drop=True)
    assert list(fast.word) == list(slow.word) and list(fast["count"]) == list(slow["count"])
    assert np.array_equal(np.stack(fast.vector.to_numpy()), np.stack(slow.vector.to_numpy()))
    # past MAX_DELTAS: whole again, and the layers it no longer needs are removed
    put(corpus, "s3", NEW)
    through_spark.append(True)
    from bitcipher import finish

    with monkeypatch.context() as m:  # and written by Spark, not collected to the driver
        m.setattr(finish, "DRIVER_VECTOR_FLOATS", 0)
        refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    through_spark.clear()
    assert len(read_kept) == 3 and read_kept[-1] is None
    assert delta_commits(lake.vectors)[-1].operation == "CREATE OR REPLACE TABLE AS SELECT"
    whole = totals.read_pointer(lake)
    assert whole.layers == []
    assert sorted(p.name for p in root.iterdir()) == sorted(["current.json", whole.name])
    assert totals_by_word(lake) == reference_totals(corpus, OPTIONS.window)
    build(spark, str(corpus), twin, OPTIONS, report=quiet, cipher_from=0)
    assert_same_tables(lake_tables(spark, lake), lake_tables(spark, twin))
    # a delta layer again, then an exact refresh sums the layers (and writes them whole)
    (corpus / "s3.txt").unlink()
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    assert totals.read_pointer(lake).layers == [whole.name]
    put(corpus, "s4", CORPUS_B)
    lines = []
    refresh(spark, str(corpus), lake, OPTIONS, report=lines.append)
    assert any("-0 +1 shards" in line for line in lines), lines
    assert totals.read_pointer(lake).layers == []
    assert totals_by_word(lake) == reference_totals(corpus, OPTIONS.window)
    check_against_reference(lake_tables(spark, lake), reference.vectors(
        corpus_lines(corpus), **reference_opts(OPTIONS)), OPTIONS)
    # a layer that is gone: the snapshot cannot be used, the totals are summed again
    (corpus / "s4.txt").unlink()
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    layered = totals.read_pointer(lake)
    import shutil

    shutil.rmtree(root / layered.layers[0])
    assert totals.read_pointer(lake) is None
    put(corpus, "s5", CORPUS_C)
    lines = []
    refresh(spark, str(corpus), lake, OPTIONS, report=lines.append, frozen=True)
    assert any("summed from every shard" in line for line in lines), lines
    assert totals_by_word(lake) == reference_totals(corpus, OPTIONS.window)
    # rows deleted with deletion vectors stay in the data files: such a table is not read
    # by pyarrow
    n = len(lake_tables(spark, lake)["vectors"])
    dim = len(lake_tables(spark, lake)["vectors"].vector.iloc[0])
    assert published_vectors(lake, latest_version(lake.vectors), [], dim, n) is not None
    spark.sql(f"ALTER TABLE delta.`{lake.vectors}` SET TBLPROPERTIES "
              f"('delta.enableDeletionVectors' = 'true')")
    spark.sql(f"DELETE FROM delta.`{lake.vectors}` WHERE id = 1")
    assert published_vectors(lake, latest_version(lake.vectors), [], dim, n) is None
    # nor written by pyarrow: Spark writes it (reader protocol 3 now)
    rows = spark.read.format("delta").load(lake.vectors).toArrow().sort_by("id")
    props = published(lake).properties
    assert publish_arrow(spark, lake, rows.cast(arrow_schema("vectors")), props) == "sql"
    assert delta_commits(lake.vectors)[-1].operation == "CREATE OR REPLACE TABLE AS SELECT"


def test_a_frozen_publish_that_meets_another_commit_fails_cleanly(spark, lake_copy,
                                                                 monkeypatch):
    """Another commit to the vectors table between the start of a frozen refresh's Delta
    transaction and its commit: the refresh stops with ConflictError (exit 6), the files it
    wrote are removed, the other commit is what the lake serves, and the refresh run again
    completes."""
    from bitcipher.errors import ConflictError
    from bitcipher.lake import tables

    corpus, lake, twin = lake_copy
    put(corpus, "s2", CORPUS_C)
    before = sorted(p.name for p in Path(lake.root, "vectors").glob("*.parquet"))
    add_action = tables._add_action

    def another_commit_first(*args):
        monkeypatch.setattr(tables, "_add_action", add_action)
        rows = spark.read.format("delta").load(lake.vectors)
        tables.publish_vectors(spark, lake, rows, {**published(lake).properties,
                                                    "bitcipher.other": "yes"})
        return add_action(*args)

    monkeypatch.setattr(tables, "_add_action", another_commit_first)
    with pytest.raises(ConflictError):
        refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    assert published(lake).properties.get("bitcipher.other") == "yes"
    live = set(tables.delta_files(lake.vectors, latest_version(lake.vectors)))
    names = sorted(p.name for p in Path(lake.root, "vectors").glob("*.parquet"))
    assert sorted(set(names) - set(before)) == sorted(f.rsplit("/", 1)[-1] for f in live)
    # files the newest version holds are never removed (a failure after the commit)
    tables.remove_uncommitted(lake.vectors, sorted(live))
    assert all(Path(f.replace("file://", "")).exists() for f in live)
    # (its totals are ahead of the published vectors now, so it makes every vector again)
    refresh(spark, str(corpus), lake, OPTIONS, report=quiet, frozen=True)
    build(spark, str(corpus), twin, OPTIONS, report=quiet, cipher_from=0)
    assert_same_tables(lake_tables(spark, lake), lake_tables(spark, twin))


def test_a_build_creates_the_vectors_table_with_delta_s_transaction(spark, tmp_path,
                                                                     monkeypatch):
    """A build into a new lake creates the vectors table by pyarrow and Delta's own
    transaction: version 0 is that commit, of Delta protocol (1, 2) and the nullable schema
    Spark's CREATE TABLE AS SELECT records, and Spark and delta-rs read the reference's
    vectors from it. A table created by another writer between the transaction's start and
    its commit is a conflict: the files written are removed and the other table stays."""
    from bitcipher.incremental.run import is_conflict
    from bitcipher.lake import tables
    from bitcipher.query.fast_read import read_vectors

    corpus, lake = tmp_path / "corpus", Lake(str(tmp_path / "lake"))
    put(corpus, "s0", CORPUS_A)
    put(corpus, "s1", CORPUS_B)
    build(spark, str(corpus), lake, OPTIONS, report=quiet)
    (first,) = delta_commits(lake.vectors)
    assert (first.version, first.operation) == (0, "Manual Update")
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{lake.vectors}`").first()
    assert (detail["minReaderVersion"], detail["minWriterVersion"]) == (1, 2)
    assert detail["partitionColumns"] == []
    schema = spark.read.format("delta").load(lake.vectors).schema
    assert [(f.name, f.dataType.simpleString(), f.nullable) for f in schema.fields] == [
        ("word", "string", True), ("id", "int", True), ("count", "bigint", True),
        ("vector", "array<float>", True)]
    assert schema["vector"].dataType.containsNull
    check_against_reference(lake_tables(spark, lake), reference.vectors(
        corpus_lines(corpus), **reference_opts(OPTIONS)), OPTIONS)
    fast = read_vectors(lake).to_pandas()
    slow = lake_tables(spark, lake)["vectors"].sort_values("id").reset_index(drop=True)
    assert list(fast.word) == list(slow.word)
    assert np.array_equal(np.stack(fast.vector.to_numpy()), np.stack(slow.vector.to_numpy()))

    rows = spark.read.format("delta").load(lake.vectors).toArrow().sort_by("id")
    rows = rows.cast(arrow_schema("vectors"))
    props = published(lake).properties
    other = Lake(str(tmp_path / "other"))
    add_action = tables._add_action

    def created_meanwhile(*args):
        monkeypatch.setattr(tables, "_add_action", add_action)
        tables.publish_vectors(spark, other, spark.createDataFrame(rows),
                               {**props, "bitcipher.other": "yes"})
        return add_action(*args)

    monkeypatch.setattr(tables, "_add_action", created_meanwhile)
    with pytest.raises(Exception) as caught:
        publish_arrow(spark, other, rows, props)
    assert is_conflict(caught.value), caught.value
    (made,) = delta_commits(other.vectors)
    assert made.operation == "CREATE OR REPLACE TABLE AS SELECT"
    live = {f.rsplit("/", 1)[-1] for f in tables.delta_files(other.vectors, 0)}
    assert {p.name for p in Path(other.root, "vectors").glob("*.parquet")} == live
    assert tables._delta_properties(other).get("bitcipher.other") == "yes"


def test_delta_files_are_the_files_spark_reads_at_each_version(spark, tmp_path):
    """The data files of a Delta table at a version, from its log (checkpoints, multi-part
    ones, appends, overwrites, partition folders whose names need escaping) as Spark's own
    reader lists them."""
    from bitcipher.lake.tables import delta_files

    uri = f"file://{tmp_path}/t"
    spark.sql(f"CREATE TABLE delta.`{uri}` (id INT, part STRING) USING DELTA "
              f"PARTITIONED BY (part) TBLPROPERTIES ('delta.checkpointInterval' = '3')")
    for i in range(8):
        df = spark.range(i * 10, i * 10 + 5 + i).selectExpr(
            "CAST(id AS INT) AS id", f"IF(id % 2 = 0, 'a b/{i % 3}', 'c%d') AS part")
        df.write.format("delta").mode("overwrite" if i % 3 == 2 else "append").save(uri)
    spark.conf.set("spark.databricks.delta.checkpoint.partSize", "2")
    try:  # a multi-part checkpoint at version 9
        df.write.format("delta").mode("append").save(uri)
    finally:
        spark.conf.unset("spark.databricks.delta.checkpoint.partSize")
    log = sorted(p.name for p in (tmp_path / "t" / "_delta_log").iterdir())
    assert any(".checkpoint.0000000001." in n for n in log), log
    for version in range(10):
        want = (spark.read.format("delta").option("versionAsOf", version).load(uri)
                .inputFiles())
        got = delta_files(uri, version)
        norm = [f.replace("file:///", "/").replace("file:/", "/") for f in want]
        assert sorted(f.replace("file://", "") for f in got) == sorted(norm), version


def test_max_drift_needs_frozen_before_spark(capsys, tmp_path):
    put(tmp_path / "c", "s0", CORPUS_A)
    code = main(["refresh", "--corpus", str(tmp_path / "c"), "--lake", str(tmp_path / "l"),
                 "--max-drift", "0.1"])
    assert code == 2
    assert "--frozen" in capsys.readouterr().err


def test_frozen_refresh_applies_the_epochs_projection(spark, tmp_path):
    corpus, lake = tmp_path / "corpus", Lake(str(tmp_path / "lake"))
    twin = Lake(str(tmp_path / "twin"))
    put(corpus, "s0", CORPUS_A)
    put(corpus, "s1", CORPUS_B)
    build(spark, str(corpus), lake, PROJECTED, report=quiet)
    copy_tree(tmp_path / "lake", tmp_path / "twin")
    first = published(lake).run
    basis = Projection.load(lake.table(first, PROJECTION_FILE))
    epoch = reference_epoch(corpus_lines(corpus), PROJECTED)
    put(corpus, "s2", NEW + CORPUS_A)
    refresh(spark, str(corpus), lake, PROJECTED, report=quiet, frozen=True)
    run = published(lake).run
    kept = Projection.load(lake.table(run, PROJECTION_FILE))
    assert np.array_equal(kept.basis, basis.basis) and np.array_equal(kept.mean, basis.mean)
    # the reference's wide vectors, projected with the epoch's basis by NumPy
    expected = reference.vectors(corpus_lines(corpus), **reference_opts(PROJECTED), **epoch)
    tables = lake_tables(spark, lake)
    vec = tables["vectors"].sort_values("id")
    got = np.stack(vec.vector.to_numpy()).astype(np.float64)
    want = (expected["vectors"][list(vec.id)] - basis.mean) @ basis.basis
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    build(spark, str(corpus), twin, PROJECTED, report=quiet, cipher_from=0)
    assert_same_tables(tables, lake_tables(spark, twin))
    # again, with one shard taken out: the vectors of the words it touched are made again,
    # the others kept as projected; the same tables as a frozen build all the same
    (corpus / "s1.txt").unlink()
    lines = []
    refresh(spark, str(corpus), lake, PROJECTED, report=lines.append, frozen=True)
    assert any("are kept from vectors version" in line for line in lines)
    expected = reference.vectors(corpus_lines(corpus), **reference_opts(PROJECTED), **epoch)
    vec = lake_tables(spark, lake)["vectors"].sort_values("id")
    got = np.stack(vec.vector.to_numpy()).astype(np.float64)
    want = (expected["vectors"][list(vec.id)] - basis.mean) @ basis.basis
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    build(spark, str(corpus), twin, PROJECTED, report=quiet, cipher_from=0)
    assert_same_tables(lake_tables(spark, lake), lake_tables(spark, twin))


def make_epoch(vocab: list[tuple[str, int]], bits: int) -> Epoch:
    counts = np.array([c for _, c in vocab], dtype=np.int64)
    return Epoch(run="r0", folder_run="r0", words=[w for w, _ in vocab],
                 cipher=build_cipher(counts, bits, "nf"), projection=None,
                 options={"smoothing": "nf"})


def test_drift_worked_example():
    """docs/ALGORITHM.md, "Frozen refresh": drift by hand."""
    # epoch (3 bits): the(9) rank 0 code 100, cat(5) rank 1 010, <unk>(3) rank 2 001,
    # mat(2) rank 3 110
    epoch = make_epoch([("the", 9), ("cat", 5), (UNK, 3), ("mat", 2)], bits=3)
    assert [list(p[p >= 0]) for p in epoch.cipher.positions] == [[0], [1], [2], [0, 1]]
    # now (total 25): the 9, dog 6 (new), cat 5, mat 2, emu 1, owl 1, yak 1
    words = ["the", "dog", "cat", "mat", "emu", "owl", "yak"]
    counts = np.array([9, 6, 5, 2, 1, 1, 1])
    d = drift(epoch, words, counts, 25, min_count=2, max_vocab=None)
    # exact now: the(9) 0 [0], dog(6) 1 [1], cat(5) 2 [2], <unk>(3) 3 [0,1], mat(2) 4 [0,2]
    # epoch words the, cat, mat: the keeps [0]; cat [1] -> [2] changes, same tier; mat
    # [0,1] -> [0,2] changes, same tier
    assert d["code_words"] == pytest.approx(2 / 3)
    assert d["code_tokens"] == pytest.approx((5 + 2) / (9 + 5 + 2))
    assert d["tier_tokens"] == 0.0
    assert d["new_words"] == 1
    assert d["unk_tokens"] == pytest.approx(6 / 25)
    assert d["drift"] == pytest.approx(6 / 25)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "ALGORITHM.md").read_text()
    for text in ("code_words = 2/3, code_tokens = 7/16", "tier_tokens = 0",
                 "unk_tokens = 6/25 = 0.24", "drift = 0.24"):
        assert text in doc
    # the exact codes the example states (100, 010, 001, 110, 101 by rank)
    exact = build_cipher(np.array([9, 6, 5, 3, 2]), 3, "nf").positions
    assert [list(p[p >= 0]) for p in exact] == [[0], [1], [2], [0, 1], [0, 2]]


def test_drift_equals_a_word_by_word_count():
    """The vectorised drift against the definition, word by word, on random epochs."""
    from bitcipher.stages.unigrams import rank_vocabulary

    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(200)]
    for _ in range(20):
        before = rng.integers(0, 30, len(words))
        vocab = rank_vocabulary([(w, int(c)) for w, c in zip(words, before) if c >= 3],
                                int(before.sum()) + 5, None)
        epoch = Epoch(run="r", folder_run="r", words=vocab.words,
                      cipher=build_cipher(vocab.counts, 12, "nf"), projection=None,
                      options={"smoothing": "nf"})
        after = np.maximum(before + rng.integers(-5, 6, len(words)), 0)
        total = int(after.sum()) + 7
        d = drift(epoch, words, after, total, min_count=3, max_vocab=None)
        exact = rank_vocabulary([(w, int(c)) for w, c in zip(words, after) if c >= 3], total,
                                None)
        codes = build_cipher(exact.counts, 12, "nf").positions
        rank = {w: i for i, w in enumerate(exact.words)}
        now = dict(zip(words, after.tolist()))
        n = tokens = changed = changed_tokens = tier = 0
        for i, w in enumerate(epoch.words):
            if w == UNK:
                continue
            n += 1
            tokens += now.get(w, 0)
            old = [int(p) for p in epoch.cipher.positions[i] if p >= 0]
            new = [int(p) for p in codes[rank[w]] if p >= 0] if w in rank else None
            if new != old:
                changed += 1
                changed_tokens += now.get(w, 0)
            if new is None or len(new) != len(old):
                tier += now.get(w, 0)
        assert d["code_words"] == pytest.approx(changed / n)
        assert d["code_tokens"] == pytest.approx(changed_tokens / tokens)
        assert d["tier_tokens"] == pytest.approx(tier / tokens)
        new_words = [w for w in exact.words if w != UNK and w not in set(epoch.words)]
        assert d["new_words"] == len(new_words)
        assert d["unk_tokens"] == pytest.approx(sum(now[w] for w in new_words) / total)
