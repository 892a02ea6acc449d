"""Re-threshold a committed output from its stored signals: `refinery refilter OUTPUT --set … --out NEW`.

Why: filters get tuned by people. Every rule stage stores the signals it decided on (the `quality` struct), and
its decision is one pure function of those signals (`Stage.decide`, the same code `process` calls), so moving a
threshold costs a read and a write of the output instead of a re-run. No Ray: one pass over the data parts.

What can be recomputed, and what is refused (as a config error naming the `--set` key, exit 2):
- a changed threshold (or `skip`, `per_language`, `only_languages`) of a stage whose `decide` works from stored
  signals (gopher_quality, gopher_repetition, fineweb_quality); a change of `action` alone of any stage that
  annotated in the source (its verdicts are in `flagged`);
- refused: params that change how signals are computed (`stop_words`, an n-gram size that was not computed),
  stages without stored signals (length_filter, c4_quality, langid, pii), global stages (dedup: their
  signatures are not kept), and a change before a global stage that dropped rows (its clusters depended on which
  rows reached it).
- Rows a stage *dropped* in the source are not in the output: refilter can only drop more among the kept ones.
  Where a changed stage dropped rows in the source, `--tighten-only` must say that this is understood (rows it
  dropped stay dropped, with their old reason). Run the source with `action: annotate` to keep every row and its
  signals, and refilter can then move a threshold either way (docs/REFILTER.md).

The new output is a normal committed output: data parts, the source's drop log and quarantine carried over plus
the new drops, report.json with full accounting, and a manifest whose `refilter` section names the source (uri,
run id, manifest sha256), the overrides and the stages they changed.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from jobs.plan import code_version, stage_labels
from refinery.accounting import build_report, check_accounting, manifest_counts, merge_stats
from refinery.commit import MANIFEST, WORK_DIR, check_output, commit, committed_manifest
from refinery.config import ConfigError, _apply_override, _message
from refinery.location import Location
from refinery.progress import progress
from refinery.schema import DROP_COL, FLAGGED_COL, QUARANTINE_PREFIX
from refinery.stage import NotRecomputable, Stage, build_stage
from refinery.writer import PartWriter

SET_PREFIX = "stages."


@dataclass
class Change:
    index: int
    label: str
    old: Stage[Any]
    new: Stage[Any]
    by_flags: bool  # only `action` changed: the verdicts are the `flagged` entries the source wrote


@dataclass
class RefilterResult:
    uri: str
    run_id: str
    status: str  # committed | noop
    report: dict[str, Any]
    manifest: dict[str, Any]
    seconds: float


def refilter(
    source: str,
    overrides: list[str],
    out: str,
    storage_options: dict[str, Any] | None = None,
    tighten_only: bool = False,
) -> RefilterResult:
    t0 = time.time()
    so = storage_options or {}
    src = Location(source, so)
    manifest = committed_manifest(source, so)
    if manifest is None:
        raise ConfigError(source, [("OUTPUT", "not a committed refinery output (no _SUCCESS)")])
    _check_locations(source, out)
    src_report = src.join("report.json").read_json()
    old_stages = manifest["config"].get("stages", [])
    new_stages = _apply(old_stages, overrides)
    labels = stage_labels([s["stage"] for s in new_stages])
    changes = _changes(old_stages, new_stages, labels, src_report, overrides, tighten_only)
    body = src.join(MANIFEST).read_bytes()
    src_sha = hashlib.sha256(body).hexdigest()
    run_id = hashlib.sha256(
        json.dumps([src_sha, new_stages, tighten_only], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    output = Location(out, so)
    if check_output(out, so, run_id, "error") == "noop":
        return RefilterResult(
            out,
            run_id,
            "noop",
            output.join("report.json").read_json(),
            committed_manifest(out, so) or {},
            0.0,
        )
    work = output.join(WORK_DIR, run_id)
    work.remove(recursive=True)
    files, stats, new_drops = _rewrite(src, manifest, work, changes, new_stages, labels, run_id)
    gone = manifest.get("counts", {}).get(
        "forgotten", 0
    )  # a generation after `refinery forget`: rows no file holds
    rows_read = src_report["rows_read"] - gone
    lineage = {
        "source": source,
        "source_run_id": manifest.get("run_id"),
        "source_manifest_sha256": src_sha,
        "set": list(overrides),
        "stages": [c.label for c in changes],
        "tighten_only": tighten_only,
    }
    report = build_report(
        stats,
        labels,
        {},
        rows_read=rows_read,
        extra={
            "run_id": run_id,
            "input": src_report.get("input", {}),
            "duplicate_ids": src_report.get("duplicate_ids", 0),
            "refilter": lineage,
            "wall_seconds": round(time.time() - t0, 3),
        },
    )
    problems = check_accounting(report)
    if report["rows_out"] + new_drops != src_report["rows_out"]:
        problems.append("the rows kept and newly dropped do not add up to the source's rows")
    if problems:
        raise RuntimeError(
            "refilter: accounting does not balance, nothing was published: " + "; ".join(problems)
        )
    if gone:
        report["rows_read"] += gone
        report["forgotten"] = src_report.get("forgotten", {})
    config = copy.deepcopy(manifest["config"])
    config["stages"] = new_stages
    config.setdefault("output", {})["uri"] = out
    new_manifest = {
        "run_id": run_id,
        "name": manifest.get("name"),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "config_source": f"refilter of {source}",
        "config": config,
        "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
        "schema": manifest.get("schema", []),
        "inputs": manifest.get("inputs", []),
        "counts": {
            **manifest_counts(report, report["duplicate_ids"]),
            **({"forgotten": gone} if gone else {}),
        },
        "refilter": lineage,
    }
    committed = commit(out, so, work.uri, files, new_manifest, report)
    seconds = time.time() - t0
    progress(
        "refilter: %d → %d rows kept, committed %s in %.1fs",
        src_report["rows_out"],
        report["rows_out"],
        out,
        seconds,
    )
    return RefilterResult(out, run_id, "committed", report, committed, seconds)


def _check_locations(source: str, out: str) -> None:
    a, b = source.rstrip("/") + "/", out.rstrip("/") + "/"
    if a.startswith(b) or b.startswith(a):
        raise ConfigError(
            "--out", [("--out", f"{out} overlaps the source output {source}; choose another folder")]
        )


def _apply(old_stages: list[dict[str, Any]], overrides: list[str]) -> list[dict[str, Any]]:
    """The source's stages with `stages.N.params.K=V` applied; every other key is refused."""
    raw = {"stages": copy.deepcopy(old_stages)}
    errors = []
    for ov in overrides:
        key = ov.split("=", 1)[0].strip()
        parts = key.split(".")
        if len(parts) < 4 or parts[0] != "stages" or not parts[1].isdigit() or parts[2] != "params":
            errors.append((key, "refilter changes stage params only: stages.N.params.KEY=VALUE"))
            continue
        if int(parts[1]) >= len(old_stages):
            errors.append((key, f"the source ran {len(old_stages)} stage(s), numbered from 0"))
            continue
        raw["stages"][int(parts[1])].setdefault("params", {})
        try:
            _apply_override(raw, ov)
        except ValueError as e:
            errors.append((key, str(e)))
    for i, spec in enumerate(raw["stages"]):
        try:
            build_stage(spec["stage"], spec.get("params") or {})
        except ValidationError as e:
            errors += [
                (f"stages.{i}.params.{'.'.join(map(str, err['loc']))}", _message(err)) for err in e.errors()
            ]
    if errors:
        raise ConfigError("--set", errors)
    return raw["stages"]


