"""`refinery gc OUTPUT [--yes]`: list the work folders of abandoned runs, with their sizes; remove them with --yes.

Why: an interrupted run leaves `_work/<run id>/` so that a re-run of the same config on the same input can resume
it. A run that will never be re-run (its config or input changed, so its run id did too) leaves its work there
for good. A folder whose driver is still alive (its `_RUNNING` heartbeat is fresh) is never touched. OUTPUT is a
run output or a refresh root (whose snapshots' work folders are listed too).

On a refresh root it also lists the generations that `refinery forget` superseded and that still hold rows (an
erased document stays on disk until then), with their sizes; `--yes` deletes the rows of those superseded at
least `--grace-hours` ago (default 24: readers that opened the old generation before the switch get that long to
finish), under the refresh's lease lock, never a current generation (jobs/forget.py `purge_superseded`).
Exit code 0 (75 when --yes finds the lock held).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from jobs.cli import command
from jobs.errors import EXIT_OK, report
from refinery.commit import WORK_DIR
from refinery.location import Location

ALIVE_S = 10 * 60  # a heartbeat younger than this means a driver is at work (it beats every minute)


def work_folders(output: Location) -> list[Location]:
    """Every `_work/<run id>/` under a run output, or under each snapshot of a refresh root."""
    roots = [output, *output.join("snapshots").children()]
    return [run for root in roots for run in root.join(WORK_DIR).children() if not run.name.startswith("_")]


def describe(run: Location, now: float) -> dict[str, Any]:
    beat = run.join("_RUNNING").read_json_or_none()
    alive = isinstance(beat, dict) and now - float(beat.get("at", 0)) < ALIVE_S
    return {"path": run.uri, "bytes": sum(f.size() for f in run.find()), "running": alive}


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="run output or refresh root (local path or fsspec URL)")
    p.add_argument(
        "--yes", action="store_true", help="remove the abandoned work folders (default: only list)"
    )
    p.add_argument(
        "--grace-hours",
        type=float,
        default=24.0,
        help="purge superseded generations only this long after the switch (default 24)",
    )
    p.add_argument("--storage-option", action="append", default=[], metavar="key=value")


@command("gc", _args)
def cmd_gc(args: argparse.Namespace) -> int:
    opts = dict(kv.split("=", 1) for kv in args.storage_option)
    try:
        now = time.time()
        found = [describe(run, now) for run in work_folders(Location(args.output, opts))]
    except Exception as e:
        return report(e, list(opts.values()), "gc")
    for f in found:
        state = "running, kept" if f["running"] else ("removed" if args.yes else "abandoned")
        print(f"{f['bytes'] / 1e6:12.1f} MB  {f['path']}  ({state})")
        if args.yes and not f["running"]:
            Location(f["path"], opts).remove(recursive=True)
    gone = [f for f in found if not f["running"]]
    total = sum(f["bytes"] for f in gone) / 1e6
    verb = "removed" if args.yes else "abandoned (add --yes to remove them)"
    print(f"{len(gone)} work folder(s), {total:.1f} MB, {verb}")
    try:
        return _superseded(args, opts, now)
    except Exception as e:
        return report(e, list(opts.values()), "gc")


def _superseded(args: argparse.Namespace, opts: dict[str, str], now: float) -> int:
    """List (and with --yes purge) the superseded generations that still hold rows."""
    from jobs.forget import age_s, purge_superseded, superseded
    from refinery.fsio import join
    from refinery.refresh.lock import LeaseLock
    from refinery.refresh.snapshots import refresh_state_uri

    root = args.output.rstrip("/")
    holding = [e for e in superseded(root, opts) if e["row_files"] or not e.get("purged_at")]
    if not holding:
        return EXIT_OK
    grace_s = args.grace_hours * 3600
    purged: list[dict[str, Any]] = []
    if args.yes:
        lock = LeaseLock(join(refresh_state_uri(root), "LOCK"), storage_options=opts)
        lock.acquire()
        try:
            purged = purge_superseded(root, opts, min_age_s=grace_s, now=now)
        finally:
            lock.release()
    done = {e["path"] for e in purged}
    for e in holding:
        age_h = age_s(e, now) / 3600
        state = (
            "purged" if e["path"] in done else ("awaiting purge" if age_h >= args.grace_hours else "in grace")
        )
        print(f"{e['bytes'] / 1e6:12.1f} MB  {e['uri']}  (superseded {age_h:.1f} h ago; {state})")
    total = sum(e["bytes"] for e in holding) / 1e6
    verb = (
        f"{len(done)} purged"
        if args.yes
        else f"add --yes to purge those superseded over {args.grace_hours:g} h ago"
    )
    print(f"{len(holding)} superseded generation(s) holding rows, {total:.1f} MB; {verb}")
    return EXIT_OK
