"""The Ray side of reading: one read task in, a stream of unified-schema batches out."""

from __future__ import annotations

import json
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


class ReadFn:
    """Reads one packed unit of read tasks (a JSON list of ``[key, task]``) and reports, per task, how many rows
    it produced to the run's ledger actor. The ledger keeps one entry per task key, so a retried Ray task
    overwrites its own entry instead of counting twice; the driver compares those counts, made where rows are
    born, with the rows in the files it is about to publish."""

    def __init__(self, cfg: InputConfig, run_id: str, timer_name: str | None = None):
        self.cfg = cfg
        self.run_id = run_id
        self.timer_name = timer_name

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        from jobs.stage_runner import READ_LABEL, report_reads, report_seconds

        busy = 0.0
        for raw in batch["task"].to_pylist():
            for key, spec in json.loads(raw):
                task = ReadTask(**spec)
                ledger = {"rows": 0, "counters": {}}
                it = self._read(task, ledger)
                while True:  # time spent reading and parsing only, not while the consumer holds the batch
                    t0 = time.perf_counter()
                    table = next(it, None)
                    busy += time.perf_counter() - t0
                    if table is None:
                        break
                    ledger["rows"] += table.num_rows
                    yield table
                report_reads(self.timer_name, int(key), ledger)
        report_seconds(self.timer_name, {READ_LABEL: busy})

    def _read(self, task: ReadTask, ledger: dict) -> Iterator[pa.Table]:
        """Read one task; on a transient storage error (SlowDown/503, dropped connection) start the file again
        after a jittered backoff and skip the batches already emitted (readers are deterministic), so no row is
        lost or repeated. Fatal errors (access denied, bad credentials) fail the job; any other error about one
        file is quarantined."""
        readers = load_readers()
        secrets = secret_values(self.cfg.storage_options)
        attempts, base, cap = retry_policy()
        emitted = 0
        attempt = 0
        while True:
            seen = 0
            reader = readers[task.format](self.cfg, self.run_id)  # fresh per attempt: its counters start at 0
            try:
                for table in reader.read(task):
                    seen += 1
                    if seen <= emitted:
                        continue
                    emitted += 1
                    yield table
                ledger["counters"] = dict(getattr(reader, "counters", {}) or {})
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
                # (the detail names the error type only: a parser's message may quote the record, i.e. PII)
                rows = RowBuilder(task, self.cfg, self.run_id)
                detail = type(e).__name__ + (f": {e.strerror}" if isinstance(e, OSError) and e.strerror else "")
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


PACK_BYTES = 32 << 20  # small whole files are packed into read units of about this many bytes
PACK_MAX_FILES = 256  # and at most this many files per unit (object stores pay a request per file)


def pack_read_tasks(tasks: list[ReadTask], num_cpus: int, pack_bytes: int = PACK_BYTES,
                    max_files: int = PACK_MAX_FILES) -> list[list[tuple[int, ReadTask]]]:
    """Group read tasks into units, one Ray task each, as (key, task) pairs; the key is the task's index.

    Why: each Ray task costs tens of milliseconds to schedule, so 10,000 one-line files read as 10,000 tasks
    took 558 s. Byte ranges and files of at least `pack_bytes` stay alone; smaller files are packed by bytes,
    into at least min(#files, 2 × CPUs) units so that a small input still uses every core."""
    units: list[list[tuple[int, ReadTask]]] = []
    small: list[tuple[int, ReadTask]] = []
    for i, t in enumerate(tasks):
        if t.end is not None or t.size >= pack_bytes:
            units.append([(i, t)])
        else:
            small.append((i, t))
    if not small:
        return units
    min_units = min(len(small), 2 * max(1, num_cpus))
    target = min(pack_bytes, max(1, sum(t.size for _, t in small) // min_units))
    cap = min(max_files, -(-len(small) // min_units))
    cur: list[tuple[int, ReadTask]] = []
    cur_bytes = 0
    for item in small:
        cur.append(item)
        cur_bytes += max(1, item[1].size)
        if cur_bytes >= target or len(cur) >= cap:
            units.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        units.append(cur)
    return units
