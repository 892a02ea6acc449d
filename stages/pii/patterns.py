"""Fast pattern detectors for the `pii` stage: a vectorized prefilter plus validated regexes.

Why our own pass instead of only presidio's recognizers: presidio runs every recognizer's regexes and its context
enhancer per document in Python (≈ 600–850 docs/s per core); here a batch-wide RE2 prefilter (Arrow compute, no
per-row Python) marks, per entity type, which documents can hold a candidate at all, and only those documents see
the (stricter, validated) Python regexes. Validators mirror presidio's (Luhn, IBAN mod-97, base58check, SSN
area/group rules) so recall is checked against presidio in scripts/eval/pii.py. Phone numbers are judged by
libphonenumber across regions (stages/pii/phones.py) and street addresses by per-region rules
(stages/pii/addresses.py); both plug in here as detectors with their own prefilter. Every span names the detector
that found it, so reports can say which detectors found what (never the values).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from stages.pii import addresses, phones


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    type: str
    score: float
    detector: str = (
        ""  # what found it (a rule, a library, the NER model): reported per type, never with values
    )


# ---------------------------------------------------------------- validators


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


IBAN_LENGTHS = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NL": 18,
    "NO": 15,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "SA": 24,
    "SC": 31,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
}


def iban_trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The IBAN inside a greedy match: cut at the country's length (the regex may swallow a following word)."""
    cc = text[start : start + 2].upper()
    want = IBAN_LENGTHS.get(cc)
    if want is None:
        return (start, end) if iban_ok(text[start:end]) else None
    n = 0
    for j in range(start, end):
        if text[j] != " ":
            n += 1
            if n == want:
                stop = j + 1
                if stop < len(text) and text[stop].isalnum():
                    return None
                return (start, stop) if iban_ok(text[start:stop]) else None
    return None


def iban_ok(value: str) -> bool:
    s = re.sub(r"[\s-]", "", value).upper()
    if not (15 <= len(s) <= 34) or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    moved = s[4:] + s[:4]
    num = "".join(str(int(c, 36)) for c in moved)
    return int(num) % 97 == 1


def ssn_ok(value: str) -> bool:
    d = re.sub(r"\D", "", value)
    if len(d) != 9 or len(set(d)) == 1:
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check_ok(value: str) -> bool:
    n = 0
    for c in value:
        i = _B58.find(c)
        if i < 0:
            return False
        n = n * 58 + i
    raw = n.to_bytes(25, "big") if n.bit_length() <= 200 else b""
    if len(raw) != 25:
        return False
    return hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()[:4] == raw[-4:]


def ip_ok(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- patterns
# Each type: (RE2 prefilter run over the whole batch with Arrow, Python regex run on candidate docs, validator).

_CARD = re.compile(r"(?<![\d\-])(?:\d[ \-]?){12,18}\d(?![\d])")


_CARD12 = re.compile(r"(?<![\d\-])\d{12}(?![\d])")
_CARD_WORD = re.compile(
    r"(?i)(?:card|cc|credit|debit|visa|maestro|mastercard|amex)\W{0,3}(?:\w+\W{1,3}){0,3}$"
)


def card12_near_word(text: str, start: int, end: int) -> tuple[int, int] | None:
    if luhn_ok(text[start:end]) and _CARD_WORD.search(text[max(0, start - 40) : start]):
        return start, end
    return None


def card_ok(value: str) -> bool:
    d = re.sub(r"\D", "", value)
    return 13 <= len(d) <= 19 and len(set(d)) > 1 and luhn_ok(d)


_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d\-])\d{3}([\- .]?)\d{2}\1\d{4}(?![\d\-])")
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d]|\.\d)"
)
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)
_EMAIL = re.compile(r"(?<![\w.%+\-])[\w.%+\-]{1,64}@(?:[A-Za-z0-9\-]{1,63}\.)+[A-Za-z]{2,24}(?![\w\-])")
_BTC = re.compile(
    r"(?<![A-Za-z0-9])(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[ac-hj-np-z02-9]{11,71})(?![A-Za-z0-9])"
)
_ETH = re.compile(r"(?<![A-Za-z0-9])0x[a-fA-F0-9]{40}(?![A-Za-z0-9])")
_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")
_TITLE_NAME = re.compile(
    r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Madam|Mme|Mlle|Herr|Frau|Señor|Señora|Sr|Sra)\.? "
    r"((?:[A-Z][\w'\-]+)(?: [A-Z]\.?(?!\w))?(?: [A-Z][\w'\-]+){0,2})"
)
_INITIAL_NAME = re.compile(r"(?<![\w.])([A-Z][^\W\d_A-Z]+ [A-Z]\.? [A-Z][^\W\d_A-Z]{2,})(?![\w])")


