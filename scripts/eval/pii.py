"""Evaluate the `pii` stage: span-level precision/recall/F1 per entity type and the leak rate.

Leak rate = share of planted values still present verbatim in the output text (what a memorizing model could
reproduce). Two data sets:

1. ../shared/data/pii/presidio_synth_v2.jsonl.gz — 1,500 real-text-style sentences with labelled PII (MIT,
   microsoft/presidio-research). Short (≈ 85 chars); few emails/IBANs/IPs/SSNs.
2. "planted": ≈ 2 KB chunks of real news text (../shared/data/web/article_extraction_benchmark ground truth)
   with generated PII of every pattern type planted at recorded offsets (deterministic, seeded). It gives each
   pattern type hundreds of samples and many phone formats.

Systems: presidio alone (pattern recognizers, and with the spaCy model) as the baseline, and our stage
(`engine: fast`) with and without NER, and with `engine: presidio` through our stage (prefilter + phone). Spans
match leniently: a gold span counts as found when a predicted span of a compatible type overlaps it.

3. "international phones": numbers of 30 countries generated from libphonenumber's metadata in ten formats
   (scripts/eval/pii_phones.py), planted in the same news chunks: leak per format and per country, for each
   `phone_leniency`.

Breakdowns: phone leak per format (dev data: by written shape), street-address leak per region (dev data: by the
country named in the record, and by shape), address false positives per language on PII-free sentences, and
over-redaction (share of non-PII words kept).

Usage: .venv/bin/python -m scripts.eval.pii [--out docs/evaluation/pii.md] [--planted 400] [--fp-docs 2000]
       [--phones 600]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict

from scripts.bench.common import ROOT, SHARED, presidio_engine, write_page

SYNTH = SHARED / "pii" / "presidio_synth_v2.jsonl.gz"
ARTICLES = SHARED / "web" / "article_extraction_benchmark" / "ground-truth.json"
LINGUA = SHARED / "langid" / "lingua_sentences_dev.jsonl.gz"

# Evaluation classes: gold labels and predicted types that count for each.
CLASSES = {
    "EMAIL_ADDRESS": ({"EMAIL_ADDRESS"}, {"EMAIL_ADDRESS"}),
    "CREDIT_CARD": ({"CREDIT_CARD"}, {"CREDIT_CARD"}),
    "IBAN_CODE": ({"IBAN_CODE"}, {"IBAN_CODE"}),
    "IP_ADDRESS": ({"IP_ADDRESS"}, {"IP_ADDRESS"}),
    "US_SSN": ({"US_SSN"}, {"US_SSN"}),
    "PHONE_NUMBER": ({"PHONE_NUMBER"}, {"PHONE_NUMBER"}),
    "CRYPTO": ({"CRYPTO"}, {"CRYPTO"}),
    "PERSON": ({"PERSON"}, {"PERSON"}),
    "LOCATION+ADDRESS": ({"GPE", "STREET_ADDRESS", "LOCATION", "ADDRESS"}, {"LOCATION", "ADDRESS"}),
    "ORGANIZATION": ({"ORGANIZATION"}, {"ORGANIZATION"}),
}
LEAK_TYPES = [
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "PHONE_NUMBER",
    "CRYPTO",
    "PERSON",
    "STREET_ADDRESS",
    "GPE",
    "ORGANIZATION",
]


# ------------------------------------------------------------------ data


def load_synth() -> list[dict]:
    with gzip.open(SYNTH, "rt") as f:
        return [json.loads(line) for line in f]


def article_chunks(target: int = 2000) -> list[str]:
    """Real news text cut at paragraph boundaries into ≈ target-char chunks."""
    arts = json.loads(ARTICLES.read_text())
    chunks = []
    for key in sorted(arts):
        cur = ""
        for para in arts[key]["articleBody"].split("\n"):
            para = para.strip()
            if not para:
                continue
            cur = f"{cur}\n{para}" if cur else para
            if len(cur) >= target:
                chunks.append(cur[: int(target * 1.3)])
                cur = ""
        if len(cur) >= target // 2:
            chunks.append(cur)
    return chunks


_FIRST = [
    "James",
    "Maria",
    "Wei",
    "Aisha",
    "Olga",
    "Carlos",
    "Priya",
    "Liam",
    "Fatima",
    "Hiroshi",
    "Sofia",
    "Noah",
    "Chloe",
    "Mateo",
    "Ingrid",
    "Kwame",
    "Elena",
    "Lukas",
    "Amara",
    "Dmitri",
    "Grace",
    "Tomasz",
    "Leila",
    "Arjun",
]
_LAST = [
    "Johnson",
    "Garcia",
    "Zhang",
    "Okafor",
    "Petrova",
    "Mendes",
    "Sharma",
    "O'Brien",
    "Haddad",
    "Tanaka",
    "Rossi",
    "Williams",
    "Dubois",
    "Fernandez",
    "Larsen",
    "Mensah",
    "Popescu",
    "Weber",
    "Nwosu",
    "Ivanov",
    "Thompson",
    "Kowalski",
    "Farah",
    "Iyer",
]
_DOMAINS = [
    "gmail.com",
    "example.org",
    "mail.co.uk",
    "uni-hamburg.de",
    "outlook.fr",
    "company.io",
    "yahoo.co.jp",
]
_IBAN_CC = {
    "DE": 18,
    "GB": 18,
    "FR": 23,
    "NL": 14,
    "ES": 20,
    "IT": 23,
    "CH": 17,
    "BE": 12,
    "PL": 24,
    "SE": 20,
}


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for d in "0123456789":
        from stages.pii.patterns import luhn_ok

        if luhn_ok(body + d):
            return body + d
    raise AssertionError


def gen_value(kind: str, rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    if kind == "EMAIL_ADDRESS":
        f, la = rng.choice(_FIRST), rng.choice(_LAST).replace("'", "")
        local = rng.choice([f"{f}.{la}", f"{f[0]}{la}", f"{f}{rng.randint(1, 99)}", f"{la}_{f}"]).lower()
        return f"{local}@{rng.choice(_DOMAINS)}"
    if kind == "CREDIT_CARD":
        prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16), ("35", 16)])
        num = _luhn_complete(prefix, length, rng)
        style = rng.choice(["plain", "space", "dash"])
        if style == "plain":
            return num
        sep = " " if style == "space" else "-"
        groups = [num[:4], num[4:10], num[10:]] if length == 15 else [num[i : i + 4] for i in range(0, 16, 4)]
        return sep.join(groups)
    if kind == "IBAN_CODE":
        cc = rng.choice(sorted(_IBAN_CC))
        bban = (
            "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + d(_IBAN_CC[cc] - 4)
            if cc in ("GB", "NL")
            else d(_IBAN_CC[cc])
        )
        num = int("".join(str(int(c, 36)) for c in bban + cc + "00"))
        iban = f"{cc}{98 - num % 97:02d}{bban}"
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban
    if kind == "IP_ADDRESS":
        if rng.random() < 0.3:
            return (
                ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8))
                if rng.random() < 0.5
                else f"2001:db8:{rng.randint(1, 65535):x}::{rng.randint(1, 65535):x}"
            )
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    if kind == "US_SSN":
        area = rng.choice([x for x in range(1, 900) if x != 666])
        return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    if kind == "PHONE_NUMBER":
        return rng.choice(
            [
                lambda: f"({d(3)}) {d(3)}-{d(4)}",
                lambda: f"{d(3)}-{d(3)}-{d(4)}",
                lambda: f"+1 {d(3)} {d(3)} {d(4)}",
                lambda: f"+44 20 {d(4)} {d(4)}",
                lambda: f"07{d(3)} {d(6)}",
                lambda: f"+49 30 {d(8)}",
                lambda: f"030 {d(7)}",
                lambda: f"0{rng.randint(1, 9)} {d(2)} {d(2)} {d(2)} {d(2)}",
                lambda: f"+33 {rng.randint(1, 9)} {d(2)} {d(2)} {d(2)} {d(2)}",
                lambda: f"0{rng.randint(1, 9)}.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
                lambda: f"+91 9{d(4)} {d(5)}",
                lambda: f"+81 3-{d(4)}-{d(4)}",
                lambda: f"+61 4{d(2)} {d(3)} {d(3)}",
                lambda: f"{d(3)}.{d(3)}.{d(4)}",
                lambda: f"+39 06 {d(8)}",
                lambda: f"+34 9{d(2)} {d(3)} {d(3)}",
                lambda: f"{d(3)}-{d(4)}",
                lambda: f"+1-{d(3)}-{d(3)}-{d(4)}x{d(3)}",
                lambda: f"+46 (0)8 {d(3)} {d(3)} {d(2)}",
            ]
        )()
    if kind == "CRYPTO":
        return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40))
    if kind == "PERSON":
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    raise KeyError(kind)


_TEMPLATES = {
    "EMAIL_ADDRESS": ["Contact {v} for details.", "Write to {v}.", "(email: {v})"],
    "CREDIT_CARD": ["The card {v} was charged.", "Card number: {v}."],
    "IBAN_CODE": ["Transfer to IBAN {v} by Friday.", "Account {v}."],
    "IP_ADDRESS": ["Requests came from {v} overnight.", "The server at {v} was down."],
    "US_SSN": ["Her SSN is {v}.", "social security number {v}"],
    "PHONE_NUMBER": ["Call {v} for tickets.", "Phone: {v}.", "reach him on {v} after 6pm."],
    "CRYPTO": ["Donations to {v} are welcome."],
    "PERSON": ["{v} told reporters on Monday.", "according to {v}, a spokesperson.", "said {v}."],
}
PLANT_KINDS = list(_TEMPLATES)


def make_planted(
    n: int, seed: int = 7, per_doc: tuple[int, int] = (1, 4), pii_share: float = 1.0
) -> list[dict]:
    """Real ≈ 2 KB news chunks, each with a few generated PII values inserted at sentence breaks (offsets kept)."""
    rng = random.Random(seed)
    chunks = article_chunks()
    docs = []
    for i in range(n):
        base = chunks[i % len(chunks)]
        text, spans = base, []
        if rng.random() < pii_share:
            for _ in range(rng.randint(*per_doc)):
                kind = rng.choice(PLANT_KINDS)
                value = gen_value(kind, rng)
                sent = rng.choice(_TEMPLATES[kind])
                cuts = [j + 2 for j in range(len(text) - 2) if text[j] in ".!?" and text[j + 1] == " "] or [
                    len(text)
                ]
                at = rng.choice(cuts)
                ins = sent.format(v=value) + " "
                off = at + ins.index(value)
                spans = [
                    s
                    if s["start"] < at
                    else {**s, "start": s["start"] + len(ins), "end": s["end"] + len(ins)}
                    for s in spans
                ]
                text = text[:at] + ins + text[at:]
                spans.append({"type": kind, "start": off, "end": off + len(value)})
        docs.append({"text": text, "spans": spans})
    return docs


# ------------------------------------------------------------------ systems


def presidio_system(model: str | None):
    eng, ents = presidio_engine(model)

    def run(texts: list[str]) -> list[list[tuple[int, int, str]]]:
        out = []
        for t in texts:
            res = eng.analyze(t, language="en", entities=ents, score_threshold=0.4)
            out.append([(r.start, r.end, r.entity_type) for r in res])
        return out

    return run


def stage_system(params: dict):
    import pyarrow as pa

    from stages.pii.scrub import Pii

    stage = Pii(params)
    stage.setup()

    def run(texts: list[str]) -> list[list[tuple[int, int, str]]]:
        out = []
        for i in range(0, len(texts), 512):
            chunk = texts[i : i + 512]
            col = pa.chunked_array([pa.array(chunk, pa.large_string())])
            out += [[(s.start, s.end, s.type) for s in spans] for spans in stage.detect(col, chunk)]
        return out

    run.stage = stage  # type: ignore[attr-defined]
    return run


def anonymize(text: str, spans: list[tuple[int, int, str]]) -> str:
    from stages.pii.patterns import Span, resolve_overlaps

    merged = resolve_overlaps([Span(a, b, t, 1.0) for a, b, t in spans])
    parts, pos = [], 0
    for s in merged:
        parts.append(text[pos : s.start])
        parts.append(f"<{s.type}>")
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


def score(docs: list[dict], preds: list[list[tuple[int, int, str]]]) -> dict:
    tp_g, n_g, tp_p, n_p = Counter(), Counter(), Counter(), Counter()
    leaks, leak_n = Counter(), Counter()
    for doc, pred in zip(docs, preds, strict=True):
        gold = doc["spans"]
        for cls, (gtypes, ptypes) in CLASSES.items():
            g = [s for s in gold if s["type"] in gtypes]
            p = [s for s in pred if s[2] in ptypes]
            n_g[cls] += len(g)
            n_p[cls] += len(p)
            tp_g[cls] += sum(any(a < s["end"] and s["start"] < b for a, b, _ in p) for s in g)
            tp_p[cls] += sum(any(a < s["end"] and s["start"] < b for s in g) for a, b, _ in p)
        out = anonymize(doc["text"], pred)
        for s in gold:
            if s["type"] in LEAK_TYPES:
                leak_n[s["type"]] += 1
                leaks[s["type"]] += doc["text"][s["start"] : s["end"]] in out
    res = {}
    for cls in CLASSES:
        if not n_g[cls] and not n_p[cls]:
            continue
        p = tp_p[cls] / n_p[cls] if n_p[cls] else float("nan")
        r = tp_g[cls] / n_g[cls] if n_g[cls] else float("nan")
        f = 2 * p * r / (p + r) if n_p[cls] and n_g[cls] and (p + r) else float("nan")
        res[cls] = {"gold": n_g[cls], "pred": n_p[cls], "precision": p, "recall": r, "f1": f}
    leak = {
        t: {"n": leak_n[t], "leaked": leaks[t], "rate": leaks[t] / leak_n[t]} for t in LEAK_TYPES if leak_n[t]
    }
    return {"prf": res, "leak": leak}


def phone_false_positives(n_docs: int, params: dict | None = None) -> dict:
    """Phone detections on PII-free real text (news articles, English lingua sentences) per 1,000 docs."""
    texts = article_chunks(1000)
    with gzip.open(LINGUA, "rt") as f:
        for line in f:
            d = json.loads(line)
            if d["lang"] == "en":
                texts.append(d["text"])
    texts = texts[:n_docs]
    from stages.pii.patterns import find_patterns
    from stages.pii.scrub import Pii

    finders = Pii({"ner_model": None, **(params or {})}).finders
    ours = sum(len(find_patterns(t, ["PHONE_NUMBER"], finders)) for t in texts)
    eng, _ = presidio_engine(None)
    theirs = sum(
        len(eng.analyze(t, language="en", entities=["PHONE_NUMBER"], score_threshold=0.4)) for t in texts
    )
    return {"docs": len(texts), "ours": ours, "presidio": theirs}


EXIF_DIR = SHARED / "images" / "exif"


def media_check() -> list[dict]:
    """Every photo of ../shared/data/images/exif through the stage's scrubber: GPS tags left, pixels equal."""
    import hashlib
    import io

    from PIL import Image

    from stages.pii.media_metadata import scrub_media_bytes

    def gps(b: bytes) -> int:
        ex = Image.open(io.BytesIO(b)).getexif()
        return len(ex.get_ifd(0x8825)) + (0x8825 in ex)

    def pixels(b: bytes) -> str:
        im = Image.open(io.BytesIO(b))
        im.load()
        return hashlib.sha256(im.tobytes()).hexdigest()

    rows = []
    for path in sorted(EXIF_DIR.iterdir()):
        data = path.read_bytes()
        new, removed = scrub_media_bytes(data, "image")
        rows.append(
            {
                "file": path.name,
                "gps_before": gps(data),
                "gps_after": gps(new),
                "pixels_equal": pixels(data) == pixels(new),
                "bytes": f"{len(data)} → {len(new)}",
                "removed": ", ".join(removed) or "–",
            }
        )
    return rows


