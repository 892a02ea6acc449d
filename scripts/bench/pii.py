"""Throughput of the `pii` stage per core, with and without each trick, against presidio alone.

Corpus: ≈ 2 KB chunks of real news text (article-extraction benchmark) with generated PII planted at known
offsets (scripts/eval/pii.py `make_planted`), in two densities: every document holds 1–4 values ("dense"), and
20% of documents hold 1–2 ("sparse", closer to web text). Speed is measured as CPU time of this one process
(`time.process_time`), i.e. docs/s per core, because the machine is shared and wall time is noisy; the wall-clock
figure is printed too. All systems run in the same process on the same documents.

Usage: .venv/bin/python -m scripts.bench.pii [--docs 2000] [--ner-docs 300] [--out docs/benchmarks/pii.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

import pyarrow as pa

from scripts.bench.common import ROOT, presidio_engine, text_table, write_page
from scripts.eval.pii import NOTES_MARKER, make_planted


def density(docs: list[dict]) -> str:
    n = len(docs)
    spans = sum(len(d["spans"]) for d in docs)
    kb = sum(len(d["text"]) for d in docs) / 1024
    with_pii = sum(bool(d["spans"]) for d in docs)
    return (
        f"{n} docs, mean {kb * 1024 / n:.0f} chars, {spans} planted values: {spans / n:.2f} per doc, "
        f"{spans / kb:.2f} per KB, {with_pii / n:.0%} of docs hold PII"
    )


def bench_presidio(texts: list[str], model: str | None) -> tuple[float, float]:
    eng, ents = presidio_engine(model)
    eng.analyze(texts[0], language="en", entities=ents)
    c0, w0 = time.process_time(), time.perf_counter()
    for t in texts:
        eng.analyze(t, language="en", entities=ents, score_threshold=0.4)
    return len(texts) / (time.process_time() - c0), len(texts) / (time.perf_counter() - w0)


def bench_stage(
    texts: list[str], params: dict, batch: int = 1024, meta: list[str | None] | None = None
) -> tuple[float, float, dict, list]:
    """docs/s per core and wall of the stage on these texts (with a `meta` JSON column when given)."""
    from stages.pii.scrub import Pii

    stage = Pii(params)
    stage.setup()
    tables = [
        text_table(
            texts[j : j + batch],
            modality=["text"] * len(texts[j : j + batch]),
            **({"meta": pa.array(meta[j : j + batch], pa.large_string())} if meta is not None else {}),
        )
        for j in range(0, len(texts), batch)
    ]
    stage.process(tables[0].slice(0, 4))
    stage.stats = {k: 0 for k in stage.stats}
    # every case starts with an empty phone cache: the same documents must not be judged faster the second time
    from stages.pii.phones import _matches

    _matches.cache_clear()
    c0, w0 = time.process_time(), time.perf_counter()
    outs = []
    for t in tables:
        out, _ = stage.process(t)
        outs += out["text"].to_pylist()
    return (
        len(texts) / (time.process_time() - c0),
        len(texts) / (time.perf_counter() - w0),
        dict(stage.stats),
        outs,
    )


def pattern_cases() -> list[tuple[str, dict]]:
    """Rows (label, stage params) without NER; the last one is the stage's default."""
    return [
        ("presidio patterns behind our prefilter", {"engine": "presidio", "ner_model": None}),
        ("ours: validated regexes, no prefilter", {"ner_model": None, "prefilter": False}),
        ("**ours: prefilter + validated regexes (default, no NER)**", {"ner_model": None}),
    ]


def ner_cases(model: str) -> list[tuple[str, dict]]:
    """Rows (label, stage params) with the NER `model`; the last one is the stage's default."""
    return [
        ("presidio + NER behind our prefilter", {"engine": "presidio", "ner_model": model}),
        ("ours + NER: nlp.pipe (ner only), no prefilter", {"ner_model": model, "prefilter": False}),
        (
            "ours + NER: nlp.pipe (ner only) + prefilter, no name rules",
            {"ner_model": model, "name_rules": False},
        ),
        ("**ours + NER: nlp.pipe (ner only) + prefilter + name rules (default)**", {"ner_model": model}),
    ]


