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
import re
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
    """Decide before any work: 'noop' (this exact run is already committed), 'fresh' or 'overwrite'.

    The output folder is ours or nobody's: a run writes only into an empty folder or one that holds a refinery
    output (a committed run, a manifest, or a `_work/` of our runs). Anything else is refused here, before any
    work, because a commit replaces what the previous run published and must never touch files it did not make.
    """
    try:
        manifest = committed_manifest(output_uri, storage_options)
        entries = None if manifest is not None else _top_entries(output_uri, storage_options)
    except Exception as e:
        hint = fatal_hint(e) if is_fatal(e) else ""
        raise StorageError(describe_error("read", output_uri, e) + hint) from None
    if manifest is None:
        if entries and not _looks_ours(output_uri, storage_options, entries):
            shown = ", ".join(sorted(entries)[:5]) + (", …" if len(entries) > 5 else "")
            raise OutputExistsError(
                f"{output_uri} is not empty and holds no refinery output ({shown}); refusing to write there. "
                "Choose an empty folder (or one a refinery run wrote) as output.uri"
            )
        return "fresh"
    if manifest.get("run_id") == run_id:
        return "noop"
    if if_exists == "overwrite":
        return "overwrite"
    raise OutputExistsError(
        f"{output_uri} already holds a committed run ({manifest.get('run_id')}) of another config or input; "
        "set output.if_exists: overwrite, or choose another output.uri"
    )


# What a run or a refresh leaves at the top of its output folder.
OUR_ENTRIES = frozenset({SUCCESS, MANIFEST, REPORT, "report.html", WORK_DIR, "_state", *PUBLISHED_DIRS})
JOURNAL = "_commit.json"


def _top_entries(output_uri: str, storage_options: dict[str, Any]) -> set[str] | None:
    """Names directly under the output (None when it does not exist)."""
    fs, root = get_fs(output_uri, storage_options)
    try:
        listing = retry_call(lambda: fs.ls(root, detail=False), "list", output_uri)
    except FileNotFoundError:
        return None
    names = {posixpath.basename(p.rstrip("/")) for p in listing}
    names.discard(posixpath.basename(root.rstrip("/")))  # some stores list a folder marker as itself
    return names


def _looks_ours(output_uri: str, storage_options: dict[str, Any], entries: set[str]) -> bool:
    """Evidence that an uncommitted folder is a refinery output: a manifest we wrote, or a `_work/` holding only
    run-id folders and our commit journal (a crashed run)."""
    fs, root = get_fs(output_uri, storage_options)
    if MANIFEST in entries:
        try:
            m = json.loads(read_bytes(fs, join(root, MANIFEST)))
            if isinstance(m, dict) and "run_id" in m and "files" in m:
                return True
        except (ValueError, OSError):
            pass
    if WORK_DIR in entries:
        try:
            inside = {posixpath.basename(p.rstrip("/")) for p in fs.ls(join(root, WORK_DIR), detail=False)}
        except FileNotFoundError:
            inside = set()
        return all(_RUN_ID.fullmatch(n) or n in (JOURNAL, ".write-probe") for n in inside)
    return False


