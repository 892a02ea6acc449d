"""Parquet → rows. Row groups are streamed, and big files are split into groups of row groups.

Hostile files: a row group whose footer says it inflates past ``input.max_compression_ratio``
(``decompression_bomb``) or whose rows average over ``input.max_record_bytes`` in a group too big to decode
safely (``record_too_large``) is one quarantine row, not decoded. Others are decoded in batches of about
_BATCH_BYTES (by the footer's average row), and a text value over max_record_bytes is a ``record_too_large`` row,
nulled before it becomes a Python string. Text that decodes past the ratio cap of its row group's compressed size
(a dictionary page repeating one big value) ends the row group with a ``decompression_bomb`` row, rows before it
kept. Known gap: the footer's sizes are of encoded data, so one batch of such a column is already decoded by
pyarrow when this is seen (reading text columns as dictionaries would close it, at ~2.4x the read time).
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
                tasks.append(
                    ReadTask(uri=f.uri, format=self.format, size=f.size, etag=f.etag, start=start, end=i + 1)
                )
                start, acc = i + 1, 0
        if start < md.num_row_groups:
            tasks.append(
                ReadTask(
                    uri=f.uri,
                    format=self.format,
                    size=f.size,
                    etag=f.etag,
                    start=start,
                    end=md.num_row_groups,
                )
            )
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
        size = max(
            rg.total_byte_size, sum(rg.column(j).total_uncompressed_size for j in range(rg.num_columns))
        )
        where = f"row group {index} ({n} rows): "
        if ratio_exceeded(size, compressed, self.cfg.max_compression_ratio):
            return "decompression_bomb", bomb_detail(size, compressed, self.cfg.max_compression_ratio, where)
        if n and size > _GROUP_DECODE_BYTES and size // n > cap:
            return (
                "record_too_large",
                f"{where}{size} bytes, {size // n} per row exceed max_record_bytes={cap}",
            )
        return None

    def _read_group(
        self, pf: pq.ParquetFile, index: int, rg: pq.RowGroupMetaData, first: int, rows: RowBuilder
    ) -> Iterator[pa.Table]:
        tf, idf, cap = self.cfg.text_field, self.cfg.id_field, self.cfg.max_record_bytes
        per_row = max(1, rg.total_byte_size // max(rg.num_rows, 1))
        batch_size = max(1, min(self.cfg.batch_rows, _BATCH_BYTES // per_row))
        compressed = sum(rg.column(j).total_compressed_size for j in range(rg.num_columns))
        decoded = 0
        offset = first
        for batch in pf.iter_batches(batch_size=batch_size, row_groups=[index]):
            too_big, sizes, batch = _drop_oversized(batch, tf, cap)
            # Dictionary pages can repeat one big value in every row: judge the text as it decodes, too.
            decoded += (pc.sum(sizes).as_py() or 0) if sizes is not None else 0
            if ratio_exceeded(decoded, compressed, self.cfg.max_compression_ratio):
                where = f"row group {index} ({rg.num_rows} rows) from row {offset} on: text of "
                detail = bomb_detail(decoded, compressed, self.cfg.max_compression_ratio, where)
                rows.quarantine(offset=offset, reason="decompression_bomb", detail=detail)
                return
            for start, part in _slices(batch, sizes):
                for k, rec in enumerate(part.to_pylist(), start):
                    row = offset + k
                    if k in too_big:
                        detail = f"{tf!r} of {too_big[k]} bytes exceeds max_record_bytes={cap}"
                        rows.quarantine(offset=row, reason="record_too_large", detail=detail)
                        continue
                    text = rec.pop(tf, None)
                    if text is None:
                        rows.quarantine(offset=row, reason="missing_text_field", detail=f"no {tf!r} value")
                        continue
                    if not isinstance(text, str):
                        rows.quarantine(
                            offset=row, reason="text_not_string", detail=f"{tf!r} is {type(text).__name__}"
                        )
                        continue
                    doc_id = rec.pop(idf, None) if idf else None
                    meta = orjson.dumps(rec, default=str).decode() if rec else None
                    rows.add(
                        offset=row, text=text, doc_id=None if doc_id is None else id_text(doc_id), meta=meta
                    )
                    if rows.full():
                        yield rows.flush()  # type: ignore[misc]
            offset += batch.num_rows


def _slices(batch: pa.RecordBatch, sizes: pa.Array | None) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The batch in (start row, slice) pieces of about _BATCH_BYTES of text, so turning it into Python objects
    stays bounded even where a dictionary-typed column repeats one big value in every row."""
    total = pc.sum(sizes).as_py() if sizes is not None else None
    if not total or total <= _BATCH_BYTES:
        yield 0, batch
        return
    start = acc = 0
    for i, size in enumerate(sizes.to_pylist()):  # type: ignore[union-attr]
        if acc and acc + (size or 0) > _BATCH_BYTES:
            yield start, batch.slice(start, i - start)
            start, acc = i, 0
        acc += size or 0
    yield start, batch.slice(start)


def _drop_oversized(
    batch: pa.RecordBatch, field: str, cap: int
) -> tuple[dict[int, int], pa.Array | None, pa.RecordBatch]:
    """Null out text values over `cap` before they become Python objects: ({row: size}, text sizes, batch)."""
    if field not in batch.schema.names:
        return {}, None, batch
    col = batch.column(field)
    dictionary = pa.types.is_dictionary(col.type)
    if not _stringish(col.type.value_type if dictionary else col.type):
        return {}, None, batch
    if dictionary:  # sizes from the dictionary, without decoding the column
        sizes = pc.take(pc.binary_length(col.dictionary), col.indices)
    else:
        sizes = pc.binary_length(col)
    big = pc.fill_null(pc.greater(sizes, cap), False)
    if not pc.any(big).as_py():
        return {}, sizes, batch
    size_list = sizes.to_pylist()
    rows = {r: size_list[r] for r in pc.indices_nonzero(big).to_pylist()}
    if dictionary:
        cleaned = pa.DictionaryArray.from_arrays(
            pc.if_else(big, pa.scalar(None, col.indices.type), col.indices), col.dictionary
        )
    else:
        cleaned = pc.if_else(big, pa.scalar(None, col.type), col)
    sizes = pc.if_else(big, pa.scalar(0, sizes.type), sizes)
    return rows, sizes, batch.set_column(batch.schema.get_field_index(field), field, cleaned)


def _stringish(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )


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
