"""The `meta` side of the `pii` stage: which JSON string values to scan, and URLs whose host must survive.

Why: readers keep a record's other fields in the `meta` JSON column (JSONL/Parquet: every field but text and id;
HTML/WARC: title, url, dates, ids), and it is published with the row: an author's e-mail, a phone field, a URL with
``?email=`` or a page title naming a person leak as surely as the text does. The stage detects the selected
values of a whole batch in one pass with the text's detectors (stages/pii/scrub.py); this module only finds the values
and keeps URLs usable: a URL is scanned percent-decoded (``%40`` is an ``@``), and its scheme and host are never
rewritten, because per-domain reporting reads the host of ``meta.url`` (refinery.schema.row_domain).
"""

from __future__ import annotations

import re
from typing import Any

from refinery.schema import URL_HOST_RE
from stages.pii.patterns import Span

# Keys the readers fill with machine data (record ids, dates, codes, sizes): never personal data, and scanning
# them would only cost time and invite false positives (a WARC record id is full of digit groups).
DEFAULT_META_EXCLUDE = (
    "warc_record_id",
    "warc_date",
    "warc_type",
    "date",
    "content_type",
    "charset",
    "extractor",
    "http_status",
    "lang",
    "timestamp",
    "bytes",
    "caption_source",
    "transcript_source",
    "transcript_lang",
)

_HOST = re.compile(
    URL_HOST_RE
)  # the same pattern url_host() runs with RE2, so the kept host is the reported one
_ENCODED = re.compile(r"(?:%[0-9A-Fa-f]{2})+|\+")

Slot = tuple[Any, Any]  # (container, key): where one string value lives in a parsed meta object


def string_slots(box: list[Any], fields: frozenset[str] | None, exclude: frozenset[str]) -> list[Slot]:
    """Every string value of ``box[0]`` (a parsed meta value) at any depth, as (container, key) to write back to.

    Of a top-level object only the keys in ``fields`` (when set) or not in ``exclude`` are scanned, with
    everything below them. Iterative, so a deeply nested record cannot hit the recursion limit.
    """
    top = box[0]
    if not isinstance(top, dict):
        stack: list[Slot] = [(box, 0)]
    else:
        stack = [(top, k) for k in top if (k in fields if fields is not None else k not in exclude)]
    out: list[Slot] = []
    while stack:
        parent, key = stack.pop()
        v = parent[key]
        if isinstance(v, str):
            out.append((parent, key))
        elif isinstance(v, dict):
            stack.extend((v, k) for k in v)
        elif isinstance(v, list):
            stack.extend((v, i) for i in range(len(v)))
    return out


def is_web_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def url_view(url: str) -> tuple[str, list[int], list[int]] | None:
    """The URL percent-decoded (``+`` as a space) for detection, with each decoded character's [start, end) in the
    URL; None when nothing is encoded. A multi-byte sequence maps every character it decodes to the whole run."""
    if "%" not in url and "+" not in url:
        return None
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for m in _ENCODED.finditer(url):
        for j in range(pos, m.start()):
            chars.append(url[j])
            starts.append(j)
            ends.append(j + 1)
        run = m.group()
        decoded = " " if run == "+" else bytes.fromhex(run.replace("%", "")).decode("utf-8", "replace")
        chars.extend(decoded)
        starts.extend([m.start()] * len(decoded))
        ends.extend([m.end()] * len(decoded))
        pos = m.end()
    if not pos:
        return None
    for j in range(pos, len(url)):
        chars.append(url[j])
        starts.append(j)
        ends.append(j + 1)
    return "".join(chars), starts, ends


def url_keep(url: str) -> list[tuple[int, int]]:
    """Ranges of an http(s) URL that scrubbing must leave alone: the scheme, and the host with the ``@`` before it
    (user info itself may be scrubbed) and the delimiter after it (a placeholder glued to the host would be read as
    part of it), exactly as refinery.schema.url_host will read them back."""
    m = _HOST.match(url)
    if not m:
        return []
    h0, h1 = m.span("host")
    h1 += h1 < len(url)
    scheme_end = url.index("://") + 3
    return [(0, scheme_end), (h0 - 1, h1)] if h0 > scheme_end else [(0, h1)]


def url_spans(url: str, spans: list[Span], view: tuple[str, list[int], list[int]] | None) -> list[Span]:
    """Spans found in a URL (or in its decoded view) as sorted, non-overlapping spans of the URL itself, minus the
    ranges url_keep protects."""
    if view is not None:
        _, starts, ends = view
        mapped: list[Span] = []
        for s in spans:  # decoded runs map to whole runs, so two spans can now touch or overlap: merge them
            a, b = starts[s.start], ends[s.end - 1]
            if mapped and a < mapped[-1].end:
                last = mapped.pop()
                a, b = last.start, max(b, last.end)
            mapped.append(Span(a, b, s.type, s.score, s.detector))
        spans = mapped
    for k0, k1 in url_keep(url):
        spans = [
            Span(a, b, s.type, s.score, s.detector)
            for s in spans
            for a, b in ((s.start, min(s.end, k0)), (max(s.start, k1), s.end))
            if a < b
        ]
    return spans
