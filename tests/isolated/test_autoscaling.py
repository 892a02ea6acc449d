"""cluster.yaml's node types on Ray's fake multi-node autoscaler: a stage that declares a GPU scales the GPU
worker type up from 0, and idle workers are given back.

`ray.cluster_utils.AutoscalingCluster` drives Ray's real autoscaler with the `fake_multinode` provider (each
"node" is a local raylet). Stock, it runs `ray stop --force` on start and shutdown (ending every Ray process on the
machine) and reads an example.yaml that the wheel lacks. The subclass below supplies the base config itself, puts
the head on free ports in a private temp dir, and stops only the processes it started. It still runs alone, in its
own pytest process (`-m isolated`, see conftest.py), because it starts many raylets on a small machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.job_process import reap

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "s3"

pytestmark = pytest.mark.isolated


def _cluster_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


class ScopedAutoscalingCluster:
    """Ray's AutoscalingCluster with the node types of cluster.yaml, scoped to its own ports and processes."""

    def __init__(self, idle_timeout_minutes: float = 0.1, max_per_type: int = 1):
        from ray.cluster_utils import AutoscalingCluster

        from tests.s3_server import free_ports

        cfg = _cluster_yaml()
        self.port, self.dash_port, self.client_port = free_ports(3)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rfa-"))
        head = cfg["available_node_types"][cfg["head_node_type"]]
        workers = {
            name: {
                "resources": t["resources"],
                "node_config": {},
                "min_workers": t.get("min_workers", 0),
                "max_workers": min(t["max_workers"], max_per_type),
            }
            for name, t in cfg["available_node_types"].items()
            if name != cfg["head_node_type"]
        }
        self.worker_types = workers
        base = {
            "cluster_name": "fake_multinode",
            "max_workers": 8,
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": idle_timeout_minutes,
            "provider": {
                "type": "fake_multinode",
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "gcs_address": f"127.0.0.1:{self.port}",
            },
            "auth": {"ssh_user": "ubuntu"},
            "docker": {},
            "head_node_type": "ray.head.default",
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }

        class _Cluster(AutoscalingCluster):
            def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **kw):
                c = json.loads(json.dumps(base))
                c["available_node_types"] = dict(worker_node_types)
                c["available_node_types"]["ray.head.default"] = {
                    "resources": head_resources,
                    "node_config": {},
                    "max_workers": 0,
                }
                c.update(kw)
                return c

        self.inner = _Cluster(head_resources=dict(head["resources"]), worker_node_types=workers)
        self.head_cpus = head["resources"].get("CPU", 0)
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        cfg_file = self.temp_dir / "autoscaling.json"
        cfg_file.write_text(json.dumps(self.inner._config))
        env = {
            **os.environ,
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_FAKE_CLUSTER": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
        }
        env.pop("RAY_ADDRESS", None)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        log = open(self.temp_dir / "head.log", "ab")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "ray"),
                "start",
                "--head",
                "--block",
                "--disable-usage-stats",
                f"--autoscaling-config={cfg_file}",
                f"--port={self.port}",
                "--node-ip-address=127.0.0.1",
                f"--num-cpus={self.head_cpus}",
                f"--dashboard-port={self.dash_port}",
                "--dashboard-host=127.0.0.1",
                f"--ray-client-server-port={self.client_port}",
                f"--temp-dir={self.temp_dir}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        log.close()

    def stop(self) -> None:
        import psutil

        if self.proc is None:
            return
        try:
            procs = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        reap(procs, timeout=20)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _alive_workers() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]


def test_gpu_stage_scales_gpu_workers_from_zero_and_back(tmp_path, monkeypatch):
    import ray

    from jobs.pipeline import run_pipeline
    from refinery.config import parse_config
    from refinery.stage import Resources
    from stages.normalize import Normalize

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = ScopedAutoscalingCluster(idle_timeout_minutes=0.1)
    assert all(t["min_workers"] == 0 for t in cluster.worker_types.values())
    cluster.start()
    seen: list[set[str]] = []
    stop = threading.Event()
    try:
        deadline = time.time() + 120
        while True:
            try:
                ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(2)
        assert _alive_workers() == []  # the head has CPU 0 and no worker exists yet

        def watch() -> None:
            while not stop.is_set():
                try:
                    seen.append({("gpu" if n["Resources"].get("GPU") else "cpu") for n in _alive_workers()})
                except Exception:
                    pass
                time.sleep(0.5)

        threading.Thread(target=watch, daemon=True).start()
        # A per-batch stage that declares a GPU: the pipeline asks Ray for num_gpus=1 for its actor pool.
        monkeypatch.setattr(Normalize, "resources", Resources(num_cpus=1, num_gpus=1))
        cfg = {
            "input": {"uri": str(FIX / "sentences_en.jsonl.gz"), "format": "jsonl", "id_field": "id"},
            "output": {"uri": str(tmp_path / "out")},
            "ray": {"address": cluster.address},
            "stages": [{"stage": "normalize"}],
        }
        result = run_pipeline(parse_config(yaml.safe_dump(cfg)))
        assert result.status == "committed" and result.report["rows_out"] == 200
        assert any("gpu" in s for s in seen), f"no GPU worker was launched: {seen[-5:]}"
        # idle workers go back (idle_timeout_minutes=0.1 here; cluster.yaml uses the same mechanism)
        deadline = time.time() + 180
        while time.time() < deadline and _alive_workers():
            time.sleep(2)
        assert _alive_workers() == [], "idle workers were not scaled down"
    finally:
        stop.set()
        ray.shutdown()
        cluster.stop()
