"""`fuzzy_dedup`: MinHash-LSH near-duplicate removal over the whole corpus, one document kept per cluster.

Why each step (details and the S-curve in docs/DEDUP.md):
1. map: shingle + sign + band every text row (minhash.py; GPU signatures when `device` allows), writing only band
   rows (band key, band, node): about 200 B per document, the scratch's largest part;
2. buckets: documents sharing a band key are candidates; each is paired with the bucket's smallest key
   (its anchor), and band keys found in the published index mark documents as `dup_of_published`;
3. verify (default on): exact Jaccard of each candidate pair. Shingle sets are not kept for every document:
   the candidates' texts are read back from the stage's input checkpoint (a second pass that keeps only rows
   whose row key is a candidate's) and joined to the pairs in two co-partitioned joins; shingles are recomputed
   there, so LSH false positives never merge clusters and the scratch holds texts of candidates only;
4. connected components of the verified edges (components.py, Large-/Small-Star on Ray tasks);
5. assign: per component the smallest non-published priority key is kept, the rest get `near_dup`;
6. index: the kept documents' band keys, from the band rows, go to this run's index generation;
7. final join per checkpoint file (assign.CheckpointJoin): rows are read back from the checkpoint, not copied.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.location import Location
from refinery.stage import GlobalContext, GlobalStage, Resources, register
from stages.dedup.assign import CheckpointJoin, map_summary, read_all
from stages.dedup.components import connected_components, roots_of, write_symmetric
from stages.dedup.index import (
    clear_generation,
    gen_file_prefix,
    index_location,
    read_index_partitioned,
    write_generation,
)
from stages.dedup.keys import (
    DUP_TYPE,
    DedupParams,
    combine,
    first_run_id,
    id_of_node,
    priority_keys,
    row_key_of_node,
    row_keys,
)
from stages.dedup.minhash import (
    M64,
    band_keys,
    gpu_available,
    jaccard_sorted,
    permutations,
    prepare_texts,
    shingle_texts,
    signatures,
)
from stages.dedup.shuffle import (
    Store,
    batch_tag,
    choose_partitions,
    key_hash64,
    lookup,
    partition_of,
    unique_table,
    wave,
)

log = logging.getLogger("refinery.dedup")
GPU_BATCH_ROWS = 1 << 16


class FuzzyDedupParams(DedupParams):
    ngram: int = Field(default=5, ge=1, le=32)  # word n-gram shingles
    bands: int = Field(default=14, ge=1, le=256)
    rows: int = Field(default=8, ge=1, le=64)  # hashes per band; bands × rows permutations in all
    seed: int = 1  # seeds the hash family (the GPU path uses the same one)
    verify: bool = True  # check candidate pairs by exact Jaccard of their shingle sets
    jaccard_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    # where signatures are computed. auto: on a GPU when the map step was given one (the stage's resources declare
    # GPUs, e.g. `resources: {num_gpus: 1}`, and the cluster has them) and torch sees it, else on the CPU;
    # cuda: declares a GPU for the map step, with the same CPU fallback where the cluster has none
    device: Literal["cpu", "cuda", "auto"] = "auto"
    modalities: list[str] = Field(default_factory=lambda: ["text"])  # rows of other modalities are left alone


class _FuzzyMap:
    """Map step: docs → band rows (`bands`: band key, band number, node), partitioned by band key."""

    def __init__(self, params: FuzzyDedupParams, store: Store, gpu: bool):
        self.params = params
        self.store = store
        self.gpu = gpu  # the task was given a GPU: use it if torch sees one (CPU fallback otherwise)
        self._hasher: Any = None

    def _device(self) -> str:
        if self._hasher is None:
            self._hasher = "cpu"
            if self.gpu and gpu_available():
                from stages.dedup.minhash_gpu import TorchMinHash

                p = self.params
                a, b = permutations(p.bands * p.rows, p.seed)
                self._hasher = TorchMinHash(a, b, p.ngram, "cuda")
            elif self.gpu:
                log.warning("fuzzy_dedup: a GPU was asked for but torch sees none; signatures on the CPU")
        return "cpu" if isinstance(self._hasher, str) else "cuda"

    def __call__(self, batch: pa.Table) -> pa.Table:
        p = self.params
        n = batch.num_rows
        judged = _judged(batch, p)
        device = self._device()
        if device == "cuda":
            sig = self._hasher.signatures(*prepare_texts(batch["text"]))
            # documents without shingles: all-ones rows (any real shingle gives a smaller minimum)
            has = (sig != np.uint64(M64)).any(axis=1) & judged
        else:
            sb = shingle_texts(batch["text"], p.ngram, distinct=False)
            has = (np.diff(sb.offsets) > 0) & judged
            sig = signatures(sb, p.bands, p.rows, p.seed) if has.any() else None
        # documents without shingles (or of other modalities) take part in nothing
        idx = np.flatnonzero(has)
        if len(idx):
            assert sig is not None
            keys = band_keys(sig[idx], p.bands, p.rows).reshape(-1)
            node = priority_keys(batch.take(pa.array(idx)), p).to_numpy(zero_copy_only=False)
            bt = pa.table(
                {
                    "key": pa.array(keys, pa.uint64()),
                    "band": pa.array(np.tile(np.arange(p.bands, dtype=np.int16), len(idx))),
                    "node": pa.array(np.repeat(node, p.bands), pa.string()),
                }
            )
            self.store.write("bands", bt, partition_of(keys, self.store.nparts), batch_tag(row_keys(batch)))
        return pa.table({"rows": [n], "parts": [[]], "run_id": [first_run_id(batch)], "device": [device]})


def _judged(batch: pa.Table, p: FuzzyDedupParams) -> np.ndarray:
    """Rows of the modalities this stage judges."""
    modality = (
        pc.fill_null(batch["modality"], "text")
        if "modality" in batch.column_names
        else pa.array(["text"] * batch.num_rows)
    )
    return pc.is_in(combine(modality), pa.array(p.modalities)).to_numpy(zero_copy_only=False)


def _candidates(store: Store, k: int) -> dict[str, Any]:
    """Pairs of partition k → 64-bit hashes of their documents' row keys (one small file; the fetch pass loads
    them all)."""
    pt = store.read("pairs", k)
    if pt is None:
        return {"candidates": 0}
    nodes = pc.unique(pa.concat_arrays([combine(pt["a"]), combine(pt["b"])]))
    h = np.unique(key_hash64(row_key_of_node(nodes)))
    store.write_one("cand", 0, pa.table({"h": pa.array(h, pa.uint64())}), f"k{k:05d}")
    return {"candidates": len(h)}


class _FetchTexts:
    """Second pass over the checkpoint: the texts of candidate documents → `texts` (node, text), by node. A row
    is kept when its row key's hash is a candidate's (a hash collision only fetches one text too many)."""

    def __init__(self, params: FuzzyDedupParams, store: Store):
        self.params = params
        self.store = store
        self._cand: np.ndarray | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self._cand is None:
            t = read_all(self.store, "cand")
            self._cand = np.unique(t["h"].to_numpy()) if t is not None else np.zeros(0, np.uint64)
        rk = row_keys(batch)
        sel = np.isin(key_hash64(rk), self._cand) & _judged(batch, self.params)
        if sel.any():
            rows = batch.filter(pa.array(sel))
            tt = pa.table({"node": priority_keys(rows, self.params), "text": combine(rows["text"])})
            self.store.write("texts", tt, partition_of(tt["node"], self.store.nparts), batch_tag(rk))
        return pa.table({"rows": [int(sel.sum())]})


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
    """Pairs partitioned by anchor a: attach a's text, re-partition by b."""
    pt = store.read("pairs", k)
    if pt is None:
        return {"pairs": 0}
    pt = unique_table(pt, ["a", "b"])
    texts = store.read("texts", k)
    pos = lookup(pt["a"], texts["node"])
    out = pt.append_column("text_a", pc.take(texts["text"], pos))
    store.write("pairs2", out, partition_of(out["b"], store.nparts), f"a{k:05d}")
    return {"pairs": pt.num_rows}


