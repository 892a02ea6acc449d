"""Reader contract: one input file (or byte range of one) → unified-schema Arrow batches.

Readers never raise on bad records: a record that cannot become a row is emitted as a *quarantine row* (``_drop``
= ``quarantine:<reason>``, the capped raw bytes, and a PII-free detail), so the job keeps going and the record is
still counted. Readers stream: they hold at most one batch of rows in memory.
"""

from __future__ import annotations

import gzip
import json
import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import pyarrow as pa

from refinery.accounting import SKIP_PREFIX
from refinery.config import InputConfig
from refinery.fsio import InputFile
from refinery.location import Location
from refinery.schema import (
    BASE_FIELDS,
    DETAIL_COL,
    DROP_COL,
    QUARANTINE_PREFIX,
    RAW_COL,
    stable_id,
)
from stages.readers.compression import FILE_CODECS, DecompressionError, open_stream

if TYPE_CHECKING:
    from stages.readers.archive import ZipSource

READ_SCHEMA = pa.schema(
    BASE_FIELDS
    + [
        pa.field(DROP_COL, pa.string()),
        pa.field(RAW_COL, pa.large_binary()),
        pa.field(DETAIL_COL, pa.string()),
    ]
)

# What the WARC libraries (FastWARC, warcio) raise for a gzip stream they cannot finish.
COMPRESSED_TRUNCATION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
# Members of zip archives are addressed by fsspec's chained form, zip://<member>::<archive uri>.
MEMBER_PREFIX = "zip://"


@dataclass(frozen=True)
class ReadTask:
    """A unit of read work: a whole file, or the byte range [start, end) of an uncompressed one."""

    uri: str
    format: str
    size: int
    etag: str | None = None
    start: int = 0
    end: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> ReadTask:
        return cls(**json.loads(s))


# A reader's batch is also emitted once its text, raw and media bytes reach this, so batch_rows rows of records
# near max_record_bytes never pile up in one worker.
BATCH_BYTES = 64 << 20


class RowBuilder:
    """Accumulates rows column-wise and emits a unified-schema table every `batch_rows` rows (or BATCH_BYTES)."""

    def __init__(self, task: ReadTask, cfg: InputConfig, run_id: str, fmt: str | None = None):
        self.task = task
        self.cfg = cfg
        self.run_id = run_id
        self.fmt = fmt or task.format
        self._reset()

    def _reset(self) -> None:
        self.cols: dict[str, list[Any]] = {f.name: [] for f in READ_SCHEMA}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.cols["id"])

    def _source(self, offset: int, uri: str | None = None) -> dict[str, Any]:
        return {"uri": uri or self.task.uri, "format": self.fmt, "offset": offset, "etag": self.task.etag}

    def add(
        self,
        *,
        offset: int,
        text: str | None,
        doc_id: str | None = None,
        modality: str = "text",
        media: dict[str, Any] | None = None,
        meta: str | None = None,
        uri: str | None = None,
    ) -> None:
        c = self.cols
        self.nbytes += len(text or "") + len((media or {}).get("bytes") or b"")
        c["id"].append(doc_id if doc_id is not None else stable_id(uri or self.task.uri, offset))
        c["text"].append(text)
        c["modality"].append(modality)
        c["media"].append(media)
        c["source"].append(self._source(offset, uri))
        c["meta"].append(meta)
        c["run_id"].append(self.run_id)
        c[DROP_COL].append(None)
        c[RAW_COL].append(None)
        c[DETAIL_COL].append(None)

    def quarantine(
        self,
        *,
        offset: int,
        reason: str,
        raw: bytes | None = None,
        detail: str | None = None,
        uri: str | None = None,
    ) -> None:
        c = self.cols
        cap = self.cfg.quarantine_raw_bytes
        c["id"].append(stable_id(uri or self.task.uri, offset))
        c["text"].append(None)
        c["modality"].append(None)
        c["media"].append(None)
        c["source"].append(self._source(offset, uri))
        c["meta"].append(None)
        c["run_id"].append(self.run_id)
        c[DROP_COL].append(QUARANTINE_PREFIX + reason)
        c[RAW_COL].append(raw[:cap] if raw is not None and cap > 0 else None)
        self.nbytes += min(len(raw), cap) if raw is not None else 0
        c[DETAIL_COL].append(detail)

    def skip(self, *, offset: int, reason: str, uri: str | None = None) -> None:
        """Count an input record that is deliberately not a document (e.g. a WARC request record).

        It is carried as a dead row with ``_drop = "skip:<reason>"``: report.json counts it under ``skipped`` and
        the drop log lists it (stage ``skip``), so rows_read = kept + dropped + quarantined + skipped.
        """
        self.quarantine(offset=offset, reason=reason, uri=uri)
        self.cols[DROP_COL][-1] = SKIP_PREFIX + reason

    def full(self) -> bool:
        return len(self) >= self.cfg.batch_rows or self.nbytes >= BATCH_BYTES

    def flush(self) -> pa.Table | None:
        if not len(self):
            return None
        table = pa.Table.from_pydict(self.cols, schema=READ_SCHEMA)
        self._reset()
        return table


