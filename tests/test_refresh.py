"""End to end: nightly refresh snapshots, cross-snapshot dedup, crash safety, lock, verify, run log, report.

Fixture: tests/fixtures/refresh/docs.jsonl.gz — 140 documents of 15 consecutive real sentences (lingua-py test
sentences, Apache-2.0). Day 1 = English and German documents in three files. Day 2 = day 1, plus two new files
(French, Spanish, Italian), one modified file (one document removed, one replaced by a new one, four appended) and
one file holding near duplicates of ten day-1 documents with 1% of their words edited. Snapshot 2 must hold exactly
the new and changed documents; the near duplicates and the unchanged rows of the modified file are dropped as
`dup_of_published`.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from refinery.fsio import join

FIX = Path(__file__).parent / "fixtures" / "refresh"


def _docs() -> dict[str, dict]:
    with gzip.open(FIX / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        return {d["id"]: d for d in map(json.loads, f)}


def _write(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")


def edit_words(text: str, rate: float, seed: int) -> str:
    """Replace `rate` of the words (at least one) by a marker word: a near duplicate at a known edit rate."""
    words = text.split()
    rng = random.Random(seed)
    k = max(1, round(len(words) * rate))
    for i in rng.sample(range(len(words)), k):
        words[i] = f"edited{i}"
    return " ".join(words)


def ids(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(start, start + n)]


@pytest.fixture(scope="module")
def days():
    """Day-1 and day-2 file contents (name → documents) and the expected outcome."""
    docs = _docs()
    a, b, c = ids("en", 20), ids("en", 10, 20) + ids("de", 10), ids("de", 15, 10)
    new_d = ids("fr", 25) + ids("es", 15)
    new_e = ids("it", 20)
    c2 = [i for i in c if i != "de-012"]  # one document removed …
    c2[c2.index("de-010")] = "nl-000"  # … one replaced in place by another …
    c2 += ids("nl", 4, 1)  # … and four appended
    near_src = ids("en", 5) + ids("de", 5)
    near = [
        {"id": f"near-{i}", "lang": docs[i]["lang"], "text": edit_words(docs[i]["text"], 0.01, n)}
        for n, i in enumerate(near_src)
    ]
    day1 = {name: [docs[i] for i in ii] for name, ii in {"a.jsonl": a, "b.jsonl": b, "c.jsonl": c}.items()}
    day2 = {
        **day1,
        "c.jsonl": [docs[i] for i in c2],
        "d.jsonl": [docs[i] for i in new_d],
        "e.jsonl": [docs[i] for i in new_e],
        "n.jsonl": near,
    }
    return {
        "day1": day1,
        "day2": day2,
        "day1_ids": set(a) | set(b) | set(c),
        "expected2": set(new_d) | set(new_e) | set(ids("nl", 5)),
        "near": {d["id"] for d in near},
        "unchanged_c": set(c2) - set(ids("nl", 5)),
    }


def write_day(inputs: Path, files: dict[str, list[dict]]) -> None:
    """The input prefix as it looks on that day (day 2 rewrites c.jsonl and adds files; a.jsonl, b.jsonl untouched)."""
    for name, docs in files.items():
        path = inputs / name
        body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
        if not path.exists() or path.read_text(encoding="utf-8") != body:
            _write(path, docs)


def make_config(tmp: Path, inputs: Path, out: Path, light: bool = False) -> Path:
    """The nightly pipeline; `light` = normalize + length_filter only (for the many crash-point runs)."""
    stages = [{"stage": "normalize"}]
    if light:
        stages.append({"stage": "length_filter", "params": {"min_words": 20}})
        return _dump(tmp, inputs, out, stages)
    stages += [
        {"stage": "langid"},
        {"stage": "length_filter", "params": {"min_words": 20}},
        {"stage": "exact_dedup", "params": {"against_index": True}},
        {"stage": "fuzzy_dedup", "params": {"against_index": True}},
    ]
    return _dump(tmp, inputs, out, stages)


def _dump(tmp: Path, inputs: Path, out: Path, stages: list[dict]) -> Path:
    cfg = {
        "name": "nightly-test",
        "input": {"uri": str(inputs), "id_field": "id"},
        "output": {"uri": str(out)},
        "stages": stages,
        "licenses": {str(inputs): "Apache-2.0 (lingua-py test sentences)"},
        "monitoring": {"max_lang_drift": 0.2},
    }
    path = tmp / f"cfg-{out.name}-{len(stages)}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*argv: str) -> int:
    from jobs.cli import main

    return main(list(argv))


def snapshot_ids(snap: Path) -> list[str]:
    manifest = json.loads((snap / "manifest.json").read_text())
    out = []
    for f in manifest["files"]:
        if f["kind"] == "data":
            out += pq.read_table(snap / f["path"], columns=["id"])["id"].to_pylist()
    return out


def droplog(snap: Path) -> dict[str, str]:
    manifest = json.loads((snap / "manifest.json").read_text())
    out = {}
    for f in manifest["files"]:
        if f["kind"] == "droplog":
            t = pq.read_table(snap / f["path"])
            out.update(zip(t["id"].to_pylist(), t["reason"].to_pylist(), strict=True))
    return out


def final_state(out: Path) -> dict:
    """What a consumer (and the next refresh) can see: committed snapshots, their rows, the pointer, the state."""
    from refinery.refresh.snapshots import committed_snapshots, read_inputs_state, read_latest
    from refinery.state import MARKER

    snaps = committed_snapshots(str(out))
    run_snapshot = {
        json.loads((out / "snapshots" / s / "manifest.json").read_text())["run_id"]: s for s in snaps
    }
    return {
        "snapshot_dirs": sorted(p.name for p in (out / "snapshots").iterdir()),
        "snapshots": {s: sorted(snapshot_ids(out / "snapshots" / s)) for s in snaps},
        "latest": read_latest(str(out))["snapshot_id"],
        "inputs": {
            Path(k).name + "@" + Path(k).parent.name: (v["sha256"], v.get("snapshot_id"))
            for k, v in read_inputs_state(str(out)).items()
        },
        # committed index generations, named by the snapshot of their run (run ids depend on the output path)
        "generations": sorted(
            f"{m.parent.parent.name}/{run_snapshot.get(m.parent.name[len('gen-') :], m.parent.name)}"
            for m in (out / "_state").rglob(MARKER)
        ),
        "pending": (out / "_state" / "refresh" / "pending.json").exists(),
        "lock": (out / "_state" / "refresh" / "LOCK").exists(),
    }


def run_two_days(days, tmp: Path, light: bool) -> dict:
    """Day 1, then day 2, then day 2 again, into one output root; keeps a copy of the root after day 1."""
    inputs, out = tmp / "inputs", tmp / "out"
    write_day(inputs, days["day1"])
    cfg = make_config(tmp, inputs, out, light)
    rc1 = cli("refresh", str(cfg), "--date", "2026-01-01")
    day1_copy = tmp / "after_day1"
    shutil.copytree(out, day1_copy)
    write_day(inputs, days["day2"])
    rc2 = cli("refresh", str(cfg), "--date", "2026-01-02")
    state2 = final_state(out)
    rc3 = cli("refresh", str(cfg), "--date", "2026-01-03")
    return {
        "tmp": tmp,
        "inputs": inputs,
        "out": out,
        "cfg": cfg,
        "rc": (rc1, rc2, rc3),
        "state2": state2,
        "day1_copy": day1_copy,
    }


@pytest.fixture(scope="module")
def two_days(days, ray_session, tmp_path_factory):
    """The full nightly pipeline (langid, exact and fuzzy dedup against the published index)."""
    return run_two_days(days, tmp_path_factory.mktemp("refresh_full"), light=False)


@pytest.fixture(scope="module")
def two_days_light(days, ray_session, tmp_path_factory):
    return run_two_days(days, tmp_path_factory.mktemp("refresh_light"), light=True)


def test_day1_then_day2_publishes_exactly_new_and_changed_docs(days, two_days):
    out = two_days["out"]
    rc1, rc2, rc3 = two_days["rc"]
    assert rc1 == 0
    assert rc2 == 3, "day 2 shifts the language mix far beyond max_lang_drift: published, with an alert"
    s1, s2 = out / "snapshots" / "20260101", out / "snapshots" / "20260102"
    got1, got2 = snapshot_ids(s1), snapshot_ids(s2)
    assert sorted(got1) == sorted(days["day1_ids"])
    assert len(got2) == len(set(got2)), "a document published twice within a snapshot"
    assert set(got2) == days["expected2"]
    assert not set(got1) & set(got2), "a document published in two snapshots"
    dropped = droplog(s2)
    for i in days["near"] | days["unchanged_c"]:
        assert dropped.get(i) == "dup_of_published", (i, dropped.get(i))
    assert json.loads((out / "latest").read_text())["snapshot_id"] == "20260102"
    m2 = json.loads((s2 / "manifest.json").read_text())
    assert m2["refresh"]["previous_snapshot"] == "20260101"
    assert {Path(x["uri"]).name for x in m2["refresh"]["new_inputs"]} == {"d.jsonl", "e.jsonl", "n.jsonl"}
    assert [Path(x["uri"]).name for x in m2["refresh"]["changed_inputs"]] == ["c.jsonl"]
    assert all(x["sha256"] for x in m2["refresh"]["new_inputs"])
    assert {"code_version", "config_hash", "counts", "files", "inputs"} <= set(m2)
    # day 2 again: nothing new, nothing published, exit 0
    assert rc3 == 0
    assert final_state(out) == two_days["state2"]


def test_verify_passes_on_both_snapshots_and_fails_on_tampering(two_days, tmp_path, capsys):
    out = two_days["out"]
    assert cli("verify", str(out / "snapshots" / "20260101")) == 0
    assert cli("verify", str(out / "snapshots" / "20260102")) == 0
    assert cli("verify", str(out)) == 0
    bad = tmp_path / "bad"
    shutil.copytree(out / "snapshots" / "20260102", bad)
    part = sorted((bad / "data").glob("*.parquet"))[0]
    t = pq.read_table(part)
    pq.write_table(t.slice(1), part)  # one row lost
    capsys.readouterr()
    assert cli("verify", str(bad)) == 1
    assert "mismatch" in capsys.readouterr().out


def test_drift_report_datacard_and_runlog(two_days):
    out = two_days["out"]
    s2 = out / "snapshots" / "20260102"
    mon = json.loads((s2 / "monitoring.json").read_text())
    assert mon["previous_snapshot"] == "20260101"
    assert mon["drift"]["lang"] > 0.2
    assert any(a["metric"] == "lang_mix" for a in mon["alerts"])
    html = (s2 / "report.html").read_text()
    assert 'id="alerts"' in html and "lang_mix" in html and "<svg" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    card = (s2 / "DATACARD.md").read_text()
    assert "Apache-2.0" in card and "dup_of_published" in card and "| fr |" in card
    log = [json.loads(x) for x in (out / "_state" / "refresh" / "runlog.jsonl").read_text().splitlines()]
    ends = [r for r in log if r["event"] == "end"]
    assert [r["outcome"] for r in ends] == ["published", "alert", "nothing_new"]
    assert [r.get("snapshot_id") for r in ends] == ["20260101", "20260102", "20260102"]
    assert ends[1]["counts"]["rows_out"] == len(snapshot_ids(s2))
    assert sum(r["event"] == "start" for r in log) == 3


def test_nothing_new_run_writes_its_own_report(days, two_days, tmp_path):
    """Day 2 run again publishes nothing (exit 0) and still leaves a self-contained report saying so: the inputs it
    saw, the snapshot `latest` names, and its run-log outcome."""
    import re
    import subprocess

    out = two_days["out"]
    assert two_days["rc"][2] == 0
    ends = [
        r
        for r in map(json.loads, (out / "_state" / "refresh" / "runlog.jsonl").read_text().splitlines())
        if r["event"] == "end"
    ]
    assert [r["outcome"] for r in ends] == ["published", "alert", "nothing_new"]
    assert (
        "report" not in ends[0] and "report" not in ends[1]
    )  # published runs: the report is in the snapshot
    rel = ends[2]["report"]
    assert sorted(p.relative_to(out).as_posix() for p in (out / "reports").iterdir()) == [rel]
    page = (out / rel).read_text(encoding="utf-8")
    assert "nothing new was processed" in page and "Run-log outcome: <b>nothing_new</b>" in page
    latest = json.loads((out / "latest").read_text())
    assert latest["snapshot_id"] == "20260102" and latest["manifest_sha256"] in page
    table = re.search(r'id="latest">.*?</table>', page, re.S).group(0)
    assert "<td>20260102</td>" in table
    assert f"<th>documents</th><td>{len(snapshot_ids(out / 'snapshots' / '20260102'))}</td>" in table
    # every listed input, unchanged, with the snapshot that published its current content
    rows = dict(re.findall(r"<tr><td>([^<]*/inputs/[^<]+)</td>(.*?)</tr>", page))
    assert {Path(u).name for u in rows} == set(days["day2"])
    for uri, cells in rows.items():
        name = Path(uri).name
        first = "20260101" if days["day1"].get(name) == days["day2"][name] else "20260102"
        assert cells.endswith(f"<td>unchanged</td><td>{first}</td>"), (name, cells)
    # self-contained, and no document content
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not any(d["text"][:40] in page for docs in days["day2"].values() for d in docs)
    if shutil.which("chromium"):
        res = subprocess.run(
            [
                str(Path(__file__).parent.parent / "scripts" / "screenshot_report.sh"),
                str(out / rel),
                str(tmp_path / "noop.png"),
            ],
            capture_output=True,
            text=True,
            timeout=200,
        )
        assert res.returncode == 0, res.stderr
        assert "1 inline SVG" in res.stdout and (tmp_path / "noop.png").stat().st_size > 0


def crash_then_rerun(ref: dict, point: str, tmp: Path, monkeypatch) -> tuple[dict | None, int]:
    """From the state after day 1: day 2 crashing at `point`, then day 2 again without the fault."""
    out = tmp / "out"
    shutil.copytree(ref["day1_copy"], out)
    cfg = tmp / "cfg.yaml"
    cfg.write_text(ref["cfg"].read_text().replace(str(ref["out"]), str(out)))
    monkeypatch.setenv("REFINERY_FAIL_AT", point)
    assert cli("refresh", str(cfg), "--date", "2026-01-02") == 1
    crashed = final_state(out)
    monkeypatch.delenv("REFINERY_FAIL_AT")
    rc = cli("refresh", str(cfg), "--date", "2026-01-02")
    log = [json.loads(x) for x in (out / "_state" / "refresh" / "runlog.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in log if r["event"] == "end"][-2] == "failed"
    assert not crashed["lock"], "an injected failure must release the lock"
    return crashed, rc


@pytest.mark.parametrize(
    "point", ["after_data", "before_success", "after_manifest", "after_pointer", "after_state"]
)
def test_crash_at_each_step_then_rerun_reaches_the_same_state(point, two_days_light, tmp_path, monkeypatch):
    ref = two_days_light
    crashed, rc = crash_then_rerun(ref, point, tmp_path, monkeypatch)
    if point in ("after_data", "before_success", "after_manifest"):
        assert crashed["latest"] == "20260101", "the pointer moved before the snapshot was published"
        assert crashed["pending"]
    if point == "after_pointer":
        assert crashed["latest"] == "20260102" and crashed["inputs"] != ref["state2"]["inputs"]
    assert rc == (0 if point == "after_state" else ref["rc"][1])  # 3: the drift alert of day 2
    assert final_state(tmp_path / "out") == ref["state2"]
    assert cli("verify", str(tmp_path / "out")) == 0


def test_crash_after_pointer_with_dedup_index_rolls_forward(two_days, tmp_path, monkeypatch):
    """The dedup index generation of day 2 becomes visible only on recovery, after the pointer."""
    crashed, rc = crash_then_rerun(two_days, "after_pointer", tmp_path, monkeypatch)
    assert len(two_days["state2"]["generations"]) == 4  # exact + fuzzy, day 1 + day 2
    assert set(crashed["generations"]) < set(two_days["state2"]["generations"]), (
        "generation committed before the pointer"
    )
    assert len(crashed["generations"]) == 2
    assert final_state(tmp_path / "out") == two_days["state2"]
    assert rc == 3


def test_second_refresh_refuses_while_locked_and_expired_lock_is_taken_over(two_days, tmp_path, capsys):
    from refinery.refresh.lock import LeaseLock

    out = tmp_path / "out"
    shutil.copytree(two_days["out"], out)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(two_days["cfg"].read_text().replace(str(two_days["out"]), str(out)))
    lock_uri = join(str(out), "_state/refresh/LOCK")
    holder = LeaseLock(lock_uri, ttl_s=60, owner="other-refresh").acquire()
    try:
        assert cli("refresh", str(cfg)) == 75
        assert "held by other-refresh" in capsys.readouterr().err
    finally:
        holder.release()
    log = [json.loads(x) for x in (out / "_state" / "refresh" / "runlog.jsonl").read_text().splitlines()]
    assert log[-1]["outcome"] == "refused"
    stale = LeaseLock(lock_uri, ttl_s=-1, owner="crashed-refresh").acquire()  # already expired
    assert stale.held
    assert cli("refresh", str(cfg)) == 0  # takes the expired lock over; nothing new to publish
    assert not (out / "_state" / "refresh" / "LOCK").exists()


def test_refresh_with_default_dedup_params_drops_copies_of_published(days, ray_session, tmp_path):
    """A new user's refresh config: exact_dedup and fuzzy_dedup with their default params. Inside a refresh they
    deduplicate against the published index, so day 2 publishes only its new and edited documents (the near
    copies of day-1 documents and the unchanged rows of the rewritten file are `dup_of_published`)."""
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    stages = [
        {"stage": "normalize"},
        {"stage": "length_filter", "params": {"min_words": 20}},
        {"stage": "exact_dedup"},
        {"stage": "fuzzy_dedup"},
    ]
    cfg = _dump(tmp_path, inputs, out, stages)
    write_day(inputs, days["day1"])
    assert cli("refresh", str(cfg), "--date", "2026-01-01") == 0
    write_day(inputs, days["day2"])
    assert cli("refresh", str(cfg), "--date", "2026-01-02") in (0, 3)
    got2 = snapshot_ids(out / "snapshots" / "20260102")
    assert set(got2) == days["expected2"] and len(got2) == len(set(got2))
    dropped = droplog(out / "snapshots" / "20260102")
    for i in days["near"] | days["unchanged_c"]:
        assert dropped.get(i) == "dup_of_published", (i, dropped.get(i))
    # the user's config is unchanged; the snapshot's manifest shows what the refresh ran
    manifest = json.loads((out / "snapshots" / "20260102" / "manifest.json").read_text())
    assert [s["params"].get("against_index") for s in manifest["config"]["stages"][2:]] == [True, True]


def test_refresh_refuses_against_index_false_without_allow_republish(tmp_path, capsys):
    """Before anything starts: a config error naming the file, the key and its line; `validate --refresh` agrees,
    a plain run accepts it, and `allow_republish: true` makes it valid."""
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    inputs.mkdir()
    (inputs / "a.jsonl").write_text('{"id": "1", "text": "hello"}\n')
    cfg = _dump(tmp_path, inputs, out, [{"stage": "fuzzy_dedup", "params": {"against_index": False}}])
    line = next(n for n, t in enumerate(cfg.read_text().splitlines(), 1) if "against_index" in t)
    capsys.readouterr()
    assert cli("refresh", str(cfg)) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: stages[0].params.against_index (line {line}): stage 'fuzzy_dedup'" in err
    assert "allow_republish: true" in err
    assert not out.exists(), "a refused config must not touch the output"
    assert cli("validate", str(cfg), "--refresh") == 2
    assert cli("validate", str(cfg)) == 0
    ok = ["--set", "stages.0.params.allow_republish=true"]
    assert cli("validate", str(cfg), "--refresh", *ok) == 0


def test_refresh_that_allows_republishing_warns_and_logs_it(days, ray_session, tmp_path, caplog):
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    stages = [{"stage": "exact_dedup", "params": {"against_index": False, "allow_republish": True}}]
    cfg = _dump(tmp_path, inputs, out, stages)
    write_day(inputs, {"a.jsonl": days["day1"]["a.jsonl"]})
    with caplog.at_level("WARNING", logger="refinery.refresh"):
        assert cli("refresh", str(cfg), "--date", "2026-01-01") == 0
    assert any(
        "stages.0 (exact_dedup)" in r.getMessage() and "published again" in r.getMessage()
        for r in caplog.records
    )
    start = json.loads((out / "_state" / "refresh" / "runlog.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["republish"] == ["stages.0 (exact_dedup)"]
