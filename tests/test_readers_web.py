"""HTML and WARC/WET readers: extraction, charsets, HTTP parsing, record accounting (issue 6)."""

from __future__ import annotations

import gzip
import json
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from refinery.config import InputConfig
from refinery.fsio import list_inputs
from stages.readers import load_readers, plan_reads
from stages.readers.extract import EXTRACTORS, decode_html, extract_page, python_codec
from stages.readers.warc import parse_http

WEB = Path(__file__).parent / "fixtures" / "web"
WARC_FILES = sorted(
    p.name for p in WEB.iterdir() if any(x in p.name for x in (".warc", ".wet", ".wat", ".arc"))
)


def read_rows(uri: str | Path, fmt: str = "auto", **kw) -> list[dict]:
    cfg = InputConfig(uri=str(uri), format=fmt, **kw)
    tasks, _ = plan_reads(list_inputs(str(uri), exclude=cfg.exclude), cfg, "test")
    readers = load_readers()
    rows = []
    for t in tasks:
        for batch in readers[t.format](cfg, "test").read(t):
            rows += batch.to_pylist()
    return rows


def live(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["_drop"] is None]


def has_script(text: str, script: str) -> bool:
    return any(script in unicodedata.name(ch, "") for ch in text)


# --- charset handling -------------------------------------------------------------------------------------


def test_codec_supersets():
    assert python_codec("GB2312") == "gb18030"
    assert python_codec("Shift_JIS") == "cp932"
    assert python_codec("EUC-JP") == "euc_jis_2004"
    assert python_codec("iso-8859-1") == "cp1252"
    assert python_codec("no-such-charset") is None


def test_declared_charset_is_checked_against_the_bytes():
    page = "<html><head><title>Prüfung</title></head><body><p>Größe ändern</p></body></html>"
    # Declared ISO-8859-1 in HTTP but really UTF-8 → the declaration would give mojibake; the strict check skips it.
    text, codec = decode_html(page.encode("utf-8"), "utf-8")
    assert "Größe" in text and codec == "utf-8"
    text, codec = decode_html(page.encode("cp1252"), None)  # no declaration, not UTF-8 → detection
    assert "Größe" in text


def test_shift_jis_without_any_declaration():
    data = gzip.decompress((WEB / "sjis_nodecl.html.gz").read_bytes())
    text, codec = decode_html(data)
    assert codec in ("cp932", "shift_jis", "shift_jis_2004")
    assert "\ufffd" not in text
    assert "ヘッドポーター" in text


