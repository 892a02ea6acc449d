"""JSONL (.jsonl/.json/.ndjson, optionally .gz or .zst) → rows, one per line.

Large uncompressed files are split into byte ranges read in parallel (a line belongs to the range its first byte
falls in). Compressed files are one stream; a truncated stream keeps every line read before the break and
records the break in quarantine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa

from refinery.fsio import InputFile
from stages.readers import register_reader
from stages.readers.base import (
    COMPRESSED_TRUNCATION_ERRORS,
    Reader,
    ReadTask,
    RowBuilder,
    decompress,
    strip_compression,
)

_CHUNK = 1 << 20


@register_reader
class JsonlReader(Reader):
    format = "jsonl"
    extensions = (".jsonl", ".ndjson", ".json")

    def plan(self, f: InputFile) -> list[ReadTask]:
        _, comp = strip_compression(f.uri)
        split = self.cfg.split_bytes
        if comp is not None or f.size <= split:
            return super().plan(f)
        return [
            ReadTask(uri=f.uri, format=self.format, size=f.size, etag=f.etag, start=s, end=min(s + split, f.size))
            for s in range(0, f.size, split)
        ]

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        _, comp = strip_compression(task.uri)
        cap = self.cfg.max_record_bytes
        with self.open_raw(task.uri) as raw:
            stream = decompress(raw, comp)
            pos = task.start
            end = task.end if task.end is not None else None
            if task.start > 0:
                stream.seek(task.start - 1)
                pos = task.start - 1 + _read_line(stream, cap)[1]
            seen_any = False
            while end is None or pos < end:
                try:
                    line, consumed, overflow = _read_line(stream, cap)
                except COMPRESSED_TRUNCATION_ERRORS as e:
                    rows.quarantine(
                        offset=pos,
                        reason="truncated_compressed_stream",
                        detail=f"{type(e).__name__} after {pos} decompressed bytes; earlier lines kept",
                    )
                    break
                if not line:
                    break
                seen_any = True
                offset = pos
                pos += consumed
                if overflow:
                    rows.quarantine(
                        offset=offset,
                        reason="record_too_large",
                        raw=line,
                        detail=f"record of {consumed} bytes exceeds max_record_bytes={cap}",
                    )
                else:
                    self._parse(rows, line, offset)
                if rows.full():
                    yield rows.flush()  # type: ignore[misc]
            if not seen_any and task.start == 0:
                rows.quarantine(offset=0, reason="empty_file", detail="file has no records")
        last = rows.flush()
        if last is not None:
            yield last

    def _parse(self, rows: RowBuilder, line: bytes, offset: int) -> None:
        body = line.strip()
        if not body:
            return  # blank lines carry no record
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            rows.quarantine(offset=offset, reason="invalid_utf8", raw=body, detail=f"invalid UTF-8 at byte {e.start}")
            return
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            rows.quarantine(offset=offset, reason="malformed_json", raw=body, detail=_json_detail(e))
            return
        if not isinstance(obj, dict):
            rows.quarantine(offset=offset, reason="not_an_object", raw=body, detail=f"top-level {type(obj).__name__}")
            return
        tf = self.cfg.text_field
        if tf not in obj or obj[tf] is None:
            rows.quarantine(offset=offset, reason="missing_text_field", raw=body, detail=f"no {tf!r} field")
            return
        text = obj.pop(tf)
        if not isinstance(text, str):
            rows.quarantine(
                offset=offset, reason="text_not_string", raw=body, detail=f"{tf!r} is {type(text).__name__}"
            )
            return
        doc_id = _doc_id(obj, self.cfg.id_field)
        rows.add(offset=offset, text=text, doc_id=doc_id, meta=_meta(obj))


def _doc_id(obj: dict[str, Any], id_field: str | None) -> str | None:
    if not id_field or obj.get(id_field) is None:
        return None
    return str(obj.pop(id_field))


def _meta(obj: dict[str, Any]) -> str | None:
    return orjson.dumps(obj).decode() if obj else None


def _json_detail(e: orjson.JSONDecodeError) -> str:
    # The position only: the message of some parsers quotes the input, which may hold PII.
    return f"invalid JSON at column {getattr(e, 'colno', '?')}"


def _read_line(stream, cap: int) -> tuple[bytes, int, bool]:
    """Read one line but never hold more than `cap` bytes of it: (head, bytes consumed, overflowed)."""
    line = stream.readline(cap + 1)
    if len(line) <= cap or line.endswith(b"\n"):
        return line, len(line), False
    total = len(line)
    chunk = line
    while not chunk.endswith(b"\n"):
        chunk = stream.readline(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
    return line, total, True
