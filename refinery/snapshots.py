"""Snapshot layout, the `latest` pointer and the refresh state store (what has been processed).

```
<root>/
  snapshots/<snapshot_id>/     one committed run output each (manifest, report, _SUCCESS, data/ …)
                               + DATACARD.md, monitoring.json, report.html
  latest                       {"snapshot_id", "run_id", "manifest_sha256"}: the newest committed snapshot
  _state/refresh/inputs.json   processed inputs: uri → {size, etag, mtime, sha256, snapshot_id}
  _state/refresh/pending.json  the snapshot being published (for crash recovery); absent when idle
  _state/refresh/LOCK          the lease lock (refinery/lock.py)
  _state/refresh/runlog.jsonl  the append-only run log (refinery/runlog.py)
  _state/dedup/…               dedup index generations (refinery/state.py)
```

Snapshot ids sort by time: `YYYYMMDD` (the logical date of the refresh), and `YYYYMMDD-HHMMSS-<run id>` when a
snapshot of that date already exists. Every small object is written whole (fsio.write_bytes: atomic rename
locally, one PUT on object stores), so a reader sees the old or the new version, never a mix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import posixpath
from typing import Any

from refinery.commit import SUCCESS, committed_manifest
from refinery.fsio import InputFile, get_fs, join, read_bytes, write_bytes

SNAPSHOTS = "snapshots"
LATEST = "latest"
REFRESH_STATE = "_state/refresh"


def snapshots_uri(root: str) -> str:
    return join(root, SNAPSHOTS)


def snapshot_uri(root: str, snapshot_id: str) -> str:
    return join(root, SNAPSHOTS, snapshot_id)


def refresh_state_uri(root: str) -> str:
    return join(root, REFRESH_STATE)


def _read_json(uri: str, so: dict[str, Any] | None) -> dict[str, Any] | None:
    fs, path = get_fs(uri, so)
    try:
        return json.loads(read_bytes(fs, path))
    except FileNotFoundError:
        return None


def _write_json(uri: str, obj: Any, so: dict[str, Any] | None) -> None:
    fs, path = get_fs(uri, so)
    write_bytes(fs, path, json.dumps(obj, indent=2, sort_keys=True).encode())


# -- pointer --------------------------------------------------------------------------------------------------
def read_latest(root: str, so: dict[str, Any] | None = None) -> dict[str, Any] | None:
    return _read_json(join(root, LATEST), so)


def write_latest(root: str, snapshot_id: str, so: dict[str, Any] | None = None) -> dict[str, Any]:
    """Point `latest` at a snapshot; refuses one that is not committed (no `_SUCCESS`)."""
    snap = snapshot_uri(root, snapshot_id)
    fs, path = get_fs(snap, so)
    if not fs.exists(join(path, SUCCESS)):
        raise RuntimeError(f"refusing to point latest at {snap}: it is not committed")
    marker = json.loads(read_bytes(fs, join(path, SUCCESS)))
    body = {"snapshot_id": snapshot_id, "run_id": marker.get("run_id"), "manifest_sha256": marker.get("manifest_sha256"),
            "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    _write_json(join(root, LATEST), body, so)
    return body


def committed_snapshots(root: str, so: dict[str, Any] | None = None) -> list[str]:
    """Ids of snapshots that hold `_SUCCESS`, sorted (oldest first)."""
    fs, path = get_fs(snapshots_uri(root), so)
    if not fs.exists(path):
        return []
    out = []
    for entry in fs.ls(path, detail=False):
        sid = posixpath.basename(entry.rstrip("/"))
        if fs.exists(join(entry, SUCCESS)):
            out.append(sid)
    return sorted(out)


def snapshot_manifest(root: str, snapshot_id: str, so: dict[str, Any] | None = None) -> dict[str, Any] | None:
    return committed_manifest(snapshot_uri(root, snapshot_id), so)


def new_snapshot_id(root: str, run_id: str, date: dt.date | None = None, so: dict[str, Any] | None = None,
                    now: dt.datetime | None = None) -> str:
    """`YYYYMMDD`, or `YYYYMMDD-HHMMSS-<run id>` when that date already has a snapshot folder."""
    now = now or dt.datetime.now(dt.UTC)
    day = (date or now.date()).strftime("%Y%m%d")
    fs, path = get_fs(snapshot_uri(root, day), so)
    if not fs.exists(path):
        return day
    return f"{day}-{now.strftime('%H%M%S')}-{run_id[:8]}"


# -- processed-inputs state -----------------------------------------------------------------------------------
def read_inputs_state(root: str, so: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return (_read_json(join(refresh_state_uri(root), "inputs.json"), so) or {}).get("inputs", {})


def write_inputs_state(root: str, inputs: dict[str, dict[str, Any]], snapshot_id: str | None,
                       so: dict[str, Any] | None = None) -> None:
    _write_json(join(refresh_state_uri(root), "inputs.json"),
                {"last_snapshot": snapshot_id, "inputs": dict(sorted(inputs.items()))}, so)


def read_pending(root: str, so: dict[str, Any] | None = None) -> dict[str, Any] | None:
    return _read_json(join(refresh_state_uri(root), "pending.json"), so)


def write_pending(root: str, pending: dict[str, Any], so: dict[str, Any] | None = None) -> None:
    _write_json(join(refresh_state_uri(root), "pending.json"), pending, so)


def clear_pending(root: str, so: dict[str, Any] | None = None) -> None:
    fs, path = get_fs(join(refresh_state_uri(root), "pending.json"), so)
    if fs.exists(path):
        fs.rm(path)


def content_sha256(uri: str, so: dict[str, Any] | None = None) -> str:
    fs, path = get_fs(uri, so)
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def diff_inputs(files: list[InputFile], known: dict[str, dict[str, Any]], so: dict[str, Any] | None = None
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
