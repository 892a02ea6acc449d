"""Build the labelled data the classifier configs and tests train on, from ../shared/data (real, human-labelled).

Labels come from the article-extraction benchmark: for each of its 181 real web pages a person marked the article
text (`ground-truth.json` articleBody). Every line of the page's full text (resiliparse, main_content=False) with
at least 3 words is labelled `article` when it is a line of the marked article, else `boilerplate` (menus, footers,
cookie banners, related links): the "reference text vs the rest of the web" shape of DCLM's quality classifier,
on data a person labelled. Lines repeated across pages are kept once, so a split never sees one line on both sides.

    python -m scripts.data.classifier_samples [--shared ../shared/data]

Writes samples/classify/{article,boilerplate}_lines.jsonl.gz (all article lines, a seeded sample of boilerplate
lines) and tests/fixtures/classify/ (a seeded slice of each, for the tests), records {"text", "page"}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = "web/article_extraction_benchmark"


def page_lines(shared: Path) -> tuple[list[dict], list[dict]]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    truth = json.loads((shared / BENCH / "ground-truth.json").read_text())
    seen: set[str] = set()
    article, boiler = [], []
    for key in sorted(truth):
        raw = gzip.open(shared / BENCH / "html" / f"{key}.html.gz").read()
        full = extract_plain_text(bytes_to_str(raw, detect_encoding(raw)), main_content=False)
        body = {" ".join(x.split()) for x in truth[key]["articleBody"].splitlines() if x.strip()}
        for line in full.splitlines():
            text = " ".join(line.split())
            if len(text.split()) < 3 or text in seen:
                continue
            seen.add(text)
            (article if text in body else boiler).append({"text": text, "page": key[:12]})
    return article, boiler


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        for r in rows:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.data.classifier_samples", description=__doc__)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--boilerplate", type=int, default=4000, help="boilerplate lines in samples/")
    ap.add_argument("--fixture", type=int, default=1000, help="lines of each label in tests/fixtures/")
    a = ap.parse_args(argv)
    article, boiler = page_lines(a.shared)
    rng = random.Random(0)
    boiler_sample = sorted(rng.sample(range(len(boiler)), min(a.boilerplate, len(boiler))))
    samples = ROOT / "samples" / "classify"
    write(samples / "article_lines.jsonl.gz", article)
    write(samples / "boilerplate_lines.jsonl.gz", [boiler[i] for i in boiler_sample])
    fix = ROOT / "tests" / "fixtures" / "classify"
    art_idx = sorted(rng.sample(range(len(article)), min(a.fixture, len(article))))
    bp_idx = sorted(rng.sample(boiler_sample, min(a.fixture, len(boiler_sample))))
    write(fix / "article_lines.jsonl.gz", [article[i] for i in art_idx])
    write(fix / "boilerplate_lines.jsonl.gz", [boiler[i] for i in bp_idx])
    lic = a.shared / BENCH / "LICENSE"
    shutil.copyfile(lic, fix / "LICENSE.article-extraction-benchmark")
    shutil.copyfile(lic, ROOT / "samples" / "LICENSES" / "LICENSE.article-extraction-benchmark")
    print(f"article lines {len(article)}, boilerplate lines {len(boiler)} (sampled {len(boiler_sample)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
