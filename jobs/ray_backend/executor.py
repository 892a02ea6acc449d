"""Executing a `RunPlan` on Ray Data: read → fused stage groups → (checkpoint → global stage)* → write.

The driver only ever holds file lists and per-part records, never rows. Every operator is named after the stages
it runs. What comes back (`jobs.finalize.Execution`) is checked and committed by jobs/finalize.py.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from jobs.finalize import Execution
from jobs.plan import PlannedStage, RunPlan, StageGroup, output_schema, pack_read_tasks
from jobs.ray_backend import cluster
from jobs.ray_backend.global_ops import RayGlobalBackend
from jobs.ray_backend.operators import (
    CHECKPOINT_ROW_GROUP,
    ReadFn,
    annotate_global,
    apply_stage_group,
    named,
    read_checkpoint,
    read_dataset,
    read_items,
    write,
)
from refinery.accounting import empty_stats, merge_stats
from refinery.config import RayConfig
from refinery.ids import count_duplicates
from refinery.location import Location
from refinery.progress import progress
from refinery.stage import GlobalContext, Resources
from refinery.writer import PartWriter


class RayBackend:
    """Runs plans on a Ray cluster: the embedded local one by default, or the one `RAY_ADDRESS` names."""

    def __init__(self, ray_cfg: RayConfig):
        self.ray_cfg = ray_cfg

    def start(self) -> None:
        cluster.init_ray(self.ray_cfg)

    def execute(self, plan: RunPlan) -> Execution:
        import ray

        from jobs.ray_backend.ledger import READ_LABEL, WRITE_LABEL, RunLedger

        assert plan.work is not None and plan.input_cfg is not None
        t_start = time.time()
        cfg = plan.cfg
        cpus = cluster.cluster_cpus()
        units = pack_read_tasks(plan.tasks, cpus)
        if plan.id_hashes is not None:
            plan.id_hashes.remove(recursive=True)  # hashes of a crashed attempt would be counted twice
        ledger_name = f"refinery-ledger-{plan.run_id}-{uuid.uuid4().hex[:6]}"
        ledger = RunLedger.options(name=ledger_name, num_cpus=0).remote()
        try:
            read = named(ReadFn, "read")(plan.input_cfg, plan.run_id, ledger_name)
            raw_scrub = plan.raw_scrubber()
            items = read_items(units)
            segments = plan.segments
            # the first group of per-batch stages reads its own input; otherwise a read operator does
            ds = items if segments and isinstance(segments[0], StageGroup) else read_dataset(items, read)
            files: list[dict[str, Any]] = []
            stats = empty_stats()
            so_far: list[PlannedStage] = []
            for i, seg in enumerate(segments):
                if isinstance(seg, StageGroup):
                    ds = apply_stage_group(
                        ds, seg, cfg.ray.batch_rows, ledger_name, cpus, read if i == 0 else None
                    )
                    so_far += seg.stages
                    continue
                # A global stage: checkpoint live rows (dead rows are final and go straight to staging).
                seg_name = f"seg{sum(1 for s in segments[:i] if isinstance(s, PlannedStage))}"
                writer = self._writer(plan, plan.work.join(seg_name), so_far, raw_scrub, CHECKPOINT_ROW_GROUP)
                t0 = time.time()
                f, s = collect(
                    write(
                        ds,
                        writer,
                        plan.rows_per_shard,
                        cfg.output.max_batch_mb,
                        ledger_name,
                        f"checkpoint:{seg.label}",
                    ),
                    seg_name,
                )
                progress(
                    "checkpointed %d live rows before %s in %.1fs",
                    s["rows_kept"],
                    seg.label,
                    time.time() - t0,
                )
                stats = merge_stats(
                    stats, {**s, "rows_kept": 0, "kept_lang": {}, "counters": {}, "flagged": {}}
                )
                files += [x for x in f if x["path"].split("/")[1] != "data"]
                data_files = [x for x in f if x["path"].split("/")[1] == "data"]
                ds = read_checkpoint(
                    [(plan.work.join(x["path"]), int(x["rows"])) for x in data_files], cpus, name=seg.label
                )
                ctx = GlobalContext(
                    work=plan.work.join(f"{seg_name}-{seg.label}"),
                    state=Location(cfg.output.resolved_state_uri(), cfg.output.storage_options),
                    backend=RayGlobalBackend(),
                    label=seg.label,
                    num_cpus=cpus,
                    num_gpus=cluster.cluster_gpus(),
                    resources=seg.stage.resources,
                    input_bytes=sum(int(x["bytes"]) for x in data_files),
                )
                t0 = time.time()
                ds = seg.stage.apply(ds, ctx)
                if seg.stage.action == "annotate":
                    ds = annotate_global(ds, seg.label)
                ray.get(ledger.add.remote({seg.label: time.time() - t0}))
                so_far.append(seg)
            writer = self._writer(plan, plan.work.join("final"), plan.stages, raw_scrub)
            f, s = collect(
                write(ds, writer, plan.rows_per_shard, cfg.output.max_batch_mb, ledger_name), "final"
            )
            files += f
            stats = merge_stats(stats, s)
            duplicate_ids = self._count_duplicate_ids(plan, stats)
            seconds = ray.get(ledger.totals.remote())
            task_counts = ray.get(ledger.task_counts.remote())
            reads = ray.get(ledger.reads.remote())
        finally:
            try:
                ray.kill(ledger)
            except Exception:
                pass
        io = {
            "read": round(seconds.get(READ_LABEL, 0.0), 3),
            "write": round(seconds.get(WRITE_LABEL, 0.0), 3),
        }
        return Execution(
            files=files,
            stats=stats,
            reads=reads,
            seconds=seconds,
            read_units=len(units),
            read_ray_tasks=task_counts.get(READ_LABEL, 0),
            duplicate_ids=duplicate_ids,
            wall_seconds=time.time() - t_start,
            io_seconds=io,
        )

    def _writer(
        self,
        plan: RunPlan,
        staging: Location,
        stages: list[PlannedStage],
        raw_scrub: Any,
        row_group_rows: int = 64 * 1024,
    ) -> PartWriter:
        out = plan.cfg.output
        return PartWriter(
            staging,
            output_schema(stages),
            out.compression,
            int(out.target_shard_mb * (1 << 20)),
            [(p.label, p.stage) for p in stages],
            row_group_rows=row_group_rows,
            id_hashes=plan.id_hashes,
            id_parts=plan.id_parts,
            raw_scrub=raw_scrub,
        )

    def _count_duplicate_ids(self, plan: RunPlan, stats: dict[str, Any]) -> int:
        """Rows whose id an earlier row already had: counted from the writers' id hashes, or, when repeats were
        quarantined, the number quarantined."""
        if plan.id_hashes is None:
            return int(stats.get("drop", {}).get("quarantine:duplicate_id", 0))
        args = [(plan.id_hashes, k) for k in range(plan.id_parts)]
        return sum(
            RayGlobalBackend().run_wave(count_duplicates, args, Resources(num_cpus=1), "duplicate_ids")
        )


def collect(records: list[dict[str, Any]], segment: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Split the writer's records into staged files (paths under `segment/`) and merged stats."""
    files, stats = [], empty_stats()
    for r in records:
        if r["kind"] == "stats":
            stats = merge_stats(stats, json.loads(r["stats"]))
        else:
            files.append({**r, "path": f"{segment}/{r['path']}"})
    return files, stats
