"""Shared fixtures: one real local Ray per test session, and helpers to run a config end to end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

FIXTURES = Path(__file__).parent / "fixtures"

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray cluster shared by the whole session (4 logical CPUs so actor pools never starve reads)."""
    import ray

    if not ray.is_initialized():
        kwargs = dict(
            num_cpus=4,
            object_store_memory=768 * 1024 * 1024,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
        )
        try:
            ray.init(**kwargs)
        except Exception as e:  # a raylet gets a fixed 30 s to register; an overloaded box can miss it once
            if "timed out during startup" not in str(e):
                raise
            ray.shutdown()
            ray.init(**kwargs)
    yield ray


@pytest.fixture
def run_config(ray_session, tmp_path):
    """Run a pipeline from a config dict (validated exactly like a YAML file) and return the RunResult."""
    from jobs.pipeline import run_pipeline
    from refinery.config import parse_config

    def _run(cfg: dict[str, Any], overrides: list[str] | None = None):
        text = yaml.safe_dump(cfg)
        (tmp_path / "config.yaml").write_text(text)
        return run_pipeline(
            parse_config(text, str(tmp_path / "config.yaml"), overrides), str(tmp_path / "config.yaml")
        )

    return _run


def read_output(output_uri: str | Path):
    """Read the committed data files listed in the manifest (what a downstream reader should trust)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(output_uri)
    assert (root / "_SUCCESS").exists(), "output is not committed"
    manifest = json.loads((root / "manifest.json").read_text())
    tables = [pq.read_table(root / f["path"]) for f in manifest["files"] if f["kind"] == "data"]
    return pa.concat_tables(tables) if tables else None, manifest


def read_droplog(output_uri: str | Path) -> dict[str, tuple[str, str]]:
    """id → (stage, reason) of every drop-log row of a committed output."""
    import json

    import pyarrow.parquet as pq

    root = Path(output_uri)
    manifest = json.loads((root / "manifest.json").read_text())
    out: dict[str, tuple[str, str]] = {}
    for f in manifest["files"]:
        if f["kind"] == "droplog":
            t = pq.read_table(root / f["path"], columns=["id", "stage", "reason"])
            out.update((r["id"], (r["stage"], r["reason"])) for r in t.to_pylist())
    return out


# Session fixture `s3_server`: a real SeaweedFS S3 on 127.0.0.1 with read-only and read-write identities.
from tests.s3_server import s3_server  # noqa: E402,F401
