"""Street addresses for the `pii` stage: rules for the address shapes of the major regions, then the whole block.

Why rules and not only NER: a small spaCy model tags a street as FAC or GPE about half the time, and never the
house number, flat, postal code or the lines that follow, so an address survives in pieces. Each rule below finds
a *street core* with one region's shape; the core then grows over the rest of the address block (the building
number before it; flat, city, region code, postal code and country after it, on the same line or the next
lines), because every piece of an address narrows down where a person lives.

Street cores (detector names in brackets, reported per entity type, never with values):

- ``address_us`` — US/CA/UK/AU, number first: "24 Clarke Avenue", "9448 175 Iroon Polytechniou Ave", with the
  USPS street suffixes and the British ones (Close, Mews, Crescent …); "Apt./Suite/Unit" extensions.
- ``address_eu`` — street type word first, number after (Romance, Slavic, Greek): "Via Roma 131", "Rue de
  Virton 38", "Rua do Arenque 1634", "ul. Długa 5", "Οδός Ερμού 12"; and compound or trailing type words with
  the number after (Germanic, Nordic, Dutch, Finnish, Hungarian): "Friedhofstrasse 33", "Nybyvägen 65",
  "Trenerys gate 232", "Rákóczi út 13.", "Puruntie 82".
- ``address_numbered`` — any "Street Name 12" between two numbers ("28245 Puruntie 82", "10252 Μεγάλη Άμμος 184")
  or right after an address cue ("lives at", "address:", "drops you off at", "the corner of").
- ``address_unit`` — flats and boxes alone: "Apt. 117", "Suite 464", "P.O. Box 211", "PSC 3294, Box 9168",
  military "APO AA 61487".
- ``address_postal`` — a US/CA city–state–ZIP line ("Springfield, IL 62704"), UK and Canadian postcodes.
- ``address_cjk`` — Chinese, Japanese and Korean addresses: an administrative unit (省 市 区 县 都 道 府 県 町 시 도 구 군)
  followed by a street or block and a number (路 街 号 丁目 番地 로 길).

False positives per language and leak per region are measured by scripts/eval/pii.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

# USPS Publication 28 street suffixes (C1) that are words people write, plus British, Irish and Australian ones.
_SUFFIXES = (
    "Alley Aly Annex Arcade Avenue Ave Bayou Beach Bend Bluff Bluffs Boulevard Blvd Branch Bridge Brook Brooks "
    "Burg Bypass Camp Canyon Cape Causeway Center Centre Circle Cir Circles Cliff Cliffs Club Common Commons "
    "Corner Corners Course Court Ct Courts Cove Coves Creek Crescent Cres Crest Crossing Crossroad Curve Dale Dam "
    "Divide Drive Dr Drives Estate Estates Expressway Expy Extension Falls Ferry Field Fields Flat Flats Ford "
    "Fords Forest Forge Forges Fork Forks Fort Freeway Fwy Garden Gardens Gateway Glen Glens Green Greens Grove "
    "Groves Harbor Harbour Harbors Haven Heights Hts Highway Hwy Hill Hills Hollow Inlet Island Islands Isle "
    "Junction Junctions Key Keys Knoll Knolls Lake Lakes Landing Lane Ln Light Lights Loaf Lock Locks Lodge Loop "
    "Mall Manor Manors Meadow Meadows Mews Mill Mills Mission Motorway Mount Mountain Mountains Neck Orchard Oval "
    "Overpass Parade Park Parks Parkway Pkwy Pass Passage Path Pike Pine Pines Place Pl Plain Plains Plaza Point "
    "Points Port Ports Prairie Quay Radial Ranch Rapid Rapids Rest Ridge Ridges Rise River Road Rd Roads Route "
    "Row Rue Run Shoal Shoals Shore Shores Skyway Spring Springs Spur Square Sq Squares Station Stravenue Stream "
    "Street St Streets Summit Terrace Terr Throughway Trace Track Trafficway Trail Trl Trailer Tunnel Turnpike "
    "Underpass Union Unions Valley Valleys Viaduct View Views Village Villages Ville Vista Walk Walks Wall Way "
    "Ways Well Wells Wharf Wynd Close Drove Gate Grange Yard Esplanade Promenade Boardwalk Concourse Broadway"
).split()
# Street type words written before the name (Romance, Slavic, Greek, Turkish, Indonesian …); abbreviations only
# with their dot ("al." is a Polish avenue, "al" is Spanish and Italian for "to the").
_TYPE_FIRST = (
    "via viale vicolo vico piazza piazzale piazzetta corso largo contrada borgo strada lungomare calle carrer "
    "avenida avinguda avda plaza plaça paseo passeig camino carretera ronda travesía travessa rua praça "
    "estrada alameda rúa rue avenue boulevard chemin allée impasse quai faubourg ulica aleja osiedle plac ulitsa "
    "prospekt bulevardul bulevard calea șoseaua splaiul ulice náměstí trg cesta odos οδός οδος λεωφόρος "
    "πλατεία leoforos plateia rruga jalan sokak cadde caddesi mahallesi avenija"
).split()
_TYPE_FIRST_ABBR = "ul al av bd bld jl sok cad str pl".split()
# Street type words written after the name (Germanic, Nordic, Dutch, Finnish, Hungarian, Baltic): as their own
# word ("Trenerys gate 232", "Rákóczi út 13.") or as the end of a compound ("Friedhofstrasse 33", "Puruntie 82").
_TYPE_AFTER = (
    "straße strasse gasse weg platz allee ring damm ufer steig chaussee gatan vägen väg gata gränd torget gate "
    "gaten veien vei vej vegur vegen stræde gade plads allé straat laan gracht plein kade singel dijk dreef tie "
    "katu kuja polku kaari rinne tanhua raitti väylä utca út útja tér körút sor köz fasor rakpart iela gatvė "
    "prospektas tänav tee maantee puiestee"
).split()
_TYPE_AFTER_ABBR = "str u rkp".split()
_COMPOUND = (
    "straße strasse gasse weg platz allee damm ufer steig gatan vägen gata gränd torget gaten veien vej vegur "
    "vegen stræde gade plads straat laan gracht plein kade singel dijk dreef tie katu kuja polku kaari rinne "
    "tanhua raitti väylä utca iela gatvė tänav"
).split()
_PARTICLES = (
    "de del della delle dei degli di da dal do dos das du des la le les el los las lo y e i van der den von am "
    "an im zum zur al z na ve pod nad ter"
).split()
_COUNTRY_EXTRA = (
    "USA U.S.A. UK U.K. England Scotland Wales Northern Ireland Greenland Faroe Islands Kosovo Taiwan Hong Kong "
    "Macau Palestine Vatican"
)

_L = r"[^\W\d_]"  # a letter of any script
_WORD = _L + r"[^\W_]*(?:['’\-]" + _L + r"[^\W_]*)*\.?"
_NUM = r"[0-9]{1,6}[A-Za-z]?(?:[/\-][0-9]{1,4}[A-Za-z]?)?"
_HOUSE = r"[0-9]{1,5}[A-Za-z]?(?:[/\-][0-9]{1,4}[A-Za-z]?)?\.?"


def _alts(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_SUFFIX_RE = r"(?:" + _alts(_SUFFIXES) + r")\.?"
_UNIT_WORDS = r"(?:Apt|Apartment|Suite|Ste|Unit|Flat|Fl|Floor|Room|Rm|Bldg|Building|Box|Postbox|PO Box|P\.\s?O\.\s?Box|PSC|CMR|PMB)"
_UNIT = r"(?i:" + _UNIT_WORDS + r")\.?\s?#?\s?[0-9]{1,6}[A-Za-z]?\b"

_US = re.compile(
    r"(?<![\w\-/.,])" + _NUM + r"(?:[ ][0-9]{1,5})?[ ]"
    r"((?:(?:[NSEW]|N[EW]|S[EW])\.?[ ])?"
    r"(?:" + _WORD + r"[ ]){1,4}?)"
    r"(?i:" + _SUFFIX_RE + r")(?![^\W_])"
)
_EU_FIRST = re.compile(
    r"(?<![^\W_])(?:(?i:" + _alts(_TYPE_FIRST) + r")|(?i:" + _alts(_TYPE_FIRST_ABBR) + r")\.)[ ]"
    r"((?:(?i:" + _alts(_PARTICLES) + r")[ ]|[‘'’]|" + _WORD + r"[ ]?){1,6}?)"
    r",?[ ]" + _HOUSE + r"(?![^\W_])"
)
_EU_AFTER = re.compile(
    r"(?<![^\W_])((?:" + _WORD + r"[ ]){0,3}"
    r"(?:"
    + _L
    + r"[^\W\d_]{3,}(?:"
    + _alts(_COMPOUND)
    + r")|(?:"
    + _WORD
    + r"[ ])(?i:"
    + _alts(_TYPE_AFTER)
    + r"|(?:"
    + _alts(_TYPE_AFTER_ABBR)
    + r")\.)))"
    r",?[ ]" + _HOUSE + r"(?![^\W_]|[ ][0-9])"
)
# French and Belgian: the number first ("29 Rue de Tanger", "26 rue des Lilas").
_FR = re.compile(
    r"(?<![\w\-/.,])[0-9]{1,4}[A-Za-z]?,?[ ](?i:rue|avenue|boulevard|bd|place|allée|chemin|impasse|quai|route|cours)"
    r"\.?[ ](?:(?:"
    + _alts(_PARTICLES)
    + r"|l’|l'|d’|d')[ ]?){0,2}(?:"
    + _WORD
    + r"[ ]?){1,4}?(?=[,\n.;]|$| [0-9])"
)
# "Via dei Fiorentini 17 street", "Loorenstrasse 149 street": a number then the word street.
_NUMBER_STREET = re.compile(
    r"(?<![^\W_])(?:C/[ ]?)?(?:" + _WORD + r"[ ]){1,4}[0-9]{1,5}[A-Za-z]?\.?[ ](?i:street|st\.)(?![^\W_])"
)
# "Street Name 12" (one to four capitalized words then a house number): only after a building or postal number
# of three digits or more ("40 Under 40" and "40 Points 12" are no address), or after a cue.
_NAME_NUMBER = (
    r"(?:"
    + _WORD
    + r"[ ]){1,4}"
    + _HOUSE
    + r"(?=\s*$|[,;)?]|\s*\n|[ ]+(?i:"
    + _UNIT_WORDS
    + r")\b|\.?[ ]+[a-z])"
)
_NUMBERED = re.compile(r"(?<![\w\-/.,:$€£])([0-9]{3,6})(?:[ ][0-9]{1,5})?[ ](" + _NAME_NUMBER + r")")
_CUE = re.compile(
    r"(?i)(?:\blives?\s(?:at|on|in)|\bliving\s(?:at|on|in)|\breside[sd]?\s(?:at|in)|\bresiding\s(?:at|in)"
    r"|\baddress(?:\sis|\swas)?\s*(?:is\s)?[:\-]?|\blocated\sat|\bsituated\sat|\bdrops?\syou\soff\sat"
    r"|\b(?:is|are|station\sis)\s(?:at|on)|\benter\son|\bthe\scorner\sof|\bmoved\sto|\bsend\s(?:it|them|mail|letters|a\snew\sone)\sto|\bdeliver(?:ed)?\sto"
    r"|\bship(?:ped|ping)?\sto|\barrived\sat|\bmeet\s(?:me|us)\sat|\bstop\sat|\benter\son|\bin\sthe\scorner\sof)"
    r"[\s:]*"
)
_UNIT_RE = re.compile(
    r"(?<![^\W_])(?:(?i:PSC|CMR|Unit)\s[0-9]{1,6},?\s(?i:Box)\s[0-9]{1,6}"
    r"|(?i:Apt|Apartment|Suite|Ste|P\.\s?O\.\s?Box|PO\sBox|Post\s?box|PMB)\.?\s?#?\s?[0-9]{1,6}[A-Za-z]?)"
    r"(?![^\W_])"
)
_MILITARY = re.compile(
    r"(?i)(?:\b(?:USNS|USNV|USS|USCGC)\s[^\W\d_]+(?:\s[^\W\d_]+)?\s*\n\s*)?\b(?:APO|FPO|DPO)\s(?:AA|AE|AP)\s[0-9]{5}\b"
)
_POSTAL = re.compile(
    r"(?<![^\W_])(?:[A-Z][\w'’.\-]+(?:[ ][A-Z][\w'’.\-]+){0,3},?\s(?:[A-Z]{2}\s[0-9]{5}(?:-[0-9]{4})?)"
    r"|[A-Z]{1,2}[0-9][A-Z0-9]?\s[0-9][A-Z]{2}"  # UK postcode
    r"|[ABCEGHJ-NPRSTVXY][0-9][A-Z]\s[0-9][A-Z][0-9])"  # Canadian postcode
    r"(?![^\W_])"
)
_HAN = r"[\u4e00-\u9fff\u3040-\u30ff]"
_CJK = re.compile(
    # Chinese: … 省/市/区/县 … 路/街/道/巷/弄 + number + 号
    _HAN + r"{1,12}(?:省|市|区|區|县|縣)" + _HAN + r"{0,12}(?:路|街|道|巷|弄|大道)[0-9０-９]{1,5}(?:号|號)"
    # Japanese: … 都/道/府/県/市/区/町 … + 1-2-3 or 丁目/番地
    r"|" + _HAN + r"{1,12}(?:都|道|府|県|市|区|町|村)" + _HAN + r"{0,12}"
    r"[0-9０-９]{1,4}(?:丁目|番地|番|[\-－ー][0-9０-９]{1,4})(?:[0-9０-９]{1,4}(?:番地|番|号)?|[\-－ー][0-9０-９]{1,4})*"
    # Korean: … 시/도/구/군 … 로/길 + number
    r"|[\uac00-\ud7af]{1,10}(?:시|도|구|군)(?:\s?[\uac00-\ud7af]{1,10}(?:구|군|동|읍|면))?"
    r"\s?[\uac00-\ud7af0-9]{1,12}(?:로|길)\s?[0-9]{1,5}(?:-[0-9]{1,4})?"
)
_WEAK_CUE = re.compile(r"(?i)(?:is|are|station\sis|meet|stop|arrived|enter)\b")
_CLAUSE = re.compile(
    r"(?:[^.!?;\n]|\.(?=[ ]+[a-z0-9]))[^.!?;\n]{2,79}(?:(?<=[0-9])\.(?=[ ]+and\b)[^.!?;\n]{1,40})?"
)


@lru_cache(maxsize=1)
def country_names() -> frozenset[str]:
    """English country names, from libphonenumber's geocoding data (one per region), plus a few usual forms."""
    import phonenumbers
    from phonenumbers import geocoder

    names = set(_COUNTRY_EXTRA.split())
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(region)
        if example is not None:
            name = geocoder.country_name_for_number(example, "en")
            if name:
                names.add(name)
    return frozenset(names)


