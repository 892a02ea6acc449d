"""Builders of hostile inputs for tests/test_hostile_inputs.py: decompression bombs of every codec (a few MB of
file that inflate to 2 GiB, built at run time from repeated compressed chunks), zip archives whose headers can
lie, WARC records and HTML pages around real fixture text, and a child-process reader that reports its peak RSS.
"""

from __future__ import annotations

import bz2
import gzip
import json
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
import zstandard

from refinery.config import InputConfig
from refinery.fsio import list_inputs
from stages.readers import load_readers, plan_reads

ROOT = Path(__file__).resolve().parent.parent


FIX = Path(__file__).parent / "fixtures"


# 100 real documents (lingua-py test sentences, Apache-2.0; tests/fixtures/foundation/README.md)
LINES = (FIX / "foundation" / "docs_a.jsonl").read_bytes().splitlines(keepends=True)


TEXTS = [json.loads(line)["text"] for line in LINES]


MIB = 1 << 20


RSS_LIMIT_MB = 1024


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
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, crc, len(data), size, len(n), 0
        )
        out += n + data
    for i, (name, method, data, crc, size, flags) in enumerate(entries):
        n = name.encode()
        off = at[offsets[i]] if offsets else at[i]
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                flags,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(n),
                0,
                0,
                0,
                0,
                0,
                off,
            )
            + n
        )
    cd = len(out)
    out += central + struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd, 0
    )
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
        [sys.executable, "-c", _CHILD, str(uri), json.dumps(kw)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds"] = time.perf_counter() - t0
    print(f"{name or uri.name}: peak RSS {out['maxrss_mb']:.0f} MB in {out['seconds']:.1f}s, {out['drops']}")
    return out


def _bomb_jsonl_gz(d: Path) -> tuple[Path, int, dict[str, int]]:
    p = d / "bomb.jsonl.gz"
    p.write_bytes(
        gzip.compress(jsonl(LINES[:40])) + zeros_gzip_member() * 2048 + gzip.compress(jsonl(LINES[40:]))
    )
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
        warc_record(
            "response",
            "http://a.example/",
            http_page(article("First page")),
            "application/http; msgtype=response",
        ),
        warc_record("response", "http://bomb.example/", body, "application/http; msgtype=response"),
        warc_record(
            "response",
            "http://b.example/",
            http_page(article("Second page")),
            "application/http; msgtype=response",
        ),
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
    p.write_bytes(
        gzip.compress(head) + zeros_gzip_member() * n + gzip.compress(b"\r\n\r\n") + gzip.compress(tail)
    )
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
    bomb = pa.table(
        {"text": pa.DictionaryArray.from_arrays(pa.array([0] * 4096, pa.int32()), pa.array(["a" * MIB]))}
    )
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


def multi_gz(data: bytes) -> bytes:
    return gzip.compress(data[: len(data) // 2]) + gzip.compress(data[len(data) // 2 :])


def multi_zst(data: bytes) -> bytes:
    skippable = (0x184D2A50).to_bytes(4, "little") + (6).to_bytes(4, "little") + b"skip!!"
    c = zstandard.ZstdCompressor(write_checksum=True)
    return c.compress(data[: len(data) // 3]) + skippable + c.compress(data[len(data) // 3 :])


def multi_bz2(data: bytes) -> bytes:
    return bz2.compress(data[: len(data) // 2]) + bz2.compress(data[len(data) // 2 :])


def fixture_archive(path: Path) -> dict[str, int]:
    """A zip of real fixtures; returns the rows planted per member (what each member must yield)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(FIX / "foundation" / "docs_a.jsonl", "data/docs_a.jsonl")
        z.write(
            FIX / "foundation" / "docs_b.jsonl.gz", "data/docs_b.jsonl.gz", compress_type=zipfile.ZIP_STORED
        )
        z.write(
            FIX / "foundation" / "docs_c.jsonl.zst", "data/docs_c.jsonl.zst", compress_type=zipfile.ZIP_BZIP2
        )
        z.write(
            FIX / "foundation" / "docs_d.parquet", "data/stored.parquet", compress_type=zipfile.ZIP_STORED
        )
        z.write(FIX / "foundation" / "docs_d.parquet", "data/deflated.parquet")
        z.writestr("notes/readme.txt", "A plain text document inside the archive.")
        z.writestr("notes/", "")
        z.writestr("__MACOSX/notes/._readme.txt", "resource fork")
        z.writestr(".hidden.txt", "hidden")
        z.writestr("notes/.DS_Store", "hidden")
        z.writestr("inner.zip", b"PK\x05\x06" + b"\0" * 18)
        z.writestr("blob.xyz", b"?")
        z.write(
            FIX / "web" / "escopete_wikipedia.html.gz", "web/page.html.gz", compress_type=zipfile.ZIP_STORED
        )
        z.write(FIX / "web" / "cc_whirlwind.warc.gz", "web/cc.warc.gz", compress_type=zipfile.ZIP_STORED)
        z.write(FIX / "images" / "rocket_small.jpg", "img/rocket_small.jpg")
        z.write(FIX / "images" / "rocket_small.txt", "img/rocket_small.txt")  # its caption, not a document
        z.write(FIX / "audio" / "calling.flac", "audio/calling.flac")
        z.write(FIX / "audio" / "calling.txt", "audio/calling.txt")
    return {
        "data/docs_a.jsonl": 100,
        "data/docs_b.jsonl.gz": 100,
        "data/docs_c.jsonl.zst": 50,
        "data/stored.parquet": 50,
        "data/deflated.parquet": 50,
        "notes/readme.txt": 1,
        "inner.zip": 1,
        "blob.xyz": 1,
        "web/page.html.gz": 1,
        "web/cc.warc.gz": 4,
        "img/rocket_small.jpg": 1,
        "audio/calling.flac": 1,
    }
