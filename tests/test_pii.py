"""Tests for the `pii` stage, its media metadata scrubber and `refinery audit-pii`."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import struct
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from refinery.schema import MEDIA_TYPE
from stages.pii.media_metadata import scrub_media_bytes
from stages.pii.patterns import Span, find_patterns, resolve_overlaps
from stages.pii.scrub import Pii, resolve_model

FIX = Path(__file__).parent / "fixtures" / "pii"
MODEL = resolve_model("auto")

# Planted values: all valid under their checksums, none occurs in the filler text.
PLANTED = {
    "EMAIL_ADDRESS": "maria.okafor@example.org",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN_CODE": "GB82 WEST 1234 5698 7654 32",
    "US_SSN": "536-22-8725",
    "IP_ADDRESS": "203.0.113.77",
    "PHONE_NUMBER": "+44 20 7946 0958",
    "CRYPTO": "0x52908400098527886E0F7030069857D2E4169EE7",
}
IPV6 = "2001:db8:85a3::8a2e:370:7334"
FILLER = (
    "The committee met on Tuesday to review the budget. Attendance was high and the minutes were approved. "
    "Several members asked for a longer consultation period before the vote. "
)


def table(texts, **cols):
    n = len(texts)
    data = {
        "id": [f"r{i}" for i in range(n)],
        "text": pa.array(texts, pa.large_string()),
        "modality": cols.pop("modality", ["text"] * n),
    }
    data.update(cols)
    return pa.table(data)


def planted_doc() -> str:
    return (
        FILLER + " ".join(f"Value {v} here." for v in PLANTED.values()) + f" Also {IPV6} and more. " + FILLER
    )


def run(params, texts, **cols):
    stage = Pii(params)
    stage.setup()
    return stage, *stage.process(table(texts, **cols))


# ------------------------------------------------------------------ text


def test_every_pattern_type_is_replaced_and_the_rest_of_the_text_is_intact():
    doc = planted_doc()
    _, out, drop = run({"ner_model": None}, [doc, "no personal data in this one", None])
    assert drop is None
    text = out["text"][0].as_py()
    for kind, value in PLANTED.items():
        assert value not in text, kind
        assert f"<{kind}>" in text
    assert IPV6 not in text
    # Everything that was not PII is still there, in order: the text between placeholders is untouched.
    expected = doc
    for value in [*PLANTED.values(), IPV6]:
        expected = expected.replace(value, "\x00")
    got = text
    for kind in [*PLANTED, "IP_ADDRESS"]:
        got = got.replace(f"<{kind}>", "\x00")
    assert got == expected
    assert out["text"][1].as_py() == "no personal data in this one" and out["text"][2].as_py() is None
    counts = out["pii"][0].as_py()
    assert counts["ip_address"] == 2 and counts["email_address"] == 1 and counts["total"] == 8
    assert out["pii"][1].as_py()["total"] == 0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("card 4111 1111 1111 1112 declined", "CREDIT_CARD"),  # Luhn fails
        ("IBAN GB82 WEST 1234 5698 7654 33 wrong", "IBAN_CODE"),  # mod-97 fails
        ("ssn 000-12-3456 and 666-12-3456", "US_SSN"),  # invalid areas
        ("on 2021-04-16 11 people came", "PHONE_NUMBER"),  # a date and a count, not a phone
        ("population 1 234 567 in 2020", "PHONE_NUMBER"),  # digit grouping of a quantity
        ("version 1.2.3 released, 1.2.3.4.5 too", "IP_ADDRESS"),
        ("bitcoin 1BoatSLRHtKNngkdXEeobR76b53LETtpyX bad checksum", "CRYPTO"),
    ],
)
def test_validators_reject_lookalikes(text, kind):
    _, out, _ = run({"ner_model": None, "entities": [kind]}, [text])
    assert out["text"][0].as_py() == text


@pytest.mark.parametrize(
    "phone",
    [
        "(555) 123-4567",
        "07700 900 123",
        "+49 30 12345678",
        "01.23.45.67.89",
        "+46 (0)8 928 571 38",
        "699 956 915",
        "0393 1144137",
        "+1-903-140-4508x769",
    ],
)
def test_international_phone_formats(phone):
    spans = find_patterns(f"Call me on {phone} tomorrow.", ["PHONE_NUMBER"])
    assert [(s.start, s.end) for s in spans] == [(11, 11 + len(phone))]


def test_overlapping_spans_merge_and_offsets_never_corrupt_text():
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(20, 80)
        spans = []
        for _ in range(rng.randint(0, 6)):
            a = rng.randint(0, n - 1)
            spans.append(
                Span(a, rng.randint(a + 1, n), rng.choice(["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER"]), 0.5)
            )
        merged = resolve_overlaps(spans)
        assert all(x.end <= y.start for x, y in zip(merged, merged[1:], strict=False))
        covered = {i for s in spans for i in range(s.start, s.end)}
        assert covered == {i for s in merged for i in range(s.start, s.end)}
    stage = Pii({"ner_model": None})
    text = "abcdefghij"
    out = stage.anonymize(
        text, resolve_overlaps([Span(2, 5, "PERSON", 0.5), Span(4, 7, "EMAIL_ADDRESS", 1.0)])
    )
    assert out == "ab<EMAIL_ADDRESS>hij"


def test_operators_mask_hash_and_drop(monkeypatch):
    monkeypatch.setenv("PII_TEST_SECRET", "s3cret-value")
    doc = f"Mail {PLANTED['EMAIL_ADDRESS']} or call {PLANTED['PHONE_NUMBER']}."
    params = {
        "ner_model": None,
        "operators": {"EMAIL_ADDRESS": "hash", "PHONE_NUMBER": "mask"},
        "hash_secret_env": "PII_TEST_SECRET",
    }
    _, out, _ = run(params, [doc, "again " + doc])
    a, b = out["text"].to_pylist()
    assert PLANTED["EMAIL_ADDRESS"] not in a and "call *** ** **** ****." in a
    pseudo = a.split()[1]
    assert pseudo.startswith("<EMAIL_ADDRESS_") and pseudo in b  # consistent pseudonym across documents
    monkeypatch.setenv("PII_TEST_SECRET", "another")
    _, out2, _ = run(params, [doc])
    assert pseudo not in out2["text"][0].as_py()  # keyed: another secret, another pseudonym
    monkeypatch.delenv("PII_TEST_SECRET")
    with pytest.raises(RuntimeError) as err:
        Pii(params).setup()
    assert "PII_TEST_SECRET" in str(err.value) and "s3cret" not in str(err.value)
    _, out3, drop = run({"ner_model": None, "max_entities": 1}, [doc, "only " + PLANTED["US_SSN"]])
    assert drop.to_pylist() == ["too_much_pii", None]


def test_prefilter_skips_clean_documents_without_losing_recall():
    rng = random.Random(5)
    values = [*PLANTED.values(), IPV6, "(555) 123-4567"]
    docs = []
    for i in range(300):
        if i % 3 == 0:
            docs.append(FILLER * 3)
        else:
            parts = [FILLER] + [f"see {rng.choice(values)}." for _ in range(rng.randint(1, 3))] + [FILLER]
            docs.append(" ".join(parts))
    with_pf, out_a, _ = run({"ner_model": None}, docs)
    without, out_b, _ = run({"ner_model": None, "prefilter": False}, docs)
    assert out_a["text"].to_pylist() == out_b["text"].to_pylist()
    assert with_pf.stats["pattern_scanned"] == 200 and without.stats["pattern_scanned"] == 300


def test_without_model_patterns_only_and_announces_once(caplog):
    caplog.set_level(logging.INFO, logger="refinery.pii")
    for _ in range(2):
        stage, out, _ = run({"ner_model": "no_such_model_xyz"}, ["Jane Doe wrote to jane@example.org"])
    assert stage.model is None and "<EMAIL_ADDRESS>" in out["text"][0].as_py()
    msgs = [r.getMessage() for r in caplog.records if "no spaCy NER model" in r.getMessage()]
    assert len(msgs) == 1 and "EMAIL_ADDRESS" in msgs[0]


@pytest.mark.skipif(MODEL is None, reason="no spaCy English model installed")
def test_ner_finds_names_places_and_propagates_names():
    docs = [
        "Yesterday Angela Merkel met Emmanuel Macron in Paris to discuss the treaty. Later, Merkel flew home.",
        "The report was written by Merkel's office.",
    ]
    stage, out, _ = run({"ner_model": "auto", "propagate_names": "batch"}, docs)
    a, b = out["text"].to_pylist()
    assert "Angela Merkel" not in a and "Macron" not in a and "Paris" not in a and "Merkel" not in a
    assert "Merkel" not in b  # batch propagation: a name tagged in one document is masked in another
    assert out["pii"][0].as_py()["person"] >= 2 and out["pii"][0].as_py()["location"] >= 1


def test_presidio_engine_builds_offline():
    stage, out, _ = run({"engine": "presidio", "ner_model": None}, [planted_doc()])
    text = out["text"][0].as_py()
    assert PLANTED["EMAIL_ADDRESS"] not in text and PLANTED["CREDIT_CARD"] not in text


# ------------------------------------------------------------------ media


def _pixels(data: bytes) -> str:
    im = Image.open(io.BytesIO(data))
    im.load()
    return hashlib.sha256(im.tobytes()).hexdigest()


def _gps_tags(data: bytes) -> int:
    ex = Image.open(io.BytesIO(data)).getexif()
    return len(ex.get_ifd(0x8825)) + (0x8825 in ex)


def _media_table(blobs, modality):
    n = len(blobs)
    media = pa.array(
        [
            {
                "bytes": b,
                "uri": f"file:///x/{i}",
                "mime": None,
                "width": None,
                "height": None,
                "duration_s": None,
                "sample_rate": None,
                "channels": None,
                "sha256": hashlib.sha256(b).hexdigest(),
                "phash": None,
            }
            for i, b in enumerate(blobs)
        ],
        MEDIA_TYPE,
    )
    return table(["a caption by maria.okafor@example.org"] * n, modality=[modality] * n, media=media)


def test_images_lose_gps_serials_and_names_with_identical_pixels():
    photos = sorted(FIX.glob("jpg__*"))
    blobs = [p.read_bytes() for p in photos]
    assert all(_gps_tags(b) > 0 for b in blobs)
    # TIFF and PNG carrying the same EXIF (GPS included) plus a PNG Author text chunk, built from a real photo.
    src = Image.open(io.BytesIO(blobs[0]))
    exif = src.getexif()
    exif.get_ifd(0x8825)
    tiff = io.BytesIO()
    src.save(tiff, "TIFF", exif=exif)
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "Maria Okafor")
    png = io.BytesIO()
    src.save(png, "PNG", exif=exif, pnginfo=info)
    blobs += [tiff.getvalue(), png.getvalue()]
    assert _gps_tags(blobs[-2]) > 0 and _gps_tags(blobs[-1]) > 0
    stage = Pii({"ner_model": None})
    stage.setup()
    out, _ = stage.process(_media_table(blobs, "image"))
    media = out["media"].to_pylist()
    removed = [r["media_removed"] for r in out["pii"].to_pylist()]
    for before, m, what in zip(blobs, media, removed, strict=True):
        after = m["bytes"]
        assert _gps_tags(after) == 0
        assert _pixels(after) == _pixels(before)
        assert "exif.gps" in what
        assert m["sha256"] == hashlib.sha256(after).hexdigest() != hashlib.sha256(before).hexdigest()
    assert b"Maria Okafor" not in media[-1]["bytes"] and "png.text" in removed[-1]
    lens = media[photos.index(FIX / "jpg__tests__32-lens_data.jpeg")]["bytes"]
    ex = Image.open(io.BytesIO(lens)).getexif()
    assert 0x013B not in ex and 0x927C not in ex.get_ifd(0x8769)  # artist and maker note gone
    assert ex.get(0x0110)  # the camera model (not personal) is kept
    assert all(t == "a caption by <EMAIL_ADDRESS>" for t in out["text"].to_pylist())  # captions scrubbed
    summary = stage.summarize(out)
    assert summary["media_items_scrubbed"] == len(blobs) and summary["media_removed.exif.gps"] == len(blobs)


def _riff_chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def test_audio_tags_are_stripped_and_samples_kept():
    wav = (FIX / "beep.wav").read_bytes()
    info = _riff_chunk(b"LIST", b"INFO" + _riff_chunk(b"IART", b"Maria Okafor\x00"))
    body = wav[12:] + info + _riff_chunk(b"id3 ", b"ID3\x04\x00\x00\x00\x00\x00\x05Maria")
    tagged = b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body
    new, removed = scrub_media_bytes(tagged, "audio")
    assert b"Maria" not in new and removed == ["id3v2", "riff.info"]
    assert new == wav  # exactly the untagged recording
    frames = b"\xff\xfb\x90\x00" + bytes(400)
    id3v2 = (
        b"ID3\x03\x00\x00"
        + bytes([0, 0, 0, 20])
        + b"TPE1"
        + struct.pack(">I", 10)
        + b"\x00\x00"
        + b"\x00Maria Ok."
    )
    id3v1 = b"TAG" + b"Title".ljust(30, b"\x00") + b"Maria Okafor".ljust(30, b"\x00") + bytes(65)
    new, removed = scrub_media_bytes(id3v2 + frames + id3v1, "audio")
    assert new == frames and removed == ["id3v1", "id3v2"]


# ------------------------------------------------------------------ end to end: accounting, leaks, audit


def _write_jsonl(path: Path, docs: list[str]) -> None:
    with path.open("w") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": f"doc{i}", "text": d}) + "\n")
        # a broken record holding PII: its quarantine reason/detail must not repeat it
        f.write('{"id": "bad", "text": "' + PLANTED["EMAIL_ADDRESS"] + "\n")


def _all_text_under(root: Path) -> str:
    chunks = []
    for p in root.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".log", ".out", ".err", "") and p.stat().st_size < 5_000_000:
            chunks.append(p.read_text(errors="replace"))
    return "\n".join(chunks)


def test_pipeline_accounts_counts_and_leaks_no_values(run_config, tmp_path, caplog, capsys):
    import pyarrow.parquet as pq

    from jobs.cli import main
    from jobs.commands.audit_pii import audit
    from tests.conftest import read_output

    caplog.set_level(logging.DEBUG)
    docs = [planted_doc(), FILLER, planted_doc() + " " + PLANTED["US_SSN"]] * 4
    src = tmp_path / "in.jsonl"
    _write_jsonl(src, docs)
    base = {"input": {"uri": str(src), "format": "jsonl", "id_field": "id"}, "ray": {"batch_rows": 4}}
    res = run_config(
        {
            **base,
            "output": {"uri": str(tmp_path / "out")},
            "stages": [{"stage": "pii", "params": {"ner_model": None, "max_entities": 8}}],
        }
    )
    data, manifest = read_output(res.output_uri)
    assert data.num_rows == 8 and sorted(data["id"].to_pylist())[0] == "doc0"
    stage = next(s for s in res.report["stages"] if s["name"] == "pii")
    assert stage["dropped"] == {"too_much_pii": 4}
    c = stage["counters"]
    assert c["email_address"] == 4 and c["ip_address"] == 8 and c["docs_with_pii"] == 4
    # No planted value anywhere: committed text, report, manifest, droplog, quarantine reasons, logs, output.
    out_root = Path(res.output_uri)
    for kind in ("droplog", "quarantine"):
        for p in (out_root / kind).glob("*.parquet"):
            t = pq.read_table(p)
            cols = [
                c for c in t.column_names if c != "raw"
            ]  # raw = the broken input record itself, by design
            blob = json.dumps(t.select(cols).to_pylist(), default=str)
            assert not any(v in blob for v in PLANTED.values()), kind
    import ray

    session = Path(ray._private.worker._global_node.get_session_dir_path())
    haystacks = {
        "text": "\n".join(data["text"].to_pylist()),
        "report": (out_root / "report.json").read_text(),
        "manifest": (out_root / "manifest.json").read_text(),
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        "ray_logs": _all_text_under(session / "logs"),
    }
    for where, hay in haystacks.items():
        for kind, value in PLANTED.items():
            assert value not in hay, f"{kind} leaked into {where}"
    # The independent audit finds nothing in the scrubbed output ...
    assert audit(res.output_uri)["clean"]
    # ... and finds the residuals of an unscrubbed run, reporting ids, never values.
    raw = run_config({**base, "output": {"uri": str(tmp_path / "raw")}, "stages": []})
    capsys.readouterr()
    assert main(["audit-pii", raw.output_uri]) == 3
    printed = capsys.readouterr().out
    report = json.loads(printed)
    assert report["residual"]["EMAIL_ADDRESS"] == 8 and report["residual"]["CREDIT_CARD"] == 8
    assert report["residual"]["IBAN_CODE"] == 8 and report["residual"]["PHONE_NUMBER"] >= 8
    assert set(report["row_ids"]["EMAIL_ADDRESS"]) == {f"doc{i}" for i in range(12) if i % 3 != 1}
    assert not any(v in printed for v in PLANTED.values())
    assert main(["audit-pii", str(tmp_path / "nothing")]) == 2
