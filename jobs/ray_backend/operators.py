"""The Ray Data operators of a run: reading, fused stage groups (tasks or actor pools), the writer, and the
checkpoint reads before a global stage. Each carries the names of the stages it runs, so Ray's progress bars and
dashboard say `langid+gopher_quality`, not a class name.

Parallelism rule (docs/ARCHITECTURE.md): nothing fused with the read asks Ray for a row-count `batch_size`: Ray
Data gives a fused operator the largest "min rows per bundle" of its members, counted in rows of its *input*,
which for the read are task descriptors; so operators take whole blocks and slice them themselves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from jobs.ray_backend.ledger import READ_LABEL, WRITE_LABEL, report_reads, report_seconds
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
from refinery.location import Location
from refinery.redact import scrub, secret_values
from refinery.stage import Stage
from refinery.stage_group import StageSpecT, annotate_global_drops, apply_sliced, build_group
from refinery.writer import PartWriter
from stages.readers import load_readers
from stages.readers.base import ReadTask, RowBuilder

log = logging.getLogger("refinery.read")

CHECKPOINT_ROW_GROUP = 8192  # rows per row group in checkpoints: the unit of parallelism of the next stage
MIN_SLICE_ROWS = 256  # smallest slice of a row group read as its own task


def named(cls: type, name: str) -> type:
    """A subclass of `cls` called `name`: Ray Data names an operator after its callable's class."""
    return type(name, (cls,), {"__module__": cls.__module__, "__qualname__": name})


# --------------------------------------------------------------------------------------------------------------
# Reading


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
                    raise StorageError(
                        scrub(describe_error("read", task.uri, e) + fatal_hint(e), secrets)
                    ) from None
                if is_transient(e):
                    attempt += 1
                    if attempt >= attempts:
                        raise StorageError(
                            scrub(describe_error("read", task.uri, e), secrets)
                            + f" (gave up after {attempt} attempts)"
                        ) from None
                    delay = backoff_delay(attempt - 1, base, cap)
                    log.warning(
                        "retrying read of %s in %.1fs (attempt %d/%d)", task.uri, delay, attempt, attempts
                    )
                    time.sleep(delay)
                    continue
                # one unreadable file must not stop the job
                # (the detail names the error type only: a parser's message may quote the record, i.e. PII)
                rows = RowBuilder(task, self.cfg, self.run_id)
                detail = type(e).__name__ + (
                    f": {e.strerror}" if isinstance(e, OSError) and e.strerror else ""
                )
                rows.quarantine(offset=task.start, reason="unreadable_file", detail=detail)
                yield rows.flush()
                return


class ReadParquetFiles:
    """One row group of a Parquet file, or a slice of one, per item (the checkpoints between stages)."""

    def __init__(self, storage_options: dict[str, Any]):
        self.storage_options = storage_options

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        for item in batch.to_pylist():
            if item["path"] is None:
                continue
            with Location(item["path"], self.storage_options).open("rb") as f:
                table = pq.ParquetFile(f).read_row_group(item["row_group"])
            yield table.slice(item["offset"], item["length"])


def read_items(units: list[list[tuple[int, ReadTask]]]) -> Any:
    """One block per read unit (a few packed small files, or one big file or byte range), so each unit is one
    Ray task."""
    import ray

    items = [{"task": json.dumps([[k, dataclasses.asdict(t)] for k, t in unit])} for unit in units]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items)))


def read_dataset(items: Any, read: ReadFn) -> Any:
    """A read operator of its own (when the first segment is a global stage)."""
    return items.map_batches(read, batch_format="pyarrow", batch_size=1, zero_copy_batch=True)


# --------------------------------------------------------------------------------------------------------------
# Stage groups


class _Group:
    """Shared by the task and actor forms: optionally read the block's read tasks first, then run the group."""

    def __init__(
        self,
        specs: Sequence[StageSpecT],
        ledger: str | None = None,
        batch_rows: int | None = None,
        read: ReadFn | None = None,
    ):
        self.specs = list(specs)
        self.ledger = ledger
        self.batch_rows = batch_rows
        self.read = read  # when this group reads its own input

    def _run(self, group: Sequence[tuple[str, Stage[Any]]], batch: pa.Table) -> Iterator[pa.Table]:
        seconds: dict[str, float] = {}
        blocks = self.read(batch) if self.read is not None else [batch]
        for block in blocks:
            yield from apply_sliced(group, block, self.batch_rows, seconds)
        report_seconds(self.ledger, seconds)


class StageGroupTask(_Group):
    """Stateless groups, run as Ray tasks (stages are set up once per worker process)."""

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        yield from self._run(build_group(self.specs), batch)


