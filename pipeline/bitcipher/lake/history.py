"""What a lake has published over time, read from the Delta logs: builds, refreshes, time travel.

Every commit on ``vectors`` that publishes a run carries the run's table properties (see
:mod:`bitcipher.lake.tables`); a refresh adds ``bitcipher.refresh`` (shards added, replaced, removed,
the version of the counts table it aggregated). The log is read with fsspec, without Spark.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Optional

from fsspec.core import url_to_fs

from bitcipher.lake.storage import fsspec_uri
from bitcipher.errors import LakeError
from bitcipher.lake.tables import PROP_OPTIONS, PROP_RUN, PROP_SNAPSHOT, Lake, published, read_table

PROP_REFRESH = "bitcipher.incremental"
PROP_COUNTS_VERSION = "bitcipher.counts_version"
PROP_EPOCH = "bitcipher.epoch"  # frozen runs: {"run": the epoch's exact run, "drift": {...}}
_COMMIT = re.compile(r"(\d{20})\.json$")


@dataclass(frozen=True)
class Commit:
    version: int
    timestamp: dt.datetime  # UTC
    operation: str
    user_metadata: Optional[str]
    configuration: Optional[dict]  # table properties when the commit changed them
    txn: dict  # appId -> version of the idempotent-write transactions it holds


def delta_commits(table_uri: str) -> list[Commit]:
    """Commits of a Delta table still in its log, oldest first ([] when there is no table)."""
    fs, root = url_to_fs(fsspec_uri(f"{table_uri}/_delta_log"))
    if not fs.exists(root):
        return []
    out = []
    for name in sorted(fs.ls(root, detail=False)):
        m = _COMMIT.search(name)
        if not m:
            continue
        info, config, txn = {}, None, {}
        with fs.open(name, "r") as fh:
            for line in fh:
                if not line.strip():
                    continue
                action = json.loads(line)
                if "commitInfo" in action:
                    info = action["commitInfo"]
                elif "metaData" in action:
                    config = action["metaData"].get("configuration") or {}
                elif "txn" in action:
                    txn[action["txn"]["appId"]] = int(action["txn"]["version"])
        millis = info.get("inCommitTimestamp") or info.get("timestamp") or 0
        out.append(Commit(int(m.group(1)),
                          dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc),
                          info.get("operation", ""), info.get("userMetadata"), config, txn))
    return out


def latest_version(table_uri: str) -> Optional[int]:
    """The newest version of a Delta table (None when there is none)."""
    fs, root = url_to_fs(fsspec_uri(f"{table_uri}/_delta_log"))
    if not fs.exists(root):
        return None
    versions = []
    for name in fs.ls(root, detail=False):
        base = name.rstrip("/").rsplit("/", 1)[-1]
        head = base.split(".", 1)[0]
        if head.isdigit() and (base.endswith(".json") or ".checkpoint" in base):
            versions.append(int(head))
    return max(versions) if versions else None


def published_runs(lake: Lake) -> list[str]:
    """The runs the lake's vectors table has published, oldest first, each once (where it
    was last published): those named by the commits still in the Delta log, and the run the
    table serves now last. [] when nothing was published yet.

    A build or refresh keeps the folders of the last ``--keep-runs`` of these; a run whose
    publishing commit has left the log cannot be reached by ``--as-of`` any more.
    """
    runs: list[str] = []
    for c in delta_commits(lake.vectors):
        run = (c.configuration or {}).get(PROP_RUN)
        if run:
            if run in runs:
                runs.remove(run)
            runs.append(run)
    try:
        current = published(lake).run
    except LakeError:  # no vectors table, or its run folder is gone
        return runs
    if current in runs:
        runs.remove(current)
    return [*runs, current]


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise LakeError(f"--as-of {text!r} is neither a version number nor an ISO timestamp "
                        f"(e.g. 2026-11-26T17:30:00Z)") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def resolve_version(lake: Lake, as_of) -> int:
    """The vectors table version for ``--as-of VERSION|TIMESTAMP`` (the last commit at or
    before a timestamp)."""
    commits = delta_commits(lake.vectors)
    if not commits:
        raise LakeError(f"{lake.root} holds no bit-cipher vectors table")
    text = str(as_of).strip()
    if text.isdigit():
        version = int(text)
        if version not in {c.version for c in commits}:
            raise LakeError(f"{lake.vectors} has no version {version} in its log (versions "
                            f"{commits[0].version}..{commits[-1].version})")
        return version
    when = parse_timestamp(text)
    before = [c for c in commits if c.timestamp <= when]
    if not before:
        raise LakeError(f"{lake.vectors} has no version at or before {when.isoformat()}; the "
                        f"first one is from {commits[0].timestamp.isoformat()}")
    return before[-1].version


def properties_at(lake: Lake, version: int) -> dict:
    """Table properties of the vectors table as of `version`."""
    config: dict = {}
    for c in delta_commits(lake.vectors):
        if c.version > version:
            break
        if c.configuration is not None:
            config = c.configuration
    return config


def register_tables_as_of(spark, lake: Lake, as_of) -> int:
    """Like :func:`bitcipher.lake.tables.register_tables`, at an earlier version; returns it.

    ``vectors`` is read with Delta time travel; ``unigrams``, ``cooccurrences`` and ``cipher``
    come from the run that version published, if its folder is still kept (a build or refresh
    keeps the folders of the ``--keep-runs N`` runs published before it, 1 by default).
    """
    version = resolve_version(lake, as_of)
    run = properties_at(lake, version).get(PROP_RUN)
    if not run:
        raise LakeError(f"version {version} of {lake.vectors} names no run")
    read_table(spark, lake, "vectors", as_of=version).createOrReplaceTempView("vectors")
    if not lake.exists(lake.run_dir(run)):
        import sys

        print(f"warning: the unigrams, cooccurrences and cipher tables of run {run} (version "
              f"{version}) were removed; only `vectors` is registered (a build or refresh "
              f"with --keep-runs N keeps the tables of the N runs published before it)",
              file=sys.stderr)
        return version
    for name in ("unigrams", "cooccurrences", "cipher"):
        read_table(spark, lake, name, run=run).createOrReplaceTempView(name)
    return version


def lake_history(lake: Lake) -> list[dict]:
    """One entry per published build or refresh, oldest first."""
    entries = []
    for c in delta_commits(lake.vectors):
        config = c.configuration
        if not config or PROP_RUN not in config:
            continue
        snapshot = json.loads(config.get(PROP_SNAPSHOT, "{}"))
        refresh = json.loads(config[PROP_REFRESH]) if PROP_REFRESH in config else None
        epoch = json.loads(config[PROP_EPOCH]) if PROP_EPOCH in config else None
        kind = "refresh" if refresh else "build"
        entries.append({
            "version": c.version,
            "time": c.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "kind": f"{kind} (frozen)" if epoch else kind,
            "epoch": epoch,
            "run": config[PROP_RUN],
            "shards": snapshot.get("shards"),
            "added": refresh.get("added") if refresh else None,
            "replaced": refresh.get("replaced") if refresh else None,
            "removed": refresh.get("removed") if refresh else None,
            "tokens": snapshot.get("tokens"),
            "options": json.loads(config.get(PROP_OPTIONS, "{}")),
        })
    return entries


def format_history(entries: list[dict], defaults: dict) -> list[tuple]:
    """Rows for printing: options shown as the ones that differ from `defaults`."""
    rows = []
    for e in entries:
        changed = {k: v for k, v in e["options"].items() if defaults.get(k) != v}
        opts = " ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "defaults"
        delta = ("" if e["kind"].startswith("build")
                 else f"+{e['added']} ~{e['replaced']} -{e['removed']}")
        rows.append((e["version"], e["time"], e["kind"], e["shards"], delta, e["tokens"],
                     opts, e["run"]))
    return rows


HISTORY_COLUMNS = ["version", "time", "kind", "shards", "+added ~replaced -removed", "tokens",
                   "options", "run"]
