"""`refinery snapshots ROOT [--json]`: the current published generation of every snapshot of a refresh output:
id, the folder to read (`uri`), rows, creation time, and the erasure requests applied to it."""

from __future__ import annotations

import argparse
import json

from jobs.cli import command
from jobs.errors import EXIT_OK, report


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="a refresh output (holding snapshots/)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--storage-option", action="append", default=[], metavar="key=value")


@command("snapshots", _args)
def cmd_snapshots(args: argparse.Namespace) -> int:
    from jobs.forget import list_snapshots

    opts = dict(kv.split("=", 1) for kv in args.storage_option)
    try:
        snaps = list_snapshots(args.root, opts)
    except Exception as e:
        return report(e, list(opts.values()), "snapshots")
    if args.json:
        print(json.dumps(snaps, indent=2))
        return EXIT_OK
    for s in snaps:
        reqs = ",".join(s["requests"]) or "-"
        print(
            f"{s['id']}  {s['generation']:<22} {s['rows']!s:>9} rows  {s['created_at']}  requests={reqs}  {s['uri']}"
        )
    return EXIT_OK