def run_cases(texts: list[str], cases: list[tuple[str, dict]], res: dict) -> tuple[dict, bool]:
    """Time the stage with each case's params on `texts` (rows into `res`, by label). Returns the stats of the
    last (default) case and whether its output equals the output of the case run with `prefilter: False`."""
    outs = []
    for label, params in cases:
        cpu, wall, st, out = bench_stage(texts, params)
        res[label] = (cpu, wall, st)
        outs.append((params, out))
    no_prefilter = next(out for params, out in outs if params.get("prefilter") is False)
    return st, outs[-1][1] == no_prefilter


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.pii")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--ner-docs", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "pii.md"))
    args = ap.parse_args()
    from stages.pii.scrub import resolve_model

    model = resolve_model("auto")
    corpora = {
        "dense": make_planted(args.docs, seed=11),
        "sparse": make_planted(args.docs, seed=12, per_doc=(1, 2), pii_share=0.2),
    }
    rows = []
    skips = []
    for cname, docs in corpora.items():
        texts = [d["text"] for d in docs]
        ner_texts = texts[: args.ner_docs]
        res = {}
        res["presidio patterns (AnalyzerEngine, no_op NLP), every doc"] = (*bench_presidio(texts, None), None)
        skips.append((cname, "patterns", *run_cases(texts, pattern_cases(), res)))
        if model:
            res[f"presidio + NER ({model}), every doc"] = (*bench_presidio(ner_texts, model), None)
            skips.append((cname, "patterns + NER", *run_cases(ner_texts, ner_cases(model), res)))
        for name, (cpu, wall, _st) in res.items():
            rows.append((cname, name, cpu, wall))
            print(f"{cname:7s} {name:60s} {cpu:9.1f} docs/s/core  (wall {wall:8.1f})", file=sys.stderr)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# PII scrubbing: speed",
        "",
        f"Produced by `python -m scripts.bench.pii {' '.join(sys.argv[1:])}` on {date}; {os.cpu_count()} cores, shared "
        f"by several engineers (load average {os.getloadavg()[0]:.0f} at the end), so speed is CPU time of one "
        "process (docs/s per core); wall-clock docs/s in the last column is only indicative. All rows ran in one "
        "process on the same documents; compare rows within a corpus.",
        "",
        "Corpora (≈ 2 KB real news chunks with planted PII, `make_planted` in scripts/eval/pii.py):",
        "",
        f"- dense: {density(corpora['dense'])}",
        f"- sparse: {density(corpora['sparse'])}",
        f"- NER rows use the first {args.ner_docs} documents of each corpus; NER model `{model}`.",
        "",
        "| corpus | system | docs/s per core (CPU time) | docs/s wall |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c} | {n} | {cpu:,.0f} | {wall:,.0f} |" for c, n, cpu, wall in rows]
    lines += [
        "",
        "## Prefilter: share of documents that skip the expensive pass",
        "",
        "| corpus | mode | docs | regex pass run on | NER run on | output identical to no-prefilter run |",
        "|---|---|---|---|---|---|",
    ]
    for cname, mode, st, same in skips:
        d = st["docs"] or 1
        lines.append(
            f"| {cname} | {mode} | {st['docs']} | {st['pattern_scanned']} ({st['pattern_scanned'] / d:.0%}) | "
            f"{st['ner_scanned']} ({st['ner_scanned'] / d:.0%}) | {'yes' if same else 'NO'} |"
        )
    # hand-written notes below the marker survive a re-run
    print(write_page(args.out, "\n".join(lines) + "\n", keep_from=NOTES_MARKER, sep="\n"))


if __name__ == "__main__":
    main()
