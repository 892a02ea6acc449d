"""The command line of the peer pipelines (datatrove_pipeline.py, nemo_pipeline.py), in one place.

A plain module next to them: they run as files inside the peers' own virtualenvs, where Python finds it in the
script's folder; it imports nothing of ours.
"""

from __future__ import annotations

import argparse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True, help="corpus folder (scripts/data/make_corpus.py output)")
    ap.add_argument("--work", required=True, help="work and output folder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--lid-model", required=True, help="path of lid.176.ftz (the file our langid stage loads)"
    )
    ap.add_argument("--glob", default="part-*.jsonl.gz")
    ap.add_argument(
        "--stage-set",
        choices=("all", "shared"),
        default="all",
        help="all: every step the peer has of our equivalent pipeline; shared (NeMo Curator only): the stages "
        "both have (langid, Gopher repetition and quality) and a Parquet writer, as `--compare nemo-shared`",
    )
    return ap.parse_args(argv)
