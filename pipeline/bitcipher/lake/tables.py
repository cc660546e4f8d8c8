"""The lake: where a build's tables live, how they are published and how they are read.

Layout of a lake directory (or URI)::

    vectors/                      Delta table; each commit publishes one build
    runs/<run>/unigrams/          Parquet: word, count, id
    runs/<run>/cooccurrences/     Parquet: center, context, offset, count
    runs/<run>/cipher/            Parquet: word, id, count, code, rep
    runs/<run>/_bitcipher.json    what the run was made from (options, shards, tokens)

A build writes its Parquet tables under a fresh ``runs/<run>`` and then publishes them with a
single Delta commit on ``vectors`` whose table properties name the run. Readers follow that
pointer, so an interrupted build is never seen: its run folder is simply not referenced
(and is removed by the next build).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from bitcipher.lake.storage import fsspec_uri
from bitcipher.errors import LakeError
from bitcipher.lake.schemas import FORMAT_VERSION, column_shape, check_schema, schema_of

PROP_FORMAT = "bitcipher.format_version"
PROP_RUN = "bitcipher.run"
PROP_OPTIONS = "bitcipher.options"
PROP_BITS = "bitcipher.bits"
PROP_SNAPSHOT = "bitcipher.snapshot"
RUN_TABLES = ("unigrams", "cooccurrences", "cipher")
MANIFEST = "_bitcipher.json"


def new_run_id() -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:8]}"


def _spark_uri(uri: str) -> str:
    if "://" in uri:
        return uri.replace("s3://", "s3a://", 1)
    import os

    return "file://" + os.path.abspath(uri)


@dataclass(frozen=True)
class Lake:
    """Paths of one lake."""

    root: str

    @property
    def uri(self) -> str:
        return _spark_uri(self.root.rstrip("/"))

    @property
    def vectors(self) -> str:
        return f"{self.uri}/vectors"

    def run_dir(self, run: str) -> str:
        return f"{self.uri}/runs/{run}"

    def table(self, run: str, name: str) -> str:
        return f"{self.run_dir(run)}/{name}"

    def fs(self):
        return url_to_fs(fsspec_uri(self.uri))

    def exists(self, uri: str) -> bool:
        fs, path = url_to_fs(fsspec_uri(uri))
        return fs.exists(path)

    def write_text(self, uri: str, text: str) -> None:
        with fsspec.open(fsspec_uri(uri), "w") as fh:
            fh.write(text)

    def read_text(self, uri: str) -> str:
        with fsspec.open(fsspec_uri(uri), "r") as fh:
            return fh.read()

    def remove(self, uri: str) -> None:
        fs, path = url_to_fs(fsspec_uri(uri))
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def runs(self) -> list[str]:
        fs, root = self.fs()
        base = f"{root.rstrip('/')}/runs"
        if not fs.exists(base):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))


def check_lake(lake: Lake) -> None:
    """Refuse a lake that holds Delta tables this package did not write."""
    if lake.exists(f"{lake.uri}/_delta_log"):
        raise LakeError(
            f"{lake.root} is itself a Delta table, not a bit-cipher lake; choose another --lake"
        )
    if lake.exists(f"{lake.vectors}/_delta_log"):
        props = _delta_properties(lake)
        version = props.get(PROP_FORMAT)
        if version is None:
            raise LakeError(
                f"{lake.vectors} holds a Delta table that bit-cipher did not write; refusing to "
                f"overwrite it: choose another --lake"
            )
        if str(version) != str(FORMAT_VERSION):
            raise LakeError(
                f"{lake.vectors} was written with bit-cipher table format {version}; this version "
                f"reads and writes format {FORMAT_VERSION}: rebuild into a new lake"
            )


def latest_action(table_uri: str, kind: str) -> Optional[dict]:
    """The newest action `kind` (``metaData``, ``protocol``) of a Delta table, read from its
    log without Spark: from the newest commit that has one, else from the newest
    single-file checkpoint; None when neither has one."""
    fs, root = url_to_fs(fsspec_uri(f"{table_uri}/_delta_log"))
    names = fs.ls(root, detail=False)
    for commit in sorted((p for p in names if p.endswith(".json")), reverse=True):
        with fs.open(commit, "r") as fh:
            for line in fh:
                action = json.loads(line)
                if kind in action:
                    return action[kind]
    checkpoints = sorted(p for p in names if p.endswith(".checkpoint.parquet"))
    if checkpoints:
        import pyarrow.parquet as pq

        with fs.open(checkpoints[-1], "rb") as fh:
            rows = pq.read_table(fh, columns=[kind]).column(kind).to_pylist()
        for row in rows:
            if row:
                return row
    return None


_CHECKPOINT = re.compile(r"(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")
_JSON_COMMIT = re.compile(r"(\d{20})\.json$")


def delta_files(table_uri: str, version: int) -> Optional[list[str]]:
    """The data files of a Delta table at `version`, from its log without Spark: the adds
    of the newest complete checkpoint at or before it (single-file or multi-part), then of
    each commit after it, less their removes. For tables of reader protocol 1 (no deletion
    vectors, no column mapping), which the caller checks; None when the log does not reach
    `version` (a commit or a checkpoint part missing)."""
    import posixpath

    live = live_adds(table_uri, version)
    if live is None:
        return None
    out = []
    for path in sorted(live):
        path = unquote(path)
        out.append(path if "://" in path or path.startswith("/")
                   else posixpath.join(table_uri.rstrip("/"), path))
    return out


def live_adds(table_uri: str, version: int) -> Optional[dict]:
    """{path as the log spells it: its ``add`` action} of a Delta table at `version`
    (:func:`delta_files`), or None."""
    fs, root = url_to_fs(fsspec_uri(f"{table_uri}/_delta_log"))
    names = {n.rstrip("/").rsplit("/", 1)[-1]: n for n in fs.ls(root, detail=False)}
    commits, parts = {}, {}
    for base, full in names.items():
        if (m := _JSON_COMMIT.fullmatch(base)) is not None:
            commits[int(m.group(1))] = full
        elif (m := _CHECKPOINT.fullmatch(base)) is not None:
            n = int(m.group(3) or 1)
            parts.setdefault((int(m.group(1)), n), []).append(full)
    complete = sorted(k for k, found in parts.items() if len(found) == k[1] and k[0] <= version)
    start = complete[-1][0] if complete else -1
    live: dict = {}
    if complete:
        import pyarrow.parquet as pq

        for name in sorted(parts[complete[-1]]):
            with fs.open(name, "rb") as fh:
                adds = pq.read_table(fh, columns=["add"]).column("add").to_pylist()
            live.update((a["path"], a) for a in adds if a)
    for v in range(start + 1, version + 1):
        if v not in commits:
            return None
        with fs.open(commits[v], "r") as fh:
            for line in fh:
                if not line.strip():
                    continue
                action = json.loads(line)
                if "add" in action:
                    live[action["add"]["path"]] = action["add"]
                elif "remove" in action:
                    live.pop(action["remove"]["path"], None)
    return live


def reader_protocol_1(table_uri: str) -> bool:
    """Whether a Delta table needs no more than reader protocol 1 (no deletion vectors, no
    column mapping), so that its data files, as :func:`live_adds` lists them, hold its rows
    as they are; read from its log."""
    protocol = latest_action(table_uri, "protocol") or {}
    return int(protocol.get("minReaderVersion") or 99) <= 1


def _delta_properties(lake: Lake) -> dict:
    """Table properties of the vectors table, read from the Delta log without Spark."""
    meta = latest_action(lake.vectors, "metaData") or {}
    return dict(meta.get("configuration") or {})


def parquet_rows(uri: str) -> int:
    """Rows of a Parquet table, from its file footers."""
    import pyarrow.parquet as pq

    fs, path = url_to_fs(fsspec_uri(uri))
    if not fs.exists(path):
        return 0
    total = 0
    for name in fs.find(path):
        if name.endswith(".parquet"):
            with fs.open(name, "rb") as fh:
                total += pq.read_metadata(fh).num_rows
    return total


def parquet_parts(uri: str) -> list[int]:
    """The numbers N of the files ``uri/part-N.parquet`` (:func:`write_parquet`), sorted;
    none when the folder does not exist."""
    return _numbered_files(uri, "part", ".parquet")


def read_parquet(uri: str):
    """One Parquet file (local or object storage), as a pyarrow table."""
    import pyarrow.parquet as pq

    with fsspec.open(fsspec_uri(uri), "rb") as fh:
        return pq.read_table(fh)


def read_parquet_part(uri: str, part: int):
    """File `part` of the Parquet table at `uri` (:func:`write_parquet`), as a pyarrow
    table."""
    return read_parquet(f"{uri}/part-{part:05d}.parquet")


SORTED_INTEGERS = {"compression": "none", "use_dictionary": False,
                   "column_encoding": "DELTA_BINARY_PACKED"}
"""Parquet options for tables of integers sorted by their first columns (the
co-occurrence counts and totals): every column delta-encoded and bit-packed, not compressed.
On a bucket of 1M co-occurrences this writes in 17 ms instead of 33 (snappy with
dictionaries) and makes a smaller file (2.1 against 2.5 MB) that reads 4x faster; Spark's
vectorised reader, pyarrow and delta-rs read it."""


def parquet_options(table, options: Optional[dict] = None) -> dict:
    """Keyword arguments of ``pyarrow.parquet.write_table`` for `table`: snappy, or
    `options`, whose ``column_encoding`` may be one encoding for every column."""
    if options is None:
        return {"compression": "snappy"}
    options = dict(options)
    if isinstance(options.get("column_encoding"), str):
        options["column_encoding"] = {name: options["column_encoding"]
                                      for name in table.column_names}
    return options


def write_parquet(table, uri: str, part: int = 0, options: Optional[dict] = None) -> None:
    """Write a pyarrow table as file `part` of the Parquet table at `uri` (a task that is
    retried rewrites its own file), snappy-compressed or with `options`
    (:func:`parquet_options`)."""
    write_parquet_file(table, f"{uri}/part-{part:05d}.parquet", options)


def write_parquet_file(table, uri: str, options: Optional[dict] = None) -> None:
    """Write a pyarrow table as the one Parquet file `uri` (local or object storage; its
    folder made if missing), with :func:`parquet_options`."""
    import pyarrow.parquet as pq

    with fsspec.open(fsspec_uri(uri), "wb", auto_mkdir=True) as fh:
        pq.write_table(table, fh, **parquet_options(table, options))


def write_npz(uri: str, **arrays) -> None:
    """Write NumPy arrays as one ``.npz`` file (local or object storage)."""
    with fsspec.open(fsspec_uri(uri), "wb", auto_mkdir=True) as fh:
        np.savez(fh, **arrays)  # straight to the file: no second copy in memory


def npz_parts(folder: str, prefix: str) -> list[int]:
    """The numbers N of the files ``folder/{prefix}-N.npz`` (local or object storage),
    sorted; none when the folder does not exist."""
    return _numbered_files(folder, prefix, ".npz")


def _numbered_files(folder: str, prefix: str, suffix: str) -> list[int]:
    """The numbers N of the files ``folder/{prefix}-N{suffix}``, sorted; none when the
    folder does not exist."""
    fs, path = url_to_fs(fsspec_uri(folder))
    if not fs.exists(path):
        return []
    names = [str(n).rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(path, detail=False)]
    pattern = re.compile(re.escape(prefix) + r"-(\d+)" + re.escape(suffix))
    return sorted(int(m.group(1)) for n in names if (m := pattern.fullmatch(n)))


def read_npz(uri: str, names: Optional[tuple] = None) -> dict:
    """The arrays of :func:`write_npz` (those in `names`, default all), by name (read from
    the file, not from a copy of its bytes in memory)."""
    with fsspec.open(fsspec_uri(uri), "rb") as fh, np.load(fh) as z:
        return {name: z[name] for name in (z.files if names is None else names)}


@contextmanager
def npz_rows(uri: str, name: str):
    """Read the rows of array `name` of a :func:`write_npz` file a slice at a time, in
    order: yields (shape, read) where ``read(rows)`` returns the next `rows` rows (fewer at
    the end). The array is never whole in memory."""
    import zipfile

    from numpy.lib import format as npy

    with fsspec.open(fsspec_uri(uri), "rb") as fh, zipfile.ZipFile(fh) as zf, \
            zf.open(f"{name}.npy") as member:
        version = npy.read_magic(member)
        read_header = npy.read_array_header_1_0 if version == (1, 0) else \
            npy.read_array_header_2_0
        shape, fortran, dtype = read_header(member)
        if fortran or len(shape) != 2:
            raise ValueError(f"{uri}: {name} is not a C-ordered matrix")
        row_bytes = shape[1] * dtype.itemsize
        left = [shape[0]]

        def read(rows: int) -> np.ndarray:
            rows = min(rows, left[0])
            data = member.read(rows * row_bytes)
            if len(data) != rows * row_bytes:
                raise ValueError(f"{uri}: {name} ends early")
            left[0] -= rows
            return np.frombuffer(data, dtype=dtype).reshape(rows, shape[1])

        yield shape, read


@contextmanager
def npz_row_writer(uri: str, whole: dict, name: str, shape: tuple, dtype):
    """Write a file :func:`read_npz` reads, with the arrays of `whole` and array `name`
    of `shape` and `dtype` given a slice of rows at a time: yields ``write(rows)``, to be
    called with all the rows in order."""
    import zipfile

    from numpy.lib import format as npy

    dtype = np.dtype(dtype)
    with fsspec.open(fsspec_uri(uri), "wb", auto_mkdir=True) as fh, \
            zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in whole.items():  # as np.savez writes them
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                npy.write_array(member, np.asanyarray(value), allow_pickle=False)
        with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
            npy.write_array_header_1_0(member, {"descr": npy.dtype_to_descr(dtype),
                                                "fortran_order": False,
                                                "shape": tuple(shape)})
            done = [0]

            def write(rows: np.ndarray) -> None:
                rows = np.ascontiguousarray(rows)
                if rows.dtype != dtype or rows.ndim != 2 or rows.shape[1] != shape[1]:
                    raise ValueError(f"rows of {rows.dtype} {rows.shape}, not of {dtype} and "
                                     f"width {shape[1]}")
                member.write(rows.tobytes())
                done[0] += len(rows)

            yield write
            if done[0] != shape[0]:
                raise ValueError(f"{uri}: {done[0]} rows of {name} written, not {shape[0]}")


def write_manifest(lake: Lake, run: str, manifest: dict) -> None:
    lake.write_text(f"{lake.run_dir(run)}/{MANIFEST}", json.dumps(manifest, indent=2,
                                                                  sort_keys=True))


def remove_stale_runs(lake: Lake, keep: list[str]) -> list[str]:
    """Delete the run folders not named in `keep`; return their names."""
    removed = []
    for run in lake.runs():
        if run not in keep:
            lake.remove(lake.run_dir(run))
            removed.append(run)
    return removed


def sql_string(value: str) -> str:
    """`value` as a Spark SQL string literal, quoted and escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def publish_vectors(spark, lake: Lake, vectors_df, properties: dict) -> None:
    """Replace the vectors table in one Delta commit that also records `properties`."""
    view = f"bitcipher_publish_{uuid.uuid4().hex[:8]}"
    vectors_df.createOrReplaceTempView(view)
    props = {PROP_FORMAT: str(FORMAT_VERSION), **properties}
    props_sql = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in props.items())
    try:
        spark.sql(
            f"CREATE OR REPLACE TABLE delta.`{lake.vectors}` USING DELTA "
            f"TBLPROPERTIES ({props_sql}) AS SELECT * FROM {view}"
        )
    finally:
        spark.catalog.dropTempView(view)


