"""A refinery job in its own process group, and killing all of it as a crashed machine would.

Why: a kill test must take down the driver and the local Ray it started (GCS, raylet, workers) at once, so no
orphaned worker keeps writing after the "crash". Shared by the crash tests and scripts/bench/resume.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]


def start_job(
    cfg_path: Path | str,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
) -> subprocess.Popen:
    """`python -m jobs.run --config cfg_path` in a new session; `env` adds to (or, for RAY_ADDRESS, sets) ours."""
    e = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    e.pop("RAY_ADDRESS", None)  # its own local Ray unless the caller names a cluster
    e.update(env or {})
    return subprocess.Popen(
        [python, "-m", "jobs.run", "--config", str(cfg_path)],
        cwd=ROOT,
        env=e,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not subprocess.DEVNULL else subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL the job's process group and every descendant (Ray's daemons may have left the group)."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    reap(tree, timeout=0)


def reap(procs: list[Any], timeout: float = 15) -> None:
    """Give `procs` (psutil processes, already signalled) `timeout` seconds to exit, then SIGKILL the rest."""
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=60)
