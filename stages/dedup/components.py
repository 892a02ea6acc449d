"""Connected components of the duplicate graph, computed distributively (no edge ever reaches the driver).

Algorithm: alternating Large-Star / Small-Star (Kiveris et al., "Connected Components in MapReduce and Beyond",
SoCC 2014), converging in O(log² n) rounds. Nodes are priority keys (`common.NODE`), so each component ends as a
star around its *smallest* key, which is exactly the document to keep. Every half-round is one wave of Ray tasks
over hash partitions of the edge list (common.Store): each task reads one partition, works with vectorized
Arrow group-bys, and writes the next half-round's partitions.

- Large-Star, on symmetric edges partitioned by u: m(u) = min(Γ(u) ∪ {u}); emit (v, m(u)) for every v ∈ Γ(u)
  with v > u — written partitioned by v (its larger end), the grouping Small-Star needs.
- Small-Star, on edges (x, y) with y < x partitioned by x: m(x) = min(Γ(x)); emit (x, m(x)) and (y, m(x)) for
  y ≠ m(x) — written symmetric, partitioned by each end, for the next Large-Star.

Convergence: each Large-Star task fingerprints its distinct input edges (count, 64-bit sum of edge hashes); the
driver sums P numbers and stops when two consecutive rounds see the same edge set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.stage import GlobalContext
from stages.dedup.minhash import hash_strings
from stages.dedup.shuffle import Store, lookup, partition_of, unique_table

MAX_ROUNDS = 64


def write_symmetric(store: Store, step: str, u: pa.Array, v: pa.Array, tag: str) -> None:
    """Write undirected edges (u, v) as both directions, partitioned by their first end."""
    if len(u) == 0:
        return
    t = pa.table({"u": pa.concat_arrays([_arr(u), _arr(v)]), "v": pa.concat_arrays([_arr(v), _arr(u)])})
    store.write(step, t, partition_of(t["u"], store.nparts), tag)


def _arr(x: pa.Array | pa.ChunkedArray) -> pa.Array:
    x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
    return x.cast(pa.string())


def _fingerprint(t: pa.Table) -> tuple[int, int]:
    hu = hash_strings(t["u"])
    hv = hash_strings(t["v"])
    with np.errstate(over="ignore"):
        s = (hu * np.uint64(0x9E3779B97F4A7C15) + hv).sum(dtype=np.uint64)
    return t.num_rows, int(s)


def _large_star(store: Store, src: str, dst: str, k: int) -> dict[str, Any]:
    t = store.read(src, k)
    if t is None:
        return {"n": 0, "fp": 0}
    t = unique_table(t.select(["u", "v"]), ["u", "v"])
    t = t.filter(pc.not_equal(t["u"], t["v"]))
    n, fp = _fingerprint(t)
    g = t.group_by("u", use_threads=False).aggregate([("v", "min")])
    mu = pc.take(g["v_min"], lookup(t["u"], g["u"]))
    mu = pc.min_element_wise(mu, t["u"])
    sel = pc.greater(t["v"], t["u"])
    out = pa.table({"x": t["v"], "y": mu}).filter(sel)
    store.write(dst, out, partition_of(out["x"], store.nparts), f"l{k:05d}")
    return {"n": n, "fp": fp}


def _small_star(store: Store, src: str, dst: str, k: int) -> dict[str, Any]:
    t = store.read(src, k)
    if t is None:
        return {"n": 0}
    t = unique_table(t.select(["x", "y"]), ["x", "y"])
    g = t.group_by("x", use_threads=False).aggregate([("y", "min")])
    # (x, m(x)) once per x, and (y, m(x)) for every other y
    mx_row = pc.take(g["y_min"], lookup(t["x"], g["x"]))
    others = pc.not_equal(t["y"], mx_row)
    u = pa.concat_arrays([_arr(g["x"]), _arr(t["y"].filter(others))])
    v = pa.concat_arrays([_arr(g["y_min"]), _arr(mx_row.filter(others))])
    write_symmetric(store, dst, u, v, f"s{k:05d}")
    return {"n": t.num_rows}


def connected_components(ctx: GlobalContext, store: Store, edges_step: str) -> str:
    """Run Large-Star/Small-Star to convergence on symmetric edges in `edges_step`; returns the step holding
    the final star edges (symmetric, partitioned by u): each non-root node has exactly one edge, to its root."""
    cur = edges_step
    prev_fp: tuple[int, int] | None = None
    for r in range(MAX_ROUNDS):
        ls_out = f"cc-ls{r}"
        store.clear(ls_out)
        res = ctx.run_wave(
            _large_star, [(store, cur, ls_out, k) for k in range(store.nparts)], f"large_star{r}"
        )
        fp = (sum(x["n"] for x in res), sum(x["fp"] for x in res) & ((1 << 64) - 1))
        if fp[0] == 0 or fp == prev_fp:
            return cur
        prev_fp = fp
        ss_out = f"cc-ss{r}"
        store.clear(ss_out)
        ctx.run_wave(_small_star, [(store, ls_out, ss_out, k) for k in range(store.nparts)], f"small_star{r}")
        if cur != edges_step:
            store.clear(cur)
        store.clear(ls_out)
        cur = ss_out
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def roots_of(t: pa.Table) -> pa.Table:
    """From converged star edges of one partition (symmetric, by u): (node, root) for every node u."""
    t = unique_table(t.select(["u", "v"]), ["u", "v"])
    g = t.group_by("u", use_threads=False).aggregate([("v", "min")])
    return pa.table({"node": g["u"], "root": pc.min_element_wise(g["v_min"], g["u"])})