def publish_arrow(spark, lake: Lake, table, properties: dict, files: int = 1) -> str:
    """Replace the vectors table with the rows of a pyarrow `table` (the ``vectors`` schema,
    sorted by id) in one Delta commit that also records `properties`, as
    :func:`publish_vectors` does; "direct" or "sql", the way it went.

    "direct": pyarrow writes the rows as `files` Parquet files in the table's folder, and
    Delta's own transaction commits them (:func:`commit_direct`): the vectors are not
    decoded and encoded again float by float in the JVM. Where :func:`direct_transaction`
    gives no transaction (a table this release does not write, another Delta, no JVM),
    "sql": Spark writes the rows (:func:`publish_vectors`). The table's other properties are
    kept; the ``bitcipher.*`` ones are replaced by `properties`.
    """
    props = {PROP_FORMAT: str(FORMAT_VERSION), **properties}
    schema = schema_of("vectors")
    txn = direct_transaction(spark, lake.vectors, schema, [])
    if txn is None:
        publish_vectors(spark, lake, _arrow_frame(spark, table, files), properties)
        return "sql"
    written = []
    try:
        if txn.readVersion() < 0:
            fs, path = url_to_fs(fsspec_uri(lake.vectors))
            fs.makedirs(path, exist_ok=True)
        adds = [_add_action(lake, part, written) for part in _slices(table, files)]
        commit_direct(spark, lake.vectors, txn, adds, schema, [], properties=props)
    except BaseException:
        remove_uncommitted(lake.vectors, written)
        raise
    return "direct"


