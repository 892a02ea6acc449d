"""Main-text extraction quality and speed per extractor on the article-extraction benchmark.

Token-level precision / recall / F1 of each page's extracted text against the human-marked ``articleBody`` of
../shared/data/web/article_extraction_benchmark (181 real pages), averaged over pages (empty truth and empty
output = 1.0). Tokens are ``\\w+`` matches, compared as multisets (bag of words), which is how the
benchmark's published trafilatura figure (0.948 here) is reproduced.

Speed is pages per CPU-second of this single process (``time.process_time``), so it is a per-core figure that
other jobs on a shared machine disturb less than wall time; wall-clock pages/s are printed too. The timed path
is exactly the reader's: charset decoding + DOM parse for metadata + extraction (stages/readers/extract.py).

    .venv/bin/python -m scripts.eval.extraction                       # table for docs/evaluation/extraction.md
    .venv/bin/python -m scripts.eval.extraction --ablation            # + leave-one-out of the combined selectors
    .venv/bin/python -m scripts.eval.extraction --extractors combined --repeat 3
    .venv/bin/python -m scripts.eval.extraction --extractors combined --no-peers --warc-agreement  # crawl pages
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import platform
import re
import time
from collections import Counter
from pathlib import Path

from scripts.bench.common import SHARED
from stages.readers import extract as ex

BENCH = SHARED / "web" / "article_extraction_benchmark"
TOKEN = re.compile(r"\w+")
# For crawl pages (mostly CJK): one token per CJK character, else a sentence without spaces is one token.
TOKEN_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+"
)


def load_pages(bench: Path) -> list[tuple[str, bytes, str, str]]:
    truth = json.loads((bench / "ground-truth.json").read_text())
    pages = []
    for key, item in sorted(truth.items()):
        raw = gzip.decompress((bench / "html" / f"{key}.html.gz").read_bytes())
        pages.append((key, raw, item.get("articleBody") or "", item.get("url") or ""))
    return pages


def prf(truth: str, pred: str | None, token: re.Pattern = TOKEN) -> tuple[float, float, float]:
    t = Counter(token.findall(truth or ""))
    p = Counter(token.findall(pred or ""))
    if not t and not p:
        return 1.0, 1.0, 1.0
    tp = sum((t & p).values())
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision = tp / sum(p.values())
    recall = tp / sum(t.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def _raw_trafilatura(html: str, url: str) -> str | None:
    import trafilatura

    return trafilatura.extract(html, url=url or None)


def _raw_resiliparse(html: str, url: str) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=True)


# The libraries called directly with their defaults (the baselines measured before our extractors), timed in the
# same run so the integration's cost and gain read as ratios on a noisy shared machine.
PEERS = {"peer:trafilatura.extract": _raw_trafilatura, "peer:resiliparse(main_content)": _raw_resiliparse}


def run(pages, extractor: str, repeat: int = 1) -> dict:
    best_cpu = best_wall = float("inf")
    outputs: list = []
    for _ in range(repeat):
        outputs = []
        c0, w0 = time.process_time(), time.perf_counter()
        for _key, raw, _truth, url in pages:
            html, _codec = ex.decode_html(raw)
            if extractor in PEERS:
                outputs.append(ex.Page(text=PEERS[extractor](html, url), extractor=None))
            else:
                outputs.append(ex.extract_page(html, extractor, url=url or None))
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    scores = [prf(truth, page.text) for (_k, _r, truth, _u), page in zip(pages, outputs, strict=True)]
    n = len(scores)
    return {
        "extractor": extractor,
        "pages": n,
        "precision": sum(s[0] for s in scores) / n,
        "recall": sum(s[1] for s in scores) / n,
        "f1": sum(s[2] for s in scores) / n,
        "pages_per_cpu_s": n / best_cpu,
        "pages_per_wall_s": n / best_wall,
        "fallbacks": sum(1 for p in outputs if p.extractor and ":" in p.extractor),
    }


def ablation(pages) -> list[dict]:
    """Leave-one-group-out over COMBINED_SKIP_SELECTORS, to show each group earns its place."""
    groups = {
        "captions/figures": ["figcaption", '[class*="caption"]', "figure"],
        "header": ["header"],
        "footer": ["footer", '[class*="footer"]'],
        "cookie/consent": ['[class*="cookie"]', '[id*="cookie"]', '[class*="consent"]'],
        "newsletter": ['[class*="newsletter"]', '[id*="newsletter"]', '[class*="subscribe"]'],
        "date/timestamp": [
            s for s in ex.COMBINED_SKIP_SELECTORS if "date" in s or "publish" in s or "timestamp" in s
        ],
    }
    full = list(ex.COMBINED_SKIP_SELECTORS)
    out = []
    try:
        for name, sels in [("(none removed)", [])] + list(groups.items()):
            ex.COMBINED_SKIP_SELECTORS[:] = [s for s in full if s not in sels]
            r = run(pages, "combined")
            out.append({"without": name, "f1": r["f1"], "precision": r["precision"], "recall": r["recall"]})
        ex.COMBINED_SKIP_SELECTORS[:] = []
        r = run(pages, "combined")
        out.append(
            {"without": "all selectors", "f1": r["f1"], "precision": r["precision"], "recall": r["recall"]}
        )
    finally:
        ex.COMBINED_SKIP_SELECTORS[:] = full
    return out


def warc_agreement(warc_dir: Path) -> list[dict]:
    """Pages unlike the benchmark (crawl spam, shops, non-English): agreement of each mode with trafilatura.

    No ground truth here, so this only shows how far the fast modes drift from the quality reference off the
    tuning set (F1 of their tokens against trafilatura's), and how often `combined` falls back.
    """
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    from stages.readers.warc import parse_http

    pages = []
    for f in sorted(warc_dir.glob("*.warc*")):
        with open(f, "rb") as fh:
            for r in ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=False):
                http = parse_http(r.reader.read())
                if http and ("html" in http.content_type.lower() or not http.content_type):
                    pages.append(ex.decode_html(http.payload, http.charset)[0])
    ref = [ex.extract_page(h, "trafilatura").text or "" for h in pages]
    out = []
    for mode in ("resiliparse", "combined"):
        got = [ex.extract_page(h, mode) for h in pages]
        scores = [prf(r, g.text, TOKEN_CJK) for r, g in zip(ref, got, strict=True)]
        n = len(scores)
        out.append(
            {
                "mode": mode,
                "pages": n,
                "precision": sum(s[0] for s in scores) / n,
                "recall": sum(s[1] for s in scores) / n,
                "f1": sum(s[2] for s in scores) / n,
                "fallbacks": sum(1 for g in got if g.extractor and ":" in g.extractor),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m scripts.eval.extraction",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--bench", type=Path, default=BENCH)
    ap.add_argument("--extractors", nargs="+", default=list(ex.EXTRACTORS), choices=ex.EXTRACTORS)
    ap.add_argument("--repeat", type=int, default=1, help="timing: best of N passes")
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--no-peers", action="store_true", help="skip the library-default baselines")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument(
        "--warc-agreement",
        type=Path,
        nargs="?",
        const=SHARED / "web" / "warc",
        help="also compare the fast modes with trafilatura on the HTML pages of these WARC files",
    )
    args = ap.parse_args()
    pages = load_pages(args.bench)
    names = list(args.extractors) + ([] if args.no_peers else list(PEERS))
    results = [run(pages, e, args.repeat) for e in names]
    print(f"# {len(pages)} pages, {dt.date.today()}, {platform.processor() or platform.machine()}, 1 process")
    print(
        "| extractor | precision | recall | F1 | pages/s per core (CPU time) | pages/s (wall) | trafilatura fallbacks |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['extractor']} | {r['precision']:.3f} | {r['recall']:.3f} | **{r['f1']:.3f}** | "
            f"{r['pages_per_cpu_s']:.0f} | {r['pages_per_wall_s']:.0f} | {r['fallbacks']} |"
        )
    abl = ablation(pages) if args.ablation else []
    if abl:
        print("\n| combined mode without | precision | recall | F1 |\n|---|---|---|---|")
        for a in abl:
            print(f"| {a['without']} | {a['precision']:.3f} | {a['recall']:.3f} | {a['f1']:.4f} |")
    agree = warc_agreement(args.warc_agreement) if args.warc_agreement else []
    if agree:
        print(
            "\n| mode vs trafilatura on crawl pages | pages | precision | recall | F1 | fallbacks |\n|---|---|---|---|---|---|"
        )
        for a in agree:
            print(
                f"| {a['mode']} | {a['pages']} | {a['precision']:.3f} | {a['recall']:.3f} | {a['f1']:.3f} | {a['fallbacks']} |"
            )
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "ablation": abl, "warc_agreement": agree}, indent=2)
        )


if __name__ == "__main__":
    main()
