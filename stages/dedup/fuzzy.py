"""`fuzzy_dedup`: MinHash-LSH near-duplicate removal over the whole corpus, one document kept per cluster.

Why each step (details and the S-curve in docs/DEDUP.md):
1. map: shingle + sign + band every text row (minhash.py; GPU signatures when `device` allows), writing docs (by
   id), per-document shingle sets (by priority key, for verification) and band rows (by band key);
2. buckets: documents sharing a band key are candidates; each is paired with the bucket's smallest key
   (its anchor), and band keys found in the published index mark documents as `dup_of_published`;
3. verify (default on): exact Jaccard of each candidate pair, via two co-partitioned joins with the shingle sets,
   so LSH false positives never merge clusters;
4. connected components of the verified edges (components.py, Large-/Small-Star on Ray tasks);
5. assign: per component the smallest non-published priority key is kept, the rest get `near_dup`;
6. final join per doc partition (common.FinalJoin), which also writes the kept rows' band keys to the index.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.stage import GlobalContext, GlobalStage, Resources, register
from stages.dedup.assign import final_dataset, map_summary
from stages.dedup.components import connected_components, roots_of, write_symmetric
from stages.dedup.index import clear_generation, index_location, read_index_partitioned
from stages.dedup.keys import (
    DUP_TYPE,
    NODE,
    ROW_KEY,
    DedupParams,
    combine,
    first_run_id,
    id_of_node,
    priority_keys,
    row_key_of_node,
    row_keys,
)
from stages.dedup.minhash import band_keys, gpu_available, jaccard_sorted, shingle_texts, signatures
from stages.dedup.shuffle import Store, batch_tag, choose_partitions, lookup, partition_of, unique_table, wave


class FuzzyDedupParams(DedupParams):
    ngram: int = Field(default=5, ge=1, le=32)  # word n-gram shingles
    bands: int = Field(default=14, ge=1, le=256)
    rows: int = Field(default=8, ge=1, le=64)  # hashes per band; bands × rows permutations in all
    seed: int = 1  # seeds the hash family (the GPU path uses the same one)
    verify: bool = True  # check candidate pairs by exact Jaccard of their shingle sets
    jaccard_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    modalities: list[str] = Field(default_factory=lambda: ["text"])  # rows of other modalities are left alone


class _FuzzyMap:
    """Map step: docs → `docs` (by id, with `_node` and `_bands`), shingle sets → `nodes`, band rows → `bands`."""

    def __init__(self, params: FuzzyDedupParams, store: Store, device: str):
        self.params = params
        self.store = store
        self.device = device

    def __call__(self, batch: pa.Table) -> pa.Table:
        p = self.params
        n = batch.num_rows
        node = priority_keys(batch, p)
        modality = (
            pc.fill_null(batch["modality"], "text")
            if "modality" in batch.column_names
            else pa.array(["text"] * n)
        )
        judged = pc.is_in(combine(modality), pa.array(p.modalities)).to_numpy(zero_copy_only=False)
        sb = shingle_texts(batch["text"], p.ngram)
        has = (np.diff(sb.offsets) > 0) & judged
        sig = signatures(sb, p.bands, p.rows, p.seed, self.device)
        keys = band_keys(sig, p.bands, p.rows)
        # documents without shingles (or of other modalities) take part in nothing
        flat = keys[has].reshape(-1)
        bands_col = pa.ListArray.from_arrays(
            pa.array(np.arange(0, (n + 1) * p.bands, p.bands, dtype=np.int32)),
            pa.array(keys.reshape(-1), pa.uint64()),
            mask=pa.array(~has),
        )
        rk = row_keys(batch)
        tag = batch_tag(rk)
        docs = batch.append_column(NODE, node).append_column("_bands", bands_col).append_column(ROW_KEY, rk)
        parts = self.store.write("docs", docs, partition_of(rk, self.store.nparts), tag)
        idx = np.flatnonzero(has)
        node_sel = node.take(pa.array(idx))
        lens = np.diff(sb.offsets)[idx]
        starts = sb.offsets[idx]
        vals = (
            np.concatenate([sb.values[s : s + ln] for s, ln in zip(starts, lens, strict=True)])
            if len(idx)
            else np.zeros(0, np.uint64)
        )
        offs = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        if p.verify and len(idx):
            sets = pa.LargeListArray.from_arrays(pa.array(offs), pa.array(vals, pa.uint64()))
            nt = pa.table({"node": node_sel, "sh": sets})
            self.store.write("nodes", nt, partition_of(nt["node"], self.store.nparts), tag)
        if len(idx):
            bt = pa.table(
                {
                    "key": pa.array(flat, pa.uint64()),
                    "node": pa.array(
                        np.repeat(node_sel.to_numpy(zero_copy_only=False), p.bands), pa.string()
                    ),
                }
            )
            self.store.write("bands", bt, partition_of(flat, self.store.nparts), tag)
        return pa.table({"rows": [n], "parts": [parts], "run_id": [first_run_id(batch)]})


def _buckets(store: Store, k: int, verify: bool, against: bool) -> dict[str, Any]:
    """Band-key partition k: pair each bucket member with the bucket's smallest key; find published matches."""
    t = store.read("bands", k)
    if t is None:
        return {"pairs": 0, "published": 0}
    g = t.group_by("key", use_threads=False).aggregate([("node", "min"), ("node", "count")])
    multi = g.filter(pc.greater(g["node_count"], 1))
    pairs = 0
    if multi.num_rows:
        pos = lookup(t["key"], multi["key"])
        sel = pc.is_valid(pos)
        members = t.filter(sel)
        anchor = pc.take(multi["node_min"], pos.filter(sel))
        keep = pc.not_equal(members["node"], anchor)
        a = anchor.filter(keep)
        b = members["node"].combine_chunks().filter(keep)
        pt = unique_table(pa.table({"a": a, "b": b}), ["a", "b"])
        pairs = pt.num_rows
        if verify:
            store.write("pairs", pt, partition_of(pt["a"], store.nparts), f"b{k:05d}")
        else:
            write_symmetric(store, "edges", pt["a"], pt["b"], f"b{k:05d}")
    published = 0
    if against:
        idx = store.read("index", k, columns=["key", "id"])
        if idx is not None and idx.num_rows:
            idx = idx.group_by("key", use_threads=False).aggregate([("id", "min")])
            pos = lookup(t["key"], idx["key"])
            hit = pc.is_valid(pos)
            pub = pa.table(
                {
                    "node": t["node"].combine_chunks().filter(hit),
                    "pub_id": pc.take(idx["id_min"], pos.filter(hit)),
                }
            )
            pub = (
                pub.group_by("node", use_threads=False)
                .aggregate([("pub_id", "min")])
                .rename_columns(["node", "pub_id"])
            )
            published = pub.num_rows
            store.write("published", pub, partition_of(pub["node"], store.nparts), f"b{k:05d}")
    return {"pairs": pairs, "published": published}