def _changes(
    old_stages: list[dict[str, Any]],
    new_stages: list[dict[str, Any]],
    labels: list[str],
    src_report: dict[str, Any],
    overrides: list[str],
    tighten_only: bool,
) -> list[Change]:
    """The changed stages, each checked to be recomputable from what the source output holds."""
    dropped = {s["name"]: sum(s["dropped"].values()) for s in src_report.get("stages", [])}
    changes, errors = [], []
    for i, (o, n) in enumerate(zip(old_stages, new_stages, strict=True)):
        op, np_ = o.get("params") or {}, n.get("params") or {}
        if op == np_:
            continue
        key = next((ov.split("=", 1)[0] for ov in overrides if ov.startswith(f"stages.{i}.")), f"stages.{i}")
        old, new = build_stage(o["stage"], op), build_stage(n["stage"], np_)
        same_but_action = {k: v for k, v in op.items() if k != "action"} == {
            k: v for k, v in np_.items() if k != "action"
        }
        why = _refusal(i, labels[i], old, new, same_but_action, dropped, tighten_only)
        if why is None:
            later = [
                (j, labels[j])
                for j in range(i + 1, len(new_stages))
                if build_stage(new_stages[j]["stage"], new_stages[j].get("params") or {}).kind == "global"
                and dropped.get(labels[j], 0)
            ]
            if later:
                why = (
                    f"stage {later[0][1]!r} (stages.{later[0][0]}) runs after it and dropped "
                    f"{dropped[later[0][1]]} row(s): which rows it kept depended on which rows reached it; re-run "
                    "the pipeline"
                )
        if why:
            errors.append((key, why))
        else:
            changes.append(Change(i, labels[i], old, new, by_flags=same_but_action))
    if errors:
        raise ConfigError("--set", errors)
    if not changes:
        raise ConfigError(
            "--set", [("--set", "nothing changes: give at least one stages.N.params.KEY=VALUE")]
        )
    return changes


def _refusal(
    i: int,
    label: str,
    old: Stage[Any],
    new: Stage[Any],
    same_but_action: bool,
    dropped: dict[str, int],
    tighten_only: bool,
) -> str | None:
    if new.kind == "global":
        return (
            f"stage {label!r} is global (dedup): its verdicts need every document's signature, which the output "
            "does not keep; re-run the pipeline"
        )
    if old.action == "drop" and new.action == "annotate":
        return f"stage {label!r} dropped rows in the source; they are not in the output to annotate"
    if same_but_action:
        if old.action != "annotate":
            return None if old.action == new.action else f"stage {label!r}: nothing to recompute"
        return None
    if type(new).decide is Stage.decide:
        return f"stage {label!r} keeps no signals its decision can be recomputed from; re-run the pipeline"
    problem = new.refilter_problem(old.params)
    if problem:
        return problem
    if old.action == "drop" and dropped.get(label, 0) and not tighten_only:
        return (
            f"stage {label!r} dropped {dropped[label]} row(s) in the source, and dropped rows are not in the output: "
            "refilter can only drop more among the kept rows (rows it dropped stay dropped). Pass --tighten-only "
            "to accept that, or run the source with action: annotate so every row keeps its signals"
        )
    return None


