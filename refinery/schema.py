"""The unified row schema every reader produces and every writer commits.

One module owns it so that readers, stages and the writer cannot drift apart; docs/SCHEMA.md documents each
column. Stage columns (``lang``, ``quality``, ``pii``, ``dup`` …) are declared by the stages themselves through
``Stage.output_fields`` and merged into the final schema when the plan is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

SOURCE_TYPE = pa.struct(
    [
        pa.field("uri", pa.string()),
        pa.field("format", pa.string()),
        # Byte offset of the record in the (decompressed) stream for JSONL/WARC, row index for Parquet,
        # 0 for one-document-per-file formats.
        pa.field("offset", pa.int64()),
        pa.field("etag", pa.string()),
    ]
)

MEDIA_TYPE = pa.struct(
    [
        pa.field("bytes", pa.large_binary()),
        pa.field("uri", pa.string()),
        pa.field("mime", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("sha256", pa.string()),
        pa.field("phash", pa.string()),
    ]
)

BASE_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.large_string()),
    pa.field("modality", pa.string()),
    pa.field("media", MEDIA_TYPE),
    pa.field("source", SOURCE_TYPE),
    pa.field("meta", pa.large_string()),
    pa.field("run_id", pa.string()),
]

# Internal bookkeeping columns. They travel with rows between stages and never reach committed data files.
DROP_COL = "_drop"  # null = alive; "stage:reason" = dropped; "quarantine:reason" = quarantined
RAW_COL = "_raw"  # the offending bytes of a quarantined record (capped)
DETAIL_COL = "_detail"  # a PII-free explanation of a quarantine (e.g. "line break at byte 1234")
FLAGGED_COL = "flagged"  # list of "stage:reason" a row would have been dropped for under action=annotate
INTERNAL_COLUMNS = (DROP_COL, RAW_COL, DETAIL_COL)
DOMAIN_COL = "domain"  # dead rows only: host of the row's URL (see row_domain)
QUARANTINE_PREFIX = "quarantine:"

DEAD_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string()),
    pa.field("source", SOURCE_TYPE),
    pa.field(DROP_COL, pa.string()),
    pa.field(RAW_COL, pa.large_binary()),
    pa.field(DETAIL_COL, pa.string()),
    pa.field("lang", pa.string()),  # kept so reports can show what each rule did to each language
    # Host of the row's URL (meta.url, a `url` column, or an http(s) source uri), so monitoring can give keep rates
    # per domain for every filter: a dropped row has lost its meta by the time the drop log is written.
    pa.field(DOMAIN_COL, pa.string()),
]
DEAD_SCHEMA = pa.schema(DEAD_FIELDS)

# RE2 patterns (pyarrow.compute): the scheme and authority of an http(s) URL, and the top-level-looking "url" key of
# the JSON `meta` string (readers write it with orjson: compact, `/` not escaped).
URL_HOST_RE = r"^(?i:https?)://(?:[^@/?#]*@)?(?P<host>[^:/?#@\[\]]+)"
_META_URL_RE = r'"url"\s*:\s*"(?P<url>[^"\\]*)'

FLAGGED_FIELD = pa.field(FLAGGED_COL, pa.list_(pa.string()))


def stable_id(uri: str, offset: int) -> str:
    """A 128-bit hash of where a record came from, so re-runs give the same ids without an id field."""
    return xxhash.xxh3_128_hexdigest(f"{uri}#{offset}".encode())


def base_schema() -> pa.Schema:
    return pa.schema(BASE_FIELDS)


def merge_fields(fields: Iterable[pa.Field]) -> list[pa.Field]:
    """Merge field lists by name; struct fields with the same name are unioned (several stages fill `quality`)."""
    merged: dict[str, pa.Field] = {}
    for f in fields:
        old = merged.get(f.name)
        if old is None:
            merged[f.name] = f
        elif pa.types.is_struct(old.type) and pa.types.is_struct(f.type):
            children = {c.name: c for c in old.type}
            for c in f.type:
                children.setdefault(c.name, c)
            merged[f.name] = pa.field(f.name, pa.struct(list(children.values())))
        elif old.type != f.type:
            raise ValueError(f"column {f.name!r} declared twice with different types: {old.type} vs {f.type}")
    return list(merged.values())


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a batch to exactly `schema`: add missing columns (and struct children) as nulls, drop extras."""
    arrays = []
    n = table.num_rows
    for field in schema:
        if field.name in table.column_names:
            arrays.append(_conform_array(table[field.name], field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _conform_array(arr: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if arr.type == typ:
        return arr
    if pa.types.is_struct(typ) and pa.types.is_struct(arr.type):
        names = {arr.type.field(i).name: i for i in range(arr.type.num_fields)}
        children = []
        for child in typ:
            if child.name in names:
                children.append(_conform_array(arr.field(names[child.name]), child.type))
            else:
                children.append(pa.nulls(len(arr), child.type))
        return pa.StructArray.from_arrays(children, fields=list(typ), mask=arr.is_null())
    return arr.cast(typ)


def set_struct_fields(table: pa.Table, column: str, values: dict[str, pa.Array]) -> pa.Table:
    """Add or replace children of a struct column, creating it if needed (stages share `quality`, `pii`)."""
    children: dict[str, pa.Array] = {}
    if column in table.column_names:
        existing = table[column].combine_chunks()
        for i in range(existing.type.num_fields):
            children[existing.type.field(i).name] = existing.field(i)
    for k, v in values.items():
        children[k] = v if isinstance(v, pa.Array) else pa.array(v)
    struct = pa.StructArray.from_arrays(list(children.values()), names=list(children.keys()))
    if column in table.column_names:
        return table.set_column(table.schema.get_field_index(column), column, struct)
    return table.append_column(column, struct)


def split_alive(table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
    """Separate rows still in play from rows already dropped or quarantined."""
    if DROP_COL not in table.column_names:
        return table, None
    col = table[DROP_COL]
    if col.null_count == len(col):
        return table.drop_columns([DROP_COL]), None
    alive_mask = pc.is_null(col)
    alive = table.filter(alive_mask).drop_columns([DROP_COL])
    dead = table.filter(pc.invert(alive_mask))
    return alive, to_dead(dead)


def url_host(urls: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Lower-case host of each http(s) URL without a leading ``www.``; null for anything else (file paths, s3://).

    Vectorized (RE2), because it runs on every dropped row and every published row of a snapshot. It agrees with
    ``urllib.parse.urlsplit(u).hostname`` for http(s) URLs with a registered-name or IPv4 host (IPv6 literals → null).
    """
    if not (pa.types.is_string(urls.type) or pa.types.is_large_string(urls.type)):
        urls = urls.cast(pa.string())
    host = pc.struct_field(pc.extract_regex(urls, URL_HOST_RE), "host")
    host = pc.replace_substring_regex(pc.utf8_lower(host), r"^www\.", "")
    return pc.if_else(pc.equal(host, ""), pa.scalar(None, host.type), host).cast(pa.string())


def row_domain(table: pa.Table) -> pa.Array:
    """The domain of each row for per-domain reports: host of ``meta.url`` (JSONL/HTML/WARC records), else of a
    ``url`` column, else of ``source.uri`` when it is an http(s) URL; null when none is a web URL."""
    n = table.num_rows
    cands: list[pa.Array | pa.ChunkedArray] = []
    if "meta" in table.column_names and not pa.types.is_null(table["meta"].type):
        meta = pc.replace_substring(table["meta"].cast(pa.large_string()), "\\/", "/")  # JSON may escape '/'
        cands.append(url_host(pc.struct_field(pc.extract_regex(meta, _META_URL_RE), "url")))
    if "url" in table.column_names and not pa.types.is_null(table["url"].type):
        cands.append(url_host(table["url"]))
    if "source" in table.column_names and pa.types.is_struct(table["source"].type):
        cands.append(url_host(pc.struct_field(table["source"], "uri")))
    if not cands:
        return pa.nulls(n, pa.string())
    out = pc.coalesce(*cands) if len(cands) > 1 else cands[0]
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def row_url(table: pa.Table) -> pa.Array:
    """The URL of each row: ``meta.url`` (JSONL/HTML/WARC records), else a ``url`` column, else ``source.uri``."""
    n = table.num_rows
    cands: list[pa.Array | pa.ChunkedArray] = []
    if "meta" in table.column_names and not pa.types.is_null(table["meta"].type):
        meta = pc.replace_substring(table["meta"].cast(pa.large_string()), "\\/", "/")
        cands.append(pc.struct_field(pc.extract_regex(meta, _META_URL_RE), "url").cast(pa.string()))
    if "url" in table.column_names and not pa.types.is_null(table["url"].type):
        cands.append(table["url"].cast(pa.string()))
    if "source" in table.column_names and pa.types.is_struct(table["source"].type):
        cands.append(pc.struct_field(table["source"], "uri").cast(pa.string()))
    if not cands:
        return pa.nulls(n, pa.string())
    out = pc.coalesce(*cands) if len(cands) > 1 else cands[0]
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def to_dead(table: pa.Table, reasons: pa.Array | None = None) -> pa.Table:
    """Project dropped rows to the few columns accounting needs, so they cost little to carry along."""
    n = table.num_rows
    cols = []
    for f in DEAD_FIELDS:
        if f.name == DROP_COL and reasons is not None:
            cols.append(reasons.cast(pa.string()))
        elif f.name == DOMAIN_COL:
            # Rows dropped earlier already carry their domain (and no meta any more); new ones get it computed.
            dom = row_domain(table)
            if DOMAIN_COL in table.column_names:
                dom = pc.coalesce(_conform_array(table[DOMAIN_COL], pa.string()), dom)
            cols.append(dom)
        elif f.name in table.column_names:
            cols.append(_conform_array(table[f.name], f.type))
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=DEAD_SCHEMA)


def row_slices(table: pa.Table, rows: int) -> list[pa.Table]:
    """Zero-copy slices of at most `rows` rows (none for an empty table)."""
    return [table.slice(start, rows) for start in range(0, table.num_rows, rows)]


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t is not None]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")
