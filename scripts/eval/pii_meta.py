"""How the `pii` stage treats the `meta` column of real web records: false positives, planted leaks, hosts, cost.

Why: scrubbing `meta` must remove the PII a record carries there, must not mangle the machine data the readers
put there (ids, dates, content types, the URL whose host per-domain reports read), and must cost little next to
the text. Real inputs: the pages of tests/fixtures/web, and, when present, ../shared/data/web (181 news pages of
the article-extraction benchmark, the WARC files), read through the project's own HTML/WARC readers.

- False positives: the stage on each row with its text blanked; every meta value that changes is counted, per key
  and per placeholder type. tests/fixtures/web is reported apart: no meta value there holds personal data
  (checked by hand), so every change there is a false positive.
- Planted: fixture PII (e-mails, phones, names from tests/fixtures/pii_text) written into `author_email`,
  `phone`, `author`, the URL's query (`email=` literal and `%40`-encoded) and the title of the same rows; leak =
  planted value still in the committed meta (in either form).
- Hosts: refinery.schema.row_domain of every row before and after.
- Cost: docs/s per core (CPU time) of the stage on the ≈ 2 KB news chunks of scripts/bench/pii.py ("sparse"
  corpus), with a meta column not scrubbed, and scrubbed, for WARC/HTML reader meta and JSONL (C4-style) meta.

Usage: .venv/bin/python -m scripts.eval.pii_meta [--docs 2000] [--ner-docs 300]   (prints markdown)
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa

from scripts.bench.common import ROOT, SHARED, text_table
from scripts.bench.pii import bench_stage
from scripts.eval.pii import make_planted

WEB = SHARED / "web"
SOURCES = {
    "tests/fixtures/web": ROOT / "tests" / "fixtures" / "web",
    "article benchmark": WEB / "article_extraction_benchmark" / "html",
    "shared WARCs": WEB / "warc",
}
PII_FIXTURE = ROOT / "tests" / "fixtures" / "pii_text" / "presidio_synth_v2_first500.jsonl.gz"
_PLACEHOLDER = re.compile(r"<([A-Z_]+)>")


def web_rows(path: Path) -> list[dict]:
    """Live rows with a meta, read by the project's readers (format detected from the file names)."""
    from refinery.config import InputConfig
    from refinery.fsio import list_inputs
    from stages.readers import load_readers, plan_reads

    cfg = InputConfig(uri=str(path), format="auto")
    tasks, _ = plan_reads(list_inputs(str(path), exclude=cfg.exclude), cfg, "eval")
    readers = load_readers()
    rows = [r for t in tasks for b in readers[t.format](cfg, "eval").read(t) for r in b.to_pylist()]
    return [r for r in rows if r["_drop"] is None and r["meta"]]


def fixture_values() -> dict[str, list[str]]:
    """Real labelled values of the PII fixture, per type."""
    out: dict[str, list[str]] = {"EMAIL_ADDRESS": [], "PHONE_NUMBER": [], "PERSON": []}
    with gzip.open(PII_FIXTURE, "rt") as f:
        for line in f:
            rec = json.loads(line)
            for s in rec["spans"]:
                v = rec["text"][s["start"] : s["end"]]
                if s["type"] in out and (s["type"] != "PERSON" or len(v.split()) == 2):
                    out[s["type"]].append(v)
    return out


def run_meta(stage_params: dict, metas: list[str]) -> list[str]:
    from stages.pii.scrub import Pii

    t = text_table([""] * len(metas), meta=pa.array(metas, pa.large_string()))
    out, _ = Pii(stage_params).process(t)
    return out["meta"].to_pylist()


def domains(metas: list[str]) -> list[str | None]:
    from refinery.schema import row_domain

    return row_domain(pa.table({"meta": pa.array(metas, pa.large_string())})).to_pylist()


