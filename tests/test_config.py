"""Config validation: every error is reported with its location, and nothing starts Ray."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from jobs.cli import main as cli_main
from refinery.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
input:
  uri: tests/fixtures/foundation
output:
  uri: /tmp/refinery-test-out
stages:
  - stage: normalize
  - stage: length_filter
    params:
      min_words: 3
"""


def test_good_config_validates_and_bundled_configs_are_valid():
    cfg = parse_config(GOOD, "good.yaml")
    assert [s.stage for s in cfg.stages] == ["normalize", "length_filter"]
    assert cfg.output.target_shard_mb == 128
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)  # raises ConfigError on any problem


def test_empty_stage_list_is_valid():
    cfg = parse_config("input: {uri: x}\noutput: {uri: y}\nstages: []\n")
    assert cfg.stages == []


def _errors(text: str, overrides=None) -> dict[str, str]:
    with pytest.raises(ConfigError) as ei:
        parse_config(textwrap.dedent(text), "bad.yaml", overrides)
    return {loc: msg for loc, msg in ei.value.errors}


def test_every_error_is_listed_with_key_path_and_line():
    errs = _errors(
        """\
        input:
          uri: data/
          formt: jsonl
        output:
          target_shard_mb: big
        stages:
          - stage: normalise
          - stage: length_filter
            params:
              min_word: 3
              max_chars: many
        """
    )
    locs = "\n".join(errs)
    assert "input.formt (line 3)" in errs and errs["input.formt (line 3)"] == "unknown key"
    assert any(k.startswith("output.uri") and v == "missing required key" for k, v in errs.items()), locs
    assert any(k.startswith("output.target_shard_mb (line 5)") for k in errs), locs
    assert (
        "stages[0].stage (line 7)" in errs and "unknown stage 'normalise'" in errs["stages[0].stage (line 7)"]
    )
    assert errs.get("stages[1].params.min_word (line 10)") == "unknown key"
    assert "stages[1].params.max_chars (line 11)" in errs


def test_param_cross_field_check_and_overrides():
    errs = _errors(GOOD, ["stages.1.params.max_words=1"])
    assert any("min_words (3) is greater than max_words (1)" in m for m in errs.values())
    cfg = parse_config(GOOD, "good.yaml", ["output.uri=s3://bucket/out", "stages.1.params.min_words=7"])
    assert cfg.output.uri == "s3://bucket/out" and cfg.stages[1].params["min_words"] == 7
    errs = _errors(GOOD, ["stages.9.params.x=1"])
    assert any("no such list index" in m for m in errs.values())


def test_secrets_are_redacted_in_public_config():
    cfg = parse_config(
        "input: {uri: 's3://in/', storage_options: {key: AKIAEXAMPLE, secret: sup3rs3cret}}\noutput: {uri: 's3://out/'}\n"
    )
    public = str(cfg.public_dict())
    assert "sup3rs3cret" not in public and "AKIAEXAMPLE" not in public
    assert set(cfg.secrets()) == {"AKIAEXAMPLE", "sup3rs3cret"}


def test_validate_cli_exit_codes_and_never_starts_ray(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert cli_main(["validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("min_words: 3", "min_words: three"))
    assert cli_main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: stages[1].params.min_words (line 9)" in err
    import ray

    assert not ray.is_initialized()


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_run_with_invalid_config_exits_2_before_ray_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("stage: normalize", "stage: nope"))
    proc = _python("-m", "jobs.run", "--config", str(bad))
    assert proc.returncode == 2, proc.stderr
    assert "stages[0].stage (line 6): unknown stage 'nope'" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr + proc.stdout
    assert "streaming_executor" not in proc.stderr + proc.stdout


def test_missing_input_fails_fast_before_ray(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input: {{uri: {tmp_path}/does-not-exist}}\noutput: {{uri: {tmp_path}/out}}\n")
    proc = _python("-m", "jobs.cli", "run", str(cfg))
    assert proc.returncode == 2
    assert "input not found" in proc.stderr and "does-not-exist" in proc.stderr
    assert "streaming_executor" not in proc.stderr + proc.stdout


def test_keys_added_later_leave_the_hash_of_an_old_config_alone():
    """A config written before a key existed keeps its hash (and so its run id) while the key holds its default:
    its committed output is still recognised after an upgrade."""
    from refinery.config import LATER_KEYS, parse_config

    base = yaml.safe_load(GOOD)
    h0 = parse_config(yaml.safe_dump(base)).config_hash()
    explicit = {
        "input": {"on_duplicate_id": "keep", "max_compression_ratio": 500.0, "files": None},
        "quarantine": {"keep_raw": None},
    }
    assert {(s, k) for s, k in LATER_KEYS} >= {("input", k) for k in explicit["input"]} | {
        ("quarantine", None)
    }
    cfg = {**base, "input": {**base["input"], **explicit["input"]}, "quarantine": explicit["quarantine"]}
    assert parse_config(yaml.safe_dump(cfg)).config_hash() == h0
    # how the storage is reached (endpoint, credentials, client settings) is not what the pipeline does
    reached = {
        "endpoint_url": "http://127.0.0.1:1",
        "key": "k",
        "secret": "s",
        "config_kwargs": {"retries": {}},
    }
    for side in ("input", "output"):
        other = {**base, side: {**base[side], "storage_options": reached}}
        assert parse_config(yaml.safe_dump(other)).config_hash() == h0
    # nor is how often a running unit saves its progress (a resumed run must find the crashed one's work)
    for every in (0, 5.5, None):
        other = {**base, "ray": {**base.get("ray", {}), "checkpoint_seconds": every}}
        assert parse_config(yaml.safe_dump(other)).config_hash() == h0
    for changed in (
        {"input": {**base["input"], "on_duplicate_id": "error"}},
        {"quarantine": {"keep_raw": False}},
        {"input": {**base["input"], "max_compression_ratio": 50}},
        {
            "ray": {**base.get("ray", {}), "batch_rows": 7}
        },  # stage batches: a model's output may depend on them
    ):
        assert parse_config(yaml.safe_dump({**base, **changed})).config_hash() != h0
