"""Counting every row: per-batch stats that merge by addition, and the run report built from them.

Drops are not counted by side effects in workers (a retried task would count twice). Dropped and quarantined
rows travel with the data, reduced to a few columns, down to the writer; the writer counts what it commits.
Because Ray only keeps the output of a task attempt that succeeded, the counts are exact under retries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.schema import DROP_COL, FLAGGED_COL, QUARANTINE_PREFIX

Stats = dict[str, Any]

# Readers mark input records that are deliberately not documents (WARC request/metadata/revisit records, pages
# with no main text) with `_drop = "skip:<reason>"`: counted under report["skipped"], never as quarantine.
SKIP_PREFIX = "skip:"


def empty_stats() -> Stats:
    return {"rows_kept": 0, "drop": {}, "drop_lang": {}, "kept_lang": {}, "flagged": {}, "counters": {}}


def merge_stats(a: Stats, b: Stats) -> Stats:
    out = empty_stats()
    out["rows_kept"] = a.get("rows_kept", 0) + b.get("rows_kept", 0)
    for key in ("drop", "drop_lang", "kept_lang", "flagged", "counters"):
        c: Counter = Counter(a.get(key, {}))
        c.update(b.get(key, {}))
        out[key] = dict(c)
    return out


def _value_counts(arr: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    if len(arr) == 0:
        return {}
    vc = pc.value_counts(arr)
    return {
        ("" if v is None else str(v)): int(n)
        for v, n in zip(vc.field(0).to_pylist(), vc.field(1).to_pylist(), strict=True)
    }


def _lang_or_blank(table: pa.Table) -> pa.Array:
    if "lang" in table.column_names:
        return pc.fill_null(table["lang"].cast(pa.string()), "")
    return pa.array([""] * table.num_rows, pa.string())


def batch_stats(
    kept: pa.Table | None, dead: pa.Table | None, counters: dict[str, float] | None = None
) -> Stats:
    s = empty_stats()
    if kept is not None and kept.num_rows:
        s["rows_kept"] = kept.num_rows
        s["kept_lang"] = _value_counts(_lang_or_blank(kept))
        if FLAGGED_COL in kept.column_names:
            flat = pc.list_flatten(kept[FLAGGED_COL])
            s["flagged"] = _value_counts(flat)
    if dead is not None and dead.num_rows:
        s["drop"] = _value_counts(dead[DROP_COL])
        keys = pc.binary_join_element_wise(dead[DROP_COL], _lang_or_blank(dead), "|")
        s["drop_lang"] = _value_counts(keys)
    s["counters"] = dict(counters or {})
    return s


def build_report(
    stats: Stats,
    stage_labels: Sequence[str],
    seconds: dict[str, float],
    extra: dict[str, Any] | None = None,
    rows_read: int | None = None,
) -> dict[str, Any]:
    """Per-stage {rows_in, rows_out, dropped, seconds} derived from committed counts, plus run totals.

    Walking the stages backwards: rows_out(last) = rows committed; rows_in(stage) = rows_out + its drops;
    rows_out(previous) = rows_in(next). So the per-stage identity holds by construction. `rows_read` is what
    the readers reported producing, counted where rows are born: check_accounting compares it with the rows
    the writers account for, so a part lost on the way cannot balance. Without it (old callers), it is derived
    from the written rows and the check is only internal.
    """
    drops = stats.get("drop", {})
    quarantined = {
        k[len(QUARANTINE_PREFIX) :]: v for k, v in drops.items() if k.startswith(QUARANTINE_PREFIX)
    }
    skipped = {k[len(SKIP_PREFIX) :]: v for k, v in drops.items() if k.startswith(SKIP_PREFIX)}
    per_stage_drops: dict[str, dict[str, int]] = {label: {} for label in stage_labels}
    unknown: dict[str, int] = {}
    for key, n in drops.items():
        if key.startswith(QUARANTINE_PREFIX) or key.startswith(SKIP_PREFIX):
            continue
        label, _, reason = key.partition(":")
        if label in per_stage_drops:
            per_stage_drops[label][reason] = per_stage_drops[label].get(reason, 0) + n
        else:
            unknown[key] = n
    lang_drops: dict[str, dict[str, dict[str, int]]] = {label: {} for label in stage_labels}
    for key, n in stats.get("drop_lang", {}).items():
        reason_key, _, lang = key.rpartition("|")
        label, _, reason = reason_key.partition(":")
        if label in lang_drops:
            lang_drops[label].setdefault(lang or "unknown", {})[reason] = n
    counters = stats.get("counters", {})
    flagged = stats.get("flagged", {})

    rows_out = stats.get("rows_kept", 0)
    kept_by_lang = {(k or "unknown"): v for k, v in stats.get("kept_lang", {}).items()}
    stages_report: list[dict[str, Any]] = []
    for label in reversed(stage_labels):
        dropped = per_stage_drops[label]
        rows_in = rows_out + sum(dropped.values())
        by_lang = {}
        for lang in sorted(set(kept_by_lang) | set(lang_drops[label])):
            d = lang_drops[label].get(lang, {})
            by_lang[lang] = {"kept": kept_by_lang.get(lang, 0), "dropped": d}
        stages_report.append(
            {
                "name": label,
                "rows_in": rows_in,
                "rows_out": rows_out,
                "dropped": dict(sorted(dropped.items())),
                "flagged": {
                    k.partition(":")[2]: v for k, v in flagged.items() if k.partition(":")[0] == label
                },
                "by_lang": by_lang,
                "counters": {
                    k.partition(".")[2]: v for k, v in counters.items() if k.partition(".")[0] == label
                },
                "seconds": round(seconds.get(label, 0.0), 3),
            }
        )
        # rows kept *before* this stage, per language, for the previous stage's by_lang
        for lang, d in lang_drops[label].items():
            kept_by_lang[lang] = kept_by_lang.get(lang, 0) + sum(d.values())
        rows_out = rows_in
    stages_report.reverse()
    if rows_read is None:
        rows_read = rows_out + sum(quarantined.values()) + sum(skipped.values())
    report = {
        "rows_read": rows_read,
        "rows_out": stats.get("rows_kept", 0),
        "quarantined": dict(sorted(quarantined.items())),
        "dropped_total": sum(sum(s["dropped"].values()) for s in stages_report),
        "stages": stages_report,
    }
    if skipped:
        report["skipped"] = dict(sorted(skipped.items()))
    if unknown:
        report["dropped_unattributed"] = unknown
    report.update(extra or {})
    return report


def manifest_counts(report: dict[str, Any], duplicate_ids: int) -> dict[str, int]:
    """The `counts` a manifest records, from a report built by `build_report`."""
    return {
        "rows_read": report["rows_read"],
        "rows_out": report["rows_out"],
        "dropped": report["dropped_total"],
        "quarantined": sum(report["quarantined"].values()),
        "skipped": sum(report.get("skipped", {}).values()),
        "duplicate_ids": duplicate_ids,
    }


def check_accounting(report: dict[str, Any]) -> list[str]:
    """The identities every report must satisfy; returns the violated ones (empty = consistent)."""
    problems = []
    for s in report["stages"]:
        if s["rows_in"] != s["rows_out"] + sum(s["dropped"].values()):
            problems.append(f"stage {s['name']}: rows_in != rows_out + dropped")
    for a, b in zip(report["stages"], report["stages"][1:], strict=False):
        if a["rows_out"] != b["rows_in"]:
            problems.append(f"stage {b['name']}: rows_in != previous rows_out")
    total = report["rows_out"] + report["dropped_total"] + sum(report["quarantined"].values())
    total += sum(report.get("skipped", {}).values())
    if report["rows_read"] != total:
        problems.append(
            f"the readers produced {report['rows_read']} rows but the output accounts for {total} "
            "(kept + dropped + quarantined + skipped)"
        )
    return problems


def sum_counters(items: Iterable[dict[str, float]]) -> dict[str, float]:
    c: Counter = Counter()
    for d in items:
        c.update(d)
    return dict(c)
