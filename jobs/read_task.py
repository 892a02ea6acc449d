"""The Ray side of reading: one read task in, a stream of unified-schema batches out."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pyarrow as pa

from refinery.config import InputConfig
from refinery.fsio import (
    StorageError,
    backoff_delay,
    describe_error,
    fatal_hint,
    is_fatal,
    is_transient,
    retry_policy,
)
from refinery.redact import scrub, secret_values
from stages.readers import load_readers
from stages.readers.base import ReadTask, RowBuilder

log = logging.getLogger("refinery.read")

# Kept for compatibility: the built-in network errors. Transient storage errors in general (throttling, 5xx,
# dropped connections) are recognised by refinery.fsio.is_transient.
TRANSIENT = (ConnectionError, TimeoutError)


class ReadFn:
    def __init__(self, cfg: InputConfig, run_id: str, timer_name: str | None = None):
        self.cfg = cfg
        self.run_id = run_id
        self.timer_name = timer_name

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        from jobs.stage_runner import READ_LABEL, report_seconds

        readers = load_readers()
        busy = 0.0
        for raw in batch["task"].to_pylist():
            task = ReadTask.from_json(raw)
            reader = readers[task.format](self.cfg, self.run_id)
            it = self._read(reader, task)
            while True:  # time spent reading and parsing only, not while the consumer holds the batch
                t0 = time.perf_counter()
                table = next(it, None)
                busy += time.perf_counter() - t0
                if table is None:
                    break
                yield table
        report_seconds(self.timer_name, {READ_LABEL: busy})

    def _read(self, reader, task: ReadTask) -> Iterator[pa.Table]:
        """Read one task; on a transient storage error (SlowDown/503, dropped connection) start the file again
        after a jittered backoff and skip the batches already emitted (readers are deterministic), so no row is
        lost or repeated. Fatal errors (access denied, bad credentials) fail the job; any other error about one
        file is quarantined."""
        secrets = secret_values(self.cfg.storage_options)
        attempts, base, cap = retry_policy()
        emitted = 0
        attempt = 0
        while True:
            seen = 0
            try:
                for table in reader.read(task):
                    seen += 1
                    if seen <= emitted:
                        continue
                    emitted += 1
                    yield table
                return
            except Exception as e:
                if is_fatal(e):
                    raise StorageError(scrub(describe_error("read", task.uri, e) + fatal_hint(e), secrets)) from None
                if is_transient(e):
                    attempt += 1
                    if attempt >= attempts:
                        raise StorageError(
                            scrub(describe_error("read", task.uri, e), secrets) + f" (gave up after {attempt} attempts)"
                        ) from None
                    delay = backoff_delay(attempt - 1, base, cap)
                    log.warning("retrying read of %s in %.1fs (attempt %d/%d)", task.uri, delay, attempt, attempts)
                    time.sleep(delay)
                    continue
                # one unreadable file must not stop the job
                rows = RowBuilder(task, self.cfg, self.run_id)
                detail = scrub(f"{type(e).__name__}: {str(e)[:200]}", secrets)
                rows.quarantine(offset=task.start, reason="unreadable_file", detail=detail)
                yield rows.flush()
                return


class ReadParquetFiles:
    """One row group of a Parquet file, or a slice of one, per item (the checkpoints between stages)."""

    def __init__(self, storage_options: dict):
        self.storage_options = storage_options

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        from refinery.fsio import get_fs

        for item in batch.to_pylist():
            if item["path"] is None:
                continue
            fs, p = get_fs(item["path"], self.storage_options)
            with fs.open(p, "rb") as f:
                table = pq.ParquetFile(f).read_row_group(item["row_group"])
            yield table.slice(item["offset"], item["length"])
