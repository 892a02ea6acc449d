"""configs/multimodal.yaml end to end: one job, every modality, one committed Parquet dataset (issue 6)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import yaml

ROOT = Path(__file__).resolve().parent.parent
MIXED = ROOT / "tests" / "fixtures" / "web" / "multimodal"


def test_multimodal_config_commits_one_dataset(run_config, tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "multimodal.yaml").read_text())
    cfg["input"]["uri"] = str(MIXED)
    cfg["output"]["uri"] = str(tmp_path / "out")
    result = run_config(cfg)
    rep = result.report

    # Read the committed data back with plain pyarrow, as a consumer would.
    table = ds.dataset(str(tmp_path / "out" / "data"), format="parquet").to_table()
    files = [f for f in result.manifest["files"] if f["kind"] == "data"]
    assert sum(f["rows"] for f in files) == table.num_rows == rep["rows_out"]
    for col in ("id", "text", "modality", "media", "source", "meta", "run_id"):
        assert col in table.column_names
    assert not any(c.startswith("_") for c in table.column_names)
    rows = table.to_pylist()
    by_mod = Counter(r["modality"] for r in rows)
    # pages/escopete + WARC page + 2 re-encoded WARC pages + WET record; 2 crawl images + 3 captioned files
    # − 1 exact media duplicate (horse.png is in the crawl and in images/); 3 clips
    assert by_mod == {"text": 5, "image": 4, "audio": 3}
    dedup = next(s for s in rep["stages"] if s["name"] == "exact_dedup")
    assert dedup["dropped"] == {"media_dup": 1}
    horses = [
        r
        for r in rows
        if r["modality"] == "image" and r["media"]["width"] == 400 and r["media"]["height"] == 328
    ]
    assert len(horses) == 1 and horses[0]["dup"]["cluster_size"] == 2
    assert all(r["source"]["uri"] and r["id"] for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)

    for r in rows:
        m = r["media"]
        if r["modality"] == "text":
            assert r["text"] and m is None
            assert r["source"]["format"] in ("html", "warc")
        elif r["modality"] == "image":
            assert r["text"], "every image here has a caption (sidecar or crawl alt text)"
            assert m["mime"].startswith("image/") and m["width"] > 0 and m["height"] > 0
            assert len(m["sha256"]) == 64 and m["bytes"] and m["uri"]
            assert m["duration_s"] is None
        else:
            assert r["text"] and m["mime"].startswith("audio/") and m["duration_s"] > 0
            assert m["sample_rate"] == 8000 and m["channels"] == 1 and m["bytes"] and m["width"] is None

    captions = {r["text"] for r in rows if r["modality"] == "image"}
    assert captions & {
        "Silhouette of a horse",
        "A black horse silhouette on white.",
    }  # crawl alt text / sidecar
    assert "A grey chessboard" in captions  # crawl alt text (relative src)
    assert "A rocket on its launch pad." in captions  # sidecar .txt
    transcripts = {Path(r["source"]["uri"]).name: r["text"] for r in rows if r["modality"] == "audio"}
    assert transcripts == {
        "added.wav": "Added.",
        "beep.wav": "[this is a simple beep tone]",
        "calling.flac": "Calling.",
    }

    # every input record is accounted for: WARC request/warcinfo/404 skipped, the broken JPEG quarantined
    assert rep["skipped"] == {"http_404": 1, "request": 1, "warcinfo": 2}
    assert rep["quarantined"] == {"undecodable_image": 1}
    assert rep["rows_read"] == rep["rows_out"] + 1 + 1 + 4  # + media_dup + quarantined + skipped
    assert json.loads((tmp_path / "out" / "report.json").read_text())["rows_read"] == rep["rows_read"]
    # media bytes in the committed files match their sha256
    import hashlib

    for r in rows:
        if r["media"] and r["media"]["bytes"]:
            assert hashlib.sha256(r["media"]["bytes"]).hexdigest() == r["media"]["sha256"]
    assert pc.sum(pc.is_null(table["modality"])).as_py() == 0
