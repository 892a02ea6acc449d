"""Zip archives (.zip) → the rows of their members, each read by the reader of its own extension.

A member's rows carry the fsspec chained URI ``zip://<member>::<archive uri>`` as their source, so
``fsspec.open("zip://a/b.jsonl::s3://bucket/x.zip")`` opens it. The archive is opened once per read task through
the reader's storage options (zipfile needs a seekable file; local and fsspec files are), and each member's stored
bytes are inflated by stages/readers/compression.py, never by zipfile (whose bz2 path is not bounded per call):

- members whose header declares more than ``input.max_compression_ratio`` are ``decompression_bomb`` and members
  read as one document (text, HTML, image, audio) declaring more than ``input.max_record_bytes`` are
  ``record_too_large``, both without being inflated. Headers can lie, so the inflation is bounded too: a member
  never inflates past its declared size (past it: ``decompression_bomb``), and short or CRC-failing members are
  ``corrupt_compressed_stream``. Record-stream members (JSONL, WARC, Parquet) keep their per-record caps;
- Parquet members are read seekable: stored ones in place, compressed ones spooled to a temporary file;
- directories, ``__MACOSX/`` and hidden members are skipped; nested archives and members no reader claims are
  ``unsupported_format``; encrypted ones ``encrypted_member``; methods other than stored, deflate, bzip2 and zstd
  ``unsupported_compression``; members overlapping another's data ``decompression_bomb``; an archive zipfile
  cannot open is ``unreadable_archive`` (at read time: planning never opens it).

One read task per archive (planning runs on the driver and never opens archives).
"""

from __future__ import annotations

import io
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import pyarrow as pa

from refinery.fsio import InputFile, is_fatal, is_transient
from stages.readers import reader_class_for, register_reader
from stages.readers.base import (
    BATCH_BYTES,
    READ_SCHEMA,
    Reader,
    ReadTask,
    RowBuilder,
    extension_of,
    member_uri,
    split_member,
)
from stages.readers.compression import DecompressionError, bomb_detail, open_stream, ratio_exceeded

# Extensions of archives we do not open inside an archive.
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tgz", ".7z", ".rar", ".jar", ".whl", ".xz", ".lz4")
# Formats read as one record per file: a member of these is capped by its declared size.
ONE_RECORD_FORMATS = ("text", "html", "image", "audio")
# zip compression method → compression.py codec (None: stored).
_METHODS: dict[int, str | None] = {
    zipfile.ZIP_STORED: None,
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bz2",
    93: "zstd",
}
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, …, file name length, extra field length
_SPOOL_IN_MEMORY = 8 << 20


def skipped_member(name: str) -> bool:
    """Directory entries, macOS resource forks and hidden files are not documents."""
    parts = [p for p in name.split("/") if p]
    return name.endswith("/") or not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


class _RangeFile(io.RawIOBase):
    """A seekable window [start, start + length) of a shared seekable file (one zip member's stored bytes)."""

    def __init__(self, fh: BinaryIO, start: int, length: int):
        super().__init__()
        self._fh, self._start, self._len, self._pos = fh, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._len}[whence]
        self._pos = min(max(0, base + offset), self._len)
        return self._pos

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._len - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


