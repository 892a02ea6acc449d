"""`refinery verify PATH`: re-check a committed output against its manifest (checksums, row counts, stray files).

PATH is a run output or a snapshot folder, or a refresh root (`<output.uri>` holding `snapshots/`), in which case
every committed snapshot is verified and `latest` must name a committed snapshot whose `_SUCCESS` it matches.
Storage options come from `--config`/`--set` (output.storage_options) when the path is on an object store.
Exit code 0 when everything verifies, 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobs.cli import command
from jobs.errors import EXIT_FAIL, EXIT_OK, report


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="run output, snapshot folder, or refresh root")
    p.add_argument("--config", dest="config_opt", help="config whose output.storage_options reach PATH")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value")
    p.add_argument("--quick", action="store_true", help="check presence and counts only, not checksums")
    p.add_argument(
        "--forgotten",
        action="store_true",
        help="also prove that no committed row matches an item erased by `refinery forget`; superseded "
        "generations not yet purged are listed as `wait` (not a failure)",
    )


def verify_path(path: str, so: dict[str, Any] | None, deep: bool = True) -> dict[str, list[str]]:
    """Problems per verified output (empty lists = verified)."""

    from refinery.commit import SUCCESS, verify
    from refinery.location import Location
    from refinery.refresh.snapshots import read_latest, snapshots_uri

    if Location(path, so).join(SUCCESS).exists() or not Location(snapshots_uri(path), so).exists():
        return {path: verify(path, so, deep=deep)}
    from jobs.forget import current_generations

    out: dict[str, list[str]] = {}
    current = current_generations(path, so)  # each snapshot's current generation (after `refinery forget`)
    snaps = list(current)
    for uri in current.values():
        out[uri] = verify(uri, so, deep=deep)
    latest = read_latest(path, so)
    problems: list[str] = []
    if latest is None:
        problems.append("no `latest` pointer" if snaps else "no committed snapshot")
    elif latest.get("snapshot_id") not in snaps:
        problems.append(f"latest names {latest.get('snapshot_id')!r}, which is not a committed snapshot")
    else:
        marker = Location(current[latest["snapshot_id"]], so).join(SUCCESS).read_json()
        if marker.get("manifest_sha256") != latest.get("manifest_sha256"):
            problems.append("latest's manifest_sha256 does not match the snapshot's _SUCCESS")
    out[f"{path.rstrip('/')}/latest"] = problems
    return out


@command("verify", _add_args)
def cmd_verify(args: argparse.Namespace) -> int:
    from refinery.config import load_config

    so: dict[str, Any] = {}
    if args.config_opt:
        try:
            so = load_config(args.config_opt, args.overrides).output.storage_options
        except Exception as e:
            return report(e, [], "verify")
    try:
        results = verify_path(args.path, so, deep=not args.quick)
        awaiting: list[str] = []
        if args.forgotten:
            from jobs.forget import purge_problems, verify_forgotten

            results[f"{args.path.rstrip('/')} (forgotten)"] = verify_forgotten(args.path, so)
            # superseded generations within their grace period still hold rows: said, not failed (docs/FORGET.md)
            awaiting = purge_problems(args.path, so)[1]
    except FileNotFoundError as e:
        print(f"refinery: verify: not found: {e}", file=sys.stderr)
        return EXIT_FAIL
    bad = 0
    for where, problems in results.items():
        if problems:
            bad += 1
            print(f"FAIL {where}")
            for p in problems:
                print(f"  - {p}")
        else:
            print(f"ok   {where}")
    for a in awaiting:
        print(f"wait {a}")
    return EXIT_FAIL if bad else EXIT_OK
