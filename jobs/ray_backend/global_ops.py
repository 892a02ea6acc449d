"""What a global stage asks of the backend (`refinery.stage.GlobalBackend`), done with Ray.

A dedup stage is a sequence of steps: a map over the corpus whose tasks write partitioned intermediates, waves of
plain tasks over the partitions, and a final dataset built per partition. The stage describes the steps; this
module turns each into Ray Data operators or Ray tasks, named after the stage and step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from jobs.ray_backend.operators import named, read_checkpoint
from refinery.fsio import note_retry, retries_since, retry_counts
from refinery.location import Location
from refinery.schema import row_slices
from refinery.stage import Resources

log = logging.getLogger("refinery.dedup")


def _counting_retries(fn: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, int]]:
    """fn(*args), and the storage requests retried while it ran (per operation)."""
    before = retry_counts()
    out = fn(*args)
    return out, retries_since(before)


class Sliced:
    """Runs a map step on slices of at most `rows` rows of each block Ray hands over.

    Map steps are called with `batch_size=None`: a row-count batch size would make Ray Data bundle the read items
    of the operator it fuses with (checkpoint files) into a single task, which then runs on one core."""

    def __init__(self, fn: Callable[[pa.Table], pa.Table], rows: int):
        self.fn = fn
        self.rows = rows

    def __call__(self, block: pa.Table) -> Iterator[pa.Table]:
        for part in row_slices(block, self.rows):
            yield self.fn(part)


@dataclass
class CheckpointSource:
    """What a global stage receives as `ds`: the live rows checkpointed before it, as Parquet files."""

    files: list[tuple[Location, int]]  # (file, rows)
    num_cpus: int
    label: str

    def dataset(self) -> Any:
        return read_checkpoint(self.files, self.num_cpus, name=self.label)


@dataclass
class ItemSource:
    """What a global stage returns: fn(item) for each item (one unit of work each in the next step)."""

    fn: Callable[[Any], pa.Table | None]
    items: list[Any]


class RayGlobalBackend:
    def map_collect(
        self, ds: Any, fn: Callable[[pa.Table], pa.Table], rows: int, resources: Resources, name: str
    ) -> list[dict[str, Any]]:
        data = ds.dataset() if isinstance(ds, CheckpointSource) else ds
        out = data.map_batches(
            named(Sliced, name)(fn, rows),
            # Ray Data wants a batch size for GPU steps; those never fuse with the CPU read of the checkpoint,
            # so the bundling described in `Sliced` does not happen there
            batch_size=rows if resources.num_gpus else None,
            batch_format="pyarrow",
            zero_copy_batch=True,
            **resources.ray_options(),
        )
        return out.take_all()

    def run_wave(
        self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], resources: Resources, name: str
    ) -> list[Any]:
        import ray

        t0 = time.perf_counter()
        remote = ray.remote(max_retries=3, **resources.ray_options())(_counting_retries).options(name=name)
        done = ray.get([remote.remote(fn, *a) for a in args])
        log.info("%s: %d task(s) in %.2fs", name, len(args), time.perf_counter() - t0)
        for _, retried in done:  # the tasks' storage retries join the driver's count (report.json)
            for op, n in retried.items():
                note_retry(op, n)
        return [out for out, _ in done]

    def dataset_from(
        self, fn: Callable[[Any], pa.Table | None], items: Sequence[Any], name: str
    ) -> ItemSource:
        return ItemSource(fn, list(items))
