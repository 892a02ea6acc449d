"""The persisted dedup index: what earlier runs published, so a refresh drops what it already holds.

Index entries (a key and the kept document's id) of a run go to that run's generation
(`<index>/gen-<run_id>/`, refinery/state.py), which becomes visible only when the run commits; readers load only
committed generations (docs/DEDUP.md).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from refinery.location import Location
from refinery.stage import GlobalContext
from refinery.state import MARKER, committed_generations, generation_uri
from stages.dedup.keys import DedupParams
from stages.dedup.shuffle import Store, key_hash64, partition_of


def index_location(params: DedupParams, ctx: GlobalContext, stage_name: str) -> Location:
    return (
        Location(params.index_uri, ctx.state.storage_options)
        if params.index_uri
        else ctx.state.join("dedup", stage_name)
    )


def read_index_partitioned(ctx: GlobalContext, store: Store, step: str, index: Location, key_col: str) -> int:
    """Re-partition every committed index generation by key into `step` (one task per index file)."""
    files = committed_generations(index.uri, index.storage_options)
    store.clear(step)
    if not files:
        return 0
    full = [index.child_uri(f) for f in files]
    res = ctx.run_wave(
        _partition_index_file, [(store, step, f, key_col, i) for i, f in enumerate(full)], "index"
    )
    return sum(r["rows"] for r in res)


def _partition_index_file(store: Store, step: str, uri: str, key_col: str, i: int) -> dict[str, Any]:
    with Location(uri, store.root.storage_options).open("rb") as f:
        t = pq.read_table(f)
    if t.num_rows == 0:
        return {"rows": 0}
    parts = partition_of(key_hash64(t[key_col]), store.nparts)
    store.write(step, t, parts, f"idx{i:05d}-{xxhash.xxh3_64_hexdigest(uri.encode())}")
    return {"rows": t.num_rows}


def write_generation(index: Location, run_id: str, table: pa.Table, tag: str) -> None:
    """Write index entries of this run to its (uncommitted) generation; the pipeline commits it after output."""
    if table.num_rows == 0:
        return
    gen = Location(generation_uri(index.uri, run_id), index.storage_options)
    gen.makedirs()
    with gen.join(f"{tag}.parquet").open("wb") as f:
        pq.write_table(table, f, compression="zstd")


def gen_file_prefix(label: str) -> str:
    return "part-" + "".join(c if c.isalnum() or c in "_-" else "_" for c in label) + "-"


def clear_generation(index: Location, run_id: str, label: str) -> None:
    """A re-run of the same run id rewrites its own files of the generation from scratch (never a mix of two
    attempts); files of another stage sharing the index (e.g. a second exact_dedup by URL) are left alone."""
    gen = Location(generation_uri(index.uri, run_id), index.storage_options)
    if not gen.exists() or gen.join(MARKER).exists():
        return
    prefix = gen_file_prefix(label)
    gen.remove_files([n for n in gen.names() if n.startswith(prefix)])