def direct_transaction(spark, uri: str, schema, partitions: list):
    """Delta's own transaction (``DeltaLog.startTransaction``, over py4j) on the table at
    `uri`, of version -1 where there is none yet; None where :func:`commit_direct` does not
    commit to it: a table this release does not write (Delta reader protocol above 1 or
    writer protocol above 2, other partition columns than `partitions`, column mapping,
    other columns than `schema`), no such class (another Delta), or no JVM (Spark
    Connect)."""
    from py4j.protocol import Py4JError
    from pyspark.sql.types import StructType

    try:
        delta_log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(
            spark._jsparkSession, uri)
        txn = delta_log.startTransaction()
        if txn.readVersion() < 0:  # no table yet: commit_direct creates it
            return txn
        protocol = txn.protocol()
        meta = json.loads(txn.metadata().json())["metaData"]
        reader, writer = protocol.minReaderVersion(), protocol.minWriterVersion()
    except (Py4JError, AttributeError):
        return None
    config = meta.get("configuration") or {}
    if (reader > 1 or writer > 2
            or list(meta.get("partitionColumns") or []) != list(partitions)
            or config.get("delta.columnMapping.mode", "none") != "none"
            or column_shape(StructType.fromJson(json.loads(meta["schemaString"])))
            != column_shape(schema)):
        return None
    return txn


