"""`refinery refilter` against a full re-run with the new thresholds: speed, and the kept set row for row.

One generated corpus (scripts/data/make_corpus.py, real texts), one annotated source run (langid and the four
quality rule sets with `action: annotate`: every row kept with its signals and flags), then, with the same new
thresholds, (a) a full `refinery run` and (b) `refinery refilter` of the source. Both are whole commands
(interpreter start, Ray start for the run), timed by wall clock in this process, one after the other on the same
machine; the ratio is what counts on a shared machine. Then the committed rows of (a) and (b) are compared:
every column but `run_id`, by id, and the drop logs (id → stage:reason).

    .venv/bin/python -m scripts.bench.refilter [--docs 40000] [--out docs/benchmarks/refilter.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from scripts.bench.common import (
    BENCH,
    PY,
    ROOT,
    machine,
    make_corpus,
    run_measured,
    versions,
    write_config,
    write_page,
)

SOURCE = [
    {"stage": "normalize"},
    {"stage": "langid"},
    {"stage": "gopher_repetition", "params": {"action": "annotate"}},
    {"stage": "gopher_quality", "params": {"action": "annotate"}},
    {"stage": "c4_quality", "params": {"action": "annotate"}},
    {"stage": "fineweb_quality", "params": {"action": "annotate"}},
]
NEW = {
    "stages.2.params.action": "drop",
    "stages.2.params.dup_line_frac": 0.1,
    "stages.3.params.action": "drop",
    "stages.3.params.min_stop_words": 3,
    "stages.3.params.max_non_alpha_words_ratio": 0.5,
    "stages.5.params.line_punct_thr": 0.3,
}


def with_new(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = json.loads(json.dumps(stages))
    for key, value in NEW.items():
        _, i, _, k = key.split(".")
        out[int(i)].setdefault("params", {})[k] = value
    return out


def rows_by_id(out: Path) -> dict[str, str]:
    """id → sha256 of the row (every column but run_id, as JSON)."""
    import pyarrow.parquet as pq

    manifest = json.loads((out / "manifest.json").read_text())
    rows: dict[str, str] = {}
    for f in manifest["files"]:
        if f["kind"] == "data":
            for r in pq.read_table(out / f["path"]).to_pylist():
                r.pop("run_id", None)
                rows[r["id"]] = hashlib.sha256(
                    json.dumps(r, sort_keys=True, default=str).encode()
                ).hexdigest()
    return rows


def drops(out: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    manifest = json.loads((out / "manifest.json").read_text())
    got: dict[str, str] = {}
    for f in manifest["files"]:
        if f["kind"] == "droplog":
            t = pq.read_table(out / f["path"], columns=["id", "stage", "reason"]).to_pylist()
            got.update((r["id"], f"{r['stage']}:{r['reason']}") for r in t)
    return got


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=40_000)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "refilter.md"))
    args = ap.parse_args()
    work = BENCH / f"refilter-{args.docs}"
    corpus = work / "corpus"
    if not (corpus / "corpus.json").exists():
        make_corpus(corpus, log="", docs=args.docs, seed=7)
    src, full, refiltered = work / "source", work / "full", work / "refiltered"
    cfg_src = write_config(work / "source.yaml", corpus, src, SOURCE, name="refilter-source")
    cfg_full = write_config(work / "full.yaml", corpus, full, with_new(SOURCE), name="refilter-full")
    run = [str(PY), "-m", "jobs.cli", "run"]
    res_src = run_measured([*run, str(cfg_src)], work / "source.log", pss=False)
    assert res_src["rc"] == 0, (work / "source.log").read_text()[-3000:]
    res_full = run_measured([*run, str(cfg_full)], work / "full.log", pss=False)
    assert res_full["rc"] == 0, (work / "full.log").read_text()[-3000:]
    sets = [a for k, v in NEW.items() for a in ("--set", f"{k}={v}")]
    cmd = [str(PY), "-m", "jobs.cli", "refilter", str(src), *sets, "--out", str(refiltered)]
    import shutil

    shutil.rmtree(refiltered, ignore_errors=True)
    res_ref = run_measured(cmd, work / "refilter.log", pss=False)
    assert res_ref["rc"] == 0, (work / "refilter.log").read_text()[-3000:]
    a, b = rows_by_id(full), rows_by_id(refiltered)
    da, db = drops(full), drops(refiltered)
    src_rows = len(rows_by_id(src))
    identical = a == b and da == db
    speedup = res_full["wall_s"] / res_ref["wall_s"]
    verdict = {
        "docs": args.docs,
        "source_rows": src_rows,
        "kept_full": len(a),
        "kept_refilter": len(b),
        "kept_ids_equal": a.keys() == b.keys(),
        "rows_equal": a == b,
        "droplogs_equal": da == db,
        "full_run_s": res_full["wall_s"],
        "refilter_s": res_ref["wall_s"],
        "source_run_s": res_src["wall_s"],
        "speedup": round(speedup, 1),
    }
    print(json.dumps(verdict, indent=2))
    page = f"""# refilter vs a full re-run

Generated by `.venv/bin/python -m scripts.bench.refilter --docs {args.docs}` on
{dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}; machine: {json.dumps(machine())};
versions: {json.dumps(versions())}.

Corpus: `make_corpus --docs {args.docs} --seed 7` (real texts). Source run: normalize → langid → gopher_repetition
→ gopher_quality → c4_quality → fineweb_quality, every rule set `action: annotate` ({src_rows} rows committed with
their signals and flags, {res_src["wall_s"]} s). New thresholds:
`{" ".join(f"--set {k}={v}" for k, v in NEW.items())}`.

| | wall s | rows kept |
|---|---:|---:|
| full `refinery run` with the new thresholds | {res_full["wall_s"]} | {len(a)} |
| `refinery refilter` of the source | {res_ref["wall_s"]} | {len(b)} |

**Speed-up: {speedup:.1f}×** (target ≥ 20×). Kept rows identical to the full run, every column but `run_id`:
**{a == b}**; drop logs identical (id → stage:reason): **{da == db}**.
"""
    write_page(args.out, page)
    return 0 if identical and speedup >= 20 else 1


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"[bench] refilter benchmark done in {time.time() - t0:.0f}s", file=sys.stderr)
    sys.exit(rc)