class Reader:
    format: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()
    # Whether read() needs a seekable file (Parquet); zip members are then given one.
    needs_seekable: ClassVar[bool] = False

    def __init__(self, cfg: InputConfig, run_id: str = ""):
        self.cfg = cfg
        self.run_id = run_id
        self.counters: dict[str, int] = {}
        # The open zip archive whose members this reader is reading (set by the zip reader).
        self.archive: ZipSource | None = None

    def plan(self, f: InputFile) -> list[ReadTask]:
        return [ReadTask(uri=f.uri, format=self.format, size=f.size, etag=f.etag)]

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        raise NotImplementedError

    def sidecars(self, files: list[InputFile]) -> set[str]:
        """Files this reader consumes as companions of others (captions, transcripts), not as documents."""
        return set()

    def read_document(self, task: ReadTask, rows: RowBuilder, blank_is_empty: bool = False) -> bytes | None:
        """Read a one-document-per-file input whole (up to max_record_bytes, decompressed with the ratio cap);
        quarantine it and return None when it is truncated, a bomb, empty or too large."""
        cap = self.cfg.max_record_bytes
        with self.open_raw(task.uri) as raw:
            stream = self.open_decompressed(raw, task.uri)
            try:
                data = stream.read(cap + 1)
            except DecompressionError as e:
                rows.quarantine(offset=0, reason=e.reason, detail=e.detail)
                return None
        if not data:
            rows.quarantine(offset=0, reason="empty_file", detail="file is empty")
            return None
        if blank_is_empty and len(data) <= cap and not data.strip():
            rows.quarantine(
                offset=0, reason="empty_file", detail=f"whitespace only: {blank_line_count(data)} blank lines"
            )
            return None
        if len(data) > cap:
            rows.quarantine(
                offset=0, reason="record_too_large", raw=data, detail=f"file exceeds max_record_bytes={cap}"
            )
            return None
        return data

    def open_raw(self, uri: str) -> BinaryIO:
        """The bytes of `uri` as stored (a zip member: inflated from its archive, bounded; its own .gz stays)."""
        if split_member(uri) is not None:
            return self._archive_for(uri).open_member(uri, seekable=self.needs_seekable)
        return self.location(uri).open_input()

    def location(self, uri: str) -> Location:
        return Location(uri, self.cfg.storage_options)

    def open_decompressed(self, raw: BinaryIO, uri: str) -> BinaryIO:
        """`raw` decompressed by the file name's suffix (.gz/.zst/.bz2), with the ratio cap (compression.py)."""
        _, codec = strip_compression(uri)
        return open_stream(raw, codec, max_ratio=self.cfg.max_compression_ratio)

    def read_sidecar(self, uri: str) -> bytes | None:
        """A companion file (caption, transcript list) up to max_record_bytes, or None when there is none."""
        limit = self.cfg.max_record_bytes
        if split_member(uri) is not None:
            archive = self._archive_for(uri)
            if not archive.has(uri):
                return None
            try:
                with archive.open_member(uri) as f:
                    return f.read(limit)
            except DecompressionError:
                return None
        loc = self.location(uri)
        try:
            if not loc.exists():
                return None
            with loc.open("rb") as f:
                return f.read(limit)
        except OSError:
            return None

    def _archive_for(self, uri: str) -> ZipSource:
        """The open archive holding member `uri`: the zip reader's, or (a member task read on its own) the archive
        opened here once and kept for this reader's later member and sidecar reads."""
        parts = split_member(uri)
        assert parts is not None
        if self.archive is None or parts[1] != self.archive.uri:
            import zipfile

            from stages.readers.archive import ZipSource

            fh = self.location(parts[1]).open_input()
            try:
                self.archive = ZipSource(parts[1], fh, zipfile.ZipFile(fh), self.cfg.max_compression_ratio)
            except Exception:
                fh.close()
                raise
        return self.archive