def commit_direct(spark, uri: str, txn, adds: list, schema, partitions: list,
                  properties: Optional[dict] = None, app: Optional[tuple] = None,
                  user_metadata: Optional[str] = None, remove=None) -> int:
    """Commit Delta ``add`` actions (`adds`, dicts; files already written) with `txn` (from
    :func:`direct_transaction`) in one commit that removes every file of the version the
    transaction read (those whose ``add`` action `remove` is true for, when given); the
    version made. With `properties`, the table's ``bitcipher.*``
    properties are replaced by them (its others kept). `app` (app id, version) is recorded
    as a Delta ``txn`` action, as a write's ``txnAppId``/``txnVersion`` options do, and
    `user_metadata` as the commit's user metadata.

    Where there is no table yet, it is created as Spark's ``CREATE TABLE ... AS SELECT``
    would make it: Delta protocol (1, 2), `schema` with every column nullable, `partitions`.
    The transaction counts the whole table as read, so any other commit since it started (a
    table created meanwhile too) makes this one fail with Delta's conflict error. The
    version has no ``.crc`` checksum file (optional in Delta's protocol; a later commit
    writes its own): writing it makes Delta compute the whole table state again after the
    commit, most of a commit's time."""
    from contextlib import ExitStack

    jvm = spark._jvm
    action = jvm.org.apache.spark.sql.delta.actions.Action
    actions = jvm.java.util.ArrayList()
    now = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    if txn.readVersion() < 0:
        txn.updateMetadataForNewTable(action.fromJson(json.dumps({"metaData": {
            "id": str(uuid.uuid4()), "format": {"provider": "parquet", "options": {}},
            "schemaString": json.dumps(_nullable(schema.jsonValue())),
            "partitionColumns": list(partitions), "configuration": dict(properties or {}),
            "createdTime": now}})))
        current = {}
    else:
        if properties is not None:
            meta = json.loads(txn.metadata().json())
            config = meta["metaData"].get("configuration") or {}
            meta["metaData"]["configuration"] = {
                **{k: v for k, v in config.items() if not k.startswith("bitcipher.")},
                **properties}
            actions.add(action.fromJson(json.dumps(meta)))
        # every file of the version the transaction read goes (read from the log here:
        # Spark's listing of them costs a job)
        current = live_adds(uri, txn.readVersion())
        if current is None:
            raise LakeError(f"the Delta log of {uri} does not reach its version "
                            f"{txn.readVersion()}")
    txn.readWholeTable()
    for path, add in current.items():
        if remove is not None and not remove(add):
            continue
        actions.add(action.fromJson(json.dumps({"remove": {
            "path": path, "deletionTimestamp": now, "dataChange": True,
            "extendedFileMetadata": True, "partitionValues": add.get("partitionValues") or {},
            "size": add.get("size")}})))
    for add in adds:
        actions.add(action.fromJson(json.dumps(add)))
    if app is not None:
        actions.add(action.fromJson(json.dumps({"txn": {
            "appId": app[0], "version": int(app[1]), "lastUpdated": now}})))
    # by py4j's class loading, which finds Delta's classes where Spark added them (a JAR
    # given at submission is not on the JVM's own class path)
    operation = (jvm.py4j.reflection.ReflectionUtil.classForName(
        "org.apache.spark.sql.delta.DeltaOperations$ManualUpdate$")
        .getField("MODULE$").get(None))
    with ExitStack() as stack:
        stack.enter_context(session_conf(
            spark, "spark.databricks.delta.writeChecksumFile.enabled", "false"))
        if user_metadata is not None:
            stack.enter_context(session_conf(
                spark, "spark.databricks.delta.commitInfo.userMetadata", user_metadata))
        return int(txn.commit(
            jvm.scala.jdk.javaapi.CollectionConverters.asScala(actions).toSeq(), operation))


