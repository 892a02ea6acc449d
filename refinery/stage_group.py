"""Apply a fused group of per-batch stages to one Arrow batch (the backend runs this inside a task or actor).

The runner, not the stages, owns the bookkeeping: it hides already-dropped rows from each stage, turns a stage's
drop reasons into dropped rows (``action: drop``) or ``flagged`` entries (``action: annotate``), and carries the
dropped rows along in their reduced form so the writer can count them exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.schema import DROP_COL, FLAGGED_COL, concat, row_slices, split_alive, to_dead
from refinery.stage import Stage, build_stage

StageSpecT = tuple[str, str, dict[str, Any]]  # (label, stage name, params)

_CACHE: dict[str, list[tuple[str, Stage]]] = {}


def build_group(specs: Sequence[StageSpecT]) -> list[tuple[str, Stage]]:
    """Instantiate and set up a group once per worker process (models load once, tasks reuse them)."""
    key = json.dumps(specs, sort_keys=True, default=str)
    if key not in _CACHE:
        group = []
        for label, name, params in specs:
            stage = build_stage(name, params)
            stage.setup()
            group.append((label, stage))
        _CACHE[key] = group
    return _CACHE[key]


def apply_group(
    group: Sequence[tuple[str, Stage]], batch: pa.Table, seconds: dict[str, float] | None = None
) -> pa.Table:
    alive, dead = split_alive(batch)
    dead_parts = [dead] if dead is not None else []
    for label, stage in group:
        if alive.num_rows == 0:
            break
        t0 = time.perf_counter()
        out, reasons = stage(alive)
        if reasons is not None and reasons.null_count < len(reasons):
            tagged = pc.binary_join_element_wise(
                pa.scalar(label, pa.string()), reasons.cast(pa.string()), ":"
            )
            if stage.action == "drop":
                keep = pc.is_null(tagged)
                dropped = pc.invert(keep)
                dead_parts.append(to_dead(out.filter(dropped), tagged.filter(dropped)))
                out = out.filter(keep)
            else:
                out = _add_flags(out, tagged)
        alive = out
        if seconds is not None:
            seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - t0
    return concat([alive, *dead_parts]) if dead_parts else alive


def _add_flags(table: pa.Table, tagged: pa.Array) -> pa.Table:
    new = tagged.to_pylist()
    old = table[FLAGGED_COL].to_pylist() if FLAGGED_COL in table.column_names else [None] * len(new)
    merged = [((o or []) + [t]) if t is not None else o for o, t in zip(old, new, strict=True)]
    arr = pa.array(merged, pa.list_(pa.string()))
    if FLAGGED_COL in table.column_names:
        return table.set_column(table.schema.get_field_index(FLAGGED_COL), FLAGGED_COL, arr)
    return table.append_column(FLAGGED_COL, arr)


def stage_batches(block: pa.Table, batch_rows: int | None) -> list[pa.Table]:
    """`block` in slices of `batch_rows` rows: Ray hands over whole blocks (its own row bundling would cost
    parallelism, see docs/ARCHITECTURE.md), while stages keep a bounded batch size. The slices of a block are
    always the same, which is what lets a unit resume after its last saved batch (jobs/ray_backend/unit_progress.py)."""
    return row_slices(block, batch_rows or block.num_rows or 1)


def annotate_global_drops(batch: pa.Table, label: str) -> pa.Table:
    """For a global stage run with action=annotate: move its `_drop` reasons into `flagged`."""
    if DROP_COL not in batch.column_names:
        return batch
    tagged = batch[DROP_COL].combine_chunks()
    return _add_flags(batch.drop_columns([DROP_COL]), tagged)