def btc_ok(value: str) -> bool:
    return value.startswith("bc1") or base58check_ok(value)


@dataclass(frozen=True)
class PatternSpec:
    type: str
    prefilter: str  # RE2 syntax, run with pyarrow.compute.match_substring_regex over the batch
    regex: re.Pattern | None
    validate: object | None
    score: float
    group: int = 0
    # Optional: (text, start, end) -> (start, end) | None, for rules that need the surrounding text.
    locate: object | None = None
    detector: str = ""
    # Instead of `regex`: a function text -> [(start, end, detector)] (phones, addresses).
    find: Callable[[str], list[tuple[int, int, str]]] | None = None


_ADDRESS_RULES = addresses.AddressRules()

PATTERNS: dict[str, list[PatternSpec]] = {
    "EMAIL_ADDRESS": [PatternSpec("EMAIL_ADDRESS", r"@", _EMAIL, None, 1.0, detector="email_regex")],
    "CREDIT_CARD": [
        PatternSpec("CREDIT_CARD", r"(?:\d[ \-]?){12}\d", _CARD, card_ok, 1.0, detector="card_luhn"),
        # 12-digit Maestro numbers: Luhn and a card word nearby (alone, too many numbers pass Luhn).
        PatternSpec(
            "CREDIT_CARD", r"\d{12}", _CARD12, None, 0.8, locate=card12_near_word, detector="card_luhn_cue"
        ),
    ],
    "IBAN_CODE": [
        PatternSpec(
            "IBAN_CODE",
            r"[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){4}",
            _IBAN,
            None,
            1.0,
            locate=iban_trim,
            detector="iban_mod97",
        )
    ],
    "US_SSN": [
        PatternSpec("US_SSN", r"\d{3}[\- .]?\d{2}[\- .]?\d{4}", _SSN, ssn_ok, 0.9, detector="ssn_rules")
    ],
    "IP_ADDRESS": [
        PatternSpec("IP_ADDRESS", r"\d\.\d{1,3}\.\d{1,3}\.\d", _IPV4, None, 0.9, detector="ipv4"),
        PatternSpec(
            "IP_ADDRESS",
            r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
            _IPV6,
            lambda v: v.count(":") >= 2 and ip_ok(v),
            0.9,
            detector="ipv6",
        ),
    ],
    "CRYPTO": [
        PatternSpec(
            "CRYPTO",
            r"[13][a-km-zA-HJ-NP-Z1-9]{25}|bc1[ac-hj-np-z02-9]{11}",
            _BTC,
            btc_ok,
            1.0,
            detector="bitcoin_base58check",
        ),
        PatternSpec("CRYPTO", r"0x[a-fA-F0-9]{40}", _ETH, None, 1.0, detector="ethereum"),
    ],
    # libphonenumber across regions behind a candidate regex (stages/pii/phones.py); the default detector, a
    # stage with other phone params passes its own (find_patterns(..., phones=...)).
    "PHONE_NUMBER": [
        PatternSpec("PHONE_NUMBER", phones.PREFILTER, None, None, 0.7, find=phones.PhoneDetector().find)
    ],
    "URL": [PatternSpec("URL", r"(?i)https?://|www\.", _URL, None, 0.6, detector="url_regex")],
    # Heuristic name/address rules that complement NER (they run with or without a model).
    "PERSON": [
        PatternSpec(
            "PERSON",
            r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Madam|Mme|Mlle|Herr|Frau|Señora?|Sra?)\.? [A-Z]",
            _TITLE_NAME,
            None,
            0.6,
            group=1,
            detector="title_rule",
        ),
        # "Ravil G Yefimov", "Sari J. Paavolainen": first name, middle initial, last name.
        PatternSpec(
            "PERSON", r"[A-Z]\S* [A-Z]\.? [A-Z]", _INITIAL_NAME, None, 0.6, group=1, detector="initial_rule"
        ),
    ],
    # Street addresses of the major regions, grown over their block (stages/pii/addresses.py).
    # One spec per rule: each runs only on the documents its RE2 gate lets through.
    "ADDRESS": [
        PatternSpec(
            "ADDRESS",
            addresses.GATES[rule],
            None,
            None,
            0.6,
            find=partial(_ADDRESS_RULES.find, rules=(rule,)),
        )
        for rule in addresses.RULES
    ],
}

