"""Which documents dedup compares and keeps: params both stages share, priority keys, row keys and the `dup`
struct.

A *node* is a document's priority key, "<priority parts>\x00<id>\x00<row key>": comparing nodes compares
documents by the configured priority (then by id, then by row key), so the smallest node of a cluster is the
document to keep, deterministically. The *row key* says which row: a hash of its source location. Verdicts are
joined back onto rows by row key, never by id: ids are the user's and may repeat.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.stage import FilterParams

DUP_TYPE = pa.struct(
    [
        pa.field("cluster_id", pa.string()),
        pa.field("cluster_size", pa.int64()),
        pa.field("kept", pa.bool_()),
    ]
)
NODE = "_node"  # priority key: "<priority parts>\x00<id>\x00<row key>"; a cluster keeps its smallest key
ROW_KEY = "_rk"  # which row: a hash of its source location. Ids may repeat in the input; locations never do.
SEP = "\x01"
ID_SEP = "\x00"
ROW_KEY_CHARS = 32


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
    # Drop rows that duplicate an entry of the persisted index (`dup_of_published`). Unset (None) means false in a
    # run and true in a refresh, whose job is to add only what is new (docs/REFRESH.md). Inside a refresh, false
    # needs `allow_republish: true`.
    against_index: bool | None = None
    allow_republish: bool = False
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
            src = combine(src)
            uri = pc.fill_null(pc.struct_field(src, "uri"), "")
            uri = pc.replace_substring(uri, ID_SEP, "")
            off = pc.fill_null(pc.struct_field(src, "offset"), 0)
            parts.append(uri)
            parts.append(pc.utf8_lpad(pc.cast(off, pa.string()), 20, "0"))
        elif crit == "source_priority":
            src = batch["source"] if "source" in batch.column_names else pa.nulls(n, _src_type())
            uri = pc.fill_null(pc.struct_field(combine(src), "uri"), "")
            rank = pa.array(np.full(n, len(params.source_priority), dtype=np.int64))
            for i, prefix in reversed(list(enumerate(params.source_priority))):
                rank = pc.if_else(pc.starts_with(uri, prefix), pa.scalar(i, pa.int64()), rank)
            parts.append(pc.utf8_lpad(pc.cast(rank, pa.string()), 6, "0"))
    ids = pc.replace_substring(combine(batch["id"]).cast(pa.string()), ID_SEP, "")
    head = pc.binary_join_element_wise(*parts, SEP) if parts else pa.array([""] * n, pa.string())
    return pc.binary_join_element_wise(head, ids, row_keys(batch), ID_SEP).cast(pa.string())


def row_keys(batch: pa.Table) -> pa.Array:
    """A unique key per row: the hash of its source location (uri, offset), as `refinery.schema.stable_id`.

    Dedup joins its verdicts back onto rows by this key, never by `id`: ids are the user's and may repeat (ids
    numbered per shard are common), and joining by a repeated id would give every row with that id one verdict."""
    from refinery.schema import stable_id

    src = combine(batch["source"])
    uris = pc.struct_field(src, "uri").to_pylist()
    offsets = pc.struct_field(src, "offset").to_pylist()
    return pa.array([stable_id(u or "", o or 0) for u, o in zip(uris, offsets, strict=True)], pa.string())


def id_of_node(node: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The document id inside a priority key (between the first NUL and the row key)."""
    rest = pc.list_element(pc.split_pattern(combine(node), ID_SEP, max_splits=1), 1)
    return pc.utf8_slice_codeunits(rest, 0, -(ROW_KEY_CHARS + 1))


def row_key_of_node(node: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The row key at the end of a priority key."""
    return pc.utf8_slice_codeunits(combine(node), -ROW_KEY_CHARS)


def _doc_length(batch: pa.Table) -> pa.Array:
    n = batch.num_rows
    text_len = (
        pc.fill_null(pc.utf8_length(batch["text"]), 0)
        if "text" in batch.column_names
        else pa.array(np.zeros(n, np.int64))
    )
    text_len = pc.cast(combine(text_len), pa.int64())
    if "media" in batch.column_names and "modality" in batch.column_names:
        media = combine(batch["media"])
        if media.type.get_field_index("bytes") >= 0:
            blen = pc.cast(pc.fill_null(pc.binary_length(pc.struct_field(media, "bytes")), 0), pa.int64())
            is_media = pc.is_in(
                pc.fill_null(combine(batch["modality"]), "text"), pa.array(["image", "audio"])
            )
            text_len = pc.if_else(is_media, blen, text_len)
    return text_len


def _src_type() -> pa.DataType:
    return pa.struct([pa.field("uri", pa.string()), pa.field("offset", pa.int64())])


def combine(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def first_run_id(batch: pa.Table) -> str | None:
    if "run_id" not in batch.column_names:
        return None
    col = pc.drop_null(batch["run_id"].combine_chunks())
    return col[0].as_py() if len(col) else None
