"""The monitoring report: one self-contained HTML file per snapshot (inline CSS and SVG, no script, no network),
and a short one (`render_run`) for a refresh run that publishes no snapshot, so that every run has a report.

An operator opens it from a bucket or a mail attachment, offline: every chart is an inline SVG drawn here, so there
is nothing to fetch and nothing to execute.
"""

from __future__ import annotations

import html
from typing import Any

PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def bar_chart(items: list[tuple[str, float]], title: str, width: int = 560, unit: str = "") -> str:
    """Horizontal bars, one per (label, value)."""
    if not items:
        return f'<figure><figcaption>{_e(title)}</figcaption><p class="empty">no data</p></figure>'
    row_h, label_w = 22, 170
    h = row_h * len(items) + 10
    vmax = max(v for _, v in items) or 1.0
    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, v) in enumerate(items):
        y = 5 + i * row_h
        w = max(1.0, (width - label_w - 80) * (v / vmax)) if v else 0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lbl">{_e(label)[:28]}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
        val = f"{v:.3g}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v)}"
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" class="val">{_e(val)}{_e(unit)}</text>')
    parts.append("</svg>")
    return f"<figure><figcaption>{_e(title)}</figcaption>{''.join(parts)}</figure>"


def histogram(edges: list[float], counts: list[int], title: str, width: int = 360, height: int = 150) -> str:
    if not counts or not any(counts):
        return f'<figure><figcaption>{_e(title)}</figcaption><p class="empty">no data</p></figure>'
    n = len(counts)
    cmax = max(counts)
    plot_h = height - 30
    bw = (width - 20) / n
    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, c in enumerate(counts):
        bh = plot_h * c / cmax
        parts.append(
            f'<rect x="{10 + i * bw:.1f}" y="{5 + plot_h - bh:.1f}" width="{max(1.0, bw - 1):.1f}" '
            f'height="{bh:.1f}" fill="#4e79a7"><title>[{edges[i]:.3g}, {edges[i + 1]:.3g}): {c}</title></rect>'
        )
    parts.append(f'<text x="10" y="{height - 8}" class="val">{edges[0]:.3g}</text>')
    parts.append(
        f'<text x="{width - 10}" y="{height - 8}" text-anchor="end" class="val">{edges[-1]:.3g}</text>'
    )
    parts.append("</svg>")
    return f"<figure><figcaption>{_e(title)}</figcaption>{''.join(parts)}</figure>"


