"""Parquet → rows. Row groups are streamed, and big files are split into groups of row groups."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.fsio import InputFile
from stages.readers import register_reader
from stages.readers.base import Reader, ReadTask, RowBuilder


@register_reader
class ParquetReader(Reader):
    format = "parquet"
    extensions = (".parquet", ".pq")

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
        tf, idf = self.cfg.text_field, self.cfg.id_field
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
            groups = list(range(task.start, task.end if task.end is not None else md.num_row_groups))
            row_index = sum(md.row_group(i).num_rows for i in range(task.start))
            for batch in pf.iter_batches(batch_size=self.cfg.batch_rows, row_groups=groups):
                records = batch.to_pylist()
                for rec in records:
                    offset = row_index
                    row_index += 1
                    text = rec.pop(tf, None)
                    if text is None:
                        rows.quarantine(offset=offset, reason="missing_text_field", detail=f"no {tf!r} value")
                        continue
                    if not isinstance(text, str):
                        rows.quarantine(offset=offset, reason="text_not_string", detail=f"{tf!r} is {type(text).__name__}")
                        continue
                    doc_id = rec.pop(idf, None) if idf else None
                    meta = orjson.dumps(rec, default=str).decode() if rec else None
                    rows.add(offset=offset, text=text, doc_id=None if doc_id is None else str(doc_id), meta=meta)
                    if rows.full():
                        yield rows.flush()  # type: ignore[misc]
        last = rows.flush()
        if last is not None:
            yield last
