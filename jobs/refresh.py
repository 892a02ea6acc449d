"""The nightly refresh: publish the new and changed inputs as a new, verifiable snapshot.

`python -m jobs.refresh --config X [--set k=v] [--date YYYY-MM-DD]` is what `ray job submit` runs;
`refinery refresh` is the same. Steps (docs/REFRESH.md has the full story):

1. Take the lease lock `<root>/_state/refresh/LOCK` (a second refresh refuses, exit 75) and log `start`.
2. Recover: a pending snapshot that committed before a crash is rolled forward (pointer, index generations, state);
   one that did not commit is rolled back (its folder and its uncommitted index generation are deleted).
3. List inputs, compare with the state store (size, etag/mtime, then content sha256): only new or changed files
   are processed. A changed file is re-read whole; its rows that are already published are dropped by the dedup
   stages as `dup_of_published` (exact or near), so the snapshot holds only its new or edited documents.
   Published snapshots are immutable: rows of the old version stay in the snapshot that published them.
4. Run the pipeline on just those files into `<root>/snapshots/<id>/` (`finalize_state=False`: the dedup index
   generation of this run stays invisible), then write the profile, drift, data card and HTML report into it.
5. Move `latest` to the snapshot, then commit the dedup index generations, then the processed-inputs state.
6. Log `end` with the outcome; exit 3 when a drift threshold is exceeded (after publishing).

A run that publishes no snapshot (nothing new, or only recovery) writes its own small report,
`<root>/reports/<UTC time>-<refresh id>.html`, named in its run-log `end` line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from refinery.commit import SUCCESS, OutputExistsError, committed_manifest
from refinery.config import RunConfig
from refinery.faults import maybe_fail
from refinery.fsio import InputFile, join, list_inputs
from refinery.location import Location
from refinery.monitoring.datacard import render as render_datacard
from refinery.monitoring.drift import compare_profiles
from refinery.monitoring.profile import build_profile
from refinery.monitoring.report_html import render as render_html
from refinery.monitoring.report_html import render_run
from refinery.progress import progress
from refinery.redact import scrub
from refinery.refresh import runlog
from refinery.refresh.lock import LeaseLock, LockHeld
from refinery.refresh.snapshots import (
    LATEST,
    REFRESH_STATE,
    SNAPSHOTS,
    clear_pending,
    committed_snapshots,
    diff_inputs,
    new_snapshot_id,
    read_inputs_state,
    read_latest,
    read_pending,
    refresh_state_uri,
    snapshot_uri,
    snapshots_uri,
    write_inputs_state,
    write_latest,
    write_pending,
)
from refinery.state import GEN_PREFIX, MARKER, commit_generations

MONITORING = "monitoring.json"
DATACARD = "DATACARD.md"
REPORT_HTML = "report.html"
RUN_REPORTS = "reports"  # <root>/reports/: reports of runs that published no snapshot
log = logging.getLogger("refinery.refresh")
RECENT_RUNS = 10  # run-log end lines shown in such a report


@dataclass
class RefreshResult:
    outcome: str  # published | nothing_new | recovered
    snapshot_id: str | None = None
    previous_snapshot: str | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(
        default_factory=list
    )  # runs without a snapshot: what was listed, and why skipped
    missing_inputs: int = 0  # processed earlier, no longer listed
    latest: dict[str, Any] | None = None  # the `latest` pointer record
    report_uri: str | None = None  # the run report of a run that published no snapshot


def derive_config(cfg: RunConfig, files: list[str], snap_uri: str) -> RunConfig:
    """The run config of one snapshot: only `files` as input, the snapshot as output, the shared state."""
    raw = cfg.model_dump(mode="python")
    raw["input"]["files"] = list(files)
    raw["output"]["uri"] = snap_uri
    raw["output"]["state_uri"] = cfg.output.resolved_state_uri()
    raw["output"]["if_exists"] = "overwrite"
    return RunConfig.model_validate(raw)


def check_refresh_root(root: str, so: dict[str, Any]) -> None:
    """A refresh writes only into an empty folder or one a refresh made (its `latest`, `snapshots/` or
    `_state/refresh/`): recovery deletes uncommitted snapshots, and that must never reach someone else's files."""
    loc = Location(root, so)
    names = set(loc.names())
    ours = bool(names & {SNAPSHOTS, LATEST}) or loc.join(REFRESH_STATE).exists()
    if names and not ours:
        raise OutputExistsError(
            f"{root} is not empty and holds no refresh output ({', '.join(sorted(names)[:5])}); "
            "refusing to publish snapshots there. Choose an empty folder as output.uri"
        )


