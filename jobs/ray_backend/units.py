"""Units of work: what one Ray task (or actor call) does from its input to its staged files and completion record.

A unit is a few packed input files (or one byte range), one file of an earlier step, or one output partition of
a global stage. Its runner reads it, applies one fused stage group, writes the rows as parts (PartSink), and
leaves a completion record under `_work/<run>/done/<step>/<unit>.json` naming every file with its size and
sha256, plus its row, drop and read counts. A re-run of the same run reuses every unit whose record checks out
and redoes the rest; a unit's output is the same files byte for byte whenever it runs (its rows always arrive
in the same order, parts are cut by size and named by their sha256).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.ray_backend.unit_progress import UnitProgress
from refinery.config import InputConfig
from refinery.fsio import retries_since, retry_counts
from refinery.location import Location
from refinery.stage_group import StageSpecT, annotate_global_drops, apply_group, build_group, stage_batches
from refinery.writer import PartSink, PartWriter
from stages.readers import ReadTask, read_task

READ_LABEL, WRITE_LABEL = "(read)", "(write)"  # report keys of our reader and writer code (not stages)


@dataclass
class Step:
    """One pass over a set of units: their source, at most one fused stage group, and where rows go."""

    name: str  # s0, s1 … (folders under _work/<run>/)
    title: str  # what Ray shows: read+normalize+length_filter
    specs: list[StageSpecT]
    batch_rows: int
    writer: PartWriter
    done: Location  # _work/<run>/done/<name>/
    run_id: str = ""
    progress: Location | None = None  # _work/<run>/progress/<name>/: saved batches of units not yet done
    checkpoint_s: float = 30.0
    input_cfg: InputConfig | None = None  # units that read input files
    files_options: dict[str, Any] = field(default_factory=dict)  # units that are files of an earlier step
    item_fn: Callable[[Any], pa.Table | None] | None = None  # units that are partitions of a global stage
    annotate_label: str | None = None  # that global stage's drops become `flagged`


class UnitRunner:
    """Runs units: one JSON unit per input row, one JSON completion record per output row."""

    def __init__(self, step: Step):
        self.step = step
        self._group: list[Any] | None = None

    def group(self) -> list[Any]:
        if self._group is None:
            self._group = build_group(self.step.specs)  # models load once per worker (or actor)
        return self._group

    def __call__(self, batch: pa.Table) -> pa.Table:
        records = [json.dumps(self.run(json.loads(u))) for u in batch["unit"].to_pylist()]
        return pa.table({"record": pa.array(records, pa.string())})

    def run(self, unit: dict[str, Any]) -> dict[str, Any]:
        step = self.step
        retries_before = retry_counts()
        seconds: dict[str, float] = {}
        reads: dict[str, dict[str, Any]] = {}
        digest = unit_digest(unit)
        sink = step.writer.open()
        saved, skip = None, 0
        if step.progress is not None:
            saved = UnitProgress(step.progress.join(unit["id"]), digest, step.checkpoint_s)
            skip = saved.replay(lambda b, sizes: self._timed_add(sink, b, seconds, sizes), seconds)
        index = 0
        for table in self._tables(unit, reads, seconds):
            for batch in stage_batches(table, step.batch_rows):
                index += 1
                if index <= skip:  # an earlier attempt saved it: replayed above
                    continue
                part = apply_group(self.group(), batch, seconds)
                sizes = self._timed_add(sink, part, seconds)
                if saved is not None:
                    saved.add(part, sizes, seconds)
        t0 = time.perf_counter()
        files, stats = sink.close()
        seconds[WRITE_LABEL] = seconds.get(WRITE_LABEL, 0.0) + time.perf_counter() - t0
        retries = retries_since(retries_before)
        record = {
            "unit": unit["id"],
            "unit_sha256": digest,
            "step": step.name,
            "files": files,
            "stats": stats,
            "reads": reads,
            "rows": sink.rows,
            "seconds": seconds,
            "task": _task_id(),
            "retries": retries,
            "batches_reused": skip,
        }
        step.done.join(f"{unit['id']}.json").write_json(record, indent=None)  # after its files: it names them
        if saved is not None:
            saved.clear()
        return record

    @staticmethod
    def _timed_add(
        sink: PartSink, batch: pa.Table, seconds: dict[str, float], sizes: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        t0 = time.perf_counter()
        out = sink.add(batch, sizes)
        seconds[WRITE_LABEL] = seconds.get(WRITE_LABEL, 0.0) + time.perf_counter() - t0
        return out

    def _tables(
        self, unit: dict[str, Any], reads: dict[str, dict[str, Any]], seconds: dict[str, float]
    ) -> Iterator[pa.Table]:
        step = self.step
        if "read" in unit:
            assert step.input_cfg is not None
            for key, spec in unit["read"]:
                ledger: dict[str, Any] = {"rows": 0, "counters": {}}
                it = read_task(ReadTask(**spec), step.input_cfg, step.run_id, ledger)
                yield from _timed(it, seconds, READ_LABEL, ledger)
                reads[str(key)] = ledger
        elif "files" in unit:
            for uri in unit["files"]:
                with Location(uri, step.files_options).open("rb") as f:
                    pf = pq.ParquetFile(f)
                    for g in range(pf.num_row_groups):
                        yield pf.read_row_group(g)
        else:
            assert step.item_fn is not None
            table = step.item_fn(unit["item"])
            if table is not None and table.num_rows:
                yield annotate_global_drops(table, step.annotate_label) if step.annotate_label else table


def _timed(
    it: Iterator[pa.Table], seconds: dict[str, float], label: str, ledger: dict[str, Any]
) -> Iterator[pa.Table]:
    """Time spent producing each table (not while the consumer holds it), and count its rows."""
    while True:
        t0 = time.perf_counter()
        table = next(it, None)
        seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - t0
        if table is None:
            return
        ledger["rows"] += table.num_rows
        yield table


def _task_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_task_id()
    except Exception:  # outside Ray (unit tests)
        return None


def unit_digest(unit: dict[str, Any]) -> str:
    """What a unit holds (its read tasks, files or item), hashed: a record is reused only for the very same work,
    never for a unit of the same name that another version of the packer filled differently."""
    return hashlib.sha256(json.dumps(unit, sort_keys=True, default=str).encode()).hexdigest()


def valid_record(record: dict[str, Any], staging: Location) -> bool:
    """A completion record can be trusted only if every file it names is there with its size and sha256."""
    for f in record.get("files", []):
        loc = staging.join(f["path"])
        try:
            if not loc.exists() or loc.size() != f["bytes"] or loc.sha256() != f["sha256"]:
                return False
        except OSError:
            return False
    return True