# ------------------------------------------------------------------ breakdowns


def phone_shape(value: str) -> str:
    """How a dev-data phone is written."""
    import re

    if value.startswith("+") and "(0)" in value:
        return "+CC (0) trunk"
    if value.startswith("+"):
        return "+CC international"
    if value.startswith("00"):
        return "00 international"
    if re.search(r"(?i)x\d", value):
        return "with extension"
    digits = re.sub(r"\D", "", value)
    if len(digits) < 8:
        return "short local (< 8 digits)"
    if value.startswith("("):
        return "(area) national"
    if re.fullmatch(r"\d+", value):
        return "digits only"
    groups = re.findall(r"\d+", value)
    if all(len(g) <= 2 for g in groups[1:]):
        return "national, groups of two"
    return "national, other grouping"


_REGION_OF = {
    "US/CA": "United States|USA|Canada",
    "UK/IE/AU/NZ": "United Kingdom|Ireland|Australia|New Zealand",
    "EU (number after street)": "Austria|Belgium|Czech|Denmark|Estonia|Finland|France|Germany|Greenlander|Hungary|"
    "Iceland|Italy|Netherlands|Norway|Poland|Portugal|Slovenia|Spain|Sweden|Switzerland|Croatia|Slovakia",
    "Greek script / Cyprus": "Cyprus|Greece|[\u0370-\u03ff]{3}",
    "Latin America / Africa": "Uruguay|Brazil|Mexico|Argentina|South Africa|Tunisia|Morocco",
    "military / PO box": "APO|FPO|DPO|PSC|P\\.O\\. Box|Postbox",
}