# --- HTML reader ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_html_reader_one_doc_per_file(extractor):
    rows = live(read_rows(WEB / "escopete_wikipedia.html.gz", "html", extractor=extractor))
    assert len(rows) == 1
    r = rows[0]
    meta = json.loads(r["meta"])
    assert r["modality"] == "text" and r["source"]["uri"].endswith("escopete_wikipedia.html.gz")
    assert r["source"]["format"] == "html"
    assert meta["title"].startswith("Escopete")
    assert meta["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert meta["lang"] == "an" and meta["charset"] == "utf-8"
    assert meta["extractor"].startswith(extractor)
    assert "escopeta" in r["text"].lower() or "escopete" in r["text"].lower()
    # main text only: the Wikipedia navigation menu is boilerplate
    assert "Menú principal" not in r["text"]


def test_html_reader_detects_charset_of_undeclared_shift_jis():
    rows = live(read_rows(WEB / "sjis_nodecl.html.gz", "html", extractor="resiliparse"))
    assert len(rows) == 1
    assert has_script(rows[0]["text"], "KATAKANA") and "\ufffd" not in rows[0]["text"]
    assert "ヘッドポーター" in json.loads(rows[0]["meta"])["title"]


def test_extract_page_metadata_and_alts():
    html = (
        '<html lang="de"><head><title>T</title><meta property="article:published_time" content="2024-01-02">'
        '<link rel="canonical" href="https://ex.org/a"></head><body><article><p>'
        + "Ein Satz mit Inhalt. " * 30
        + '</p><img src="/i/x.png" alt="Ein Bild"></article></body></html>'
    )
    page = extract_page(html, "combined", collect_alts=True)
    assert (
        page.title == "T"
        and page.date == "2024-01-02"
        and page.url == "https://ex.org/a"
        and page.lang == "de"
    )
    assert page.image_alts == {"https://ex.org/i/x.png": "Ein Bild"}
    assert "Ein Satz mit Inhalt." in page.text


def test_empty_page_is_skipped_not_quarantined(tmp_path):
    (tmp_path / "blank.html").write_text("<html><body><script>var x=1;</script></body></html>")
    (tmp_path / "zero.html").write_bytes(b"")
    rows = read_rows(tmp_path, "auto")
    drops = sorted(r["_drop"] for r in rows)
    assert drops == ["quarantine:empty_file", "skip:empty_extraction"]


# --- HTTP parsing -----------------------------------------------------------------------------------------------


def test_parse_http_tolerates_lf_headers_and_decoded_gzip_bodies():
    block = (
        b"HTTP/1.1 200 OK\nContent-Type: text/html; charset=EUC-JP\nContent-Encoding: gzip\n\n<html>x</html>"
    )
    h = parse_http(block)
    assert h.status == 200 and h.charset == "EUC-JP" and h.payload == b"<html>x</html>"
    body = gzip.compress(b"<p>zipped</p>")
    h = parse_http(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: text/html\r\n\r\n" + body)
    assert h.payload == b"<p>zipped</p>" and h.charset is None
    h = parse_http(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n6\r\n World\r\n0\r\n\r\n"
    )
    assert h.payload == b"Hello World"
    assert parse_http(b"GET / HTTP/1.1\r\n\r\n") is None


# --- WARC reader --------------------------------------------------------------------------------------------------


def _counts(rows):
    return Counter(r["_drop"] or r["modality"] for r in rows)


def test_warc_record_types_are_kept_skipped_and_counted():
    rows = read_rows(WEB / "warcio_example.warc.gz", "warc")
    assert _counts(rows) == {"text": 1, "skip:warcinfo": 2, "skip:request": 2, "skip:revisit": 1}
    page = live(rows)[0]
    meta = json.loads(page["meta"])
    assert meta["url"] == "http://example.com/" and meta["http_status"] == 200
    assert meta["content_type"] == "text/html" and "illustrative examples" in page["text"]
    assert page["source"]["uri"].endswith("warcio_example.warc.gz") and page["source"]["format"] == "warc"


def test_wet_conversion_records_are_taken_as_they_are():
    rows = read_rows(WEB / "cc_whirlwind.warc.wet.gz", "auto")
    assert _counts(rows) == {"text": 1, "skip:warcinfo": 1}
    r = live(rows)[0]
    assert json.loads(r["meta"])["warc_type"] == "conversion"
    assert r["text"].startswith("Escopete - Biquipedia")


def test_arc_files_via_warcio():
    rows = read_rows(WEB / "example.arc", "auto")
    assert _counts(rows) == {"text": 1, "skip:warcinfo": 1, "skip:http_404": 1}
    r = live(rows)[0]
    assert "illustrative examples" in r["text"] and json.loads(r["meta"])["url"] == "http://example.com/"
    assert "warc_record_id" not in json.loads(r["meta"])  # ARC has none; no random ids in committed rows


def test_wat_metadata_only():
    assert _counts(read_rows(WEB / "cc_whirlwind.warc.wat.gz", "auto")) == {
        "skip:warcinfo": 1,
        "skip:metadata": 1,
    }


def test_euc_jp_clueweb_quirks():
    rows = read_rows(WEB / "clueweb_eucjp_slice.warc.gz", "warc", extractor="resiliparse")
    assert _counts(rows) == {"text": 3, "skip:warcinfo": 1}
    for r in live(rows):
        meta = json.loads(r["meta"])
        assert meta["charset"] == "euc_jis_2004"
        assert "\ufffd" not in r["text"] and has_script(r["text"], "KATAKANA")
        assert "ヘッドポーター" in meta["title"]


def test_gb2312_and_windows_1251_pages():
    rows = read_rows(WEB / "cn_ru_slice.warc.gz", "warc", extractor="resiliparse")
    assert _counts(rows) == {"text": 3, "skip:warcinfo": 1, "skip:request": 3, "skip:metadata": 3}
    by_codec = Counter(json.loads(r["meta"])["charset"] for r in live(rows))
    assert by_codec == {"gb18030": 2, "cp1251": 1}
    for r in live(rows):
        script = "CYRILLIC" if json.loads(r["meta"])["charset"] == "cp1251" else "CJK"
        both = r["text"] + json.loads(r["meta"])["title"]
        assert has_script(both, script) and "\ufffd" not in both


def test_crawl_images_get_alt_captions_and_every_record_is_accounted():
    rows = read_rows(WEB / "crawl_mixed.warc.gz", "warc", extractor="combined")
    assert _counts(rows) == {
        "text": 3,
        "image": 2,
        "skip:warcinfo": 1,
        "skip:request": 1,
        "skip:http_404": 1,
        "quarantine:undecodable_image": 1,
    }
    images = {json.loads(r["meta"])["url"]: r for r in live(rows) if r["modality"] == "image"}
    horse = images["http://example.org/img/horse.png"]
    assert horse["text"] == "Silhouette of a horse"  # absolute src
    assert images["http://example.org/gallery/chessboard.png"]["text"] == "A grey chessboard"  # relative src
    assert horse["media"]["mime"] == "image/png" and horse["media"]["width"] > 0
    assert len(horse["media"]["sha256"]) == 64 and horse["media"]["bytes"][:4] == b"\x89PNG"
    assert "#offset=" in horse["media"]["uri"]
    texts = {json.loads(r["meta"])["charset"]: r["text"] for r in live(rows) if r["modality"] == "text"}
    assert has_script(texts["cp932"], "KATAKANA") and "\ufffd" not in texts["cp932"]  # Shift_JIS via <meta>
    assert has_script(texts["gb18030"], "CJK") and "\ufffd" not in texts["gb18030"]  # GB18030 via HTTP header


def test_inline_limit_moves_crawl_images_to_uri():
    rows = live(read_rows(WEB / "crawl_mixed.warc.gz", "warc", inline_max_bytes=1000))
    images = [r for r in rows if r["modality"] == "image"]
    sizes = {json.loads(r["meta"])["bytes"]: r["media"]["bytes"] for r in images}
    assert all((b is None) == (n > 1000) for n, b in sizes.items()) and len(sizes) == 2


def test_truncated_archive_keeps_earlier_records(tmp_path):
    data = (WEB / "cn_ru_slice.warc.gz").read_bytes()
    (tmp_path / "cut.warc.gz").write_bytes(data[: len(data) // 2])
    rows = read_rows(tmp_path / "cut.warc.gz", "warc", extractor="resiliparse")
    full = read_rows(WEB / "cn_ru_slice.warc.gz", "warc", extractor="resiliparse")
    assert 0 < len(rows) < len(full)
    assert [r["_drop"] for r in rows[:-1]] == [
        r["_drop"] for r in full[: len(rows) - 1]
    ]  # earlier records kept
    assert rows[-1]["_drop"] in ("quarantine:truncated_record", "quarantine:broken_archive")
    assert "bytes" in rows[-1]["_detail"]


def test_garbage_with_warc_extension_is_quarantined(tmp_path):
    (tmp_path / "x.warc").write_bytes(b"this is not a web archive\n" * 10)
    rows = read_rows(tmp_path / "x.warc", "auto")
    assert [r["_drop"] for r in rows] == ["quarantine:broken_archive"]


def test_every_fixture_archive_is_accounted_in_report(run_config, tmp_path):
    """End to end: all WARC/WET/WAT fixtures → report.json accounts for every record, zero crashes."""
    out = tmp_path / "out"
    result = run_config(
        {
            "input": {
                "uri": str(WEB),
                "format": "auto",
                "extractor": "resiliparse",
                "exclude": ["multimodal/*", "*.md", "*.py", "LICENSE*"],
            },
            "output": {"uri": str(out)},
        }
    )
    rep = result.report
    records = sum(len(read_rows(WEB / f, "warc", extractor="resiliparse")) for f in WARC_FILES)
    html_docs = 2
    assert rep["rows_read"] == records + html_docs
    assert rep["rows_read"] == rep["rows_out"] + rep["dropped_total"] + sum(
        rep["quarantined"].values()
    ) + sum(rep["skipped"].values())
    assert "unreadable_file" not in rep["quarantined"]
    assert len(WARC_FILES) == 8
    assert rep["skipped"]["request"] == 1 + 2 + 3 + 1  # cc_whirlwind, warcio, cn_ru, crawl_mixed
    assert rep["skipped"]["revisit"] == 1
    assert json.loads((out / "report.json").read_text())["skipped"] == rep["skipped"]


def test_combined_falls_back_to_trafilatura_when_fast_path_finds_little(monkeypatch):
    from stages.readers import extract as ex

    html, _ = decode_html(gzip.decompress((WEB / "escopete_wikipedia.html.gz").read_bytes()))
    assert extract_page(html, "combined").extractor == "combined"
    monkeypatch.setattr(ex, "_combined_fast", lambda tree: "")
    page = extract_page(html, "combined")
    assert page.extractor == "combined:trafilatura" and len(page.text) > ex.FALLBACK_MIN_CHARS


def test_oversized_warc_record_is_quarantined_not_loaded():
    rows = read_rows(WEB / "crawl_mixed.warc.gz", "warc", max_record_bytes=10_000, quarantine_raw_bytes=100)
    from fastwarc.warc import ArchiveIterator

    with open(WEB / "crawl_mixed.warc.gz", "rb") as f:
        expected = sum(1 for r in ArchiveIterator(f) if r.content_length > 10_000)
    big = [r for r in rows if r["_drop"] == "quarantine:record_too_large"]
    assert len(big) == expected >= 2  # horse.png (16 KB) and the re-encoded pages
    assert all(len(r["_raw"]) == 100 and "exceeds max_record_bytes=10000" in r["_detail"] for r in big)
