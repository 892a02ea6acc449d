"""Finalizing a run: check every count against what the readers produced, build the report and the manifest,
and commit (refinery/commit.py). Nothing here runs on the cluster and nothing imports Ray.

The checks are the promise that nothing is lost unseen: every planned read task reported its rows, the rows the
readers produced equal kept + dropped + quarantined + skipped as counted by the writers, and the staged parts
are distinct and hold exactly those rows. A run that fails any of them publishes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobs.plan import RunPlan, code_version
from refinery.accounting import build_report, check_accounting
from refinery.commit import commit
from refinery.state import commit_generations
from stages.readers import ReadTask

log = logging.getLogger("refinery")


@dataclass
class Execution:
    """What the backend hands back: file records of staged parts, merged writer stats, the read counts."""

    files: list[dict[str, Any]]
    stats: dict[str, Any]
    reads: dict[int, dict[str, Any]]  # read task key → {rows, counters}, as the readers reported them
    seconds: dict[str, float]  # per stage label, plus the reader's and writer's own time
    read_units: int
    read_ray_tasks: int
    duplicate_ids: int = 0
    wall_seconds: float = 0.0
    io_seconds: dict[str, float] = field(default_factory=dict)
    resume: dict[str, Any] = field(default_factory=dict)  # units (and global-stage steps) reused from a crash
    storage_retries: dict[str, int] = field(default_factory=dict)  # retried storage requests per operation


@dataclass
class RunResult:
    output_uri: str
    run_id: str
    status: str  # committed | noop
    report: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


class DuplicateIdsError(RuntimeError):
    """The input repeats ids and `input.on_duplicate_id` is `error`."""


class AccountingError(RuntimeError):
    """The counts do not balance: something was lost or doubled on the way, so nothing is published."""


def noop_result(plan: RunPlan) -> RunResult:
    """This exact run is already committed: its report and manifest."""
    return RunResult(
        plan.output.uri,
        plan.run_id,
        "noop",
        plan.output.join("report.json").read_json(),
        plan.output.join("manifest.json").read_json(),
    )


def finalize(
    plan: RunPlan,
    ex: Execution,
    manifest_extra: dict[str, Any] | None = None,
    finalize_state: bool = True,
    on_commit: Callable[[str], None] | None = None,
) -> RunResult:
    cfg = plan.cfg
    rows_read, input_counts = read_totals(plan.tasks, ex.reads)
    check_duplicate_ids(plan, ex.duplicate_ids)
    report = build_report(
        ex.stats,
        plan.labels,
        ex.seconds,
        rows_read=rows_read,
        extra={
            "run_id": plan.run_id,
            "wall_seconds": round(ex.wall_seconds, 3),
            "io_seconds": ex.io_seconds,
            "input": {"files": len(plan.files), **input_counts},
            "duplicate_ids": ex.duplicate_ids,
            # read_units planned vs Ray tasks that read: equal unless Ray Data bundled read items into fewer tasks
            "read_tasks": len(plan.tasks),
            "read_units": ex.read_units,
            "read_ray_tasks": ex.read_ray_tasks,
            "resume": ex.resume,
            "storage_retries": ex.storage_retries,
        },
    )
    problems = check_accounting(report) + check_files(ex.files, rows_read)
    if problems:
        raise AccountingError("accounting does not balance, nothing was published: " + "; ".join(problems))
    manifest = {
        "run_id": plan.run_id,
        "name": cfg.name,
        "created_at": plan.started_at,
        "code_version": code_version(),
        "config_source": plan.config_source,
        "config": cfg.public_dict(),
        "config_hash": cfg.config_hash(),
        "schema": [{"name": fld.name, "type": str(fld.type)} for fld in plan.schema()],
        "inputs": [f.to_dict() for f in plan.files],
        "counts": {
            "rows_read": report["rows_read"],
            "rows_out": report["rows_out"],
            "dropped": report["dropped_total"],
            "quarantined": sum(report["quarantined"].values()),
            "skipped": sum(report.get("skipped", {}).values()),
            "duplicate_ids": ex.duplicate_ids,
        },
        # what differs between attempts lives apart from what they must agree on (files, counts)
        "attempt": {"created_at": plan.started_at, **ex.resume},
        **(manifest_extra or {}),
    }
    assert plan.work is not None
    t0 = time.time()
    manifest = commit(plan.output.uri, plan.output.storage_options, plan.work.uri, ex.files, manifest, report)
    log.debug("commit took %.1fs", time.time() - t0)
    if on_commit is not None:
        on_commit(plan.run_id)
    if finalize_state:
        commit_generations(cfg.output.resolved_state_uri(), plan.run_id, cfg.output.storage_options)
    return RunResult(plan.output.uri, plan.run_id, "committed", report, manifest)


def check_duplicate_ids(plan: RunPlan, duplicate_ids: int) -> None:
    field_name = plan.cfg.input.id_field
    if duplicate_ids and plan.dup_policy == "error":
        raise DuplicateIdsError(
            f"the input holds {duplicate_ids} duplicate id(s) in {field_name!r} "
            "(input.on_duplicate_id: error); nothing was published. Set on_duplicate_id to keep "
            "or quarantine (quarantine/ then lists every repeat with its source location)"
        )
    if duplicate_ids and plan.dup_policy == "keep":
        log.warning(
            "the input holds %d duplicate id(s) in %r; all rows are kept (input.on_duplicate_id: keep)",
            duplicate_ids,
            field_name,
        )


def read_totals(tasks: list[ReadTask], reads: dict[int, dict[str, Any]]) -> tuple[int, dict[str, int]]:
    """Rows the readers produced, and their counters (blank lines …), as recorded per unit; every planned read task
    must have reported, or rows may be missing."""
    missing = [t.uri for i, t in enumerate(tasks) if i not in reads]
    if missing:
        raise AccountingError(
            f"{len(missing)} read task(s) never reported what they read (first: {missing[0]}); "
            "nothing was published"
        )
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
