"""`refinery refilter OUTPUT --set stages.N.params.K=V … --out NEW [--tighten-only]`: re-threshold a committed
output from its stored signals, without re-running any stage (jobs/refilter.py, docs/REFILTER.md).

Exit codes: 0 committed (or already committed), 2 a change that stored signals cannot answer, or a bad path.
"""

from __future__ import annotations

import argparse
import json

from jobs.cli import command
from jobs.errors import EXIT_OK, report


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="a committed run output or snapshot folder")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="stages.N.params.KEY=VALUE",
        help="a new stage param (repeatable)",
    )
    p.add_argument(
        "--out", required=True, help="where to commit the new output (empty, or a refinery output)"
    )
    p.add_argument(
        "--tighten-only",
        action="store_true",
        help="accept that rows a changed stage dropped in the source stay dropped (their signals are gone)",
    )
    p.add_argument("--storage-option", action="append", default=[], metavar="key=value")


@command("refilter", _args)
def cmd_refilter(args: argparse.Namespace) -> int:
    from jobs.refilter import refilter

    opts = dict(kv.split("=", 1) for kv in args.storage_option)
    try:
        res = refilter(args.output, args.overrides, args.out, opts, tighten_only=args.tighten_only)
    except Exception as e:
        return report(e, list(opts.values()), "refilter")
    r = res.report
    print(f"refilter: {res.status} {res.uri} (run {res.run_id}) in {res.seconds:.1f}s")
    print("counts: " + json.dumps(res.manifest.get("counts", {})))
    for s in r["stages"]:
        if s["name"] in r["refilter"]["stages"]:
            print(
                f"  {s['name']}: dropped {sum(s['dropped'].values())}, flagged {sum(s['flagged'].values())}"
            )
    return EXIT_OK
