"""Phone numbers for the `pii` stage: a fast candidate regex, judged by libphonenumber across regions.

Why not one regex: real numbers come in every national format (E.164 without separators, trunk prefixes in
parentheses, digits in twos or threes, mixed separators), and a regex loose enough to take them all also takes
dates, quantities and version numbers. Why not libphonenumber's matcher alone over the whole text: it needs a region
per national number (one pass per region over every document is far too slow), its default leniency rejects many
numbers that people write (fake and test numbers, numbers of regions outside the set), and it reads a number glued
to a literal ``\\n`` escape or to a label (``1693-Office``) as part of a word.

So, per document: a same-length *view* turns literal escapes (``\\n``, ``\\t``) and hyphenated phone labels into
spaces (offsets hold); one regex finds digit runs with phone punctuation; each run is judged, cheapest first:

1. international (``+``, ``00``): libphonenumber's ``PhoneNumberMatcher`` at ``leniency``;
2. national: the matcher with each of ``regions`` in turn (cached per run), then the separator-aware shape rule
   (one kind of separator, not a date or a grouped quantity) for numbers libphonenumber does not know;
3. a short local number (5–6 digits, or any rejected run) right after or before a cue word ("Phone:", "fax",
   "office", "call me on", "mobile") is a phone too.

Every accepted span carries the detector that took it (``libphonenumber``, ``phone_shape``, ``phone_cue``): the
stage reports counts per detector, never values. Precision and recall per format and country are measured by
scripts/eval/pii.py on numbers generated from libphonenumber's own metadata.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import phonenumbers
from phonenumbers import Leniency, re_util

# libphonenumber compiles its metadata patterns through `re`'s 512-entry cache; 38 regions overflow it, and every
# candidate then recompiles them (and evicts ours). Its own unbounded cache keeps each one compiled once.
if hasattr(re_util, "enable_pattern_cache"):
    re_util.enable_pattern_cache()

Leniency_ = Literal["possible", "valid", "strict_grouping", "exact_grouping"]
LENIENCY = {
    "possible": Leniency.POSSIBLE,
    "valid": Leniency.VALID,
    "strict_grouping": Leniency.STRICT_GROUPING,
    "exact_grouping": Leniency.EXACT_GROUPING,
}
# Regions tried for numbers written without a country code, in order: the larger national numbering plans of every
# continent. A number with a `+` or `00` prefix needs no region.
DEFAULT_REGIONS = (
    "US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "SE", "NO", "DK", "FI", "PL", "PT", "IE", "CZ",
    "HU", "RO", "GR", "TR", "RU", "UA", "IN", "CN", "JP", "KR", "AU", "NZ", "BR", "MX", "AR", "ZA", "NG", "IL",
    "AE", "SG",
)  # fmt: skip

# Phone labels: as cue words before or after a number, and glued to it with a hyphen ("1693-Office").
_LABELS = (
    r"phone|ph|tel|telephone|fax|facsimile|mobile|mob|cell|cellphone|office|desk|home|work|direct|landline|"
    r"hotline|whatsapp|sms|tél|téléphone|telefon|teléfono|telefono|móvil|handy|cellulare|portable"
)
_CUE_BEFORE = re.compile(
    r"(?i)(?:\b(?:" + _LABELS + r")(?:\s*(?:no|number|nr|num|#)\.?)?"
    r"|\b(?:call|ring|text|reach|dial)(?:\s+(?:me|us|him|her|them))?(?:\s+(?:on|at))?)"
    r"[\s:.#\-()]{0,4}$"
)
_CUE_AFTER = re.compile(r"(?i)^[\s\-()]{0,3}(?:" + _LABELS + r")\b")
# A literal escape (JSON-escaped scrapes) next to a number, or before a comma or semicolon.
_ESCAPE_GLUE = re.compile(r"\\[ntr](?=[\d+(])|(?<=\d)\\[ntr]|\\(?=[,;])")
# A hyphen that glues a label to a number: "1693-Office", "Office-1693" (checked at each hyphen only).
_LABEL_AFTER = re.compile(r"(?i:" + _LABELS + r")\b")
_LABEL_BEFORE = re.compile(r"(?i:\b(?:" + _LABELS + r"))-$")


_SEP = r"(?:[ \u00a0]?[.\-/][ \u00a0]?|[ \u00a0]|[ \u00a0]?\([ \u00a0]?|[ \u00a0]?\)[ \u00a0]?)"
CANDIDATE = re.compile(
    r"(?<![\w@/.+\-])(?<![0-9],)"
    r"(?:\+[ \u00a0]?|\([ \u00a0]?\+?)?"
    r"[0-9](?:[0-9]|" + _SEP + r"(?=[0-9(]))*[0-9]\)?"
    r"(?:[ \u00a0]?(?:x|ext\.?|extension|\#)[ \u00a0]?[0-9]{1,6}\b)?"
    r"(?![\w@]|[.,][0-9])",
    re.IGNORECASE,
)
# RE2 prefilter over the batch: a digit run of at least five characters with phone punctuation.
PREFILTER = r"\d[\d .\-/\x{00a0})(]{3,}\d"

_EXT = re.compile(r"(?i)[ \u00a0]?(?:x|ext\.?|extension|#)[ \u00a0]?\d{1,6}$")
_ISO_DATE = re.compile(r"^(?:19|20)\d{2}[-./]\d{1,2}[-./]\d{1,2}")
_DATE_LIKE = re.compile(r"^(?:\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4})$")
# Two years ("1891-1954", "2008/2009", "1888 1982", "1995 - 96") or two times ("15.30 - 16.30").
_RANGE = re.compile(
    r"^(?:1[0-9]|20)\d{2}[ \u00a0]?[-/ –][ \u00a0]?(?:(?:1[0-9]|20)\d{2}|\d{2})$"
    r"|^\d{1,2}[.:]\d{2}[ \u00a0]?[-–][ \u00a0]?\d{1,2}[.:]\d{2}$"
)
_BEFORE_CODE = re.compile(r"(?i)\b(?:isbn(?:-1[03])?|issn|doi|blz|iban|art\.|nr\.)[\s:]*$")


def glue_view(text: str) -> str:
    """The text with literal escapes and hyphens that glue labels to numbers turned into spaces (same length).
    Hyphens are looked at one by one (a label check at each), not by a regex over the whole text."""
    view = _ESCAPE_GLUE.sub(lambda m: " " * len(m.group()), text) if "\\" in text else text
    cut: list[int] = []
    h = text.find("-")
    while h >= 0:
        before, after = text[h - 1 : h], text[h + 1 : h + 2]
        if (before.isdecimal() and _LABEL_AFTER.match(text, h + 1)) or (
            (after.isdecimal() or after in "+(")
            and after
            and _LABEL_BEFORE.search(text, max(0, h - 12), h + 1)
        ):
            cut.append(h)
        h = text.find("-", h + 1)
    if not cut:
        return view
    chars = list(view)
    for h in cut:
        chars[h] = " "
    return "".join(chars)


def _excluded(core: str, digits: str, intl: bool) -> bool:
    """Dates, a repeated digit, table rows and digit-grouped quantities: never a phone, whatever a region's plan
    allows."""
    if (_DATE_LIKE.match(core) and _plausible_date(core)) or _ISO_DATE.match(core) or _RANGE.match(core):
        return True
    if len(set(digits)) == 1:
        return True
    if core.count("(") != core.count(")"):
        return True
    if intl:
        return False
    groups = re.findall(r"\d+", core)
    # "504/2552", "GSM 900/1800": a slash joins a phone's area code (0549/882165) or a long number only.
    if "/" in core and not (core.startswith("0") or len(digits) >= 9):
        return True
    # "5040 5 1 17 27" (a table row): after the first, a phone's digit groups have two digits or more.
    if any(len(g) == 1 for g in groups[1:]) and "(0)" not in core:
        return True
    # "1 234 567" / "120 000 000": the grouping of a quantity.
    return (
        not core.startswith("(")
        and len(groups) >= 2
        and all(len(g) == 3 for g in groups[1:])
        and (len(groups[0]) == 1 or "000" in groups[1:])
        and (len(groups) >= 3 or groups[1] == "000")
    )


def _plausible_date(core: str) -> bool:
    """ "12.03.2019" is a date, "12 34 56" is not (no month 34)."""
    a, b, c = (int(g) for g in re.findall(r"\d+", core)[:3])
    if a > 31:  # year first
        return 1 <= b <= 12 or 1 <= c <= 12
    return (a <= 31 and 1 <= b <= 12) or (1 <= a <= 12 and b <= 31)


def shape_ok(core: str) -> bool:
    """The separator-aware rule for national numbers libphonenumber does not know: 7–15 digits, one kind of
    separator ("2000-04-16 11", a date and an hour, mixes them)."""
    digits = re.sub(r"\D", "", core)
    if not 7 <= len(digits) <= 15:
        return False
    if core.startswith("+") or "(" in core:
        return True
    # "18 22 13 17" (a row of scores or counts): two-digit groups make a phone in tens only (FR, BE: five of them);
    # the 8-digit Nordic numbers in pairs are libphonenumber's to take
    groups = re.findall(r"\d+", core)
    if 3 <= len(groups) < 5 and all(len(g) <= 2 for g in groups):
        return False
    return len(set(re.findall(r"[ .\-/\u00a0]", core))) <= 1


@dataclass
class PhoneDetector:
    """Finds phone spans in one text; ``find`` returns ``(start, end, detector)`` triples."""

    regions: Sequence[str] = DEFAULT_REGIONS
    leniency: Leniency_ = "possible"
    cue_words: bool = True
    _lenient: int = field(init=False)

    def __post_init__(self) -> None:
        self._lenient = LENIENCY[self.leniency]
        self.regions = tuple(r.upper() for r in self.regions)

    def find(self, text: str, taken: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int, str]]:
        """Phone spans; a candidate inside one of ``taken`` (spans a validated type of higher priority already
        holds: a card, an IBAN, an IP) is not judged, since that type would win the span anyway."""
        view = glue_view(text)
        out: list[tuple[int, int, str]] = []
        for m in CANDIDATE.finditer(view):
            a, b = m.span()
            if not any(x <= a and b <= y for x, y in taken):
                out.extend(self._judge(view, a, b))
        return out

    def _judge(self, view: str, a: int, b: int) -> list[tuple[int, int, str]]:
        raw = view[a:b]
        if raw.startswith("(") and raw.count("(") > raw.count(")"):
            a, raw = a + 1, raw[1:]
        if raw.endswith(")") and raw.count(")") > raw.count("("):
            b, raw = b - 1, raw[:-1]
        ext = _EXT.search(raw)
        core = raw[: ext.start()] if ext else raw
        digits = re.sub(r"\D", "", core)
        intl = core.startswith("+") or (core.startswith("00") and len(digits) >= 10)
        if len(digits) < 5 or len(digits) > 17 or _excluded(core, digits, intl):
            return []
        if _BEFORE_CODE.search(view[max(0, a - 12) : a]):
            return []
        if len(digits) >= 7 or intl:
            # With a country code the number is taken when its length is possible for that country: test and
            # fake numbers are still someone's way to write a phone. Without one, `leniency` decides per region.
            leniency = Leniency.POSSIBLE if intl else self._lenient
            hits = _matches(raw, ("ZZ",) if core.startswith("+") else self.regions, leniency)
            if hits:
                return [(a + x, a + y, "libphonenumber") for x, y in hits]
            if not intl and shape_ok(core):
                return [(a, b, "phone_shape")]
        if self.cue_words and self._cued(view, a, b):
            return [(a, b, "phone_cue")]
        return []

    @staticmethod
    def _cued(view: str, a: int, b: int) -> bool:
        return bool(_CUE_BEFORE.search(view[max(0, a - 40) : a]) or _CUE_AFTER.match(view[b : b + 16]))


def load_regions(regions: Sequence[str]) -> None:
    """Load the numbering plans of ``regions`` (and of the country codes) now: libphonenumber loads each on first
    use, which otherwise lands in the middle of a batch."""
    for region in regions:
        example = phonenumbers.example_number(region.upper())
        if example is not None:
            list(phonenumbers.PhoneNumberMatcher(phonenumbers.format_number(example, 0), region.upper()))
            list(phonenumbers.PhoneNumberMatcher(phonenumbers.format_number(example, 2), region.upper()))


@lru_cache(maxsize=1 << 16)
def _matches(candidate: str, regions: tuple[str, ...], leniency: int) -> tuple[tuple[int, int], ...]:
    """libphonenumber's matcher over one candidate, region by region: the first region whose matches cover every
    digit of the candidate, else the matches of the region that covers the most digits."""
    want = sum(c.isdigit() for c in candidate)
    best: tuple[tuple[int, int], ...] = ()
    best_n = 0
    for region in regions:
        spans = tuple(
            (m.start, m.end)
            for m in phonenumbers.PhoneNumberMatcher(candidate, region, leniency, max_tries=4)
        )
        n = sum(c.isdigit() for x, y in spans for c in candidate[x:y])
        if n == want:
            return spans
        if n > best_n:
            best, best_n = spans, n
    return best if best_n >= 7 else ()


__all__ = [
    "DEFAULT_REGIONS",
    "LENIENCY",
    "PhoneDetector",
    "glue_view",
    "load_regions",
    "shape_ok",
    "PREFILTER",
]
