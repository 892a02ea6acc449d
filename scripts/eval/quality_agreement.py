"""Agreement of our quality stages with datatrove's filters (the reference), on real documents.

For each rule set (gopher_quality, gopher_repetition, c4_quality, fineweb_quality) with default parameters, the
keep/drop decision of our stage and of datatrove's filter is compared document by document; so are the first
reasons, C4's cleaned text, and the whole FineWeb chain (repetition → quality → C4 → FineWeb, where C4's cleaned
text feeds FineWeb). Documents:
  - article: the human-marked article text of the 181 pages in ../shared/data/web/article_extraction_benchmark
  - article_html: the same pages' full HTML → text with resiliparse (menus, footers: what C4 cleans)
  - warc: WET conversion records and WARC responses (→ text with resiliparse) in ../shared/data/web/warc
  - spdx: every SPDX licence text in ../shared/data/dedup
  - lingua: lingua sentences grouped into documents (8 per document, per language; every other document one
    sentence per line)

    .venv/bin/python -m scripts.eval.quality_agreement [--limit N] [--out docs/evaluation/quality.md]
    .venv/bin/python -m scripts.eval.quality_agreement --write-fixtures   # refresh tests/fixtures/quality/
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import gzip
import json
import os
import time
from collections import Counter
from pathlib import Path

from scripts.bench.common import ROOT, SHARED, datatrove_filters, text_batches, write_page

FILTERS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


def _html_to_text(raw: bytes) -> str:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    return extract_plain_text(bytes_to_str(raw, detect_encoding(raw)), main_content=False)


def load_documents(limit: int | None = None) -> list[dict]:
    """Real documents from ../shared/data as {source, id, text}."""
    docs: list[dict] = []
    art = SHARED / "web" / "article_extraction_benchmark"
    gt = json.loads((art / "ground-truth.json").read_text())
    for key, v in sorted(gt.items()):
        docs.append({"source": "article", "id": key, "text": v["articleBody"]})
    for path in sorted((art / "html").glob("*.html.gz")):
        docs.append(
            {"source": "article_html", "id": path.name, "text": _html_to_text(gzip.open(path).read())}
        )
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for f in sorted(glob.glob(str(SHARED / "web" / "warc" / "*.warc*.gz"))):
        with open(f, "rb") as fh:
            for j, rec in enumerate(
                ArchiveIterator(fh, record_types=WarcRecordType.response | WarcRecordType.conversion)
            ):
                body = rec.reader.read()
                if rec.record_type == WarcRecordType.conversion:
                    text = body.decode("utf-8", "replace")
                else:
                    text = _html_to_text(body.split(b"\r\n\r\n", 1)[-1])
                docs.append({"source": "warc", "id": f"{Path(f).name}#{j}", "text": text})
    for line in gzip.open(SHARED / "dedup" / "spdx_licenses.jsonl.gz"):
        r = json.loads(line)
        docs.append({"source": "spdx", "id": r["id"], "text": r["text"]})
    by_lang: dict[str, list[str]] = {}
    for line in gzip.open(SHARED / "langid" / "lingua_sentences_dev.jsonl.gz"):
        r = json.loads(line)
        by_lang.setdefault(r["lang"], []).append(r["text"])
    k = 0
    for lang, sents in sorted(by_lang.items()):
        for j in range(0, len(sents), 8):
            sep = "\n" if k % 2 else " "
            docs.append(
                {
                    "source": "lingua",
                    "id": f"{lang}-{j // 8}",
                    "text": sep.join(sents[j : j + 8]),
                    "lang": lang,
                }
            )
            k += 1
    docs = [d for d in docs if d["text"]]
    if limit:
        # an even sample over sources, deterministic
        step = max(1, len(docs) // limit)
        docs = docs[::step][:limit]
    return docs


def run_datatrove(name: str, f, texts: list[str]) -> tuple[list[str | None], list[str]]:
    """datatrove's decision (None = keep, else its reason) and the text after the filter (C4 changes it)."""
    from datatrove.data import Document

    reasons, out = [], []
    for i, t in enumerate(texts):
        doc = Document(text=t, id=str(i))
        r = f.filter(doc)
        reasons.append(None if r is True else (r[1] if isinstance(r, tuple) else "drop"))
        out.append(doc.text)
    return reasons, out


def run_ours(name: str, texts: list[str], batch_rows: int = 256) -> tuple[list[str | None], list[str]]:
    from refinery.stage import build_stage

    stage = build_stage(name, {})
    stage.setup()
    reasons: list[str | None] = []
    out: list[str] = []
    for tb in text_batches(texts, batch_rows):
        res, rs = stage.process(tb)
        reasons += rs.to_pylist() if rs is not None else [None] * tb.num_rows
        out += res["text"].to_pylist()
    return reasons, out