_BLOCK_PART = re.compile(
    r"(?:"
    + _UNIT
    + r"|(?i:(?:APO|FPO|DPO)\s(?:AA|AE|AP))"
    + r"|[0-9]{3,6}(?:[ \-][0-9]{2,4})?(?![^\W_])"  # postal code
    + r"|[A-Z]{1,2}[0-9][A-Z0-9]?\s[0-9][A-Z]{2}"
    + r"|(?:"
    + _WORD
    + r")(?:[ ](?:"
    + _WORD
    + r")){0,4}(?:[ ]\((?:"
    + _WORD
    + r")\))?(?:[ ][0-9]{3,6}(?![^\W_]))?"
    r")"
)
_GAP = re.compile(r"(?:[ \t]*[,>;]?[ \t]*(?:\n[ \t>?*•|\-]*){0,2}[ \t]*,?[ \t]*)")


def _is_place_words(words: str) -> bool:
    """A city, region, country or code line: capitalized words (or ALL CAPS), no sentence words."""
    tokens = re.findall(r"[^\W\d_][^\W_]*(?:['’\-.][^\W\d_]+)*", words)
    if not tokens or len(tokens) > 5:
        return False
    small = {p for p in _PARTICLES} | {"upon", "on", "am", "an", "sur", "en", "u", "v", "nan"}
    return all(t[0].isupper() or t.lower() in small for t in tokens) and tokens[0][0].isupper()


