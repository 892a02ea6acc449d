"""Resumable runs: a run killed mid-way picks up where it stopped, exactly once, and commits the same bytes.

Every case first runs the job uninterrupted into the output, keeps what it committed (part files with their
sha256, report counts), removes the output, and then kills, crashes or throttles the same job into the same
output: the committed output must be identical, file for file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from refinery.commit import verify
from tests.job_process import kill_job, start_job
from tests.plugins import count_rows, counted_rows, pause

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures" / "foundation"


def job(inp: str, out: str, seconds: float = 0.6, **extra) -> dict:
    """The foundation corpus (300 real documents, 4 formats) in byte ranges, through filters and both dedups."""
    cfg = {
        "input": {"uri": inp, "exclude": ["README.md", "LICENSE*"], "split_bytes": 20_000, "batch_rows": 40},
        "output": {"uri": out, "target_shard_mb": 0.05},
        "ray": {"batch_rows": 40},
        "stages": [
            {"stage": "normalize"},
            pause(seconds),  # slow enough that a kill lands mid-run
            {"stage": "length_filter", "params": {"min_chars": 200}},
            {"stage": "exact_dedup"},
            {"stage": "fuzzy_dedup"},
        ],
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    return cfg


COUNTS = ("rows_read", "rows_out", "dropped_total", "quarantined", "duplicate_ids")


def committed(out: Path) -> tuple[list[tuple[str, str]], dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    report = json.loads((out / "report.json").read_text())
    files = sorted((f["path"], f["sha256"]) for f in manifest["files"])
    counts = {k: report[k] for k in COUNTS} | {
        "stages": [(s["name"], s["dropped"]) for s in report["stages"]]
    }
    return files, counts


def baseline(run_config, cfg: dict, out: Path) -> tuple[list, dict]:
    res = run_config(cfg)
    assert res.status == "committed" and res.report["resume"]["units_reused"] == 0
    first = committed(out)
    shutil.rmtree(out)
    return first


def kill_mid_run(cfg: dict, tmp_path: Path, out: Path, done_units: int = 2, env: dict | None = None) -> None:
    """Start the job in its own process group and SIGKILL all of it once `done_units` units have finished."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = start_job(path, env)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if len(list(out.glob("_work/*/done/s0/*.json"))) >= done_units:
                break
            assert proc.poll() is None, "the job ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("no unit finished")
    finally:
        kill_job(proc)
    assert not (out / "_SUCCESS").exists()


def test_killed_run_resumes_and_commits_the_same_bytes(run_config, tmp_path):
    out = tmp_path / "out"
    cfg = job(str(FIX), str(out))
    want = baseline(run_config, cfg, out)
    kill_mid_run(cfg, tmp_path, out)
    staged = list(out.glob("_work/*/done/s0/*.json"))
    res = run_config(cfg)
    assert res.report["resume"]["units_reused"] >= len(staged) >= 2
    assert res.report["resume"]["units_reused"] < res.report["resume"]["units"]  # the rest was done now
    assert committed(out) == want
    assert verify(str(out)) == []
    assert not (out / "_work").exists() or not any((out / "_work").iterdir())


def saved_batches(out: Path) -> dict[str, list[dict]]:
    """The segment records of units that have no completion record yet, by unit, in order."""
    units = {}
    for folder in sorted(out.glob("_work/*/progress/s0/*")):  # _work/<run>/progress/s0/<unit>
        if not (folder.parents[2] / "done" / "s0" / f"{folder.name}.json").exists():
            units[folder.name] = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return units


def test_a_unit_killed_mid_way_goes_on_from_its_last_saved_batch(run_config, tmp_path):
    """Units of many stage batches that save them as they go (checkpoint_seconds 0: after every batch). After a
    SIGKILL, the re-run replays the saved batches of unfinished units instead of computing them again, skips a
    damaged segment and all after it, and commits the same bytes as an uninterrupted run. The work is counted by
    a stage that records every row it is given, against the same killed state resumed with its segments removed."""
    out, counts = tmp_path / "out", tmp_path / "counts"
    cfg = job(str(FIX), str(out), seconds=0.15, ray={"batch_rows": 4, "checkpoint_seconds": 0})
    cfg["stages"].insert(1, count_rows(str(counts)))
    cfg["input"]["split_bytes"] = 60_000  # units of a few dozen documents: many stage batches each
    want = baseline(run_config, cfg, out)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = start_job(path)
    try:
        deadline = time.time() + 180
        while not any(len(recs) >= 2 for recs in saved_batches(out).values()):
            assert proc.poll() is None and time.time() < deadline, "no unit saved two batches"
            time.sleep(0.05)
    finally:
        kill_job(proc)
    units = saved_batches(out)
    damaged, recs = max(units.items(), key=lambda kv: len(kv[1]))
    (work,) = out.glob("_work/*/progress")
    seg = work / "s0" / damaged / recs[-1]["file"]
    seg.write_bytes(seg.read_bytes()[:-1])  # a segment whose bytes are not what its record says
    expected = sum(
        r["end"] - r["start"] for u, rs in units.items() for r in (rs[:-1] if u == damaged else rs)
    )
    assert expected > 0
    killed = tmp_path / "killed"
    shutil.copytree(out, killed)

    # the same state resumed without its segments: every unfinished unit is computed from its start
    shutil.rmtree(work)
    shutil.rmtree(counts, ignore_errors=True)
    whole = run_config(cfg)
    assert whole.report["resume"]["batches_reused"] == 0 and committed(out) == want
    rows_whole = counted_rows(str(counts))

    shutil.rmtree(out)
    shutil.copytree(killed, out)
    shutil.rmtree(counts, ignore_errors=True)
    res = run_config(cfg)
    assert res.report["resume"]["batches_reused"] == expected
    assert 0 < counted_rows(str(counts)) < rows_whole  # the replayed batches were not computed again
    assert rows_whole - counted_rows(str(counts)) <= 4 * expected
    assert committed(out) == want
    assert verify(str(out)) == []
    assert not list(out.glob("_work/*/progress/*/*"))  # segments go with the run's work folder


