"""Executing a `RunPlan` on Ray: steps over units of work, global stages between them.

A step takes a set of units (packed input files for the first, files or partitions of the step before for the
others), applies one fused stage group to each, and stages its rows as parts; every unit leaves a completion
record (jobs/ray_backend/units.py). A global stage between two steps reads the checkpoint the first left and
hands the second its output partitions. So a run is a sequence of durable results: a re-run with the same run id
reuses every unit whose record checks out and every finished step of a global stage, and redoes the rest. The
driver only ever holds file lists and records, never rows. What comes back (`Execution`) is checked and
committed by jobs/finalize.py.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from typing import Any

from jobs.finalize import Execution
from jobs.plan import PlannedStage, RunPlan, StageGroup, output_schema, pack_read_tasks, place_on_devices
from jobs.ray_backend import cluster
from jobs.ray_backend.global_ops import CheckpointSource, ItemSource, RayGlobalBackend
from jobs.ray_backend.operators import CHECKPOINT_ROW_GROUP, run_units
from jobs.ray_backend.units import READ_LABEL, WRITE_LABEL, Step, unit_digest, valid_record
from refinery.accounting import empty_stats, merge_stats
from refinery.config import RayConfig
from refinery.fsio import retries_since, retry_counts
from refinery.ids import count_duplicates
from refinery.location import Location
from refinery.progress import progress
from refinery.stage import GlobalContext, Resources
from refinery.writer import PartWriter

HEARTBEAT = "_RUNNING"  # in _work/<run_id>/ while a driver works on it (refinery gc leaves such runs alone)
HEARTBEAT_S = 60.0


@dataclasses.dataclass
class _Progress:
    files: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # staged parts to publish
    stats: dict[str, Any] = dataclasses.field(default_factory=empty_stats)
    reads: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    read_tasks: set[str] = dataclasses.field(default_factory=set)
    retries: dict[str, int] = dataclasses.field(default_factory=dict)
    units: int = 0
    units_reused: int = 0
    batches_reused: int = 0  # stage batches of unfinished units that an earlier attempt had saved
    read_units: int = 0
    steps_reused: list[str] = dataclasses.field(default_factory=list)

    def add_seconds(self, seconds: dict[str, float]) -> None:
        for k, v in seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v

    def add_retries(self, retries: dict[str, int]) -> None:
        for k, v in retries.items():
            self.retries[k] = self.retries.get(k, 0) + int(v)


class RayBackend:
    """Runs plans on a Ray cluster: the embedded local one by default, or the one `RAY_ADDRESS` names."""

    def __init__(self, ray_cfg: RayConfig):
        self.ray_cfg = ray_cfg

    def start(self) -> None:
        cluster.init_ray(self.ray_cfg)

    def execute(self, plan: RunPlan, resume: bool = True) -> Execution:
        assert plan.work is not None and plan.input_cfg is not None
        t_start = time.time()
        retries_before = retry_counts()
        if not resume:
            plan.work.remove(recursive=True)
        stop = _heartbeat(plan.work)
        try:
            prog = self._steps(plan)
        finally:
            stop.set()
        duplicate_ids = self._count_duplicate_ids(plan, prog.stats)
        prog.add_retries(retries_since(retries_before))
        io = {
            "read": round(prog.seconds.get(READ_LABEL, 0.0), 3),
            "write": round(prog.seconds.get(WRITE_LABEL, 0.0), 3),
        }
        resume_info = {
            "units": prog.units,
            "units_reused": prog.units_reused,
            "batches_reused": prog.batches_reused,
            "steps_reused": prog.steps_reused,
        }
        return Execution(
            files=prog.files,
            stats=prog.stats,
            reads=prog.reads,
            seconds=prog.seconds,
            read_units=prog.read_units,
            read_ray_tasks=len(prog.read_tasks),
            duplicate_ids=duplicate_ids,
            wall_seconds=time.time() - t_start,
            io_seconds=io,
            resume=resume_info,
            storage_retries={k: v for k, v in sorted(prog.retries.items()) if v},
        )

    # ----------------------------------------------------------------------------------------------------------

    def _steps(self, plan: RunPlan) -> _Progress:
        assert plan.work is not None
        cfg = plan.cfg
        cpus, gpus = cluster.cluster_cpus(), cluster.cluster_gpus()
        prog = _Progress()
        units: list[dict[str, Any]] = [
            {"id": f"r{i:06d}", "read": [[k, dataclasses.asdict(t)] for k, t in unit]}
            for i, unit in enumerate(pack_read_tasks(plan.tasks))
        ]
        prog.read_units = len(units)
        segments = place_on_devices(plan.segments, gpus)
        so_far: list[PlannedStage] = []
        item_source: ItemSource | None = None
        annotate: str | None = None
        n = 0
        while True:
            group = segments.pop(0) if segments and isinstance(segments[0], StageGroup) else None
            final = not segments
            stages_now = so_far + (group.stages if group else [])
            step = Step(
                name=f"s{n}",
                title=("read+" if n == 0 else "") + (group.name if group else "copy"),
                specs=group.specs() if group else [],
                batch_rows=cfg.ray.batch_rows,
                writer=self._writer(plan, plan.work.join(f"s{n}"), stages_now, final),
                done=plan.work.join("done", f"s{n}"),
                run_id=plan.run_id,
                progress=plan.work.join("progress", f"s{n}")
                if cfg.ray.checkpoint_seconds is not None
                else None,
                checkpoint_s=cfg.ray.checkpoint_seconds or 0.0,
                input_cfg=plan.input_cfg,
                files_options=cfg.output.storage_options,
                item_fn=item_source.fn if item_source else None,
                annotate_label=annotate,
            )
            res = group.resources if group else Resources(num_cpus=1)
            records = self._run_step(
                step, units, res, bool(group and group.stateful), cpus, first=n == 0, prog=prog
            )
            data = self._collect(step, records, final, prog, first=n == 0)
            if final:
                return prog
            so_far = stages_now
            n += 1
            nxt = segments[0]
            if isinstance(nxt, StageGroup):  # another device: the next step reads these files
                units, item_source, annotate = _file_units(plan.work, data), None, None
                continue
            segments.pop(0)
            source = CheckpointSource([(plan.work.join(p), rows) for p, rows, _ in data], cpus, nxt.label)
            ctx = GlobalContext(
                work=plan.work.join(f"seg{n - 1}-{nxt.label}"),
                state=Location(cfg.output.resolved_state_uri(), cfg.output.storage_options),
                backend=RayGlobalBackend(),
                label=nxt.label,
                num_cpus=cpus,
                num_gpus=gpus,
                resources=nxt.stage.resources,
                input_bytes=sum(b for _, _, b in data),
                inputs=[plan.work.join(p) for p, _, _ in data],
            )
            t0 = time.time()
            out = nxt.stage.apply(source, ctx)
            prog.add_seconds({nxt.label: time.time() - t0})
            prog.steps_reused += [f"{nxt.label}:{s}" for s in ctx.reused_steps]
            so_far.append(nxt)
            if isinstance(out, ItemSource):
                units = [{"id": f"p{i:06d}", "item": item} for i, item in enumerate(out.items)]
                item_source, annotate = out, (nxt.label if nxt.stage.action == "annotate" else None)
            else:  # the stage changed nothing (an empty input): its checkpoint goes on as it is
                units, item_source, annotate = _file_units(plan.work, data), None, None

    def _run_step(
        self,
        step: Step,
        units: list[dict[str, Any]],
        res: Resources,
        stateful: bool,
        cpus: int,
        first: bool,
        prog: _Progress,
    ) -> list[dict[str, Any]]:
        """Reuse the units whose completion record checks out; run the others."""
        recorded = {loc.name[: -len(".json")]: loc for loc in step.done.find(".json")}
        checks = [(unit_digest(u), recorded[u["id"]]) for u in units if u["id"] in recorded]
        reused: list[dict[str, Any]] = []
        if checks:
            staging = step.writer.staging
            chunks = [checks[i : i + 16] for i in range(0, len(checks), 16)]
            found = RayGlobalBackend().run_wave(
                _load_records, [(staging, c) for c in chunks], Resources(num_cpus=1), f"{step.title}:resume"
            )
            reused = [r for chunk in found for r in chunk if r is not None]
        done = {r["unit"] for r in reused}
        pending = [u for u in units if u["id"] not in done]
        if reused:
            progress("%s: %d of %d unit(s) already done, reused", step.title, len(reused), len(units))
        fresh = run_units(pending, step, res, stateful, cpus, first)
        prog.units += len(units)
        prog.units_reused += len(reused)
        prog.batches_reused += sum(int(r.get("batches_reused", 0)) for r in fresh)
        return reused + fresh

    def _collect(
        self, step: Step, records: list[dict[str, Any]], final: bool, prog: _Progress, first: bool
    ) -> list[tuple[str, int, int]]:
        """Fold the step's records into the run's progress; returns the data files (path, rows, bytes) that go on
        to the next step (none after the last)."""
        data: list[tuple[str, int, int]] = []
        for rec in sorted(records, key=lambda r: r["unit"]):
            for f in rec["files"]:
                path = f"{step.name}/{f['path']}"
                if f["kind"] == "data" and not final:
                    data.append((path, int(f["rows"]), int(f["bytes"])))
                else:
                    prog.files.append({**f, "path": path})
            stats = rec["stats"]
            if not final:  # live rows go on; only the dead rows of this step are final
                stats = {**stats, "rows_kept": 0, "kept_lang": {}, "counters": {}, "flagged": {}}
            prog.stats = merge_stats(prog.stats, stats)
            prog.add_seconds(rec.get("seconds", {}))
            prog.add_retries(rec.get("retries", {}))
            if first:
                prog.reads.update({int(k): v for k, v in rec.get("reads", {}).items()})
                if rec.get("task"):
                    prog.read_tasks.add(rec["task"])
        return data

    def _writer(
        self, plan: RunPlan, staging: Location, stages: list[PlannedStage], final: bool
    ) -> PartWriter:
        out = plan.cfg.output
        part_mb = min(out.target_shard_mb * 3, out.max_batch_mb)  # in memory; zstd shrinks text ~3x on disk
        return PartWriter(
            staging,
            plan.schema() if final else output_schema(stages),
            out.compression,
            int(part_mb * (1 << 20)),
            [(p.label, p.stage) for p in stages],
            row_group_rows=64 * 1024 if final else CHECKPOINT_ROW_GROUP,
            id_hashes=plan.id_hashes,
            id_parts=plan.id_parts,
            count_live_ids=final,
            raw_scrub=plan.raw_scrubber(),
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


def _file_units(work: Location, data: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """One unit per data file of a step (its name is its sha256: a stable id)."""
    return [
        {"id": "f-" + path.rsplit("/", 1)[-1].removesuffix(".parquet"), "files": [work.join(path).uri]}
        for path, _, _ in data
    ]


def _load_records(staging: Location, checks: list[tuple[str, Location]]) -> list[dict[str, Any] | None]:
    """The completion records that can be trusted, None for others: (unit digest, record) pairs whose record
    describes that very work (checked first: it is cheap) and names every file with its size and sha256."""
    out: list[dict[str, Any] | None] = []
    for digest, loc in checks:
        rec = loc.read_json_or_none()
        trusted = isinstance(rec, dict) and rec.get("unit_sha256") == digest and valid_record(rec, staging)
        out.append(rec if trusted else None)
    return out


def _heartbeat(work: Location) -> threading.Event:
    """Mark the run folder as in use while this driver works on it (`refinery gc` skips it)."""
    stop = threading.Event()
    marker = work.join(HEARTBEAT)
    owner = {"host": socket.gethostname(), "pid": os.getpid()}

    def beat() -> None:
        while not stop.is_set():
            try:
                marker.write_json({**owner, "at": time.time()}, indent=None)
            except Exception:
                pass
            stop.wait(HEARTBEAT_S)
        try:
            marker.remove()
        except Exception:
            pass

    threading.Thread(target=beat, name="refinery-heartbeat", daemon=True).start()
    return stop
