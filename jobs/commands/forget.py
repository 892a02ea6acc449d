"""`refinery forget ROOT --request FILE [--threshold J] [--purge]`: erase documents, their near-copies and their
future re-appearances from every snapshot of a refresh output, or from a run output in place (jobs/forget.py,
docs/FORGET.md). `--purge` deletes the rows of the generations it superseded at once (else `refinery gc --yes`
does, after a grace period).

Exit codes: 0 applied (or already applied, or nothing matched), 1 failed (the next forget or refresh recovers),
2 invalid request or root, 75 a refresh or another forget holds the lock.
"""

from __future__ import annotations

import argparse
import json

from jobs.cli import command
from jobs.errors import EXIT_OK, report


def _args(p: argparse.ArgumentParser) -> None:
    from stages.forgotten import DEFAULT_THRESHOLD

    p.add_argument("root", help="a refresh output (holding snapshots/) or a committed run output")
    p.add_argument(
        "--request", required=True, help="JSON Lines: {id|url|url_prefix|domain|text|sha256: value}"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"near-copies: estimated Jaccard of word 5-grams at or above this (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--purge",
        action="store_true",
        help="delete the superseded generations' rows now (readers still reading them break)",
    )
    p.add_argument("--lock-ttl", type=float, default=6 * 3600)
    p.add_argument("--storage-option", action="append", default=[], metavar="key=value")


@command("forget", _args)
def cmd_forget(args: argparse.Namespace) -> int:
    from jobs.forget import forget

    opts = dict(kv.split("=", 1) for kv in args.storage_option)
    try:
        res = forget(args.root, args.request, opts, args.threshold, args.lock_ttl, args.purge)
    except Exception as e:
        return report(e, list(opts.values()), "forget", stop_note="the next forget or refresh recovers")
    print(
        f"forget {res.request_id}: {res.outcome} in {res.seconds:.1f}s; rows removed: {json.dumps(res.removed)}"
    )
    for r in res.recovered:
        print(f"recovery: {r}")
    for p in res.purged:
        print(f"purged: {p}")
    return EXIT_OK
