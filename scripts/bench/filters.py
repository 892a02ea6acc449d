"""Throughput of langid + the four quality rule sets against datatrove's filters, same documents, same parameters.

Both sides run in this one process on one core, one after the other, on the same real documents (article text
and full-page text of the article-extraction benchmark, WARC/WET pages, SPDX licences; no document repeated, so
no cache can help either side across documents):
  - datatrove 0.10: LanguageFilter(languages=["en"], language_threshold=0.65) with the local lid.176.ftz →
    GopherRepetitionFilter → GopherQualityFilter → C4QualityFilter → FineWebQualityFilter, chained generators
    (how a datatrove pipeline runs them), default parameters.
  - ours: langid(languages=[en], min_score=0.65) → gopher_repetition → gopher_quality → c4_quality →
    fineweb_quality through refinery.stage_group.apply_group (the code a Ray worker runs) on Arrow batches.
It also times each rule set alone (from raw text, our token cache cleared first, so each pays its own
tokenization). docs/s per core = documents / CPU seconds of this process (the machine is shared; CPU time is
steadier than wall time), wall figures are printed too.

    .venv/bin/python -m scripts.bench.filters [--out docs/benchmarks/filters.md] [--skip-single]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time

from scripts.bench.common import ROOT, datatrove_filters, text_batches, write_page

QUALITY = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def datatrove_chain(texts: list[str], which: tuple[str, ...], with_lid: bool) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.filters import LanguageFilter
    from fasttext.FastText import _FastText

    from stages.langid import bundled_model_path

    steps = []
    if with_lid:
        lf = LanguageFilter(languages=["en"], language_threshold=0.65)
        lf.model._model = _FastText(bundled_model_path())  # the same local model; datatrove would download it
        steps.append(lf)
    filters = datatrove_filters()
    steps += [filters[n] for n in which]
    data = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
    for s in steps:
        data = s.run(data)
    return sum(1 for _ in data)


def ours_chain(texts: list[str], which: tuple[str, ...], with_lid: bool, batch_rows: int = 1024) -> int:
    from refinery.schema import DROP_COL
    from refinery.stage_group import apply_group, build_group

    specs = []
    if with_lid:
        specs.append(("langid", "langid", {"languages": ["en"], "min_score": 0.65}))
    specs += [(n, n, {}) for n in which]
    group = build_group(specs)
    kept = 0
    for tb in text_batches(texts, batch_rows):
        out = apply_group(group, tb)
        kept += out.num_rows if DROP_COL not in out.column_names else out[DROP_COL].null_count
    return kept


def render_md(rows: list[tuple], n: int, chars: int) -> str:
    """docs/benchmarks/filters.md: one row per pipeline (label, datatrove and ours docs/s per core, their ratio,
    wall docs/s of each, documents kept by each), for `n` documents of `chars` characters in all."""
    lines = [
        "# Filters: langid + Gopher/C4/FineWeb rules vs datatrove",
        "",
        "Command: `.venv/bin/python -m scripts.bench.filters`  ",
        f"Date: {dt.date.today().isoformat()}; machine: 2 cores shared with ~7 other engineers' jobs (noisy), both "
        "sides measured one after the other in the same process; docs/s per core = documents / CPU seconds.",
        "",
        f"Documents: {n} real documents ({chars / n:,.0f} chars on average): article text and full-page text of the "
        "181 article-extraction-benchmark pages, WARC/WET pages, SPDX licence texts. Same parameters on both sides "
        "(datatrove's defaults; language: en, threshold 0.65).",
        "",
        "| pipeline | datatrove docs/s/core | ours docs/s/core | ours / datatrove | wall docs/s (dt / ours) | kept (dt / ours) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | **{r[3]:.2f}×** | {r[4]:.1f} / {r[5]:.1f} | {r[6]} / {r[7]} |"
        )
    lines += [
        "",
        "Target: langid + all four rule sets ≥ 2× datatrove's filters (first row).",
        "",
        "Why ours is faster: one spaCy tokenization per document shared by all rule sets (datatrove tokenizes again "
        "for C4's per-line sentence count and for FineWeb after C4 changes the text), token facts pulled out as "
        "numpy columns in one call, n-gram repetition on 64-bit hashes with numpy instead of joined strings, and "
        "fastText top-1 (datatrove asks for all 176 labels per document).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m scripts.bench.filters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "filters.md"))
    ap.add_argument("--skip-single", action="store_true", help="only the full chain")
    args = ap.parse_args()
    os.environ.setdefault("HF_HOME", "/tmp/refinery-hf")

    from scripts.eval.quality_agreement import load_documents
    from stages.quality import tokenizer as qtok

    docs = [d for d in load_documents() if d["source"] != "lingua"]
    warm = [d["text"] for d in load_documents() if d["source"] == "lingua"][:200]
    texts = [d["text"] for d in docs]
    n, chars = len(texts), sum(map(len, texts))
    print(f"{n} documents, {chars / n:,.0f} chars on average", flush=True)
    # warm up both sides (spaCy, fastText, imports) on other documents
    datatrove_chain(warm, QUALITY, True)
    ours_chain(warm, QUALITY, True)

    rows = []
    cases = [("langid + all four (chain)", QUALITY, True)]
    if not args.skip_single:
        cases += [(name, (name,), False) for name in QUALITY]
    for label, which, lid in cases:
        qtok._CACHE.data.clear()
        qtok._CACHE.tokens = 0
        kept_dt, w_dt, c_dt = _timed(lambda: datatrove_chain(texts, which, lid))  # noqa: B023
        qtok._CACHE.data.clear()
        qtok._CACHE.tokens = 0
        kept_us, w_us, c_us = _timed(lambda: ours_chain(texts, which, lid))  # noqa: B023
        row = (label, n / c_dt, n / c_us, (n / c_us) / (n / c_dt), n / w_dt, n / w_us, kept_dt, kept_us)
        rows.append(row)
        print(
            f"{label:28s} datatrove {row[1]:7.1f} docs/s/core  ours {row[2]:7.1f}  ratio {row[3]:.2f}x  "
            f"(wall {row[4]:.1f} vs {row[5]:.1f}; kept {kept_dt} vs {kept_us})",
            flush=True,
        )

    write_page(args.out, render_md(rows, n, chars))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
