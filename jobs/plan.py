"""Planning a run: everything that can be decided before any work, without Ray.

`plan_run(cfg)` lists the inputs (failing fast on bad credentials or a missing input), derives the run id, checks
that the output is ours and writable, splits the inputs into read tasks, instantiates the stages and groups them
into segments (fused per-batch groups and global stages), and settles the policies (duplicate ids, quarantined
raw bytes). The backend executes a `RunPlan`; `jobs/finalize.py` turns what it returns into a commit. Unit tests
call `plan_run` directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

import refinery
from refinery.commit import WORK_DIR, check_output, probe_writable
from refinery.config import InputConfig, RunConfig
from refinery.fsio import InputFile, StorageError, list_inputs
from refinery.ids import id_partitions
from refinery.location import Location
from refinery.progress import progress, warn
from refinery.redact import scrub
from refinery.schema import FLAGGED_FIELD, base_schema, merge_fields
from refinery.stage import GlobalStage, Resources, Stage, build_stage
from stages.readers import ReadTask, load_readers, plan_reads

PACK_BYTES = 32 << 20  # small whole files are packed into read units of about this many bytes
PACK_MAX_FILES = 256  # and at most this many files per unit (object stores pay a request per file)
PACK_MIN_UNITS = 64  # and into at least this many units when there are that many files (parallelism)
DupPolicy = Literal["keep", "quarantine", "error"]


@dataclass
class PlannedStage:
    label: str  # unique in the run: the stage name, or name#2 for a second use (drop reasons, report)
    name: str
    params: dict[str, Any]
    stage: Stage[Any]


@dataclass
class StageGroup:
    """Consecutive per-batch stages run as one operator: one pass over each batch, no serialization between."""

    stages: list[PlannedStage]

    @property
    def name(self) -> str:
        return "+".join(p.label for p in self.stages)

    @property
    def resources(self) -> Resources:
        """What one worker of the fused group needs: the most any member asks for."""
        res = [p.stage.resources for p in self.stages]
        mem = [r.memory_mb for r in res if r.memory_mb]
        custom: dict[str, float] = {}
        for r in res:
            for k, v in r.custom.items():
                custom[k] = max(custom.get(k, 0.0), v)
        return Resources(
            num_cpus=max(r.num_cpus for r in res),
            num_gpus=max(r.num_gpus for r in res),
            memory_mb=max(mem) if mem else None,
            custom=custom,
        )

    @property
    def stateful(self) -> bool:
        """Run on an actor pool (models load once per actor) rather than as tasks."""
        return any(p.stage.stateful for p in self.stages) or self.resources.num_gpus > 0

    def specs(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(p.label, p.name, p.params) for p in self.stages]


Segment = StageGroup | PlannedStage


@dataclass
class RunPlan:
    cfg: RunConfig
    config_source: str
    run_id: str
    files: list[InputFile]
    output: Location
    status: Literal["fresh", "overwrite", "noop"]
    started_at: str = ""
    work: Location | None = None  # _work/<run_id>/
    tasks: list[ReadTask] = field(default_factory=list)
    unclaimed: list[InputFile] = field(default_factory=list)
    stages: list[PlannedStage] = field(default_factory=list)  # the config's stages
    segments: list[Segment] = field(default_factory=list)  # what runs, in order (implicit steps included)
    rows_per_shard: int = 100_000
    input_cfg: InputConfig | None = None  # what the readers get (raw bytes dropped when policy says so)
    dup_policy: DupPolicy | None = None  # None: no id field, ids are locations and never repeat
    id_hashes: Location | None = None  # where writers leave id hashes for the duplicate count
    id_parts: int = 1
    raw_policy: Literal["keep", "scrub", "drop"] = "keep"

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.stages]

    def schema(self) -> pa.Schema:
        return output_schema(self.stages)

    def raw_scrubber(self) -> Any:
        """What the writers apply to quarantined raw bytes (the pii stage's patterns), if anything."""
        if self.raw_policy != "scrub":
            return None
        from stages.pii.scrub import RawScrubber

        return RawScrubber(next(p.params for p in self.stages if p.name == "pii"))


def plan_run(cfg: RunConfig, config_source: str = "<config>") -> RunPlan:
    """Everything decided before work starts; raises StorageError/OutputExistsError for what must stop it."""
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        files = list_config_inputs(cfg)
    except StorageError as e:
        raise StorageError(scrub(str(e), cfg.secrets())) from None
    run_id = compute_run_id(cfg, files)
    output = Location(cfg.output.uri, cfg.output.storage_options)
    status = check_output(output.uri, output.storage_options, run_id, cfg.output.if_exists)
    plan = RunPlan(cfg, config_source, run_id, files, output, status, started_at)  # type: ignore[arg-type]
    if status == "noop":
        return plan
    plan.work = output.join(WORK_DIR, run_id)
    probe_writable(plan.work.uri, output.storage_options)
    plan.raw_policy = cfg.raw_policy()
    plan.input_cfg = (
        cfg.input if plan.raw_policy != "drop" else cfg.input.model_copy(update={"quarantine_raw_bytes": 0})
    )
    plan.tasks, plan.unclaimed = plan_reads(files, cfg.input, run_id)
    plan.stages = plan_stages(cfg)
    forgotten = forgotten_check(cfg)
    if (
        forgotten is not None
    ):  # documents erased by `refinery forget` must not come back (stages/forgotten.py)
        at = next((i + 1 for i, p in enumerate(plan.stages) if p.name == "normalize"), 0)
        plan.stages.insert(at, forgotten)
    plan.dup_policy = cfg.input.on_duplicate_id if cfg.input.id_field else None
    implicit = [duplicate_id_check()] if plan.dup_policy == "quarantine" else []
    plan.segments = group_stages([*implicit, *plan.stages])
    plan.rows_per_shard, row_bytes = rows_per_shard(plan.tasks, cfg, run_id)
    if plan.dup_policy in ("keep", "error"):
        plan.id_hashes = plan.work.join("ids")
        plan.id_parts = id_partitions(sum(f.size for f in files) * 3 // row_bytes)
    progress(
        "run %s: %d input file(s), %d read task(s), %d stage(s) → %s",
        run_id,
        len(files),
        len(plan.tasks),
        len(plan.stages),
        output.uri,
    )
    if plan.unclaimed:
        progress("%d file(s) have no reader and go to quarantine (unsupported_format)", len(plan.unclaimed))
    for p in plan.stages:
        line = p.stage.describe()
        if line and p.stage.uncovered():
            warn("%s", line)
        elif line:
            progress("%s", line)
    return plan


def list_config_inputs(cfg: RunConfig) -> list[InputFile]:
    """`input.files` when given (each resolved like a one-file input), else everything under `input.uri`."""
    if cfg.input.files is None:
        return list_inputs(cfg.input.uri, cfg.input.storage_options, cfg.input.exclude)
    found: dict[str, InputFile] = {}
    for uri in cfg.input.files:
        for f in list_inputs(uri, cfg.input.storage_options, cfg.input.exclude):
            found[f.uri] = f
    if not found:
        raise StorageError("input.files lists no readable files")
    return sorted(found.values(), key=lambda f: f.uri)


def compute_run_id(cfg: RunConfig, files: list[InputFile]) -> str:
    """Deterministic: the same config on the same inputs is the same run (so a re-run is recognised)."""
    h = hashlib.sha256(cfg.config_hash().encode())
    for f in files:
        h.update(f"{f.uri}|{f.size}|{f.etag}|{f.mtime}\n".encode())
    return h.hexdigest()[:16]


def plan_stages(cfg: RunConfig) -> list[PlannedStage]:
    """Instantiate stages (no setup) and give each a unique label used in drop reasons and the report."""
    planned = []
    for spec, label in zip(cfg.stages, stage_labels([s.stage for s in cfg.stages]), strict=True):
        stage = build_stage(spec.stage, spec.params, spec.resources)
        planned.append(PlannedStage(label, spec.stage, dict(spec.params), stage))
    return planned


def stage_labels(names: list[str]) -> list[str]:
    """Each stage's label: its name, or name#2 for a second use (drop reasons, the report, `flagged`)."""
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return labels


def forgotten_check(cfg: RunConfig) -> PlannedStage | None:
    """The implicit `forgotten` stage, when the run's state holds documents erased by `refinery forget`."""
    from stages.forgotten import FORGOTTEN

    state = Location(cfg.output.resolved_state_uri(), cfg.output.storage_options)
    if not state.join(FORGOTTEN).exists():
        return None
    params = {"state_uri": state.uri, "storage_options": dict(cfg.output.storage_options)}
    return PlannedStage("forgotten", "forgotten", params, build_stage("forgotten", params))


def duplicate_id_check() -> PlannedStage:
    """The implicit global step of `on_duplicate_id: quarantine`: exact dedup keyed by id, earliest record kept,
    the repeats marked `quarantine:duplicate_id` (its label is the quarantine prefix, so they count as quarantined,
    not as a stage's drops)."""
    params = {"by": "id", "priority": ["earliest"], "update_index": False}
    return PlannedStage("quarantine", "exact_dedup", params, build_stage("exact_dedup", params))


def group_stages(planned: list[PlannedStage]) -> list[Segment]:
    """Fuse runs of consecutive per-batch stages that need the same kind of node (GPU or not, the same custom
    resources); globals stand alone."""
    segments: list[Segment] = []
    run: list[PlannedStage] = []
    for p in planned:
        if isinstance(p.stage, GlobalStage):
            if run:
                segments.append(StageGroup(run))
                run = []
            segments.append(p)
            continue
        if run and run[-1].stage.resources.device() != p.stage.resources.device():
            segments.append(StageGroup(run))
            run = []
        run.append(p)
    if run:
        segments.append(StageGroup(run))
    return segments


def place_on_devices(segments: list[Segment], cluster_gpus: float) -> list[Segment]:
    """Settle each stage's resources for the cluster the run found (a classifier asks for GPUs only where there
    are some) and fuse again, since a stage that moved to a GPU no longer shares an operator with CPU stages."""
    planned: list[PlannedStage] = []
    for seg in segments:
        planned += seg.stages if isinstance(seg, StageGroup) else [seg]
    for p in planned:
        p.stage.resources = p.stage.resources_on(cluster_gpus)
    return group_stages(planned)


def output_schema(planned: list[PlannedStage]) -> pa.Schema:
    fields = list(base_schema())
    for p in planned:
        fields += p.stage.output_fields()
    if any(getattr(p.stage.params, "action", None) == "annotate" for p in planned):
        fields.append(FLAGGED_FIELD)
    return pa.schema(merge_fields(fields))


def rows_per_shard(tasks: list[ReadTask], cfg: RunConfig, run_id: str) -> tuple[int, int]:
    """Estimate rows per writer batch from a small sample, so parts land near output.target_shard_mb; and the
    in-memory bytes per row of that sample.

    A writer batch is held in a worker's memory, so it is also capped at output.max_batch_mb of in-memory Arrow
    data: memory must not grow with the shard target (parts are then smaller than the target)."""
    target = int(min(cfg.output.target_shard_mb * 3, cfg.output.max_batch_mb) * (1 << 20))
    readers = load_readers()
    for task in tasks[:3]:
        try:
            batch = next(iter(readers[task.format](cfg.input, run_id).read(task)), None)
        except Exception:
            continue
        if batch is not None and batch.num_rows:
            per_row = max(64, batch.nbytes // batch.num_rows)
            return int(min(5_000_000, max(256, target // per_row))), per_row
    return 100_000, 1024


def pack_read_tasks(
    tasks: list[ReadTask],
    pack_bytes: int = PACK_BYTES,
    max_files: int = PACK_MAX_FILES,
    min_units: int = PACK_MIN_UNITS,
) -> list[list[tuple[int, ReadTask]]]:
    """Group read tasks into units of work, one backend task each, as (key, task) pairs; the key is the task's
    index.

    Why: each Ray task costs tens of milliseconds to schedule, so 10,000 one-line files read as 10,000 tasks
    took 558 s. Byte ranges and files of at least `pack_bytes` stay alone; smaller files are packed by bytes,
    into at least min(#files, `min_units`) units so that a small input still spreads over the cores. The
    packing depends on the input only, never on the cluster: a run resumed on another cluster finds the same
    units, and so reuses their completed work."""
    units: list[list[tuple[int, ReadTask]]] = []
    small: list[tuple[int, ReadTask]] = []
    for i, t in enumerate(tasks):
        if t.end is not None or t.size >= pack_bytes:
            units.append([(i, t)])
        else:
            small.append((i, t))
    if not small:
        return units
    min_units = min(len(small), min_units)
    target = min(pack_bytes, max(1, sum(t.size for _, t in small) // min_units))
    cap = min(max_files, -(-len(small) // min_units))
    cur: list[tuple[int, ReadTask]] = []
    cur_bytes = 0
    for item in small:  # a unit closes before it would pass the target: units stay small enough to resume by
        size = max(1, item[1].size)
        if cur and (cur_bytes + size > target or len(cur) >= cap):
            units.append(cur)
            cur, cur_bytes = [], 0
        cur.append(item)
        cur_bytes += size
    if cur:
        units.append(cur)
    return units


def code_version() -> str:
    version = refinery.__version__
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except Exception:
        sha = ""
    return f"{version}+g{sha}" if sha else version
