"""`refinery gc OUTPUT [--yes]`: list the work folders of abandoned runs, with their sizes; remove them with --yes.

Why: an interrupted run leaves `_work/<run id>/` so that a re-run of the same config on the same input can resume
it. A run that will never be re-run (its config or input changed, so its run id did too) leaves its work there
for good. A folder whose driver is still alive (its `_RUNNING` heartbeat is fresh) is never touched. OUTPUT is a
run output or a refresh root (whose snapshots' work folders are listed too). Exit code 0.
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
    p.add_argument("--yes", action="store_true", help="remove the abandoned work folders (default: only list)")
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
    return EXIT_OK
