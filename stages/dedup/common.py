"""What both dedup stages share: params, priority keys, the `dup` struct, and a small disk-backed shuffle.

Why a shuffle of our own instead of Ray Data's `groupby`/`join`: on this 2-core machine Ray's hash-shuffle
operators start aggregator actors and took 17 s (aggregate) and 72 s (join) for 2,000 rows. Dedup only needs
"hash-partition rows by a key, then process one partition at a time", so every step here is:

  map: each Ray task writes its rows to `<work>/<step>/p-<k>/part-<tag>.parquet`, k = hash(key) mod P
  reduce: one Ray task per partition k reads `p-<k>` of one or more steps (co-partitioned = a join) and works
          with vectorized Arrow/numpy, writing the next step's partitions.

Memory per task is one partition (P is sized from the input so a partition is ~64 MB); the driver only sees
per-task counters. Intermediates are Parquet under the run's work prefix (inspectable; a step clears its own
folder before it starts, so a re-run never mixes in files of an earlier attempt).
"""

from __future__ import annotations

import logging
import math
import posixpath
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pydantic import Field

from refinery.fsio import get_fs, join
from refinery.stage import FilterParams
from stages.dedup.minhash import hash_strings

DUP_TYPE = pa.struct(
    [
        pa.field("cluster_id", pa.string()),
        pa.field("cluster_size", pa.int64()),
        pa.field("kept", pa.bool_()),
    ]
)
# Internal columns carried through the dedup steps; never returned to the pipeline.
NODE = "_node"  # priority key: "<priority parts>\x00<id>\x00<row key>"; a cluster keeps its smallest key
ROW_KEY = "_rk"  # which row: a hash of its source location. Ids may repeat in the input; locations never do.
SEP = "\x01"
ID_SEP = "\x00"
ROW_KEY_CHARS = 32
ASSIGN_SCHEMA = pa.schema(
    [
        pa.field("rk", pa.string()),
        pa.field("cluster_id", pa.string()),
        pa.field("cluster_size", pa.int64()),
        pa.field("kept", pa.bool_()),
        pa.field("reason", pa.string()),
    ]
)

log = logging.getLogger("refinery.dedup")

class DedupParams(FilterParams):
    """Params both dedup stages share (FilterParams adds `action: drop|annotate`)."""

    # Which document of a duplicate group is kept: the first criterion decides, later ones break ties; the id
    # always breaks the last tie, so the choice is deterministic.
    #   longest / shortest: by text length (media: by media byte size)
    #   earliest: by (source.uri, source.offset): first in input order
    #   source_priority: by the first matching prefix in `source_priority` (earlier prefix wins)
    priority: list[Literal["longest", "shortest", "earliest", "source_priority"]] = Field(
        default_factory=lambda: ["longest", "earliest"]
    )
    source_priority: list[str] = Field(default_factory=list, description="source.uri prefixes, best first")
    # Persisted index (see docs/DEDUP.md): default <ctx.state_uri>/dedup/<stage name>.
    index_uri: str | None = None
    against_index: bool = False
    update_index: bool = True
    # Hash partitions for the shuffle steps; None = from the input size (~64 MB per partition), at least 2.
    partitions: int | None = Field(default=None, ge=1, le=4096)
    map_batch_rows: int = Field(default=4096, gt=0)


def priority_keys(batch: pa.Table, params: DedupParams) -> pa.Array:
    """Sortable string keys: comparing keys compares documents by the configured priority, then by id."""
    n = batch.num_rows
    parts: list[pa.Array] = []
    for crit in params.priority:
        if crit in ("longest", "shortest"):
            length = _doc_length(batch)
            if crit == "longest":
                length = pc.subtract(pa.scalar(10**15, pa.int64()), length)
            parts.append(pc.utf8_lpad(pc.cast(length, pa.string()), 16, "0"))
        elif crit == "earliest":
            src = batch["source"] if "source" in batch.column_names else pa.nulls(n, _src_type())
            src = _combine(src)
            uri = pc.fill_null(pc.struct_field(src, "uri"), "")
            uri = pc.replace_substring(uri, ID_SEP, "")
            off = pc.fill_null(pc.struct_field(src, "offset"), 0)
            parts.append(uri)
            parts.append(pc.utf8_lpad(pc.cast(off, pa.string()), 20, "0"))
        elif crit == "source_priority":
            src = batch["source"] if "source" in batch.column_names else pa.nulls(n, _src_type())
            uri = pc.fill_null(pc.struct_field(_combine(src), "uri"), "")
            rank = pa.array(np.full(n, len(params.source_priority), dtype=np.int64))
            for i, prefix in reversed(list(enumerate(params.source_priority))):
                rank = pc.if_else(pc.starts_with(uri, prefix), pa.scalar(i, pa.int64()), rank)
            parts.append(pc.utf8_lpad(pc.cast(rank, pa.string()), 6, "0"))
    ids = pc.replace_substring(_combine(batch["id"]).cast(pa.string()), ID_SEP, "")
    head = pc.binary_join_element_wise(*parts, SEP) if parts else pa.array([""] * n, pa.string())
    return pc.binary_join_element_wise(head, ids, row_keys(batch), ID_SEP).cast(pa.string())