def _verify_b(store: Store, k: int, ngram: int, threshold: float) -> dict[str, Any]:
    """Pairs partitioned by b: attach b's text, shingle both sides (each distinct document once), keep pairs
    with exact Jaccard ≥ threshold as edges."""
    pt = store.read("pairs2", k)
    if pt is None:
        return {"checked": 0, "edges": 0}
    texts = store.read("texts", k)
    a = combine(pt["a"])
    ua = pc.unique(a)
    sa = shingle_texts(pc.take(combine(pt["text_a"]), pc.index_in(ua, a)), ngram)
    ia = pc.index_in(a, ua).to_numpy()
    pos = lookup(pt["b"], texts["node"]).to_numpy()
    ub, ib = np.unique(pos, return_inverse=True)
    sb = shingle_texts(pc.take(texts["text"], pa.array(ub)), ngram)
    va, oa, vb, ob = sa.values, sa.offsets, sb.values, sb.offsets
    keep = np.zeros(pt.num_rows, dtype=bool)
    for i in range(pt.num_rows):
        x, y = va[oa[ia[i]] : oa[ia[i] + 1]], vb[ob[ib[i]] : ob[ib[i] + 1]]
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


def _write_index(store: Store, k: int, index: Location, run_id: str, label: str) -> dict[str, Any]:
    """Band partition k: the band keys of documents that are kept (no drop reason) → the run's generation."""
    t = store.read("bands", k)
    if t is None:
        return {"entries": 0}
    assign = read_all(store, "assign")
    if assign is not None and assign.num_rows:
        gone = assign.filter(pc.is_valid(assign["reason"]))["rk"]
        t = t.filter(pc.invert(pc.is_in(row_key_of_node(t["node"]), gone)))
    entries = pa.table({"key": t["key"], "band": t["band"], "id": id_of_node(t["node"])})
    write_generation(index, run_id, entries, f"{gen_file_prefix(label)}{k:05d}")
    return {"entries": entries.num_rows}


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

    def apply(self, ds: Any, ctx: GlobalContext) -> Any:
        p = self.params
        # every step runs once per run (ctx.step): a crashed run resumes after its last finished step
        store = Store(ctx.work, ctx.step("partitions", lambda: choose_partitions(p, ctx)))
        # the map step runs where the signatures are computed: on GPU nodes when the stage declares GPUs (config
        # `resources:` or `device: cuda`) and the cluster has them; on CPUs otherwise
        gpu = p.device != "cpu" and ctx.resources.num_gpus > 0 and ctx.num_gpus > 0
        if p.device != "cpu" and ctx.resources.num_gpus > 0 and not gpu:
            log.warning("fuzzy_dedup declares GPUs but the cluster has none: the map step runs on CPUs")
        res = ctx.resources if gpu else ctx.resources.with_(num_gpus=0)

        def map_docs() -> list[Any]:
            store.clear("bands")
            # a GPU wants big batches (one call per batch); 64k rows of 2.3 kB are 150 MB of text
            rows = max(p.map_batch_rows, GPU_BATCH_ROWS) if gpu else p.map_batch_rows
            records = ctx.map_collect(ds, _FuzzyMap(p, store, gpu), rows, res)
            on = {d: sum(int(r["rows"]) for r in records if r["device"] == d) for d in ("cuda", "cpu")}
            log.info("fuzzy_dedup map: %d rows signed on a GPU, %d on CPUs", on["cuda"], on["cpu"])
            return list(map_summary(records))

        rows, _, run_id = ctx.step("map", map_docs)
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
            wave(ctx, store, "candidates", _candidates, [(store, k) for k in ks], writes=["cand"])

            def fetch() -> int:
                store.clear("texts")
                cpus = ctx.resources.with_(num_gpus=0)  # text work, wherever the map step ran
                fetched = ctx.map_collect(ds, _FetchTexts(p, store), p.map_batch_rows, cpus, "fetch")
                return sum(int(r["rows"]) for r in fetched)

            ctx.step("fetch", fetch)
            wave(ctx, store, "verify_a", _verify_a, [(store, k) for k in ks], writes=["pairs2"])
            wave(
                ctx,
                store,
                "verify_b",
                _verify_b,
                [(store, k, p.ngram, p.jaccard_threshold) for k in ks],
                writes=["edges"],
            )

        def components() -> str:
            for done in ("cand", "texts", "pairs", "pairs2"):  # no later step reads them
                store.clear(done)
            return connected_components(ctx, store, "edges")

        stars = ctx.step("components", components)
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
            wave(
                ctx,
                store,
                "write_index",
                _write_index,
                [(store, k, index, run_id, ctx.label) for k in ks],
            )
        # units are JSON: the items are the checkpoint files' URIs
        options = dict(ctx.inputs[0].storage_options) if ctx.inputs else {}
        return ctx.dataset_from(CheckpointJoin(store, ctx.label, options), sorted(f.uri for f in ctx.inputs))