def test_a_part_has_the_same_bytes_however_its_rows_are_chunked(tmp_path):
    """Rows replayed from a saved segment come back chunked otherwise than when they were computed: the part that
    holds them must be the same file all the same."""
    from refinery.location import Location
    from refinery.writer import PartWriter

    rows = [json.loads(line) for line in (FIX / "docs_a.jsonl").read_text().splitlines() if line.strip()]
    # Distinct texts past the dictionary page limit (1 MiB): where the writer gives up the dictionary depends on
    # how the rows are chunked
    copies = range(40)
    table = pa.table(
        {
            "id": [f"{k}-{r.get('id')}" for k in copies for r in rows],
            "text": [f"copy {k}: {r['text']}" for k in copies for r in rows],
        }
    )
    assert table.nbytes > 2 << 20
    n = table.num_rows
    chunked = pa.concat_tables([table.slice(0, n // 3), table.slice(n // 3, 7), table.slice(n // 3 + 7)])
    writer = PartWriter(Location(str(tmp_path)), table.schema)
    assert writer.write_part("data", table) == writer.write_part("data", chunked)


def test_a_truncated_part_or_another_units_record_is_redone_and_a_changed_config_reuses_nothing(
    run_config, tmp_path
):
    out = tmp_path / "out"
    cfg = job(str(FIX), str(out), output={"if_exists": "overwrite"})
    want = baseline(run_config, cfg, out)
    kill_mid_run(cfg, tmp_path, out, done_units=3)
    records = sorted(out.glob("_work/*/done/s0/*.json"))
    rec = json.loads(records[0].read_text())
    part = records[0].parent.parent.parent / "s0" / rec["files"][0]["path"]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # a writer killed half-way through
    # a record of a unit that held other work under the same name (another version's packing): never trusted
    other = json.loads(records[1].read_text())
    records[1].write_text(json.dumps({**other, "unit_sha256": "0" * 64}))
    # another config into the same output: a new run id, nothing of the killed run is reused
    changed = json.loads(json.dumps(cfg))
    changed["stages"][2]["params"]["min_chars"] = 201
    res = run_config(changed)
    assert res.report["resume"]["units_reused"] == 0 and res.report["resume"]["steps_reused"] == []
    # the first config again: every unit the killed run recorded is reused, but the damaged and the foreign one
    res = run_config(cfg)
    assert res.report["resume"]["units_reused"] == len(records) - 2
    assert committed(out) == want
    assert verify(str(out)) == []


def test_a_crash_inside_fuzzy_dedup_resumes_after_its_last_finished_step(run_config, tmp_path, monkeypatch):
    from refinery.faults import InjectedFailure

    out = tmp_path / "out"
    cfg = job(str(FIX), str(out), seconds=0)
    want = baseline(run_config, cfg, out)
    monkeypatch.setenv("REFINERY_FAIL_AT", "step:fuzzy_dedup:verify_b")
    with pytest.raises(InjectedFailure):
        run_config(cfg)
    monkeypatch.delenv("REFINERY_FAIL_AT")
    res = run_config(cfg)
    reused = res.report["resume"]["steps_reused"]
    assert {f"fuzzy_dedup:{s}" for s in ("partitions", "map", "buckets", "verify_a", "verify_b")} <= set(
        reused
    )
    assert "fuzzy_dedup:components" not in reused  # the step after the crash ran again
    assert {f"exact_dedup:{s}" for s in ("partitions", "map", "reduce")} <= set(reused)
    # the units before fuzzy_dedup (reading, and exact_dedup's output) were all reused; those after it ran now
    assert 0 < res.report["resume"]["units_reused"] < res.report["resume"]["units"]
    assert committed(out) == want


def test_no_resume_starts_clean_and_gc_removes_only_abandoned_work(run_config, tmp_path):
    from jobs.cli import main

    out = tmp_path / "out"
    cfg = job(str(FIX), str(out))
    kill_mid_run(cfg, tmp_path, out)
    abandoned = next((out / "_work").iterdir())
    # the killed driver's heartbeat is seconds old: age it past gc's liveness window, as time would
    beat = abandoned / "_RUNNING"
    beat.write_text(json.dumps({**json.loads(beat.read_text()), "at": time.time() - 3600}))
    alive = out / "_work" / "0123456789abcdef"
    alive.mkdir()
    (alive / "_RUNNING").write_text(json.dumps({"at": time.time()}))
    assert main(["gc", str(out)]) == 0 and abandoned.exists()  # listing only
    assert main(["gc", str(out), "--yes"]) == 0
    assert not abandoned.exists() and alive.exists()
    shutil.rmtree(alive)
    kill_mid_run(cfg, tmp_path, out)
    cli = tmp_path / "again.yaml"
    cli.write_text(yaml.safe_dump(cfg))
    res_code = main(["run", str(cli), "--no-resume"])
    assert res_code == 0
    assert json.loads((out / "report.json").read_text())["resume"]["units_reused"] == 0


def test_s3_run_killed_and_resumed_commits_the_same_bytes(s3_server, run_config, tmp_path, ray_session):
    """Killed while a unit is half done (it saves every stage batch of 4 rows): the re-run reuses the finished
    units and the unfinished one's saved batches from the object store, and commits the same bytes."""
    prefix = f"resume-{time.time_ns()}"
    inp = s3_server.upload(FIX, prefix, pattern="docs_*")
    out = f"s3://{s3_server.out_bucket}/{prefix}/"
    cfg = job(inp, out, seconds=0.2, ray={"batch_rows": 4, "checkpoint_seconds": 0})
    cfg["input"]["split_bytes"] = 60_000  # units of a few dozen documents: many stage batches each
    cfg["input"]["storage_options"] = s3_server.options("reader")
    cfg["output"]["storage_options"] = s3_server.options("writer")
    fs = s3_server.fs("admin")
    root = f"{s3_server.out_bucket}/{prefix}"

    def snapshot() -> tuple[list, dict]:
        manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
        report = json.loads(fs.cat_file(f"{root}/report.json"))
        files = sorted((f["path"], f["sha256"]) for f in manifest["files"])
        return files, {k: report[k] for k in COUNTS}

    assert run_config(cfg).report["resume"]["units_reused"] == 0
    want = snapshot()
    fs.rm(root, recursive=True)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = start_job(path, {"RAY_ADDRESS": ray_session.get_runtime_context().gcs_address})
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            found = fs.find(f"{root}/_work")
        except FileNotFoundError:
            found = []
        done = {p.rsplit("/", 1)[-1].removesuffix(".json") for p in found if "/done/s0/" in p}
        saved = {p.split("/progress/s0/")[1].split("/")[0] for p in found if "/progress/s0/" in p}
        if done and saved - done:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not fs.exists(f"{root}/_SUCCESS")
    time.sleep(2)  # the killed driver's tasks are cancelled by Ray
    res = run_config(cfg)
    assert res.report["resume"]["units_reused"] >= 1
    assert res.report["resume"]["batches_reused"] >= 1
    assert snapshot() == want
    assert not [p for p in fs.find(root) if "/progress/" in p]
    assert verify(out, s3_server.options("writer")) == []


def test_a_throttling_store_end_to_end(s3_server, run_config, tmp_path):
    """10% of requests answered 503 SlowDown and some GET bodies cut off: the job completes with the same bytes."""
    from tests.throttle_proxy import ThrottleProxy

    prefix = f"throttle-{time.time_ns()}"
    inp = s3_server.upload(FIX, prefix, pattern="docs_*")
    out = f"s3://{s3_server.out_bucket}/{prefix}/"
    cfg = job(inp, out, seconds=0)
    cfg["input"]["storage_options"] = s3_server.options("reader")
    cfg["output"]["storage_options"] = s3_server.options("writer")
    fs = s3_server.fs("admin")
    root = f"{s3_server.out_bucket}/{prefix}"

    def snapshot() -> list:
        manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
        return sorted((f["path"], f["sha256"]) for f in manifest["files"])

    run_config(cfg)
    want = snapshot()
    fs.rm(root, recursive=True)
    with ThrottleProxy(int(s3_server.ports["s3"]), slowdown=0.1, resets=0.05, seed=7) as proxy:
        for side in ("input", "output"):
            cfg[side]["storage_options"] = {**cfg[side]["storage_options"], "endpoint_url": proxy.endpoint}
        res = run_config(cfg)
    assert proxy.stats["slowdown"] > 10 and proxy.stats["resets"] > 0
    retried = res.report["storage_retries"]
    # per S3 operation; the commit's own requests come after the report is written, so not all are in it
    assert sum(retried.values()) >= 10 and {"s3.GetObject", "s3.ListObjectsV2"} <= set(retried), retried
    assert snapshot() == want
    assert res.report["rows_out"] > 0
    assert verify(out, s3_server.options("writer")) == []


def test_small_files_are_packed_into_at_least_min_units_units():
    """What a kill can lose is the units in flight: 80 equal files are 80 units, not 40 of two files (which
    closing a unit only after it passed its byte target gave); 10,000 tiny files still make ~64, not 10,000."""
    from jobs.plan import PACK_MIN_UNITS, pack_read_tasks
    from stages.readers import ReadTask

    def files(n: int, size: int) -> list[ReadTask]:
        return [ReadTask(uri=f"f{i}.jsonl.gz", format="jsonl", size=size) for i in range(n)]

    assert [len(u) for u in pack_read_tasks(files(80, 1_000_000))] == [1] * 80
    assert [len(u) for u in pack_read_tasks(files(128, 1_000_000))] == [2] * 64
    tiny = pack_read_tasks(files(10_000, 40))
    assert PACK_MIN_UNITS <= len(tiny) <= PACK_MIN_UNITS + 1
    assert sorted(k for u in tiny for k, _ in u) == list(range(10_000))  # every file once, in order