def _verify_a(store: Store, k: int) -> dict[str, Any]:
    """Pairs partitioned by anchor a: attach a's shingle set, re-partition by b."""
    pt = store.read("pairs", k)
    if pt is None:
        return {"pairs": 0}
    pt = unique_table(pt, ["a", "b"])
    nodes = store.read("nodes", k)
    pos = lookup(pt["a"], nodes["node"])
    out = pt.append_column("sh_a", pc.take(nodes["sh"], pos))
    store.write("pairs2", out, partition_of(out["b"], store.nparts), f"a{k:05d}")
    return {"pairs": pt.num_rows}


def _verify_b(store: Store, k: int, threshold: float) -> dict[str, Any]:
    """Pairs partitioned by b: attach b's shingle set, keep pairs with exact Jaccard ≥ threshold as edges."""
    pt = store.read("pairs2", k)
    if pt is None:
        return {"checked": 0, "edges": 0}
    nodes = store.read("nodes", k)
    pos = lookup(pt["b"], nodes["node"])
    sa = pt["sh_a"].combine_chunks()
    sb = combine(pc.take(nodes["sh"], pos))
    va, oa = sa.values.to_numpy(), sa.offsets.to_numpy()
    vb, ob = sb.values.to_numpy(), sb.offsets.to_numpy()
    keep = np.zeros(pt.num_rows, dtype=bool)
    for i in range(pt.num_rows):
        x, y = va[oa[i] : oa[i + 1]], vb[ob[i] : ob[i + 1]]
        # |x ∩ y| ≤ min(|x|,|y|): skip pairs whose sizes alone rule the threshold out
        if min(len(x), len(y)) < threshold * max(len(x), len(y)):
            continue
        keep[i] = jaccard_sorted(x, y) >= threshold
    e = pt.filter(pa.array(keep))
    write_symmetric(store, "edges", e["a"], e["b"], f"v{k:05d}")
    return {"checked": pt.num_rows, "edges": e.num_rows}


def _assign_a(store: Store, stars: str, k: int, against: bool) -> dict[str, Any]:
    """Node partition k: (node, root, published id) for every node in a cluster or matching the index;
    re-partitioned by root."""
    t = store.read(stars, k)
    rt = (
        roots_of(t)
        if t is not None
        else pa.table({"node": pa.array([], pa.string()), "root": pa.array([], pa.string())})
    )
    pub = store.read("published", k) if against else None
    if pub is not None and pub.num_rows:
        pos = lookup(rt["node"], pub["node"])
        rt = rt.append_column("pub_id", pc.take(pub["pub_id"], pos))
        lonely = pub.filter(pc.is_null(lookup(pub["node"], rt["node"])))
        rt = pa.concat_tables(
            [rt, pa.table({"node": lonely["node"], "root": lonely["node"], "pub_id": lonely["pub_id"]})],
            promote_options="permissive",
        )
    else:
        rt = rt.append_column("pub_id", pa.nulls(rt.num_rows, pa.string()))
    store.write("roots", rt, partition_of(rt["root"], store.nparts), f"a{k:05d}")
    return {"nodes": rt.num_rows}


