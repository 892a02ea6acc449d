"""Build and run the Ray Data plan for a validated config, then commit the output.

The plan: discover inputs on the driver (fail fast) → read tasks (one per file or byte range) → fused groups of
per-batch stages (tasks, or actor pools for model stages) → at each global stage, checkpoint the live rows to
Parquet under the work prefix and hand a Dataset over them to the stage → write staged parts → commit.
The driver only ever holds file lists and per-part records, never rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

import refinery
from refinery.accounting import build_report, check_accounting, empty_stats, merge_stats
from refinery.commit import WORK_DIR, check_output, commit, probe_writable, remove_tree
from refinery.config import RunConfig
from refinery.fsio import InputFile, StorageError, join, list_inputs
from refinery.ids import id_partitions
from refinery.redact import scrub
from refinery.schema import FLAGGED_FIELD, base_schema, merge_fields
from refinery.stage import GlobalContext, GlobalStage, Stage, build_stage
from refinery.state import commit_generations
from refinery.writer import PartWriter
from stages.readers import ReadTask, load_readers, plan_reads

log = logging.getLogger("refinery")


@dataclass
class RunResult:
    output_uri: str
    run_id: str
    status: str  # committed | noop
    report: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlannedStage:
    label: str
    name: str
    params: dict[str, Any]
    stage: Stage


def plan_stages(cfg: RunConfig) -> list[PlannedStage]:
    """Instantiate stages (no setup) and give each a unique label used in drop reasons and the report."""
    seen: dict[str, int] = {}
    planned = []
    for spec in cfg.stages:
        n = seen.get(spec.stage, 0) + 1
        seen[spec.stage] = n
        label = spec.stage if n == 1 else f"{spec.stage}#{n}"
        planned.append(PlannedStage(label, spec.stage, dict(spec.params), build_stage(spec.stage, spec.params)))
    return planned


def output_schema(planned: list[PlannedStage]) -> pa.Schema:
    fields = list(base_schema())
    for p in planned:
        fields += p.stage.output_fields()
    if any(getattr(p.stage.params, "action", None) == "annotate" for p in planned):
        fields.append(FLAGGED_FIELD)
    return pa.schema(merge_fields(fields))


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


def compute_run_id(cfg: RunConfig, files: list[InputFile]) -> str:
    """Deterministic: the same config on the same inputs is the same run (so a re-run is recognised)."""
    h = hashlib.sha256(cfg.config_hash().encode())
    for f in files:
        h.update(f"{f.uri}|{f.size}|{f.etag}|{f.mtime}\n".encode())
    return h.hexdigest()[:16]


def _rows_per_shard(tasks: list[ReadTask], cfg: RunConfig, run_id: str) -> tuple[int, int]:
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


class Stopped(BaseException):  # noqa: N818 (like KeyboardInterrupt, not an error of the run)
    """SIGTERM or SIGINT reached the driver: stop where we are; nothing is published without `_SUCCESS`."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signum)


