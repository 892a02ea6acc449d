"""Reader contract: one input file (or byte range of one) → unified-schema Arrow batches.

Readers never raise on bad records: a record that cannot become a row is emitted as a *quarantine row* (``_drop``
= ``quarantine:<reason>``, the capped raw bytes, and a PII-free detail), so the job keeps going and the record is
still counted. Readers stream: they hold at most one batch of rows in memory.
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa

from refinery.accounting import SKIP_PREFIX
from refinery.config import InputConfig
from refinery.fsio import InputFile, get_fs, open_input
from refinery.schema import (
    BASE_FIELDS,
    DETAIL_COL,
    DROP_COL,
    QUARANTINE_PREFIX,
    RAW_COL,
    stable_id,
)

READ_SCHEMA = pa.schema(
    BASE_FIELDS
    + [pa.field(DROP_COL, pa.string()), pa.field(RAW_COL, pa.large_binary()), pa.field(DETAIL_COL, pa.string())]
)

COMPRESSED_TRUNCATION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


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


class RowBuilder:
    """Accumulates rows column-wise and emits a unified-schema table every `batch_rows` rows."""

    def __init__(self, task: ReadTask, cfg: InputConfig, run_id: str, fmt: str | None = None):
        self.task = task
        self.cfg = cfg
        self.run_id = run_id
        self.fmt = fmt or task.format
        self._reset()

    def _reset(self) -> None:
        self.cols: dict[str, list[Any]] = {f.name: [] for f in READ_SCHEMA}

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

    def quarantine(self, *, offset: int, reason: str, raw: bytes | None = None, detail: str | None = None, uri: str | None = None) -> None:
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
        c[DETAIL_COL].append(detail)

    def skip(self, *, offset: int, reason: str, uri: str | None = None) -> None:
        """Count an input record that is deliberately not a document (e.g. a WARC request record).

        It is carried as a dead row with ``_drop = "skip:<reason>"``: report.json counts it under ``skipped`` and
        the drop log lists it (stage ``skip``), so rows_read = kept + dropped + quarantined + skipped.
        """
        self.quarantine(offset=offset, reason=reason, uri=uri)
        self.cols[DROP_COL][-1] = SKIP_PREFIX + reason

    def full(self) -> bool:
        return len(self) >= self.cfg.batch_rows

    def flush(self) -> pa.Table | None:
        if not len(self):
            return None
        table = pa.Table.from_pydict(self.cols, schema=READ_SCHEMA)
        self._reset()
        return table


class Reader:
    format: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: InputConfig, run_id: str = ""):
        self.cfg = cfg
        self.run_id = run_id

    def plan(self, f: InputFile) -> list[ReadTask]:
        return [ReadTask(uri=f.uri, format=self.format, size=f.size, etag=f.etag)]

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        raise NotImplementedError

    def sidecars(self, files: list[InputFile]) -> set[str]:
        """Files this reader consumes as companions of others (captions, transcripts), not as documents."""
        return set()

    def read_document(self, task: ReadTask, rows: RowBuilder, blank_is_empty: bool = False) -> bytes | None:
        """Read a one-document-per-file input whole (up to max_record_bytes); quarantine it and return None when
        it is truncated, empty or too large."""
        cap = self.cfg.max_record_bytes
        _, comp = strip_compression(task.uri)
        with self.open_raw(task.uri) as raw:
            stream = decompress(raw, comp)
            try:
                data = stream.read(cap + 1)
            except COMPRESSED_TRUNCATION_ERRORS as e:
                rows.quarantine(offset=0, reason="truncated_compressed_stream", detail=f"{type(e).__name__} while decompressing")
                return None
        if not (data.strip() if blank_is_empty else data):
            rows.quarantine(offset=0, reason="empty_file", detail="file is empty")
            return None
        if len(data) > cap:
            rows.quarantine(offset=0, reason="record_too_large", raw=data, detail=f"file exceeds max_record_bytes={cap}")
            return None
        return data

    def open_raw(self, uri: str) -> BinaryIO:
        fs, path = get_fs(uri, self.cfg.storage_options)
        return open_input(fs, path)


def strip_compression(uri: str) -> tuple[str, str | None]:
    """("x.jsonl.gz") -> ("x.jsonl", "gzip")."""
    lower = uri.lower()
    for ext, comp in ((".gz", "gzip"), (".zst", "zstd"), (".zstd", "zstd")):
        if lower.endswith(ext):
            return uri[: -len(ext)], comp
    return uri, None


def decompress(raw: BinaryIO, compression: str | None) -> BinaryIO:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True))  # type: ignore[arg-type]
    return raw


def extension_of(uri: str) -> str:
    base, _ = strip_compression(uri)
    return posixpath.splitext(base)[1].lower()
