"""The last step of both dedup stages: put each document's verdict (its cluster, kept or not, and why) on it.

The map step wrote the documents partitioned by row key and the reduce steps wrote one assignment per judged
document (row key, cluster id, size, kept, reason) partitioned the same way, so the final join is local to a
partition: one task per partition, no shuffle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.location import Location
from refinery.schema import DROP_COL, set_struct_fields
from refinery.stage import GlobalContext
from stages.dedup.index import gen_file_prefix, write_generation
from stages.dedup.keys import NODE, ROW_KEY, combine, row_keys
from stages.dedup.shuffle import Store, lookup

INTERNAL = (NODE, ROW_KEY, "_xkey", "_bands")  # columns carried through the dedup steps, never returned


def map_summary(records: Sequence[dict[str, Any]]) -> tuple[int, list[int], str | None]:
    """A map step's per-batch records: total rows, doc partitions written, the run id."""
    rows, parts, run_id = 0, set(), None
    for r in records:
        rows += int(r["rows"])
        parts.update(int(p) for p in r["parts"])
        run_id = run_id or r.get("run_id")
    return rows, sorted(parts), run_id


class FinalJoin:
    """Per partition number k: the docs of partition k and their assignments → rows with `dup` and `_drop`.
    Documents without an assignment are singletons (their own cluster, size 1, kept).

    With `update_index`, it also writes this partition's index entries (kept rows' keys) to the run's generation;
    this runs while the pipeline writes its output, and the pipeline commits the generation after the output.
    """

    def __init__(
        self, store: Store, label: str, index: Location | None, run_id: str | None, index_col: str | None
    ):
        self.store = store
        self.label = label
        self.index = index
        self.run_id = run_id
        self.index_col = index_col

    def __call__(self, k: int) -> pa.Table | None:
        docs = self.store.read("docs", k)
        if docs is None:
            return None
        return self.join(docs, self.store.read("assign", k), k)

    def join(self, docs: pa.Table, assign: pa.Table | None, k: int) -> pa.Table:
        """`docs` (with their row keys) with their verdicts from `assign` (row key → cluster, kept, reason)."""
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
        cid, size, kept, reason = (combine(x) for x in (cid, size, kept, reason))
        if self.index is not None and self.run_id and self.index_col:
            self._write_index(docs, reason, k)
        out = docs.drop_columns([c for c in INTERNAL if c in docs.column_names])
        if DROP_COL in out.column_names:
            out = out.drop_columns([DROP_COL])
        out = set_struct_fields(
            out,
            "dup",
            {
                "cluster_id": cid.cast(pa.string()),
                "cluster_size": size.cast(pa.int64()),
                "kept": kept.cast(pa.bool_()),
            },
        )
        drop = pc.if_else(
            pc.is_valid(reason),
            pc.binary_join_element_wise(pa.scalar(self.label), reason, ":"),
            pa.nulls(n, pa.string()),
        )
        return out.append_column(DROP_COL, combine(drop).cast(pa.string()))

    def _write_index(self, docs: pa.Table, reason: pa.Array, k: int) -> None:
        keep = pc.is_null(reason)
        col = docs[self.index_col].combine_chunks()
        if self.index_col == "_bands":
            sel = pc.and_(keep, pc.is_valid(col))
            rows = docs.filter(sel)
            bands = rows["_bands"].combine_chunks()
            nb = pc.list_value_length(bands).to_numpy(zero_copy_only=False)
            table = pa.table(
                {
                    "key": pc.list_flatten(bands).cast(pa.uint64()),
                    "band": pa.array(
                        np.tile(np.arange(nb[0] if len(nb) else 0, dtype=np.int16), len(nb))
                        if len(nb)
                        else np.zeros(0, np.int16)
                    ),
                    "id": pa.array(
                        np.repeat(rows["id"].combine_chunks().to_numpy(zero_copy_only=False), nb), pa.string()
                    ),
                }
            )
        else:
            sel = pc.and_(keep, pc.is_valid(col))
            rows = docs.filter(sel)
            table = pa.table(
                {
                    "key": rows[self.index_col].combine_chunks(),
                    "id": rows["id"].combine_chunks().cast(pa.string()),
                }
            )
        assert self.index is not None and self.run_id is not None
        write_generation(self.index, self.run_id, table, f"{gen_file_prefix(self.label)}{k:05d}")


class CheckpointJoin(FinalJoin):
    """Per file of the stage's input checkpoint: its rows with their verdicts. The rows are read back from the
    checkpoint rather than copied into the scratch; every task reads all the assignments (one row per judged
    document, a small share of the corpus), once per worker process."""

    def __init__(self, store: Store, label: str, storage_options: dict[str, Any]):
        super().__init__(store, label, None, None, None)
        self.storage_options = storage_options

    def __call__(self, uri: str) -> pa.Table | None:  # type: ignore[override]
        with Location(uri, self.storage_options).open("rb") as f:
            docs = pq.read_table(f)
        if docs.num_rows == 0:
            return None
        docs = docs.append_column(ROW_KEY, row_keys(docs))
        return self.join(docs, read_all(self.store, "assign"), 0)


_ALL: dict[tuple[Any, ...], pa.Table | None] = {}


def read_all(store: Store, step: str) -> pa.Table | None:
    """Every partition of a (small) step as one table, cached per process by the files' names and sizes, so a
    step redone after a crash is never served stale."""
    files = tuple((loc.uri, loc.size()) for loc in store.folder(step).find(".parquet"))
    key = (store.root.uri, step, files)
    if key not in _ALL:
        _ALL.clear()
        tables = [t for k in range(store.nparts) if (t := store.read(step, k)) is not None]
        _ALL[key] = pa.concat_tables(tables, promote_options="permissive") if tables else None
    return _ALL[key]


def final_dataset(
    ctx: GlobalContext,
    store: Store,
    doc_parts: Sequence[int],
    index: Location | None,
    run_id: str | None,
    index_col: str | None,
) -> Any:
    """The stage's output: one task per document partition."""
    join = FinalJoin(store, ctx.label, index, run_id, index_col)
    return ctx.dataset_from(join, sorted({int(p) for p in doc_parts}))
