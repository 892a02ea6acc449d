"""Planted phone numbers of many countries, generated from libphonenumber's own metadata, so the truth is exact.

Why: the phones of presidio_synth_v2 are a few Faker formats; text the project has never seen writes numbers the
way each country does. For each region below and each number type (fixed line, mobile), a valid number is drawn
from the region's example number (its trailing digits randomized until libphonenumber says the number is valid),
then written in one of the formats people use:

- ``e164`` (+4930123456), ``international`` (+49 30 123456), ``national`` (030 123456), ``intl_00`` (0049 30 …);
- ``intl_trunk``: the trunk prefix in parentheses (+44 (0)20 7946 0958), for regions with a national prefix;
- ``pairs`` / ``threes``: the national significant number regrouped in twos or threes after the trunk prefix and
  area code (030 12 34 56, as across Europe);
- ``glued_escape``: a literal ``\\n`` or ``\\t`` escape on both sides (JSON-escaped scrapes), ``glued_label``: a
  hyphenated label (``…-Office``, ``Fax-…``);
- ``local_cue``: only the subscriber number of a fixed line (the area code dropped), which only a cue word
  ("office", "fax", "call", "Phone:") marks.

The values are planted into ≈ 2 KB chunks of real news text (scripts/eval/pii.py ``article_chunks``).
"""

from __future__ import annotations

import random

import phonenumbers
from phonenumbers import PhoneNumberFormat as F
from phonenumbers import PhoneNumberType as T

# 30 regions: the Americas, Europe, Africa, Asia and Oceania.
REGIONS = (
    "US", "CA", "MX", "BR", "AR", "GB", "IE", "DE", "FR", "IT", "ES", "PT", "NL", "BE", "CH", "AT", "SE", "NO",
    "DK", "FI", "PL", "CZ", "GR", "TR", "ZA", "NG", "IN", "JP", "CN", "AU",
)  # fmt: skip
FORMATS = (
    "e164",
    "international",
    "national",
    "intl_00",
    "intl_trunk",
    "pairs",
    "threes",
    "glued_escape",
    "glued_label",
    "local_cue",
)
_SENTENCES = [
    "Call {v} for tickets.",
    "For bookings ring {v} before noon.",
    "Reservations: {v}.",
    "The hotline is {v} and it is free.",
    "You can reach the desk at {v} on weekdays.",
    "Our number, {v}, is open all day.",
    "Tel. {v}",
]
_CUED = [
    "office {v}",
    "Fax: {v}.",
    "call {v} after six.",
    "Phone: {v}",
    "{v} (mobile)",
    "{v} office",
    "Mobile: {v}",
]


def _valid_number(region: str, kind: int, rng: random.Random) -> phonenumbers.PhoneNumber | None:
    example = phonenumbers.example_number_for_type(region, kind)
    if example is None:
        return None
    nsn = phonenumbers.national_significant_number(example)
    for _ in range(200):
        keep = max(1, len(nsn) - rng.randint(3, 6))
        digits = nsn[:keep] + "".join(rng.choice("0123456789") for _ in range(len(nsn) - keep))
        num = phonenumbers.parse("+" + str(example.country_code) + digits)
        if phonenumbers.is_valid_number(num) and phonenumbers.number_type(num) in (
            kind,
            T.FIXED_LINE_OR_MOBILE,
        ):
            return num
    return example


def _group(digits: str, size: int) -> str:
    """Digits in groups of ``size``; a last group of one digit joins the one before (nobody writes "12 34 5")."""
    groups = [digits[i : i + size] for i in range(0, len(digits), size)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2:] = [groups[-2] + groups[-1]]
    return " ".join(groups)