def _nullable(schema: dict) -> dict:
    """A Spark schema (its JSON form) with every field and array element nullable, as
    Delta records the schema of a table made by ``CREATE TABLE ... AS SELECT``."""
    def loosen(t):
        if isinstance(t, dict) and t.get("type") == "array":
            return {**t, "elementType": loosen(t["elementType"]), "containsNull": True}
        if isinstance(t, dict) and t.get("type") == "struct":
            return {**t, "fields": [{**f, "type": loosen(f["type"]), "nullable": True}
                                    for f in t["fields"]]}
        return t

    return loosen(schema)


def remove_uncommitted(uri: str, written: list) -> None:
    """Remove files (URIs) a failed direct commit to the table at `uri` wrote, unless the
    newest version of the table holds them (the commit went through before the failure) or
    the log cannot be read (files no commit names are harmless: VACUUM removes them)."""
    try:
        fs, root = url_to_fs(fsspec_uri(f"{uri}/_delta_log"))
        versions = [int(m.group(1)) for n in fs.ls(root, detail=False)
                    if (m := _JSON_COMMIT.fullmatch(n.rstrip("/").rsplit("/", 1)[-1]))]
        live = live_adds(uri, max(versions)) if versions else {}
    except Exception:  # noqa: BLE001 - leave the files rather than risk committed ones
        return
    if live is None:
        return
    live = {unquote(p) for p in live}
    root = uri.rstrip("/") + "/"
    for file in written:
        if file.startswith(root) and file[len(root):] in live:
            continue
        fs, path = url_to_fs(fsspec_uri(file))
        if fs.exists(path):
            fs.rm(path)


