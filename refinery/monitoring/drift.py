"""Distribution drift between two snapshots: Jensen–Shannon divergence or the population stability index.

Both compare two histograms over the same categories (languages) or bins (quality-signal values binned on the
*previous* snapshot's deciles). JS divergence is symmetric, bounded in [0, 1] (base 2) and defined when a category
is missing on one side; PSI = Σ (p−q)·ln(p/q) is the credit-scoring classic (< 0.1 stable, 0.1–0.25 moderate,
> 0.25 large) and needs a small floor for empty bins (`EPS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

EPS = 1e-4


def _normalize(counts: Mapping[str, float], keys: list[str]) -> list[float]:
    total = float(sum(max(0.0, counts.get(k, 0.0)) for k in keys))
    if total <= 0:
        return [0.0 for _ in keys]
    return [max(0.0, counts.get(k, 0.0)) / total for k in keys]


def js_divergence(p_counts: Mapping[str, float], q_counts: Mapping[str, float]) -> float:
    """Jensen–Shannon divergence (base 2): 0 = same distribution, 1 = disjoint supports."""
    keys = sorted(set(p_counts) | set(q_counts))
    p, q = _normalize(p_counts, keys), _normalize(q_counts, keys)
    if not any(p) or not any(q):
        return 0.0
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(x: list[float], y: list[float]) -> float:
        return sum(a * math.log2(a / b) for a, b in zip(x, y, strict=True) if a > 0)

    return max(0.0, min(1.0, 0.5 * kl(p, m) + 0.5 * kl(q, m)))


def psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """Population stability index of `actual` against `expected` (empty bins floored at EPS)."""
    keys = sorted(set(expected) | set(actual))
    e, a = _normalize(expected, keys), _normalize(actual, keys)
    if not any(e) or not any(a):
        return 0.0
    return sum((ai - ei) * math.log(max(ai, EPS) / max(ei, EPS)) for ei, ai in zip(e, a, strict=True))


def divergence(metric: str, previous: Mapping[str, float], current: Mapping[str, float]) -> float:
    return psi(previous, current) if metric == "psi" else js_divergence(previous, current)


def compare_profiles(
    prev: dict[str, Any], cur: dict[str, Any], mon: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Drift metrics of `cur` against `prev` and the alerts that cross `mon` (a MonitoringConfig) thresholds."""
    metric = mon.drift_metric
    drift: dict[str, Any] = {"metric": metric, "previous_snapshot": prev.get("snapshot_id")}
    alerts: list[dict[str, Any]] = []

    def check(name: str, value: float, limit: float, detail: str) -> None:
        if value > limit:
            alerts.append({"metric": name, "value": round(value, 4), "threshold": limit, "detail": detail})

    lang = divergence(metric, prev.get("lang", {}), cur.get("lang", {}))
    drift["lang"] = round(lang, 4)
    check("lang_mix", lang, mon.max_lang_drift, f"language mix {metric}={lang:.3f}")

    drift["quality"] = {}
    for sig, cur_q in cur.get("quality_vs_previous", {}).items():
        base = prev.get("quality", {}).get(sig, {}).get("decile_counts")
        if not base:
            continue
        base_map = {str(i): c for i, c in enumerate(base)}
        cur_map = {str(i): c for i, c in enumerate(cur_q)}
        d = divergence(metric, base_map, cur_map)
        drift["quality"][sig] = round(d, 4)
        check(f"quality.{sig}", d, mon.max_quality_drift, f"quality signal {sig} {metric}={d:.3f}")

    for name, limit in (("dedup_rate", mon.max_dedup_rate_change), ("pii_rate", mon.max_pii_rate_change)):
        a, b = prev.get(name), cur.get(name)
        if a is None or b is None:
            continue
        change = b - a
        drift[name] = {"previous": round(a, 4), "current": round(b, 4), "change": round(change, 4)}
        check(name, abs(change), limit, f"{name} {a:.3f} → {b:.3f}")
    return drift, alerts
