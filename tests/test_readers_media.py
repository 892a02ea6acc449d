"""Image and audio readers: decoded fields, sidecar captions/transcripts, inline vs URI bytes, quarantine."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from refinery.config import InputConfig
from refinery.fsio import list_inputs
from stages.readers import load_readers, plan_reads
from stages.readers.image import dhash

FIX = Path(__file__).parent / "fixtures"
IMAGES = FIX / "images"
AUDIO = FIX / "audio"
NOT_DATA = ["*.py", "LICENSE*", "COPYRIGHT", "*.md"]


def read_rows(uri: Path, fmt: str = "auto", **kw) -> dict[str, dict]:
    """file name → row (one row per media file)."""
    cfg = InputConfig(uri=str(uri), format=fmt, exclude=NOT_DATA, **kw)
    tasks, _ = plan_reads(list_inputs(str(uri), exclude=cfg.exclude), cfg, "test")
    readers = load_readers()
    out = {}
    for t in tasks:
        for batch in readers[t.format](cfg, "test").read(t):
            for r in batch.to_pylist():
                out[Path(r["source"]["uri"]).name] = r
    return out


def test_images_all_formats_with_fields():
    rows = read_rows(IMAGES, "auto")
    # sidecars are claimed by the image reader, never read as documents
    assert set(rows) == {
        "chessboard_GRAY.png",
        "phantom.png",
        "no_time_for_that_tiny.gif",
        "horse.tiff",
        "rocket_small.jpg",
        "rocket_small.webp",
        "truncated.jpg",
    }
    expect_mime = {
        ".png": "image/png",
        ".gif": "image/gif",
        ".tiff": "image/tiff",
        ".jpg": "image/jpeg",
        ".webp": "image/webp",
    }
    for name, r in rows.items():
        if name == "truncated.jpg":
            continue
        data = (IMAGES / name).read_bytes()
        m = r["media"]
        assert r["_drop"] is None and r["modality"] == "image" and r["source"]["format"] == "image"
        with Image.open(io.BytesIO(data)) as im:
            assert (m["width"], m["height"]) == im.size
        assert m["mime"] == expect_mime[Path(name).suffix]
        assert m["sha256"] == hashlib.sha256(data).hexdigest()
        assert m["bytes"] == data and m["uri"].endswith(name)
        assert len(m["phash"]) == 16 and m["duration_s"] is None


def test_image_captions_from_sidecars():
    rows = read_rows(IMAGES, "image")
    assert rows["chessboard_GRAY.png"]["text"] == "A grey and white chessboard pattern."
    assert rows["phantom.png"]["text"].startswith("The Shepp-Logan phantom")
    assert json.loads(rows["phantom.png"]["meta"])["caption_source"] == "sidecar_json"
    assert json.loads(rows["rocket_small.webp"]["meta"])["caption_source"] == "sidecar_txt"
    assert rows["horse.tiff"]["text"] is None


def test_undecodable_image_is_quarantined_with_reason():
    r = read_rows(IMAGES, "image")["truncated.jpg"]
    assert r["_drop"] == "quarantine:undecodable_image"
    assert "Pillow" in r["_detail"] and r["_raw"] == (IMAGES / "truncated.jpg").read_bytes()


def test_inline_max_bytes_switches_to_uri():
    rows = read_rows(IMAGES, "image", inline_max_bytes=1000)
    assert rows["chessboard_GRAY.png"]["media"]["bytes"] is not None  # 418 bytes
    big = rows["phantom.png"]["media"]
    assert big["bytes"] is None and big["uri"].endswith("phantom.png") and big["sha256"]


def test_dhash_is_stable_under_resizing():
    with Image.open(IMAGES / "phantom.png") as im:
        a = int(dhash(im), 16)
        b = int(dhash(im.resize((123, 123))), 16)
    with Image.open(IMAGES / "chessboard_GRAY.png") as other:
        c = int(dhash(other), 16)
    assert bin(a ^ b).count("1") <= 6 < bin(a ^ c).count("1")


def test_audio_fields_and_transcripts():
    rows = read_rows(AUDIO, "auto")
    assert set(rows) == {
        "activated.wav",
        "added.wav",
        "auth-thankyou.wav",
        "beep.wav",
        "calling.flac",
        "cancelled.ogg",
        "cancelled.mp3",
        "not_audio.mp3",
    }  # transcripts.jsonl and the .txt/.json sidecars are not documents
    wav = rows["added.wav"]
    assert wav["modality"] == "audio" and wav["text"] == "Added."
    m = wav["media"]
    assert (m["mime"], m["sample_rate"], m["channels"]) == ("audio/wav", 8000, 1)
    assert abs(m["duration_s"] - (11614 - 44) / 16000) < 0.01  # 16-bit mono PCM at 8 kHz
    assert m["sha256"] == hashlib.sha256((AUDIO / "added.wav").read_bytes()).hexdigest()
    assert json.loads(wav["meta"]) == {
        "transcript_lang": "en",
        "bytes": 11614,
        "transcript_source": "transcripts.jsonl",
    }
    assert (
        rows["calling.flac"]["text"] == "Calling." and rows["calling.flac"]["media"]["mime"] == "audio/flac"
    )
    for name in ("cancelled.ogg", "cancelled.mp3"):
        r = rows[name]
        assert r["text"] == "Cancelled." and json.loads(r["meta"])["transcript_source"] == "sidecar_json"
        assert 0.8 < r["media"]["duration_s"] < 1.2 and r["media"]["sample_rate"] == 8000
    assert rows["cancelled.ogg"]["media"]["mime"] == "audio/ogg"
    assert rows["cancelled.mp3"]["media"]["mime"] == "audio/mpeg"


def test_undecodable_audio_is_quarantined():
    r = read_rows(AUDIO, "audio")["not_audio.mp3"]
    assert r["_drop"] == "quarantine:undecodable_audio" and r["text"] is None


def test_audio_by_uri_above_inline_limit():
    rows = read_rows(AUDIO, "audio", inline_max_bytes=10_000)
    assert rows["beep.wav"]["media"]["bytes"] is not None  # 6852 bytes
    assert rows["activated.wav"]["media"]["bytes"] is None and rows["activated.wav"]["media"]["uri"].endswith(
        "activated.wav"
    )
