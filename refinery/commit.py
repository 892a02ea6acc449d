"""The commit protocol: staged parts → published files → manifest → `_SUCCESS`.

Readers trust an output only when `_SUCCESS` exists, and then only the files `manifest.json` lists. Everything a
run writes before its commit lives under `<output>/_work/<run_id>/` — an underscore prefix that Spark, pyarrow
datasets and this project's own reader all skip — so a crash mid-run leaves nothing that looks published.

The output folder is ours or nobody's: a run writes only into an empty folder or one holding a refinery output,
and a commit deletes only files that a refinery manifest (the previous run's) or commit journal (a crashed
commit's) lists.

Order of the commit: (1) write the journal `_work/_commit.json` (what it will publish and remove), (2) remove an
old `_SUCCESS` (unpublish), the old manifest and report, and the files they listed, (3) move staged parts into
`data/`, `quarantine/`, `droplog/`, (4) write `report.json` and `manifest.json`, (5) write `_SUCCESS`, (6) delete
the journal and the work folder. S3 has no atomic rename, so (3) is copy+delete per object; the protocol stays
correct because nothing is trusted before (5).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pyarrow.parquet as pq

from refinery.faults import maybe_fail
from refinery.fsio import StorageError, describe_error, fatal_hint, is_fatal
from refinery.location import Location

SUCCESS = "_SUCCESS"
PURGED = "_PURGED"  # tombstone of a generation whose rows `refinery forget --purge`/`refinery gc` deleted
MANIFEST = "manifest.json"
REPORT = "report.json"
WORK_DIR = "_work"
JOURNAL = "_commit.json"
PUBLISHED_DIRS = ("data", "quarantine", "droplog")
_RUN_ID = re.compile(r"[0-9a-f]{16}")


class OutputExistsError(Exception):
    """The output holds something a run must not overwrite (another run, or files that are not ours)."""


def committed_manifest(
    output_uri: str, storage_options: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The manifest of a committed output, or None when the output is not committed."""
    out = Location(output_uri, storage_options)
    return out.join(MANIFEST).read_json() if out.join(SUCCESS).exists() else None


def check_output(output_uri: str, storage_options: dict[str, Any], run_id: str, if_exists: str) -> str:
    """Decide before any work: 'noop' (this exact run is already committed), 'fresh' or 'overwrite'.

    Anything that is neither empty nor a refinery output is refused here, before any work."""
    out = Location(output_uri, storage_options)
    try:
        manifest = committed_manifest(output_uri, storage_options)
        entries = None if manifest is not None else out.names()
    except Exception as e:
        hint = fatal_hint(e) if is_fatal(e) else ""
        raise StorageError(describe_error("read", output_uri, e) + hint) from None
    if manifest is None:
        if entries and not _looks_ours(out, set(entries)):
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


def _looks_ours(out: Location, entries: set[str]) -> bool:
    """Evidence that an uncommitted folder is a refinery output: a manifest we wrote, or a `_work/` holding only
    run-id folders and our commit journal (a crashed run)."""
    if MANIFEST in entries:
        m = out.join(MANIFEST).read_json_or_none()
        if isinstance(m, dict) and "run_id" in m and "files" in m:
            return True
    if WORK_DIR in entries:
        inside = out.join(WORK_DIR).names()
        return all(_RUN_ID.fullmatch(n) or n in (JOURNAL, ".write-probe") for n in inside)
    return False