class ZipSource:
    """An open zip archive whose members readers open through `Reader.open_raw` (their URIs are member URIs)."""

    def __init__(self, uri: str, fh: BinaryIO, zf: zipfile.ZipFile, max_ratio: float):
        self.uri = uri
        self._fh = fh
        self._infos = {i.filename: i for i in zf.infolist()}
        self._max_ratio = max_ratio

    def has(self, uri: str) -> bool:
        parts = split_member(uri)
        return parts is not None and parts[1] == self.uri and parts[0] in self._infos

    def info(self, uri: str) -> zipfile.ZipInfo:
        parts = split_member(uri)
        if parts is None or parts[1] != self.uri or parts[0] not in self._infos:
            raise FileNotFoundError(f"no such member in {self.uri}")
        return self._infos[parts[0]]

    def stored(self, info: zipfile.ZipInfo) -> _RangeFile:
        """The member's bytes as stored (after its local header, whose name/extra lengths may differ from the
        central directory's)."""
        self._fh.seek(info.header_offset)
        head = self._fh.read(_LOCAL_HEADER.size)
        if len(head) < _LOCAL_HEADER.size:
            raise zipfile.BadZipFile("local header cut off")
        sig, name_len, extra_len = _LOCAL_HEADER.unpack(head)
        if sig != b"PK\x03\x04":
            raise zipfile.BadZipFile("bad local header signature")
        return _RangeFile(
            self._fh, info.header_offset + _LOCAL_HEADER.size + name_len + extra_len, info.compress_size
        )

    def open_member(self, uri: str, seekable: bool = False) -> BinaryIO:
        """The member's bytes, inflated with the caps: never past its declared size, CRC-32 checked at the end."""
        info = self.info(uri)
        codec = _METHODS[info.compress_type]
        raw = self.stored(info)
        if seekable and codec is None:
            return io.BufferedReader(raw)  # type: ignore[return-value]
        stream = open_stream(
            raw, codec, max_ratio=self._max_ratio, declared_size=info.file_size, expected_crc=info.CRC
        )
        if not seekable:
            return stream
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
        with stream:
            shutil.copyfileobj(stream, spool, 1 << 20)
        spool.seek(0)
        return spool  # type: ignore[return-value]


@register_reader
class ZipReader(Reader):
    format = "zip"
    extensions = (".zip",)

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        out = _Batches(self.cfg.batch_rows)
        with self.open_raw(task.uri) as fh:
            try:
                zf = zipfile.ZipFile(fh)
                infos = zf.infolist()
            except Exception as e:
                if is_transient(e) or is_fatal(e):
                    raise
                rows.quarantine(
                    offset=0,
                    reason="unreadable_archive",
                    detail=f"{type(e).__name__} reading the zip directory",
                )
                yield rows.flush()  # type: ignore[misc]
                return
            source = ZipSource(task.uri, fh, zf, self.cfg.max_compression_ratio)
            overlapping = _overlapping(infos)
            members = [i for i in infos if not skipped_member(i.filename)]
            files = [InputFile(uri=member_uri(i.filename, task.uri), size=i.file_size) for i in members]
            readers: dict[str, Reader] = {}
            sidecars: set[str] = set()
            for cls in _reader_classes():
                if self.cfg.format in ("auto", cls.format):
                    sidecars |= self._reader(readers, cls.format, source).sidecars(files)
            for info, f in zip(members, files, strict=True):
                if f.uri in sidecars:
                    continue
                if info.filename in overlapping:
                    detail = "member data overlaps another member's (the construction of zip bombs)"
                    rows.quarantine(offset=0, reason="decompression_bomb", detail=detail, uri=f.uri)
                    fmt = None
                else:
                    fmt = self._admit(rows, info, f)
                if fmt is not None:
                    yield from out.add_all(
                        self._read_member(rows, self._reader(readers, fmt, source), info, f)
                    )
                yield from out.add(rows.flush())
            if not members:
                rows.quarantine(
                    offset=0, reason="empty_archive", detail=f"no readable members among {len(infos)} entries"
                )
            for r in readers.values():
                for k, v in r.counters.items():
                    self.counters[k] = self.counters.get(k, 0) + v
        yield from out.add(rows.flush())
        yield from out.drain()

    def _reader(self, readers: dict[str, Reader], fmt: str, source: ZipSource) -> Reader:
        if fmt not in readers:
            r = _reader_classes_by_format()[fmt](self.cfg, self.run_id)
            r.archive = source
            readers[fmt] = r
        return readers[fmt]

    def _admit(self, rows: RowBuilder, info: zipfile.ZipInfo, f: InputFile) -> str | None:
        """The format to read a member with, or None after quarantining it (from its header only)."""
        cap, max_ratio = self.cfg.max_record_bytes, self.cfg.max_compression_ratio
        ext = extension_of(f.uri)
        name_lower = info.filename.lower()
        cls = reader_class_for(f, self.cfg) if not name_lower.endswith(ARCHIVE_EXTENSIONS) else None
        if cls is None or cls.format in ("zip", "unsupported"):
            nested = name_lower.endswith(ARCHIVE_EXTENSIONS)
            detail = (
                f"nested {ext or 'archive'} archive is not read"
                if nested
                else "no reader for this member's extension"
            )
            rows.quarantine(offset=0, reason="unsupported_format", detail=detail, uri=f.uri)
            return None
        if info.flag_bits & 0x1:
            rows.quarantine(offset=0, reason="encrypted_member", detail="member is encrypted", uri=f.uri)
            return None
        if info.compress_type not in _METHODS:
            rows.quarantine(
                offset=0,
                reason="unsupported_compression",
                detail=f"zip compression method {info.compress_type}",
                uri=f.uri,
            )
            return None
        if ratio_exceeded(info.file_size, info.compress_size, max_ratio):
            detail = bomb_detail(info.file_size, info.compress_size, max_ratio, "declared: ")
            rows.quarantine(offset=0, reason="decompression_bomb", detail=detail, uri=f.uri)
            return None
        if cls.format in ONE_RECORD_FORMATS and info.file_size > cap:
            detail = f"member declares {info.file_size} bytes, over max_record_bytes={cap}"
            rows.quarantine(offset=0, reason="record_too_large", detail=detail, uri=f.uri)
            return None
        return cls.format

    def _read_member(
        self, rows: RowBuilder, reader: Reader, info: zipfile.ZipInfo, f: InputFile
    ) -> Iterator[pa.Table]:
        task = ReadTask(uri=f.uri, format=reader.format, size=info.file_size)
        emitted = False  # once rows came out, the error row sits at the member's end so ids stay distinct
        try:
            for table in reader.read(task):
                emitted = True
                yield table
        except DecompressionError as e:  # a reader that let one through (e.g. while opening the member)
            rows.quarantine(
                offset=info.file_size if emitted else 0, reason=e.reason, detail=e.detail, uri=f.uri
            )
        except Exception as e:
            if is_transient(e) or is_fatal(e):
                raise
            detail = f"{type(e).__name__} reading this member"
            rows.quarantine(
                offset=info.file_size if emitted else 0, reason="unreadable_archive", detail=detail, uri=f.uri
            )