class AddressRules:
    """Finds address spans in one text: ``find`` returns ``(start, end, detector)`` triples."""

    max_parts = 6

    def find(self, text: str, rules: Iterable[str] | None = None) -> list[tuple[int, int, str]]:
        """Address spans of every rule, or of ``rules`` only (names of ``RULES``: the stage runs a rule on the
        documents its RE2 gate in ``GATES`` lets through)."""
        view = _escape_view(text)
        want = frozenset(RULES if rules is None else rules)
        cores: list[tuple[int, int, str]] = []
        for rx, name, rule in ((_US, "address_us", "us"), (_EU_FIRST, "address_eu", "eu_first")):
            if rule not in want:
                continue
            for m in rx.finditer(view):
                # the name capitalized; the suffix too ("1 Tbsp. green"), and a type word written first unless it
                # is an abbreviation ("via Class 1 Bluetooth" is no street, "ul. Długa 5" is)
                lead = view[m.end(1)] if rx is _US else m.group()[0]
                if _capitalized(m.group(1)) and (lead.isupper() or view[m.start(1) - 2] == "."):
                    cores.append((m.start(), m.end(), name))
        for m in _EU_AFTER.finditer(view) if "eu_after" in want else ():
            # "… and Hammarvägen 15", "Király u. 15.": the street starts at its first capitalized word
            start = _capital_tail(view, m.start(1), m.end(1))
            if start is not None:
                cores.append((start, m.end(), "address_eu"))
        if "fr" in want:
            cores.extend((m.start(), m.end(), "address_eu") for m in _FR.finditer(view))
        for m in _NUMBER_STREET.finditer(view) if "number_street" in want else ():
            start = _capital_tail(view, m.start(), m.end() - 1)
            if start is not None:
                cores.append((start, m.end(), "address_numbered"))
        for m in _NUMBERED.finditer(view) if "numbered" in want else ():
            name = m.group(2)
            house = re.search(r"([0-9]+)[A-Za-z]?\.?$", name)
            # "15 Απριλίου 2013", "22 Settembre 2015": a day, a month and a year
            if int(m.group(1)) <= 31 and house and 1800 <= int(house.group(1)) <= 2099:
                continue
            if _capitalized(name):
                cores.append((m.start(), m.end(), "address_numbered"))
        for m in _CUE.finditer(view) if "cue" in want else ():
            end = self._after_cue(view, m.end(), weak=bool(_WEAK_CUE.match(m.group())))
            if end is not None:
                cores.append((m.end(), end, "address_numbered"))
        for rx, name, rule in (
            (_UNIT_RE, "address_unit", "unit"),
            (_MILITARY, "address_unit", "unit"),
            (_POSTAL, "address_postal", "postal"),
        ):
            if rule in want:
                cores.extend((m.start(), m.end(), name) for m in rx.finditer(view))
        if "cjk" in want:
            cores.extend(
                (m.start(), m.end(), "address_cjk") for m in _CJK.finditer(view) if _cjk_ok(m.group())
            )
        if not cores:
            return []
        out = []
        for a, b, name in cores:
            a = self._grow_back(view, a)
            b = self._grow(view, b)
            out.append((a, b, name))
        return out

    @staticmethod
    def _after_cue(view: str, pos: int, weak: bool = False) -> int | None:
        """End of an address right after a cue: up to the end of the clause, when it holds a number."""
        m = _CLAUSE.match(view, pos)
        if not m:
            return None
        seg = m.group()
        cut = re.search(r"\s(?:and|or|but|for|last|after|before|the|if|when|because|where|in\scase)\s", seg)
        if cut and not re.search(r"[0-9]", seg[: cut.start()]):
            return None
        if cut:
            # "the corner of Csabai kapu 39. and Mathias Pass": a second street after "and" belongs to it
            rest = seg[cut.end() :]
            second = re.match(r"(?:" + _WORD + r"[ ]?){1,4}", rest) if cut.group().strip() == "and" else None
            if (
                second
                and _capitalized(second.group())
                and re.search(r"(?i)(?:" + _SUFFIX_RE + r"|[0-9])\.?\s*$", second.group())
            ):
                seg = seg[: cut.end()] + second.group()
            else:
                seg = seg[: cut.start()]
        if not re.search(r"[0-9]", seg) or not re.search(_L, seg):
            return None
        if re.match(r"\s*[0-9]{1,2}(?:[:.][0-9]{2})?\s*(?i:am|pm|a\.m|p\.m|h\b|o'clock|percent|%)", seg):
            return None
        # after "is at", "meet me at" …: a number and a capitalized name ("9816 214 Pavlou Drandaki"), not "5280 feet"
        if weak and not re.match(
            r"\s*(?:[0-9]{1,6}[A-Za-z]?[ ,]+)+(?:[^\W\d_a-z]|(?i:" + _UNIT_WORDS + r"))", seg
        ):
            if not re.match(r"\s*[^\W\d_a-z]", seg):
                return None
        if not re.match(r"\s*(?:[0-9]|" + _L + r"[^\W_]*\s+[0-9]|the\s|(?i:" + _UNIT_WORDS + r"))", seg):
            if not _capitalized(seg.split(",")[0]):
                return None
        return pos + len(seg.rstrip(" ,"))

    def _grow(self, view: str, end: int) -> int:
        """Extend over the parts that follow in the same block: unit, city, region code, postal code, country."""
        countries = country_names()
        for _ in range(self.max_parts):
            g = _GAP.match(view, end)
            if g is None:
                break
            pos = g.end()
            if pos == end and pos < len(view) and view[pos] not in " ":
                break
            m = _BLOCK_PART.match(view, pos)
            if m is None or m.end() <= pos:
                break
            part = m.group().rstrip(". ")
            if not part:
                break
            nl = "\n" in g.group()
            words = re.sub(r"[0-9\- ]{3,}$", "", part).strip()
            if (
                re.fullmatch(_UNIT, part)
                or re.match(r"(?:APO|FPO|DPO)\s", part)
                or re.fullmatch(r"[0-9]{3,6}(?:[ \-][0-9]{2,4})?", part)
                or (words and words in countries)
                or (words and _is_place_words(words) and (nl or "," in g.group() or len(words) <= 3))
            ):
                if re.fullmatch(r"[0-9]{3,6}(?:[ \-][0-9]{2,4})?", part) and not nl and "," not in g.group():
                    # a bare number after a space continues an address only at a line's end ("… VIC 3000")
                    if not re.match(r"\s*(?:\n|$|[,.;)])", view[m.end() :]):
                        break
                end = pos + len(part)
                if m.group().rstrip(" ").endswith("."):
                    # "… 12." (a Hungarian house number) or the end of a sentence: nothing after it belongs here
                    if re.search(r"[0-9]$", part):
                        end += 1
                    break
                continue
            break
        return end

    @staticmethod
    def _grow_back(view: str, start: int) -> int:
        """Include a building or postal number, or a flat, written just before the street."""
        m = re.search(
            r"(?:(?<![\w\-/.,])[0-9]{1,6}[ ]|" + _UNIT + r"[ ,]+)$", view[max(0, start - 24) : start]
        )
        return start - len(m.group()) if m else start


