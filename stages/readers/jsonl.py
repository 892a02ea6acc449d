"""JSONL (.jsonl/.json/.ndjson, optionally .gz, .zst or .bz2) → rows, one per line.

Large uncompressed files are split into byte ranges read in parallel (a line belongs to the range its first byte
falls in). Compressed files are one stream, decompressed through stages/readers/compression.py: a truncated or
corrupt stream, or a decompression bomb, keeps every line read before the break and records the break in
quarantine. A UTF-8 BOM before the first line is dropped. Blank lines carry no record: they are counted
(``counters["blank_lines"]``) and skipped in bulk; a file with no non-blank line is one ``empty_file`` row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

from refinery.fsio import InputFile
from stages.readers import register_reader
from stages.readers.base import (
    Reader,
    ReadTask,
    RowBuilder,
    strip_compression,
)
from stages.readers.compression import DecompressionError

_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"
# A run of whitespace at the start of a line: the blank lines in it end at its last newline.
_BLANK_RUN = re.compile(rb"[ \t\r\n\x0b\x0c]*")
_NON_BLANK = re.compile(rb"[^ \t\r\n\x0b\x0c]")


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
            ReadTask(
                uri=f.uri, format=self.format, size=f.size, etag=f.etag, start=s, end=min(s + split, f.size)
            )
            for s in range(0, f.size, split)
        ]

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        cap = self.cfg.max_record_bytes
        records = blank = 0
        with self.open_raw(task.uri) as raw:
            stream = self.open_decompressed(raw, task.uri)
            peek = getattr(stream, "peek", None)
            pos = task.start
            end = task.end if task.end is not None else None
            if task.start > 0:
                stream.seek(task.start - 1)
                pos = task.start - 1 + _read_line(stream, cap)[1]
            failed = False
            while end is None or pos < end:
                try:
                    line, consumed, overflow = _read_line(stream, cap)
                    if not line:
                        break
                    offset = pos
                    pos += consumed
                    if offset == 0 and line.startswith(_BOM):
                        line = line[3:]
                    if overflow:
                        records += 1
                        rows.quarantine(
                            offset=offset,
                            reason="record_too_large",
                            raw=line,
                            detail=f"record of {consumed} bytes exceeds max_record_bytes={cap}",
                        )
                    elif self._parse(rows, line, offset):
                        records += 1
                    else:
                        blank += 1
                        if peek is not None:
                            n_lines, n_bytes = _skip_blank_run(stream, None if end is None else end - pos)
                            blank += n_lines
                            pos += n_bytes
                except DecompressionError as e:
                    failed = True
                    rows.quarantine(
                        offset=pos, reason=e.reason, detail=f"{e.detail}; {records} earlier records kept"
                    )
                    break
                if rows.full():
                    yield rows.flush()  # type: ignore[misc]
            if task.start == 0 and not records and not failed and not _records_after(stream, end):
                detail = f"{blank} blank lines, no records" if blank else "file is empty"
                rows.quarantine(offset=0, reason="empty_file", detail=detail)
        if blank:
            self.counters["blank_lines"] = self.counters.get("blank_lines", 0) + blank
        last = rows.flush()
        if last is not None:
            yield last

    def _parse(self, rows: RowBuilder, line: bytes, offset: int) -> bool:
        """Turn one line into a row or a quarantine row; False for a blank line (no record)."""
        body = line.strip()
        if not body:
            return False
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            rows.quarantine(
                offset=offset, reason="invalid_utf8", raw=body, detail=f"invalid UTF-8 at byte {e.start}"
            )
            return True
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            rows.quarantine(offset=offset, reason="malformed_json", raw=body, detail=_json_detail(e))
            return True
        if not isinstance(obj, dict):
            rows.quarantine(
                offset=offset, reason="not_an_object", raw=body, detail=f"top-level {type(obj).__name__}"
            )
            return True
        tf = self.cfg.text_field
        if tf not in obj or obj[tf] is None:
            rows.quarantine(offset=offset, reason="missing_text_field", raw=body, detail=f"no {tf!r} field")
            return True
        text = obj.pop(tf)
        if not isinstance(text, str):
            rows.quarantine(
                offset=offset, reason="text_not_string", raw=body, detail=f"{tf!r} is {type(text).__name__}"
            )
            return True
        doc_id = _doc_id(obj, self.cfg.id_field, body)
        rows.add(offset=offset, text=text, doc_id=doc_id, meta=_meta(obj))
        return True


def _doc_id(obj: dict[str, Any], id_field: str | None, line: bytes) -> str | None:
    """The id exactly as written: a string's value, a number's literal text, true/false, compact JSON.

    orjson turns integers beyond 64 bits into floats, so anything but a string, a bool or a non-zero int (whose
    str() is its literal) is read again from the line's own text (stdlib json keeping number literals).
    """
    if not id_field or obj.get(id_field) is None:
        return None
    value = obj.pop(id_field)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if type(value) is int and value != 0:  # "-0" is the one int literal str() does not give back
        return str(value)
    try:
        literal = json.loads(line, parse_int=_Literal, parse_float=_Literal)[id_field]
    except (ValueError, RecursionError):  # orjson accepted what the stdlib does not: its value, as JSON
        return orjson.dumps(value).decode()
    return literal if isinstance(literal, _Literal) else _compact(literal)


class _Literal(str):
    """A JSON number kept as the text it was written with."""


def _compact(value: Any) -> str:
    """Compact JSON of a parsed value whose numbers are _Literal (written back as they were)."""
    if isinstance(value, _Literal):
        return str(value)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _compact(v) for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _meta(obj: dict[str, Any]) -> str | None:
    return orjson.dumps(obj).decode() if obj else None


def _json_detail(e: orjson.JSONDecodeError) -> str:
    # The position only: the message of some parsers quotes the input, which may hold PII.
    return f"invalid JSON at column {getattr(e, 'colno', '?')}"


def _read_line(stream: BinaryIO, cap: int) -> tuple[bytes, int, bool]:
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


def _skip_blank_run(stream: BinaryIO, limit: int | None) -> tuple[int, int]:
    """Consume the blank lines that follow in the stream's buffer in bulk (no per-line Python work); stops at
    `limit` bytes (the end of a byte range). Returns (lines, bytes) skipped."""
    lines = skipped = 0
    while limit is None or skipped < limit:
        buf = stream.peek(_CHUNK)  # type: ignore[attr-defined]
        if limit is not None:
            buf = buf[: limit - skipped]
        run = _BLANK_RUN.match(buf).end()  # type: ignore[union-attr]
        cut = buf.rfind(b"\n", 0, run) + 1
        if not cut:
            break
        lines += buf.count(b"\n", 0, cut)
        skipped += cut
        stream.read(cut)
        if cut < len(buf):
            break
    return lines, skipped


def _records_after(stream: BinaryIO, end: int | None) -> bool:
    """Whether anything but whitespace follows the end of a byte range (so a blank first range of a split file
    is not reported as an empty file)."""
    if end is None:
        return False
    while chunk := stream.read(_CHUNK):
        if _NON_BLANK.search(chunk):
            return True
    return False
