"""The data card of a snapshot (`DATACARD.md`): what it holds, where it came from, what was removed and why.

Written from the committed manifest, report and profile (refinery/monitoring/profile.py), never from in-flight state, so
it describes exactly what was published. Licences come from the config's `licenses` map (source uri prefix →
licence); sources no prefix matches are listed as "not stated".
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any


def licence_for(uri: str, licenses: dict[str, str]) -> str | None:
    """The licence of the longest matching prefix; relative local prefixes match the absolute input uris."""
    best = None
    for prefix, lic in licenses.items():
        full = prefix if "://" in prefix or prefix.startswith("/") else os.path.abspath(prefix)
        if (uri.startswith(prefix) or uri.startswith(full)) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, lic)
    return best[1] if best else None


def _pct(n: float, d: float) -> str:
    return f"{100.0 * n / d:.1f}%" if d else "n/a"


def render(
    snapshot_id: str,
    manifest: dict[str, Any],
    report: dict[str, Any],
    profile: dict[str, Any],
    licenses: dict[str, str],
    refresh: dict[str, Any],
) -> str:
    rows_out = report.get("rows_out", 0)
    rows_read = report.get("rows_read", 0)
    out: list[str] = [f"# Data card — snapshot `{snapshot_id}`", ""]
    out += [
        f"- **Dataset:** {manifest.get('name')}",
        f"- **Created:** {manifest.get('created_at')} · run `{manifest.get('run_id')}` · code `{manifest.get('code_version')}`",
        f"- **Config hash:** `{refresh.get('config_hash')}` (pipeline run config `{manifest.get('config_hash')}`)",
        f"- **Previous snapshot:** {refresh.get('previous_snapshot') or 'none (first snapshot)'}",
        f"- **Documents published:** {rows_out} of {rows_read} read "
        f"({report.get('dropped_total', 0)} dropped, {sum(report.get('quarantined', {}).values())} quarantined)",
        "",
        "## Sources",
        "",
        "| input | status | bytes | etag / mtime | licence |",
        "|---|---|---:|---|---|",
    ]
    status = {u: "new" for u in refresh.get("new_inputs", [])} | {
        u: "changed" for u in refresh.get("changed_inputs", [])
    }
    lic_counter: Counter = Counter()
    for f in manifest.get("inputs", []):
        lic = licence_for(f["uri"], licenses)
        lic_counter[lic or "not stated"] += 1
        out.append(
            f"| `{f['uri']}` | {status.get(f['uri'], '')} | {f.get('size')} | {f.get('etag') or f.get('mtime') or ''} "
            f"| {lic or 'not stated'} |"
        )
    out += ["", "Licences: " + ", ".join(f"{k} ({v} input(s))" for k, v in sorted(lic_counter.items())), ""]
    out += ["## Languages", "", "| language | documents | share |", "|---|---:|---:|"]
    for lang, n in profile.get("lang", {}).items():
        out.append(f"| {lang} | {n} | {_pct(n, profile.get('rows', 0))} |")
    out += [
        "",
        "## Filters and drop rates",
        "",
        "| stage | rows in | dropped | drop rate | reasons |",
        "|---|---:|---:|---:|---|",
    ]
    for s in report.get("stages", []):
        d = sum(s["dropped"].values())
        reasons = (
            ", ".join(f"{k}: {v}" for k, v in sorted(s["dropped"].items(), key=lambda kv: -kv[1])) or "—"
        )
        out.append(f"| {s['name']} | {s['rows_in']} | {d} | {_pct(d, s['rows_in'])} | {reasons} |")
    q = report.get("quarantined", {})
    if q:
        out += [
            "",
            "Quarantined (bad input records): " + ", ".join(f"{k}: {v}" for k, v in sorted(q.items())),
        ]
    out += ["", "## Deduplication", ""]
    out.append(
        f"- Dedup drop rate: {profile.get('dedup_rate', 0.0):.2%} of rows read "
        f"({profile.get('dedup_dropped', 0)} rows; `dup_of_published` = already in an earlier snapshot)"
    )
    for s in report.get("stages", []):
        if "dedup" in s["name"]:
            for reason, n in sorted(s["dropped"].items()):
                out.append(f"- {s['name']} · {reason}: {n} ({_pct(n, s['rows_in'])} of its input)")
    if profile.get("dedup_clusters"):
        out.append(
            "- Cluster sizes of kept rows: "
            + ", ".join(f"{k}: {v}" for k, v in profile["dedup_clusters"].items())
        )
    out += ["", "## PII", ""]
    if profile.get("pii"):
        out += ["| type | count |", "|---|---:|"] + [f"| {k} | {v:g} |" for k, v in profile["pii"].items()]
        out.append(f"\nPII hits per published document: {profile.get('pii_rate', 0.0):.3f}")
    else:
        out.append("No PII stage ran in this pipeline (no counts).")
    flags = profile.get("bias", {}).get("flags", [])
    out += ["", "## Bias check", ""]
    if flags:
        for f in flags:
            group = f.get("lang") or f.get("domain")
            out.append(
                f"- **{f['stage']}** removes {group} at {f['drop_rate']:.1%} vs {f['stage_drop_rate']:.1%} overall "
                f"({f['rows_in']} rows)"
            )
    else:
        out.append("No filter removes a language or domain far more than average.")
    if profile.get("bias", {}).get("domain_attribution"):
        out.append(f"\nDomains of dropped rows: {profile['bias']['domain_attribution']}.")
    out += [
        "",
        "## Verification",
        "",
        f"`refinery verify <root>/snapshots/{snapshot_id}` re-checks the "
        f"{len(manifest.get('files', []))} file checksums and row counts listed in manifest.json.",
        "",
    ]
    return "\n".join(out)
