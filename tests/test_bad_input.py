"""Bad input: each a clear error (or warning), and never a half-written table that looks done."""

import bz2
import gzip
import json
import shutil

import pytest
from conftest import CORPUS_A, write_shards

from bitcipher import BuildOptions, InputError, LakeError, OptionError, build
from bitcipher.lake.tables import Lake, published, read_table

OPTIONS = BuildOptions(bits=6, window=2, min_count=1)


def run_build(spark, corpus, lake, options=OPTIONS):
    messages = []
    result = build(spark, corpus, Lake(str(lake)), options, report=messages.append)
    return result, messages


@pytest.fixture(scope="module")
def built_once(spark, tmp_path_factory):
    """One good build for the module; each test that needs it gets a copy."""
    base = tmp_path_factory.mktemp("good")
    corpus = write_shards(base / "corpus", CORPUS_A)
    run_build(spark, str(corpus), base / "lake")
    return base / "lake"


@pytest.fixture
def good_lake(built_once, tmp_path):
    """A lake holding one good build (a copy of the module's, every file's mtime kept), to
    check that failed builds leave it alone."""
    lake = tmp_path / "lake"
    shutil.copytree(built_once, lake, copy_function=shutil.copy2)
    return lake, published(Lake(str(lake))).run


def assert_untouched(spark, lake, run):
    assert published(Lake(str(lake))).run == run
    assert read_table(spark, Lake(str(lake)), "vectors").count() > 0
    runs = [p.name for p in (lake / "runs").iterdir()]
    assert runs == [run], f"a failed build left run folders behind: {runs}"


def test_empty_shard_is_a_warning(spark, tmp_path):
    corpus = write_shards(tmp_path / "c", CORPUS_A)
    (corpus / "empty.txt").write_text("")
    result, messages = run_build(spark, str(corpus), tmp_path / "lake")
    assert any("empty.txt is empty" in m for m in messages)
    assert result.vocab_size > 1


def test_invalid_utf8_is_replaced_and_counted(spark, tmp_path):
    corpus = write_shards(tmp_path / "c", CORPUS_A)
    (corpus / "latin1.txt").write_bytes("café au lait\nna\xefve ok\nplain line\n".encode("latin-1"))
    result, messages = run_build(spark, str(corpus), tmp_path / "lake")
    warning = [m for m in messages if "latin1.txt" in m]
    assert warning and "2 line(s) were not valid UTF-8" in warning[0]
    words = set(read_table(spark, Lake(str(tmp_path / "lake")), "vectors").toPandas().word)
    assert "plain" in words and "lait" in words