def format_number(num: phonenumbers.PhoneNumber, fmt: str, rng: random.Random) -> tuple[str, str] | None:
    """(value, the sentence to plant it in) in format ``fmt``, or None when the format does not apply."""
    region = phonenumbers.region_code_for_number(num)
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = (meta.national_prefix if meta else None) or ""
    nsn = phonenumbers.national_significant_number(num)
    cc = str(num.country_code)
    intl = phonenumbers.format_number(num, F.INTERNATIONAL)
    national = phonenumbers.format_number(num, F.NATIONAL)
    area = phonenumbers.length_of_geographical_area_code(num)
    sent = rng.choice(_SENTENCES)
    if fmt == "e164":
        return phonenumbers.format_number(num, F.E164), sent
    if fmt == "international":
        return intl, sent
    if fmt == "national":
        return national, sent
    if fmt == "intl_00":
        return "00" + intl[1:], sent
    if fmt == "intl_trunk":
        if not prefix:
            return None
        return f"+{cc} ({prefix}){intl[len(cc) + 2 :]}", sent
    if fmt in ("pairs", "threes"):
        size = 2 if fmt == "pairs" else 3
        head = nsn[: area or 2]
        return f"{prefix}{head} {_group(nsn[len(head) :], size)}", sent
    if fmt == "glued_escape":
        esc = rng.choice(["\\n", "\\t"])
        value = rng.choice([national, intl])
        return value, rng.choice([f"Contact{esc}{{v}}{esc}Email", f"Phone:{esc}{{v}}{esc}"])
    if fmt == "glued_label":
        value = rng.choice([national, intl])
        return value, rng.choice(["{v}-Office", "{v}-Fax", "Office-{v}", "{v}-Mobile"])
    if fmt == "local_cue":
        if not area or len(nsn) - area < 5:
            return None
        local = nsn[area:]
        return (local[:3] + " " + local[3:] if len(local) >= 7 else local), rng.choice(_CUED)
    raise KeyError(fmt)


def planted_phones(n: int, seed: int = 17) -> list[dict]:
    """``n`` values as {"value", "sentence", "region", "format", "line"} (deterministic for a seed)."""
    rng = random.Random(seed)
    out: list[dict] = []
    while len(out) < n:
        region = REGIONS[len(out) % len(REGIONS)]
        fmt = FORMATS[(len(out) // len(REGIONS)) % len(FORMATS)]
        kind = T.FIXED_LINE if fmt == "local_cue" or rng.random() < 0.5 else T.MOBILE
        num = _valid_number(region, kind, rng)
        got = format_number(num, fmt, rng) if num is not None else None
        if got is None:  # the format does not apply to this region: a plain international number instead
            got = (phonenumbers.format_number(num, F.INTERNATIONAL), rng.choice(_SENTENCES)) if num else None
            fmt = "international"
        if got is None:
            continue
        value, sentence = got
        out.append(
            {
                "value": value,
                "sentence": sentence,
                "region": region,
                "format": fmt,
                "line": "fixed" if kind == T.FIXED_LINE else "mobile",
            }
        )
    return out


def plant(chunks: list[str], values: list[dict], per_doc: int = 2, seed: int = 17) -> list[dict]:
    """Real text chunks with ``per_doc`` of ``values`` each, inserted at sentence breaks: {"text", "spans"}, each
    span with its region and format."""
    rng = random.Random(seed)
    docs = []
    for i in range(0, len(values), per_doc):
        text = chunks[(i // per_doc) % len(chunks)]
        spans: list[dict] = []
        for v in values[i : i + per_doc]:
            cuts = [j + 2 for j in range(len(text) - 2) if text[j] in ".!?" and text[j + 1] == " "] or [
                len(text)
            ]
            at = rng.choice(cuts)
            ins = v["sentence"].format(v=v["value"]) + " "
            off = at + ins.index(v["value"])
            spans = [
                s if s["start"] < at else {**s, "start": s["start"] + len(ins), "end": s["end"] + len(ins)}
                for s in spans
            ]
            text = text[:at] + ins + text[at:]
            spans.append(
                {
                    "type": "PHONE_NUMBER",
                    "start": off,
                    "end": off + len(v["value"]),
                    **{k: v[k] for k in ("region", "format", "line")},
                }
            )
        docs.append({"text": text, "spans": spans})
    return docs
