"""`refinery sample OUTPUT --stage S [--reason R] [--kept] -n N --format jsonl|labelstudio [--out FILE]`: a
deterministic, PII-scrubbed, truncated sample of a filter's decisions with the signals that decided them, for
labelling (jobs/review.py, docs/REVIEW.md)."""

from __future__ import annotations

import argparse
import json
import sys

from jobs.cli import command
from jobs.errors import EXIT_OK, report


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="a committed run output or snapshot folder")
    p.add_argument("--stage", required=True, help="stage label, e.g. gopher_quality (or name#2)")
    p.add_argument("--reason", help="only documents flagged with this reason")
    p.add_argument("--kept", action="store_true", help="documents the stage let through instead")
    p.add_argument("-n", type=int, default=50, help="how many (default 50)")
    p.add_argument("--format", choices=("jsonl", "labelstudio"), default="jsonl")
    p.add_argument("--max-chars", type=int, default=2000, help="truncate texts to this many characters")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.add_argument("--storage-option", action="append", default=[], metavar="key=value")


@command("sample", _args)
def cmd_sample(args: argparse.Namespace) -> int:
    from jobs.review import labelstudio, select
    from refinery.location import Location

    opts = dict(kv.split("=", 1) for kv in args.storage_option)
    try:
        samples = select(args.output, args.stage, args.n, args.reason, args.kept, opts, args.max_chars)
    except Exception as e:
        return report(e, list(opts.values()), "sample")
    if args.format == "labelstudio":
        body = json.dumps(labelstudio(samples), ensure_ascii=False, indent=1) + "\n"
    else:
        body = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    if args.out:
        Location(args.out, opts).write_bytes(body.encode())
        print(f"sample: {len(samples)} document(s) → {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(body)
    return EXIT_OK