def catch_stop_signals() -> None:
    """Turn SIGTERM/SIGINT into `Stopped` in the driver. `ray.init` installs a SIGTERM handler that calls
    sys.exit, which tears Ray down under its running threads and dies by SIGABRT with a C++ stack; so this runs
    after it."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stopped)
        signal.signal(signal.SIGINT, _raise_stopped)


def init_ray(cfg: RunConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or cfg.ray.address
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        catch_stop_signals()
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    kwargs["num_cpus"] = cfg.ray.num_cpus or os.cpu_count() or 1
    if cfg.ray.object_store_mb:
        kwargs["object_store_memory"] = cfg.ray.object_store_mb * (1 << 20)
    try:
        ray.init(**kwargs)
    except Exception as e:  # Ray gives a local raylet a fixed 30 s to register; an overloaded machine can miss it
        if "timed out during startup" not in str(e):
            raise
        log.warning("local Ray did not start in time (overloaded machine?); trying once more")
        ray.shutdown()
        ray.init(**kwargs)
    catch_stop_signals()


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _group_stages(planned: list[PlannedStage]) -> list[list[PlannedStage] | PlannedStage]:
    """Fuse runs of consecutive per-batch stages that need the same kind of device; globals stand alone."""
    segments: list[list[PlannedStage] | PlannedStage] = []
    run: list[PlannedStage] = []
    for p in planned:
        if isinstance(p.stage, GlobalStage):
            if run:
                segments.append(run)
                run = []
            segments.append(p)
            continue
        if run and (run[-1].stage.resources.num_gpus > 0) != (p.stage.resources.num_gpus > 0):
            segments.append(run)
            run = []
        run.append(p)
    if run:
        segments.append(run)
    return segments


def _apply_batch_group(ds, group: list[PlannedStage], cfg: RunConfig, timer_name: str, read: Any = None):
    """One map operator for a fused group of per-batch stages.

    `read` (the first group only): `ds` holds read-task descriptors and the group reads them itself, one per call.
    Reading inside the group's own operator, rather than counting on Ray to fuse a separate read operator, is
    what lets an actor pool start at full size: nothing upstream then needs a CPU that the actors hold. (When
    Ray did not fuse them, e.g. langid alone at 0.5 CPU per actor, actors holding every CPU starved the read
    tasks and the job hung; ../shared/ENVIRONMENT.md.) Otherwise `batch_size=None`: whole blocks in, sliced to
    `ray.batch_rows` by the group. A row-count batch_size would make Ray Data bundle the upstream operator's
    items into one task (min rows per bundle = max over a fused chain), i.e. run on one core."""
    import ray

    from jobs.stage_runner import StageGroupActor, StageGroupTask

    specs = [(p.label, p.name, p.params) for p in group]
    num_gpus = max(p.stage.resources.num_gpus for p in group)
    num_cpus = max(p.stage.resources.num_cpus for p in group)
    common = dict(batch_format="pyarrow", batch_size=1 if read else None, zero_copy_batch=True)
    if any(p.stage.stateful for p in group) or num_gpus > 0:
        max_actors = max(1, int(_cluster_cpus() // max(num_cpus, 0.25)))
        # One block in flight per actor: with Ray's default (several) one actor takes the whole queue of a small
        # input and the pool never grows. Start at full size only when the actors read (see above): Ray's
        # autoscaler left the pool at 1 of 2 actors on a 2-CPU machine.
        strategy = ray.data.ActorPoolStrategy(min_size=1, max_size=max_actors, max_tasks_in_flight_per_actor=1,
                                              initial_size=max_actors if read else None)
        return ds.map_batches(
            StageGroupActor,
            fn_constructor_args=(specs, timer_name, cfg.ray.batch_rows, read),
            compute=strategy,
            num_cpus=num_cpus,
            num_gpus=num_gpus or None,
            **common,
        )
    return ds.map_batches(StageGroupTask(specs, timer_name, cfg.ray.batch_rows, read), num_cpus=num_cpus, **common)


def _write(ds, writer: PartWriter, rows_per_shard: int, max_batch_mb: int, timer_name: str) -> list[dict[str, Any]]:
    """The writer is its own operator: it bundles blocks from many upstream tasks into parts of `rows_per_shard`
    rows. It declares the memory it needs (a worker process, ~256 MB, plus about three copies of the batch while
    encoding). That keeps Ray from packing too many writers on a node, and keeps Ray Data from fusing the writer
    into the read/stage operator, where its bundle size would count read items, not rows (see
    `_apply_batch_group`). It holds no CPU: writing is short and mostly I/O, and a writer waiting for a CPU that
    model actors hold would stall the whole stream."""
    from jobs.stage_runner import TimedWriter

    out = ds.map_batches(TimedWriter(writer, timer_name), batch_format="pyarrow", batch_size=rows_per_shard,
                         zero_copy_batch=True, num_cpus=0,
                         memory=(256 + 3 * max_batch_mb) * (1 << 20))
    return out.take_all()


def _collect(records: list[dict[str, Any]], segment: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    files, stats = [], empty_stats()
    for r in records:
        if r["kind"] == "stats":
            stats = merge_stats(stats, json.loads(r["stats"]))
        else:
            files.append({**r, "path": f"{segment}/{r['path']}"})
    return files, stats


def _list_config_inputs(cfg: RunConfig) -> list[InputFile]:
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


def run_pipeline(
    cfg: RunConfig,
    config_source: str = "<config>",
    finalize_state: bool = True,
    manifest_extra: dict[str, Any] | None = None,
    progress: dict[str, Any] | None = None,
) -> RunResult:
    """Run and commit. With finalize_state=False the caller (the nightly refresh) commits the state generations
    written by global stages itself, after it has published its pointer. `manifest_extra` adds keys to the
    manifest (the refresh records lineage: previous snapshot, content hashes)."""
    secrets = cfg.secrets()
    t_start = time.time()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        files = _list_config_inputs(cfg)
    except StorageError as e:
        raise StorageError(scrub(str(e), secrets)) from None
    run_id = compute_run_id(cfg, files)
    out_uri = cfg.output.uri.rstrip("/")
    so = cfg.output.storage_options
    state = check_output(out_uri, so, run_id, cfg.output.if_exists)
    if state == "noop":
        from refinery.commit import committed_manifest, read_json

        print(f"[refinery] {out_uri} already holds this exact run ({run_id}); nothing to do.")
        return RunResult(out_uri, run_id, "noop", read_json(join(out_uri, "report.json"), so), committed_manifest(out_uri, so) or {})
    work_uri = join(out_uri, WORK_DIR, run_id)
    probe_writable(work_uri, so)
    tasks, unclaimed = plan_reads(files, cfg.input, run_id)
    planned = plan_stages(cfg)
    labels = [p.label for p in planned]
    rows_per_shard, row_bytes = _rows_per_shard(tasks, cfg, run_id)
    dup_policy = cfg.input.on_duplicate_id if cfg.input.id_field else None
    if dup_policy == "quarantine":  # first occurrence (input order) kept, the others quarantined, before any stage
        planned_all = [duplicate_id_check(), *planned]
    else:
        planned_all = planned
    ids_uri = join(work_uri, "ids") if dup_policy in ("keep", "error") else None
    if ids_uri:
        remove_tree(ids_uri, so)  # hashes of a crashed attempt would be counted twice
    id_parts = id_partitions(sum(f.size for f in files) * 3 // row_bytes)
    print(
        f"[refinery] run {run_id}: {len(files)} input file(s), {len(tasks)} read task(s), "
        f"{len(planned)} stage(s) → {out_uri}"
    )
    if unclaimed:
        print(f"[refinery] {len(unclaimed)} file(s) have no reader and go to quarantine (unsupported_format)")

    import ray

    init_ray(cfg)
    from jobs.read_task import pack_read_tasks
    from jobs.stage_timer import StageTimer

    units = pack_read_tasks(tasks, _cluster_cpus())

    timer_name = f"refinery-timer-{run_id}-{uuid.uuid4().hex[:6]}"
    timer = StageTimer.options(name=timer_name, num_cpus=0).remote()
    try:
        from jobs.read_task import ReadFn

        raw_policy = cfg.raw_policy()
        input_cfg = cfg.input if raw_policy != "drop" else cfg.input.model_copy(update={"quarantine_raw_bytes": 0})
        raw_scrub = _raw_scrubber(planned) if raw_policy == "scrub" else None
        read = ReadFn(input_cfg, run_id, timer_name)
        segments = _group_stages(planned_all)
        items = _read_items(units)
        # the first group of per-batch stages reads its own input; otherwise a read operator does
        ds = items if segments and isinstance(segments[0], list) else _read_dataset(items, read)
        all_files: list[dict[str, Any]] = []
        stats = empty_stats()
        so_far: list[PlannedStage] = []
        seg_index = 0
        for i, seg in enumerate(segments):
            if isinstance(seg, list):
                ds = _apply_batch_group(ds, seg, cfg, timer_name, read if i == 0 else None)
                so_far += seg
                continue
            # A global stage: checkpoint live rows (dead rows are final and go straight to staging).
            seg_name = f"seg{seg_index}"
            seg_index += 1
            writer = PartWriter(join(work_uri, seg_name), so, output_schema(so_far), cfg.output.compression,
                                int(cfg.output.target_shard_mb * (1 << 20)), [(p.label, p.stage) for p in so_far],
                                row_group_rows=CHECKPOINT_ROW_GROUP, ids_uri=ids_uri, id_parts=id_parts,
                                raw_scrub=raw_scrub)
            t0 = time.time()
            f, s = _collect(_write(ds, writer, rows_per_shard, cfg.output.max_batch_mb, timer_name), seg_name)
            print(f"[refinery] checkpointed {s['rows_kept']} live rows before {seg.label} in {time.time() - t0:.1f}s")
            stats = merge_stats(stats, {**s, "rows_kept": 0, "kept_lang": {}, "counters": {}, "flagged": {}})
            all_files += [x for x in f if not x["path"].split("/")[1] == "data"]
            data_files = [x for x in f if x["path"].split("/")[1] == "data"]
            cpus = _cluster_cpus()
            ds = _read_checkpoint([(join(work_uri, x["path"]), int(x["rows"])) for x in data_files], so,
                                  num_cpus=cpus)
            ctx = GlobalContext(
                work_uri=join(work_uri, f"{seg_name}-{seg.label}"),
                state_uri=cfg.output.resolved_state_uri(),
                storage_options=so,
                num_cpus=cpus,
                label=seg.label,
                input_bytes=sum(int(x["bytes"]) for x in data_files),
            )
            t0 = time.time()
            ds = _apply_global(ds, seg, ctx)
            ray.get(timer.add.remote({seg.label: time.time() - t0}))
            so_far.append(seg)
        schema = output_schema(planned)
        writer = PartWriter(join(work_uri, "final"), so, schema, cfg.output.compression,
                            int(cfg.output.target_shard_mb * (1 << 20)), [(p.label, p.stage) for p in planned],
                            ids_uri=ids_uri, id_parts=id_parts, raw_scrub=raw_scrub)
        f, s = _collect(_write(ds, writer, rows_per_shard, cfg.output.max_batch_mb, timer_name), "final")
        all_files += f
        stats = merge_stats(stats, s)
        duplicate_ids = _count_duplicate_ids(ids_uri, so, id_parts, stats)
        seconds = ray.get(timer.totals.remote())
        task_counts = ray.get(timer.task_counts.remote())
        reads = ray.get(timer.reads.remote())
    finally:
        try:
            ray.kill(timer)
        except Exception:
            pass
    wall = time.time() - t_start
    from jobs.stage_runner import READ_LABEL, WRITE_LABEL

    io = {"read": round(seconds.get(READ_LABEL, 0.0), 3), "write": round(seconds.get(WRITE_LABEL, 0.0), 3)}
    rows_read, input_counts = _read_totals(tasks, reads)
    if duplicate_ids and dup_policy == "error":
        raise DuplicateIdsError(f"the input holds {duplicate_ids} duplicate id(s) in {cfg.input.id_field!r} "
                                "(input.on_duplicate_id: error); nothing was published. Set on_duplicate_id to keep "
                                "or quarantine (quarantine/ then lists every repeat with its source location)")
    if duplicate_ids and dup_policy == "keep":
        log.warning("the input holds %d duplicate id(s) in %r; all rows are kept (input.on_duplicate_id: keep)",
                    duplicate_ids, cfg.input.id_field)
    # read_units planned vs Ray tasks that read: equal unless Ray Data bundled read items into fewer tasks
    report = build_report(stats, labels, seconds, rows_read=rows_read,
                          extra={"run_id": run_id, "wall_seconds": round(wall, 3), "io_seconds": io,
                                 "input": {"files": len(files), **input_counts},
                                 "duplicate_ids": duplicate_ids,
                                 "read_tasks": len(tasks), "read_units": len(units),
                                 "read_ray_tasks": task_counts.get(READ_LABEL, 0)})
    problems = check_accounting(report) + check_files(all_files, rows_read)
    if problems:
        raise RuntimeError("accounting does not balance, nothing was published: " + "; ".join(problems))
    manifest = {
        "run_id": run_id,
        "name": cfg.name,
        "created_at": started_at,
        "code_version": code_version(),
        "config_source": config_source,
        "config": cfg.public_dict(),
        "config_hash": cfg.config_hash(),
        "schema": [{"name": fld.name, "type": str(fld.type)} for fld in schema],
        "inputs": [f.to_dict() for f in files],
        "counts": {
            "rows_read": report["rows_read"],
            "rows_out": report["rows_out"],
            "dropped": report["dropped_total"],
            "quarantined": sum(report["quarantined"].values()),
            "skipped": sum(report.get("skipped", {}).values()),
            "duplicate_ids": duplicate_ids,
        },
        **(manifest_extra or {}),
    }
    manifest = commit(out_uri, so, work_uri, all_files, manifest, report)
    if progress is not None:  # lets the entry point tell a stop after the commit from one before it
        progress["committed"] = run_id
    if finalize_state:
        commit_generations(cfg.output.resolved_state_uri(), run_id, so)
    return RunResult(out_uri, run_id, "committed", report, manifest)


def _read_items(units: list[list[tuple[int, ReadTask]]]):
    """One block per read unit (a few packed small files, or one big file or byte range), so each unit is one
    Ray task."""
    import ray

    items = [{"task": json.dumps([[k, dataclasses.asdict(t)] for k, t in unit])} for unit in units]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items)))


def _raw_scrubber(planned: list[PlannedStage]):
    from stages.pii import RawScrubber

    return RawScrubber(next(p.params for p in planned if p.name == "pii"))


class DuplicateIdsError(RuntimeError):
    """The input repeats ids and `input.on_duplicate_id` is `error`."""


def duplicate_id_check() -> PlannedStage:
    """The implicit global step of `on_duplicate_id: quarantine`: exact dedup keyed by id, earliest record kept,
    the repeats marked `quarantine:duplicate_id` (its label is the quarantine prefix, so they count as quarantined,
    not as a stage's drops)."""
    params = {"by": "id", "priority": ["earliest"], "update_index": False}
    return PlannedStage("quarantine", "exact_dedup", params, build_stage("exact_dedup", params))


def _count_duplicate_ids(ids_uri: str | None, storage_options: dict[str, Any], nparts: int,
                         stats: dict[str, Any]) -> int:
    """Rows whose id an earlier row already had: counted from the writers' id hashes, or, when repeats were
    quarantined, the number quarantined."""
    if ids_uri is None:
        return int(stats.get("drop", {}).get("quarantine:duplicate_id", 0))
    from refinery.ids import count_duplicates
    from stages.dedup.common import run_wave

    return sum(run_wave(count_duplicates, [(ids_uri, storage_options, k) for k in range(nparts)]))


def _read_totals(tasks: list[ReadTask], reads: dict[int, dict[str, Any]]) -> tuple[int, dict[str, int]]:
    """Rows the readers produced, and their counters (blank lines …), from the ledger; every planned read task
    must have reported, or rows may be missing."""
    missing = [t.uri for i, t in enumerate(tasks) if i not in reads]
    if missing:
        raise RuntimeError(f"{len(missing)} read task(s) never reported what they read (first: {missing[0]}); "
                           "nothing was published")
    counters: dict[str, int] = {}
    for r in reads.values():
        for k, v in (r.get("counters") or {}).items():
            counters[k] = counters.get(k, 0) + int(v)
    return sum(int(r["rows"]) for r in reads.values()), counters


def check_files(files: list[dict[str, Any]], rows_read: int) -> list[str]:
    """The files about to be published must be distinct and hold every row the readers produced (each read
    row ends in exactly one data, quarantine or droplog part)."""
    problems = []
    published = [f["path"].split("/", 1)[1] for f in files]
    if len(set(published)) != len(published):
        dup = next(p for p in published if published.count(p) > 1)
        problems.append(f"two staged parts would publish as {dup}")
    held = sum(int(f["rows"]) for f in files)
    if held != rows_read:
        problems.append(f"the staged parts hold {held} rows, the readers produced {rows_read}")
    return problems


def _read_dataset(items, read: Any):
    return items.map_batches(read, batch_format="pyarrow", batch_size=1, zero_copy_batch=True)


CHECKPOINT_ROW_GROUP = 8192  # rows per row group in checkpoints: the unit of parallelism of the next stage
MIN_SLICE_ROWS = 256  # smallest slice of a row group read as its own task


def _read_checkpoint(files: list[tuple[str, int]], storage_options: dict[str, Any],
                     row_group_rows: int = CHECKPOINT_ROW_GROUP, num_cpus: int = 1):
    """A Dataset over checkpoint Parquet files (uri, rows), one read task per row group, or per slice of one.

    Per row group, not per file: a small run's checkpoint is one file, and one task per file would run the next
    stage on one core. When there are fewer row groups than twice the CPUs, each is cut into row slices (of at
    least MIN_SLICE_ROWS) so the stage still gets a task per core; a slice re-reads its row group, which is
    cheap at that size. Not `ray.data.read_parquet`: on a 2-core machine its file-listing and metadata
    operators took 6-19 s per call even for one small file (measured, Ray 2.60), once per global stage."""
    import ray

    from jobs.read_task import ReadParquetFiles

    groups = [(p, g, min(row_group_rows, rows - g * row_group_rows))
              for p, rows in files for g in range(-(-rows // row_group_rows))]
    cuts = -(-2 * num_cpus // max(1, len(groups)))
    items = []
    for path, g, n in groups:
        step = -(-n // max(1, min(cuts, n // MIN_SLICE_ROWS)))
        items += [{"path": path, "row_group": g, "offset": o, "length": min(step, n - o)} for o in range(0, n, step)]
    items = items or [{"path": None, "row_group": -1, "offset": 0, "length": 0}]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    return ds.map_batches(ReadParquetFiles(storage_options), batch_format="pyarrow", batch_size=1, zero_copy_batch=True)


def _apply_global(ds, p: PlannedStage, ctx: GlobalContext):
    out = p.stage.apply(ds, ctx)
    if p.stage.action == "annotate":
        from jobs.stage_runner import annotate_global_drops

        out = out.map_batches(annotate_global_drops, batch_format="pyarrow", batch_size=None, fn_kwargs={"label": p.label})
    return out


def print_summary(result: RunResult, stream=sys.stdout) -> None:
    r = result.report
    w = stream.write
    w(f"\nrun {result.run_id}: {result.status} → {result.output_uri}\n")
    w(f"{'stage':<28}{'rows_in':>12}{'rows_out':>12}{'dropped':>12}{'seconds':>10}\n")
    for s in r.get("stages", []):
        w(f"{s['name']:<28}{s['rows_in']:>12}{s['rows_out']:>12}{sum(s['dropped'].values()):>12}{s['seconds']:>10.2f}\n")
        for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1])[:5]:
            w(f"  - {reason:<24}{n:>36}\n")
    q = r.get("quarantined", {})
    sk = r.get("skipped", {})
    w(f"rows read {r.get('rows_read', 0)}, written {r.get('rows_out', 0)}, dropped {r.get('dropped_total', 0)}, "
      f"quarantined {sum(q.values())}{' ' + json.dumps(q) if q else ''}"
      f"{f', skipped {sum(sk.values())} ' + json.dumps(sk) if sk else ''}\n")
    if "wall_seconds" in r:
        w(f"wall time {r['wall_seconds']:.1f}s\n")
