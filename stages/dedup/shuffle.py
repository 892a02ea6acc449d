"""A small disk-backed shuffle: hash-partitioned Parquet under a run's scratch folder, so every dedup step is
"hash-partition rows by a key, then process one partition at a time".

Why our own instead of Ray Data's `groupby`/`join`: on a 2-core machine Ray's hash-shuffle operators start
aggregator actors and took 17 s (aggregate) and 72 s (join) for 2,000 rows. Here a map task writes its rows to
`<work>/<step>/p-<k>/part-<tag>.parquet` (k = hash(key) mod P); a reduce task reads `p-<k>` of one or more steps
(co-partitioned steps = a join) and works with vectorized Arrow/numpy. Memory per task is one partition (P is
sized so a partition is ~64 MB). Intermediates are inspectable Parquet; a step clears its own folder before it
starts, so a re-run never mixes in files of an earlier attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from refinery.location import Location
from refinery.stage import GlobalContext
from stages.dedup.keys import DedupParams, combine
from stages.dedup.minhash import hash_strings


def partition_of(keys: pa.Array | np.ndarray, nparts: int) -> np.ndarray:
    """Partition number of each key: string keys are hashed, uint64 keys (already hashes) are used directly."""
    h = keys.astype(np.uint64) if isinstance(keys, np.ndarray) else key_hash64(keys)
    # Mix again so partitioning is independent of any use of the low bits elsewhere.
    return ((h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)).astype(np.int64) % nparts


def key_hash64(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 per key: uint64 keys as they are, 16-byte binary keys (already hashes) by their first 8 bytes."""
    keys = combine(keys)
    if pa.types.is_fixed_size_binary(keys.type):
        raw = np.frombuffer(keys.buffers()[1], dtype=np.uint64, count=2 * (len(keys) + keys.offset))
        return raw.reshape(-1, 2)[keys.offset :, 0].copy()
    if pa.types.is_integer(keys.type):
        return keys.to_numpy(zero_copy_only=False).astype(np.uint64)
    return hash_strings(keys)


def choose_partitions(params: DedupParams, ctx: Any) -> int:
    """From the checkpoint's Parquet size: ~64 MB of in-memory rows per partition (Parquet shrinks text ~3x)."""
    if params.partitions:
        return params.partitions
    total = int(getattr(ctx, "input_bytes", 0) or 0)
    by_size = math.ceil(total * 3 / (64 << 20)) if total else 1
    return int(min(1024, max(2, min(int(ctx.num_cpus), 8), by_size)))


class Store:
    """Partitioned Parquet datasets under one scratch folder; picklable, so tasks carry it."""

    def __init__(self, root: Location, nparts: int):
        self.root = root
        self.nparts = nparts

    def folder(self, step: str, part: int | None = None) -> Location:
        loc = self.root.join(step)
        return loc if part is None else loc.join(f"p-{part:05d}")

    def clear(self, step: str) -> None:
        self.folder(step).remove(recursive=True)

    def write(self, step: str, table: pa.Table, parts: np.ndarray, tag: str) -> list[int]:
        """Write `table` split by the partition numbers in `parts`; returns the partitions written."""
        if table.num_rows == 0:
            return []
        order = np.argsort(parts, kind="stable")
        sorted_parts = parts[order]
        table = table.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(sorted_parts)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(sorted_parts)]])
        written = []
        for s, e in zip(starts, ends, strict=True):
            k = int(sorted_parts[s])
            self.write_one(step, k, table.slice(int(s), int(e - s)), tag)
            written.append(k)
        return written

    def write_one(self, step: str, part: int, table: pa.Table, tag: str) -> None:
        d = self.folder(step, part)
        d.makedirs()
        with d.join(f"part-{tag}.parquet").open("wb") as f:
            pq.write_table(table, f, compression="zstd")

    def read(self, step: str, part: int, columns: Sequence[str] | None = None) -> pa.Table | None:
        tables = []
        for loc in self.folder(step, part).find(".parquet"):
            with loc.open("rb") as f:
                tables.append(pq.read_table(f, columns=list(columns) if columns else None))
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]

    def bytes_of(self, step: str) -> int:
        return sum(loc.size() for loc in self.folder(step).find())


def batch_tag(keys: pa.Array | pa.ChunkedArray, salt: str = "") -> str:
    """A content tag for a map task's output files, so a retried task overwrites its own files. `keys` must be
    unique to the batch (row keys, not ids: two batches holding the same ids would overwrite each other)."""
    h = hash_strings(combine(keys).cast(pa.string()))
    return xxhash.xxh3_64_hexdigest(h.tobytes() + salt.encode())


def unique_table(t: pa.Table, keys: list[str]) -> pa.Table:
    """Distinct rows over `keys` (all columns must be keys)."""
    if t.num_rows == 0:
        return t
    return t.group_by(keys, use_threads=False).aggregate([]).select(keys)


def lookup(keys: pa.Array, table_keys: pa.Array) -> pa.Array:
    """Row index in `table_keys` of each key (null where absent): a hash join for unique right-hand keys."""
    return pc.index_in(combine(keys), value_set=combine(table_keys))


def wave(
    ctx: GlobalContext,
    store: Store,
    name: str,
    fn: Callable[..., Any],
    args: list[tuple[Any, ...]],
    writes: Sequence[str] = (),
) -> list[Any]:
    """One wave of a dedup stage, run once per run (`ctx.step`): the steps it writes are cleared first, so a wave
    redone after a crash never mixes its files with a half-finished attempt's."""

    def run() -> list[Any]:
        for step in writes:
            store.clear(step)
        return ctx.run_wave(fn, args, name)

    return ctx.step(name, run)
