"""Plain text files (.txt, optionally compressed) → one document per file.

UTF-8, with a UTF-8 BOM dropped; a file starting with a UTF-16 or UTF-32 BOM is decoded as such when it really
decodes (else the UTF-8 rules apply). A file holding only whitespace is ``empty_file``, like an empty one.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

import pyarrow as pa

from stages.readers import register_reader
from stages.readers.base import (
    Reader,
    ReadTask,
    RowBuilder,
)

# UTF-32 first: its little-endian BOM starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@register_reader
class TextReader(Reader):
    format = "text"
    extensions = (".txt", ".text")

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        data = self.read_document(task, rows, blank_is_empty=False)
        if data is not None:
            try:
                text = decode_text(data)
            except UnicodeDecodeError as e:
                rows.quarantine(
                    offset=0, reason="invalid_utf8", raw=data, detail=f"invalid UTF-8 at byte {e.start}"
                )
            else:
                if text.strip():
                    rows.add(offset=0, text=text)
                else:
                    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
                    rows.quarantine(
                        offset=0, reason="empty_file", detail=f"whitespace only: {lines} blank lines"
                    )
        yield rows.flush()  # type: ignore[misc]


def decode_text(data: bytes) -> str:
    """Text of a plain-text file: BOM-declared UTF-16/32 when it decodes, else UTF-8 (BOM dropped)."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec)
            except UnicodeDecodeError:
                break
    return data.decode("utf-8-sig")


@register_reader
class UnsupportedReader(Reader):
    """Files no reader claims under `format: auto` are quarantined, not silently skipped."""

    format = "unsupported"

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        rows.quarantine(offset=0, reason="unsupported_format", detail="no reader for this file extension")
        yield rows.flush()  # type: ignore[misc]