def split_member(uri: str) -> tuple[str, str] | None:
    """("zip://dir/a.jsonl::s3://b/x.zip") -> ("dir/a.jsonl", "s3://b/x.zip"); None for other URIs."""
    if not uri.startswith(MEMBER_PREFIX) or "::" not in uri:
        return None
    member, _, archive = uri[len(MEMBER_PREFIX) :].partition("::")
    return member, archive


def member_uri(member: str, archive: str) -> str:
    return f"{MEMBER_PREFIX}{member}::{archive}"


def logical_name(uri: str) -> str:
    """The name whose extension says what a URI holds: the member name for a zip member, else the URI."""
    parts = split_member(uri)
    return parts[0] if parts is not None else uri


def stem_and_ext(uri: str) -> tuple[str, str]:
    """(key shared by files with the same stem in the same folder or archive, lower-case extension)."""
    parts = split_member(uri)
    if parts is None:
        stem, ext = posixpath.splitext(uri)
        return stem, ext.lower()
    stem, ext = posixpath.splitext(parts[0])
    return member_uri(stem, parts[1]), ext.lower()


def with_extension(uri: str, ext: str) -> str:
    """The same-stem sibling of `uri` with extension `ext` (inside the same archive for a member)."""
    parts = split_member(uri)
    if parts is None:
        return posixpath.splitext(uri)[0] + ext
    return member_uri(posixpath.splitext(parts[0])[0] + ext, parts[1])


def folder_and_name(uri: str) -> tuple[str, str]:
    """(folder key, base name); members of an archive live in folders of that archive."""
    parts = split_member(uri)
    if parts is None:
        return posixpath.dirname(uri), posixpath.basename(uri)
    return member_uri(posixpath.dirname(parts[0]), parts[1]), posixpath.basename(parts[0])


def in_folder(folder: str, name: str) -> str:
    """Inverse of folder_and_name."""
    parts = split_member(folder)
    if parts is None:
        return folder + "/" + name
    return member_uri(posixpath.join(parts[0], name), parts[1])


def strip_compression(uri: str) -> tuple[str, str | None]:
    """("x.jsonl.gz") -> ("x.jsonl", "gzip"); a zip member by its member name:
    ("zip://a.jsonl.gz::s3://b/x.zip") -> ("zip://a.jsonl::s3://b/x.zip", "gzip")."""
    parts = split_member(uri)
    name = parts[0] if parts is not None else uri
    lower = name.lower()
    for ext, comp in FILE_CODECS:
        if lower.endswith(ext):
            base = name[: -len(ext)]
            return (member_uri(base, parts[1]) if parts is not None else base), comp
    return uri, None


def extension_of(uri: str) -> str:
    """Lower-case extension under any compression suffix: ".jsonl" for x.jsonl.gz and zip://x.jsonl.gz::a.zip."""
    base, _ = strip_compression(uri)
    return posixpath.splitext(logical_name(base))[1].lower()


def blank_line_count(data: bytes) -> int:
    """Lines in a whitespace-only blob (a last line without a newline counts)."""
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