def row_keys(batch: pa.Table) -> pa.Array:
    """A unique key per row: the hash of its source location (uri, offset), as `refinery.schema.stable_id`.

    Dedup joins its verdicts back onto rows by this key, never by `id`: ids are the user's and may repeat (ids
    numbered per shard are common), and joining by a repeated id would give every row with that id one verdict."""
    from refinery.schema import stable_id

    src = _combine(batch["source"])
    uris = pc.struct_field(src, "uri").to_pylist()
    offsets = pc.struct_field(src, "offset").to_pylist()
    return pa.array([stable_id(u or "", o or 0) for u, o in zip(uris, offsets, strict=True)], pa.string())


def id_of_node(node: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The document id inside a priority key (between the first NUL and the row key)."""
    rest = pc.list_element(pc.split_pattern(_combine(node), ID_SEP, max_splits=1), 1)
    return pc.utf8_slice_codeunits(rest, 0, -(ROW_KEY_CHARS + 1))


def row_key_of_node(node: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The row key at the end of a priority key."""
    return pc.utf8_slice_codeunits(_combine(node), -ROW_KEY_CHARS)


def _doc_length(batch: pa.Table) -> pa.Array:
    n = batch.num_rows
    text_len = pc.fill_null(pc.utf8_length(batch["text"]), 0) if "text" in batch.column_names else pa.array(np.zeros(n, np.int64))
    text_len = pc.cast(_combine(text_len), pa.int64())
    if "media" in batch.column_names and "modality" in batch.column_names:
        media = _combine(batch["media"])
        if media.type.get_field_index("bytes") >= 0:
            blen = pc.cast(pc.fill_null(pc.binary_length(pc.struct_field(media, "bytes")), 0), pa.int64())
            is_media = pc.is_in(pc.fill_null(_combine(batch["modality"]), "text"), pa.array(["image", "audio"]))
            text_len = pc.if_else(is_media, blen, text_len)
    return text_len


def _src_type() -> pa.DataType:
    return pa.struct([pa.field("uri", pa.string()), pa.field("offset", pa.int64())])


def _combine(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def dup_struct(cluster_id: pa.Array, size: pa.Array, kept: pa.Array) -> pa.StructArray:
    return pa.StructArray.from_arrays(
        [cluster_id.cast(pa.string()), size.cast(pa.int64()), kept.cast(pa.bool_())], fields=list(DUP_TYPE)
    )


def partition_of(keys: pa.Array | np.ndarray, nparts: int) -> np.ndarray:
    """Partition number of each key: string keys are hashed, uint64 keys (already hashes) are used directly."""
    h = keys.astype(np.uint64) if isinstance(keys, np.ndarray) else key_hash64(keys)
    # Mix again so partitioning is independent of any use of the low bits elsewhere.
    return ((h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)).astype(np.int64) % nparts


def choose_partitions(params: DedupParams, ctx: Any) -> int:
    """From the checkpoint's Parquet size: ~64 MB of in-memory rows per partition (Parquet shrinks text ~3x)."""
    if params.partitions:
        return params.partitions
    total = int(getattr(ctx, "input_bytes", 0) or 0)
    by_size = math.ceil(total * 3 / (64 << 20)) if total else 1
    return int(min(1024, max(2, min(int(ctx.num_cpus), 8), by_size)))


# ----------------------------------------------------------------------------------------------------------
# Disk-backed shuffle


class Store:
    """Partitioned Parquet datasets under one work prefix; picklable, so Ray tasks carry it."""

    def __init__(self, root: str, storage_options: dict[str, Any], nparts: int):
        self.root = root.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.nparts = nparts

    def fs(self):
        return get_fs(self.root, self.storage_options)[0]

    def path(self, step: str, part: int | None = None) -> str:
        root = get_fs(self.root, self.storage_options)[1]
        base = join(root, step)
        return base if part is None else join(base, f"p-{part:05d}")

    def clear(self, step: str) -> None:
        fs = self.fs()
        path = self.path(step)
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def write(self, step: str, table: pa.Table, parts: np.ndarray, tag: str) -> list[int]:
        """Write `table` split by the partition numbers in `parts`; returns the partitions written."""
        if table.num_rows == 0:
            return []
        fs = self.fs()
        order = np.argsort(parts, kind="stable")
        sorted_parts = parts[order]
        table = table.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(sorted_parts)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(sorted_parts)]])
        written = []
        for s, e in zip(starts, ends, strict=True):
            k = int(sorted_parts[s])
            self.write_one(fs, step, k, table.slice(int(s), int(e - s)), tag)
            written.append(k)
        return written

    def write_one(self, fs, step: str, part: int, table: pa.Table, tag: str) -> None:
        d = self.path(step, part)
        fs.makedirs(d, exist_ok=True)
        with fs.open(join(d, f"part-{tag}.parquet"), "wb") as f:
            pq.write_table(table, f, compression="zstd")

    def read(self, step: str, part: int, columns: Sequence[str] | None = None) -> pa.Table | None:
        fs = self.fs()
        d = self.path(step, part)
        if not fs.exists(d):
            return None
        files = sorted(p for p in fs.ls(d, detail=False) if p.endswith(".parquet"))
        tables = []
        for p in files:
            with fs.open(p, "rb") as f:
                tables.append(pq.read_table(f, columns=list(columns) if columns else None))
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]

    def bytes_of(self, step: str) -> int:
        fs = self.fs()
        path = self.path(step)
        if not fs.exists(path):
            return 0
        return int(sum(fs.du(path, total=False).values())) if hasattr(fs, "du") else 0


