"""Parquet → rows. Row groups are streamed, and big files are split into groups of row groups.

Hostile files: a row group whose footer says it inflates past ``input.max_compression_ratio``
(``decompression_bomb``) or whose rows average over ``input.max_record_bytes`` in a group too big to decode
safely (``record_too_large``) is one quarantine row, not decoded. Others are decoded in batches of about
_BATCH_BYTES, and a text value over max_record_bytes is a ``record_too_large`` row, nulled before it becomes a
Python string. Known gap: the footer's sizes are of encoded data, so a dictionary-encoded column repeating a big
value can still decode to far more than the footer says (reading text columns as dictionaries would close it at
~2.4x the read time).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.fsio import InputFile
from stages.readers import register_reader
from stages.readers.base import Reader, ReadTask, RowBuilder
from stages.readers.compression import bomb_detail, ratio_exceeded

# Decoded bytes one batch aims at (from the footer's average row size), and the row-group size past which a group
# whose rows average over max_record_bytes is refused rather than decoded.
_BATCH_BYTES = 64 << 20
_GROUP_DECODE_BYTES = 256 << 20


@register_reader
class ParquetReader(Reader):
    format = "parquet"
    extensions = (".parquet", ".pq")
    needs_seekable = True

    def plan(self, f: InputFile) -> list[ReadTask]:
        # start/end are row-group indices here; one task per ~split_bytes of row groups.
        if f.size <= self.cfg.split_bytes:
            return super().plan(f)
        try:
            with self.open_raw(f.uri) as fh:
                md = pq.ParquetFile(fh).metadata
        except Exception:
            return super().plan(f)  # read() will quarantine it with a reason
        tasks, start, acc = [], 0, 0
        for i in range(md.num_row_groups):
            acc += md.row_group(i).total_byte_size
            if acc >= self.cfg.split_bytes:
                tasks.append(ReadTask(uri=f.uri, format=self.format, size=f.size, etag=f.etag, start=start, end=i + 1))
                start, acc = i + 1, 0
        if start < md.num_row_groups:
            tasks.append(ReadTask(uri=f.uri, format=self.format, size=f.size, etag=f.etag, start=start, end=md.num_row_groups))
        return tasks

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        with self.open_raw(task.uri) as fh:
            try:
                pf = pq.ParquetFile(fh)
            except Exception as e:
                rows.quarantine(offset=0, reason="unreadable_parquet", detail=type(e).__name__)
                yield rows.flush()  # type: ignore[misc]
                return
            md = pf.metadata
            if md.num_rows == 0:
                rows.quarantine(offset=0, reason="empty_file", detail="parquet file has no rows")
                yield rows.flush()  # type: ignore[misc]
                return
            row_index = sum(md.row_group(i).num_rows for i in range(task.start))
            for i in range(task.start, task.end if task.end is not None else md.num_row_groups):
                rg = md.row_group(i)
                first, row_index = row_index, row_index + rg.num_rows
                refusal = self._refuse_group(rg, i)
                if refusal is not None:
                    rows.quarantine(offset=first, reason=refusal[0], detail=refusal[1])
                    continue
                yield from self._read_group(pf, i, rg, first, rows)
        last = rows.flush()
        if last is not None:
            yield last

    def _refuse_group(self, rg: pq.RowGroupMetaData, index: int) -> tuple[str, str] | None:
        """(reason, detail) for a row group not to decode, judged from the footer: an inflation past the ratio cap,
        or rows averaging over max_record_bytes in a group too big to decode safely (one quarantine row for the
        group, its detail giving the row count)."""
        cap = self.cfg.max_record_bytes
        n = rg.num_rows
        compressed = sum(rg.column(j).total_compressed_size for j in range(rg.num_columns))
        size = max(rg.total_byte_size, sum(rg.column(j).total_uncompressed_size for j in range(rg.num_columns)))
        where = f"row group {index} ({n} rows): "
        if ratio_exceeded(size, compressed, self.cfg.max_compression_ratio):
            return "decompression_bomb", bomb_detail(size, compressed, self.cfg.max_compression_ratio, where)
        if n and size > _GROUP_DECODE_BYTES and size // n > cap:
            return "record_too_large", f"{where}{size} bytes, {size // n} per row exceed max_record_bytes={cap}"
        return None

    def _read_group(self, pf: pq.ParquetFile, index: int, rg: pq.RowGroupMetaData, first: int, rows: RowBuilder) -> Iterator[pa.Table]:
        tf, idf, cap = self.cfg.text_field, self.cfg.id_field, self.cfg.max_record_bytes
        per_row = max(1, rg.total_byte_size // max(rg.num_rows, 1))
        batch_size = max(1, min(self.cfg.batch_rows, _BATCH_BYTES // per_row))
        offset = first
        for batch in pf.iter_batches(batch_size=batch_size, row_groups=[index]):
            too_big, batch = _drop_oversized(batch, tf, cap)
            for k, rec in enumerate(batch.to_pylist()):
                row = offset + k
                if k in too_big:
                    rows.quarantine(offset=row, reason="record_too_large", detail=f"{tf!r} of {too_big[k]} bytes exceeds max_record_bytes={cap}")
                    continue
                text = rec.pop(tf, None)
                if text is None:
                    rows.quarantine(offset=row, reason="missing_text_field", detail=f"no {tf!r} value")
                    continue
                if not isinstance(text, str):
                    rows.quarantine(offset=row, reason="text_not_string", detail=f"{tf!r} is {type(text).__name__}")
                    continue
                doc_id = rec.pop(idf, None) if idf else None
                meta = orjson.dumps(rec, default=str).decode() if rec else None
                rows.add(offset=row, text=text, doc_id=None if doc_id is None else id_text(doc_id), meta=meta)
                if rows.full():
                    yield rows.flush()  # type: ignore[misc]
            offset += batch.num_rows


def _drop_oversized(batch: pa.RecordBatch, field: str, cap: int) -> tuple[dict[int, int], pa.RecordBatch]:
    """Null out text values over `cap` before they become Python objects: ({row: size}, batch)."""
    if field not in batch.schema.names:
        return {}, batch
    col = batch.column(field)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
        return {}, batch
    sizes = pc.binary_length(col)
    big = pc.greater(sizes, cap)
    if not pc.any(big).as_py():
        return {}, batch
    rows = pc.indices_nonzero(pc.fill_null(big, False)).to_pylist()
    size_list = sizes.to_pylist()
    cleaned = pc.if_else(big, pa.scalar(None, col.type), col)
    return {r: size_list[r] for r in rows}, batch.set_column(batch.schema.get_field_index(field), field, cleaned)


def id_text(value: Any) -> str:
    """A Parquet id as exact text: ints exactly, true/false as in JSON, nested values as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, default=str).decode()
    return str(value)
