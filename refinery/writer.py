"""Write a unit of work's rows into staged Parquet parts and describe what was written.

Runs inside Ray tasks but does not import Ray. The driver only ever sees the file records (path, rows, bytes,
sha256) and the stats, never rows.

A part is named by the sha256 of its own bytes. Everything that makes a part unique is in its content (rows with
their source locations and run id), so two different parts can never share a name, even when the input repeats
ids, while a retried task rewrites the same bytes under the same name instead of leaving an orphan.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.accounting import batch_stats, empty_stats, merge_stats
from refinery.ids import document_rows, write_id_hashes
from refinery.location import Location
from refinery.schema import (
    DETAIL_COL,
    DROP_COL,
    QUARANTINE_PREFIX,
    RAW_COL,
    SOURCE_TYPE,
    concat,
    conform,
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


class PartWriter:
    """Stages a unit of work's rows as Parquet parts: kept rows as data parts, dead rows as quarantine/droplog
    parts. Picklable (tasks carry it); `open()` gives a `PartSink` per unit.

    Parts are cut where the rows' in-memory size crosses `part_bytes`, in the order the rows arrive: a unit
    (whose rows always arrive in the same order) is always cut the same way, so re-running it yields the same
    files byte for byte, which is what lets a resumed run reuse what an interrupted one left."""

    def __init__(
        self,
        staging: Location,
        schema: pa.Schema,
        compression: str = "zstd",
        part_bytes: int = 48 << 20,
        summarizers: list[Any] | None = None,
        row_group_rows: int = 64 * 1024,
        id_hashes: Location | None = None,
        id_parts: int = 1,
        count_live_ids: bool = True,
        raw_scrub: Callable[[list[bytes | None]], list[bytes | None]] | None = None,
    ):
        self.staging = staging
        self.row_group_rows = row_group_rows  # checkpoints use small groups: each is one parallel read item
        self.schema = schema
        self.compression = None if compression == "none" else compression
        self.part_bytes = part_bytes  # in-memory Arrow bytes per data part (zstd shrinks text ~3x on disk)
        self.summarizers = summarizers or []  # (label, stage) pairs whose summarize() feeds report counters
        self.id_hashes = id_hashes  # where to leave id hashes for the duplicate-id count (refinery/ids.py)
        self.id_parts = id_parts
        # Live rows' ids are counted where the rows end: in the last step only (they are still live in a checkpoint)
        self.count_live_ids = count_live_ids
        self.raw_scrub = raw_scrub  # applied to quarantined raw bytes before they are written (PII)

    def open(self) -> PartSink:
        return PartSink(self)

    def write_part(self, kind: str, table: pa.Table) -> dict[str, Any]:
        """Write one part (named by the sha256 of its bytes) and return its file record."""
        folder = self.staging.join(kind)
        tmp_dir = folder.path if folder.is_local else None  # local: write beside the target, then rename
        if tmp_dir:
            os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=tmp_dir)
        os.close(fd)
        try:
            _write_parquet(table, tmp, self.compression, self.row_group_rows)
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
        }


DEAD_PART_BYTES = 32 << 20  # dead rows are few columns: one quarantine/droplog part per unit, unless huge


class PartSink:
    """The rows of one unit of work, written as they come: `add` batches, then `close` for the file records and
    the unit's stats (counted from the rows themselves, so counts are exact whatever Ray retries)."""

    def __init__(self, writer: PartWriter):
        self.w = writer
        self.files: list[dict[str, Any]] = []
        self.stats = empty_stats()
        self.rows = 0
        self._alive: list[pa.Table] = []
        self._dead: list[pa.Table] = []
        self._alive_bytes = self._dead_bytes = 0
        self._ids: list[pa.Table] = []

    def add(self, batch: pa.Table, sizes: tuple[int, int] | None = None) -> tuple[int, int]:
        """Take one batch; returns the sizes that decide where parts are cut (in-memory bytes of its live rows, of
        its dead rows). A batch replayed from a saved segment passes the sizes measured when it was computed:
        the same rows read back may be laid out differently in memory, the cuts must not move."""
        self.rows += batch.num_rows
        if self.w.id_hashes is not None:
            docs = document_rows(batch, live=self.w.count_live_ids)
            if docs.num_rows:
                self._ids.append(docs.select(["id", "source"]))
        alive, dead = split_alive(batch)
        counters: dict[str, float] = {}
        if alive.num_rows:
            alive = conform(alive, self.w.schema)
            for label, stage in self.w.summarizers:
                for k, v in stage.summarize(alive).items():
                    counters[f"{label}.{k}"] = counters.get(f"{label}.{k}", 0) + v
        dead_rows = dead if dead is not None and dead.num_rows else None
        if sizes is None:
            sizes = (alive.nbytes if alive.num_rows else 0, dead_rows.nbytes if dead_rows is not None else 0)
        if alive.num_rows:
            self._alive.append(alive)
            self._alive_bytes += sizes[0]
            if self._alive_bytes >= self.w.part_bytes:
                self._flush_alive()
        if dead_rows is not None:
            self._dead.append(dead_rows)
            self._dead_bytes += sizes[1]
            if self._dead_bytes >= DEAD_PART_BYTES:
                self._flush_dead()
        self.stats = merge_stats(self.stats, batch_stats(alive if alive.num_rows else None, dead, counters))
        return sizes

    def close(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        self._flush_alive()
        self._flush_dead()
        if self._ids:
            write_id_hashes(self.w.id_hashes, concat(self._ids), self.w.id_parts)  # type: ignore[arg-type]
            self._ids = []
        return self.files, self.stats

    def _flush_alive(self) -> None:
        if self._alive:
            self.files.append(self.w.write_part("data", concat(self._alive)))
            self._alive, self._alive_bytes = [], 0

    def _flush_dead(self) -> None:
        if not self._dead:
            return
        dead = concat(self._dead)
        self._dead, self._dead_bytes = [], 0
        is_q = pc.starts_with(dead[DROP_COL], QUARANTINE_PREFIX)
        q = dead.filter(is_q)
        d = dead.filter(pc.invert(is_q))
        if q.num_rows:
            table = _quarantine_table(q)
            if self.w.raw_scrub is not None:
                raw = pa.array(self.w.raw_scrub(table["raw"].to_pylist()), pa.large_binary())
                table = table.set_column(table.schema.get_field_index("raw"), "raw", raw)
            self.files.append(self.w.write_part("quarantine", table))
        if d.num_rows:
            self.files.append(self.w.write_part("droplog", _droplog_table(d)))


def _write_parquet(table: pa.Table, path: str, compression: str | None, row_group_rows: int) -> None:
    """What `pq.write_table` writes, byte for byte, but from contiguous buffers, one row group at a time: how the
    rows happen to be chunked in memory would otherwise change the file (where the writer gives up a dictionary
    depends on it), and a row group is the most it copies."""
    with pq.ParquetWriter(path, table.schema, compression=compression) as writer:
        if table.num_rows == 0:
            writer.write_table(table)
        for start in range(0, table.num_rows, row_group_rows):
            writer.write_table(
                table.slice(start, row_group_rows).combine_chunks(), row_group_size=row_group_rows
            )


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
