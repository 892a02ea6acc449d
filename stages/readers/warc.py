"""WARC / WET / WAT / ARC crawl archives → text rows (and image rows), one record at a time.

Streaming: FastWARC iterates the gzip members of a ``.warc.gz`` one by one (ARC files go through warcio), so a
file is never loaded whole; a record's payload is read up to ``input.max_record_bytes``.

What each record becomes (every record is accounted for in report.json):

- ``response`` with an HTML payload → the extractor (``input.extractor``) → a ``text`` row. HTTP headers are
  parsed tolerantly (LF-only header lines, as in ClueWeb09, are fine): status, content-type, charset,
  content-encoding. Non-2xx responses are skipped (``skip:http_<status>``).
- ``response``/``resource`` with an ``image/*`` payload → an ``image`` row (Pillow: size, mime, sha256, dHash);
  its caption is the ``alt`` text of an ``<img>`` pointing at that URL in a page read earlier from the same
  file (pages normally precede their images in a crawl; the map holds at most ALT_MAP_MAX entries).
- ``conversion`` (WET plain text) → a ``text`` row as it is.
- ``warcinfo``, ``request``, ``metadata`` (incl. all WAT records), ``revisit``, ``continuation`` and payloads of
  other types → skipped and counted as ``skip:<warc type>`` / ``skip:unsupported_payload``.
- Undecodable images, oversized records (``record_too_large``, also for an HTTP body whose
  ``Content-Encoding`` inflates past ``input.max_record_bytes``), bodies inflating past the ratio cap
  (``decompression_bomb``), records cut off by the end of the file (``truncated_record``) and archives the parser
  gives up on (``broken_archive``, earlier records kept) → quarantine with a reason.

Bodies are decoded through stages/readers/compression.py (bounded). ``.warc.gz`` members are inflated by
FastWARC itself (it streams: a record is read up to the cap and the rest skipped without being held);
``.warc.zst`` and ``.warc.bz2`` go through compression.py first (their offsets are then decompressed offsets).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pyarrow as pa

from stages.readers import register_reader
from stages.readers.base import (
    COMPRESSED_TRUNCATION_ERRORS,
    Reader,
    ReadTask,
    RowBuilder,
    extension_of,
    strip_compression,
)
from stages.readers.compression import DEFAULT_MAX_RATIO, DecompressionError, decode_content
from stages.readers.extract import python_codec
from stages.readers.html import add_html_row
from stages.readers.image import add_image_row

ALT_MAP_MAX = 100_000
_HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+xhtml")
_SKIPPED_TYPES = ("warcinfo", "request", "metadata", "revisit", "continuation")


@dataclass
class Record:
    """One archive record, independent of the library that parsed it."""

    offset: int  # byte offset of the record in the (compressed) file
    type: str
    url: str | None
    date: str | None
    record_id: str | None
    content_type: str  # of the WARC block
    body: bytes  # the block, capped at max_record_bytes
    length: int  # the block's declared length
    overflow: bool
    truncated: bool = False  # the file ended inside this record


@dataclass
class Http:
    status: int | None
    content_type: str
    charset: str | None
    payload: bytes


@register_reader
class WarcReader(Reader):
    format = "warc"
    extensions = (".warc", ".wet", ".wat", ".arc")

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        alts: dict[str, str] = {}
        _, comp = strip_compression(task.uri)
        is_arc = extension_of(task.uri) == ".arc"
        last = 0
        seen = 0
        with self.open_raw(task.uri) as raw:
            if comp not in (None, "gzip"):  # the WARC libraries inflate gzip themselves, nothing else
                raw = self.open_decompressed(raw, task.uri)
            records = (
                _iter_warcio(raw, self.cfg.max_record_bytes)
                if is_arc
                else _iter_fastwarc(raw, self.cfg.max_record_bytes)
            )
            try:
                for rec in records:
                    seen += 1
                    last = rec.offset
                    self._record(rows, task, rec, alts)
                    if rows.full():
                        yield rows.flush()  # type: ignore[misc]
            except DecompressionError as e:
                rows.quarantine(
                    offset=last + 1, reason=e.reason, detail=f"{e.detail}; {seen} earlier records kept"
                )
            except (*COMPRESSED_TRUNCATION_ERRORS, ValueError, OSError) as e:
                rows.quarantine(
                    offset=last + 1,
                    reason="broken_archive",
                    detail=f"{type(e).__name__} after record at byte {last}; {seen} earlier records kept",
                )
        if seen == 0 and not len(rows):
            rows.quarantine(offset=0, reason="empty_archive", detail="no WARC/ARC records found")
        out = rows.flush()
        if out is not None:
            yield out

    def _record(self, rows: RowBuilder, task: ReadTask, rec: Record, alts: dict[str, str]) -> None:
        cap = self.cfg.max_record_bytes
        if rec.type in _SKIPPED_TYPES:
            rows.skip(offset=rec.offset, reason=rec.type)
            return
        if rec.truncated or rec.overflow:
            reason, detail = (
                ("truncated_record", f"{rec.type} record declares {rec.length} bytes, the file ends after {len(rec.body)}")
                if rec.truncated
                else ("record_too_large", f"{rec.type} record of {rec.length} bytes exceeds max_record_bytes={cap}")
            )  # fmt: skip
            rows.quarantine(offset=rec.offset, reason=reason, raw=rec.body, detail=detail)
            return
        meta = {
            k: v
            for k, v in (("url", rec.url), ("warc_date", rec.date), ("warc_record_id", rec.record_id))
            if v
        }
        if rec.type == "conversion":
            text = rec.body.decode("utf-8", errors="replace").strip()
            if not text:
                rows.skip(offset=rec.offset, reason="empty_extraction")
                return
            rows.add(
                offset=rec.offset, text=text, meta=orjson.dumps({**meta, "warc_type": "conversion"}).decode()
            )
            return
        if rec.type == "response" and "application/http" in rec.content_type.lower():
            try:
                http = parse_http(rec.body, max_output=cap, max_ratio=self.cfg.max_compression_ratio)
            except DecompressionError as e:
                rows.quarantine(
                    offset=rec.offset, reason=e.reason, raw=rec.body, detail=f"HTTP body: {e.detail}"
                )
                return
        elif rec.type in ("response", "resource"):
            http = Http(status=None, content_type=rec.content_type, charset=None, payload=rec.body)
        else:
            rows.skip(offset=rec.offset, reason=rec.type or "unknown_record_type")
            return
        if http is None:
            rows.quarantine(
                offset=rec.offset,
                reason="malformed_http",
                raw=rec.body,
                detail="no HTTP status line/header block",
            )
            return
        if http.status is not None and not 200 <= http.status < 300:
            rows.skip(offset=rec.offset, reason=f"http_{http.status}")
            return
        mime = http.content_type.split(";")[0].strip().lower()
        if http.status is not None:
            meta["http_status"] = http.status
        if mime:
            meta["content_type"] = mime
        if mime.startswith("image/"):
            add_image_row(
                rows,
                http.payload,
                offset=rec.offset,
                cfg=self.cfg,
                media_uri=f"{task.uri}#offset={rec.offset}",
                caption=alts.get(rec.url or ""),
                caption_source="alt",
                meta=meta,
            )
            return
        if mime in _HTML_TYPES or (not mime and _looks_like_html(http.payload)):
            found = add_html_row(
                rows,
                http.payload,
                offset=rec.offset,
                extractor=self.cfg.extractor,
                url=rec.url,
                charset=http.charset,
                extra_meta=meta,
                collect_alts=True,
            )
            for k, v in found.items():
                if len(alts) >= ALT_MAP_MAX:
                    break
                alts.setdefault(k, v)
            return
        rows.skip(offset=rec.offset, reason="unsupported_payload")


def parse_http(
    block: bytes, *, max_output: int = 8 << 20, max_ratio: float | None = DEFAULT_MAX_RATIO
) -> Http | None:
    """Split an HTTP response block into status, headers and (decoded) payload; tolerant of LF-only lines.

    The body is decoded by its Content-Encoding with the caps of compression.decode_content: raises
    OutputTooLarge (decoded body over `max_output`) or DecompressionBomb.
    """
    if not block.startswith(b"HTTP/"):
        return None
    ends = [i for i in (block.find(b"\r\n\r\n"), block.find(b"\n\n")) if i >= 0]
    if not ends:
        head, payload = block, b""
    else:
        cut = min(ends)
        sep = 4 if block[cut : cut + 4] == b"\r\n\r\n" else 2
        head, payload = block[:cut], block[cut + sep :]
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(None, 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, sep_, v = line.partition(":")
        if sep_:
            headers.setdefault(k.strip().lower(), v.strip())
    ctype = headers.get("content-type", "")
    charset = None
    for param in ctype.split(";")[1:]:
        k, _, v = param.partition("=")
        if k.strip().lower() == "charset":
            charset = v.strip().strip("\"'") or None
    if charset is not None and python_codec(charset) is None:
        charset = None
    if "chunked" in headers.get("transfer-encoding", "").lower():
        payload = _dechunk(payload)
    payload = decode_content(
        payload, headers.get("content-encoding", ""), max_output=max_output, max_ratio=max_ratio
    )
    return Http(status=status, content_type=ctype, charset=charset, payload=payload)


def _dechunk(payload: bytes) -> bytes:
    out = io.BytesIO()
    pos = 0
    try:
        while True:
            nl = payload.index(b"\n", pos)
            size = int(payload[pos:nl].split(b";")[0].strip(), 16)
            if size == 0:
                return out.getvalue()
            start = nl + 1
            out.write(payload[start : start + size])
            pos = start + size
            while payload[pos : pos + 1] in (b"\r", b"\n"):
                pos += 1
    except (ValueError, IndexError):
        return payload  # not really chunked (already de-chunked by the crawler)


def _looks_like_html(payload: bytes) -> bool:
    head = payload[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<body" in head


def _iter_fastwarc(raw, cap: int) -> Iterator[Record]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for r in ArchiveIterator(raw, record_types=WarcRecordType.any_type, parse_http=False):
        h = r.headers
        body = r.reader.read(cap + 1)
        length = r.content_length
        yield Record(
            truncated=len(body) < min(length, cap + 1),
            offset=r.stream_pos,
            type=(h.get("WARC-Type") or "").strip().lower(),
            url=(h.get("WARC-Target-URI") or "").strip() or None,
            date=h.get("WARC-Date"),
            record_id=h.get("WARC-Record-ID"),
            content_type=h.get("Content-Type") or "",
            body=body[:cap] if len(body) > cap else body,
            length=max(length, len(body)),
            overflow=len(body) > cap,
        )


def _iter_warcio(raw, cap: int) -> Iterator[Record]:
    from warcio.archiveiterator import ArchiveIterator

    it = ArchiveIterator(raw, arc2warc=True)
    for r in it:
        h = r.rec_headers
        body = r.raw_stream.read(cap + 1)
        if r.http_headers is not None:  # warcio consumed the HTTP head: put it back for parse_http
            body = r.http_headers.to_bytes() + body
        yield Record(
            offset=it.get_record_offset(),
            type=(r.rec_type or "").lower(),
            url=h.get_header("WARC-Target-URI"),
            date=h.get_header("WARC-Date"),
            record_id=None,  # ARC records have none; warcio's arc2warc invents a random one per read
            content_type=(h.get_header("Content-Type") or ""),
            body=body[:cap],
            length=int(h.get_header("Content-Length") or len(body)),
            overflow=len(body) > cap,
        )