def refresh(
    cfg: RunConfig, config_source: str = "<config>", date: dt.date | None = None, lock_ttl_s: float = 6 * 3600
) -> RefreshResult:
    root = cfg.output.uri.rstrip("/")
    so = cfg.output.storage_options
    state_uri = refresh_state_uri(root)
    check_refresh_root(root, so)
    lock = LeaseLock(join(state_uri, "LOCK"), ttl_s=lock_ttl_s, storage_options=so)
    refresh_id = uuid.uuid4().hex[:12]
    try:
        lock.acquire()
    except LockHeld as e:
        runlog.append(
            state_uri,
            {"event": "end", "refresh_id": refresh_id, "outcome": "refused", "detail": str(e)},
            so,
            locked=False,
        )
        raise
    t0 = time.time()
    runlog.append(
        state_uri,
        {
            "event": "start",
            "refresh_id": refresh_id,
            "config": config_source,
            "config_hash": cfg.config_hash(),
            "owner": lock.owner,
        },
        so,
    )
    try:
        result = _refresh_locked(cfg, config_source, root, so, date, lock)
    except BaseException as e:
        runlog.append(
            state_uri,
            {
                "event": "end",
                "refresh_id": refresh_id,
                "outcome": "failed",
                "error": f"{type(e).__name__}: {scrub(str(e), cfg.secrets())[:500]}",
                "seconds": round(time.time() - t0, 3),
            },
            so,
        )
        lock.release()
        raise
    outcome = "alert" if result.alerts else result.outcome
    end = {
        "event": "end",
        "refresh_id": refresh_id,
        "outcome": outcome,
        "snapshot_id": result.snapshot_id,
        "previous_snapshot": result.previous_snapshot,
        "recovered": result.recovered,
        "counts": result.counts,
        "alerts": [a["metric"] for a in result.alerts],
        "seconds": round(time.time() - t0, 3),
    }
    if result.outcome != "published":
        rel = write_run_report(cfg, root, so, refresh_id, config_source, t0, end, result)
        if rel:
            end["report"] = rel
            result.report_uri = join(root, rel)
    runlog.append(state_uri, end, so)
    lock.release()
    return result


def write_run_report(
    cfg: RunConfig,
    root: str,
    so: dict[str, Any],
    refresh_id: str,
    config_source: str,
    t0: float,
    end: dict[str, Any],
    result: RefreshResult,
) -> str | None:
    """Write the report of a run that published no snapshot to `<root>/reports/`; returns its path under root.

    Best effort: the run's outcome is already decided and its state written, so a failure here is printed and
    never changes the exit code."""
    started = dt.datetime.fromtimestamp(t0, dt.UTC)
    rel = f"{RUN_REPORTS}/{started.strftime('%Y%m%dT%H%M%SZ')}-{refresh_id}.html"
    uri = join(root, rel)
    try:
        latest_counts: dict[str, Any] = {}
        if result.latest:
            manifest = committed_manifest(snapshot_uri(root, result.latest["snapshot_id"]), so) or {}
            latest_counts = manifest.get("counts", {})
        recent = [r for r in runlog.read(refresh_state_uri(root), so) if r.get("event") == "end"][
            -RECENT_RUNS:
        ]
        page = render_run(
            {
                **end,
                "config": config_source,
                "config_hash": cfg.config_hash(),
                "started_at": started.isoformat(timespec="seconds"),
                "finished_at": runlog.now_iso(),
                "inputs": [{**f, "uri": scrub(f["uri"], cfg.secrets())} for f in result.inputs],
                "missing_inputs": result.missing_inputs,
                "latest": result.latest,
                "latest_counts": latest_counts,
                "alerts": result.alerts,
                "recent": recent,
            }
        )
        Location(uri, so).write_bytes(page.encode())
    except Exception as e:  # reporting must not turn a finished run into a failure
        log.warning(
            "could not write the run report %s: %s: %s",
            uri,
            type(e).__name__,
            scrub(str(e), cfg.secrets())[:300],
        )
        return None
    progress("refresh run report: %s", uri)
    return rel