def probe_writable(work_uri: str, storage_options: dict[str, Any]) -> None:
    """Fail before any work when the output cannot be written (e.g. read-only credentials)."""
    probe = Location(work_uri, storage_options).join(".write-probe")
    try:
        probe.write_bytes(b"ok")
        probe.remove()
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
    out = Location(output_uri, storage_options)
    work = Location(work_uri, storage_options)
    journal = out.join(WORK_DIR, JOURNAL)
    published = [
        {
            **{k: f[k] for k in ("rows", "bytes", "sha256")},
            "path": "/".join(f["path"].split("/")[-2:]),
            "kind": f["path"].split("/")[-2],
            "src": f["path"],
        }
        for f in files
    ]
    new_paths = {f["path"] for f in published}
    stale = set(_listed_files(out.join(MANIFEST)))
    previous = journal.read_json_or_none()
    if previous:  # an earlier commit crashed half-way: what it published and what it meant to remove
        stale |= {p for p in [*previous.get("publish", []), *previous.get("remove", [])] if _is_part_path(p)}
    stale -= new_paths  # same name = same bytes (parts are named by their sha256): moved over below
    journal.write_json(
        {"run_id": manifest.get("run_id"), "publish": sorted(new_paths), "remove": sorted(stale)}
    )
    for name in (SUCCESS, MANIFEST, REPORT, "report.html"):
        out.join(name).remove()
    out.remove_files(sorted(stale))
    for f in published:
        src, dest = work.join(f.pop("src")), out.join(f["path"])
        # redoing a commit that crashed while moving: a part already moved is there under the same name (parts are
        # named by their sha256, and a move lands whole), and no longer staged
        if previous and not src.exists() and dest.exists():
            continue
        src.move_to(dest)
    maybe_fail("after_data")
    manifest = {**manifest, "files": sorted(published, key=lambda x: x["path"])}
    out.join(REPORT).write_bytes(json.dumps(report, indent=2, sort_keys=False).encode())
    body = json.dumps(manifest, indent=2).encode()
    out.join(MANIFEST).write_bytes(body)
    maybe_fail("before_success")
    marker = {"run_id": manifest.get("run_id"), "manifest_sha256": hashlib.sha256(body).hexdigest()}
    out.join(SUCCESS).write_bytes(json.dumps(marker).encode())
    try:
        journal.remove()
        work.remove(recursive=True)
    except (
        Exception
    ):  # leftover staging is harmless (underscore prefix, never trusted); the next run clears it
        pass
    return manifest


def _listed_files(manifest: Location) -> list[str]:
    """Paths (relative to the output) of the files a refinery manifest lists; none if there is no manifest."""
    m = manifest.read_json_or_none()
    if not isinstance(m, dict):
        return []
    return [f["path"] for f in m.get("files", []) if isinstance(f, dict) and _is_part_path(f.get("path"))]


def _is_part_path(path: Any) -> bool:
    """Only `<published dir>/<name>` paths: a manifest is data, and data must not steer a delete elsewhere."""
    if not isinstance(path, str):
        return False
    parts = path.split("/")
    return len(parts) == 2 and parts[0] in PUBLISHED_DIRS and parts[1] not in ("", ".", "..")


def verify(output_uri: str, storage_options: dict[str, Any] | None = None, deep: bool = True) -> list[str]:
    """Re-check a committed output against its manifest; returns the problems found (empty = verified)."""
    out = Location(output_uri, storage_options)
    if not out.join(SUCCESS).exists():
        tomb = out.join(PURGED).read_json_or_none()
        if isinstance(tomb, dict):
            return [
                f"{output_uri}: purged at {tomb.get('purged_at')} (an erasure request superseded it; its rows are "
                f"deleted): read its current generation, {tomb.get('superseded_by')} (`refinery snapshots`)"
            ]
        return [f"{output_uri}: no {SUCCESS}: not a committed output"]
    problems: list[str] = []
    body = out.join(MANIFEST).read_bytes()
    marker = json.loads(out.join(SUCCESS).read_bytes() or b"{}")
    if marker.get("manifest_sha256") and marker["manifest_sha256"] != hashlib.sha256(body).hexdigest():
        problems.append("manifest.json does not match the checksum recorded in _SUCCESS")
    manifest = json.loads(body)
    data_rows = all_rows = 0
    paths = [f["path"] for f in manifest.get("files", [])]
    for p in sorted({p for p in paths if paths.count(p) > 1}):
        problems.append(
            f"{p}: listed {paths.count(p)} times in the manifest (its rows would be counted twice)"
        )
    for f in manifest.get("files", []):
        loc = out.join(f["path"])
        if not loc.exists():
            problems.append(f"{f['path']}: missing")
            continue
        if deep:
            if loc.sha256() != f["sha256"]:
                problems.append(f"{f['path']}: sha256 mismatch")
            with loc.open("rb") as fh:
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
    # … except rows an erasure request removed (`refinery forget`), counted under counts.forgotten
    if "rows_read" in counts and counts["rows_read"] - counts.get("forgotten", 0) != all_rows:
        gone = f" - {counts['forgotten']} forgotten" if counts.get("forgotten") else ""
        problems.append(
            f"manifest counts.rows_read={counts['rows_read']}{gone} but its files hold {all_rows} rows"
        )
    listed = set(paths)
    for d in PUBLISHED_DIRS:
        folder = out.join(d)
        for loc in folder.find():
            rel = f"{d}/{loc.path[len(folder.path.rstrip('/')) + 1 :]}"
            if not loc.name.startswith(".") and rel not in listed:
                problems.append(f"{rel}: present but not in the manifest")
    return problems
