"""JSONL / Parquet / text readers on real documents, and every bad-input case going to quarantine."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.config import InputConfig
from refinery.fsio import InputFile, list_inputs
from refinery.schema import DROP_COL
from stages.readers import load_readers, plan_reads

FIX = Path(__file__).parent / "fixtures" / "foundation"


def _docs() -> list[dict]:
    return [json.loads(line) for line in (FIX / "docs_a.jsonl").read_text(encoding="utf-8").splitlines()]


def read_all(uri: str, **cfg) -> pa.Table:
    icfg = InputConfig(uri=uri, **cfg)
    files = list_inputs(uri)
    tasks, _ = plan_reads(files, icfg, "test-run")
    readers = load_readers()
    tables = [t for task in tasks for t in readers[task.format](icfg, "test-run").read(task)]
    return pa.concat_tables(tables)


def _quarantine(table: pa.Table) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in table[DROP_COL].to_pylist():
        if r:
            out[r] = out.get(r, 0) + 1
    return out


@pytest.mark.parametrize("name", ["docs_a.jsonl", "docs_b.jsonl.gz", "docs_c.jsonl.zst", "docs_d.parquet"])
def test_every_format_reads_real_documents(name):
    t = read_all(str(FIX / name))
    assert t[DROP_COL].null_count == t.num_rows
    assert (
        t.num_rows
        == {"docs_a.jsonl": 100, "docs_b.jsonl.gz": 100, "docs_c.jsonl.zst": 50, "docs_d.parquet": 50}[name]
    )
    assert all(isinstance(x, str) and len(x) > 20 for x in t["text"].to_pylist())
    meta = json.loads(t["meta"][0].as_py())
    assert "lang_label" in meta and "doc_id" in meta  # extra fields kept
    assert t["source"][0].as_py()["uri"].endswith(name)
    assert len(set(t["id"].to_pylist())) == t.num_rows


def test_id_field_and_stable_ids():
    a = read_all(str(FIX / "docs_a.jsonl"), id_field="doc_id")
    assert a["id"].to_pylist() == [d["doc_id"] for d in _docs()]
    b1 = read_all(str(FIX / "docs_a.jsonl"))
    b2 = read_all(str(FIX / "docs_a.jsonl"))
    assert b1["id"].to_pylist() == b2["id"].to_pylist()


def test_byte_range_splits_read_every_line_exactly_once(tmp_path):
    src = (FIX / "docs_a.jsonl").read_bytes()
    path = tmp_path / "big.jsonl"
    path.write_bytes(src)
    whole = read_all(str(path))
    icfg = InputConfig(uri=str(path), split_bytes=997)  # odd size: boundaries fall mid-line
    tasks, _ = plan_reads(list_inputs(str(path)), icfg, "test-run")
    assert len(tasks) > 50
    split = pa.concat_tables(
        [t for task in tasks for t in load_readers()["jsonl"](icfg, "test-run").read(task)]
    )
    assert sorted(split["id"].to_pylist()) == sorted(whole["id"].to_pylist())
    assert sorted(split["text"].to_pylist()) == sorted(whole["text"].to_pylist())


def test_bad_records_are_quarantined_with_reasons(tmp_path):
    good = (FIX / "docs_a.jsonl").read_bytes().splitlines(keepends=True)[:5]
    bad = [
        b'{"text": "unterminated\n',
        b'{"text": "bad \xff utf8"}\n',
        b'{"text": ["not", "a", "string"]}\n',
        b'{"other": 1}\n',
        b"[1, 2]\n",
        b'{"text": "' + b"x" * 5000 + b'"}\n',
    ]
    (tmp_path / "mixed.jsonl").write_bytes(b"".join(good[:2] + bad + good[2:]))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    t = read_all(str(tmp_path), max_record_bytes=4096)
    q = _quarantine(t)
    assert q == {
        "quarantine:malformed_json": 1,
        "quarantine:invalid_utf8": 1,
        "quarantine:text_not_string": 1,
        "quarantine:missing_text_field": 1,
        "quarantine:not_an_object": 1,
        "quarantine:record_too_large": 1,
        "quarantine:empty_file": 1,
    }
    kept = t.filter(pa.compute.is_null(t[DROP_COL]))
    assert kept["text"].to_pylist() == [json.loads(line)["text"] for line in good]
    # quarantine details never quote the record itself
    details = " ".join(x or "" for x in t["_detail"].to_pylist())
    assert "unterminated" not in details and "xxxx" not in details


def test_truncated_gzip_keeps_the_readable_part(tmp_path):
    blob = gzip.compress((FIX / "docs_a.jsonl").read_bytes())
    (tmp_path / "cut.jsonl.gz").write_bytes(blob[: len(blob) * 2 // 3])
    t = read_all(str(tmp_path / "cut.jsonl.gz"))
    q = _quarantine(t)
    assert q == {"quarantine:truncated_compressed_stream": 1}
    kept = t.filter(pa.compute.is_null(t[DROP_COL]))
    expected = [d["text"] for d in _docs()]
    assert 20 < kept.num_rows < 100
    assert kept["text"].to_pylist() == expected[: kept.num_rows]


def test_parquet_and_text_bad_cases(tmp_path):
    pq.write_table(
        pa.table({"text": ["fine document", None, "another"], "k": [1, 2, 3]}), tmp_path / "p.parquet"
    )
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    (tmp_path / "doc.txt").write_text("one document per file", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00not utf8")
    (tmp_path / "nothing.txt").write_bytes(b"")
    (tmp_path / "image.xyz").write_bytes(b"?")
    t = read_all(str(tmp_path))
    assert _quarantine(t) == {
        "quarantine:missing_text_field": 1,
        "quarantine:empty_file": 2,
        "quarantine:invalid_utf8": 1,
        "quarantine:unsupported_format": 1,
    }
    kept = t.filter(pa.compute.is_null(t[DROP_COL]))
    assert sorted(kept["text"].to_pylist()) == ["another", "fine document", "one document per file"]


def test_listing_skips_hidden_and_staging_files(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "_work").mkdir()
    (tmp_path / "_work" / "b.jsonl").write_text('{"text": "y"}\n')
    (tmp_path / ".hidden.jsonl").write_text('{"text": "z"}\n')
    files = list_inputs(str(tmp_path))
    assert [Path(f.uri).name for f in files] == ["a.jsonl"]
    assert isinstance(files[0], InputFile) and files[0].size == 14 and files[0].mtime