def false_positives(rows_by_source: dict[str, list[dict]], params: dict) -> list[str]:
    lines = [
        "| source | rows | string values | scanned (not excluded) | changed | changed by key | placeholders by type "
        "| hosts unchanged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    from stages.pii.scrub import PiiParams

    exclude = set(PiiParams(**params).meta_exclude)
    for name, rows in rows_by_source.items():
        before = [r["meta"] for r in rows]
        after = run_meta(params, before)
        values = scanned = 0
        by_key: Counter = Counter()
        types: Counter = Counter()
        for a, b in zip(before, after, strict=True):
            a, b = json.loads(a), json.loads(b)
            for k, v in a.items():
                if isinstance(v, str):
                    values += 1
                    scanned += k not in exclude
                    if b[k] != v:
                        by_key[k] += 1
                        types.update(_PLACEHOLDER.findall(b[k]))
        same = domains(before) == domains(after)
        lines.append(
            f"| {name} | {len(rows)} | {values} | {scanned} | {sum(by_key.values())} | "
            f"{dict(by_key.most_common()) or '–'} | {dict(types.most_common()) or '–'} | "
            f"{'yes' if same else 'NO'} |"
        )
    return lines


def planted(rows: list[dict], params: dict) -> list[str]:
    vals = fixture_values()
    before: list[str] = []
    plants: list[dict[str, str]] = []
    for i, r in enumerate(rows):
        meta = json.loads(r["meta"])
        email, email2, phone, person = (
            vals[k][(i + j) % len(vals[k])]
            for k, j in (("EMAIL_ADDRESS", 0), ("EMAIL_ADDRESS", 7), ("PHONE_NUMBER", 0), ("PERSON", 0))
        )
        url = meta.get("url") or "https://example.org/page"
        encoded = i % 2 == 1
        meta.update(
            {
                "author_email": email,
                "phone": phone,
                "author": person,
                "url": url + ("&" if "?" in url else "?") + "email=" + (quote(email2) if encoded else email2),
                "title": (meta.get("title") or "") + " | contact " + email,
            }
        )
        before.append(json.dumps(meta, ensure_ascii=False))
        plants.append(
            {
                "author_email": email,
                "phone": phone,
                "author": person,
                "url (%40)" if encoded else "url (@)": email2,
                "title": email,
            }
        )
    after = run_meta(params, before)
    leaks: Counter = Counter()
    totals: Counter = Counter()
    for plant, b in zip(plants, after, strict=True):
        for where, value in plant.items():
            totals[where] += 1
            leaks[where] += value in b or quote(value) in b
    hosts = [d for d in domains(before) if d]
    same = domains(before) == domains(after)
    lines = ["| planted in | values | left verbatim |", "|---|---|---|"]
    lines += [f"| {w} | {totals[w]} | {leaks[w]} |" for w in totals]
    lines.append(
        f"\nHosts of `meta.url` unchanged after scrubbing the planted URLs: {'yes' if same else 'NO'} "
        f"({len(hosts)} rows with a web URL)."
    )
    return lines


def cost(texts: list[str], metas: dict[str, list[str]], params: dict) -> list[str]:
    lines = ["| meta | scrub_meta | docs/s per core | meta values scanned |", "|---|---|---|---|"]
    for name, meta in metas.items():
        for scrub in (False, True):
            cpu, _, st, _ = bench_stage(texts, {**params, "scrub_meta": scrub}, meta=meta)
            lines.append(f"| {name} | {str(scrub).lower()} | {cpu:,.0f} | {st['meta_values']:,} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m scripts.eval.pii_meta")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--ner-docs", type=int, default=300)
    args = ap.parse_args()
    from stages.pii.scrub import resolve_model

    model = resolve_model("auto")
    rows = {name: web_rows(p) for name, p in SOURCES.items() if p.exists()}
    every = [r for rs in rows.values() for r in rs]
    modes = {"patterns only": {"ner_model": None}}
    if model:
        modes[f"with NER ({model})"] = {}
    out = [
        "## Meta scrubbing on real web records",
        "",
        "Produced by `python -m scripts.eval.pii_meta " + " ".join(sys.argv[1:]) + "`.",
        "",
    ]
    for mode, params in modes.items():
        out += [f"### False positives, {mode}", "", *false_positives(rows, params), ""]
        out += [f"### Planted meta PII, {mode} ({len(every)} rows)", "", *planted(every, params), ""]
    docs = make_planted(args.docs, seed=12, per_doc=(1, 2), pii_share=0.2)
    texts = [d["text"] for d in docs]
    warc = [every[i % len(every)]["meta"] for i in range(len(texts))]
    jsonl = [json.dumps({"url": json.loads(m).get("url"), "timestamp": "2019-04-25T12:57:54Z"}) for m in warc]
    for mode, params in modes.items():
        n = len(texts) if "ner_model" in params else args.ner_docs
        metas = {"WARC/HTML reader meta": warc[:n], "JSONL meta (url, timestamp)": jsonl[:n]}
        out += [f"### Cost, {mode} ({n} news chunks, 20% with PII)", "", *cost(texts[:n], metas, params), ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
