"""Table schemas, read from the JSON files in ``schemas/`` and enforced on write and read."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from bitcipher.errors import LakeError

FORMAT_VERSION = 2  # 2: the cipher table holds code positions and beta (wide ciphers)
TABLES = ("tokens", "unigrams", "cooccurrences", "cipher", "vectors")


def _schema_dir():
    repo = Path(__file__).resolve().parents[3] / "schemas"  # a source checkout
    if repo.is_dir():
        return repo
    return resources.files("bitcipher.lake") / "schema_files"


@lru_cache(maxsize=None)
def table_spec(name: str) -> dict:
    if name not in TABLES:
        raise KeyError(f"no schema for table {name!r}; known: {', '.join(TABLES)}")
    return json.loads((_schema_dir() / f"{name}.json").read_text())


def schema_of(name: str):
    """The Spark StructType of a table."""
    from pyspark.sql.types import StructType

    return StructType.fromJson(table_spec(name)["schema"])


def column_shape(schema) -> list[tuple[str, str]]:
    """(name, Spark type) of each column of a StructType, nullability aside."""
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


def conform(df, name: str):
    """Select and cast a DataFrame to the table's schema; refuse missing columns."""
    from pyspark.sql import functions as F

    schema = schema_of(name)
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise LakeError(f"table {name} is missing columns {missing}")
    current = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    return df.select(
        [
            F.col(f.name) if current[f.name] == f.dataType.simpleString()
            else F.col(f.name).cast(f.dataType).alias(f.name)
            for f in schema.fields
        ]
    )


def check_schema(df, name: str, where: str) -> None:
    """Raise LakeError if a table read from `where` does not have the expected schema."""
    expected = column_shape(schema_of(name))
    actual = column_shape(df.schema)
    if actual != expected:
        raise LakeError(
            f"{where} does not hold a bit-cipher '{name}' table of format version "
            f"{FORMAT_VERSION}: expected columns {expected}, found {actual}"
        )


def arrow_schema(name: str):
    """The pyarrow schema of a table (for files written by Python workers)."""
    import pyarrow as pa

    simple = {"string": pa.string(), "integer": pa.int32(), "long": pa.int64(),
              "byte": pa.int8(), "boolean": pa.bool_(), "float": pa.float32(),
              "double": pa.float64()}

    def arrow_type(t):
        if isinstance(t, dict):
            return pa.list_(arrow_type(t["elementType"]))
        return simple[t]

    return pa.schema([pa.field(f["name"], arrow_type(f["type"]), nullable=f["nullable"])
                      for f in table_spec(name)["schema"]["fields"]])
