"""Review samples and labels: `refinery sample`, `refinery labels import|eval`.

Real documents: the quality fixture (web articles, lingua-py sentences) and presidio's synthetic PII sentences
(short, so gopher_quality flags them). An annotated run keeps every document with its signals and flags.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from jobs.commands.audit_pii import scan_text

FIX = Path(__file__).parent / "fixtures"


def cli(*argv: str) -> int:
    from jobs.cli import main

    return main(list(argv))


@pytest.fixture(scope="module")
def annotated(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    docs = [json.loads(x) for x in gzip.open(FIX / "quality" / "docs.jsonl.gz", "rt", encoding="utf-8")]
    pii = [json.loads(x) for x in gzip.open(FIX / "pii_text" / "presidio_synth_v2_first500.jsonl.gz", "rt")]
    pii = [
        d
        for d in pii
        if any(s["type"] in ("EMAIL_ADDRESS", "CREDIT_CARD", "PHONE_NUMBER") for s in d["spans"])
    ]
    inp = tmp / "in"
    inp.mkdir()
    rows = [{"id": d["id"], "text": d["text"]} for d in docs] + [
        {"id": f"pii-{i}", "text": d["text"]} for i, d in enumerate(pii)
    ]
    (inp / "docs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp / "out"
    cfg = tmp / "cfg.yaml"
    stages = [
        {"stage": "gopher_quality", "params": {"action": "annotate"}},
        {"stage": "length_filter", "params": {"min_words": 12}},
    ]
    cfg.write_text(
        yaml.safe_dump(
            {"input": {"uri": str(inp), "id_field": "id"}, "output": {"uri": str(out)}, "stages": stages}
        )
    )
    assert cli("run", str(cfg)) == 0
    return {"tmp": tmp, "out": out, "pii": pii, "rows": {r["id"]: r for r in rows}}


def _sample(annotated, *args: str, capsys) -> list[dict]:
    capsys.readouterr()
    assert cli("sample", str(annotated["out"]), *args) == 0
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def test_sample_is_deterministic_scrubbed_truncated_and_shows_signals(annotated, capsys, caplog):
    a = _sample(annotated, "--stage", "gopher_quality", "-n", "40", "--max-chars", "300", capsys=capsys)
    b = _sample(annotated, "--stage", "gopher_quality", "-n", "40", "--max-chars", "300", capsys=capsys)
    assert a == b and len(a) == 40
    assert all(s["decision"] == "drop" and s["reason"] and len(s["text"]) <= 300 for s in a)
    assert any(s["truncated"] for s in a)
    assert all(set(s["signals"]) >= {"gopher_words", "gopher_stop_words"} for s in a)
    with_pii = [s for s in a if s["id"].startswith("pii-")]
    assert with_pii, "the sample must include PII sentences for the scrub check to mean anything"
    for s in a:
        assert not any(scan_text(s["text"]).values()), s["id"]
    same = [s for s in a if s["text"] == annotated["rows"][s["id"]]["text"][:300]]
    plain = [s for s in a if not s["id"].startswith("pii-")]
    assert len(same) >= len(plain) // 2, (
        "samples must be the documents themselves, only scrubbed and truncated"
    )
    assert all(s not in same for s in with_pii), "PII sentences must come back scrubbed"
    # no sample text reaches the logs
    assert not any(s["text"][:30] in r.getMessage() for s in a for r in caplog.records if s["text"])
    only = _sample(annotated, "--stage", "gopher_quality", "--reason", "stop_words", "-n", "5", capsys=capsys)
    assert {s["reason"] for s in only} == {"stop_words"}
    kept = _sample(annotated, "--stage", "gopher_quality", "--kept", "-n", "5", capsys=capsys)
    assert kept and all(s["decision"] == "keep" and s["reason"] is None for s in kept)


def test_sample_refuses_a_stage_whose_drops_are_gone(annotated, capsys):
    capsys.readouterr()
    assert cli("sample", str(annotated["out"]), "--stage", "length_filter", "-n", "5") == 2
    assert "action: annotate" in capsys.readouterr().err


def test_labelstudio_export_import_and_eval(annotated, tmp_path, capsys):
    out = annotated["out"]
    export = tmp_path / "tasks.json"

    def export_samples(*args: str) -> int:
        return cli("sample", str(out), "--stage", "gopher_quality", "--format", "labelstudio", *args)

    assert export_samples("-n", "20", "--out", str(export)) == 0
    assert export_samples("--kept", "-n", "10", "--out", str(tmp_path / "k.json")) == 0
    tasks = json.loads(export.read_text()) + json.loads((tmp_path / "k.json").read_text())
    assert all("signal_gopher_words" in t["data"] and t["data"]["text"] for t in tasks)
    # a reviewer agrees with the filter on every sample but one flagged document, which they would keep
    for k, t in enumerate(tasks):
        label = t["data"]["decision"] if k != 0 else "keep"
        t["annotations"] = [{"result": [{"value": {"choices": [label]}}]}]
    labelled = tmp_path / "labelled.json"
    labelled.write_text(json.dumps(tasks))
    assert cli("labels", "import", str(labelled), "--out", str(tmp_path / "ds")) == 0
    ds = [json.loads(x) for x in (tmp_path / "ds" / "labels.jsonl").read_text().splitlines()]
    assert len(ds) == 30 and {d["label"] for d in ds} == {"keep", "drop"} and all(d["signals"] for d in ds)
    capsys.readouterr()
    assert cli("labels", "eval", str(labelled), str(out), "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["gopher_quality"]["precision"] == round(19 / 20, 4)
    assert res["gopher_quality"]["recall"] == 1.0
    assert res["length_filter"]["predicted_drop"] == 0


def test_report_html_shows_scrubbed_samples_per_stage_and_reason(annotated):
    import html
    import re

    page = (annotated["out"] / "report.html").read_text(encoding="utf-8")
    section = page[page.index('id="samples"') :]
    reasons = re.findall(r"<h3>gopher_quality: (\w+)</h3>", section)
    report = json.loads((annotated["out"] / "report.json").read_text())
    flagged = next(s for s in report["stages"] if s["name"] == "gopher_quality")["flagged"]
    assert sorted(reasons) == sorted(flagged), "one sample table per reason the stage flagged"
    assert "gopher_stop_words=" in section and "gopher_words=" in section
    assert "length_filter dropped" in section and "action: annotate" in section
    cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", section, re.S)]
    assert not any(any(scan_text(c).values()) for c in cells), "PII in a report sample"
    assert any(
        c.startswith(annotated["rows"][i]["text"][:40])
        for i in annotated["rows"]
        for c in cells
        if len(annotated["rows"][i]["text"]) > 40
    )
