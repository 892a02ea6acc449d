"""Per-snapshot profile (what the published data looks like) and bias checks, computed from committed files.

The profile is built from the snapshot's own committed files — `data/` parts (only the columns it needs, one
record batch at a time), `droplog/` parts and `report.json` — so it describes exactly what was published:

- `lang`: rows per language (`lang` column from the `langid` stage; else a `lang` key of `meta`; else `unknown`);
- `quality`: per numeric child of the `quality` struct, a display histogram, the deciles (stored so that the
  *next* snapshot can be binned on them for drift), and this snapshot's counts in the previous snapshot's deciles;
- `dedup_clusters`: cluster-size histogram of kept rows (`dup.cluster_size`), `dedup_rate` (rows dropped by dedup
  stages / rows read), `pii` (counters of PII stages, by type) and `pii_rate` (PII hits per published row);
- `funnel` and `throughput` from report.json; `domains`: published rows per host (`refinery.schema.row_domain`:
  `meta.url`, else an http(s) source uri).

Bias: for every filter stage, the keep rate per language (report.json `stages[].by_lang`) and per top domain
(the drop log's `domain` column + the published rows, both from the same `row_domain`, so the two sides agree); a
group is flagged when the filter's drop rate on it exceeds `bias_ratio` × the filter's overall drop rate and the
overall rate by at least `bias_min_gap`, with at least `bias_min_rows` rows. Drop logs written before the `domain`
column existed still load: their rows are attributed by the host of `source_uri` (web sources only).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.location import Location
from refinery.schema import DOMAIN_COL, row_domain, url_host

CLUSTER_BINS = [(1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 100), (101, None)]


def _meta_get(meta: str | None, key: str) -> Any:
    if not meta:
        return None
    try:
        obj = json.loads(meta)
    except ValueError:
        return None
    return obj.get(key) if isinstance(obj, dict) else None


def _iter_parquet(loc: Location, columns: list[str]):
    with loc.open("rb") as fh:
        pf = pq.ParquetFile(fh)
        names = set(pf.schema_arrow.names)
        cols = [c for c in columns if c in names]
        if not cols:
            yield pa.table({"_n": pa.nulls(pf.metadata.num_rows)})
            return
        for batch in pf.iter_batches(columns=cols, batch_size=65536):
            yield pa.Table.from_batches([batch])


def _is_dedup_stage(name: str) -> bool:
    return "dedup" in name or name.startswith("dup")


def _is_pii_stage(name: str) -> bool:
    return "pii" in name


def build_profile(
    snapshot_uri: str,
    so: dict[str, Any] | None,
    mon: Any,
    snapshot_id: str,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    snap = Location(snapshot_uri, so)
    manifest = snap.join("manifest.json").read_json()
    report = snap.join("report.json").read_json()
    lang: Counter = Counter()
    domains: Counter = Counter()
    clusters: Counter = Counter()
    values: dict[str, list[np.ndarray]] = {}
    rows = 0
    wanted = list(mon.quality_signals or [])
    for f in manifest.get("files", []):
        if f["kind"] != "data":
            continue
        for t in _iter_parquet(snap.join(f["path"]), ["lang", "quality", "dup", "source", "meta"]):
            n = t.num_rows
            rows += n
            if "lang" in t.column_names:
                lang.update(_value_counts(pc.fill_null(t["lang"], "unknown")))
            else:
                metas = t["meta"].to_pylist() if "meta" in t.column_names else [None] * n
                lang.update(str(_meta_get(m, "lang") or "unknown") for m in metas)
            domains.update(_value_counts(row_domain(t)))
            if "quality" in t.column_names and pa.types.is_struct(t["quality"].type):
                q = t["quality"].combine_chunks()
                for i in range(q.type.num_fields):
                    fld = q.type.field(i)
                    if not (
                        pa.types.is_integer(fld.type)
                        or pa.types.is_floating(fld.type)
                        or pa.types.is_boolean(fld.type)
                    ):
                        continue
                    if wanted and fld.name not in wanted:
                        continue
                    arr = q.field(i).cast(pa.float64()).drop_null().to_numpy(zero_copy_only=False)
                    arr = arr[np.isfinite(arr)]
                    values.setdefault(fld.name, []).append(arr)
            if "dup" in t.column_names and pa.types.is_struct(t["dup"].type):
                names = [t["dup"].type.field(i).name for i in range(t["dup"].type.num_fields)]
                if "cluster_size" in names:
                    sizes = pc.struct_field(t["dup"], "cluster_size").drop_null().to_pylist()
                    clusters.update(int(s) for s in sizes)

    quality: dict[str, Any] = {}
    quality_vs_prev: dict[str, list[int]] = {}
    prev_q = (previous or {}).get("quality", {})
    for name, chunks in sorted(values.items()):
        v = np.concatenate(chunks) if chunks else np.array([])
        if v.size == 0:
            continue
        lo, hi = float(v.min()), float(v.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, mon.histogram_bins + 1)
        hist, _ = np.histogram(v, bins=edges)
        deciles = np.quantile(v, np.linspace(0, 1, 11)).tolist()
        quality[name] = {
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in hist],
            "deciles": deciles,
            "decile_counts": _bin_counts(v, deciles),
            "mean": float(v.mean()),
        }
        base = prev_q.get(name, {}).get("deciles")
        if base:
            quality_vs_prev[name] = _bin_counts(v, base)

    stages = report.get("stages", [])
    rows_read = report.get("rows_read", 0) or 0
    dedup_dropped = sum(sum(s["dropped"].values()) for s in stages if _is_dedup_stage(s["name"]))
    pii: Counter = Counter()
    for s in stages:
        if _is_pii_stage(s["name"]):
            for k, v in s.get("counters", {}).items():
                pii[k] += v
    # The pii stage's counters are hits per type (text + meta) plus tallies (docs_with_pii, media_*, meta_pii: the
    # share of the hits found in meta, already in the per-type counts).
    pii_types = {k: v for k, v in pii.items() if not k.startswith(("docs", "media", "meta", "by_detector."))}
    # "by_detector.PERSON/spacy_ner" → {"PERSON": {"spacy_ner": n}}: which detectors found each type.
    detectors: dict[str, dict[str, float]] = {}
    for key, count in pii.items():
        if key.startswith("by_detector.") and "/" in key:
            etype, det = key[len("by_detector.") :].split("/", 1)
            detectors.setdefault(etype, {})[det] = float(count)
    pii_total = sum(pii_types.values())
    profile = {
        "snapshot_id": snapshot_id,
        "rows": rows,
        "rows_read": rows_read,
        "lang": dict(lang.most_common()),
        "domains": dict(domains.most_common(mon.top_domains)),
        "quality": quality,
        "quality_vs_previous": quality_vs_prev,
        "dedup_clusters": _cluster_hist(clusters),
        "dedup_rate": (dedup_dropped / rows_read) if rows_read else 0.0,
        "dedup_dropped": dedup_dropped,
        "pii": dict(sorted(pii_types.items())),
        "pii_detectors": {t: dict(sorted(d.items())) for t, d in sorted(detectors.items())},
        "pii_docs": pii.get("docs_with_pii"),
        "pii_rate": (pii_total / rows) if rows else 0.0,
        "funnel": [
            {"stage": s["name"], "rows_in": s["rows_in"], "rows_out": s["rows_out"], "dropped": s["dropped"]}
            for s in stages
        ],
        "quarantined": report.get("quarantined", {}),
        "throughput": [
            {
                "stage": s["name"],
                "rows_in": s["rows_in"],
                "seconds": s["seconds"],
                "rows_per_s": (s["rows_in"] / s["seconds"]) if s.get("seconds") else None,
            }
            for s in stages
        ],
        "wall_seconds": report.get("wall_seconds"),
    }
    dropped_domains, attribution = _droplog_domains(snap, manifest)
    profile["bias"] = bias_check(report, dropped_domains, domains, mon, attribution)
    return profile


def _value_counts(arr: pa.Array | pa.ChunkedArray) -> Counter:
    """Counter of the non-null values of a string array (vectorized: published parts can hold millions of rows)."""
    vc = pc.value_counts(arr.drop_null())
    return Counter(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)))


def _bin_counts(v: np.ndarray, edges: list[float]) -> list[int]:
    """Counts of `v` in the bins between consecutive (possibly repeated) edges; outer bins are open-ended."""
    inner = np.asarray(edges[1:-1], dtype=float)
    idx = np.searchsorted(inner, v, side="right")
    return [int(c) for c in np.bincount(idx, minlength=len(edges) - 1)]


def _cluster_hist(clusters: Counter) -> dict[str, int]:
    out: dict[str, int] = {}
    for lo, hi in CLUSTER_BINS:
        label = str(lo) if hi == lo else (f"{lo}-{hi}" if hi else f">{lo - 1}")
        n = sum(c for size, c in clusters.items() if size >= lo and (hi is None or size <= hi))
        if n:
            out[label] = n
    return out


def _droplog_domains(snap: Location, manifest: dict[str, Any]) -> tuple[dict[str, Counter], str]:
    """stage → Counter(domain) of dropped rows, and how the drop log attributed them to domains.

    The drop log's `domain` column (any source: `meta.url`, web source uri) is used where it exists; drop logs of
    older snapshots lack it, and their rows fall back to the host of `source_uri`, which only web sources have."""
    out: dict[str, Counter] = {}
    parts = with_col = 0
    for f in manifest.get("files", []):
        if f["kind"] != "droplog":
            continue
        parts += 1
        has_domain = False
        for t in _iter_parquet(snap.join(f["path"]), ["stage", DOMAIN_COL, "source_uri"]):
            if "stage" not in t.column_names:
                continue
            from_uri = url_host(t["source_uri"]) if "source_uri" in t.column_names else None
            if DOMAIN_COL in t.column_names:
                has_domain = True
                dom = pc.coalesce(t[DOMAIN_COL], from_uri) if from_uri is not None else t[DOMAIN_COL]
            elif from_uri is not None:
                dom = from_uri
            else:
                continue
            keyed = pa.table({"stage": t["stage"], "domain": dom}).filter(pc.is_valid(dom))
            for row in keyed.group_by(["stage", "domain"]).aggregate([([], "count_all")]).to_pylist():
                out.setdefault(row["stage"], Counter())[row["domain"]] += row["count_all"]
        with_col += has_domain
    if not parts:
        attribution = "nothing dropped"
    elif with_col == parts:
        attribution = "drop log domain column (meta.url / url / web source uri)"
    elif with_col:
        attribution = "drop log domain column; older parts: web source uris only"
    else:
        attribution = (
            "web source uris only (drop log without a domain column)"
            if out
            else "none (drop log without a domain column, no web source uris)"
        )
    return out, attribution


def bias_check(
    report: dict[str, Any],
    dropped_domains: dict[str, Counter],
    kept_domains: Counter,
    mon: Any,
    attribution: str | None = None,
) -> dict[str, Any]:
    """Keep rates per language and per top domain for every filter, and the groups a filter hits unusually hard.

    `kept_domains` counts published rows, `dropped_domains` dropped rows per stage (label as in report.json); top
    domains are the biggest by rows entering the first stage, so a domain a filter wipes out still ranks."""
    per_stage: list[dict[str, Any]] = []
    flags: list[dict[str, Any]] = []
    stages = report.get("stages", [])
    # Domains: rows entering stage i = kept at the end + dropped by stage i and every later stage.
    later: Counter = Counter(kept_domains)
    domain_in: dict[str, Counter] = {}
    for s in reversed(stages):
        later = later + dropped_domains.get(s["name"], Counter())
        domain_in[s["name"]] = Counter(later)
    first_in = domain_in[stages[0]["name"]] if stages else Counter(kept_domains)
    top = [d for d, _ in first_in.most_common(mon.top_domains)]
    for s in stages:
        total_in = s["rows_in"]
        dropped = sum(s["dropped"].values())
        overall = dropped / total_in if total_in else 0.0
        langs = {}
        for lang, d in s.get("by_lang", {}).items():
            drop_n = sum(d["dropped"].values())
            n_in = d["kept"] + drop_n
            langs[lang] = {"rows_in": n_in, "keep_rate": (d["kept"] / n_in) if n_in else None}
            _flag(flags, s["name"], "lang", lang, n_in, drop_n, overall, mon)
        doms = {}
        dd = dropped_domains.get(s["name"], Counter())
        for dom in sorted(set(top) | set(dd)):
            n_in = domain_in[s["name"]].get(dom, 0)
            drop_n = dd.get(dom, 0)
            if not n_in or (dom not in top and n_in < mon.bias_min_rows):
                continue
            doms[dom] = {"rows_in": n_in, "keep_rate": ((n_in - drop_n) / n_in) if n_in else None}
            _flag(flags, s["name"], "domain", dom, n_in, drop_n, overall, mon)
        per_stage.append({"stage": s["name"], "drop_rate": overall, "by_lang": langs, "by_domain": doms})
    if attribution is None:
        attribution = "drop log" if dropped_domains else "none (no domains in the drop log)"
    return {"stages": per_stage, "flags": flags, "domain_attribution": attribution}


def _flag(
    flags: list[dict[str, Any]],
    stage: str,
    kind: str,
    group: str,
    n_in: int,
    drop_n: int,
    overall: float,
    mon: Any,
) -> None:
    if n_in < mon.bias_min_rows or not n_in:
        return
    rate = drop_n / n_in
    if rate > mon.bias_ratio * overall and rate - overall >= mon.bias_min_gap:
        flags.append(
            {
                "stage": stage,
                kind: group,
                "drop_rate": round(rate, 4),
                "stage_drop_rate": round(overall, 4),
                "rows_in": n_in,
                "ratio": round(rate / overall, 2) if overall > 0 else math.inf,
            }
        )