@contextmanager
def session_conf(spark, key: str, value: str):
    """Spark setting `key` set to `value` for the block, then as it was (or unset)."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def _slices(table, files: int):
    n = table.num_rows
    bounds = [n * i // max(files, 1) for i in range(max(files, 1) + 1)]
    return [table.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo] \
        or [table]


def _add_action(lake: Lake, part, written: list) -> dict:
    """Write one Parquet file of the vectors table; its Delta ``add`` action, with the
    statistics Delta keeps for skipping files (rows; least and greatest id and count; nulls)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    name = f"part-{len(written):05d}-{uuid.uuid4()}-c000.snappy.parquet"
    uri = f"{lake.vectors}/{name}"
    written.append(uri)
    fs, path = url_to_fs(fsspec_uri(uri))
    with fs.open(path, "wb") as fh:
        pq.write_table(part, fh, compression="snappy")
    ids, counts = part.column("id"), part.column("count")
    stats = {"numRecords": part.num_rows,
             "minValues": {"id": pc.min(ids).as_py(), "count": pc.min(counts).as_py()},
             "maxValues": {"id": pc.max(ids).as_py(), "count": pc.max(counts).as_py()},
             "nullCount": {c: part.column(c).null_count for c in part.column_names}}
    return add_action(name, {}, fs.info(path), stats)


