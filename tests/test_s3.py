"""End to end against a real S3 server (SeaweedFS on 127.0.0.1, see tests/s3_server.py): s3:// in → s3:// out,
read-only and wrong credentials, a server crash mid-run, and the retry/backoff rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.plugins import pause

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures" / "s3"


def copy_sentences(dest: Path) -> Path:
    """The S3 fixture's sentence files in a fresh local folder (the input of the cluster and fault tests)."""
    dest.mkdir()
    for f in FIX.glob("sentences_*"):
        shutil.copy(f, dest / f.name)
    return dest


def expected_ids() -> set[str]:
    import gzip

    ids = set()
    for f in sorted(FIX.glob("sentences_*")):
        raw = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        ids |= {json.loads(line)["id"] for line in raw.splitlines() if line.strip()}
    return ids


def job_config(input_uri: str, in_opts: dict, output_uri: str, out_opts: dict, **extra) -> dict:
    cfg = {
        "name": "s3-test",
        "input": {"uri": input_uri, "format": "jsonl", "id_field": "id", "storage_options": in_opts},
        "output": {"uri": output_uri, "storage_options": out_opts},
        "ray": {"num_cpus": 2, "batch_rows": 256},
        "stages": [{"stage": "normalize"}],
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    return cfg


def read_s3_output(fs, output_uri: str) -> tuple[list[str], dict]:
    """What a downstream reader may trust: nothing without _SUCCESS, then exactly the manifest's data files."""
    root = output_uri.replace("s3://", "").rstrip("/")
    assert fs.exists(f"{root}/_SUCCESS"), "output is not committed"
    manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
    ids: list[str] = []
    for f in manifest["files"]:
        if f["kind"] == "data":
            with fs.open(f"{root}/{f['path']}", "rb") as fh:
                ids += pq.read_table(fh, columns=["id"])["id"].to_pylist()
    return ids, manifest


def all_text_under(fs, prefix: str) -> str:
    """Every small JSON/text object under a prefix (manifest, report, _SUCCESS), to search for secrets."""
    out = []
    for p in fs.find(prefix):
        if not p.endswith(".parquet"):
            out.append(fs.cat_file(p).decode("utf-8", "replace"))
    return "\n".join(out)


def cli_env(ray_address: str | None = None, worker_env: dict | None = None) -> dict[str, str]:
    """Environment for `python -m jobs.run` in a subprocess: attach to `ray_address` (the session's Ray, so no
    second local cluster has to start) and give the job's Ray workers `worker_env`."""
    e = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    e.pop("RAY_ADDRESS", None)
    if ray_address:
        e["RAY_ADDRESS"] = ray_address
    if worker_env:
        e["RAY_JOB_CONFIG_JSON_ENV_VAR"] = json.dumps({"runtime_env": {"env_vars": worker_env}})
    return e


def run_cli(
    cfg: dict, tmp_path: Path, env: dict | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    path = tmp_path / f"cfg-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    e = env or cli_env()
    return subprocess.run(
        [sys.executable, "-m", "jobs.run", "--config", str(path)],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def s3_input(s3_server):
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    return s3_server.upload(FIX, prefix, pattern="sentences_*"), prefix


def test_full_job_s3_in_to_s3_out(s3_server, s3_input, run_config):
    from jobs.ray_backend.operators import read_checkpoint
    from refinery.commit import verify
    from refinery.location import Location

    input_uri, prefix = s3_input
    out = f"s3://{s3_server.out_bucket}/{prefix}/"
    writer = s3_server.options("writer")
    # split_bytes: the uncompressed files are also read as parallel byte ranges (ranged GETs + seek on S3)
    cfg = job_config(
        input_uri,
        s3_server.options("reader"),
        out,
        writer,
        output={"target_shard_mb": 0.05},
        input={"split_bytes": 8000},
    )
    res = run_config(cfg)
    assert res.status == "committed"
    admin = s3_server.fs("admin")
    ids, manifest = read_s3_output(admin, out)
    assert sorted(ids) == sorted(expected_ids())  # every row, none twice
    assert len([f for f in manifest["files"] if f["kind"] == "data"]) > 1  # several parts were published
    assert (
        res.report["rows_read"] == 1200 and res.report["rows_out"] == 1200 and not res.report["quarantined"]
    )
    # inputs are recorded with their S3 etags, and the commit removed the staging area
    assert all(
        i["etag"] and i["uri"].startswith(f"s3://{s3_server.in_bucket}/{prefix}/") for i in manifest["inputs"]
    )
    staged = admin.find(f"{s3_server.out_bucket}/{prefix}/_work", detail=True)
    assert [p for p, info in staged.items() if info["size"] > 0] == []  # SeaweedFS keeps empty folder entries
    assert verify(out, writer) == []
    # no credential anywhere in what was written
    text = all_text_under(admin, f"{s3_server.out_bucket}/{prefix}")
    for ident in s3_server.identities.values():
        assert ident.secret_key not in text and ident.access_key not in text
    # the checkpoint reader that global stages use reads Parquet straight from S3 with the same options
    data = [(f"{out.rstrip('/')}/{f['path']}", f["rows"]) for f in manifest["files"] if f["kind"] == "data"]
    assert (
        read_checkpoint([(Location(u, writer), n) for u, n in data], row_group_rows=64 * 1024).count() == 1200
    )
    # the same job on the same input is recognised as committed
    assert run_config(cfg).status == "noop"


def test_read_only_identity_cannot_write(s3_server, s3_input, tmp_path):
    input_uri, prefix = s3_input
    reader = s3_server.options("reader")
    secret = s3_server.identities["reader"].secret_key
    # read-only keys used for an output inside the bucket they can read: the write probe fails before any work
    out = f"s3://{s3_server.in_bucket}/{prefix}-out/"
    t0 = time.time()
    p = run_cli(job_config(input_uri, reader, out, reader), tmp_path)
    assert p.returncode == 2, p.stderr
    assert f"write s3://{s3_server.in_bucket}/{prefix}-out/_work/" in p.stderr
    assert "AccessDenied" in p.stderr and "read-only" in p.stderr
    assert secret not in p.stderr + p.stdout and s3_server.identities["reader"].access_key not in p.stderr
    assert time.time() - t0 < 60
    assert not s3_server.fs("admin").exists(f"{s3_server.in_bucket}/{prefix}-out/_SUCCESS")
    # and on a bucket they cannot even read: the first operation on the output names bucket and operation
    out2 = f"s3://{s3_server.out_bucket}/{prefix}-ro/"
    p = run_cli(job_config(input_uri, reader, out2, reader), tmp_path)
    assert p.returncode == 2, p.stderr
    assert f"s3://{s3_server.out_bucket}/{prefix}-ro" in p.stderr and "AccessDenied" in p.stderr
    assert secret not in p.stderr + p.stdout


@pytest.mark.parametrize("which", ["secret", "key"])
def test_wrong_keys_fail_fast(s3_server, s3_input, tmp_path, which):
    input_uri, prefix = s3_input
    bad = s3_server.options("reader")
    if which == "secret":
        bad["secret"] = "wrong-" + bad["secret"][6:]
        code = "SignatureDoesNotMatch"
    else:
        bad["key"] = "NOSUCHKEY" + bad["key"][9:]
        code = "InvalidAccessKeyId"
    t0 = time.time()
    p = run_cli(
        job_config(input_uri, bad, f"s3://{s3_server.out_bucket}/{prefix}/", s3_server.options("writer")),
        tmp_path,
    )
    elapsed = time.time() - t0
    assert p.returncode == 2, p.stderr
    assert f"list s3://{s3_server.in_bucket}/{prefix}/" in p.stderr and code in p.stderr
    assert "credentials were rejected" in p.stderr
    assert "retrying" not in p.stderr  # not retried: it cannot succeed
    assert bad["secret"] not in p.stderr + p.stdout and bad["key"] not in p.stderr + p.stdout
    assert elapsed < 45, elapsed


def test_missing_bucket_fails_fast(s3_server, tmp_path):
    p = run_cli(
        job_config(
            "s3://no-such-bucket-here/x/",
            s3_server.options("admin"),
            f"s3://{s3_server.out_bucket}/nb/",
            s3_server.options("writer"),
        ),
        tmp_path,
    )
    assert p.returncode == 2, p.stderr
    assert "s3://no-such-bucket-here/x/" in p.stderr and "bucket" in p.stderr
    assert s3_server.identities["admin"].secret_key not in p.stderr


def test_server_crash_mid_run_then_rerun(s3_server, s3_input, tmp_path, ray_session):
    """Kill -9 the S3 server while parts are being staged, start it again: the job either rides it out on
    retries and commits the right rows, or fails with nothing published; then a re-run commits the right rows."""
    input_uri, prefix = s3_input
    out = f"s3://{s3_server.out_bucket}/{prefix}/"
    cfg = job_config(
        input_uri,
        s3_server.options("reader"),
        out,
        s3_server.options("writer"),
        output={"target_shard_mb": 0.02},
    )
    cfg["stages"].append(pause(0.7))  # slow batches: the crash lands mid-run
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(cfg))
    address = ray_session.get_runtime_context().gcs_address
    env = cli_env(address)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.run", "--config", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    admin = s3_server.fs("admin")
    staged = f"{s3_server.out_bucket}/{prefix}/_work"
    deadline = time.time() + 90
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if any(p.endswith(".parquet") for p in admin.find(staged)):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        assert proc.poll() is None, "the job finished before the server could be restarted"
        s3_server.restart(hard=True)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    admin = s3_server.fs("admin")
    for ident in s3_server.identities.values():
        assert ident.secret_key not in stdout + stderr
    root = f"{s3_server.out_bucket}/{prefix}"
    if proc.returncode != 0:
        # failed cleanly: nothing published, nothing a reader would trust
        assert not admin.exists(f"{root}/_SUCCESS"), stderr
        assert not admin.exists(f"{root}/manifest.json")
        p = run_cli(cfg, tmp_path, env=cli_env(address))
        assert p.returncode == 0, p.stderr
    ids, manifest = read_s3_output(admin, out)
    assert sorted(ids) == sorted(expected_ids())
    from refinery.commit import verify

    assert verify(out, s3_server.options("writer")) == []


# --- retry rules (no server needed: the classifier and the backoff schedule themselves) -------------------------


def _client_error(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


def test_retry_classifies_and_backs_off_with_jitter():
    from botocore.exceptions import EndpointConnectionError
    from s3fs.errors import translate_boto_error

    from refinery.fsio import backoff_delay, is_fatal, is_transient, retry_call

    slow = translate_boto_error(
        _client_error("SlowDown", 503)
    )  # what s3fs raises: OSError caused by ClientError
    assert is_transient(slow) and not is_fatal(slow)
    assert is_transient(_client_error("ServiceUnavailable", 503))
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ConnectionResetError())
    for code, status in (("AccessDenied", 403), ("InvalidAccessKeyId", 403), ("NoSuchBucket", 404)):
        err = translate_boto_error(_client_error(code, status))
        assert is_fatal(err) and not is_transient(err), code
    assert not is_transient(ValueError("bad record"))

    sleeps: list[float] = []
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] < 4:
            raise translate_boto_error(_client_error("SlowDown", 503))
        return "ok"

    assert retry_call(flaky, "read", "s3://b/k", attempts=5, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 3
    for i, s in enumerate(sleeps):  # exponential, jittered, bounded: step/2 <= s <= step
        step = min(20.0, 0.5 * 2**i)
        assert step / 2 <= s <= step

    # bounded: gives up after `attempts`, and fatal errors are not retried at all
    def failing(code: str, status: int):
        def op():
            raise translate_boto_error(_client_error(code, status))

        return op

    sleeps.clear()
    with pytest.raises(OSError):
        retry_call(failing("SlowDown", 503), "read", "s3://b/k", attempts=3, sleep=sleeps.append)
    assert len(sleeps) == 2
    sleeps.clear()
    with pytest.raises(PermissionError):
        retry_call(failing("AccessDenied", 403), "read", "s3://b/k", attempts=3, sleep=sleeps.append)
    assert sleeps == []
    assert len({round(backoff_delay(3, 0.5, 20), 6) for _ in range(20)}) > 1  # jitter: not one fixed delay