def batch_tag(keys: pa.Array | pa.ChunkedArray, salt: str = "") -> str:
    """A content tag for a map task's output files, so a retried task overwrites its own files. `keys` must be
    unique to the batch (row keys, not ids: two batches holding the same ids would overwrite each other)."""
    h = hash_strings(_combine(keys).cast(pa.string()))
    return xxhash.xxh3_64_hexdigest(h.tobytes() + salt.encode())


def run_wave(fn: Callable[..., dict[str, Any]], args: list[tuple], num_cpus: float = 1.0, num_gpus: float = 0.0) -> list[dict[str, Any]]:
    """Run fn(*a) for each a as Ray tasks and return their (small) results, in order."""
    import ray

    t0 = time.perf_counter()
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus or None, max_retries=3)(fn)
    out = ray.get([remote.remote(*a) for a in args])
    log.info("%s: %d task(s) in %.2fs", fn.__name__.lstrip("_"), len(args), time.perf_counter() - t0)
    return out


def unique_table(t: pa.Table, keys: list[str]) -> pa.Table:
    """Distinct rows over `keys` (all columns must be keys)."""
    if t.num_rows == 0:
        return t
    return t.group_by(keys, use_threads=False).aggregate([]).select(keys)


def lookup(keys: pa.Array, table_keys: pa.Array) -> pa.Array:
    """Row index in `table_keys` of each key (null where absent): a hash join for unique right-hand keys."""
    return pc.index_in(_combine(keys), value_set=_combine(table_keys))


def index_files(index_uri: str, storage_options: dict[str, Any]) -> list[str]:
    from refinery.state import committed_generations

    return committed_generations(index_uri, storage_options)


def read_index_partitioned(store: Store, step: str, index_uri: str, key_col: str) -> int:
    """Re-partition every committed index generation by key into `step` (one task per index file)."""
    files = index_files(index_uri, store.storage_options)
    store.clear(step)
    if not files:
        return 0
    fs, _ = get_fs(index_uri, store.storage_options)
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    full = [f if proto in ("file", "local") else f"{proto}://{f}" for f in files]
    res = run_wave(_partition_index_file, [(store, step, f, key_col, i) for i, f in enumerate(full)])
    return sum(r["rows"] for r in res)


