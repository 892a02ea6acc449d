"""`exact_dedup`: one document per group of identical (normalized) texts, identical media, or identical URLs.

Why normalize before hashing: copies of a page often differ only in case, spacing or Unicode forms; hashing the
normalized text catches them while staying exact. Image/audio rows are grouped by `media.sha256` (the bytes), not
by their caption. The kept document of a group is chosen by the configured priority (deterministic), so a re-run
keeps the same documents and gives the same cluster ids (the kept document's id).

Steps (see common.py for the shuffle): map (key + priority per row; docs partitioned by id, keys by key hash) →
reduce per key partition (group, pick, compare with the published index) → final join per doc partition.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from refinery.stage import GlobalContext, GlobalStage, register
from stages.dedup.assign import final_dataset, map_summary
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
from stages.dedup.shuffle import Store, batch_tag, choose_partitions, lookup, partition_of, wave

MEDIA = ("image", "audio")
KEY_TYPE = pa.binary(16)


class ExactDedupParams(DedupParams):
    # What makes two rows duplicates: their normalized text (media rows: media.sha256), their URL, or their id
    # (rows repeating an earlier row's id; `input.on_duplicate_id: quarantine` runs this first, implicitly).
    by: Literal["text", "url", "id"] = "text"
    # Text normalization before hashing (by=text):
    nfkc: bool = True  # Unicode NFKC (compatibility forms, e.g. full-width letters, ligatures)
    lowercase: bool = True
    whitespace: bool = True  # collapse runs of whitespace to one space, trim the ends
    punctuation: bool = False  # remove Unicode punctuation and symbols
    digits: bool = False  # every digit → 0 (counters, dates and prices no longer make copies differ)
    # by=url: the key inside the row's `meta` JSON that holds the page URL (readers put WARC-Target-URI here).
    url_field: str = "url"
    media: bool = True  # group image/audio rows by media.sha256 (by=text only)


def normalize_exact(text: pa.Array | pa.ChunkedArray, p: ExactDedupParams) -> pa.Array:
    t = combine(text)
    if p.nfkc:
        t = pc.utf8_normalize(t, "NFKC")
    if p.lowercase:
        t = pc.utf8_lower(t)
    if p.punctuation:
        t = pc.replace_substring_regex(t, r"[\p{P}\p{S}]+", "")
    if p.digits:
        t = pc.replace_substring_regex(t, r"\p{Nd}", "0")
    if p.whitespace:
        t = pc.utf8_trim_whitespace(pc.replace_substring_regex(t, r"\s+", " "))
    return combine(t)


def normalize_url(url: str | None) -> str | None:
    """Scheme and host lower-cased, default ports, fragments and a trailing slash removed; query kept."""
    if not url or not isinstance(url, str):
        return None
    try:
        s = urlsplit(url.strip())
    except ValueError:
        return None
    if not s.netloc:
        return None
    host = s.netloc.lower()
    if (s.scheme.lower() == "http" and host.endswith(":80")) or (
        s.scheme.lower() == "https" and host.endswith(":443")
    ):
        host = host.rsplit(":", 1)[0]
    path = s.path.rstrip("/") or ""
    return urlunsplit((s.scheme.lower(), host, path, s.query, ""))


def _hash128(values: list[bytes | None]) -> pa.Array:
    raw = bytearray()
    valid = []
    for v in values:
        if v is None:
            raw += b"\0" * 16
            valid.append(False)
        else:
            raw += xxhash.xxh3_128_digest(v)
            valid.append(True)
    arr = pa.FixedSizeBinaryArray.from_buffers(KEY_TYPE, len(values), [None, pa.py_buffer(bytes(raw))])
    if all(valid):
        return arr
    return pc.if_else(pa.array(valid, pa.bool_()), arr, pa.nulls(len(values), KEY_TYPE))


def exact_keys(batch: pa.Table, p: ExactDedupParams) -> tuple[pa.Array, pa.Array]:
    """(16-byte key or null, reason) per row. Null = this row takes part in no group (empty text, no URL)."""
    n = batch.num_rows
    modality = (
        combine(pc.fill_null(batch["modality"], "text"))
        if "modality" in batch.column_names
        else pa.array(["text"] * n)
    )
    if p.by == "id":
        ids = combine(batch["id"]).cast(pa.string()).to_pylist()
        return _hash128([None if i is None else b"id\0" + i.encode() for i in ids]), pa.array(
            ["duplicate_id"] * n, pa.string()
        )
    if p.by == "url":
        metas = batch["meta"].to_pylist() if "meta" in batch.column_names else [None] * n
        vals: list[bytes | None] = []
        for m in metas:
            url = None
            if m:
                try:
                    obj = orjson.loads(m)
                    url = normalize_url(obj.get(p.url_field)) if isinstance(obj, dict) else None
                except orjson.JSONDecodeError:
                    url = None
            vals.append(b"url\0" + url.encode() if url else None)
        return _hash128(vals), pa.array(["url_dup"] * n, pa.string())
    is_media = pc.is_in(modality, pa.array(list(MEDIA))).to_numpy(zero_copy_only=False)
    norm = normalize_exact(pc.fill_null(batch["text"], ""), p).cast(pa.large_string())
    bufs = norm.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1 + norm.offset)[norm.offset :]
    data = memoryview(bufs[2]) if bufs[2] is not None else memoryview(b"")
    sha = None
    if p.media and is_media.any() and "media" in batch.column_names:
        sha = pc.struct_field(combine(batch["media"]), "sha256").to_pylist()
    vals = []
    for i in range(n):
        if is_media[i]:
            s = sha[i] if sha is not None else None
            vals.append(b"media\0" + s.encode() if s else None)
        else:
            s0, s1 = int(offs[i]), int(offs[i + 1])
            vals.append(b"text\0" + bytes(data[s0:s1]) if s1 > s0 else None)
    reason = pc.if_else(pa.array(is_media), pa.scalar("media_dup"), pa.scalar("exact_dup"))
    return _hash128(vals), combine(reason)


class _ExactMap:
    """Map step: docs → `docs` (by id) with `_xkey`, and (key, priority, reason) → `keys` (by key)."""

    def __init__(self, params: ExactDedupParams, store: Store):
        self.params = params
        self.store = store

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys, reason = exact_keys(batch, self.params)
        node = priority_keys(batch, self.params)
        rk = row_keys(batch)
        tag = batch_tag(rk)
        docs = batch.append_column("_xkey", keys).append_column(ROW_KEY, rk)
        parts = self.store.write("docs", docs, partition_of(rk, self.store.nparts), tag)
        kt = pa.table({"key": keys, NODE: node, "reason": reason}).filter(pc.is_valid(keys))
        self.store.write("keys", kt, partition_of(kt["key"], self.store.nparts), tag)
        return pa.table({"rows": [batch.num_rows], "parts": [parts], "run_id": [first_run_id(batch)]})


def _exact_reduce(store: Store, k: int, against: bool) -> dict[str, Any]:
    """One key partition: group rows by key, pick the smallest priority key, mark published duplicates."""
    keys = store.read("keys", k)
    if keys is None:
        return {"groups": 0, "dups": 0}
    g = keys.group_by("key", use_threads=False).aggregate([(NODE, "min"), (NODE, "count")])
    gi = lookup(keys["key"], g["key"])
    best = pc.take(g[f"{NODE}_min"], gi)
    size = pc.take(g[f"{NODE}_count"], gi)
    pub_id = pa.nulls(keys.num_rows, pa.string())
    if against:
        idx = store.read("index", k, columns=["key", "id"])
        if idx is not None and idx.num_rows:
            idx = idx.group_by("key", use_threads=False).aggregate([("id", "min")])
            pub_id = pc.take(idx["id_min"], lookup(keys["key"], idx["key"]))
    node = keys[NODE].combine_chunks()
    pub = pc.is_valid(pub_id)
    kept = pc.and_(pc.equal(node, best), pc.invert(pub))
    reason = pc.if_else(
        pub, pa.scalar("dup_of_published"), pc.if_else(kept, pa.nulls(len(node), pa.string()), keys["reason"])
    )
    cluster = pc.if_else(pub, pub_id, id_of_node(best))
    sel = pc.or_(pc.greater(size, 1), pub)
    out = pa.table(
        {
            "rk": row_key_of_node(node),
            "cluster_id": cluster,
            "cluster_size": size,
            "kept": kept,
            "reason": reason,
        }
    ).filter(sel)
    store.write("assign", out, partition_of(out["rk"], store.nparts), f"r{k:05d}")
    return {"groups": g.num_rows, "dups": int(pc.sum(pc.invert(kept)).as_py() or 0)}


@register
class ExactDedup(GlobalStage[ExactDedupParams]):
    name = "exact_dedup"

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("dup", DUP_TYPE)]

    def apply(self, ds: Any, ctx: GlobalContext) -> Any:
        p = self.params
        # every step runs once per run (ctx.step): a crashed run resumes after its last finished step
        store = Store(ctx.work, ctx.step("partitions", lambda: choose_partitions(p, ctx)))

        def map_docs() -> list[Any]:
            for step in ("docs", "keys"):
                store.clear(step)
            return list(map_summary(ctx.map_collect(ds, _ExactMap(p, store), p.map_batch_rows)))

        rows, doc_parts, run_id = ctx.step("map", map_docs)
        if rows == 0:
            return ds
        index = index_location(p, ctx, self.name)
        if p.against_index:
            ctx.step("index", lambda: read_index_partitioned(ctx, store, "index", index, "key"))
        wave(
            ctx,
            store,
            "reduce",
            _exact_reduce,
            [(store, k, p.against_index) for k in range(store.nparts)],
            writes=["assign"],
        )
        if p.update_index and run_id:
            ctx.step("clear_index", lambda: clear_generation(index, run_id, ctx.label))
        return final_dataset(ctx, store, doc_parts, index if p.update_index else None, run_id, "_xkey")
