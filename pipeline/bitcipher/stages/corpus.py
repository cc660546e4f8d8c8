"""Finding, checking and reading corpus shards (ALGORITHM.md §0).

A corpus is given as a directory, a glob or a list of either. Each shard is a plain-text file
(``.txt`` or anything else, optionally ``.gz`` / ``.bz2``) with one document per line, a JSON
Lines file (``.jsonl`` / ``.json``, optionally compressed) with the text in one field, or a
Parquet file with the text in one column.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import fsspec
from fsspec.core import url_to_fs

from bitcipher.errors import InputError
from bitcipher.lake.storage import fsspec_uri, is_s3

log = logging.getLogger(__name__)

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2"}
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Shard:
    """One input file: where it is, how big, when it last changed, how to read it."""

    path: str  # a URI Spark and fsspec both understand
    size: int
    mtime: float
    format: str  # "text" | "jsonl" | "parquet"

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def shard_format(path: str, declared: str = "auto") -> str:
    """The format of a shard from its name (compression suffixes ignored)."""
    if declared != "auto":
        return declared
    name = path.lower()
    for suffix in COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "text"


def _hidden(path: str) -> bool:
    return any(part.startswith((".", "_")) for part in path.split("/") if part)


def _uri(fs, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return "file://" + path if path.startswith("/") else path
    if protocol in ("s3", "s3a"):
        return "s3a://" + path
    return f"{protocol}://{path}"


def list_shards(corpus: Union[str, Sequence[str]], input_format: str = "auto") -> list[Shard]:
    """Every shard of a corpus, sorted by path; raises InputError for a path that matches nothing."""
    specs = [corpus] if isinstance(corpus, str) else list(corpus)
    if not specs:
        raise InputError("no corpus path given")
    found: dict[str, Shard] = {}
    for spec in specs:
        fs, root = url_to_fs(fsspec_uri(spec))
        if any(ch in root for ch in "*?["):
            paths = [p for p in fs.glob(root) if fs.isfile(p)]
        elif fs.isdir(root):
            paths = [p for p in fs.find(root) if not _hidden(p[len(root.rstrip("/")):])]
        elif fs.isfile(root):
            paths = [root]
        else:
            raise InputError(f"corpus path {spec!r} does not exist")
        if not paths:
            raise InputError(f"corpus path {spec!r} holds no files")
        for path in paths:
            info = fs.info(path)
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            uri = _uri(fs, path)
            found[uri] = Shard(uri, int(info.get("size") or 0), float(mtime),
                               shard_format(path, input_format))
    return [found[k] for k in sorted(found)]


def _open_uri(uri: str):
    return fsspec.open(fsspec_uri(uri), "rb", compression="infer")


def check_shards(shards: Iterable[Shard]) -> list[str]:
    """Reject binary and corrupt shards; return warnings (empty shards) for the log."""
    warnings = []
    for shard in shards:
        if shard.size == 0:
            warnings.append(f"shard {shard.path} is empty")
            continue
        if shard.format == "parquet":
            continue
        try:
            with _open_uri(shard.path) as fh:
                head = fh.read(SNIFF_BYTES)
        except (OSError, EOFError, ValueError) as exc:
            raise InputError(f"shard {shard.path} cannot be read ({exc}); is it a valid "
                             f"{os.path.splitext(shard.path)[1] or 'text'} file?") from exc
        if b"\x00" in head:
            raise InputError(
                f"shard {shard.path} looks binary (it holds NUL bytes); a text shard must be "
                f"UTF-8 text with one document per line"
            )
        if not head:
            warnings.append(f"shard {shard.path} is empty")
    return warnings


def read_documents(spark, shards: Sequence[Shard], text_field: str = "text"):
    """DataFrame (shard string, text string, invalid_utf8 boolean): one row per document.

    Lines that are not valid UTF-8 are decoded with replacement characters and flagged.
    A JSON Lines line that is not JSON gives a row with ``bad_record`` set, so the caller
    can report it; so does a record without the text field.
    """
    from pyspark.sql import functions as F

    frames = []
    by_format: dict[str, list[str]] = {}
    for shard in shards:
        if shard.size > 0:
            by_format.setdefault(shard.format, []).append(shard.path)
    for fmt, paths in sorted(by_format.items()):
        if fmt == "parquet":
            df = spark.read.parquet(*paths)
            if text_field not in df.columns:
                raise InputError(
                    f"Parquet shards have no column {text_field!r} (columns: "
                    f"{', '.join(df.columns)}); set --text-field"
                )
            frames.append(
                df.select(
                    F.col("_metadata.file_path").alias("shard"),
                    F.col(text_field).cast("string").alias("text"),
                    F.lit(False).alias("invalid_utf8"),
                    F.lit(None).cast("string").alias("bad_record"),
                )
            )
            continue
        raw = spark.read.text(paths).select(
            F.col("_metadata.file_path").alias("shard"),
            F.col("value"),
        )
        raw = raw.select(
            "shard",
            F.make_valid_utf8("value").alias("value"),
            (~F.is_valid_utf8("value")).alias("invalid_utf8"),
        )
        if fmt == "jsonl":
            parsed = F.try_parse_json("value")
            text = F.try_variant_get(parsed, f"$.{text_field}", "string")
            blank = F.trim("value") == ""
            raw = raw.where(~blank).select(
                "shard",
                text.alias("text"),
                "invalid_utf8",
                F.when(parsed.isNull(), F.concat(F.lit("not JSON: "), F.substring("value", 1, 80)))
                .when(text.isNull(), F.concat(F.lit(f"no string field '{text_field}': "),
                                              F.substring("value", 1, 80)))
                .alias("bad_record"),
            )
        else:
            raw = raw.select("shard", F.col("value").alias("text"), "invalid_utf8",
                             F.lit(None).cast("string").alias("bad_record"))
        frames.append(raw)
    if not frames:
        return None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out
