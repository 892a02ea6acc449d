"""Plain text files (.txt, optionally compressed) → one document per file."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from stages.readers import register_reader
from stages.readers.base import (
    Reader,
    ReadTask,
    RowBuilder,
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
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                rows.quarantine(offset=0, reason="invalid_utf8", raw=data, detail=f"invalid UTF-8 at byte {e.start}")
            else:
                rows.add(offset=0, text=text)
        yield rows.flush()  # type: ignore[misc]


@register_reader
class UnsupportedReader(Reader):
    """Files no reader claims under `format: auto` are quarantined, not silently skipped."""

    format = "unsupported"

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        rows.quarantine(offset=0, reason="unsupported_format", detail="no reader for this file extension")
        yield rows.flush()  # type: ignore[misc]
