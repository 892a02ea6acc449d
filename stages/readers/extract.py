"""HTML bytes → main text plus page metadata, shared by the HTML and WARC readers.

Three extractors, chosen with ``input.extractor``:

- ``trafilatura`` (the default): trafilatura 2.x with its defaults, the quality reference (F1 0.948 on the
  article-extraction benchmark, ~50 pages/s per core).
- ``resiliparse``: resiliparse's ``main_content`` heuristics without comments, alt texts and bullets
  (F1 0.930, ~530 pages/s per core).
- ``combined``: resiliparse's C DOM with trafilatura's boilerplate vocabulary (captions, page header/footer,
  consent/newsletter/date widgets) removed via CSS selectors before its main-content pass, and a fallback to
  trafilatura when the fast path returns almost nothing (F1 0.950, ~440 pages/s per core; more permissive than
  trafilatura on non-article crawl pages).

Charsets are decided once here (``decode_html``): BOM; then strict UTF-8 when the page holds multi-byte UTF-8
(whatever it declares); then the declared charset (HTTP header, then ``<meta>``), each only if the bytes really
decode with it (UTF-16/32 declarations only when the bytes are wide); then strict UTF-8, then uchardet. Legacy labels are mapped to the
superset codecs browsers use (GB2312→GB18030, Shift_JIS→CP932, EUC-KR→CP949 …), so EUC-JP, Shift-JIS and GB18030
pages come out right. Scores and speeds are in docs/evaluation/extraction.md (scripts/eval/extraction.py).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from html import unescape as html_unescape
from urllib.parse import urljoin

EXTRACTORS = ("trafilatura", "resiliparse", "combined")

# WHATWG/legacy label → the Python codec that decodes what browsers decode for it.
_CODEC_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "euc-jp": "euc_jis_2004",
    "x-euc-jp": "euc_jis_2004",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "big5": "big5hkscs",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "iso-8859-8-i": "iso-8859-8",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Python codec names of UTF-16/32 labels: never ASCII-compatible, so a declaration of one needs checking.
_WIDE_CODECS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")

# Boilerplate removed before resiliparse's main-content pass in `combined` mode. The vocabulary follows
# trafilatura's discard lists (xpaths.py: captions, consent, newsletter, timestamps, page header/footer); each
# group was kept only if it raised F1 on the benchmark (leave-one-out in docs/evaluation/extraction.md).
COMBINED_SKIP_SELECTORS = [
    "figcaption",
    '[class*="caption"]',
    "figure",
    "header",
    "footer",
    '[class*="footer"]',
    '[class*="cookie"]',
    '[id*="cookie"]',
    '[class*="consent"]',
    '[class*="newsletter"]',
    '[id*="newsletter"]',
    '[class*="subscribe"]',
    # date widgets; not a bare [class*="date"], which would also hit "update", "candidate", "validate"
    '[class^="date"]',
    '[class*=" date"]',
    '[class*="-date"]',
    '[class*="_date"]',
    '[class*="dateline"]',
    '[class*="published"]',
    '[class*="timestamp"]',
]
# Fast path considered failed (→ trafilatura) when it keeps fewer characters than this while the page has
# at least FALLBACK_PAGE_CHARS of visible text: main-content heuristics sometimes pick a tiny block.
FALLBACK_MIN_CHARS = 200
FALLBACK_PAGE_CHARS = 1000

_DATE_META = (
    "article:published_time",
    "og:published_time",
    "datepublished",
    "date",
    "dc.date",
    "dc.date.issued",
    "pubdate",
    "publishdate",
    "sailthru.date",
    "article:modified_time",
    "og:updated_time",
)


@dataclass
class Page:
    """What one HTML document yields: main text and metadata (all optional)."""

    text: str | None
    title: str | None = None
    url: str | None = None
    date: str | None = None
    lang: str | None = None
    charset: str | None = None
    extractor: str | None = None
    image_alts: dict[str, str] = field(default_factory=dict)

    def meta(self) -> dict[str, str]:
        keys = ("title", "url", "date", "lang", "charset", "extractor")
        return {k: getattr(self, k) for k in keys if getattr(self, k)}


def python_codec(label: str | None) -> str | None:
    """Map a charset label to a Python codec name (superset where browsers use one); None if unknown."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _CODEC_SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode an HTML page; returns (text, codec used). Never raises for bad bytes.

    Declarations are checked against the bytes: a UTF-16/32 label in ``<meta>`` means UTF-8 (WHATWG: the meta
    prescan only finds it in an ASCII-compatible page), an HTTP one counts only when the bytes look like UTF-16/32
    (NUL bytes); bytes that are valid UTF-8 and hold multi-byte sequences are UTF-8 whatever the declaration says
    (a single-byte legacy codec would turn them into mojibake). Pure 7-bit pages keep their declaration, so
    ISO-2022-JP pages decode.
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            return data.decode(enc, errors="replace"), enc
    candidates: list[str] = []
    for label, from_meta in ((declared, False), (_meta_charset(data), True)):
        codec = python_codec(label)
        if codec in _WIDE_CODECS:
            codec = "utf-8" if from_meta else _wide_codec(data, codec)
        if codec and codec not in candidates:
            candidates.append(codec)
    if not data.isascii() and not any(c in _WIDE_CODECS for c in candidates):
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    for codec in candidates + ["utf-8"]:
        try:
            return data.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            continue
    from resiliparse.parse.encoding import detect_encoding

    guess = python_codec(detect_encoding(data)) or "cp1252"
    try:
        return data.decode(guess), guess
    except (UnicodeDecodeError, LookupError):
        pass
    # Nothing decodes cleanly: trust the declaration (a few bad bytes in a real page), else the guess.
    codec = candidates[0] if candidates else guess
    return data.decode(codec, errors="replace"), codec


