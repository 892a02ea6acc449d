"""Deterministic generator of benchmark corpora of any size, built from the real texts in ../shared/data.

Why: every speed, memory and quality benchmark needs a corpus that is (a) big enough to matter, (b) realistic
enough that filters behave as on web data, and (c) labelled, so dedup and PII figures have ground truth. The same
arguments always give byte-identical files, and a bigger corpus with the same seed starts with the smaller one
(generation is sequential, only the stopping point differs), so 1x is a prefix of 8x.

    python -m scripts.data.make_corpus --out DIR (--docs N | --scale K) [--seed S] [--shard-docs M] [--source DIR]

Writes
    DIR/part-00000.jsonl.gz ...     records {"id", "text", "url", "lang"}
    DIR/ground_truth.jsonl.gz       {id, kind: original|exact_dup|near_dup, dup_of, edit_rate, n_edits, lang,
                                     source, pii: [{type, value, origin}]}
    DIR/corpus.json                 docs, bytes, seed, parameters, counts, files with sha256

Sources (under --source, default ../shared/data; same layout as that folder):
    langid/lingua_sentences_dev.jsonl.gz                  sentences in 75 languages -> documents per language
    web/article_extraction_benchmark/ground-truth.json    English article paragraphs -> article documents
    dedup/spdx_licenses.jsonl.gz                          licence texts, each used at most once
    pii/presidio_synth_v2.jsonl.gz                        sentences with labelled PII spans

Documents of one kind ("original") are guaranteed to have distinct texts; an exact_dup is a byte-identical copy of
an original (under another url); a near_dup is an original with round(edit_rate * units) word-level edits
(substitute / delete / insert a word of the same language; characters for zh/ja/th), at least one. PII values are
generated (emails, phones, Luhn-valid cards, mod-97-valid IBANs, IPv4/IPv6, SSNs) and recorded verbatim; presidio
sentences carry their labelled spans. A dup's `pii` lists the original's values that survive verbatim in its text.
`--scale 1` is 128 MiB of UTF-8 text (the "text" field), so `--scale 8` is 1 GiB.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import random
import string
import sys
import time
from pathlib import Path
from typing import Any

VERSION = "1"
SCALE_BYTES = 128 * 2**20
DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data from the repo root

# Web-like language mix: English dominates (articles + licences + English sentence documents ~ 55-60 %), then
# a Common-Crawl-like head of big languages and a long tail over every other lingua language.
HEAD_WEIGHTS = {
    "en": 30.0,
    "ru": 6.0,
    "de": 5.5,
    "ja": 4.5,
    "zh": 4.5,
    "fr": 4.5,
    "es": 4.5,
    "it": 2.6,
    "pt": 2.2,
    "nl": 2.0,
    "pl": 1.9,
    "tr": 1.2,
    "cs": 1.0,
    "vi": 1.0,
    "id": 0.9,
    "sv": 0.8,
    "fa": 0.8,
    "ar": 0.7,
    "ko": 0.7,
    "uk": 0.6,
    "hu": 0.6,
    "el": 0.5,
    "ro": 0.5,
    "da": 0.5,
    "fi": 0.4,
    "th": 0.4,
}
TAIL_WEIGHT = 0.15  # every other language
NO_SPACE_LANGS = {"zh", "ja", "th"}
TLD = {
    "en": "com",
    "ja": "jp",
    "zh": "cn",
    "cs": "cz",
    "da": "dk",
    "el": "gr",
    "sv": "se",
    "uk": "ua",
    "ko": "kr",
    "fa": "ir",
    "ar": "sa",
    "vi": "vn",
    "he": "il",
    "hi": "in",
    "nb": "no",
    "nn": "no",
    "sr": "rs",
}

DEFAULTS = {
    "exact_dup_rate": 0.05,  # share of documents that are exact copies of an earlier original
    "near_dup_rate": 0.10,  # share that are edited copies
    "edit_rates": [0.01, 0.02, 0.05, 0.10, 0.20, 0.30],
    "pii_rate": 0.08,  # share of originals that get generated PII values
    "presidio_rate": 0.04,  # share of originals that get labelled presidio sentences
    "article_share": 0.28,  # originals built from article paragraphs (English)
    "licence_share": 0.01,  # originals that are SPDX licence texts (each licence at most once)
    "early_pool": 2000,  # first originals always eligible as dup sources (dups far from their source)
    "recent_pool": 20000,  # ring of recent originals eligible as dup sources
}


# ----------------------------------------------------------------------------------------------- sources


class Sources:
    """The real texts, loaded once and indexed for fast sampling."""

    def __init__(self, root: Path) -> None:
        self.root = root
        need = {
            "lingua": root / "langid" / "lingua_sentences_dev.jsonl.gz",
            "articles": root / "web" / "article_extraction_benchmark" / "ground-truth.json",
            "spdx": root / "dedup" / "spdx_licenses.jsonl.gz",
            "presidio": root / "pii" / "presidio_synth_v2.jsonl.gz",
        }
        missing = [str(p) for p in need.values() if not p.is_file()]
        if missing:
            raise SystemExit(f"make_corpus: missing source files: {', '.join(missing)}")
        self.files = {k: str(v.relative_to(root)) for k, v in need.items()}
        self.sentences: dict[str, list[str]] = {}
        for rec in _read_jsonl_gz(need["lingua"]):
            t = " ".join(rec["text"].split())
            if t:
                self.sentences.setdefault(rec["lang"], []).append(t)
        arts = json.loads(need["articles"].read_text(encoding="utf-8"))
        self.paragraphs: list[str] = []
        for key in sorted(arts):
            for para in arts[key]["articleBody"].split("\n"):
                para = " ".join(para.split())
                if len(para) >= 20:
                    self.paragraphs.append(para)
        self.licences = [(r["id"], r["text"].strip()) for r in _read_jsonl_gz(need["spdx"]) if r.get("text")]
        self.licences.sort()
        self.presidio: list[tuple[str, list[tuple[str, str]]]] = []
        for rec in _read_jsonl_gz(need["presidio"]):
            text = rec["text"]
            spans = [(s["type"], text[s["start"] : s["end"]]) for s in rec.get("spans", [])]
            flat = " ".join(text.split())
            spans = [(t, " ".join(v.split())) for t, v in spans]
            spans = [(t, v) for t, v in spans if v and v in flat]
            self.presidio.append((flat, spans))
        if not self.sentences or not self.paragraphs:
            raise SystemExit("make_corpus: empty sources")
        # vocabularies for word-level edits
        self.vocab: dict[str, list[str]] = {}
        for lang, sents in self.sentences.items():
            if lang in NO_SPACE_LANGS:
                words = sorted({c for s in sents for c in s if not c.isspace()})
            else:
                words = sorted({w for s in sents for w in s.split()})
            self.vocab[lang] = words
        self.vocab["en"] = sorted(
            set(self.vocab.get("en", [])) | {w for p in self.paragraphs[:500] for w in p.split()}
        )
        langs = sorted(self.sentences)
        self.langs = langs
        self.lang_weights = [HEAD_WEIGHTS.get(lang, TAIL_WEIGHT) for lang in langs]


def _read_jsonl_gz(path: Path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


# ----------------------------------------------------------------------------------------------- PII values

_FIRST = [
    "james",
    "maria",
    "wei",
    "olga",
    "ahmed",
    "sofia",
    "liam",
    "yuki",
    "fatima",
    "lucas",
    "anna",
    "raj",
    "emma",
    "noah",
    "chloe",
    "ivan",
    "lena",
    "omar",
    "mia",
    "pablo",
]
_LAST = [
    "smith",
    "garcia",
    "chen",
    "ivanova",
    "khan",
    "rossi",
    "mueller",
    "tanaka",
    "silva",
    "novak",
    "brown",
    "kowalski",
    "dubois",
    "jensen",
    "haddad",
    "kim",
    "okafor",
    "larsen",
    "moreau",
    "weber",
]
_MAILDOM = [
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "mail.ru",
    "web.de",
    "proton.me",
    "corp-mail.net",
    "university.edu",
    "example.org",
    "posteo.de",
]
_US_AREA = ["212", "213", "305", "312", "415", "503", "512", "617", "646", "702", "718", "206", "303", "404"]


def luhn_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    digits = [c for c in number if c.isdigit()]
    return len(digits) > 1 and luhn_digit("".join(digits[:-1])) == digits[-1]


def iban_check(country: str, bban: str) -> str:
    num = "".join(str(int(c, 36)) for c in (bban + country + "00"))
    return f"{98 - int(num) % 97:02d}"


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "")
    num = "".join(str(int(c, 36)) for c in (s[4:] + s[:4]))
    return int(num) % 97 == 1


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def make_pii(rng: random.Random, kind: str) -> str:
    if kind == "EMAIL_ADDRESS":
        sep = rng.choice([".", "_", ""])
        return f"{rng.choice(_FIRST)}{sep}{rng.choice(_LAST)}{rng.randrange(1, 999)}@{rng.choice(_MAILDOM)}"
    if kind == "PHONE_NUMBER":
        style = rng.randrange(4)
        exch = f"{rng.randrange(2, 10)}{_digits(rng, 2)}"
        if exch[1:] == "11":
            exch = exch[0] + "23"
        line = _digits(rng, 4)
        area = rng.choice(_US_AREA)
        if style == 0:
            return f"({area}) {exch}-{line}"
        if style == 1:
            return f"+1 {area}-{exch}-{line}"
        if style == 2:
            return f"+44 20 7{_digits(rng, 3)} {_digits(rng, 4)}"
        return f"+49 30 {rng.randrange(2, 10)}{_digits(rng, 7)}"
    if kind == "CREDIT_CARD":
        brand = rng.randrange(3)
        if brand == 0:  # Visa, 16
            payload = "4" + _digits(rng, 14)
        elif brand == 1:  # Mastercard, 16
            payload = str(rng.randrange(51, 56)) + _digits(rng, 13)
        else:  # Amex, 15
            payload = rng.choice(["34", "37"]) + _digits(rng, 12)
        num = payload + luhn_digit(payload)
        sep = rng.choice([" ", "-", ""])
        if len(num) == 16:
            return sep.join(num[i : i + 4] for i in range(0, 16, 4))
        return sep.join([num[:4], num[4:10], num[10:]])
    if kind == "IBAN_CODE":
        country = rng.choice(["DE", "GB", "FR", "NL", "ES"])
        if country == "DE":
            bban = _digits(rng, 18)
        elif country == "GB":
            bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 14)
        elif country == "FR":
            bban = _digits(rng, 23)
        elif country == "NL":
            bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 10)
        else:
            bban = _digits(rng, 20)
        iban = country + iban_check(country, bban) + bban
        if rng.random() < 0.5:
            iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        return iban
    if kind == "IP_ADDRESS":
        if rng.random() < 0.8:
            first = rng.choice([23, 31, 45, 62, 81, 93, 104, 141, 151, 178, 185, 193, 203, 212])
            return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        return "2001:db8:" + ":".join(f"{rng.randrange(65536):x}" for _ in range(6))
    if kind == "US_SSN":
        area = rng.randrange(1, 900)
        while area == 666:
            area = rng.randrange(1, 900)
        return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"
    raise ValueError(kind)


PII_KINDS = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN"]
_TEMPLATES = {
    "EMAIL_ADDRESS": [
        "Contact me at {v} for more information.",
        "Send your CV to {v} before Friday.",
        "E-mail: {v}",
        "Questions? Write to {v} and we will reply within a day.",
    ],
    "PHONE_NUMBER": [
        "Call us at {v} between 9 and 5.",
        "Phone: {v}",
        "You can reach the office on {v}.",
        "For bookings ring {v} or visit the front desk.",
    ],
    "CREDIT_CARD": [
        "Card number: {v}",
        "I paid with my card {v} and never got the order.",
        "Please charge {v} for the remaining balance.",
    ],
    "IBAN_CODE": [
        "Please transfer the deposit to IBAN {v}.",
        "Bank details: {v}",
        "Account (IBAN) {v}, reference 2291.",
    ],
    "IP_ADDRESS": [
        "The request came from {v} at midnight.",
        "Server {v} did not respond.",
        "Blocked host: {v}",
    ],
    "US_SSN": ["My social security number is {v}.", "SSN: {v}", "Applicant SSN {v} was verified."],
}


# ----------------------------------------------------------------------------------------------- generator


class Generator:
    def __init__(self, src: Sources, seed: int, params: dict[str, Any]) -> None:
        self.src = src
        self.rng = random.Random(seed)
        self.seed = seed
        self.p = params
        self.seen: dict[bytes, str] = {}  # text digest -> id of the first doc with that text
        self.early: list[tuple] = []
        self.recent: list[tuple] = []
        self.recent_i = 0
        self.licence_order = list(range(len(src.licences)))
        self.rng.shuffle(self.licence_order)
        self.licence_next = 0
        self.n = 0
        self.lang_cum = list(_cumsum(src.lang_weights))
        self.n_sites = 5000

    # --- helpers
    def _url(self, lang: str) -> str:
        r = self.rng
        tld = TLD.get(lang, lang)
        return f"https://www.site{r.randrange(self.n_sites)}.{tld}/{r.choice(['news', 'blog', 'p', 'forum', 'docs'])}/{r.getrandbits(40):010x}"

    def _n_units(self, mu: float, sigma: float, lo: int, hi: int) -> int:
        return max(lo, min(hi, int(round(self.rng.lognormvariate(mu, sigma)))))

    def _pick_lang(self) -> str:
        return self.src.langs[_bisect(self.lang_cum, self.rng.random() * self.lang_cum[-1])]

    # --- originals
    def _original_parts(self) -> tuple[str, str, list[str], str]:
        """-> (source, lang, parts, joiner) before PII insertion."""
        r, src = self.rng, self.src
        u = r.random()
        if u < self.p["licence_share"] and self.licence_next < len(src.licences):
            lid, text = src.licences[self.licence_order[self.licence_next]]
            self.licence_next += 1
            return f"spdx:{lid}", "en", [text], "\n\n"
        if u < self.p["licence_share"] + self.p["article_share"]:
            k = self._n_units(1.9, 0.8, 1, 60)
            return "article", "en", [r.choice(src.paragraphs) for _ in range(k)], "\n\n"
        lang = self._pick_lang()
        sents = src.sentences[lang]
        k = self._n_units(2.6, 0.9, 3, 120)
        sep = "" if lang in NO_SPACE_LANGS else " "
        chosen = [r.choice(sents) for _ in range(k)]
        paras, i = [], 0
        while i < k:
            step = r.randint(1, 6)
            paras.append(sep.join(chosen[i : i + step]))
            i += step
        return "lingua", lang, paras, "\n\n"

    def original(self) -> tuple[str, str, str, list[dict]]:
        r = self.rng
        for _attempt in range(50):
            source, lang, parts, joiner = self._original_parts()
            pii: list[dict] = []
            if r.random() < self.p["pii_rate"]:
                for _ in range(r.randint(1, 3)):
                    kind = r.choice(PII_KINDS)
                    value = make_pii(r, kind)
                    pii.append({"type": kind, "value": value, "origin": "generated"})
                    parts.insert(r.randint(0, len(parts)), r.choice(_TEMPLATES[kind]).format(v=value))
            if r.random() < self.p["presidio_rate"]:
                for _ in range(r.randint(1, 2)):
                    sent, spans = r.choice(self.src.presidio)
                    pii.extend({"type": t, "value": v, "origin": "presidio"} for t, v in spans)
                    parts.insert(r.randint(0, len(parts)), sent)
            text = joiner.join(parts)
            if _digest(text) not in self.seen:
                return source, lang, text, pii
        raise RuntimeError("could not generate a distinct original")  # pragma: no cover

    def _dup_source(self) -> tuple | None:
        pools = [p for p in (self.early, self.recent) if p]
        if not pools:
            return None
        pool = pools[0] if len(pools) == 1 or self.rng.random() < 0.5 else pools[1]
        return pool[self.rng.randrange(len(pool))]

    def _edit(self, text: str, lang: str, rate: float) -> tuple[str, int, int]:
        r = self.rng
        vocab = self.src.vocab.get(lang) or self.src.vocab["en"]
        if lang in NO_SPACE_LANGS:
            units, joiner = list(text), ""
        else:
            # keep paragraph breaks: edit words inside lines
            units, joiner = text.split(" "), " "
        n = len(units)
        k = max(1, int(round(rate * n)))
        k = min(k, n)
        positions = sorted(r.sample(range(n), k), reverse=True)
        for pos in positions:
            op = r.randrange(3)
            if op == 0:
                units[pos] = r.choice(vocab)
            elif op == 1 and len(units) > 1:
                del units[pos]
            else:
                units.insert(pos + 1, r.choice(vocab))
        return joiner.join(units), k, n

    def next_doc(self) -> tuple[dict, dict]:
        r = self.rng
        i = self.n
        self.n += 1
        doc_id = f"s{self.seed}-{i:09d}"
        u = r.random()
        src_doc = self._dup_source() if u < self.p["exact_dup_rate"] + self.p["near_dup_rate"] else None
        if src_doc is not None and u < self.p["exact_dup_rate"]:
            sid, stext, slang, spii, ssource = src_doc
            rec = {"id": doc_id, "text": stext, "url": self._url(slang), "lang": slang}
            gt = {
                "id": doc_id,
                "kind": "exact_dup",
                "dup_of": sid,
                "edit_rate": 0.0,
                "n_edits": 0,
                "lang": slang,
                "source": ssource,
                "pii": spii,
            }
            return rec, gt
        if src_doc is not None:
            sid, stext, slang, spii, ssource = src_doc
            rate = r.choice(self.p["edit_rates"])
            for _attempt in range(20):
                text, k, n = self._edit(stext, slang, rate)
                if _digest(text) not in self.seen:
                    break
            else:  # pragma: no cover
                raise RuntimeError("could not generate a distinct near duplicate")
            self.seen[_digest(text)] = doc_id
            pii = [e for e in spii if e["value"] in text]
            rec = {"id": doc_id, "text": text, "url": self._url(slang), "lang": slang}
            gt = {
                "id": doc_id,
                "kind": "near_dup",
                "dup_of": sid,
                "edit_rate": rate,
                "n_edits": k,
                "n_units": n,
                "lang": slang,
                "source": ssource,
                "pii": pii,
            }
            return rec, gt
        source, lang, text, pii = self.original()
        self.seen[_digest(text)] = doc_id
        entry = (doc_id, text, lang, pii, source)
        if len(self.early) < self.p["early_pool"]:
            self.early.append(entry)
        elif len(self.recent) < self.p["recent_pool"]:
            self.recent.append(entry)
        else:
            self.recent[self.recent_i] = entry
            self.recent_i = (self.recent_i + 1) % self.p["recent_pool"]
        rec = {"id": doc_id, "text": text, "url": self._url(lang), "lang": lang}
        gt = {
            "id": doc_id,
            "kind": "original",
            "dup_of": None,
            "edit_rate": 0.0,
            "n_edits": 0,
            "lang": lang,
            "source": source,
            "pii": pii,
        }
        return rec, gt


def _cumsum(xs):
    t = 0.0
    for x in xs:
        t += x
        yield t


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).digest()


class _GzWriter:
    """Deterministic gzip (mtime=0, no file name) with buffered writes and a running sha256."""

    def __init__(self, path: Path, level: int) -> None:
        self.path = path
        self.raw = open(path, "wb")
        self.gz = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=self.raw, mtime=0)
        self.buf = io.StringIO()
        self.pending = 0
        self.docs = 0

    def write(self, line: str) -> None:
        self.buf.write(line)
        self.pending += 1
        self.docs += 1
        if self.pending >= 2000:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.gz.write(self.buf.getvalue().encode("utf-8"))
            self.buf = io.StringIO()
            self.pending = 0

    def close(self) -> dict:
        self.flush()
        self.gz.close()
        self.raw.close()
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return {
            "path": self.path.name,
            "docs": self.docs,
            "bytes": self.path.stat().st_size,
            "sha256": h.hexdigest(),
        }


def generate(
    out: Path,
    *,
    docs: int | None,
    scale: float | None,
    seed: int,
    shard_docs: int,
    source: Path,
    compresslevel: int = 1,
    params: dict[str, Any] | None = None,
    quiet: bool = False,
) -> dict:
    if (docs is None) == (scale is None):
        raise ValueError("give exactly one of docs / scale")
    p = dict(DEFAULTS)
    p.update(params or {})
    src = Sources(source)
    gen = Generator(src, seed, p)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.jsonl.gz"):
        old.unlink()
    target_bytes = None if scale is None else int(scale * SCALE_BYTES)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    gt_w = _GzWriter(out / "ground_truth.jsonl.gz", compresslevel)
    files: list[dict] = []
    shard: _GzWriter | None = None
    n = text_bytes = 0
    kinds: dict[str, int] = {}
    langs: dict[str, int] = {}
    pii_n: dict[str, int] = {}
    t0 = time.time()
    while (docs is not None and n < docs) or (target_bytes is not None and text_bytes < target_bytes):
        if shard is None or shard.docs >= shard_docs:
            if shard is not None:
                files.append(shard.close())
            shard = _GzWriter(out / f"part-{len(files):05d}.jsonl.gz", compresslevel)
        rec, gt = gen.next_doc()
        shard.write(dumps(rec) + "\n")
        gt_w.write(dumps(gt) + "\n")
        n += 1
        text_bytes += len(rec["text"].encode("utf-8"))
        kinds[gt["kind"]] = kinds.get(gt["kind"], 0) + 1
        langs[gt["lang"]] = langs.get(gt["lang"], 0) + 1
        for e in gt["pii"]:
            pii_n[e["type"]] = pii_n.get(e["type"], 0) + 1
        if not quiet and n % 100000 == 0:
            print(f"  {n} docs, {text_bytes / 2**20:.0f} MiB text, {time.time() - t0:.0f}s", file=sys.stderr)
    if shard is not None:
        files.append(shard.close())
    gt_file = gt_w.close()
    meta = {
        # the name recorded since v1, kept when the file moved to scripts/data/: corpus.json stays byte-identical
        # for the same arguments
        "generator": f"scripts/make_corpus.py v{VERSION}",
        "docs": n,
        "bytes": text_bytes,
        "compressed_bytes": sum(f["bytes"] for f in files),
        "seed": seed,
        "parameters": {
            "docs": docs,
            "scale": scale,
            "scale_bytes": SCALE_BYTES,
            "shard_docs": shard_docs,
            "compresslevel": compresslevel,
            **p,
        },
        "sources": src.files,
        "counts": {
            "kind": dict(sorted(kinds.items())),
            "lang": dict(sorted(langs.items(), key=lambda kv: -kv[1])),
            "pii": dict(sorted(pii_n.items())),
        },
        "files": files,
        "ground_truth": gt_file,
    }
    (out / "corpus.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not quiet:
        print(
            f"wrote {n} docs, {text_bytes / 2**20:.1f} MiB text in {len(files)} shard(s) to {out} "
            f"({time.time() - t0:.1f}s)",
            file=sys.stderr,
        )
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m scripts.data.make_corpus",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--docs", type=int, help="exact number of documents")
    size.add_argument("--scale", type=float, help=f"size in units of {SCALE_BYTES // 2**20} MiB of text")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-docs", type=int, default=20000, help="documents per part file")
    ap.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="real data folder (layout of ../shared/data)"
    )
    ap.add_argument("--compresslevel", type=int, default=1, choices=range(0, 10), metavar="0-9")
    ap.add_argument("--exact-dup-rate", type=float, default=DEFAULTS["exact_dup_rate"])
    ap.add_argument("--near-dup-rate", type=float, default=DEFAULTS["near_dup_rate"])
    ap.add_argument("--pii-rate", type=float, default=DEFAULTS["pii_rate"])
    ap.add_argument(
        "--edit-rates",
        default=",".join(str(x) for x in DEFAULTS["edit_rates"]),
        help="comma-separated word edit rates for near duplicates",
    )
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.docs is not None and a.docs < 0 or a.scale is not None and a.scale <= 0 or a.shard_docs < 1:
        ap.error("--docs must be >= 0, --scale > 0, --shard-docs >= 1")
    rates = [float(x) for x in a.edit_rates.split(",") if x.strip()]
    if not rates or any(not (0 < x <= 1) or math.isnan(x) for x in rates):
        ap.error("--edit-rates must be numbers in (0, 1]")
    if a.exact_dup_rate + a.near_dup_rate >= 1:
        ap.error("--exact-dup-rate + --near-dup-rate must be < 1")
    params = {
        "exact_dup_rate": a.exact_dup_rate,
        "near_dup_rate": a.near_dup_rate,
        "pii_rate": a.pii_rate,
        "edit_rates": rates,
    }
    generate(
        a.out,
        docs=a.docs,
        scale=a.scale,
        seed=a.seed,
        shard_docs=a.shard_docs,
        source=a.source,
        compresslevel=a.compresslevel,
        params=params,
        quiet=a.quiet,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
