"""Stage 1, tokenize: documents -> token arrays (ALGORITHM.md §0), in Spark SQL expressions."""

from __future__ import annotations

from typing import Callable

TOKEN_PATTERN = r"[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*"
"""Java regex of a token: maximal runs of letters and digits with internal apostrophes."""


def tokenize_documents(lowercase: bool = True, max_document_tokens: int = 10_000) -> Callable:
    """Transformation (shard, text, ...) -> (shard, tokens array<string>, invalid_utf8).

    Documents longer than `max_document_tokens` become consecutive chunks, each its own
    document; documents without tokens are dropped.
    """
    from pyspark.sql import functions as F

    n = max_document_tokens

    def transform(docs):
        text = F.lower("text") if lowercase else F.col("text")
        tokens = F.regexp_extract_all(F.coalesce(text, F.lit("")), F.lit(TOKEN_PATTERN), 0)
        with_tokens = docs.select("shard", tokens.alias("tokens"), "invalid_utf8")
        size = F.size("tokens")
        chunks = F.when(size <= n, F.array("tokens")).otherwise(
            F.transform(
                F.sequence(F.lit(0), F.floor((size - 1) / n).cast("int")),
                lambda i: F.slice("tokens", i * n + 1, n),
            )
        )
        chunked = with_tokens.where(size > 0).select(
            "shard", F.posexplode(chunks).alias("chunk", "tokens"), "invalid_utf8"
        )
        # a line split into chunks is still one invalid line
        return chunked.select(
            "shard", "tokens", (F.col("invalid_utf8") & (F.col("chunk") == 0)).alias("invalid_utf8")
        )

    return transform
