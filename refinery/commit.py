"""The commit protocol: staged parts → published files → manifest → `_SUCCESS`.

Readers trust an output only when `_SUCCESS` exists, and then only the files `manifest.json` lists. Everything a
run writes before its commit lives under `<output>/_work/<run_id>/` — an underscore prefix that Spark, pyarrow
datasets and this project's own reader all skip — so a crash mid-run leaves nothing that looks published.

Order of the commit: (1) remove an old `_SUCCESS` (unpublish), (2) clear files of an earlier or crashed commit,
(3) move staged parts into `data/`, `quarantine/`, `droplog/`, (4) write `report.json` and `manifest.json`,
(5) write `_SUCCESS`, (6) delete the work folder. S3 has no atomic rename, so (3) is copy+delete per object;
the protocol stays correct because nothing is trusted before (5).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

import pyarrow.parquet as pq

from refinery.faults import maybe_fail
from refinery.fsio import (
    StorageError,
    describe_error,
    fatal_hint,
    full_uri,
    get_fs,
    is_fatal,
    join,
    protocol_of,
    read_bytes,
    retry_call,
    write_bytes,
)

SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"
REPORT = "report.json"
WORK_DIR = "_work"
PUBLISHED_DIRS = ("data", "quarantine", "droplog")


class OutputExistsError(Exception):
    pass


def read_json(uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    fs, path = get_fs(uri, storage_options)
    return json.loads(read_bytes(fs, path))


def committed_manifest(output_uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    fs, root = get_fs(output_uri, storage_options)
    if not retry_call(lambda: fs.exists(join(root, SUCCESS)), "read", output_uri):
        return None
    return json.loads(read_bytes(fs, join(root, MANIFEST)))


def check_output(output_uri: str, storage_options: dict[str, Any], run_id: str, if_exists: str) -> str:
    """Decide before any work: 'noop' (this exact run is already committed), 'fresh' or 'overwrite'."""
    try:
        manifest = committed_manifest(output_uri, storage_options)
    except Exception as e:
        hint = fatal_hint(e) if is_fatal(e) else ""
        raise StorageError(describe_error("read", output_uri, e) + hint) from None
    if manifest is None:
        return "fresh"
    if manifest.get("run_id") == run_id:
        return "noop"
    if if_exists == "overwrite":
        return "overwrite"
    raise OutputExistsError(
        f"{output_uri} already holds a committed run ({manifest.get('run_id')}) of another config or input; "
        "set output.if_exists: overwrite, or choose another output.uri"
    )


def probe_writable(work_uri: str, storage_options: dict[str, Any]) -> None:
    """Fail before any work when the output cannot be written (e.g. read-only credentials)."""
    fs, root = get_fs(work_uri, storage_options)
    probe = join(root, ".write-probe")
    try:
        write_bytes(fs, probe, b"ok")
        _remove(fs, probe)
    except Exception as e:
        if is_fatal(e):
            raise StorageError(describe_error("write", work_uri, e) + fatal_hint(e, "write")) from None
        raise StorageError(describe_error("write", work_uri, e)) from None


def commit(
    output_uri: str,
    storage_options: dict[str, Any],
    work_uri: str,
    files: list[dict[str, Any]],
    manifest: dict[str, Any],
    report: dict[str, Any],
) -> dict[str, Any]:
    """Publish staged files. `files` carry `path` relative to `work_uri` as '<segment>/<kind>/<name>'."""
    fs, root = get_fs(output_uri, storage_options)
    _, work_root = get_fs(work_uri, storage_options)
    success = join(root, SUCCESS)
    local = protocol_of(fs) == "file"
    _remove(fs, success)
    for name in (MANIFEST, REPORT):
        _remove(fs, join(root, name))
    for d in PUBLISHED_DIRS:
        _remove(fs, join(root, d), recursive=True)
    published = []
    for f in files:
        kind, name = f["path"].split("/")[-2:]
        src = join(work_root, f["path"])
        dst = join(root, kind, name)
        if local:
            if posixpath.dirname(dst) and not fs.exists(posixpath.dirname(dst)):
                fs.makedirs(posixpath.dirname(dst), exist_ok=True)
            fs.mv(src, dst)
        else:
            # S3 has no rename: a server-side copy (multipart copy for large objects), retried on throttling or
            # network errors. The staged originals go with the work folder after _SUCCESS.
            retry_call(lambda src=src, dst=dst: fs.copy(src, dst), "publish", full_uri(fs, dst))
        published.append({**{k: f[k] for k in ("rows", "bytes", "sha256")}, "path": f"{kind}/{name}", "kind": kind})
    maybe_fail("after_data")
    manifest = {**manifest, "files": sorted(published, key=lambda x: x["path"])}
    write_bytes(fs, join(root, REPORT), json.dumps(report, indent=2, sort_keys=False).encode())
    body = json.dumps(manifest, indent=2).encode()
    write_bytes(fs, join(root, MANIFEST), body)
    maybe_fail("before_success")
    marker = {"run_id": manifest.get("run_id"), "manifest_sha256": hashlib.sha256(body).hexdigest()}
    write_bytes(fs, success, json.dumps(marker).encode())
    try:
        _remove(fs, work_root, recursive=True)
    except Exception:  # leftover staging is harmless (underscore prefix, never trusted); the next run clears it
        pass
    return manifest


def _remove(fs, path: str, recursive: bool = False) -> None:
    """Delete if present, retrying transient errors (S3 deletes are idempotent)."""

    def _rm() -> None:
        if fs.exists(path):
            try:
                fs.rm(path, recursive=recursive)
            except FileNotFoundError:
                pass

    retry_call(_rm, "delete", full_uri(fs, path))


def verify(output_uri: str, storage_options: dict[str, Any] | None = None, deep: bool = True) -> list[str]:
    """Re-check a committed output against its manifest; returns the problems found (empty = verified)."""
    fs, root = get_fs(output_uri, storage_options)
    problems: list[str] = []
    if not fs.exists(join(root, SUCCESS)):
        return [f"{output_uri}: no {SUCCESS}: not a committed output"]
    body = read_bytes(fs, join(root, MANIFEST))
    marker = json.loads(read_bytes(fs, join(root, SUCCESS)) or b"{}")
    if marker.get("manifest_sha256") and marker["manifest_sha256"] != hashlib.sha256(body).hexdigest():
        problems.append("manifest.json does not match the checksum recorded in _SUCCESS")
    manifest = json.loads(body)
    data_rows = 0
    for f in manifest.get("files", []):
        path = join(root, f["path"])
        if not fs.exists(path):
            problems.append(f"{f['path']}: missing")
            continue
        if deep:
            h = hashlib.sha256()
            with fs.open(path, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(block)
            if h.hexdigest() != f["sha256"]:
                problems.append(f"{f['path']}: sha256 mismatch")
            with fs.open(path, "rb") as fh:
                rows = pq.ParquetFile(fh).metadata.num_rows
            if rows != f["rows"]:
                problems.append(f"{f['path']}: {rows} rows, manifest says {f['rows']}")
        if f.get("kind", "data") == "data":
            data_rows += f["rows"]
    counts = manifest.get("counts", {})
    if "rows_out" in counts and counts["rows_out"] != data_rows:
        problems.append(f"manifest counts.rows_out={counts['rows_out']} but data files hold {data_rows} rows")
    listed = {f["path"] for f in manifest.get("files", [])}
    for d in PUBLISHED_DIRS:
        if fs.exists(join(root, d)):
            for p in fs.find(join(root, d)):
                rel = posixpath.relpath(p, root)
                if not posixpath.basename(p).startswith(".") and rel not in listed:
                    problems.append(f"{rel}: present but not in the manifest")
    return problems
