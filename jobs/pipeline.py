"""Running a config: plan → execute → finalize.

`plan_run` (jobs/plan.py) decides everything that can be decided before work, without Ray; the backend
(jobs/ray_backend/) executes the plan; `finalize` (jobs/finalize.py) checks every count and commits. This module
only strings the three together, so the whole life of a run reads in one function.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from jobs.finalize import RunResult, finalize, noop_result
from jobs.plan import plan_run
from refinery.config import RunConfig
from refinery.progress import progress


def run_pipeline(
    cfg: RunConfig,
    config_source: str = "<config>",
    finalize_state: bool = True,
    manifest_extra: dict[str, Any] | None = None,
    on_commit: Callable[[str], None] | None = None,
    resume: bool = True,
) -> RunResult:
    """Run and commit. With finalize_state=False the caller (the nightly refresh) commits the state generations
    written by global stages itself, after it has published its pointer. `manifest_extra` adds keys to the
    manifest (the refresh records lineage: previous snapshot, content hashes). `on_commit(run_id)` is called as
    soon as the output is committed (the entry point uses it to tell a stop after the commit from one before).
    With `resume` (the default) a run whose earlier attempt was interrupted reuses the work that attempt finished;
    without it, it starts clean."""
    from jobs.ray_backend.executor import RayBackend

    plan = plan_run(cfg, config_source)
    if plan.status == "noop":
        progress("%s already holds this exact run (%s); nothing to do.", plan.output.uri, plan.run_id)
        return noop_result(plan)
    backend = RayBackend(cfg.ray)
    backend.start()
    execution = backend.execute(plan, resume=resume)
    return finalize(plan, execution, manifest_extra, finalize_state, on_commit)


def print_summary(result: RunResult, stream=sys.stdout) -> None:
    r = result.report
    w = stream.write
    w(f"\nrun {result.run_id}: {result.status} → {result.output_uri}\n")
    w(f"{'stage':<28}{'rows_in':>12}{'rows_out':>12}{'dropped':>12}{'seconds':>10}\n")
    for s in r.get("stages", []):
        w(
            f"{s['name']:<28}{s['rows_in']:>12}{s['rows_out']:>12}{sum(s['dropped'].values()):>12}{s['seconds']:>10.2f}\n"
        )
        for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1])[:5]:
            w(f"  - {reason:<24}{n:>36}\n")
    q = r.get("quarantined", {})
    sk = r.get("skipped", {})
    w(
        f"rows read {r.get('rows_read', 0)}, written {r.get('rows_out', 0)}, dropped {r.get('dropped_total', 0)}, "
        f"quarantined {sum(q.values())}{' ' + json.dumps(q) if q else ''}"
        f"{f', skipped {sum(sk.values())} ' + json.dumps(sk) if sk else ''}\n"
    )
    if "wall_seconds" in r:
        w(f"wall time {r['wall_seconds']:.1f}s\n")
