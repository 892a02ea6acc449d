"""Write one batch of rows into staged Parquet parts and describe what was written.

Runs inside Ray tasks but does not import Ray: it is a callable on `pyarrow.Table` that returns a small table
of file records (path, rows, bytes, sha256) plus one stats record. The driver only ever sees those records.

A part is named by the sha256 of its own bytes. Everything that makes a part unique is in its content (rows with
their source locations and run id), so two different parts can never share a name, even when the input repeats
ids, while a retried task rewrites the same bytes under the same name instead of leaving an orphan.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.accounting import batch_stats
from refinery.ids import document_rows, write_id_hashes
from refinery.location import Location
from refinery.schema import (
    DETAIL_COL,
    DROP_COL,
    QUARANTINE_PREFIX,
    RAW_COL,
    SOURCE_TYPE,
    conform,
    row_slices,
    split_alive,
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("source", SOURCE_TYPE),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.large_binary()),
    ]
)
DROPLOG_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("source_uri", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("domain", pa.string()),  # host of the row's URL (refinery.schema.row_domain); null if none
        # where the record was in its source (byte offset / row index): ids may repeat, locations do not
        pa.field("source_offset", pa.int64()),
    ]
)
RECORD_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),  # data | quarantine | droplog | stats
        pa.field("path", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("bytes", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("stats", pa.string()),
    ]
)


class PartWriter:
    """Callable for `map_batches`: stage kept rows as data parts, dead rows as quarantine/droplog parts."""

    def __init__(
        self,
        staging: Location,
        schema: pa.Schema,
        compression: str = "zstd",
        target_bytes: int = 128 << 20,
        summarizers: list[Any] | None = None,
        row_group_rows: int = 64 * 1024,
        id_hashes: Location | None = None,
        id_parts: int = 1,
        raw_scrub: Callable[[list[bytes | None]], list[bytes | None]] | None = None,
    ):
        self.staging = staging
        self.row_group_rows = row_group_rows  # checkpoints use small groups: each is one parallel read item
        self.schema = schema
        self.compression = None if compression == "none" else compression
        self.target_bytes = target_bytes
        self.summarizers = summarizers or []  # (label, stage) pairs whose summarize() feeds report counters
        self.id_hashes = id_hashes  # where to leave id hashes for the duplicate-id count (refinery/ids.py)
        self.id_parts = id_parts
        self.raw_scrub = raw_scrub  # applied to quarantined raw bytes before they are written (PII)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.id_hashes is not None:
            write_id_hashes(self.id_hashes, document_rows(batch), self.id_parts)
        alive, dead = split_alive(batch)
        records: list[dict[str, Any]] = []
        counters: dict[str, float] = {}
        if alive.num_rows:
            alive = conform(alive, self.schema)
            for label, stage in self.summarizers:
                for k, v in stage.summarize(alive).items():
                    counters[f"{label}.{k}"] = counters.get(f"{label}.{k}", 0) + v
            for part in self._split(alive):
                records.append(self._write("data", part))
        if dead is not None and dead.num_rows:
            is_q = pc.starts_with(dead[DROP_COL], QUARANTINE_PREFIX)
            q = dead.filter(is_q)
            d = dead.filter(pc.invert(is_q))
            if q.num_rows:
                table = _quarantine_table(q)
                if self.raw_scrub is not None:
                    raw = pa.array(self.raw_scrub(table["raw"].to_pylist()), pa.large_binary())
                    table = table.set_column(table.schema.get_field_index("raw"), "raw", raw)
                records.append(self._write("quarantine", table))
            if d.num_rows:
                records.append(self._write("droplog", _droplog_table(d)))
        stats = batch_stats(alive if alive.num_rows else None, dead, counters)
        records.append(
            {
                "kind": "stats",
                "path": None,
                "rows": batch.num_rows,
                "bytes": 0,
                "sha256": None,
                "stats": json.dumps(stats),
            }
        )
        return pa.Table.from_pylist(records, schema=RECORD_SCHEMA)

    def _split(self, table: pa.Table) -> list[pa.Table]:
        """Parts near the target size: estimate bytes/row from the in-memory size (zstd shrinks text ~3x)."""
        est = max(1, table.nbytes // 3)
        n_parts = max(1, int(round(est / self.target_bytes)))
        if n_parts == 1:
            return [table]
        return row_slices(table, -(-table.num_rows // n_parts))

    def _write(self, kind: str, table: pa.Table) -> dict[str, Any]:
        folder = self.staging.join(kind)
        tmp_dir = folder.path if folder.is_local else None  # local: write beside the target, then rename
        if tmp_dir:
            os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=tmp_dir)
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression=self.compression, row_group_size=self.row_group_rows)
            digest = _sha256_file(tmp)
            size = os.path.getsize(tmp)
            name = f"part-{digest[:32]}.parquet"
            folder.join(name).put_file(tmp)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return {
            "kind": kind,
            "path": f"{kind}/{name}",
            "rows": table.num_rows,
            "bytes": size,
            "sha256": digest,
            "stats": None,
        }


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _quarantine_table(q: pa.Table) -> pa.Table:
    reasons = pc.utf8_slice_codeunits(q[DROP_COL], len(QUARANTINE_PREFIX))
    return pa.Table.from_arrays(
        [q["id"], q["source"], reasons, q[DETAIL_COL], q[RAW_COL]],
        schema=QUARANTINE_SCHEMA,
    )


def _droplog_table(d: pa.Table) -> pa.Table:
    parts = pc.split_pattern(d[DROP_COL], ":", max_splits=1)
    stage = pc.list_element(parts, 0)
    reason = pc.list_element(parts, 1)
    return pa.Table.from_arrays(
        [
            d["id"],
            pc.struct_field(d["source"], "uri"),
            stage,
            reason,
            d["lang"],
            d["domain"],
            pc.struct_field(d["source"], "offset"),
        ],
        schema=DROPLOG_SCHEMA,
    )
