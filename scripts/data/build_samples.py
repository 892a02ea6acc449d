"""Rebuild the bundled sample data (samples/) and the foundation test fixtures from ../shared/data.

The README's main command runs on samples/, so a new user sees real data without fetching anything. Everything
here is real public text with its licence copied alongside; the only synthetic file is bad_records.jsonl, which
shows how malformed input is quarantined.

    python -m scripts.data.build_samples [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def lingua_documents(shared: Path, per_lang: int, sentences_per_doc: int, seed: int = 7) -> list[dict]:
    """Group real sentences of one language into documents of a few sentences each."""
    by_lang: dict[str, list[str]] = defaultdict(list)
    with gzip.open(shared / "langid/lingua_sentences_dev.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            by_lang[rec["lang"]].append(rec["text"])
    rng = random.Random(seed)
    docs = []
    for lang in sorted(by_lang):
        sents = by_lang[lang]
        for i in range(per_lang):
            chunk = sents[i * sentences_per_doc : (i + 1) * sentences_per_doc]
            if len(chunk) < 2:
                break
            docs.append({"doc_id": f"lingua-{lang}-{i:03d}", "text": " ".join(chunk), "lang_label": lang})
    rng.shuffle(docs)
    return docs


def write_jsonl_gz(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        for r in records:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode())


def build_samples(shared: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    (out / "LICENSES").mkdir(parents=True)
    docs = lingua_documents(shared, per_lang=20, sentences_per_doc=8)
    write_jsonl_gz(out / "lingua_docs.jsonl.gz", docs)
    shutil.copy(shared / "langid/LICENSE.lingua-py", out / "LICENSES/LICENSE.lingua-py")
    shutil.copy(shared / "dedup/spdx_licenses.jsonl.gz", out / "spdx_licenses.jsonl.gz")
    shutil.copy(shared / "dedup/LICENSE.spdx-license-list", out / "LICENSES/LICENSE.spdx-license-list")
    with gzip.open(shared / "pii/presidio_synth_v2.jsonl.gz", "rt", encoding="utf-8") as f:
        pii = [json.loads(line) for line in f][:600]
    table = pa.table({"text": [r["text"] for r in pii], "n_spans": [len(r["spans"]) for r in pii]})
    pq.write_table(table, out / "pii_sentences.parquet", compression="zstd")
    shutil.copy(shared / "pii/LICENSE.presidio-research", out / "LICENSES/LICENSE.presidio-research")
    # Plain text: a few licences, one document per file.
    with gzip.open(shared / "dedup/spdx_licenses.jsonl.gz", "rt", encoding="utf-8") as f:
        spdx = [json.loads(line) for line in f]
    (out / "texts").mkdir()
    for rec in spdx[::60]:
        (out / "texts" / f"{rec['id']}.txt").write_text(rec["text"], encoding="utf-8")
    bad = [
        b'{"text": "A well-formed record among bad ones, kept in the output."}\n',
        b'{"text": "missing closing brace"\n',
        b'{"text": "invalid \xff\xfe utf-8 bytes"}\n',
        b'{"text": 12345}\n',
        b'{"title": "no text field at all"}\n',
        b'["an array, not an object"]\n',
    ]
    (out / "bad_records.jsonl").write_bytes(b"".join(bad))
    (out / "README.md").write_text(
        "# Bundled sample data\n\n"
        "Real public data drawn from ../shared/data by `python -m scripts.data.build_samples`; licences in LICENSES/.\n\n"
        "| file | what | licence |\n|---|---|---|\n"
        f"| lingua_docs.jsonl.gz | {len(docs)} documents of 8 real sentences each, 75 languages (lingua-py test data, Leipzig corpora) | Apache-2.0 |\n"
        "| spdx_licenses.jsonl.gz | all 728 SPDX licence texts: many near-duplicate families and exact duplicates | CC0 package; SPDX data CC-BY-3.0 |\n"
        "| pii_sentences.parquet | 600 synthetic sentences with PII (presidio-research) | MIT |\n"
        "| texts/*.txt | a few SPDX licence texts, one document per file | CC-BY-3.0 |\n"
        "| bad_records.jsonl | 6 hand-made records, 5 of them broken: shows quarantine | this project |\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m scripts.data.build_samples", description=__doc__)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "samples")
    args = ap.parse_args()
    build_samples(args.shared, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