def _rewrite(
    src: Location,
    manifest: dict[str, Any],
    work: Location,
    changes: list[Change],
    new_stages: list[dict[str, Any]],
    labels: list[str],
    run_id: str,
) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """New data parts and drops from the source's data parts; its drop log and quarantine carried over."""
    out_cfg = manifest["config"].get("output", {})
    data = [f for f in manifest["files"] if f["kind"] == "data"]
    schema = None
    if data:
        with src.join(data[0]["path"]).open("rb") as fh:
            schema = pq.read_schema(fh)
    stages = [build_stage(s["stage"], s.get("params") or {}) for s in new_stages]
    writer = PartWriter(
        work.join("r0"),
        schema if schema is not None else pa.schema([]),
        out_cfg.get("compression", "zstd"),
        int(min(out_cfg.get("target_shard_mb", 256) * 3, out_cfg.get("max_batch_mb", 512)) * (1 << 20)),
        list(zip(labels, stages, strict=True)),
    )
    files: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    new_drops = 0
    order = {label: k for k, label in enumerate(labels)}
    for f in data:
        with src.join(f["path"]).open("rb") as fh:
            table = pq.read_table(fh)
        sink = writer.open()
        sink.add(_verdicts(table, changes, order, run_id))
        parts, part_stats = sink.close()
        files += [{**p, "path": f"r0/{p['path']}"} for p in parts]
        stats = merge_stats(stats, part_stats)
        new_drops += sum(part_stats["drop"].values())
    for f in manifest["files"]:
        if f["kind"] in ("droplog", "quarantine"):
            body = src.join(f["path"]).read_bytes()
            work.join("src", f["path"]).write_bytes(body)
            files.append({k: f[k] for k in ("rows", "bytes", "sha256")} | {"path": f"src/{f['path']}"})
            stats = merge_stats(stats, _dead_stats(f["kind"], pq.read_table(pa.BufferReader(body))))
    return files, stats, new_drops


def _verdicts(table: pa.Table, changes: list[Change], order: dict[str, int], run_id: str) -> pa.Table:
    """The rows with `_drop` set where a changed stage (in stage order) now drops them, `flagged` redone for the
    changed stages, and the new run id."""
    n = table.num_rows
    flags: list[dict[str, str]] = []
    has_flags = FLAGGED_COL in table.column_names
    for row in table[FLAGGED_COL].to_pylist() if has_flags else [None] * n:
        flags.append(dict(x.split(":", 1) for x in row or []))
    drop: list[str | None] = [None] * n
    for c in changes:
        if c.by_flags:
            reasons = [fl.get(c.label) for fl in flags]
        else:
            try:
                arr = c.new.decide(table)
            except NotRecomputable as e:
                raise ConfigError("--set", [(f"stages.{c.index}", str(e))]) from None
            reasons = arr.to_pylist() if arr is not None else [None] * n
        for k, reason in enumerate(reasons):
            flags[k].pop(c.label, None)
            if reason is None or drop[k] is not None:
                continue
            if c.new.action == "drop":
                drop[k] = f"{c.label}:{reason}"
            else:
                flags[k][c.label] = reason
    if has_flags or any(flags):
        rebuilt = [
            [f"{label}:{r}" for label, r in sorted(fl.items(), key=lambda x: order.get(x[0], len(order)))]
            or None
            for fl in flags
        ]
        col = pa.array(rebuilt, pa.list_(pa.string()))
        table = (
            table.set_column(table.schema.get_field_index(FLAGGED_COL), FLAGGED_COL, col)
            if has_flags
            else table.append_column(FLAGGED_COL, col)
        )
    if "run_id" in table.column_names:
        table = table.set_column(
            table.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * n, pa.string())
        )
    return table.append_column(DROP_COL, pa.array(drop, pa.string()))


def _dead_stats(kind: str, t: pa.Table) -> dict[str, Any]:
    """The stats the writer counted for these rows in the source run, recounted from its drop log or quarantine."""
    if kind == "quarantine":
        return {"drop": dict(Counter(QUARANTINE_PREFIX + r for r in t["reason"].to_pylist()))}
    keys = pc.binary_join_element_wise(t["stage"], t["reason"], ":")
    langs = pc.fill_null(t["lang"], "") if "lang" in t.column_names else pa.array([""] * t.num_rows)
    return {
        "drop": dict(Counter(keys.to_pylist())),
        "drop_lang": dict(Counter(pc.binary_join_element_wise(keys, langs, "|").to_pylist())),
    }