_RUN_ID = re.compile(r"[0-9a-f]{16}")


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
    """Publish staged files. `files` carry `path` relative to `work_uri` as '<segment>/<kind>/<name>'.

    Only files a refinery manifest or commit journal lists are ever deleted: the previous run's (its manifest)
    and a crashed commit's (its journal, `_work/_commit.json`, written before anything is touched)."""
    fs, root = get_fs(output_uri, storage_options)
    _, work_root = get_fs(work_uri, storage_options)
    success = join(root, SUCCESS)
    journal = join(root, WORK_DIR, JOURNAL)
    local = protocol_of(fs) == "file"
    published = [{**{k: f[k] for k in ("rows", "bytes", "sha256")}, "path": "/".join(f["path"].split("/")[-2:]),
                  "kind": f["path"].split("/")[-2], "src": f["path"]} for f in files]
    new_paths = {f["path"] for f in published}
    stale = set(_listed_files(fs, join(root, MANIFEST)))
    previous = _read_json_or_none(fs, journal)
    if previous:  # an earlier commit crashed half-way: what it published and what it meant to remove
        stale |= {p for p in [*previous.get("publish", []), *previous.get("remove", [])] if _is_part_path(p)}
    stale -= new_paths  # same name = same bytes (parts are named by their sha256): moved over below
    write_bytes(fs, journal, json.dumps({"run_id": manifest.get("run_id"), "publish": sorted(new_paths),
                                         "remove": sorted(stale)}).encode())
    _remove(fs, success)
    for name in (MANIFEST, REPORT, "report.html"):
        _remove(fs, join(root, name))
    _remove_files(fs, [join(root, p) for p in sorted(stale)])
    for f in published:
        src = join(work_root, f.pop("src"))
        dst = join(root, f["path"])
        if local:
            if posixpath.dirname(dst) and not fs.exists(posixpath.dirname(dst)):
                fs.makedirs(posixpath.dirname(dst), exist_ok=True)
            fs.mv(src, dst)
        else:
            # S3 has no rename: a server-side copy (multipart copy for large objects), retried on throttling or
            # network errors. The staged originals go with the work folder after _SUCCESS.
            retry_call(lambda src=src, dst=dst: fs.copy(src, dst), "publish", full_uri(fs, dst))
    maybe_fail("after_data")
    manifest = {**manifest, "files": sorted(published, key=lambda x: x["path"])}
    write_bytes(fs, join(root, REPORT), json.dumps(report, indent=2, sort_keys=False).encode())
    body = json.dumps(manifest, indent=2).encode()
    write_bytes(fs, join(root, MANIFEST), body)
    maybe_fail("before_success")
    marker = {"run_id": manifest.get("run_id"), "manifest_sha256": hashlib.sha256(body).hexdigest()}
    write_bytes(fs, success, json.dumps(marker).encode())
    try:
        _remove(fs, journal)
        _remove(fs, work_root, recursive=True)
    except Exception:  # leftover staging is harmless (underscore prefix, never trusted); the next run clears it
        pass
    return manifest


def _listed_files(fs, manifest_path: str) -> list[str]:
    """Paths (relative to the output) of the files a refinery manifest lists; none if there is no manifest."""
    m = _read_json_or_none(fs, manifest_path)
    if not isinstance(m, dict):
        return []
    return [f["path"] for f in m.get("files", []) if isinstance(f, dict) and _is_part_path(f.get("path"))]


def _is_part_path(path: Any) -> bool:
    """Only `<published dir>/<name>` paths: a manifest is data, and data must not steer a delete elsewhere."""
    if not isinstance(path, str):
        return False
    parts = path.split("/")
    return len(parts) == 2 and parts[0] in PUBLISHED_DIRS and parts[1] not in ("", ".", "..")


def _read_json_or_none(fs, path: str) -> Any:
    try:
        if not retry_call(lambda: fs.exists(path), "read", full_uri(fs, path)):
            return None
        return json.loads(read_bytes(fs, path))
    except (ValueError, FileNotFoundError):
        return None


def _remove_files(fs, paths: list[str]) -> None:
    """Delete these files if present (batched on object stores: one request per 1,000 keys)."""
    if not paths:
        return
    if protocol_of(fs) == "file":
        for p in paths:
            try:
                fs.rm_file(p)
            except FileNotFoundError:
                pass
        return
    for i in range(0, len(paths), 1000):
        chunk = paths[i : i + 1000]
        retry_call(lambda chunk=chunk: fs.rm(chunk), "delete", full_uri(fs, chunk[0]))


def remove_tree(uri: str, storage_options: dict[str, Any]) -> None:
    fs, path = get_fs(uri, storage_options)
    _remove(fs, path, recursive=True)


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
    data_rows = all_rows = 0
    paths = [f["path"] for f in manifest.get("files", [])]
    for p in sorted({p for p in paths if paths.count(p) > 1}):
        problems.append(f"{p}: listed {paths.count(p)} times in the manifest (its rows would be counted twice)")
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
        all_rows += f["rows"]
    counts = manifest.get("counts", {})
    if "rows_out" in counts and counts["rows_out"] != data_rows:
        problems.append(f"manifest counts.rows_out={counts['rows_out']} but data files hold {data_rows} rows")
    # every row read is in exactly one data, quarantine or droplog part
    if "rows_read" in counts and counts["rows_read"] != all_rows:
        problems.append(f"manifest counts.rows_read={counts['rows_read']} but its files hold {all_rows} rows")
    listed = {f["path"] for f in manifest.get("files", [])}
    for d in PUBLISHED_DIRS:
        if fs.exists(join(root, d)):
            for p in fs.find(join(root, d)):
                rel = posixpath.relpath(p, root)
                if not posixpath.basename(p).startswith(".") and rel not in listed:
                    problems.append(f"{rel}: present but not in the manifest")
    return problems