def test_compressed_shards_are_read(spark, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    with gzip.open(corpus / "a.txt.gz", "wt") as fh:
        fh.write("alpha beta gamma\n")
    with bz2.open(corpus / "b.txt.bz2", "wt") as fh:
        fh.write("delta alpha beta\n")
    result, _ = run_build(spark, str(corpus), tmp_path / "lake")
    assert result.tokens == 6


def test_binary_file_is_refused(spark, tmp_path, good_lake):
    lake, run = good_lake
    corpus = write_shards(tmp_path / "c", CORPUS_A)
    (corpus / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(InputError, match="image.txt looks binary"):
        run_build(spark, str(corpus), lake)
    assert_untouched(spark, lake, run)


def test_corrupt_gzip_is_refused(spark, tmp_path):
    corpus = write_shards(tmp_path / "c", CORPUS_A)
    (corpus / "bad.txt.gz").write_bytes(b"this is not gzip data at all")
    with pytest.raises(InputError, match="bad.txt.gz cannot be read"):
        run_build(spark, str(corpus), tmp_path / "lake")


def test_missing_path(spark, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        run_build(spark, str(tmp_path / "nowhere"), tmp_path / "lake")


def test_empty_corpus(spark, tmp_path, good_lake):
    lake, run = good_lake
    corpus = tmp_path / "c"
    corpus.mkdir()
    with pytest.raises(InputError, match="holds no files"):
        run_build(spark, str(corpus), lake)
    (corpus / "a.txt").write_text("")
    with pytest.raises(InputError, match="only empty shards"):
        run_build(spark, str(corpus), lake)
    (corpus / "b.txt").write_text("... --- !!!\n\n")
    with pytest.raises(InputError, match="no tokens"):
        run_build(spark, str(corpus), lake)
    assert_untouched(spark, lake, run)


def test_jsonl_shards(spark, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    rows = [{"id": i, "body": line} for i, line in enumerate(CORPUS_A)]
    (corpus / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result, _ = run_build(spark, str(corpus), tmp_path / "lake",
                          BuildOptions(bits=6, window=2, min_count=1, text_field="body"))
    text = write_shards(tmp_path / "t", CORPUS_A)
    expected, _ = run_build(spark, str(text), tmp_path / "lake2")
    assert result.tokens == expected.tokens and result.vocab_size == expected.vocab_size


def test_jsonl_line_that_is_not_json(spark, tmp_path, good_lake):
    lake, run = good_lake
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "fine line"}\n{"text": broken\n')
    with pytest.raises(InputError, match=r"a.jsonl: not JSON: \{\"text\": broken"):
        run_build(spark, str(corpus), lake)
    assert_untouched(spark, lake, run)


def test_jsonl_without_the_text_field(spark, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"body": "fine line"}\n')
    with pytest.raises(InputError, match="no string field 'text'"):
        run_build(spark, str(corpus), tmp_path / "lake")


def test_parquet_shards(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = tmp_path / "c"
    corpus.mkdir()
    pq.write_table(pa.table({"text": CORPUS_A}), corpus / "a.parquet")
    result, _ = run_build(spark, str(corpus), tmp_path / "lake")
    text = write_shards(tmp_path / "t", CORPUS_A)
    expected, _ = run_build(spark, str(text), tmp_path / "lake2")
    assert result.tokens == expected.tokens
    with pytest.raises(InputError, match="no column 'body'"):
        run_build(spark, str(corpus), tmp_path / "lake3",
                  BuildOptions(bits=6, window=2, min_count=1, text_field="body"))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"bits": 1}, "bits must be between 2 and 16384"),
        ({"bits": "many"}, "bits must be an integer"),
        ({"window": 0}, "window must be between 1 and 50"),
        ({"mode": "avg"}, "mode must be one of sum, concat"),
        ({"weighting": "gauss"}, "weighting must be one of"),
        ({"epsilon": 0}, r"epsilon must be in \(0, 1\)"),
        ({"min_count": 0}, "min_count must be >= 1"),
        ({"max_vocab": -3}, "max_vocab must be >= 1"),
    ],
)
def test_option_out_of_range(kwargs, message):
    with pytest.raises(OptionError, match=message):
        BuildOptions(**kwargs)


def test_too_few_bits_names_the_smallest_sufficient(spark, tmp_path, good_lake):
    lake, run = good_lake
    corpus = write_shards(tmp_path / "c", CORPUS_A)
    with pytest.raises(OptionError, match=r"use bits >= 5"):
        run_build(spark, str(corpus), lake, BuildOptions(bits=2, window=2, min_count=1))
    assert_untouched(spark, lake, run)


def test_lake_holding_another_delta_table(spark, tmp_path):
    corpus = write_shards(tmp_path / "c", CORPUS_A)
    other = tmp_path / "other"
    spark.range(3).write.format("delta").save(str(other / "vectors"))
    with pytest.raises(LakeError, match="did not write"):
        run_build(spark, str(corpus), other)
    spark.range(3).write.format("delta").save(str(tmp_path / "table"))
    with pytest.raises(LakeError, match="is itself a Delta table"):
        run_build(spark, str(corpus), tmp_path / "table")
    assert spark.read.format("delta").load(str(other / "vectors")).count() == 3


def test_lake_of_another_format_version(spark, tmp_path, good_lake):
    lake, _ = good_lake
    spark.sql(f"ALTER TABLE delta.`{lake}/vectors` SET TBLPROPERTIES "
              f"('bitcipher.format_version' = '99')")
    corpus = write_shards(tmp_path / "c", CORPUS_A)
    with pytest.raises(LakeError, match="format 99"):
        run_build(spark, str(corpus), lake)
    with pytest.raises(LakeError, match="format 99"):
        read_table(spark, Lake(str(lake)), "unigrams")


def test_table_with_another_schema(spark, tmp_path, good_lake):
    lake, run = good_lake
    target = lake / "runs" / run / "unigrams"
    shutil.rmtree(target)
    spark.createDataFrame([("a", 1)], "word string, n int").write.parquet(str(target))
    with pytest.raises(LakeError, match="does not hold a bit-cipher 'unigrams' table"):
        read_table(spark, Lake(str(lake)), "unigrams")