def _partition_index_file(store: Store, step: str, uri: str, key_col: str, i: int) -> dict[str, Any]:
    fs, path = get_fs(uri, store.storage_options)
    with fs.open(path, "rb") as f:
        t = pq.read_table(f)
    if t.num_rows == 0:
        return {"rows": 0}
    parts = partition_of(key_hash64(t[key_col]), store.nparts)
    store.write(step, t, parts, f"idx{i:05d}-{xxhash.xxh3_64_hexdigest(uri.encode())}")
    return {"rows": t.num_rows}


def key_hash64(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 per key: uint64 keys as they are, 16-byte binary keys (already hashes) by their first 8 bytes."""
    keys = _combine(keys)
    if pa.types.is_fixed_size_binary(keys.type):
        raw = np.frombuffer(keys.buffers()[1], dtype=np.uint64, count=2 * (len(keys) + keys.offset))
        return raw.reshape(-1, 2)[keys.offset :, 0].copy()
    if pa.types.is_integer(keys.type):
        return keys.to_numpy(zero_copy_only=False).astype(np.uint64)
    return hash_strings(keys)


def write_generation(index_uri: str, run_id: str, storage_options: dict[str, Any], table: pa.Table, tag: str) -> None:
    """Write index entries of this run to its (uncommitted) generation; the pipeline commits it after output."""
    if table.num_rows == 0:
        return
    from refinery.state import generation_uri

    fs, root = get_fs(generation_uri(index_uri, run_id), storage_options)
    fs.makedirs(root, exist_ok=True)
    with fs.open(posixpath.join(root, f"{tag}.parquet"), "wb") as f:
        pq.write_table(table, f, compression="zstd")


def gen_file_prefix(label: str) -> str:
    return "part-" + "".join(c if c.isalnum() or c in "_-" else "_" for c in label) + "-"


def clear_generation(index_uri: str, run_id: str, storage_options: dict[str, Any], label: str) -> None:
    """A re-run of the same run id rewrites its own files of the generation from scratch (never a mix of two
    attempts); files of another stage sharing the index (e.g. a second exact_dedup by URL) are left alone."""
    from refinery.state import MARKER, generation_uri

    fs, root = get_fs(generation_uri(index_uri, run_id), storage_options)
    if not fs.exists(root) or fs.exists(join(root, MARKER)):
        return
    prefix = gen_file_prefix(label)
    for f in fs.ls(root, detail=False):
        if posixpath.basename(f).startswith(prefix):
            fs.rm(f)


# ----------------------------------------------------------------------------------------------------------
# The last step: put each document's assignment on it (both stages)

INTERNAL = (NODE, ROW_KEY, "_xkey", "_bands")


class FinalJoin:
    """Callable for `map_batches` over partition numbers: docs of partition k + their assignments → rows with
    `dup` and `_drop`. Documents without an assignment are singletons (their own cluster, size 1, kept).

    With `update_index`, it also writes this partition's index entries (kept rows' keys) to the run's generation;
    this runs while the pipeline writes its output, and the pipeline commits the generation after the output.
    """

    def __init__(self, store: Store, label: str, index_uri: str | None, run_id: str | None, index_col: str | None):
        self.store = store
        self.label = label
        self.index_uri = index_uri
        self.run_id = run_id
        self.index_col = index_col

    def __call__(self, batch: pa.Table) -> pa.Table:
        outs = [self._one(int(k)) for k in batch["part"].to_pylist()]
        outs = [o for o in outs if o is not None]
        return pa.concat_tables(outs, promote_options="permissive") if len(outs) > 1 else outs[0]

    def _one(self, k: int) -> pa.Table | None:
        docs = self.store.read("docs", k)
        if docs is None:
            return None
        assign = self.store.read("assign", k)
        ids = docs["id"].combine_chunks()
        n = docs.num_rows
        if assign is not None and assign.num_rows:
            pos = lookup(docs[ROW_KEY], assign["rk"])
            hit = pc.is_valid(pos)
            cid = pc.if_else(hit, pc.take(assign["cluster_id"], pos), ids)
            size = pc.if_else(hit, pc.take(assign["cluster_size"], pos), pa.scalar(1, pa.int64()))
            kept = pc.if_else(hit, pc.take(assign["kept"], pos), pa.scalar(True))
            reason = pc.take(assign["reason"], pos)
        else:
            cid, size = ids, pa.array(np.ones(n, dtype=np.int64))
            kept, reason = pa.array(np.ones(n, dtype=bool)), pa.nulls(n, pa.string())
        cid, size, kept, reason = (_combine(x) for x in (cid, size, kept, reason))
        if self.index_uri and self.run_id and self.index_col:
            self._write_index(docs, reason, k)
        from refinery.schema import DROP_COL, set_struct_fields

        out = docs.drop_columns([c for c in INTERNAL if c in docs.column_names])
        if DROP_COL in out.column_names:
            out = out.drop_columns([DROP_COL])
        out = set_struct_fields(out, "dup", {"cluster_id": cid.cast(pa.string()), "cluster_size": size.cast(pa.int64()),
                                             "kept": kept.cast(pa.bool_())})
        drop = pc.if_else(pc.is_valid(reason), pc.binary_join_element_wise(pa.scalar(self.label), reason, ":"),
                          pa.nulls(n, pa.string()))
        return out.append_column(DROP_COL, _combine(drop).cast(pa.string()))

    def _write_index(self, docs: pa.Table, reason: pa.Array, k: int) -> None:
        keep = pc.is_null(reason)
        col = docs[self.index_col].combine_chunks()
        if self.index_col == "_bands":
            sel = pc.and_(keep, pc.is_valid(col))
            rows = docs.filter(sel)
            bands = rows["_bands"].combine_chunks()
            nb = pc.list_value_length(bands).to_numpy(zero_copy_only=False)
            table = pa.table({
                "key": pc.list_flatten(bands).cast(pa.uint64()),
                "band": pa.array(np.tile(np.arange(nb[0] if len(nb) else 0, dtype=np.int16), len(nb)) if len(nb) else np.zeros(0, np.int16)),
                "id": pa.array(np.repeat(rows["id"].combine_chunks().to_numpy(zero_copy_only=False), nb), pa.string()),
            })
        else:
            sel = pc.and_(keep, pc.is_valid(col))
            rows = docs.filter(sel)
            table = pa.table({"key": rows[self.index_col].combine_chunks(), "id": rows["id"].combine_chunks().cast(pa.string())})
        write_generation(self.index_uri, self.run_id, self.store.storage_options, table, f"{gen_file_prefix(self.label)}{k:05d}")


def final_dataset(store: Store, doc_parts: Sequence[int], label: str, index_uri: str | None, run_id: str | None,
                  index_col: str | None):
    import ray

    parts = sorted(set(int(p) for p in doc_parts))
    items = [{"part": p} for p in parts]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    return ds.map_batches(FinalJoin(store, label, index_uri, run_id, index_col), batch_size=1, batch_format="pyarrow")


class Sliced:
    """Runs a map step on slices of at most `rows` rows of each block Ray hands over.

    The map steps are called with `batch_size=None`: a row-count batch size would make Ray Data bundle the read
    items of the operator it fuses with (checkpoint files) into a single task, which then runs on one core."""

    def __init__(self, fn: Callable[[pa.Table], pa.Table], rows: int):
        self.fn = fn
        self.rows = rows

    def __call__(self, block: pa.Table):
        from refinery.schema import row_slices

        for part in row_slices(block, self.rows):
            yield self.fn(part)


def map_step(ds: Any, fn: Callable[[pa.Table], pa.Table], rows: int, **kwargs: Any) -> Any:
    """`ds.map_batches` for a dedup map step: whole blocks in, `rows`-row slices to `fn` (see `Sliced`)."""
    return ds.map_batches(Sliced(fn, rows), batch_size=None, batch_format="pyarrow", zero_copy_batch=True, **kwargs)


def map_records(out_ds) -> tuple[int, list[int], str | None]:
    """Consume a map step's per-batch records: total rows, doc partitions written, the run id."""
    rows, parts, run_id = 0, set(), None
    for r in out_ds.take_all():
        rows += int(r["rows"])
        parts.update(int(p) for p in r["parts"])
        run_id = run_id or r.get("run_id")
    return rows, sorted(parts), run_id


def first_run_id(batch: pa.Table) -> str | None:
    if "run_id" not in batch.column_names:
        return None
    col = pc.drop_null(batch["run_id"].combine_chunks())
    return col[0].as_py() if len(col) else None


def resolve_index_uri(params: DedupParams, ctx: Any, stage_name: str) -> str:
    return params.index_uri or join(ctx.state_uri, "dedup", stage_name)