def _overlapping(infos: list[zipfile.ZipInfo]) -> set[str]:
    """Members whose local header lies inside an earlier member's stored bytes: overlapping entries let a small
    archive hold many members that all inflate the same data (Fifield's non-recursive zip bomb)."""
    out: set[str] = set()
    end = -1
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end:
            out.add(info.filename)
        end = max(end, info.header_offset + _LOCAL_HEADER.size + info.compress_size)
    return out


class _Batches:
    """Merges the small tables of many small members into blocks of about batch_rows rows (or BATCH_BYTES)."""

    def __init__(self, batch_rows: int):
        self._rows = batch_rows
        self._pending: list[pa.Table] = []
        self._n = 0
        self._bytes = 0

    def add(self, table: pa.Table | None) -> Iterator[pa.Table]:
        if table is not None and table.num_rows:
            self._pending.append(table)
            self._n += table.num_rows
            self._bytes += table.nbytes
            if self._n >= self._rows or self._bytes >= BATCH_BYTES:
                yield from self.drain()

    def add_all(self, tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
        for t in tables:
            yield from self.add(t)

    def drain(self) -> Iterator[pa.Table]:
        if self._pending:
            table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending, self._n, self._bytes = [], 0, 0
            yield table.cast(READ_SCHEMA) if table.schema != READ_SCHEMA else table


def _reader_classes() -> list[type[Reader]]:
    return [c for c in _reader_classes_by_format().values() if c.format not in ("zip", "unsupported")]


def _reader_classes_by_format() -> dict[str, type[Reader]]:
    from stages.readers import load_readers

    return load_readers()
