"""The Ray Data operators of a run: one per step over its units (tasks, or an actor pool for stages with a model),
and the checkpoint reads a global stage maps over. Each is named after the stages it runs, so Ray's progress
bars and dashboard say `read+normalize+length_filter`, not a class name.

Parallelism rule (docs/ARCHITECTURE.md): a step's operator takes one unit per call (`batch_size=1` over a dataset
of unit descriptors, one block each), and nothing is fused with it, so each unit is its own task.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from jobs.ray_backend.units import Step, UnitRunner
from refinery.location import Location
from refinery.stage import Resources

CHECKPOINT_ROW_GROUP = 8192  # rows per row group in checkpoints: the unit of parallelism of the next stage
MIN_SLICE_ROWS = 256  # smallest slice of a row group read as its own task


def named(cls: type, name: str) -> type:
    """A subclass of `cls` called `name`: Ray Data names an operator after its callable's class."""
    return type(name, (cls,), {"__module__": cls.__module__, "__qualname__": name})


def run_units(
    units: list[dict[str, Any]],
    step: Step,
    resources: Resources,
    stateful: bool,
    cluster_cpus: int,
    first: bool,
) -> list[dict[str, Any]]:
    """Run `step` on each unit, in parallel; returns the units' completion records."""
    import ray

    if not units:
        return []
    items = ray.data.from_items([{"unit": json.dumps(u)} for u in units], override_num_blocks=len(units))
    common: dict[str, Any] = dict(
        batch_format="pyarrow", batch_size=1, zero_copy_batch=True, **resources.ray_options()
    )
    if stateful:
        max_actors = max(1, min(len(units), int(cluster_cpus // max(resources.num_cpus, 0.25))))
        # GPUs and custom resources bound the pool too, where the cluster has them now (an autoscaling cluster
        # whose GPU nodes start at 0 grows the pool as the autoscaler adds nodes)
        totals = ray.cluster_resources()
        needs = {"GPU": resources.num_gpus, **resources.custom}
        for key, per_actor in needs.items():
            if per_actor > 0 and totals.get(key, 0) > 0:
                max_actors = max(1, min(max_actors, int(totals[key] // per_actor)))
        # One unit in flight per actor: with Ray's default (several) one actor takes the whole queue of a small
        # input and the pool never grows. The first step starts at full size: nothing upstream needs the CPUs
        # its actors hold (Ray's own autoscaling left the pool at 1 of 2 actors on a 2-CPU machine).
        strategy = ray.data.ActorPoolStrategy(
            min_size=1,
            max_size=max_actors,
            max_tasks_in_flight_per_actor=1,
            # a pool on GPU (or custom-resource) nodes starts small: those nodes may still be coming up
            initial_size=max_actors if first and not any(v > 0 for v in needs.values()) else None,
        )
        out = items.map_batches(
            named(UnitRunner, step.title), fn_constructor_args=(step,), compute=strategy, **common
        )
    else:
        out = items.map_batches(named(UnitRunner, step.title)(step), **common)
    return [json.loads(r["record"]) for r in out.take_all()]


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
