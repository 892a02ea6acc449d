"""Throughput of the `pii` stage per core, with and without each trick, against presidio alone.

Corpus: ≈ 2 KB chunks of real news text (article-extraction benchmark) with generated PII planted at known
offsets (scripts/eval_pii.py `make_planted`), in two densities: every document holds 1–4 values ("dense"), and
20% of documents hold 1–2 ("sparse", closer to web text). Speed is measured as CPU time of this one process
(`time.process_time`), i.e. docs/s per core, because the machine is shared and wall time is noisy; the wall-clock
figure is printed too. All systems run in the same process on the same documents.

Usage: .venv/bin/python scripts/bench_pii.py [--docs 2000] [--ner-docs 300] [--out docs/benchmarks/pii.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import pyarrow as pa  # noqa: E402
from eval_pii import make_planted  # noqa: E402


def density(docs: list[dict]) -> str:
    n = len(docs)
    spans = sum(len(d["spans"]) for d in docs)
    kb = sum(len(d["text"]) for d in docs) / 1024
    with_pii = sum(bool(d["spans"]) for d in docs)
    return (f"{n} docs, mean {kb * 1024 / n:.0f} chars, {spans} planted values: {spans / n:.2f} per doc, "
            f"{spans / kb:.2f} per KB, {with_pii / n:.0%} of docs hold PII")


def bench_presidio(texts: list[str], model: str | None) -> tuple[float, float]:
    from stages.pii.scrub import build_presidio

    eng = build_presidio(model)
    ents = ["EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "CRYPTO", "PHONE_NUMBER"]
    if model:
        ents += ["PERSON", "LOCATION", "ORGANIZATION"]
    eng.analyze(texts[0], language="en", entities=ents)
    c0, w0 = time.process_time(), time.perf_counter()
    for t in texts:
        eng.analyze(t, language="en", entities=ents, score_threshold=0.4)
    return len(texts) / (time.process_time() - c0), len(texts) / (time.perf_counter() - w0)


def bench_stage(texts: list[str], params: dict, batch: int = 1024,
                meta: list[str | None] | None = None) -> tuple[float, float, dict, list]:
    """docs/s per core and wall of the stage on these texts (with a `meta` JSON column when given)."""
    from stages.pii.scrub import Pii

    stage = Pii(params)
    stage.setup()
    tables = [pa.table({"id": [str(i) for i in range(len(texts[j:j + batch]))],
                        "text": pa.array(texts[j:j + batch], pa.large_string()),
                        "modality": ["text"] * len(texts[j:j + batch]),
                        **({"meta": pa.array(meta[j:j + batch], pa.large_string())} if meta is not None else {})})
              for j in range(0, len(texts), batch)]
    stage.process(tables[0].slice(0, 4))
    stage.stats = {k: 0 for k in stage.stats}
    c0, w0 = time.process_time(), time.perf_counter()
    outs = []
    for t in tables:
        out, _ = stage.process(t)
        outs += out["text"].to_pylist()
    return len(texts) / (time.process_time() - c0), len(texts) / (time.perf_counter() - w0), dict(stage.stats), outs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--ner-docs", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "pii.md"))
    args = ap.parse_args()
    from stages.pii.scrub import resolve_model

    model = resolve_model("auto")
    corpora = {"dense": make_planted(args.docs, seed=11), "sparse": make_planted(args.docs, seed=12, per_doc=(1, 2), pii_share=0.2)}
    rows = []
    skips = []
    for cname, docs in corpora.items():
        texts = [d["text"] for d in docs]
        ner_texts = texts[: args.ner_docs]
        res = {}
        res["presidio patterns (AnalyzerEngine, no_op NLP), every doc"] = (*bench_presidio(texts, None), None)
        cpu, wall, st, _ = bench_stage(texts, {"engine": "presidio", "ner_model": None})
        res["presidio patterns behind our prefilter"] = (cpu, wall, st)
        cpu, wall, st, out_nopf = bench_stage(texts, {"ner_model": None, "prefilter": False})
        res["ours: validated regexes, no prefilter"] = (cpu, wall, st)
        cpu, wall, st, out_pf = bench_stage(texts, {"ner_model": None})
        res["**ours: prefilter + validated regexes (default, no NER)**"] = (cpu, wall, st)
        skips.append((cname, "patterns", st, out_pf == out_nopf))
        if model:
            res[f"presidio + NER ({model}), every doc"] = (*bench_presidio(ner_texts, model), None)
            cpu, wall, st, _ = bench_stage(ner_texts, {"engine": "presidio", "ner_model": model})
            res["presidio + NER behind our prefilter"] = (cpu, wall, st)
            cpu, wall, st, out_a = bench_stage(ner_texts, {"ner_model": model, "prefilter": False})
            res["ours + NER: nlp.pipe (ner only), no prefilter"] = (cpu, wall, st)
            cpu, wall, st, _ = bench_stage(ner_texts, {"ner_model": model, "name_rules": False})
            res["ours + NER: nlp.pipe (ner only) + prefilter, no name rules"] = (cpu, wall, st)
            cpu, wall, st, out_b = bench_stage(ner_texts, {"ner_model": model})
            res["**ours + NER: nlp.pipe (ner only) + prefilter + name rules (default)**"] = (cpu, wall, st)
            skips.append((cname, "patterns + NER", st, out_a == out_b))
        for name, (cpu, wall, _st) in res.items():
            rows.append((cname, name, cpu, wall))
            print(f"{cname:7s} {name:60s} {cpu:9.1f} docs/s/core  (wall {wall:8.1f})", file=sys.stderr)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# PII scrubbing: speed", "",
        f"Produced by `python scripts/bench_pii.py {' '.join(sys.argv[1:])}` on {date}; {os.cpu_count()} cores, shared "
        f"by several engineers (load average {os.getloadavg()[0]:.0f} at the end), so speed is CPU time of one "
        "process (docs/s per core); wall-clock docs/s in the last column is only indicative. All rows ran in one "
        "process on the same documents; compare rows within a corpus.", "",
        "Corpora (≈ 2 KB real news chunks with planted PII, `make_planted` in scripts/eval_pii.py):", "",
        f"- dense: {density(corpora['dense'])}",
        f"- sparse: {density(corpora['sparse'])}",
        f"- NER rows use the first {args.ner_docs} documents of each corpus; NER model `{model}`.", "",
        "| corpus | system | docs/s per core (CPU time) | docs/s wall |", "|---|---|---|---|",
    ]
    lines += [f"| {c} | {n} | {cpu:,.0f} | {wall:,.0f} |" for c, n, cpu, wall in rows]
    lines += ["", "## Prefilter: share of documents that skip the expensive pass", "",
              "| corpus | mode | docs | regex pass run on | NER run on | output identical to no-prefilter run |",
              "|---|---|---|---|---|---|"]
    for cname, mode, st, same in skips:
        d = st["docs"] or 1
        lines.append(f"| {cname} | {mode} | {st['docs']} | {st['pattern_scanned']} ({st['pattern_scanned'] / d:.0%}) | "
                     f"{st['ner_scanned']} ({st['ner_scanned'] / d:.0%}) | {'yes' if same else 'NO'} |")
    text = "\n".join(lines) + "\n"
    marker = "<!-- notes: kept across re-runs -->"
    old = Path(args.out).read_text() if Path(args.out).exists() else ""
    if marker in old:
        text += "\n" + old[old.index(marker):]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