def _refresh_locked(
    cfg: RunConfig, config_source: str, root: str, so: dict[str, Any], date: dt.date | None, lock: LeaseLock
) -> RefreshResult:
    recovered, recovered_alerts, resumable = recover(cfg, root, so)
    files = list_inputs(cfg.input.uri, cfg.input.storage_options, cfg.input.exclude)
    known = read_inputs_state(root, so)
    new, changed, entries = diff_inputs(files, known, cfg.input.storage_options)
    todo = sorted(new + changed, key=lambda f: f.uri)
    latest_rec = read_latest(root, so)
    latest = (latest_rec or {}).get("snapshot_id")
    run_key = _digest([f"{f.uri}|{entries[f.uri]['sha256']}" for f in todo] + [cfg.config_hash()]) if todo else ""
    if resumable and resumable.get("run_key") != run_key:  # other work to do now: the crashed attempt goes
        roll_back(cfg, root, so, resumable)
        recovered.append(f"rolled back {resumable['snapshot_id']}")
        progress("refresh recovery: rolled back %s", resumable["snapshot_id"])
        resumable = None
    if not todo:
        merged = {**known, **entries}
        if merged != known:  # touched files: same content, new metadata
            write_inputs_state(root, merged, latest, so)
        progress("refresh: %d input(s), none new or changed; latest = %s", len(files), latest)
        seen = [
            {
                "uri": f.uri,
                "size": f.size,
                "etag": f.etag,
                "mtime": f.mtime,
                "status": "unchanged" if entries[f.uri] == known.get(f.uri) else "touched",
                "snapshot_id": entries[f.uri].get("snapshot_id"),
            }
            for f in files
        ]
        listed = {f.uri for f in files}
        return RefreshResult(
            "recovered" if recovered else "nothing_new",
            latest,
            latest,
            recovered_alerts,
            counts={"inputs": len(files), "new_inputs": 0, "changed_inputs": 0},
            recovered=recovered,
            inputs=seen,
            missing_inputs=sum(u not in listed for u in known),
            latest=latest_rec,
        )

    if resumable:  # the same work as the crashed attempt: same snapshot, same run id, its finished units reused
        snapshot_id = resumable["snapshot_id"]
        recovered.append(f"resumed {snapshot_id}")
        progress("refresh recovery: resuming %s", snapshot_id)
    else:
        snapshot_id = new_snapshot_id(root, run_key, date, so)
    snap = snapshot_uri(root, snapshot_id)
    derived = derive_config(cfg, [f.uri for f in todo], snap)
    from jobs.pipeline import run_pipeline
    from jobs.plan import compute_run_id

    run_id = compute_run_id(derived, todo)
    pending = {
        "snapshot_id": snapshot_id,
        "run_id": run_id,
        "run_key": run_key,
        "previous_snapshot": latest,
        "config_hash": cfg.config_hash(),
        "new_inputs": [f.uri for f in new],
        "changed_inputs": [f.uri for f in changed],
        "entries": {f.uri: {**entries[f.uri], "snapshot_id": snapshot_id} for f in todo},
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_pending(root, pending, so)
    progress(
        "refresh: %d input(s): %d new, %d changed → snapshot %s (previous: %s)",
        len(files),
        len(new),
        len(changed),
        snapshot_id,
        latest,
    )
    lineage = {
        "snapshot_id": snapshot_id,
        "previous_snapshot": latest,
        "config_hash": cfg.config_hash(),
        "new_inputs": [_input_record(f, entries[f.uri]) for f in new],
        "changed_inputs": [_input_record(f, entries[f.uri], known.get(f.uri)) for f in changed],
    }
    result = run_pipeline(derived, config_source, finalize_state=False, manifest_extra={"refresh": lineage})
    if result.run_id != run_id:  # an input changed between listing and reading: record what was really read
        pending["run_id"] = result.run_id
        write_pending(root, pending, so)
    lock.renew()
    maybe_fail("after_manifest")
    alerts = publish(cfg, root, so, pending)
    counts = {
        "inputs": len(files),
        "new_inputs": len(new),
        "changed_inputs": len(changed),
        **result.manifest.get("counts", {}),
    }
    return RefreshResult("published", snapshot_id, latest, alerts, counts, recovered)


def _input_record(f: InputFile, entry: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    rec = {"uri": f.uri, "size": f.size, "etag": f.etag, "mtime": f.mtime, "sha256": entry.get("sha256")}
    if old:
        rec["previous"] = {k: old.get(k) for k in ("sha256", "etag", "mtime", "size", "snapshot_id")}
    return rec


def _digest(parts: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def publish(cfg: RunConfig, root: str, so: dict[str, Any], pending: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything after the snapshot's own commit, in crash-safe order; idempotent (recovery re-runs it)."""
    snapshot_id = pending["snapshot_id"]
    snap = snapshot_uri(root, snapshot_id)
    alerts = write_monitoring(cfg, root, so, snapshot_id, pending)
    Location(snap, so).join("_work").remove(recursive=True)  # the pipeline's emptied staging folder
    latest = read_latest(root, so) or {}
    if latest.get("snapshot_id") != snapshot_id:
        write_latest(root, snapshot_id, so)
    maybe_fail("after_pointer")
    manifest = committed_manifest(snap, so) or {}
    commit_generations(cfg.output.resolved_state_uri(), manifest.get("run_id") or pending["run_id"], so)
    inputs = read_inputs_state(root, so)
    inputs.update(pending["entries"])
    write_inputs_state(root, inputs, snapshot_id, so)
    clear_pending(root, so)
    maybe_fail("after_state")
    return alerts


def write_monitoring(
    cfg: RunConfig, root: str, so: dict[str, Any], snapshot_id: str, pending: dict[str, Any]
) -> list[dict[str, Any]]:
    """Profile, drift vs the previous snapshot, data card and HTML report, written into the snapshot folder.

    These files sit beside manifest.json (not under data/), so they do not change what `verify` checks."""
    snap = snapshot_uri(root, snapshot_id)
    folder = Location(snap, so)
    prev_id = pending.get("previous_snapshot")
    prev_profile = None
    if prev_id:
        prev = Location(snapshot_uri(root, prev_id), so).join(MONITORING).read_json_or_none()
        prev_profile = prev.get("profile") if isinstance(prev, dict) else None
    profile = build_profile(snap, so, cfg.monitoring, snapshot_id, prev_profile)
    drift, alerts = compare_profiles(prev_profile, profile, cfg.monitoring) if prev_profile else (None, [])
    body = {
        "snapshot_id": snapshot_id,
        "previous_snapshot": prev_id,
        "profile": profile,
        "drift": drift,
        "alerts": alerts,
    }
    folder.join(MONITORING).write_bytes(json.dumps(body, indent=2, default=float).encode())
    manifest = committed_manifest(snap, so) or {}
    report = folder.join("report.json").read_json()
    info = {**pending, "config_hash": pending.get("config_hash")}
    card = render_datacard(snapshot_id, manifest, report, profile, cfg.licenses, info)
    folder.join(DATACARD).write_bytes(card.encode())
    folder.join(REPORT_HTML).write_bytes(render_html(snapshot_id, profile, drift, alerts, info).encode())
    return alerts


def recover(
    cfg: RunConfig, root: str, so: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]], dict[str, Any] | None]:
    """Finish what a crashed refresh left behind. Returns the actions taken, the alerts of a snapshot rolled
    forward (a crash must not swallow a drift alert), and the pending record of a snapshot that did not commit:
    it is kept, so that a refresh with the same work to do resumes it (its run reuses every finished unit), and
    rolled back by `roll_back` otherwise."""
    actions: list[str] = []
    alerts: list[dict[str, Any]] = []
    resumable: dict[str, Any] | None = None
    pending = read_pending(root, so)
    if pending:
        sid = pending["snapshot_id"]
        manifest = committed_manifest(snapshot_uri(root, sid), so)
        if manifest is not None and manifest.get("run_id") == pending["run_id"]:
            alerts = publish(cfg, root, so, pending)
            actions.append(f"rolled forward {sid}")
        elif pending.get("run_key"):
            resumable = pending
        else:  # written by a version that did not resume
            roll_back(cfg, root, so, pending)
            actions.append(f"rolled back {sid}")
    # Folders without _SUCCESS that no pending record names (e.g. a crash before pending.json was cleared by an
    # older version): never visible, removed so nothing half-written lingers.
    snaps = Location(snapshots_uri(root), so)
    committed = set(committed_snapshots(root, so))
    keep = resumable["snapshot_id"] if resumable else None
    for entry in snaps.children():
        if entry.name not in committed and entry.name != keep and not entry.join(SUCCESS).exists():
            entry.remove(recursive=True)
            actions.append(f"removed uncommitted {entry.name}")
    for a in actions:
        progress("refresh recovery: %s", a)
    return actions, alerts, resumable


def roll_back(cfg: RunConfig, root: str, so: dict[str, Any], pending: dict[str, Any]) -> None:
    """Undo a snapshot that did not commit: its folder, its index generation, the pending record."""
    Location(snapshot_uri(root, pending["snapshot_id"]), so).remove(recursive=True)
    _delete_uncommitted_generation(cfg.output.resolved_state_uri(), pending["run_id"], so)
    clear_pending(root, so)


def _delete_uncommitted_generation(state_uri: str, run_id: str, so: dict[str, Any]) -> None:
    """Remove `gen-<run_id>` folders (any index under the state) that never got their commit marker."""
    target = f"{GEN_PREFIX}{run_id}"
    for marker_less in _folders_named(Location(state_uri, so), target):
        if not marker_less.join(MARKER).exists():
            marker_less.remove(recursive=True)


def _folders_named(root: Location, name: str) -> list[Location]:
    if not root.exists():
        return []
    out = []
    for p in root.fs.find(root.path, withdirs=True, detail=False):
        if p.rstrip("/").rsplit("/", 1)[-1] == name and root.fs.isdir(p):
            out.append(Location(root.child_uri(p), root.storage_options))
    return out


def add_refresh_args(p: argparse.ArgumentParser) -> None:
    from jobs.cli import add_config_args

    add_config_args(p)
    p.add_argument("--date", help="logical date of the snapshot, YYYY-MM-DD (default: today, UTC)")
    p.add_argument(
        "--lock-ttl", type=float, default=6 * 3600, help="lease lock expiry in seconds (default 6h)"
    )


def refresh_from_args(args: argparse.Namespace) -> int:
    from jobs.cli import config_from_args
    from jobs.errors import EXIT_ALERT, EXIT_CONFIG, EXIT_OK, report, stop_signal
    from jobs.ray_backend import catch_stop_signals

    try:
        cfg, path = config_from_args(args)
    except Exception as e:
        return report(e, [], "refresh")
    try:
        date = dt.date.fromisoformat(args.date) if args.date else None
    except ValueError as e:
        print(f"refinery: error: --date: {e}", file=sys.stderr)
        return EXIT_CONFIG
    catch_stop_signals()
    try:
        result = refresh(cfg, path, date=date, lock_ttl_s=args.lock_ttl)
    except BaseException as e:
        if not isinstance(e, Exception) and stop_signal(e) is None:
            raise
        return report(
            e,
            cfg.secrets(),
            "refresh",
            stop_note="the next refresh recovers (rolls the pending snapshot forward or back)",
        )
    root = cfg.output.uri.rstrip("/")
    print(f"refresh: {result.outcome}; latest = {result.snapshot_id} (previous {result.previous_snapshot})")
    if result.counts:
        print("counts: " + json.dumps(result.counts))
    if result.outcome == "published":
        print(
            f"snapshot: {snapshot_uri(root, result.snapshot_id)}  (report.html, DATACARD.md, monitoring.json)"
        )
    elif result.report_uri:
        print(f"report: {result.report_uri}")
    if result.alerts:
        for a in result.alerts:
            print(f"ALERT {a['metric']}: {a['detail']} > {a['threshold']}", file=sys.stderr)
        return EXIT_ALERT
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.refresh")
    add_refresh_args(parser)
    return refresh_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