def add_action(path: str, partition_values: dict, info: dict,
               stats: Optional[dict] = None) -> dict:
    """The Delta ``add`` action of a data file written at `path` (relative to the table,
    without escapes) with `partition_values`, from its fsspec `info` (size, modified time)."""
    from urllib.parse import quote

    modified = info.get("mtime") or info.get("LastModified")
    millis = (int(modified.timestamp() * 1000) if hasattr(modified, "timestamp")
              else int(float(modified) * 1000) if modified else
              int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000))
    add = {"path": quote(path), "partitionValues": dict(partition_values),
           "size": int(info["size"]), "modificationTime": millis, "dataChange": True}
    if stats is not None:
        add["stats"] = json.dumps(stats)
    return {"add": add}


def _arrow_frame(spark, table, files: int):
    return spark.createDataFrame(table).coalesce(max(files, 1)).sortWithinPartitions("id")


@dataclass(frozen=True)
class Published:
    """What the vectors table currently points at."""

    run: str
    properties: dict
    manifest: dict


def published(lake: Lake) -> Published:
    """The run the lake currently serves; LakeError if there is none or it is unreadable."""
    if not lake.exists(f"{lake.vectors}/_delta_log"):
        raise LakeError(f"{lake.root} holds no bit-cipher vectors table; run `bitcipher build` "
                        f"first")
    check_lake(lake)
    props = _delta_properties(lake)
    run = props.get(PROP_RUN)
    if not run:
        raise LakeError(f"{lake.vectors} names no run; the lake is damaged: rebuild it")
    manifest_uri = f"{lake.run_dir(run)}/{MANIFEST}"
    if not lake.exists(manifest_uri):
        raise LakeError(f"run {run} referenced by {lake.vectors} is missing; rebuild the lake")
    return Published(run, props, json.loads(lake.read_text(manifest_uri)))


def read_table(spark, lake: Lake, name: str, run: Optional[str] = None, as_of=None):
    """Read one table of the lake, checking its schema."""
    if name == "vectors":
        reader = spark.read.format("delta")
        if as_of is not None:
            key = "versionAsOf" if str(as_of).isdigit() else "timestampAsOf"
            reader = reader.option(key, str(as_of))
        df = reader.load(lake.vectors)
        where = lake.vectors
    else:
        run = run or published(lake).run
        where = lake.table(run, name)
        df = spark.read.parquet(where)
    check_schema(df, name, where)
    return df


def register_tables(spark, lake: Lake) -> Published:
    """Register vectors, unigrams, cooccurrences and cipher as temporary views."""
    pub = published(lake)
    read_table(spark, lake, "vectors").createOrReplaceTempView("vectors")
    for name in RUN_TABLES:
        read_table(spark, lake, name, run=pub.run).createOrReplaceTempView(name)
    return pub