def funnel(stages: list[dict[str, Any]], rows_read: int, width: int = 720) -> str:
    """Rows entering each stage as bars, with the drop reasons next to each."""
    if not stages:
        return '<p class="empty">no stages</p>'
    row_h, label_w = 26, 170
    h = row_h * (len(stages) + 1) + 10
    vmax = max(rows_read, 1)
    parts = [
        f'<svg role="img" aria-label="funnel" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    rows = [("read", rows_read, "")] + [
        (
            s["stage"],
            s["rows_out"],
            ", ".join(f"{k} −{v}" for k, v in sorted(s["dropped"].items(), key=lambda kv: -kv[1])[:3]),
        )
        for s in stages
    ]
    for i, (label, n, why) in enumerate(rows):
        y = 5 + i * row_h
        w = (width - label_w - 260) * n / vmax
        parts.append(f'<text x="{label_w - 6}" y="{y + 17}" text-anchor="end" class="lbl">{_e(label)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" fill="#59a14f"/>'
        )
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 17}" class="val">{n} {_e(why)[:60]}</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px} h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top} figcaption{font-size:13px;font-weight:600}
.lbl{font-size:12px;fill:#333} .val{font-size:11px;fill:#555} .empty{color:#888;font-size:13px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
.alert{background:#fde2e1;border:1px solid #e15759;padding:8px 12px;margin:6px 0}
.ok{background:#e3f4e1;border:1px solid #59a14f;padding:8px 12px}
"""


def pii_detector_table(detectors: dict[str, dict[str, float]]) -> str:
    """Per entity type: how many findings and which detectors found them (counts only, never values)."""
    if not detectors:
        return ""
    rows = "".join(
        f"<tr><td>{_e(t)}</td><td>{sum(d.values()):g}</td><td>"
        + _e(", ".join(f"{k} {v:g}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])))
        + "</td></tr>"
        for t, d in detectors.items()
    )
    return "<table><tr><th>entity</th><th>found</th><th>by detector</th></tr>" + rows + "</table>"


def render(
    snapshot_id: str,
    profile: dict[str, Any],
    drift: dict[str, Any] | None,
    alerts: list[dict[str, Any]],
    refresh: dict[str, Any],
    kind: str = "Snapshot",
    samples: dict[str, Any] | None = None,
) -> str:
    """The monitoring page of a snapshot (refresh) or of a plain run (`kind="Run"`: no previous snapshot).

    `samples` (jobs/review.py `report_samples`): per stage and reason, scrubbed and truncated documents with
    their signals, and the stages whose drops have no text to show."""
    b: list[str] = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>refinery {_e(kind.lower())} {_e(snapshot_id)}</title><style>{CSS}</style></head><body>",
    ]
    b.append(f"<h1>{_e(kind)} {_e(snapshot_id)}</h1>")
    b.append(
        f"<p>{profile.get('rows', 0)} documents published of {profile.get('rows_read', 0)} read · previous snapshot: "
        f"{_e(refresh.get('previous_snapshot') or 'none')} · inputs: {len(refresh.get('new_inputs', []))} new, "
        f"{len(refresh.get('changed_inputs', []))} changed · wall {profile.get('wall_seconds') or 0:.1f}s</p>"
    )
    b.append('<h2 id="alerts">Alerts</h2>')
    if alerts:
        b += [
            f'<div class="alert"><b>{_e(a["metric"])}</b>: {_e(a["detail"])} (threshold {_e(a["threshold"])})</div>'
            for a in alerts
        ]
    else:
        b.append('<div class="ok">No drift threshold exceeded.</div>')
    b.append("<h2>Language mix</h2>")
    b.append(bar_chart(list(profile.get("lang", {}).items())[:25], "documents per language"))
    b.append("<h2>Quality signals</h2>")
    q = profile.get("quality", {})
    if not q:
        b.append('<p class="empty">No `quality` struct in the published data (no quality stage ran).</p>')
    for name, h in q.items():
        b.append(histogram(h["edges"], h["counts"], f"{name} (mean {h['mean']:.3g})"))
    b.append("<h2>Funnel: drops by stage and reason</h2>")
    b.append(funnel(profile.get("funnel", []), profile.get("rows_read", 0)))
    if profile.get("quarantined"):
        b.append(
            "<p>Quarantined: "
            + _e(", ".join(f"{k}: {v}" for k, v in profile["quarantined"].items()))
            + "</p>"
        )
    b.append("<h2>Dedup</h2>")
    b.append(
        f"<p>dedup drop rate {profile.get('dedup_rate', 0.0):.2%} ({profile.get('dedup_dropped', 0)} rows)</p>"
    )
    b.append(
        bar_chart(list(profile.get("dedup_clusters", {}).items()), "kept rows by duplicate-cluster size")
    )
    b.append("<h2>PII by type</h2>")
    b.append(bar_chart([(k, float(v)) for k, v in profile.get("pii", {}).items()], "PII hits by type"))
    b.append(pii_detector_table(profile.get("pii_detectors", {})))
    b.append("<h2>Per-stage throughput</h2>")
    b.append(
        bar_chart(
            [
                (t["stage"], float(t["rows_per_s"]))
                for t in profile.get("throughput", [])
                if t.get("rows_per_s")
            ],
            "rows/s per stage (summed worker time)",
            unit=" rows/s",
        )
    )
    b.append("<h2>Drift vs previous snapshot</h2>")
    if drift:
        rows = [("language mix", drift.get("lang"))] + [
            (f"quality.{k}", v) for k, v in drift.get("quality", {}).items()
        ]
        rows += [
            (k, f"{drift[k]['previous']} → {drift[k]['current']}")
            for k in ("dedup_rate", "pii_rate")
            if k in drift
        ]
        b.append(
            f"<p>metric: {_e(drift.get('metric'))} · baseline {_e(drift.get('previous_snapshot'))}</p><table>"
            "<tr><th>signal</th><th>value</th></tr>"
            + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
            + "</table>"
        )
        b.append(
            bar_chart(
                [(k, float(v)) for k, v in rows if isinstance(v, (int, float))],
                f"drift ({drift.get('metric')})",
            )
        )
    else:
        b.append(
            '<p class="empty">First snapshot: nothing to compare with.</p>'
            if kind == "Snapshot"
            else '<p class="empty">A single run: drift is measured between the snapshots of `refinery refresh`.</p>'
        )
    b.append("<h2>Bias check: keep rate per language and domain, per filter</h2>")
    bias = profile.get("bias", {})
    flags = bias.get("flags", [])
    if flags:
        b += [
            f'<div class="alert">{_e(f["stage"])} removes {_e(f.get("lang") or f.get("domain"))} at {f["drop_rate"]:.1%} '
            f"vs {f['stage_drop_rate']:.1%} overall ({f['rows_in']} rows)</div>"
            for f in flags
        ]
    else:
        b.append('<div class="ok">No filter removes a language or domain far more than average.</div>')
    b.append(
        "<table><tr><th>stage</th><th>drop rate</th><th>keep rate by language</th><th>keep rate by domain</th></tr>"
    )
    for s in bias.get("stages", []):
        langs = ", ".join(
            f"{k} {v['keep_rate']:.0%}" for k, v in s["by_lang"].items() if v["keep_rate"] is not None
        )
        doms = ", ".join(
            f"{k} {v['keep_rate']:.0%}" for k, v in s["by_domain"].items() if v["keep_rate"] is not None
        )
        b.append(
            f"<tr><td>{_e(s['stage'])}</td><td>{s['drop_rate']:.1%}</td><td>{_e(langs)}</td><td>{_e(doms) or '—'}</td></tr>"
        )
    b.append(f'</table><p class="empty">domain attribution: {_e(bias.get("domain_attribution"))}</p>')
    b.append(review_section(samples))
    b.append("</body></html>")
    return "\n".join(b)


def review_section(samples: dict[str, Any] | None) -> str:
    """Review samples: per stage and drop reason, the documents it flagged (PII-scrubbed, truncated), each with
    the signal values that decided it."""
    b = ['<h2 id="samples">Review samples</h2>']
    if not samples or not (samples.get("stages") or samples.get("no_text")):
        b.append('<p class="empty">No filter flagged documents in the published data.</p>')
        return "".join(b)
    b.append(
        "<p>A deterministic sample per stage and reason of the documents it flagged (<code>action: annotate</code>), "
        "PII-scrubbed and truncated; <code>refinery sample</code> exports more for labelling.</p>"
    )
    for stage, reasons in samples.get("stages", {}).items():
        for reason, rows in reasons.items():
            b.append(
                f"<h3>{_e(stage)}: {_e(reason)}</h3><table><tr><th>id</th><th>signals</th><th>text</th></tr>"
            )
            for r in rows:
                sig = ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["signals"].items()
                )
                b.append(f"<tr><td>{_e(r['id'])}</td><td>{_e(sig)}</td><td>{_e(r['text'])}</td></tr>")
            b.append("</table>")
    for stage, n in samples.get("no_text", {}).items():
        b.append(
            f'<p class="empty">{_e(stage)} dropped {n} document(s); their text is not kept. Run it with '
            "<code>action: annotate</code> to review them here.</p>"
        )
    return "".join(b)


def _when(mtime: Any) -> str:
    """An mtime (epoch seconds) as UTC ISO time; anything else as given."""
    if isinstance(mtime, (int, float)):
        import datetime as dt

        return dt.datetime.fromtimestamp(mtime, dt.UTC).isoformat(timespec="seconds")
    return "" if mtime is None else str(mtime)


MAX_INPUT_ROWS = 500  # inputs listed one per row in a run report; the rest are summarized by status


def render_run(run: dict[str, Any]) -> str:
    """The report of a refresh run that published no snapshot (nothing new, or only crash recovery).

    Such a run has no snapshot folder to hold a report, yet an operator paged at 3 a.m. still needs one page that
    says what the run saw and decided: the inputs it listed and why none was processed, the snapshot `latest`
    names, the run-log outcome, and any alert of a snapshot it rolled forward. Same rules as `render`: inline CSS
    and SVG only, no script, no links; input uris and counts only, never document content.
    """
    outcome = run.get("outcome") or "nothing_new"
    inputs: list[dict[str, Any]] = run.get("inputs", [])
    latest = run.get("latest")
    b: list[str] = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>refinery refresh {_e(run.get('refresh_id'))}: {_e(outcome)}</title><style>{CSS}</style></head><body>",
    ]
    b.append(f"<h1>Refresh run {_e(run.get('refresh_id'))}: nothing new was processed</h1>")
    b.append(
        f'<p id="outcome">Run-log outcome: <b>{_e(outcome)}</b> · started {_e(run.get("started_at"))} · '
        f"finished {_e(run.get('finished_at'))} ({float(run.get('seconds') or 0):.1f}s) · config "
        f"{_e(run.get('config'))} (hash {_e(run.get('config_hash'))})</p>"
    )
    b.append(
        f"<p>{len(inputs)} input(s) listed, none new or changed: no pipeline ran and no snapshot was "
        "published; the corpus is unchanged.</p>"
    )
    b.append('<h2 id="alerts">Alerts</h2>')
    alerts = run.get("alerts") or []
    if alerts:
        b.append("<p>From the snapshot this run rolled forward after a crash:</p>")
        b += [
            f'<div class="alert"><b>{_e(a["metric"])}</b>: {_e(a["detail"])} (threshold {_e(a["threshold"])})</div>'
            for a in alerts
        ]
    else:
        b.append('<div class="ok">No alert.</div>')
    if run.get("recovered"):
        b.append("<h2>Recovery</h2><ul>" + "".join(f"<li>{_e(a)}</li>" for a in run["recovered"]) + "</ul>")
    b.append('<h2 id="latest">Latest snapshot</h2>')
    if latest:
        counts = run.get("latest_counts") or {}
        rows = [
            ("snapshot", latest.get("snapshot_id")),
            ("run id", latest.get("run_id")),
            ("manifest sha256", latest.get("manifest_sha256")),
            ("pointer updated", latest.get("updated_at")),
            ("documents", counts.get("rows_out")),
            ("rows read", counts.get("rows_read")),
            ("report", f"snapshots/{latest.get('snapshot_id')}/report.html"),
        ]
        b.append(
            "<table>"
            + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v is not None)
            + "</table>"
        )
    else:
        b.append('<p class="empty">No snapshot has been published yet (`latest` does not exist).</p>')
    b.append('<h2 id="inputs">Inputs seen</h2>')
    status: dict[str, int] = {}
    for f in inputs:
        status[f["status"]] = status.get(f["status"], 0) + 1
    b.append(bar_chart([(k, float(v)) for k, v in sorted(status.items())], "inputs by status"))
    b.append(
        "<p>unchanged = same size and etag/mtime as when processed (not re-read); touched = new metadata, "
        "same content sha256 (not re-processed).</p>"
    )
    if run.get("missing_inputs"):
        b.append(
            f"<p>{run['missing_inputs']} input(s) processed earlier are no longer listed; their published "
            "documents stay in their snapshots.</p>"
        )
    b.append(
        "<table><tr><th>input</th><th>bytes</th><th>etag / mtime</th><th>status</th><th>published in</th></tr>"
    )
    for f in inputs[:MAX_INPUT_ROWS]:
        b.append(
            f"<tr><td>{_e(f['uri'])}</td><td>{_e(f.get('size'))}</td><td>{_e(f.get('etag') or _when(f.get('mtime')))}</td>"
            f"<td>{_e(f['status'])}</td><td>{_e(f.get('snapshot_id') or '—')}</td></tr>"
        )
    b.append("</table>")
    if len(inputs) > MAX_INPUT_ROWS:
        b.append(f'<p class="empty">… and {len(inputs) - MAX_INPUT_ROWS} more input(s), counted above.</p>')
    recent = run.get("recent") or []
    if recent:
        b.append(
            '<h2 id="runlog">Recent runs (run log)</h2><table><tr><th>time</th><th>outcome</th><th>snapshot</th>'
            "<th>rows out</th></tr>"
        )
        for r in recent:
            b.append(
                f"<tr><td>{_e(r.get('time'))}</td><td>{_e(r.get('outcome'))}</td><td>{_e(r.get('snapshot_id') or '—')}</td>"
                f"<td>{_e((r.get('counts') or {}).get('rows_out', '—'))}</td></tr>"
            )
        b.append("</table>")
    b.append("</body></html>")
    return "\n".join(b)
