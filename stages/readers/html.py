"""HTML files (.html/.htm/.xhtml, optionally .gz/.zst) → one text document per file, main text only.

The page is decoded with charset detection and handed to the extractor named by ``input.extractor``
(stages/readers/extract.py). Title, canonical URL, date, ``<html lang>``, charset and extractor go to ``meta``.
A page with no main text is counted as skipped (``skip:empty_extraction``), not quarantined: it is not a bad
record, it just holds no document.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pyarrow as pa

from stages.readers import register_reader
from stages.readers.base import (
    Reader,
    ReadTask,
    RowBuilder,
)
from stages.readers.extract import decode_html, extract_page


@register_reader
class HtmlReader(Reader):
    format = "html"
    extensions = (".html", ".htm", ".xhtml")

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        data = self.read_document(task, rows, blank_is_empty=True)
        if data is not None:
            add_html_row(rows, data, offset=0, extractor=self.cfg.extractor)
        yield rows.flush()  # type: ignore[misc]


def add_html_row(
    rows: RowBuilder,
    data: bytes,
    *,
    offset: int,
    extractor: str,
    url: str | None = None,
    charset: str | None = None,
    extra_meta: dict | None = None,
    collect_alts: bool = False,
) -> dict[str, str]:
    """Decode + extract one page into `rows`; returns its image URL → alt map (when asked)."""
    html, codec = decode_html(data, charset)
    try:
        page = extract_page(html, extractor, url=url, collect_alts=collect_alts)
    except Exception as e:  # a parser bug on one page must not cost the rest of the file
        rows.quarantine(
            offset=offset,
            reason="html_parse_error",
            raw=data,
            detail=f"{type(e).__name__} in extractor {extractor}",
        )
        return {}
    if not page.text:
        rows.skip(offset=offset, reason="empty_extraction")
        return page.image_alts
    meta = {**page.meta(), "charset": codec, **(extra_meta or {})}
    if url:
        meta["url"] = url
    rows.add(offset=offset, text=page.text, meta=orjson.dumps(meta).decode())
    return page.image_alts