def address_region(text: str) -> str:
    import re

    for region, rx in _REGION_OF.items():
        if re.search(rx, text):
            return region
    return "other / unnamed"


def breakdown_leaks(docs: list[dict], preds: list, etype: str, key) -> dict[str, tuple[int, int]]:
    """Per group (``key(doc, span, value)``): (leaked, n) of gold spans of ``etype``."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for doc, pred in zip(docs, preds, strict=True):
        text = anonymize(doc["text"], pred)
        for s in doc["spans"]:
            if s["type"] != etype:
                continue
            value = doc["text"][s["start"] : s["end"]]
            g = out[key(doc, s, value)]
            g[1] += 1
            g[0] += value in text
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def words_kept(docs: list[dict], preds: list) -> tuple[int, int]:
    """Over-redaction: (kept, total) words that overlap no gold span and that no predicted span touches."""
    import re

    kept = total = 0
    for doc, pred in zip(docs, preds, strict=True):
        gold = [(s["start"], s["end"]) for s in doc["spans"]]
        for m in re.finditer(r"\w+", doc["text"]):
            a, b = m.span()
            if any(x < b and a < y for x, y in gold):
                continue
            total += 1
            kept += not any(x < b and a < y for x, y, _ in pred)
    return kept, total


def address_false_positives(per_lang: int = 300) -> dict[str, tuple[int, int]]:
    """ADDRESS detections of the address rules on PII-free lingua sentences, per language: (detections, docs)."""
    from stages.pii.addresses import AddressRules

    rules = AddressRules()
    by: dict[str, list[str]] = defaultdict(list)
    with gzip.open(LINGUA, "rt") as f:
        for line in f:
            d = json.loads(line)
            if len(by[d["lang"]]) < per_lang:
                by[d["lang"]].append(d["text"])
    return {lang: (sum(len(rules.find(t)) for t in texts), len(texts)) for lang, texts in sorted(by.items())}


def phone_planted(n: int) -> list[dict]:
    from scripts.eval.pii_phones import plant, planted_phones

    return plant(article_chunks(), planted_phones(n))


def pct(leaked: int, n: int) -> str:
    return f"{leaked}/{n} ({leaked / n:.1%})" if n else "–"


NOTES_MARKER = "<!-- notes: kept across re-runs -->"


def fmt(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"


def render(results: dict, meta: dict) -> str:
    lines = [
        "# PII scrubbing: quality",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}).",
        "",
        "Spans match leniently: a gold span is found when a predicted span of a compatible type overlaps it (our",
        "ADDRESS and LOCATION both count for the gold GPE and STREET_ADDRESS labels). **Leak rate** = share of gold",
        "values still present verbatim in the anonymized text (all predicted spans replaced, overlaps merged).",
        "Systems: `presidio` = presidio-analyzer 2.2 AnalyzerEngine alone (score ≥ 0.4), built explicitly;",
        "`ours` = the `pii` stage, `engine: fast` (prefilter + validated regexes + batched spaCy NER + name",
        "propagation + the name rules of stages/pii/names.py: Census given names that are not English words,",
        '"my name is …" cues, dialogue speakers, recased all-lowercase text); `ours + NER, no name rules` =',
        "the same with `name_rules: false` (the stage before those rules).",
        f"NER model: `{meta['model']}` (unofficial PyPI re-upload of en_core_web_sm; install the",
        "official model in production).",
        "",
    ]
    for ds, systems in results.items():
        lines += [f"## {ds}", "", meta["datasets"][ds], ""]
        names = list(systems)
        lines += [
            "### Leak rate (lower is better)",
            "",
            "| entity | n | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        types = [t for t in LEAK_TYPES if any(t in s["leak"] for s in systems.values())]
        for t in types:
            n = next(s["leak"][t]["n"] for s in systems.values() if t in s["leak"])
            cells = [
                f"{systems[nm]['leak'][t]['rate'] * 100:.1f}%" if t in systems[nm]["leak"] else "–"
                for nm in names
            ]
            lines.append(f"| {t} | {n} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "### Precision / recall / F1",
            "",
            "| class | gold | " + " | ".join(f"{nm} P / R / F1" for nm in names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        classes = [c for c in CLASSES if any(c in s["prf"] for s in systems.values())]
        for c in classes:
            g = next(s["prf"][c]["gold"] for s in systems.values() if c in s["prf"])
            cells = []
            for nm in names:
                m = systems[nm]["prf"].get(c)
                cells.append(f"{fmt(m['precision'])} / {fmt(m['recall'])} / {fmt(m['f1'])}" if m else "–")
            lines.append(f"| {c} | {g} | " + " | ".join(cells) + " |")
        lines.append("")
    for title, table in meta.get("breakdowns", {}).items():
        cols = list(next(iter(table.values())).keys()) if table else []
        lines += [f"### {title}", "", "| group | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        lines += [f"| {g} | " + " | ".join(str(row[c]) for c in cols) + " |" for g, row in table.items()]
        lines.append("")
    fp = meta.get("phone_fp")
    if fp:
        lines += [
            "## Phone false positives on PII-free real text",
            "",
            f"{fp['docs']} documents (≈ 1 KB chunks of the 181 news articles of the article-extraction benchmark,",
            "then English lingua sentences). Every detection here is counted as a false positive (the news text",
            "may hold a few real numbers), so this is an upper bound.",
            "",
            "| detector | phone detections | per 1,000 docs |",
            "|---|---|---|",
            f"| ours (libphonenumber + shape + cue, defaults) | {fp['ours']} | {fp['ours'] * 1000 / fp['docs']:.1f} |",
            f"| presidio PhoneRecognizer | {fp['presidio']} | {fp['presidio'] * 1000 / fp['docs']:.1f} |",
            "",
        ]
    media = meta.get("media")
    if media:
        lines += [
            "## Image metadata (../shared/data/images/exif)",
            "",
            f"{len(media)} real camera photos through `stages/pii/media_metadata.py` (the `pii` stage's media path). "
            "GPS = entries of the GPS IFD plus the pointer; pixels compared as SHA-256 of Pillow's decoded "
            "pixel buffer.",
            "",
            "| file | GPS tags before | after | decoded pixels equal | bytes | removed |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['file']} | {r['gps_before']} | {r['gps_after']} | {'yes' if r['pixels_equal'] else 'NO'} | "
            f"{r['bytes']} | {r['removed']} |"
            for r in media
        ]
        lines.append("")
    lines += meta.get("notes", [])
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m scripts.eval.pii")
    ap.add_argument("--out", default=str(ROOT / "docs" / "evaluation" / "pii.md"))
    ap.add_argument("--planted", type=int, default=400)
    ap.add_argument("--fp-docs", type=int, default=2000)
    ap.add_argument("--model", default="auto")
    ap.add_argument("--phones", type=int, default=600)
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    from stages.pii.scrub import resolve_model

    model = resolve_model(args.model)
    synth = load_synth()
    planted = make_planted(args.planted)
    datasets = {
        "presidio_synth_v2": synth,
        "planted (2 KB news chunks)": planted,
    }
    meta = {
        "command": "python -m scripts.eval.pii " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, shared",
        "model": model,
        "datasets": {
            "presidio_synth_v2": f"`../shared/data/pii/presidio_synth_v2.jsonl.gz`: {len(synth)} sentences, "
            f"{sum(len(d['spans']) for d in synth)} labelled spans.",
            "planted (2 KB news chunks)": f"{len(planted)} ≈ 2 KB chunks of real news text with "
            f"{sum(len(d['spans']) for d in planted)} generated values planted "
            "(`make_planted(seed=7)` in this script).",
        },
    }
    systems = {
        "presidio patterns": lambda: presidio_system(None),
        "ours patterns": lambda: stage_system({"ner_model": None}),
        "presidio + NER": lambda: presidio_system(model),
        "ours + NER, no name rules": lambda: stage_system({"ner_model": model, "name_rules": False}),
        "ours + NER": lambda: stage_system({"ner_model": model}),
    }
    phones = phone_planted(args.phones)
    datasets["international phones (30 countries)"] = phones
    meta["datasets"]["international phones (30 countries)"] = (
        f"{len(phones)} ≈ 2 KB news chunks with {sum(len(d['spans']) for d in phones)} phone numbers of 30 "
        "countries in 10 formats, generated from libphonenumber's example numbers and formatting "
        "(scripts/eval/pii_phones.py, seed 17)."
    )
    results: dict = defaultdict(dict)
    kept_preds: dict = {}
    for sname, make in systems.items():
        run = make()
        for dname, docs in datasets.items():
            t0 = time.perf_counter()
            preds = run([d["text"] for d in docs])
            results[dname][sname] = score(docs, preds)
            kept_preds[(sname, dname)] = preds
            print(f"{dname:30s} {sname:20s} {time.perf_counter() - t0:6.1f}s", file=sys.stderr)
    ours = "ours + NER"
    br: dict[str, dict] = {}
    synth_pred = kept_preds[(ours, "presidio_synth_v2")]
    phone_pred = kept_preds[(ours, "international phones (30 countries)")]
    br["Phone leak per format, international phones (ours + NER, default leniency)"] = {
        g: {"leaked": pct(*v)}
        for g, v in breakdown_leaks(phones, phone_pred, "PHONE_NUMBER", lambda d, s, v: s["format"]).items()
    }
    br["Phone leak per country, international phones (ours + NER)"] = {
        g: {"leaked": pct(*v)}
        for g, v in breakdown_leaks(phones, phone_pred, "PHONE_NUMBER", lambda d, s, v: s["region"]).items()
    }
    br["Phone leak per written shape, presidio_synth_v2 (ours + NER)"] = {
        g: {"leaked": pct(*v)}
        for g, v in breakdown_leaks(synth, synth_pred, "PHONE_NUMBER", lambda d, s, v: phone_shape(v)).items()
    }
    lenient: dict[str, dict] = {}
    for lev in ("possible", "valid", "strict_grouping", "exact_grouping"):
        run = stage_system({"ner_model": None, "phone_leniency": lev})
        row = {}
        for dname, docs in (("international phones", phones), ("presidio_synth_v2", synth)):
            sc = score(docs, run([d["text"] for d in docs]))["leak"]["PHONE_NUMBER"]
            row[dname] = pct(sc["leaked"], sc["n"])
        fp = phone_false_positives(args.fp_docs, {"phone_leniency": lev})
        row["FP per 1,000 PII-free docs"] = f"{fp['ours'] * 1000 / fp['docs']:.1f}"
        lenient[lev] = row
    br["Phone leniency (patterns only): leak and false positives"] = lenient
    br["Street-address leak per region, presidio_synth_v2 (ours + NER)"] = {
        g: {"leaked": pct(*v)}
        for g, v in breakdown_leaks(
            synth, synth_pred, "STREET_ADDRESS", lambda d, s, v: address_region(d["text"])
        ).items()
    }
    afp = address_false_positives()
    br["Address rules: false positives per language (300 PII-free lingua sentences each, > 0 only)"] = {
        lang: {"detections": n, "per 1,000 docs": f"{n * 1000 / docs:.1f}"}
        for lang, (n, docs) in afp.items()
        if n
    }
    tot = sum(n for n, _ in afp.values()), sum(d for _, d in afp.values())
    br["Address rules: false positives per language (300 PII-free lingua sentences each, > 0 only)"][
        "all"
    ] = {
        "detections": tot[0],
        "per 1,000 docs": f"{tot[0] * 1000 / tot[1]:.1f}",
    }
    over: dict[str, dict] = {}
    for sname in systems:
        k, t = words_kept(synth, kept_preds[(sname, "presidio_synth_v2")])
        over[sname] = {"non-PII words kept (presidio_synth_v2)": f"{k}/{t} ({k / t:.1%})"}
    br["Over-redaction: non-PII words kept"] = over
    meta["breakdowns"] = br
    meta["phone_fp"] = phone_false_positives(args.fp_docs)
    meta["media"] = media_check()
    # hand-written notes below the marker survive a re-run
    out = write_page(args.out, render(results, meta), keep_from=NOTES_MARKER, sep="\n")
    print(out)


if __name__ == "__main__":
    main()
