"""Snapshot layout, the `latest` pointer and the refresh state store (what has been processed).

```
<root>/
  snapshots/<snapshot_id>/     one committed run output each (manifest, report, _SUCCESS, data/ …)
                               + DATACARD.md, monitoring.json, report.html
  latest                       {"snapshot_id", "run_id", "manifest_sha256"}: the newest committed snapshot
  _state/refresh/inputs.json   processed inputs: uri → {size, etag, mtime, sha256, snapshot_id}
  _state/refresh/pending.json  the snapshot being published (for crash recovery); absent when idle
  _state/refresh/LOCK          the lease lock (refinery/refresh/lock.py)
  _state/refresh/runlog.jsonl  the append-only run log (refinery/refresh/runlog.py)
  _state/dedup/…               dedup index generations (refinery/state.py)
```

Snapshot ids sort by time: `YYYYMMDD` (the logical date of the refresh), and `YYYYMMDD-HHMMSS-<run id>` when a
snapshot of that date already exists. Every small object is written whole (fsio.write_bytes: atomic rename
locally, one PUT on object stores), so a reader sees the old or the new version, never a mix.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from refinery.commit import PURGED, SUCCESS, committed_manifest
from refinery.fsio import InputFile, join
from refinery.location import Location

SNAPSHOTS = "snapshots"
LATEST = "latest"
REFRESH_STATE = "_state/refresh"


def snapshots_uri(root: str) -> str:
    return join(root, SNAPSHOTS)


def snapshot_uri(root: str, snapshot_id: str) -> str:
    return join(root, SNAPSHOTS, snapshot_id)


def refresh_state_uri(root: str) -> str:
    return join(root, REFRESH_STATE)


def _state_file(root: str, name: str, so: dict[str, Any] | None) -> Location:
    return Location(refresh_state_uri(root), so).join(name)


# -- pointer --------------------------------------------------------------------------------------------------
def read_latest(root: str, so: dict[str, Any] | None = None) -> dict[str, Any] | None:
    return Location(root, so).join(LATEST).read_json_or_none(strict=True)


def write_latest(root: str, snapshot_id: str, so: dict[str, Any] | None = None) -> dict[str, Any]:
    """Point `latest` at a snapshot; refuses one that is not committed (no `_SUCCESS`)."""
    snap = Location(snapshot_uri(root, snapshot_id), so)
    marker = snap.join(SUCCESS).read_json_or_none(strict=True)
    if marker is None:
        raise RuntimeError(f"refusing to point latest at {snap.uri}: it is not committed")
    body = {
        "snapshot_id": snapshot_id,
        "run_id": marker.get("run_id"),
        "manifest_sha256": marker.get("manifest_sha256"),
        "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    Location(root, so).join(LATEST).write_json(body)
    return body


def committed_snapshots(root: str, so: dict[str, Any] | None = None) -> list[str]:
    """Ids of snapshots that hold `_SUCCESS`, sorted (oldest first); also those whose first generation an erasure
    request purged (`_PURGED` instead of `_SUCCESS`): the snapshot lives on in a later generation
    (`generations.json`, jobs/forget.py), and refresh recovery must never take the folder for a crashed one."""
    return sorted(
        s.name
        for s in Location(snapshots_uri(root), so).children()
        if s.join(SUCCESS).exists() or s.join(PURGED).exists()
    )


def snapshot_manifest(root: str, snapshot_id: str, so: dict[str, Any] | None = None) -> dict[str, Any] | None:
    return committed_manifest(snapshot_uri(root, snapshot_id), so)


def new_snapshot_id(
    root: str,
    run_id: str,
    date: dt.date | None = None,
    so: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> str:
    """`YYYYMMDD`, or `YYYYMMDD-HHMMSS-<run id>` when that date already has a snapshot folder."""
    now = now or dt.datetime.now(dt.UTC)
    day = (date or now.date()).strftime("%Y%m%d")
    if not Location(snapshot_uri(root, day), so).exists():
        return day
    return f"{day}-{now.strftime('%H%M%S')}-{run_id[:8]}"


# -- processed-inputs state -----------------------------------------------------------------------------------
def read_inputs_state(root: str, so: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return (_state_file(root, "inputs.json", so).read_json_or_none(strict=True) or {}).get("inputs", {})


def write_inputs_state(
    root: str, inputs: dict[str, dict[str, Any]], snapshot_id: str | None, so: dict[str, Any] | None = None
) -> None:
    _state_file(root, "inputs.json", so).write_json(
        {"last_snapshot": snapshot_id, "inputs": dict(sorted(inputs.items()))}
    )


def read_pending(root: str, so: dict[str, Any] | None = None) -> dict[str, Any] | None:
    return _state_file(root, "pending.json", so).read_json_or_none(strict=True)


def write_pending(root: str, pending: dict[str, Any], so: dict[str, Any] | None = None) -> None:
    _state_file(root, "pending.json", so).write_json(pending)


def clear_pending(root: str, so: dict[str, Any] | None = None) -> None:
    _state_file(root, "pending.json", so).remove()


def content_sha256(uri: str, so: dict[str, Any] | None = None) -> str:
    return Location(uri, so).sha256()


def diff_inputs(
    files: list[InputFile], known: dict[str, dict[str, Any]], so: dict[str, Any] | None = None
) -> tuple[list[InputFile], list[InputFile], dict[str, dict[str, Any]]]:
    """Split listed files into (new, changed) and return the state entries for every listed file.

    A known file whose size and etag/mtime are unchanged is not re-read. Otherwise its content is hashed: a new
    hash means changed (or new); the same hash (a touch, a copy with a new mtime) only refreshes the entry.
    """
    new, changed = [], []
    entries: dict[str, dict[str, Any]] = {}
    for f in files:
        old = known.get(f.uri)
        entry = {"size": f.size, "etag": f.etag, "mtime": f.mtime}
        if old and old.get("size") == f.size and old.get("etag") == f.etag and old.get("mtime") == f.mtime:
            entries[f.uri] = {**old}
            continue
        entry["sha256"] = content_sha256(f.uri, so)
        if old is None:
            new.append(f)
        elif old.get("sha256") != entry["sha256"]:
            changed.append(f)
            entry["previous_sha256"] = old.get("sha256")
        else:
            entry["snapshot_id"] = old.get("snapshot_id")
        entries[f.uri] = entry
    return new, changed, entries