def compare(docs: list[dict]) -> dict:
    texts = [d["text"] for d in docs]
    dt_filters = datatrove_filters()
    decisions: dict[str, tuple[list, list]] = {}
    c4_texts: tuple[list[str], list[str]] = (texts, texts)
    result: dict = {"n_docs": len(docs), "by_source": dict(Counter(d["source"] for d in docs)), "filters": {}}
    for name in FILTERS:
        t0 = time.perf_counter()
        ref, ref_text = run_datatrove(name, dt_filters[name], texts)
        t1 = time.perf_counter()
        ours, our_text = run_ours(name, texts)
        t2 = time.perf_counter()
        decisions[name] = (ref, ours)
        if name == "c4_quality":
            c4_texts = (ref_text, our_text)
        dis = [i for i in range(len(docs)) if (ref[i] is None) != (ours[i] is None)]
        text_diff = [
            i for i in range(len(docs)) if ref[i] is None and ours[i] is None and ref_text[i] != our_text[i]
        ]
        per_source: dict[str, list[int]] = {}
        for i, d in enumerate(docs):
            a = per_source.setdefault(d["source"], [0, 0])
            a[0] += 1
            a[1] += (ref[i] is None) == (ours[i] is None)
        result["filters"][name] = {
            "agreement": 1 - len(dis) / len(docs),
            "disagreements": [
                {"source": docs[i]["source"], "id": docs[i]["id"], "datatrove": ref[i], "ours": ours[i]}
                for i in dis
            ],
            "kept_datatrove": sum(r is None for r in ref),
            "kept_ours": sum(r is None for r in ours),
            "reasons_datatrove": dict(Counter(r for r in ref if r)),
            "reasons_ours": dict(Counter(r for r in ours if r)),
            "c4_text_mismatch": len(text_diff),
            "per_source": {k: v[1] / v[0] for k, v in per_source.items()},
            "seconds_datatrove": round(t1 - t0, 2),
            "seconds_ours": round(t2 - t1, 2),
        }
        print(
            f"{name:18s} agreement {result['filters'][name]['agreement']:.4f}  disagreements {len(dis)}  "
            f"text mismatches {len(text_diff)}  (datatrove {t1 - t0:.1f}s, ours {t2 - t1:.1f}s)",
            flush=True,
        )
    # the chain as FineWeb runs it: C4's cleaned text is what FineWeb judges (the first three steps are the runs
    # above; FineWeb runs again on each side's own C4 output)
    ref_keep = [all(decisions[n][0][i] is None for n in FILTERS[:3]) for i in range(len(docs))]
    our_keep = [all(decisions[n][1][i] is None for n in FILTERS[:3]) for i in range(len(docs))]
    r, _ = run_datatrove("fineweb_quality", dt_filters["fineweb_quality"], c4_texts[0])
    o, _ = run_ours("fineweb_quality", c4_texts[1])
    ref_keep = [k and x is None for k, x in zip(ref_keep, r, strict=True)]
    our_keep = [k and x is None for k, x in zip(our_keep, o, strict=True)]
    chain_dis = [i for i in range(len(docs)) if ref_keep[i] != our_keep[i]]
    result["chain"] = {
        "agreement": 1 - len(chain_dis) / len(docs),
        "kept_datatrove": sum(ref_keep),
        "kept_ours": sum(our_keep),
        "disagreements": [docs[i]["id"] for i in chain_dis],
    }
    print(
        f"{'chain':18s} agreement {result['chain']['agreement']:.4f}  kept {sum(ref_keep)} vs {sum(our_keep)}"
    )
    return result


