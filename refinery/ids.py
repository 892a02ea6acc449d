"""Duplicate ids: counted across the whole run, cheaply, without trusting ids to be unique anywhere.

Ids come from the user's data (`input.id_field`), and repeated ids are common (ids numbered per shard). Nothing in
the pipeline relies on them being unique; they are a data property to report. Each writer batch hashes the ids of
the documents it accounts for (kept or dropped rows; quarantined and skipped records have location ids) to
128 bits and writes them, hash-partitioned, under `<work>/ids/p-<k>/`. One task per partition then counts
`rows - distinct`. Files are named by the rows' source locations, which are unique, so a retried writer rewrites
its own file and two batches holding the same ids never overwrite each other.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from refinery.location import Location
from refinery.schema import DROP_COL, QUARANTINE_PREFIX, stable_id

HASH_TYPE = pa.binary(16)
ROWS_PER_PARTITION = 4_000_000  # 64 MB of hashes per counting task


def id_partitions(estimated_rows: int) -> int:
    return int(min(256, max(1, math.ceil(estimated_rows / ROWS_PER_PARTITION))))


def document_rows(batch: pa.Table, live: bool = True) -> pa.Table:
    """Rows whose id is the user's: dropped rows and, with `live`, live ones (quarantined and skipped records
    carry location ids)."""
    if DROP_COL not in batch.column_names:
        return batch if live else batch.slice(0, 0)
    reason = pc.fill_null(batch[DROP_COL], "")
    synthetic = pc.or_(pc.starts_with(reason, QUARANTINE_PREFIX), pc.starts_with(reason, "skip:"))
    keep = pc.invert(synthetic) if live else pc.and_(pc.invert(synthetic), pc.not_equal(reason, ""))
    return batch.filter(keep)


def write_id_hashes(folder: Location, rows: pa.Table, nparts: int) -> None:
    """Write the 128-bit hashes of `rows["id"]`, partitioned by hash, named after the rows' source locations."""
    if rows.num_rows == 0:
        return
    ids = rows["id"].to_pylist()
    raw = b"".join(xxhash.xxh3_128_digest(("" if i is None else i).encode()) for i in ids)
    hashes = pa.FixedSizeBinaryArray.from_buffers(HASH_TYPE, len(ids), [None, pa.py_buffer(raw)])
    part = np.frombuffer(raw, dtype=np.uint64)[::2] % np.uint64(nparts)
    src = rows["source"].combine_chunks()
    where = zip(
        pc.struct_field(src, "uri").to_pylist(), pc.struct_field(src, "offset").to_pylist(), strict=True
    )
    tag = xxhash.xxh3_128_hexdigest("\n".join(stable_id(u or "", o or 0) for u, o in where).encode())
    for k in np.unique(part):
        sel = np.flatnonzero(part == k)
        d = folder.join(f"p-{int(k):05d}")
        d.makedirs()
        with d.join(f"part-{tag}.parquet").open("wb") as f:
            pq.write_table(pa.table({"h": hashes.take(pa.array(sel))}), f, compression="zstd")


def count_duplicates(folder: Location, k: int) -> int:
    """Rows minus distinct ids in partition k."""
    parts = []
    for loc in folder.join(f"p-{k:05d}").find(".parquet"):
        with loc.open("rb") as f:
            parts.append(pq.read_table(f)["h"])
    if not parts:
        return 0
    col = pa.chunked_array([c for t in parts for c in t.chunks], HASH_TYPE)
    return len(col) - pc.count_distinct(col).as_py()