def _assign_b(store: Store, k: int) -> dict[str, Any]:
    """Root partition k: cluster size, the kept document (smallest non-published key), drop reasons."""
    rt = store.read("roots", k)
    if rt is None:
        return {"clusters": 0}
    rt = (
        rt.group_by(["node", "root"], use_threads=False)
        .aggregate([("pub_id", "min")])
        .rename_columns(["node", "root", "pub_id"])
    )
    pub = pc.is_valid(rt["pub_id"])
    cand = pc.if_else(pub, pa.nulls(rt.num_rows, pa.string()), rt["node"])
    g = (
        pa.table({"root": rt["root"], "cand": cand})
        .group_by("root", use_threads=False)
        .aggregate([("cand", "min"), ("cand", "count", pc.CountOptions(mode="all"))])
    )
    pos = lookup(rt["root"], g["root"])
    best = pc.take(g["cand_min"], pos)
    size = pc.take(g["cand_count"], pos)
    kept = pc.fill_null(pc.equal(rt["node"], best), False)
    reason = pc.if_else(
        pub,
        pa.scalar("dup_of_published"),
        pc.if_else(kept, pa.nulls(rt.num_rows, pa.string()), pa.scalar("near_dup")),
    )
    out = pa.table(
        {
            "rk": row_key_of_node(rt["node"]),
            "cluster_id": id_of_node(rt["root"]),
            "cluster_size": size,
            "kept": kept,
            "reason": reason,
        }
    )
    store.write("assign", out, partition_of(out["rk"], store.nparts), f"c{k:05d}")
    return {"clusters": g.num_rows}


@register
class FuzzyDedup(GlobalStage[FuzzyDedupParams]):
    name = "fuzzy_dedup"

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        if self.params.device == "cuda":
            # instance-level: Ray places the signature tasks on GPU nodes
            self.resources = Resources(num_cpus=1, num_gpus=1)

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("dup", DUP_TYPE)]

    def _device(self, ctx: GlobalContext) -> str:
        dev = self.params.device
        if dev == "auto":
            return "cuda" if ctx.num_gpus > 0 and gpu_available() else "cpu"
        return dev

    def apply(self, ds: Any, ctx: GlobalContext) -> Any:
        p = self.params
        # every step runs once per run (ctx.step): a crashed run resumes after its last finished step
        store = Store(ctx.work, ctx.step("partitions", lambda: choose_partitions(p, ctx)))
        device = self._device(ctx)
        # the map step runs where the signatures are computed: on a GPU when the device says so
        res = (
            ctx.resources.with_(num_gpus=max(1.0, ctx.resources.num_gpus))
            if device == "cuda"
            else ctx.resources.with_(num_gpus=0)
        )

        def map_docs() -> list[Any]:
            for step in ("docs", "nodes", "bands"):
                store.clear(step)
            return list(map_summary(ctx.map_collect(ds, _FuzzyMap(p, store, device), p.map_batch_rows, res)))

        rows, doc_parts, run_id = ctx.step("map", map_docs)
        if rows == 0:
            return ds
        index = index_location(p, ctx, self.name)
        ks = range(store.nparts)
        if p.against_index:
            ctx.step("index", lambda: read_index_partitioned(ctx, store, "index", index, "key"))
        wave(
            ctx,
            store,
            "buckets",
            _buckets,
            [(store, k, p.verify, p.against_index) for k in ks],
            writes=["pairs", "edges", "published"],
        )
        if p.verify:
            wave(ctx, store, "verify_a", _verify_a, [(store, k) for k in ks], writes=["pairs2"])
            wave(
                ctx,
                store,
                "verify_b",
                _verify_b,
                [(store, k, p.jaccard_threshold) for k in ks],
                writes=["edges"],
            )
        stars = ctx.step("components", lambda: connected_components(ctx, store, "edges"))
        wave(
            ctx,
            store,
            "assign_a",
            _assign_a,
            [(store, stars, k, p.against_index) for k in ks],
            writes=["roots"],
        )
        wave(ctx, store, "assign_b", _assign_b, [(store, k) for k in ks], writes=["assign"])
        if p.update_index and run_id:
            ctx.step("clear_index", lambda: clear_generation(index, run_id, ctx.label))
        return final_dataset(ctx, store, doc_parts, index if p.update_index else None, run_id, "_bands")