def _capital_tail(view: str, a: int, b: int) -> int | None:
    """Start of the run of capitalized words (particles and type words allowed after the first) that ends
    ``view[a:b]``, or None when its first word is not capitalized."""
    words = list(re.finditer(_L + r"[^\W_]*\.?|C/", view[a:b]))
    start = None
    for w in reversed(words):
        t = w.group()
        if t[0].isupper():
            start = a + w.start()
        elif t.lower().rstrip(".") in _PARTICLES or start is None:
            continue
        else:
            break
    return start


def _capitalized(seg: str) -> bool:
    """Capitalized words, with particles ("dei", "de la") anywhere but not alone."""
    small = set(_PARTICLES)
    words = re.findall(_L + r"[^\W_]*", seg)
    names = [w for w in words if w.lower() not in small]
    return bool(names) and all(w[0].isupper() for w in names)


def _cjk_ok(value: str) -> bool:
    return bool(re.search(r"[0-9０-９]", value)) and len(value) >= 6


_ESC = re.compile(r"\\[ntr]")


def _escape_view(text: str) -> str:
    """Literal ``\\n``/``\\t`` escapes (JSON-escaped scrapes) read as line breaks and spaces (same length)."""
    if "\\" not in text:
        return text
    return _ESC.sub(lambda m: "\n " if m.group() == "\\n" else "  ", text)


