"""The Ray side of reading: one read task in, a stream of unified-schema batches out."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from refinery.config import InputConfig
from refinery.redact import scrub, secret_values
from stages.readers import load_readers
from stages.readers.base import ReadTask, RowBuilder

# Errors worth a task retry (Ray re-runs the task); anything else about one file is quarantined.
TRANSIENT = (ConnectionError, TimeoutError)


class ReadFn:
    def __init__(self, cfg: InputConfig, run_id: str):
        self.cfg = cfg
        self.run_id = run_id

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        readers = load_readers()
        for raw in batch["task"].to_pylist():
            task = ReadTask.from_json(raw)
            reader = readers[task.format](self.cfg, self.run_id)
            try:
                yield from reader.read(task)
            except TRANSIENT:
                raise
            except Exception as e:  # one unreadable file must not stop the job
                rows = RowBuilder(task, self.cfg, self.run_id)
                detail = scrub(f"{type(e).__name__}: {str(e)[:200]}", secret_values(self.cfg.storage_options))
                rows.quarantine(offset=task.start, reason="unreadable_file", detail=detail)
                yield rows.flush()