def write_markdown(result: dict, path: Path, command: str) -> None:
    lines = [
        "# Quality rules: agreement with datatrove",
        "",
        f"Command: `{command}`  ",
        f"Date: {dt.date.today().isoformat()}; datatrove 0.10.1 (with spaCy's blank English tokenizer), default parameters.",
        "",
        f"Documents: {result['n_docs']} real documents — "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["by_source"].items()))
        + " (see the script's docstring for what each source is).",
        "",
        "Agreement = share of documents where our keep/drop decision equals datatrove's. Target: ≥ 0.995.",
        "",
        "| rule set | agreement | disagreements | kept (datatrove / ours) | C4 cleaned-text mismatches |",
        "|---|---|---|---|---|",
    ]
    for name, f in result["filters"].items():
        lines.append(
            f"| {name} | {f['agreement']:.4f} | {len(f['disagreements'])} | {f['kept_datatrove']} / {f['kept_ours']} | "
            f"{f['c4_text_mismatch'] if name == 'c4_quality' else '—'} |"
        )
    c = result["chain"]
    lines += [
        f"| chain (repetition → quality → C4 → FineWeb) | {c['agreement']:.4f} | {len(c['disagreements'])} | "
        f"{c['kept_datatrove']} / {c['kept_ours']} | — |",
        "",
        "Drop reasons (first failing rule) per rule set, datatrove → ours:",
        "",
    ]
    for name, f in result["filters"].items():
        lines.append(f"- {name}: datatrove {f['reasons_datatrove']}; ours {f['reasons_ours']}")
    lines += ["", "Disagreements:", ""]
    any_dis = False
    for name, f in result["filters"].items():
        for d in f["disagreements"]:
            any_dis = True
            lines.append(f"- {name}: {d['source']} `{d['id']}` datatrove={d['datatrove']} ours={d['ours']}")
    if not any_dis:
        lines.append("- none")
    lines += [
        "",
        "How the stages reach this: they use the same word tokenizer as datatrove (spaCy's blank English "
        "tokenizer), run once per document and shared by the stages of a fused group; C4 counts spaCy "
        "sentencizer sentences from that single tokenization; n-gram repetition compares 64-bit hashes of token "
        "ids (a hash collision or two different n-grams with the same concatenation could in theory differ "
        "from datatrove's string comparison; none was seen). Each stage stores its signals in `quality` "
        "(`gopher_*`, `rep_*`, `c4_*`, `fw_*`), so thresholds can be changed without recomputing. "
        "tests/test_quality.py runs datatrove side by side on the 44-document fixture in tests/fixtures/quality/.",
        "",
        "Configuring: every threshold is a stage param with datatrove's default (None or `skip: [rule]` switches a rule off); `per_language: {de: {skip: [stop_words]}, fr: {min_doc_words: 30}}` overrides thresholds for rows whose `lang` is that language; `only_languages: [en]` makes the rule set annotate-only for other languages; `action: annotate` keeps every row and lists the failed rule in `flagged`. Drop reasons are the rule names (`gopher_quality:mean_word_length`, `c4_quality:too_few_sentences`, …), and report.json breaks kept/dropped down by language per stage.",
    ]
    write_page(path, "\n".join(lines) + "\n")


def write_fixtures(docs: list[dict]) -> None:
    """A small, varied slice for tests/test_quality.py: per source, documents kept and dropped by each filter."""
    out = ROOT / "tests" / "fixtures" / "quality"
    out.mkdir(parents=True, exist_ok=True)
    pool: list[dict] = []
    for src in ("article", "article_html", "warc", "spdx", "lingua"):
        cand = [d for d in docs if d["source"] == src and len(d["text"]) < 12_000]
        pool += cand[:: max(1, len(cand) // 40)][:40]
    docs = pool
    texts = [d["text"] for d in docs]
    dt_filters = datatrove_filters()
    decisions = {name: run_datatrove(name, dt_filters[name], texts)[0] for name in FILTERS}
    chosen: list[int] = []
    for src, quota in (("article", 10), ("article_html", 8), ("warc", 6), ("spdx", 10), ("lingua", 10)):
        idx = [i for i, d in enumerate(docs) if d["source"] == src and len(d["text"]) < 12_000]
        picked: list[int] = []
        for name in FILTERS:  # one dropped and one kept per filter where possible
            for want_drop in (True, False):
                for i in idx:
                    if i not in picked and (decisions[name][i] is not None) == want_drop:
                        picked.append(i)
                        break
        for i in idx:
            if len(picked) >= quota:
                break
            if i not in picked:
                picked.append(i)
        chosen += picked[: max(quota, len(picked))]
    with gzip.open(out / "docs.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in chosen:
            f.write(
                json.dumps(
                    {k: docs[i][k] for k in ("source", "id", "text", "lang") if k in docs[i]},
                    ensure_ascii=False,
                )
                + "\n"
            )
    print(f"wrote {len(chosen)} documents to {out / 'docs.jsonl.gz'}")


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m scripts.eval.quality_agreement",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--limit", type=int, default=None, help="evaluate an even sample of N documents")
    ap.add_argument("--out", default=str(ROOT / "docs" / "evaluation" / "quality.md"))
    ap.add_argument("--json", default=None, help="also write the full result as JSON")
    ap.add_argument("--write-fixtures", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HOME", "/tmp/refinery-hf")
    docs = load_documents(args.limit)
    if args.write_fixtures:
        write_fixtures(docs)
        return
    result = compare(docs)
    cmd = "-m scripts.eval.quality_agreement" + (f" --limit {args.limit}" if args.limit else "")
    write_markdown(result, Path(args.out), f".venv/bin/python {cmd}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