# Rules in the order ``find`` runs them, and per rule an RE2 gate that every match the rule *keeps* must contain
# (its lookarounds dropped, its words widened, its capitalization checks written in): the stage runs a rule only on
# the documents of a batch that its gate lets through, so text without a candidate costs one vectorized RE2 pass
# per rule and no Python regex. A literal escape (\n, \t) lets every gate through: the rules read an escaped view.
RULES = ("us", "eu_first", "eu_after", "fr", "number_street", "numbered", "cue", "unit", "postal", "cjk")
_SP = r"[\t-\r\x{1c}-\x{1f}\x{85}\p{Z}]"  # Python's \s
_UP = r"[\p{Lu}\p{Nl}]"  # what str.isupper() takes among letters
_PART_RE2 = r"(?:(?i:" + _alts(_PARTICLES) + r")\.?[ '’\-])*"


def _up_first(words: list[str]) -> str:
    """Each word with a capital first letter (Python's case-insensitive matches of it included), any case after."""
    extra = {"k": "\u212a", "i": "\u0130"}
    return "|".join(
        "[" + re.escape(w[0].upper() + extra.get(w[0].lower(), "")) + "](?i:" + re.escape(w[1:]) + ")"
        for w in sorted(set(words), key=len, reverse=True)
    )


_GATES = {
    # number, the first name word capitalized (after particles), one to four words, a capitalized suffix
    "us": r"[0-9][A-Za-z]? (?:[0-9]{1,5} )?(?:(?:[NSEW]|N[EW]|S[EW])\.? )?"
    + _PART_RE2
    + _UP
    + r"[^ \n]*(?: [^ \n]+){0,4} (?:"
    + _up_first(_SUFFIXES)
    + ")",
    "eu_first": r"(?:" + _up_first(_TYPE_FIRST) + r"|(?i:" + _alts(_TYPE_FIRST_ABBR) + r")\.) [^\n]*?[0-9]",
    "eu_after": r"(?:(?i:"
    + _alts(_TYPE_AFTER)
    + r"|(?:"
    + _alts(_TYPE_AFTER_ABBR)
    + r")\.)|[\pL\pN]{4}(?:"
    + _alts(_COMPOUND)
    + r")),? [0-9]",
    "fr": r"[0-9][A-Za-z]?,? (?i:rue|avenue|boulevard|bd|place|allée|chemin|impasse|quai|route|cours)\.? ",
    "number_street": r"[0-9][A-Za-z]?\.? (?i:street|st\.)",
    "numbered": r"[0-9]{3}(?: [0-9]{1,5})? " + _PART_RE2 + _UP + r"[^ \n]*(?: [^ \n]+){0,3} [0-9]",
    "cue": r"(?i:lives?"
    + _SP
    + r"(?:at|on|in)|living"
    + _SP
    + r"(?:at|on|in)|reside[sd]?"
    + _SP
    + r"(?:at|in)|residing"
    + _SP
    + r"(?:at|in)|address|located"
    + _SP
    + r"at|situated"
    + _SP
    + r"at|drops?"
    + _SP
    + r"you"
    + _SP
    + r"off"
    + _SP
    + r"at|(?:is|are)"
    + _SP
    + r"(?:at|on)|enter"
    + _SP
    + r"on|corner"
    + _SP
    + r"of|moved"
    + _SP
    + r"to|send"
    + _SP
    + r"(?:it|them|mail|letters|a"
    + _SP
    + r"new"
    + _SP
    + r"one)"
    + _SP
    + r"to|deliver(?:ed)?"
    + _SP
    + r"to|ship(?:ped|ping)?"
    + _SP
    + r"to|arrived"
    + _SP
    + r"at|meet"
    + _SP
    + r"(?:me|us)"
    + _SP
    + r"at|stop"
    + _SP
    + r"at)(?:"
    + _SP
    + r"|:)*[^\n]{0,125}?[0-9]",
    "unit": r"(?i:psc|cmr|unit)"
    + _SP
    + r"[0-9]|(?i:apt|apartment|suite|ste|box|pmb)\.?"
    + _SP
    + r"?#?"
    + _SP
    + r"?[0-9]|(?i:apo|fpo|dpo)"
    + _SP
    + r"(?i:aa|ae|ap)"
    + _SP
    + r"[0-9]",
    "postal": r"[A-Z]{2}"
    + _SP
    + r"[0-9]{5}|[A-Z]{1,2}[0-9][A-Z0-9]?"
    + _SP
    + r"[0-9][A-Z]{2}|[A-Z][0-9][A-Z]"
    + _SP
    + r"[0-9][A-Z][0-9]",
    "cjk": r"[\x{4e00}-\x{9fff}\x{3040}-\x{30ff}\x{ac00}-\x{d7af}]",
}
GATES = {rule: r"\\[ntr]|" + _GATES[rule] for rule in RULES}

__all__ = ["GATES", "RULES", "AddressRules", "country_names"]
