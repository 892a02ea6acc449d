"""Plain text files (.txt, optionally compressed) → one document per file."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from stages.readers import register_reader
from stages.readers.base import (
    COMPRESSED_TRUNCATION_ERRORS,
    Reader,
    ReadTask,
    RowBuilder,
    decompress,
    strip_compression,
)


@register_reader
class TextReader(Reader):
    format = "text"
    extensions = (".txt", ".text")

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        cap = self.cfg.max_record_bytes
        _, comp = strip_compression(task.uri)
        with self.open_raw(task.uri) as raw:
            stream = decompress(raw, comp)
            try:
                data = stream.read(cap + 1)
                truncated = None
            except COMPRESSED_TRUNCATION_ERRORS as e:
                data, truncated = b"", type(e).__name__
        if truncated:
            rows.quarantine(offset=0, reason="truncated_compressed_stream", detail=f"{truncated} while decompressing")
        elif not data:
            rows.quarantine(offset=0, reason="empty_file", detail="file is empty")
        elif len(data) > cap:
            rows.quarantine(offset=0, reason="record_too_large", raw=data, detail=f"file exceeds max_record_bytes={cap}")
        else:
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
