"""Stage 1, tokenize: documents -> token arrays (ALGORITHM.md §0).

Tokens are the maximal runs of letters and digits with internal apostrophes, after Unicode
lowercasing: Java ``[\\p{L}\\p{N}]+(?:['’][\\p{L}\\p{N}]+)*``, Python
``[^\\W_]+(?:['’][^\\W_]+)*``. Each Python worker tokenizes a whole Arrow batch of documents
(one compiled-regex call per document, no per-token Python code).
"""

from __future__ import annotations

import json
import re
from typing import Callable, Iterator

TOKEN_PATTERN = r"[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*"
"""The token pattern as a Java regex (Spark SQL's ``regexp_extract_all``)."""
PY_TOKEN_PATTERN = r"[^\W_]+(?:['’][^\W_]+)*"
"""The same pattern for Python's ``re``."""
TOKENS_SCHEMA = "shard string, tokens array<string>, invalid_utf8 boolean"


def split_tokens(text: str, lowercase: bool = True) -> list[str]:
    """Tokens of one text."""
    return re.findall(PY_TOKEN_PATTERN, text.lower() if lowercase else text)


def tokenize_batch(texts, lowercase: bool, max_document_tokens: int):
    """Tokens of a batch of documents (an Arrow string array).

    Returns (flat tokens as a list, tokens per document chunk as a list, index of the
    source line of each chunk). Empty documents give no chunk.
    """
    findall = re.compile(PY_TOKEN_PATTERN).findall
    n = max_document_tokens
    flat: list[str] = []
    lengths: list[int] = []
    lines: list[int] = []
    for i, line in enumerate(texts.to_pylist()):
        if not line:
            continue
        tokens = findall(line.lower() if lowercase else line)
        for start in range(0, len(tokens), n):
            chunk = tokens[start:start + n]
            flat.extend(chunk)
            lengths.append(len(chunk))
            lines.append(i)
    return flat, lengths, lines


def _tokenizer(lowercase: bool, max_document_tokens: int) -> Callable:
    def tokenize_batches(batches: Iterator):
        import numpy as np
        import pyarrow as pa

        for batch in batches:
            flat, lengths, lines = tokenize_batch(batch.column(1), lowercase,
                                                  max_document_tokens)
            lines = np.asarray(lines, dtype=np.int64)
            offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
            # a line split into chunks is still one invalid line: flag its first chunk only
            first = np.ones(len(lines), dtype=bool)
            first[1:] = lines[1:] != lines[:-1]
            invalid = batch.column(2).to_numpy(zero_copy_only=False).astype(bool)
            yield pa.RecordBatch.from_arrays(
                [batch.column(0).take(pa.array(lines)),
                 pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.string()))
                 .cast(pa.list_(pa.string())),
                 pa.array(invalid[lines] & first)],
                names=["shard", "tokens", "invalid_utf8"],
            )

    return tokenize_batches


def tokenize_documents(lowercase: bool = True, max_document_tokens: int = 10_000) -> Callable:
    """Transformation (shard, text, invalid_utf8, ...) -> (shard, tokens, invalid_utf8).

    Documents longer than `max_document_tokens` become consecutive chunks, each its own
    document; documents without tokens are dropped.
    """
    tokenize = _tokenizer(lowercase, max_document_tokens)

    def transform(docs):
        return docs.select("shard", "text", "invalid_utf8").mapInArrow(tokenize, TOKENS_SCHEMA)

    return transform


TOKENS_DIR = "tokens"  # under the run folder: the tokenize stage's tokens, removed once counted


def write_tokens(token_dir: str, part: int, words, ids, lengths, shards=None,
                 chunk_shards=None) -> None:
    """Write one task's tokens to ``token_dir/tokens-NNNNN.npz``: its dictionary `words`
    (an Arrow string array), every token as an index into it (`ids`, int32, in text order)
    and the tokens per document chunk (`lengths`); with `shards` (the task's shard names) and
    `chunk_shards` (each chunk's index into them), where each chunk came from."""
    import numpy as np
    import pyarrow as pa

    from bitcipher.lake.tables import write_npz

    words = pa.concat_arrays([words.cast(pa.large_string())])  # offsets from 0, 64-bit
    _, offsets, data = words.buffers()
    n = len(words)
    extra = {}
    if shards is not None:
        names = json.dumps(list(shards)).encode("utf-8")
        extra = {"shard_names": np.frombuffer(names, dtype=np.uint8),
                 "chunk_shards": np.asarray(chunk_shards, dtype=np.int32)}
    write_npz(f"{token_dir}/tokens-{part:05d}.npz", **extra,
              ids=np.asarray(ids, dtype=np.int32), lengths=np.asarray(lengths, dtype=np.int32),
              word_offsets=np.frombuffer(offsets, dtype=np.int64, count=n + 1),
              word_bytes=(np.frombuffer(data, dtype=np.uint8) if data is not None and n
                          else np.empty(0, np.uint8)))


def read_tokens(token_dir: str, part: int, with_shards: bool = False):
    """(words as an Arrow string array, ids, lengths) of :func:`write_tokens`; with
    `with_shards` also (shard names, each chunk's index into them), for a part written with
    `shards`."""
    import pyarrow as pa

    from bitcipher.lake.tables import read_npz

    z = read_npz(f"{token_dir}/tokens-{part:05d}.npz")
    offsets = z["word_offsets"]
    words = pa.Array.from_buffers(pa.large_string(), len(offsets) - 1,
                                  [None, pa.py_buffer(offsets), pa.py_buffer(z["word_bytes"])])
    if with_shards:
        names = json.loads(bytes(z["shard_names"]).decode("utf-8"))
        return words.cast(pa.string()), z["ids"], z["lengths"], names, z["chunk_shards"]
    return words.cast(pa.string()), z["ids"], z["lengths"]


def token_parts(token_dir: str) -> list[int]:
    """Part numbers of the files :func:`write_tokens` wrote under `token_dir`."""
    from bitcipher.lake.tables import npz_parts

    return npz_parts(token_dir, "tokens")
