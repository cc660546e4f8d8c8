"""Stage 1, tokenize: documents -> token arrays (ALGORITHM.md §0).

Tokens are the maximal runs of letters and digits with internal apostrophes, after Unicode
lowercasing: Java ``[\\p{L}\\p{N}]+(?:['’][\\p{L}\\p{N}]+)*``, Python
``[^\\W_]+(?:['’][^\\W_]+)*``. Each Python worker tokenizes a whole Arrow batch of documents
(ASCII lines from their bytes with NumPy, the others with one compiled-regex call per
document; no per-token Python code).
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

    Returns (flat tokens as an Arrow string array, tokens per document chunk, index of the
    source line of each chunk), the last two int64 arrays. Empty documents give no chunk.

    ASCII lines are tokenized from their bytes with NumPy (:func:`ascii_tokens`), the others
    with the regex, one line at a time; the tokens are those of :func:`split_tokens` either
    way, in line order.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = max_document_tokens
    fast = pc.string_is_ascii(texts).fill_null(False).to_numpy(zero_copy_only=False)
    parts = []  # (tokens, chunk lengths, chunk lines)
    if fast.any():
        rows = np.flatnonzero(fast)
        ascii_texts = texts if len(rows) == len(texts) else texts.filter(pa.array(fast))
        tokens, per_line = ascii_tokens(ascii_texts, lowercase)
        parts.append((tokens, *_chunks(per_line, rows, n)))
    if not fast.all():
        findall = re.compile(PY_TOKEN_PATTERN).findall
        flat: list[str] = []
        per_line, rows = [], []
        others = np.flatnonzero(~fast)
        for i, line in zip(others.tolist(), texts.take(pa.array(others)).to_pylist()):
            if not line:
                continue
            found = findall(line.lower() if lowercase else line)
            if found:
                flat.extend(found)
                per_line.append(len(found))
                rows.append(i)
        parts.append((pa.array(flat, pa.string()),
                      *_chunks(np.asarray(per_line, np.int64), np.asarray(rows, np.int64), n)))
    if not parts:
        return pa.array([], pa.string()), np.empty(0, np.int64), np.empty(0, np.int64)
    if len(parts) == 1:
        return parts[0]
    # both kinds of line: the chunks in line order (a line's chunks are consecutive)
    tokens = pa.concat_arrays([parts[0][0], parts[1][0]])
    lengths = np.concatenate([parts[0][1], parts[1][1]])
    lines = np.concatenate([parts[0][2], parts[1][2]])
    order = np.argsort(lines, kind="stable")
    first = np.cumsum(lengths) - lengths  # each chunk's first token in `tokens`
    lengths, lines = lengths[order], lines[order]
    new_first = np.cumsum(lengths) - lengths
    take = (np.repeat(first[order] - new_first, lengths)
            + np.arange(int(lengths.sum()), dtype=np.int64))
    return tokens.take(pa.array(take)), lengths, lines


def _chunks(per_line, rows, n: int):
    """(tokens per chunk, source line per chunk) of lines with `per_line` tokens each (lines
    `rows`), cut into chunks of at most `n` tokens; lines without tokens give none."""
    import numpy as np

    keep = per_line > 0
    per_line, rows = per_line[keep], rows[keep]
    pieces = (per_line + n - 1) // n
    lengths = np.full(int(pieces.sum()), n, dtype=np.int64)
    lengths[np.cumsum(pieces) - 1] = per_line - n * (pieces - 1)
    return lengths, np.repeat(rows, pieces)


def ascii_tokens(texts, lowercase: bool):
    """(tokens as an Arrow string array, tokens per line as int64) of ASCII lines (an Arrow
    string array, nulls as empty), tokenized from their bytes: a token is a run of ASCII
    letters and digits with single apostrophes between them, PY_TOKEN_PATTERN on ASCII."""
    import numpy as np
    import pyarrow as pa

    texts = texts.cast(pa.large_string())
    n_lines = len(texts)
    _, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[texts.offset:texts.offset + n_lines + 1]
    data = (np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]]
            if data_buf is not None else np.empty(0, np.uint8))
    offsets = offsets - offsets[0]
    valid = texts.is_valid().to_numpy(zero_copy_only=False)
    if not valid.all():  # a null line's bytes (if any) are no text
        ignore = np.zeros(len(data) + 1, np.int64)
        np.add.at(ignore, offsets[:-1][~valid], 1)
        np.add.at(ignore, offsets[1:][~valid], -1)
        data = np.where(np.cumsum(ignore[:-1]) > 0, 32, data).astype(np.uint8)
    upper = (data >= 65) & (data <= 90)  # A-Z (comparisons: faster than a table lookup)
    if lowercase:
        data = data + (upper.view(np.uint8) << 5)
        upper[:] = False
    m = len(data)
    alnum = ((data >= 97) & (data <= 122)) | ((data >= 48) & (data <= 57)) | upper
    line_start = np.zeros(m + 1, bool)
    line_start[offsets[:-1]] = True  # empty lines mark the next line's start (or the end)
    # an apostrophe is part of a token between two letters or digits of its own line
    inner = np.zeros(m, bool)
    if m > 2:
        inner[1:-1] = ((data[1:-1] == 39) & alnum[:-2] & alnum[2:]
                       & ~line_start[1:-2] & ~line_start[2:-1])
    in_token = alnum | inner
    before = np.zeros(m, bool)  # the byte before is in a token of the same line
    before[1:] = in_token[:-1]
    before &= ~line_start[:-1]
    after = np.zeros(m, bool)  # the byte after is in a token of the same line
    after[:-1] = in_token[1:]
    after &= ~line_start[1:]
    starts = np.flatnonzero(in_token & ~before)
    ends = np.flatnonzero(in_token & ~after) + 1
    token_offsets = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(ends - starts, out=token_offsets[1:])
    tokens = pa.Array.from_buffers(
        pa.large_string(), len(starts),
        [None, pa.py_buffer(token_offsets), pa.py_buffer(np.compress(in_token, data))]).cast(pa.string())
    line_of = np.searchsorted(offsets, starts, side="right") - 1
    return tokens, np.bincount(line_of, minlength=n_lines).astype(np.int64)


def _tokenizer(lowercase: bool, max_document_tokens: int) -> Callable:
    def tokenize_batches(batches: Iterator):
        import numpy as np
        import pyarrow as pa

        for batch in batches:
            flat, lengths, lines = tokenize_batch(batch.column(1), lowercase,
                                                  max_document_tokens)
            offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
            # a line split into chunks is still one invalid line: flag its first chunk only
            first = np.ones(len(lines), dtype=bool)
            first[1:] = lines[1:] != lines[:-1]
            invalid = batch.column(2).to_numpy(zero_copy_only=False).astype(bool)
            yield pa.RecordBatch.from_arrays(
                [batch.column(0).take(pa.array(lines)),
                 pa.LargeListArray.from_arrays(pa.array(offsets), flat)
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
