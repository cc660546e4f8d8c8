"""Stage 2, unigrams: token counts and the ranked vocabulary (ALGORITHM.md §1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

UNK = "<unk>"


def _unigram_counter(lowercase: bool, max_document_tokens: int, token_dir: str,
                     also: Optional[Callable] = None) -> Callable:
    def count_batches(batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        from bitcipher.stages.tokenize import tokenize_batch, write_tokens

        chunks = []
        chunk_lengths = []
        chunk_shards = []  # each chunk's shard, as an index into `stats` (insertion order)
        stats: dict = {}
        for batch in batches:
            shard, text, invalid = batch.column(0), batch.column(1), batch.column(2)
            flat, lengths, lines = tokenize_batch(text, lowercase, max_document_tokens)
            chunks.append(flat)
            chunk_lengths.append(lengths.astype(np.int32))
            # per-shard statistics: document chunks, tokens, invalid UTF-8 lines
            shard_of_line = pc.dictionary_encode(shard)
            codes = shard_of_line.indices.to_numpy(zero_copy_only=False)
            names = shard_of_line.dictionary.to_pylist()
            chunk_codes = codes[lines]
            size = len(names)
            docs = np.bincount(chunk_codes, minlength=size)
            tokens = np.bincount(chunk_codes, weights=lengths, minlength=size)
            bad = np.bincount(codes, weights=invalid.to_numpy(zero_copy_only=False)
                              .astype(np.int64), minlength=size)
            task_code = np.empty(size, dtype=np.int32)
            for code, name in enumerate(names):
                if name not in stats:
                    stats[name] = [0, 0, 0]
                task_code[code] = list(stats).index(name)
                entry = stats[name]
                entry[0] += int(docs[code])
                entry[1] += int(tokens[code])
                entry[2] += int(bad[code])
            chunk_shards.append(task_code[chunk_codes])
        # the task's tokens as ids into its own dictionary: counted here, and kept for the
        # co-occurrence stage (which then reads no text and tokenizes nothing again)
        from pyspark import TaskContext

        values, ids = pa.array([], pa.string()), np.empty(0, np.int32)
        chunks = [c for c in chunks if len(c)]
        if chunks:
            encoded = pc.dictionary_encode(pa.chunked_array(chunks, pa.string()))
            values = encoded.chunks[-1].dictionary  # one dictionary for every chunk
            ids = np.concatenate([c.indices.to_numpy() for c in encoded.chunks])
        lengths = np.concatenate(chunk_lengths) if chunk_lengths else np.empty(0, np.int32)
        chunk_shards = (np.concatenate(chunk_shards) if chunk_shards
                        else np.empty(0, np.int32))
        part = TaskContext.get().partitionId()
        write_tokens(token_dir, part, values, ids, lengths, shards=list(stats),
                     chunk_shards=chunk_shards)
        if also is not None:
            also(part, values, ids, lengths, list(stats), chunk_shards)
        if len(values):
            n = len(values)
            counts = pa.array(np.bincount(ids, minlength=n).astype(np.int64))
            yield pa.RecordBatch.from_arrays(
                [values, counts,
                 pa.nulls(n, pa.string()), pa.nulls(n, pa.int64()), pa.nulls(n, pa.int64())],
                names=["word", "count", "shard", "documents", "invalid_utf8"],
            )
        if stats:
            names = list(stats)
            yield pa.RecordBatch.from_arrays(
                [pa.nulls(len(names), pa.string()),
                 pa.array([stats[k][1] for k in names], pa.int64()),
                 pa.array(names, pa.string()),
                 pa.array([stats[k][0] for k in names], pa.int64()),
                 pa.array([stats[k][2] for k in names], pa.int64())],
                names=["word", "count", "shard", "documents", "invalid_utf8"],
            )

    return count_batches


UNIGRAM_PARTIAL_SCHEMA = "word string, count long, shard string, documents long, invalid_utf8 long"


def count_documents(token_dir: str, lowercase: bool = True,
                    max_document_tokens: int = 10_000,
                    also: Optional[Callable] = None) -> Callable:
    """Transformation documents (shard, text, invalid_utf8) -> partial counts.

    Rows with a word carry that word's count in one task; rows with a shard carry that
    shard's documents, tokens (in `count`) and invalid UTF-8 lines. Tokenizes in Python
    workers, whole Arrow batches at a time. Every task also writes its tokens to
    `token_dir` (:func:`bitcipher.stages.tokenize.write_tokens`, one file per task,
    named by its partition, so a retried task replaces its own file), and then calls
    ``also(partition, words, ids, lengths, shard names, chunk shards)`` with the same
    tokens when given (a build's count store).
    """
    counter = _unigram_counter(lowercase, max_document_tokens, token_dir, also)

    def transform(docs):
        return docs.select("shard", "text", "invalid_utf8").mapInArrow(
            counter, UNIGRAM_PARTIAL_SCHEMA
        )

    return transform


def _count_batches(batches):
    """Per task: counts of every token type, from whole Arrow batches at once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = [pc.list_flatten(batch.column(0)) for batch in batches]
    if not flat:
        return
    counted = pc.value_counts(pa.chunked_array(flat, pa.string()))
    yield pa.RecordBatch.from_arrays(
        [counted.field("values"), counted.field("counts")], names=["word", "count"]
    )


def count_tokens(tokens_df):
    """Transformation (tokens array<string>) -> (word string, count long), every token type."""
    from pyspark.sql import functions as F

    partial = tokens_df.select("tokens").mapInArrow(_count_batches, "word string, count long")
    return partial.groupBy("word").agg(F.sum("count").alias("count"))


@dataclass(frozen=True)
class Vocabulary:
    """Words in rank order (index = id), with their counts; `<unk>` always included."""

    words: list[str]
    counts: np.ndarray  # int64, rank order
    total: int  # M: all tokens of the corpus

    @property
    def unk_id(self) -> int:
        return self.words.index(UNK)

    def __len__(self) -> int:
        return len(self.words)


def rank_vocabulary(kept: list[tuple[str, int]], total: int, max_vocab: Optional[int] = None
                    ) -> Vocabulary:
    """Rank the words kept by min_count; everything else becomes `<unk>`.

    Ranks sort by count descending, ties by the word's code points ascending, so they do
    not depend on partitioning. `<unk>` is ranked like any word.
    """
    ranked = sorted(kept, key=lambda wc: (-wc[1], wc[0]))
    if max_vocab is not None:
        ranked = ranked[:max_vocab]
    unk_count = total - sum(c for _, c in ranked)
    ranked = sorted(ranked + [(UNK, unk_count)], key=lambda wc: (-wc[1], wc[0]))
    return Vocabulary(
        words=[w for w, _ in ranked],
        counts=np.array([c for _, c in ranked], dtype=np.int64),
        total=int(total),
    )


def collect_vocabulary(word_counts_df, min_count: int, max_vocab: Optional[int] = None,
                       total: Optional[int] = None) -> Vocabulary:
    """Bring the words with count >= min_count to the driver and rank them.

    `total` (M, all tokens) is computed from the counts when not given.
    """
    from pyspark.sql import functions as F

    if total is None:
        total = word_counts_df.agg(F.sum("count")).first()[0] or 0
    kept_df = word_counts_df.where(F.col("count") >= min_count)
    if max_vocab is not None:
        kept_df = kept_df.orderBy(F.col("count").desc(), F.col("word")).limit(max_vocab)
    table = kept_df.toArrow()
    kept = list(zip(table.column("word").to_pylist(), table.column("count").to_pylist()))
    return rank_vocabulary(kept, int(total), max_vocab)


def unigram_frame(spark, vocab: Vocabulary):
    """DataFrame (word, count, id) of the vocabulary, in id order."""
    from bitcipher.lake.schemas import schema_of

    return spark.createDataFrame(unigram_arrow(vocab), schema=schema_of("unigrams"))


def unigram_arrow(vocab: Vocabulary):
    """The unigrams table as a pyarrow Table, in id order."""
    import pyarrow as pa

    from bitcipher.lake.schemas import arrow_schema

    table = pa.table(
        {
            "word": pa.array(vocab.words, pa.string()),
            "count": pa.array(vocab.counts, pa.int64()),
            "id": pa.array(np.arange(len(vocab), dtype=np.int32)),
        }
    )
    return table.cast(arrow_schema("unigrams"))
