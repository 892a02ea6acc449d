"""Kill a Ray worker process in the middle of a run: the job still commits exactly the expected rows.

Why this holds: Ray Data retries a map task whose worker died (system failures, max_retries=-1), the reader is
deterministic, and the writer names each part by the sha256 of its bytes and counts rows from data (never from side
effects), so a re-executed task rewrites the same part and nothing is counted twice (docs/ARCHITECTURE.md).

The run happens on a private Ray cluster started by this test (tests/test_cluster.py: LocalRay); the worker killed
is a descendant of that cluster's own `ray start` process, never anyone else's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from tests.plugins import pause
from tests.test_cluster import LocalRay
from tests.test_s3 import copy_sentences, expected_ids

ROOT = Path(__file__).resolve().parent.parent


def busy_workers(cluster: LocalRay) -> list[psutil.Process]:
    """Worker processes of this cluster that are executing one of the job's map tasks right now."""
    found = []
    for node in cluster.nodes:
        try:
            procs = psutil.Process(node.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                title = " ".join(p.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            # the read + stage operator (named after its stages) or the writer
            if title.startswith("ray::") and ("read+normalize" in title or "MapBatches(write)" in title):
                found.append(p)
    return found


def test_worker_killed_mid_run_loses_and_duplicates_nothing(tmp_path):
    from tests.conftest import read_output

    inp = copy_sentences(tmp_path / "in")
    out = tmp_path / "out"
    cfg = {
        "name": "fault-test",
        "input": {"uri": str(inp), "format": "jsonl", "id_field": "id", "batch_rows": 50},
        "output": {"uri": str(out), "target_shard_mb": 0.01},
        "ray": {"batch_rows": 100},
        "stages": [{"stage": "normalize"}, pause(0.4)],  # slow batches: a worker is busy long enough to kill
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    cluster = LocalRay(num_cpus=2, auth="disabled")
    try:
        cluster.start_head()
        env = {**cluster.env, "RAY_ADDRESS": cluster.address}
        job = subprocess.Popen(
            [sys.executable, "-m", "jobs.run", "--config", str(tmp_path / "job.yaml")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed = None
        deadline = time.time() + 240
        while time.time() < deadline and job.poll() is None and killed is None:
            victims = busy_workers(cluster)
            if victims:
                killed = (victims[0].pid, " ".join(victims[0].cmdline())[:120])
                os.kill(victims[0].pid, signal.SIGKILL)
                break
            time.sleep(0.1)
        stdout, stderr = job.communicate(timeout=300)
    finally:
        cluster.stop()
    assert killed is not None, "no busy worker was seen: the run ended before a worker could be killed"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert job.returncode == 0, (killed, stdout[-3000:], stderr[-3000:])
    table, manifest = read_output(out)
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), "duplicated rows"
    assert set(ids) == expected_ids(), "lost rows"
    report = manifest["counts"]
    assert report["rows_read"] == report["rows_out"] == len(expected_ids())
    # no orphan part from the killed attempt is published: exactly the manifest's files are under data/
    on_disk = sorted(p.name for p in (out / "data").iterdir())
    assert on_disk == sorted(Path(f["path"]).name for f in manifest["files"] if f["kind"] == "data")
