"""`refinery labels import FILE --out DIR` (exported labels → a labelled dataset) and `refinery labels eval FILE
OUTPUT` (each filter's precision and recall against human labels); jobs/review.py, docs/REVIEW.md."""

from __future__ import annotations

import argparse
import json

from jobs.cli import command
from jobs.errors import EXIT_OK, report


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="Label Studio export or JSONL {id, label} → DIR/labels.jsonl")
    imp.add_argument("file")
    imp.add_argument("--out", required=True)
    ev = sub.add_parser("eval", help="precision and recall of each filter against the labels")
    ev.add_argument("file")
    ev.add_argument("output", help="the committed output the samples came from")
    ev.add_argument("--json", action="store_true")


@command("labels", _args)
def cmd_labels(args: argparse.Namespace) -> int:
    from jobs.review import evaluate, import_labels

    try:
        if args.action == "import":
            n = import_labels(args.file, args.out)
            print(f"labels: {n} labelled document(s) → {args.out.rstrip('/')}/labels.jsonl")
            return EXIT_OK
        res = evaluate(args.file, args.output)
    except Exception as e:
        return report(e, [], "labels")
    if args.json:
        print(json.dumps(res, indent=2))
        return EXIT_OK
    for st, r in res.items():
        print(
            f"{st:24} precision {r['precision']!s:>6}  recall {r['recall']!s:>6}  "
            f"(predicted drop {r['predicted_drop']}, labelled drop {r['labelled_drop']} of {r['labelled']})"
        )
    return EXIT_OK