def _wide_codec(data: bytes, codec: str) -> str | None:
    """The UTF-16/32 byte order an HTTP-declared wide charset really has, or None when the bytes are not wide
    (no NUL bytes: an ASCII-compatible page whose header lies)."""
    head = data[:4096]
    if head.count(0) < max(2, len(head) // 64):  # wide markup puts a NUL beside every ASCII character
        return None
    unit = 4 if codec.startswith("utf-32") else 2
    if codec.endswith(("-le", "-be")):
        return codec
    # ASCII characters put their NULs after the letter in little-endian, before it in big-endian.
    big = sum(1 for i in range(0, len(head) - unit + 1, unit) if head[i] == 0)
    little = sum(1 for i in range(unit - 1, len(head), unit) if head[i] == 0)
    return f"utf-{unit * 8}-{'be' if big > little else 'le'}"


def _meta_charset(data: bytes) -> str | None:
    m = _META_CHARSET.search(data[:4096])
    return m.group(1).decode("ascii", "ignore") if m else None


def extract_page(
    html: str,
    extractor: str = "trafilatura",
    url: str | None = None,
    collect_alts: bool = False,
) -> Page:
    """Main text and metadata of one decoded page with the chosen extractor."""
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    page = _metadata(tree, url, html)
    if collect_alts:
        page.image_alts = _image_alts(tree, page.url or url)
    if extractor == "trafilatura":
        page.text = _trafilatura(html, page.url or url)
        page.extractor = "trafilatura"
    elif extractor == "resiliparse":
        page.text = _resiliparse(tree)
        page.extractor = "resiliparse"
    elif extractor == "combined":
        text = _combined_fast(tree)
        page.extractor = "combined"
        if len(text) < FALLBACK_MIN_CHARS and _visible_chars(tree) >= FALLBACK_PAGE_CHARS:
            slow = _trafilatura(html, page.url or url)
            if slow and len(slow) > len(text):
                text, page.extractor = slow, "combined:trafilatura"
        page.text = text
    else:
        raise ValueError(f"unknown extractor {extractor!r} (known: {', '.join(EXTRACTORS)})")
    if page.text is not None:
        page.text = page.text.strip() or None
    return page


def _trafilatura(html: str, url: str | None) -> str | None:
    import trafilatura

    return trafilatura.extract(html, url=url)


def _resiliparse(tree) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(tree, main_content=True, comments=False, alt_texts=False, list_bullets=False)


def _combined_fast(tree) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(
        tree,
        main_content=True,
        comments=False,
        alt_texts=False,
        list_bullets=False,
        skip_elements=COMBINED_SKIP_SELECTORS,
    )


def _visible_chars(tree) -> int:
    from resiliparse.extract.html2text import extract_plain_text

    return len(extract_plain_text(tree, alt_texts=False, list_bullets=False))


_META_TAG = re.compile(r"<meta\b[^>]*>", re.I)
_LINK_CANONICAL = re.compile(r"<link\b[^>]*\brel\s*=\s*[\"']?canonical[^>]*>", re.I)
_ATTR = re.compile(r"""([a-zA-Z:_-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_HTML_LANG = re.compile(r"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z0-9_-]+)", re.I)
_HEAD_END = re.compile(r"</head\s*>|<body\b", re.I)
_TIME_TAG = re.compile(r"<time\b[^>]*\bdatetime\s*=\s*[\"']([^\"']+)", re.I)


def _attrs(tag: str) -> dict[str, str]:
    return {
        m.group(1).lower(): html_unescape(m.group(2) or m.group(3) or m.group(4) or "")
        for m in _ATTR.finditer(tag)
    }


def _metadata(tree, url: str | None, html: str = "") -> Page:
    """Title, canonical URL, date and language from the page head (regex over the head: ~10x faster than DOM walks)."""
    m = _HEAD_END.search(html, 0, 200_000)
    head = html[: m.start()] if m else html[:200_000]
    metas: dict[str, str] = {}
    for tag in _META_TAG.findall(head):
        a = _attrs(tag)
        key = (a.get("property") or a.get("name") or a.get("itemprop") or "").lower()
        val = (a.get("content") or "").strip()
        if key and val and key not in metas:
            metas[key] = val
    canonical = None
    link = _LINK_CANONICAL.search(head)
    if link:
        canonical = _attrs(link.group(0)).get("href") or None
    date = next((metas[k] for k in _DATE_META if metas.get(k)), None)
    if date is None:
        t = _TIME_TAG.search(html)
        date = t.group(1).strip() if t else None
    title = tree.title.strip() if tree.title else None
    title = title or metas.get("og:title")
    lang = _HTML_LANG.search(html, 0, 20_000)
    page_url = url or canonical or metas.get("og:url")
    return Page(
        text=None,
        title=title or None,
        url=page_url or None,
        date=date or None,
        lang=lang.group(1) if lang else None,
    )


def _image_alts(tree, base: str | None) -> dict[str, str]:
    """Absolute image URL → alt text, to caption images fetched by the same crawl."""
    out: dict[str, str] = {}
    if tree.body is None:
        return out
    for img in tree.body.query_selector_all("img[alt]"):
        alt = (img.getattr("alt") or "").strip()
        src = img.getattr("src") or img.getattr("data-src")
        if not alt or not src or src.startswith("data:"):
            continue
        out.setdefault(urljoin(base or "", src.strip()), alt)
    return out