class StageGroupActor(_Group):
    """Actor pools: stateful stages (models) are set up once in the constructor."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group = build_group(self.specs)

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        yield from self._run(self.group, batch)


def apply_stage_group(
    ds: Any, group: Any, batch_rows: int, ledger: str, cluster_cpus: int, read: ReadFn | None = None
) -> Any:
    """One map operator for a fused group of per-batch stages (a `jobs.plan.StageGroup`), named after them.

    `read` (the first group only): `ds` holds read-task descriptors and the group reads them itself, one per call.
    Reading inside the group's own operator, rather than counting on Ray to fuse a separate read operator, is
    what lets an actor pool start at full size: nothing upstream then needs a CPU that the actors hold. (When
    Ray did not fuse them, e.g. langid alone at 0.5 CPU per actor, actors holding every CPU starved the read
    tasks and the job hung.) Otherwise `batch_size=None`: whole blocks in, sliced to `ray.batch_rows`."""
    import ray

    res = group.resources
    opts = res.ray_options()
    name = ("read+" if read else "") + group.name
    common = dict(batch_format="pyarrow", batch_size=1 if read else None, zero_copy_batch=True)
    if group.stateful:
        max_actors = max(1, int(cluster_cpus // max(res.num_cpus, 0.25)))
        # One block in flight per actor: with Ray's default (several) one actor takes the whole queue of a small
        # input and the pool never grows. Start at full size only when the actors read (see above): Ray's
        # autoscaler left the pool at 1 of 2 actors on a 2-CPU machine.
        strategy = ray.data.ActorPoolStrategy(
            min_size=1,
            max_size=max_actors,
            max_tasks_in_flight_per_actor=1,
            initial_size=max_actors if read else None,
        )
        return ds.map_batches(
            named(StageGroupActor, name),
            fn_constructor_args=(group.specs(), ledger, batch_rows, read),
            compute=strategy,
            **opts,
            **common,
        )
    return ds.map_batches(
        named(StageGroupTask, name)(group.specs(), ledger, batch_rows, read), **opts, **common
    )


def annotate_global(ds: Any, label: str) -> Any:
    """For a global stage with action=annotate: its `_drop` reasons become `flagged`."""
    return ds.map_batches(
        annotate_global_drops, batch_format="pyarrow", batch_size=None, fn_kwargs={"label": label}
    )


# --------------------------------------------------------------------------------------------------------------
# Writing and checkpoints


class TimedWriter:
    """The writer with its seconds reported, so the report can tell our I/O code from Ray's own overhead."""

    def __init__(self, writer: PartWriter, ledger: str | None):
        self.writer = writer
        self.ledger = ledger

    def __call__(self, batch: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        out = self.writer(batch)
        report_seconds(self.ledger, {WRITE_LABEL: time.perf_counter() - t0})
        return out


def write(
    ds: Any, writer: PartWriter, rows_per_shard: int, max_batch_mb: float, ledger: str, name: str = "write"
) -> list[dict[str, Any]]:
    """The writer is its own operator: it bundles blocks from many upstream tasks into parts of `rows_per_shard`
    rows. It declares the memory it needs (a worker process, ~256 MB, plus about three copies of the batch while
    encoding). That keeps Ray from packing too many writers on a node, and keeps Ray Data from fusing the writer
    into the read/stage operator, where its bundle size would count read items, not rows. It holds no CPU:
    writing is short and mostly I/O, and a writer waiting for a CPU that model actors hold would stall the
    whole stream. Returns the file and stats records of every part written."""
    out = ds.map_batches(
        named(TimedWriter, name)(writer, ledger),
        batch_format="pyarrow",
        batch_size=rows_per_shard,
        zero_copy_batch=True,
        num_cpus=0,
        memory=(256 + 3 * max_batch_mb) * (1 << 20),
    )
    return out.take_all()


def read_checkpoint(
    files: list[tuple[Location, int]],
    num_cpus: int = 1,
    row_group_rows: int = CHECKPOINT_ROW_GROUP,
    name: str = "checkpoint",
) -> Any:
    """A Dataset over checkpoint Parquet files (location, rows), one read task per row group, or per slice of one.

    Per row group, not per file: a small run's checkpoint is one file, and one task per file would run the next
    stage on one core. When there are fewer row groups than twice the CPUs, each is cut into row slices (of at
    least MIN_SLICE_ROWS) so the stage still gets a task per core; a slice re-reads its row group, which is
    cheap at that size. Not `ray.data.read_parquet`: on a 2-core machine its file-listing and metadata
    operators took 6-19 s per call even for one small file (measured, Ray 2.60), once per global stage."""
    import ray

    groups = [
        (loc, g, min(row_group_rows, rows - g * row_group_rows))
        for loc, rows in files
        for g in range(-(-rows // row_group_rows))
    ]
    cuts = -(-2 * num_cpus // max(1, len(groups)))
    items: list[dict[str, Any]] = []
    for loc, g, n in groups:
        step = -(-n // max(1, min(cuts, n // MIN_SLICE_ROWS)))
        items += [
            {"path": loc.uri, "row_group": g, "offset": o, "length": min(step, n - o)}
            for o in range(0, n, step)
        ]
    items = items or [{"path": None, "row_group": -1, "offset": 0, "length": 0}]
    options = files[0][0].storage_options if files else {}
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    return ds.map_batches(
        named(ReadParquetFiles, f"read:{name}")(options),
        batch_format="pyarrow",
        batch_size=1,
        zero_copy_batch=True,
    )
