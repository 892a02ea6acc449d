"""scripts/bench/scale.py: the 1M/4M scale benchmark measures the configs/local.yaml pipeline on the documents it
says, and judges growth against the issue #19 targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from refinery.config import load_config
from scripts.bench import scale

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "fixtures" / "corpus_source"


def _corpus(out: Path, docs: int, shard_docs: int) -> Path:
    cmd = [sys.executable, "-m", "scripts.data.make_corpus", "--out", str(out), "--source", str(SOURCE)]
    cmd += ["--docs", str(docs), "--shard-docs", str(shard_docs), "--seed", "0", "--quiet"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out


def test_smaller_size_is_the_same_documents_as_a_corpus_of_that_size(tmp_path):
    full = _corpus(tmp_path / "full", 40, 10)
    alone = _corpus(tmp_path / "alone", 20, 10)
    prefix = scale.prefix_corpus(full, 20, 10, work=tmp_path / "work")
    got = sorted(p.name for p in prefix.glob("part-*.jsonl.gz"))
    want = json.loads((alone / "corpus.json").read_text())["files"]
    assert got == [f["path"] for f in want]
    for f in want:  # byte-identical to the parts a 20-document corpus has
        assert (prefix / f["path"]).read_bytes() == (alone / f["path"]).read_bytes()
    assert scale.corpus_bytes(full, len(got)) > 0


def test_config_runs_the_local_yaml_stage_list_on_the_corpus(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    path = scale.local_config(tmp_path / "cfg.yaml", corpus, tmp_path / "out", num_cpus=2)
    cfg = load_config(path)  # validates like `refinery validate`
    local = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    assert [s.stage for s in cfg.stages] == [s["stage"] for s in local["stages"]]
    assert [s.params for s in cfg.stages] == [s.get("params", {}) for s in local["stages"]]
    assert cfg.input.uri.startswith(str(corpus)) and cfg.output.uri == str(tmp_path / "out")
    assert cfg.ray.num_cpus == 2


def _res(docs, wall, rss, driver, cpu=100.0, scratch=10.0):
    return {
        "docs": docs,
        "rc": 0,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_sum_mb": rss,
        "peak_pss_mb": rss,
        "peak_driver_rss_mb": driver,
        "peak_scratch_mb": scratch,
    }


def test_verdict_against_the_targets():
    base = _res(1_000_000, 400.0, 3000.0, 250.0)
    ok = scale.verdict([base, _res(4_000_000, 1760.0, 4500.0, 900.0)])[0]
    assert ok["pass"] == {"driver_rss": True, "wall": True, "total_rss": True}
    assert ok["wall_ratio"] == 4.4 and ok["wall_limit"] == 4.4
    bad = scale.verdict([base, _res(4_000_000, 1780.0, 4600.0, 1100.0)])[0]
    assert bad["pass"] == {"driver_rss": False, "wall": False, "total_rss": False}
    # a 2x size gets half the wall allowance of a 4x size
    assert scale.verdict([base, _res(2_000_000, 900.0, 3000.0, 250.0)])[0]["pass"]["wall"] is False
