"""Read the lake's vectors without a JVM: delta-rs (PyPI ``deltalake``) and pyarrow.

``bitcipher neighbors WORD --engine fast`` comes through here. delta-rs reads the Delta log
(the snapshot of the latest commit, or of ``version``) and lists the table's data files;
pyarrow reads those Parquet files. The same checks as the Spark path apply first: the lake
must hold a published bit-cipher build of this format version (:func:`bitcipher.lake.tables.
published`, which reads the table properties straight from ``_delta_log``), the snapshot
delta-rs reads must carry the same format version, and the columns must be the ``vectors``
schema. The rows and the float32 vectors are those Spark reads, bit for bit.

Only Delta reader protocol 1 is read here (no deletion vectors, no column mapping: what
bit-cipher writes); a table that needs more is refused with a LakeError that points at
``--engine spark``.
"""

from __future__ import annotations

from typing import Optional

from bitcipher.errors import LakeError
from bitcipher.lake.tables import PROP_FORMAT, Lake, published
from bitcipher.lake.schemas import FORMAT_VERSION

COLUMNS = ("word", "id", "count", "vector")
ENGINES = ("spark", "fast")


def use_fast_engine(lake, engine: str = "auto", master: Optional[str] = None) -> bool:
    """Whether `engine` ("auto", "fast" or "spark") reads `lake` with this module.

    "auto" is fast (no JVM) for a lake on a local file system when deltalake is installed
    and no Spark `master` is given; a lake on object storage stays with Spark (its s3a
    settings)."""
    if engine not in ("auto", *ENGINES):
        from bitcipher.errors import OptionError

        raise OptionError(f"engine must be auto, fast or spark; got {engine!r}")
    if engine != "auto":
        return engine == "fast"
    from importlib.util import find_spec

    uri = lake.root if isinstance(lake, Lake) else str(lake)
    local = "://" not in uri or uri.startswith("file://")
    return local and master is None and find_spec("deltalake") is not None


def delta_uri(lake: Lake) -> str:
    """The vectors table as delta-rs spells it: a local path, or ``s3://``, ``gs://``..."""
    uri = lake.vectors
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return uri.replace("s3a://", "s3://", 1)


def _open(lake: Lake, version: Optional[int]):
    try:
        from deltalake import DeltaTable
    except ImportError as exc:  # the optional extra is not installed
        raise LakeError("--engine fast needs the 'deltalake' package: "
                        "pip install 'bit-cipher[sql]', or use --engine spark") from exc
    try:
        return DeltaTable(delta_uri(lake), version=version)
    except Exception as exc:  # delta-rs raises its own TableNotFoundError, DeltaError...
        raise LakeError(f"{lake.vectors} cannot be read as a Delta table: {exc}") from exc


def _check_snapshot(lake: Lake, table) -> None:
    protocol = table.protocol()
    if protocol.min_reader_version > 1 or protocol.reader_features:
        raise LakeError(
            f"{lake.vectors} needs Delta reader protocol {protocol.min_reader_version} "
            f"(features {protocol.reader_features or []}); the fast engine reads protocol 1 "
            f"only: use --engine spark")
    metadata = table.metadata()
    if metadata.partition_columns:
        raise LakeError(f"{lake.vectors} is partitioned by {metadata.partition_columns}; "
                        f"bit-cipher never writes that: use --engine spark")
    version = metadata.configuration.get(PROP_FORMAT)
    if str(version) != str(FORMAT_VERSION):
        raise LakeError(f"{lake.vectors} (version {table.version()}) has bit-cipher table "
                        f"format {version}; this version reads format {FORMAT_VERSION}")


def _read_file(uri: str):
    import pyarrow.parquet as pq

    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    if "://" not in uri:
        return pq.ParquetFile(uri).read(columns=list(COLUMNS))
    import fsspec

    with fsspec.open(uri, "rb") as fh:
        return pq.ParquetFile(fh).read(columns=list(COLUMNS))


def _check_schema(lake: Lake, table) -> None:
    from bitcipher.lake.schemas import arrow_schema

    expected = [(f.name, str(f.type)) for f in arrow_schema("vectors")]
    actual = [(f.name, str(f.type)) for f in table.schema]
    if actual != expected:
        # list<item: float> and list<element: float> are the same type spelled differently
        strip = [(n, t.replace("element: ", "").replace("item: ", "")) for n, t in actual]
        want = [(n, t.replace("element: ", "").replace("item: ", "")) for n, t in expected]
        if strip != want:
            raise LakeError(f"{lake.vectors} does not hold a bit-cipher 'vectors' table of "
                            f"format version {FORMAT_VERSION}: expected columns {want}, "
                            f"found {strip}")


def _read(lake, version: Optional[int]):
    import pyarrow as pa

    lake = lake if isinstance(lake, Lake) else Lake(lake)
    published(lake)  # a published build of this format, its run folder present
    table = _open(lake, version)
    _check_snapshot(lake, table)
    parts = [_read_file(uri) for uri in table.file_uris()]
    if not parts:
        raise LakeError(f"{lake.vectors} (version {table.version()}) has no data files")
    result = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    _check_schema(lake, result)
    return result


def read_vectors(lake, version: Optional[int] = None):
    """The vectors table as a pyarrow Table (word, id, count, vector), in id order."""
    return _read(lake, version).sort_by("id")


def _numpy(array, dtype):
    """A primitive pyarrow array without nulls as a NumPy view (pyarrow's own to_numpy
    imports pandas, which alone takes longer than a lookup)."""
    import numpy as np

    if array.null_count:
        raise LakeError("the vectors table holds nulls; it was not written by bit-cipher")
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=dtype, count=array.offset + len(array))[array.offset:]


def keyed_vectors(lake, version: Optional[int] = None):
    """:class:`bitcipher.query.keyed_vectors.KeyedVectors` of the lake, read without Spark.

    Sorted by id with NumPy (pyarrow.compute and pandas take longer to import than the
    whole lookup)."""
    import numpy as np

    from bitcipher.query.keyed_vectors import KeyedVectors

    table = _read(lake, version)

    def column(name):
        return table.column(name).combine_chunks()

    order = np.argsort(_numpy(column("id"), np.int32), kind="stable")
    words = column("word").to_pylist()
    words = [words[i] for i in order]
    counts = _numpy(column("count"), np.int64)[order]
    values = _numpy(column("vector").flatten(), np.float32)
    dim = len(values) // max(len(order), 1)
    return KeyedVectors(words, counts, values.reshape(len(order), dim)[order])