PATTERN_TYPES = tuple(PATTERNS)
# Types with a checksum/validator beat looser ones when spans overlap (a card number also looks like a phone).
PRIORITY = {
    "EMAIL_ADDRESS": 10,
    "CREDIT_CARD": 9,
    "IBAN_CODE": 9,
    "CRYPTO": 9,
    "US_SSN": 8,
    "IP_ADDRESS": 8,
    "URL": 7,
    "ADDRESS": 6.5,
    "PHONE_NUMBER": 6,
    "PERSON": 4,
    "LOCATION": 3,
    "ORGANIZATION": 2,
}


def candidate_masks(text: pa.Array | pa.ChunkedArray, types: Iterable[str]) -> dict[str, list[int]]:
    """Per type and document, a bit mask of the type's specs whose RE2 prefilter matches (bit j: ``PATTERNS[t][j]``;
    0: no candidate), vectorized over the whole batch, no Python regex."""
    filled = pc.fill_null(text, "")
    out: dict[str, list[int]] = {}
    for t in types:
        bits = [pc.match_substring_regex(filled, spec.prefilter).to_pylist() for spec in PATTERNS[t]]
        if len(bits) == 1:
            out[t] = [int(b) for b in bits[0]]
        else:
            out[t] = [sum(1 << j for j, b in enumerate(row) if b) for row in zip(*bits, strict=True)]
    return out


def find_patterns(
    text: str,
    types: Iterable[str],
    finders: dict[str, Callable[[str], list[tuple[int, int, str]]]] | None = None,
    specs: Mapping[str, int] | None = None,
) -> list[Span]:
    """Validated pattern spans of the given types in one document; ``finders`` replaces a type's detector
    function (a stage's own phone regions and leniency); ``specs`` (from ``candidate_masks``) says which of a
    type's specs can match (default: all)."""
    spans: list[Span] = []
    # higher priority first: the phone detector skips candidates a validated type already holds (they would merge
    # into that type's span anyway), which spares libphonenumber most card, IBAN and IP numbers
    for t in sorted(types, key=lambda t: -PRIORITY.get(t, 0)):
        allowed = -1 if specs is None else specs.get(t, -1)
        for j, spec in enumerate(PATTERNS[t]):
            if not (allowed >> j) & 1:
                continue
            find = (finders or {}).get(t) or spec.find
            if find is not None:
                if t == "PHONE_NUMBER":
                    top = PRIORITY[t]
                    taken = [(s.start, s.end) for s in spans if PRIORITY.get(s.type, 0) > top]
                    spans.extend(Span(a, b, t, spec.score, det) for a, b, det in find(text, taken))  # type: ignore[call-arg]
                else:
                    spans.extend(Span(a, b, spec.type, spec.score, det) for a, b, det in find(text))
                continue
            assert spec.regex is not None
            for m in spec.regex.finditer(text):
                value = m.group(spec.group)
                if not value:
                    continue
                if spec.validate is not None and not spec.validate(value):  # type: ignore[operator]
                    continue
                a, b = m.start(spec.group), m.end(spec.group)
                if spec.locate is not None:
                    loc = spec.locate(text, a, b)  # type: ignore[operator]
                    if loc is None:
                        continue
                    a, b = loc
                spans.append(Span(a, b, spec.type, spec.score, spec.detector))
    return spans


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Merge overlapping spans into one covering their union, typed by the highest-priority member.

    The union (not the best single span) is kept so that a partly recognised value never leaks its remainder.
    """
    if not spans:
        return []
    spans = sorted(spans, key=lambda s: (s.start, -s.end))
    out: list[Span] = []
    cur = spans[0]
    for s in spans[1:]:
        if s.start < cur.end:
            best = cur if (PRIORITY.get(cur.type, 0), cur.score) >= (PRIORITY.get(s.type, 0), s.score) else s
            cur = Span(cur.start, max(cur.end, s.end), best.type, max(cur.score, s.score), best.detector)
        else:
            out.append(cur)
            cur = s
    out.append(cur)
    return out
