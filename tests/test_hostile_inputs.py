"""Hostile inputs and layouts: repeated ids, folders that are not ours, links, thousands of tiny files, signals,
credentials in URIs, impossible params, PII where it hides, bombs and broken encodings through the whole job —
and then the readers on their own (every bomb's peak memory measured in a child process, every codec, zip).

Every case counts what it planted and finds each planted record exactly once in what the run published (data,
quarantine or drop log, read from the files the manifest lists), never by the report's own arithmetic.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
import uuid
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from refinery.commit import OutputExistsError, verify
from refinery.config import InputConfig
from refinery.fsio import list_inputs
from stages.readers import load_readers, plan_reads
from stages.readers.extract import decode_html
from stages.readers.warc import parse_http
from tests.hostile_data import (
    BOMBS,
    FIX,
    LINES,
    MIB,
    RSS_LIMIT_MB,
    TEXTS,
    article,
    deflate,
    drops,
    fixture_archive,
    http_page,
    jsonl,
    live,
    multi_bz2,
    multi_gz,
    multi_zst,
    raw_zip,
    read,
    read_in_child,
    warc_record,
    zeros_gzip_member,
)
from tests.plugins import pause

ROOT = Path(__file__).resolve().parent.parent


def long_text(texts: list[str], i: int, words: int = 650) -> str:
    out: list[str] = []
    j = i
    while len(out) < words:
        out += texts[j % len(texts)].split()
        j += 1
    return " ".join(out[:words])


def write_jsonl(path: Path, records: list[dict]) -> list[int]:
    """Write records one per line; returns the byte offset of each line (its location in `source.offset`)."""
    offsets, pos = [], 0
    with open(path, "wb") as f:
        for r in records:
            line = json.dumps(r, ensure_ascii=False).encode() + b"\n"
            offsets.append(pos)
            f.write(line)
            pos += len(line)
    return offsets


def published(root: str | Path, fs=None) -> dict[str, list[dict]]:
    """Rows of every file the manifest lists, by kind; the output must be committed."""
    import fsspec

    fs = fs or fsspec.filesystem("file")
    root = str(root).replace("s3://", "").rstrip("/")
    assert fs.exists(f"{root}/_SUCCESS"), "output is not committed"
    manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
    out: dict[str, list[dict]] = {"data": [], "quarantine": [], "droplog": []}
    for f in manifest["files"]:
        with fs.open(f"{root}/{f['path']}", "rb") as fh:
            out[f["kind"]] += pq.read_table(fh).to_pylist()
    return out


def locations(rows: dict[str, list[dict]]) -> Counter:
    """(file name, offset) of every published row, whatever its kind."""
    c: Counter = Counter()
    for kind, rs in rows.items():
        for r in rs:
            uri, off = (
                (r["source_uri"], r["source_offset"])
                if kind == "droplog"
                else (r["source"]["uri"], r["source"]["offset"])
            )
            c[(Path(uri).name, off)] += 1
    return c


def run_cli(
    args: list[str],
    cwd: Path = ROOT,
    env: dict | None = None,
    timeout: float = 300,
    prefix: list[str] | None = None,
) -> subprocess.CompletedProcess:
    e = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", **(env or {})}
    e.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "jobs.cli", *args],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------------------------------------------------------
# Repeated ids


def plant_shards(folder: Path, shards: int = 4, per_shard: int = 256) -> dict[tuple[str, int], str]:
    """Shards whose ids restart at 0 (numbered per shard, as exports often are); returns location → text."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = TEXTS
    planted = {}
    for k in range(shards):
        recs = [
            {"id": str(i), "text": f"shard {k} " + long_text(texts, k * per_shard + i)}
            for i in range(per_shard)
        ]
        for off, r in zip(write_jsonl(folder / f"shard-{k}.jsonl", recs), recs, strict=True):
            planted[(f"shard-{k}.jsonl", off)] = r["text"]
    return planted


def dup_cfg(inp: str, out: str, **input_extra) -> dict:
    return {
        "input": {"uri": inp, "id_field": "id", **input_extra},
        "output": {"uri": out, "max_batch_mb": 1},
        "stages": [{"stage": "normalize"}],
    }


def test_repeated_ids_lose_nothing_and_are_counted(run_config, tmp_path):
    planted = plant_shards(tmp_path / "in")
    res = run_config(dup_cfg(str(tmp_path / "in"), str(tmp_path / "out")))
    rows = published(tmp_path / "out")
    got = {(Path(r["source"]["uri"]).name, r["source"]["offset"]): r["text"] for r in rows["data"]}
    want = {k: unicodedata.normalize("NFC", v) for k, v in planted.items()}  # the `normalize` stage's form
    assert len(rows["data"]) == 1024 and got == want  # every planted record, once, with its own text
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (
        len([f for f in manifest["files"] if f["kind"] == "data"]) > 1
    )  # several writer batches held id "0"
    assert verify(str(tmp_path / "out")) == []
    assert res.report["duplicate_ids"] == 768 and manifest["counts"]["duplicate_ids"] == 768
    assert res.report["rows_read"] == 1024 and res.report["rows_out"] == 1024


def test_repeated_ids_on_s3(s3_server, run_config, tmp_path):
    plant_shards(tmp_path / "in")
    prefix = f"dupids-{time.time_ns()}"
    inp = s3_server.upload(tmp_path / "in", prefix)
    out = f"s3://{s3_server.out_bucket}/{prefix}/"
    writer = s3_server.options("writer")
    cfg = dup_cfg(inp, out)
    cfg["input"]["storage_options"] = s3_server.options("reader")
    cfg["output"]["storage_options"] = writer
    res = run_config(cfg)
    rows = published(out, s3_server.fs("admin"))
    assert len(rows["data"]) == 1024
    assert len({(r["source"]["uri"], r["source"]["offset"]) for r in rows["data"]}) == 1024
    assert res.report["duplicate_ids"] == 768
    assert verify(out, writer) == [] and verify(out, writer, deep=False) == []


def test_repeated_ids_quarantine_or_error(run_config, tmp_path):
    from jobs.finalize import DuplicateIdsError

    planted = plant_shards(tmp_path / "in", shards=3, per_shard=40)
    res = run_config(dup_cfg(str(tmp_path / "in"), str(tmp_path / "q"), on_duplicate_id="quarantine"))
    rows = published(tmp_path / "q")
    assert locations(rows) == Counter(planted.keys())  # each record exactly once, kept or quarantined
    assert {Path(r["source"]["uri"]).name for r in rows["data"]} == {
        "shard-0.jsonl"
    }  # the first in input order
    assert Counter(r["reason"] for r in rows["quarantine"]) == {"duplicate_id": 80}
    assert res.report["quarantined"] == {"duplicate_id": 80} and res.report["duplicate_ids"] == 80
    with pytest.raises(DuplicateIdsError, match="80 duplicate id"):
        run_config(dup_cfg(str(tmp_path / "in"), str(tmp_path / "e"), on_duplicate_id="error"))
    assert not (tmp_path / "e" / "_SUCCESS").exists()


def test_dedup_judges_rows_not_ids(run_config, tmp_path):
    """Two rows share id "7": one is a copy of another document, the other is unique. Only the copy goes."""
    texts = TEXTS
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"id": "1", "text": texts[0]}, {"id": "7", "text": texts[1]}])
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"id": "7", "text": texts[0]}, {"id": "9", "text": texts[2]}])
    for stage in ("exact_dedup", "fuzzy_dedup"):
        out = tmp_path / f"out-{stage}"
        run_config(
            {
                "input": {"uri": str(tmp_path / "in"), "id_field": "id"},
                "output": {"uri": str(out)},
                "stages": [{"stage": stage, "params": {"priority": ["earliest"]}}],
            }
        )
        rows = published(out)
        kept = sorted(r["text"] for r in rows["data"])
        assert kept == sorted([texts[0], texts[1], texts[2]]), stage
        assert [(Path(r["source_uri"]).name, r["id"]) for r in rows["droplog"]] == [("b.jsonl", "7")], stage


# ---------------------------------------------------------------------------------------------------------------
# The output folder is ours or nobody's


def small_input(folder: Path, n: int = 20) -> dict[tuple[str, int], str]:
    folder.mkdir(parents=True, exist_ok=True)
    recs = [{"text": t} for t in TEXTS[:n]]
    return {
        ("docs.jsonl", o): r["text"]
        for o, r in zip(write_jsonl(folder / "docs.jsonl", recs), recs, strict=True)
    }


def test_a_folder_that_is_not_ours_is_refused_and_untouched(run_config, tmp_path):
    small_input(tmp_path / "in")
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "important.csv").write_text("a,b\n1,2\n")
    (out / "notes.txt").write_text("mine")
    for if_exists in ("error", "overwrite"):
        with pytest.raises(OutputExistsError, match="holds no refinery output"):
            run_config(
                {"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(out), "if_exists": if_exists}}
            )
    assert (out / "data" / "important.csv").read_text() == "a,b\n1,2\n" and (
        out / "notes.txt"
    ).read_text() == "mine"
    assert sorted(p.name for p in out.rglob("*")) == ["data", "important.csv", "notes.txt"]


def test_overwrite_replaces_only_what_a_manifest_lists(run_config, tmp_path):
    planted = small_input(tmp_path / "in")
    out = tmp_path / "out"
    run_config({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(out)}})
    first = {f["path"] for f in json.loads((out / "manifest.json").read_text())["files"]}
    (out / "data" / "mine.csv").write_text("keep me")  # a user's file inside a refinery output
    run_config(
        {
            "input": {"uri": str(tmp_path / "in")},
            "output": {"uri": str(out), "if_exists": "overwrite"},
            "stages": [{"stage": "length_filter", "params": {"min_chars": 200}}],
        }
    )
    second = {f["path"] for f in json.loads((out / "manifest.json").read_text())["files"]}
    assert (out / "data" / "mine.csv").read_text() == "keep me"
    for p in first - second:
        assert not (out / p).exists()  # the previous run's parts are gone
    assert locations(published(out)) == Counter(planted.keys())
    assert verify(str(out)) == ["data/mine.csv: present but not in the manifest"]


def test_a_crashed_commit_is_cleaned_by_the_next(run_config, tmp_path, monkeypatch):
    from refinery.faults import InjectedFailure

    planted = small_input(tmp_path / "in")
    out = tmp_path / "out"
    monkeypatch.setenv("REFINERY_FAIL_AT", "after_data")
    with pytest.raises(InjectedFailure):
        run_config({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(out)}})
    monkeypatch.delenv("REFINERY_FAIL_AT")
    orphans = {p.name for p in (out / "data").iterdir()}
    assert orphans and not (out / "_SUCCESS").exists()
    # another config commits into the same folder: the crashed commit's parts are removed, nothing else is lost
    run_config(
        {
            "input": {"uri": str(tmp_path / "in")},
            "output": {"uri": str(out)},
            "stages": [{"stage": "normalize", "params": {"form": "NFKC"}}],
        }
    )
    assert verify(str(out)) == []
    assert locations(published(out)) == Counter(planted.keys())


def test_output_overlapping_input_is_a_config_error(tmp_path):
    small_input(tmp_path / "in")
    for out in (tmp_path / "in", tmp_path / "in" / "curated", tmp_path):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(out)}}))
        p = run_cli(["run", str(cfg)])
        assert p.returncode == 2, p.stderr
        assert "config error" in p.stderr and ("inside" in p.stderr or "is the input" in p.stderr)
        assert "Started a local Ray" not in p.stdout + p.stderr
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [
        "docs.jsonl"
    ]  # nothing deleted, nothing added


# ---------------------------------------------------------------------------------------------------------------
# Input layouts


def test_symlinked_folders_are_followed_once(run_config, tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    texts = TEXTS
    recs = [{"text": long_text(texts, i, 40)} for i in range(300)]
    offsets = write_jsonl(real / "linked.jsonl", recs)
    inp = tmp_path / "in"
    planted = small_input(inp)
    (inp / "link").symlink_to(real, target_is_directory=True)
    (inp / "again").symlink_to(real, target_is_directory=True)  # a second way to the same folder
    (real / "back").symlink_to(inp, target_is_directory=True)  # a loop back to the input
    res = run_config({"input": {"uri": str(inp)}, "output": {"uri": str(tmp_path / "out")}})
    rows = published(tmp_path / "out")
    planted.update({("linked.jsonl", o): r["text"] for o, r in zip(offsets, recs, strict=True)})
    assert locations(rows) == Counter(planted.keys())  # 320 records, none twice, no unsupported_format
    assert res.report["rows_out"] == 320 and not res.report["quarantined"]


def test_ten_thousand_tiny_files_are_packed(run_config, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    texts = TEXTS
    n = 10_000
    for i in range(n):
        (inp / f"f{i:05d}.jsonl").write_text(json.dumps({"text": texts[i % len(texts)]}) + "\n")
    res = run_config({"input": {"uri": str(inp)}, "output": {"uri": str(tmp_path / "out")}})
    rows = published(tmp_path / "out")
    assert locations(rows) == Counter({(f"f{i:05d}.jsonl", 0): 1 for i in range(n)})
    assert res.report["read_tasks"] == n and res.report["read_units"] <= n / 10
    assert res.report["read_ray_tasks"] == res.report["read_units"]


def test_unreadable_file_is_one_line_naming_it(tmp_path):
    small_input(tmp_path / "in")
    secret = tmp_path / "in" / "secret.jsonl"
    secret.write_text('{"text": "x"}\n')
    secret.chmod(0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(tmp_path / "out")}})
    )
    # root reads anything: drop the capabilities that let it ignore file permissions
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    p = run_cli(["run", str(cfg)], prefix=prefix)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [
        f"refinery: error: cannot read input {secret}: permission denied (check the file's permissions)"
    ]
    assert "Traceback" not in p.stdout + p.stderr and "credentials" not in p.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_end_cleanly(tmp_path, sig):
    plant_shards(tmp_path / "in", shards=2, per_shard=64)
    cfg = tmp_path / "c.yaml"
    job = dup_cfg(str(tmp_path / "in"), str(tmp_path / "out"))
    job["stages"].append(pause(5))  # slow batches: the signal lands inside the run
    cfg.write_text(yaml.safe_dump(job))
    e = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    e.pop("RAY_ADDRESS", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "run", str(cfg)],
        cwd=ROOT,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "out" / "_work").exists():
        time.sleep(0.2)
    time.sleep(4)  # inside the run (Ray started, writers sleeping)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err[-2000:]
    last = [ln for ln in err.splitlines() if ln.startswith("refinery:")]
    assert last == [
        f"refinery: stopped by {sig.name}; the run did not commit, so nothing of it is published "
        "(run it again to redo it)"
    ]
    assert "SIGABRT" not in err and "*** " not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "_SUCCESS").exists()


# ---------------------------------------------------------------------------------------------------------------
# Errors that must not leak or pass


def test_credentials_in_uris_are_refused_and_never_echoed(tmp_path):
    small_input(tmp_path / "in")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "input": {"uri": "s3://AKIAHOSTILE:S3cr3tValue@bucket/crawl/"},
                "output": {"uri": "s3://AKIAHOSTILE:S3cr3tValue@bucket/out/"},
            }
        )
    )
    p = run_cli(["run", str(cfg)])
    assert p.returncode == 2
    assert "S3cr3tValue" not in p.stdout + p.stderr and "AKIAHOSTILE" not in p.stdout + p.stderr
    assert (
        "input.uri (line" in p.stderr
        and "output.uri (line" in p.stderr
        and "credentials inside a URI" in p.stderr
    )
    from refinery.redact import scrub

    assert scrub("list https://bob:hunter2@host/x failed", []) == "list https://***@host/x failed"


@pytest.mark.parametrize(
    "stage,params,where",
    [
        ("langid", {"min_score": -3}, "min_score"),
        ("langid", {"min_score": {"en": 1.5}}, "min_score"),
        ("gopher_quality", {"max_bullet_lines_ratio": 1.7}, "max_bullet_lines_ratio"),
        ("gopher_quality", {"min_doc_words": -1}, "min_doc_words"),
        (
            "gopher_repetition",
            {"per_language": {"de": {"dup_para_frac": -0.1}}},
            "per_language.de.dup_para_frac",
        ),
        ("fineweb_quality", {"line_punct_thr": -0.5}, "line_punct_thr"),
        ("c4_quality", {"min_num_sentences": -4}, "min_num_sentences"),
        ("normalize", {"max_blank_lines": -2}, "max_blank_lines"),
        ("length_filter", {"min_chars": -5}, "min_chars"),
    ],
)
def test_impossible_params_are_config_errors(stage, params, where):
    from refinery.config import ConfigError, parse_config

    text = yaml.safe_dump(
        {"input": {"uri": "in"}, "output": {"uri": "out"}, "stages": [{"stage": stage, "params": params}]}
    )
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml")
    assert f"stages[0].params.{where}" in e.value.render()


def test_a_lost_or_doubled_part_cannot_pass():
    """The commit compares what the readers produced with what the parts hold, and `verify` (even --quick)
    rejects a manifest that lists a part twice, the signature of the old id-named parts overwriting each other."""
    from jobs.finalize import check_files
    from refinery.accounting import build_report, check_accounting

    files = [
        {"path": "final/data/part-a.parquet", "rows": 256},
        {"path": "final/data/part-a.parquet", "rows": 256},
    ]
    assert any("would publish as data/part-a.parquet" in p for p in check_files(files, 512))
    assert any("hold 256 rows, the readers produced 512" in p for p in check_files(files[:1], 512))
    stats = {"rows_kept": 512, "drop": {}, "drop_lang": {}, "kept_lang": {}, "flagged": {}, "counters": {}}
    assert check_accounting(build_report(stats, [], {}, rows_read=1024)) != []
    assert check_accounting(build_report(stats, [], {}, rows_read=512)) == []


def test_verify_rejects_a_manifest_listing_a_part_twice(tmp_path):
    import hashlib

    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["0", "1"], "text": ["a", "b"]}), out / "data" / "part-x.parquet")
    digest = hashlib.sha256((out / "data" / "part-x.parquet").read_bytes()).hexdigest()
    entry = {"path": "data/part-x.parquet", "kind": "data", "rows": 2, "bytes": 1, "sha256": digest}
    body = json.dumps(
        {"run_id": "r", "files": [entry, entry], "counts": {"rows_out": 4, "rows_read": 4}}
    ).encode()
    (out / "manifest.json").write_bytes(body)
    (out / "_SUCCESS").write_text(
        json.dumps({"run_id": "r", "manifest_sha256": hashlib.sha256(body).hexdigest()})
    )
    for deep in (True, False):
        problems = verify(str(out), deep=deep)
        assert any("listed 2 times" in p for p in problems), problems


# ---------------------------------------------------------------------------------------------------------------
# PII wherever something is published


def real_pii_values() -> dict[str, list[str]]:
    """Labelled e-mails, phones and card numbers from presidio-research's synthetic sentences (MIT)."""
    import gzip

    path = Path(__file__).parent / "fixtures" / "pii_text" / "presidio_synth_v2_first500.jsonl.gz"
    out: dict[str, list[str]] = {"EMAIL_ADDRESS": [], "PHONE_NUMBER": [], "CREDIT_CARD": []}
    for line in gzip.open(path, "rt", encoding="utf-8"):
        r = json.loads(line)
        for s in r["spans"]:
            if s["type"] in out:
                out[s["type"]].append(r["text"][s["start"] : s["end"]])
    return out


def plant_pii(folder: Path) -> tuple[dict[tuple[str, int], str], list[str]]:
    """Good records whose meta holds PII, and broken records (quarantined) that hold PII."""
    folder.mkdir(parents=True, exist_ok=True)
    pii = real_pii_values()
    emails, phones, cards = pii["EMAIL_ADDRESS"][:12], pii["PHONE_NUMBER"][:12], pii["CREDIT_CARD"][:6]
    texts = TEXTS
    recs, lines = [], []
    for i in range(12):
        recs.append(
            {
                "text": texts[i],
                "author_email": emails[i],
                "phone": phones[i],
                "url": f"https://shop.example.org/p?email={emails[(i + 1) % 12]}&ref={i}",
                "title": f"Contact {emails[(i + 2) % 12]} for details",
            }
        )
    for i, r in enumerate(recs):
        lines.append(json.dumps(r, ensure_ascii=False))
        if i < 6:  # a broken record after each of the first six: quarantined with its raw bytes
            lines.append(f'{{"text": "call {phones[i]} or mail {emails[i]}, card {cards[i]}", ')
    data = ("\n".join(lines) + "\n").encode()
    (folder / "mixed.jsonl").write_bytes(data)
    planted, pos = {}, 0
    for line in data.splitlines(keepends=True):
        planted[("mixed.jsonl", pos)] = line.decode()
        pos += len(line)
    secrets = emails + phones + cards
    return planted, secrets


@pytest.mark.parametrize("keep_raw", [None, True])
def test_pii_never_survives_in_meta_or_quarantine(run_config, tmp_path, keep_raw):
    from jobs.commands.audit_pii import audit

    planted, secrets = plant_pii(tmp_path / "in")
    cfg = {
        "input": {"uri": str(tmp_path / "in")},
        "output": {"uri": str(tmp_path / "out")},
        "stages": [{"stage": "pii", "params": {"ner_model": None}}],
    }
    if keep_raw is not None:
        cfg["quarantine"] = {"keep_raw": keep_raw}
    res = run_config(cfg)
    rows = published(tmp_path / "out")
    assert locations(rows) == Counter(planted.keys())  # 12 kept, 6 quarantined
    assert len(rows["data"]) == 12 and Counter(r["reason"] for r in rows["quarantine"]) == {
        "malformed_json": 6
    }
    everything = json.dumps([rows, res.report], default=repr, ensure_ascii=False)
    everything += (tmp_path / "out" / "manifest.json").read_text() + (
        tmp_path / "out" / "report.json"
    ).read_text()
    leaked = [s for s in secrets if s in everything]
    assert leaked == []
    raws = [r["raw"] for r in rows["quarantine"]]
    if keep_raw:  # kept, scrubbed
        assert all(r and b"<EMAIL_ADDRESS>" in r and b"<CREDIT_CARD>" in r for r in raws)
    else:  # the default with a pii stage: withheld
        assert raws == [None] * 6
    hosts = {json.loads(r["meta"])["url"].split("/")[2] for r in rows["data"]}
    assert hosts == {"shop.example.org"}  # the domain survives scrubbing
    verdict = audit(str(tmp_path / "out"))
    assert verdict["clean"] and verdict["quarantine"]["clean"], verdict


def test_without_pii_stage_raw_is_kept_and_the_audit_sees_meta(run_config, tmp_path):
    from jobs.commands.audit_pii import audit

    planted, secrets = plant_pii(tmp_path / "in")
    run_config({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(tmp_path / "out")}})
    rows = published(tmp_path / "out")
    assert locations(rows) == Counter(planted.keys())
    assert all(
        r["raw"] for r in rows["quarantine"]
    )  # no pii stage: the record is kept verbatim for inspection
    verdict = audit(str(tmp_path / "out"))
    assert not verdict["clean"] and verdict["by_column"]["meta"]["residual"]["EMAIL_ADDRESS"] >= 12
    assert not verdict["quarantine"]["clean"]
    assert not any(s in json.dumps(verdict) for s in secrets)  # the audit names rows, never values


# ---------------------------------------------------------------------------------------------------------------
# Bombs, broken streams and encodings through the whole job (the readers on their own, with the peak memory of
# every bomb measured in a child process, are further down)


def _truncated(path: Path, blob: bytes, whole: bytes) -> int:
    """Write the first two thirds of a compressed stream; returns how many whole JSONL lines it still holds."""
    cut = blob[: len(blob) * 2 // 3]
    path.write_bytes(cut)
    if path.name.endswith(".zst"):
        import zstandard

        head = zstandard.ZstdDecompressor().decompressobj().decompress(cut)
    else:
        import bz2

        head = bz2.BZ2Decompressor().decompress(cut)
    assert whole.startswith(head)
    return head.count(b"\n")


def test_a_hostile_folder_runs_to_the_end_and_every_record_is_accounted_for(run_config, tmp_path):
    import bz2

    import zstandard

    inp = tmp_path / "in"
    expect: dict[str, tuple[int, Counter]] = {}  # top folder → (rows kept, quarantine reasons)
    for name, make in BOMBS.items():
        (inp / name).mkdir(parents=True)
        _, live, drops = make(inp / name)
        expect[name] = (live, Counter({k.split(":", 1)[1]: v for k, v in drops.items()}))
    whole = b"".join(LINES)
    (inp / "cut").mkdir()
    n_zst = _truncated(inp / "cut" / "a.jsonl.zst", zstandard.ZstdCompressor().compress(whole), whole)
    n_bz2 = _truncated(inp / "cut" / "b.jsonl.bz2", bz2.compress(whole), whole)
    expect["cut"] = (n_zst + n_bz2, Counter({"truncated_compressed_stream": 2}))
    (inp / "bom").mkdir()
    (inp / "bom" / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + b"".join(LINES[:10]))
    (inp / "bom" / "bom.txt").write_bytes(b"\xef\xbb\xbf" + json.loads(LINES[0])["text"].encode())
    expect["bom"] = (11, Counter())
    (inp / "blank").mkdir()
    (inp / "blank" / "spaces.jsonl").write_bytes(b"\n  \n\t\n" * 50)
    (inp / "blank" / "spaces.txt").write_bytes(b" \n\n ")
    (inp / "blank" / "sparse.jsonl").write_bytes(b"\n\n".join(LINES[:5]) + b"\n" * 500)
    expect["blank"] = (5, Counter({"empty_file": 2}))
    (inp / "charset").mkdir()
    wide = article("Wide claim").replace(b"<head>", b'<head><meta charset="utf-16">')
    (inp / "charset" / "ascii_says_utf16.html").write_bytes(wide + b" " * (len(wide) % 2))
    (inp / "charset" / "utf8_says_latin1.html").write_bytes(
        article("Señor Müller’s café").replace(b"<head>", b'<head><meta charset="iso-8859-1">')
    )
    expect["charset"] = (2, Counter())

    res = run_config(
        {"input": {"uri": str(inp), "extractor": "resiliparse"}, "output": {"uri": str(tmp_path / "out")}}
    )
    rows = published(tmp_path / "out")
    got: dict[str, tuple[int, Counter]] = {}
    for kind in ("data", "quarantine"):
        for r in rows[kind]:
            top = Path(r["source"]["uri"].split("::")[-1]).relative_to(inp).parts[0]
            n, reasons = got.get(top, (0, Counter()))
            got[top] = (n + 1, reasons) if kind == "data" else (n, reasons + Counter([r["reason"]]))
    assert got == expect
    assert not rows["droplog"]  # nothing skipped or dropped: every record is kept or quarantined
    texts = {
        Path(r["source"]["uri"]).name: r["text"] for r in rows["data"] if r["source"]["uri"].endswith(".html")
    }
    assert (
        "Wide claim" in texts["ascii_says_utf16.html"]
        and "Señor Müller’s café" in texts["utf8_says_latin1.html"]
    )
    assert res.report["input"]["blank_lines"] >= 150 + 4 + 500
    assert all("\x00" not in (r["detail"] or "") for r in rows["quarantine"])


def test_ids_are_kept_exactly_as_written(run_config, tmp_path):
    (tmp_path / "in").mkdir()
    texts = TEXTS
    ids = ["1", '"1"', "123456789012345678901234567890", "1.50"]  # as written in the JSON
    lines = ['{"id": ' + i + ', "text": ' + json.dumps(t) + "}" for i, t in zip(ids, texts, strict=False)]
    (tmp_path / "in" / "ids.jsonl").write_text("\n".join(lines) + "\n")
    res = run_config(
        {"input": {"uri": str(tmp_path / "in"), "id_field": "id"}, "output": {"uri": str(tmp_path / "out")}}
    )
    rows = published(tmp_path / "out")
    assert sorted(r["id"] for r in rows["data"]) == sorted(
        ["1", "1", "123456789012345678901234567890", "1.50"]
    )
    assert res.report["duplicate_ids"] == 1  # `1` and `"1"` are the same id: both kept, the repeat counted


# ===============================================================================================================
# The readers on their own: bombs in bounded memory, every codec, zip archives, blank files, BOMs, charsets, ids


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_quarantined_in_bounded_memory(name, tmp_path):
    uri, planted_live, expected = BOMBS[name](tmp_path)
    out = read_in_child(uri, name, extractor="resiliparse")
    assert out["maxrss_mb"] < RSS_LIMIT_MB, f"{name}: peak RSS {out['maxrss_mb']:.0f} MB"
    assert out["live"] == planted_live
    assert out["drops"] == expected
    assert out["seconds"] < 30
    for detail in out["details"]:
        assert "bytes" in detail and "\x00" not in detail  # sizes only, never content


@pytest.mark.parametrize(
    "name,expected",
    [
        ("jsonl_gz_blank_lines", {}),  # 2 Gi blank lines, read to the end
        ("jsonl_zst", {"quarantine:record_too_large": 1}),  # one 2 GiB "line" of zero bytes
        ("warc_content_encoding", {"quarantine:record_too_large": 1}),
        ("zip_members", {"quarantine:decompression_bomb": 1, "quarantine:record_too_large": 1}),
    ],
)
def test_memory_stays_bounded_without_the_ratio_cap(name, expected, tmp_path):
    """With the ratio cap out of the way the same bombs inflate all the way (or to the size caps): memory must
    not follow the output, since every codec yields bounded chunks."""
    uri, planted_live, _ = BOMBS[name](tmp_path)
    out = read_in_child(uri, f"{name} (no ratio cap)", extractor="resiliparse", max_compression_ratio=1e12)
    assert out["maxrss_mb"] < RSS_LIMIT_MB, f"{name}: peak RSS {out['maxrss_mb']:.0f} MB"
    assert out["drops"] == expected
    assert out["live"] == planted_live


def test_bomb_details_give_sizes_and_ratio(tmp_path):
    uri, _, _ = BOMBS["jsonl_gz"](tmp_path)
    rows, _ = read(uri)
    (bomb,) = [r for r in rows if r["_drop"]]
    assert bomb["_drop"] == "quarantine:decompression_bomb"
    assert "ratio" in bomb["_detail"] and "max_compression_ratio=500" in bomb["_detail"]
    assert bomb["_raw"] is None
    assert [r["text"] for r in live(rows)] == TEXTS[:40]


def test_ratio_cap_is_configurable_and_small_files_are_never_bombs(tmp_path):
    # 3 MiB of blank lines and one record: a ratio of ~1000, but below the minimum output for the check.
    (tmp_path / "small.jsonl.gz").write_bytes(gzip.compress(b"\n" * (3 * MIB) + LINES[0]))
    rows, counters = read(tmp_path / "small.jsonl.gz")
    assert len(live(rows)) == 1 and not drops(rows) and counters["blank_lines"] == 3 * MIB
    # 20 MiB of blank lines (ratio ~1000): a bomb at the default cap, read through with a higher one
    p = tmp_path / "twenty.jsonl.gz"
    p.write_bytes(gzip.compress(LINES[0]) + zeros_gzip_member(b"\n") * 20)
    assert drops(read(p)[0]) == {"quarantine:decompression_bomb": 1}
    rows, counters = read(p, max_compression_ratio=5000)
    assert len(live(rows)) == 1 and not drops(rows) and counters["blank_lines"] == 20 * MIB
    with pytest.raises(ValueError):
        InputConfig(uri="x", max_compression_ratio=1)
    assert InputConfig(uri="x").max_compression_ratio == 500


@pytest.mark.parametrize("ext,pack", [(".gz", multi_gz), (".zst", multi_zst), (".bz2", multi_bz2)])
def test_every_codec_reads_multi_member_streams_and_detects_truncation(ext, pack, tmp_path):
    blob = pack(jsonl(LINES))
    (tmp_path / f"whole.jsonl{ext}").write_bytes(blob)
    rows, _ = read(tmp_path / f"whole.jsonl{ext}")
    assert [r["text"] for r in rows] == TEXTS and not drops(rows)

    cut = tmp_path / "cut" / f"cut.jsonl{ext}"
    cut.parent.mkdir()
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    rows, _ = read(cut)
    assert drops(rows) == {"quarantine:truncated_compressed_stream": 1}
    kept = [r["text"] for r in live(rows)]
    assert 20 < len(kept) < 100 and kept == TEXTS[: len(kept)]  # the lines before the cut, none invented
    assert rows[-1]["_drop"] == "quarantine:truncated_compressed_stream"


def test_corrupt_and_trailing_garbage_are_quarantined(tmp_path):
    (tmp_path / "notgzip.jsonl.gz").write_bytes(b"this was never compressed\n")
    (tmp_path / "trailing.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(jsonl(LINES[:10])) + b"junk!"
    )
    rows, _ = read(tmp_path)
    assert drops(rows) == {"quarantine:corrupt_compressed_stream": 2}
    assert len(live(rows)) == 10


def test_gzip_zero_padding_between_members_is_allowed(tmp_path):
    (tmp_path / "pad.jsonl.gz").write_bytes(
        gzip.compress(jsonl(LINES[:5])) + b"\0" * 100 + gzip.compress(jsonl(LINES[5:9]))
    )
    rows, _ = read(tmp_path / "pad.jsonl.gz")
    assert [r["text"] for r in rows] == TEXTS[:9]


def test_text_html_and_image_go_through_the_same_bounded_codecs(tmp_path):
    (tmp_path / "a.txt.bz2").write_bytes(bz2.compress(TEXTS[0].encode()))
    (tmp_path / "b.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(TEXTS[1].encode())[:-5])
    (tmp_path / "c.html.bz2").write_bytes(bz2.compress(article("Compressed page")))
    (tmp_path / "d.png.gz").write_bytes(gzip.compress((FIX / "images" / "phantom.png").read_bytes()))
    rows, _ = read(tmp_path, extractor="resiliparse")
    by = {r["source"]["uri"].rsplit("/", 1)[1]: r for r in rows}
    assert by["a.txt.bz2"]["text"] == TEXTS[0]
    assert by["b.txt.zst"]["_drop"] == "quarantine:truncated_compressed_stream"
    assert "Compressed page" in by["c.html.bz2"]["text"]
    assert by["d.png.gz"]["modality"] == "image" and by["d.png.gz"]["media"]["width"] > 0


def test_blank_and_whitespace_only_files_are_empty_files(tmp_path):
    (tmp_path / "ws.jsonl").write_bytes(b"\n  \n\t\n\r\n")
    (tmp_path / "blank.jsonl.gz").write_bytes(gzip.compress(b"\n" * 10_000))
    (tmp_path / "ws.txt").write_bytes(b"  \n\n \t ")
    (tmp_path / "ws.html").write_bytes(b"\n\n   \n")
    rows, _ = read(tmp_path)
    by = {r["source"]["uri"].rsplit("/", 1)[1]: r for r in rows}
    assert len(rows) == 4 and all(r["_drop"] == "quarantine:empty_file" for r in rows)
    assert "4 blank lines" in by["ws.jsonl"]["_detail"]
    assert "10000 blank lines" in by["blank.jsonl.gz"]["_detail"]
    assert "3 blank lines" in by["ws.txt"]["_detail"]
    assert "3 blank lines" in by["ws.html"]["_detail"]


def test_blank_lines_inside_a_file_are_counted_and_skipped_fast(tmp_path):
    blanks = 5000
    body = b"".join(line + b"\n" * blanks + b"  \r\n" for line in LINES * 10)  # 1,000 records
    (tmp_path / "gappy.jsonl.gz").write_bytes(gzip.compress(body, 6))
    t0 = time.perf_counter()
    rows, counters = read(tmp_path / "gappy.jsonl.gz")
    seconds = time.perf_counter() - t0
    assert [r["text"] for r in rows] == TEXTS * 10
    assert counters["blank_lines"] == 1000 * (blanks + 1)
    assert seconds < 2.5, f"{1000 * blanks} blank lines took {seconds:.1f}s"  # per-line work took ~3.5 s here


def test_blank_first_range_of_a_split_file_is_not_an_empty_file(tmp_path):
    body = b"\n" * 20_000 + jsonl(LINES) + b"\n\n"
    (tmp_path / "split.jsonl").write_bytes(body)
    rows, counters = read(tmp_path / "split.jsonl", split_bytes=4096)
    assert sorted(r["text"] for r in rows) == sorted(TEXTS) and not drops(rows)
    assert counters["blank_lines"] == 20_002


def test_bom_is_dropped_from_jsonl_and_text_and_utf16_text_decodes(tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(codecs.BOM_UTF8 + jsonl(LINES[:3]))
    (tmp_path / "bom.jsonl.gz").write_bytes(gzip.compress(codecs.BOM_UTF8 + jsonl(LINES[:3])))
    (tmp_path / "u8.txt").write_bytes(codecs.BOM_UTF8 + TEXTS[0].encode())
    (tmp_path / "u16le.txt").write_bytes(codecs.BOM_UTF16_LE + TEXTS[1].encode("utf-16-le"))
    (tmp_path / "u16be.txt").write_bytes(codecs.BOM_UTF16_BE + TEXTS[2].encode("utf-16-be"))
    rows, _ = read(tmp_path)
    by = Counter()
    for r in rows:
        by[r["source"]["uri"].rsplit("/", 1)[1]] += 1
        assert r["_drop"] is None and not r["text"].startswith("\ufeff")
    assert by == {"bom.jsonl": 3, "bom.jsonl.gz": 3, "u8.txt": 1, "u16le.txt": 1, "u16be.txt": 1}
    texts = {r["source"]["uri"].rsplit("/", 1)[1]: r["text"] for r in rows}
    assert texts["u8.txt"] == TEXTS[0] and texts["u16le.txt"] == TEXTS[1] and texts["u16be.txt"] == TEXTS[2]


def test_utf16_declaration_on_an_ascii_page_means_utf8(tmp_path):
    page = article("Wide claim").replace(b"<head>", b'<head><meta charset="utf-16">')
    page += b" " * (len(page) % 2)  # even length: the bytes would "decode" as UTF-16 into CJK noise
    text, codec = decode_html(page)
    assert codec == "utf-8" and "Wide claim" in text
    text, codec = decode_html(page, "UTF-16")  # an HTTP header that lies the same way (no NUL bytes)
    assert codec == "utf-8"
    wide = article("Really wide").decode().encode("utf-16-le")
    assert decode_html(wide, "utf-16")[1] == "utf-16-le" and "Really wide" in decode_html(wide, "utf-16")[0]
    (tmp_path / "wide.html").write_bytes(page)
    rows, _ = read(tmp_path / "wide.html", extractor="resiliparse")
    assert len(live(rows)) == 1 and "Wide claim" in rows[0]["text"]


def test_valid_utf8_wins_over_a_legacy_declaration_but_7bit_declarations_hold():
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>Größe ändern, naïve café</p></body></html>'
    text, codec = decode_html(page.encode("utf-8"))
    assert codec == "utf-8" and "Größe ändern, naïve café" in text
    text, codec = decode_html(page.encode("utf-8"), "windows-1252")
    assert codec == "utf-8" and "Ã" not in text
    # the same page really in Latin-1 keeps its declaration
    text, codec = decode_html(page.encode("latin-1"))
    assert codec == "cp1252" and "Größe" in text
    jp = '<html><head><meta charset="iso-2022-jp"></head><body><p>日本語の文章です。</p></body></html>'
    text, codec = decode_html(jp.encode("iso2022_jp"))
    assert codec == "iso2022_jp" and "日本語の文章です。" in text


def test_jsonl_ids_are_exact_literals(tmp_path):
    ids = [
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        ("18446744073709551615", "18446744073709551615"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("42", "42"),
        ("1.50", "1.50"),
        ("1e5", "1e5"),
        ("-0", "-0"),
        ("0", "0"),
        ("true", "true"),
        ('"abc 1"', "abc 1"),
        ('{"a": 1.0, "b": [12345678901234567890123, "x"]}', '{"a":1.0,"b":[12345678901234567890123,"x"]}'),
        ("[1, 2]", "[1,2]"),
    ]
    body = "".join(f'{{"id": {lit}, "text": "doc {i}", "k": {i}}}\n' for i, (lit, _) in enumerate(ids))
    (tmp_path / "ids.jsonl").write_text(body)
    rows, _ = read(tmp_path / "ids.jsonl", id_field="id")
    assert [r["id"] for r in rows] == [want for _, want in ids]
    assert [json.loads(r["meta"]) for r in rows] == [{"k": i} for i in range(len(ids))]


def test_parquet_ids_are_exact(tmp_path):
    from decimal import Decimal

    for name, arr, want in [
        ("i64", pa.array([2**63 - 1, -5], pa.int64()), ["9223372036854775807", "-5"]),
        ("u64", pa.array([2**64 - 1, 7], pa.uint64()), ["18446744073709551615", "7"]),
        (
            "dec",
            pa.array([Decimal("123456789012345678901234567890"), Decimal("1.50")], pa.decimal128(38, 2)),
            ["123456789012345678901234567890.00", "1.50"],
        ),
        ("bool", pa.array([True, False]), ["true", "false"]),
        ("str", pa.array(["x-1", "1"]), ["x-1", "1"]),
    ]:
        pq.write_table(pa.table({"id": arr, "text": ["a", "b"]}), tmp_path / f"{name}.parquet")
        rows, _ = read(tmp_path / f"{name}.parquet", id_field="id")
        assert [r["id"] for r in rows] == want, name


def test_images_and_audio_over_the_cap_are_not_loaded(tmp_path):
    img, snd = FIX / "images" / "horse.tiff", FIX / "audio" / "activated.wav"
    shutil.copy(img, tmp_path / img.name)
    shutil.copy(snd, tmp_path / snd.name)
    cap = 5000  # both files are larger
    rows, _ = read(tmp_path, max_record_bytes=cap, quarantine_raw_bytes=100)
    assert drops(rows) == {"quarantine:record_too_large": 2}
    assert all(len(r["_raw"]) == 100 and "max_record_bytes=5000" in r["_detail"] for r in rows)
    rows, _ = read(tmp_path)
    assert {r["modality"] for r in live(rows)} == {"image", "audio"}


def test_parquet_value_over_the_cap_and_row_group_bomb(tmp_path):
    big_doc = " ".join(TEXTS)  # ~100 KB of real text
    pq.write_table(pa.table({"text": [TEXTS[0], big_doc, TEXTS[1]]}), tmp_path / "values.parquet")
    rows, _ = read(tmp_path / "values.parquet", max_record_bytes=20_000)
    assert [r["_drop"] for r in rows] == [None, "quarantine:record_too_large", None]
    assert f"of {len(big_doc.encode())} bytes" in rows[1]["_detail"] and rows[1]["_raw"] is None
    pq.write_table(
        pa.table({"text": pa.array([TEXTS[0], big_doc, big_doc, TEXTS[1]]).dictionary_encode()}),
        tmp_path / "values.parquet",
    )  # an Arrow dictionary column: sizes come from its dictionary
    rows, _ = read(tmp_path / "values.parquet", max_record_bytes=20_000)
    assert [r["_drop"] for r in rows] == [
        None,
        "quarantine:record_too_large",
        "quarantine:record_too_large",
        None,
    ]
    assert [r["text"] for r in live(rows)] == TEXTS[:2]

    path = tmp_path / "bomb" / "groups.parquet"
    path.parent.mkdir()
    good = pa.table({"text": TEXTS[:5]})
    with pq.ParquetWriter(path, good.schema, compression="zstd", use_dictionary=False) as w:
        w.write_table(good)
        w.write_table(pa.table({"text": ["a" * (64 * MIB)]}))  # 64 MiB from a few KB
        w.write_table(pa.table({"text": TEXTS[5:8]}))
    rows, _ = read(path, max_record_bytes=128 * MIB)
    assert [r["text"] for r in live(rows)] == TEXTS[:8]
    assert drops(rows) == {"quarantine:decompression_bomb": 1}
    assert "row group 1 (1 rows)" in next(r["_detail"] for r in rows if r["_drop"])


def test_warc_content_encoded_body_over_the_cap_and_other_codings(tmp_path):
    big = article("Big page", 100)  # ~120 KB decoded
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    records = [
        warc_record(
            "response",
            "http://gz.example/",
            http_page(gzip.compress(big), "Content-Encoding: x-gzip\r\n"),
            "application/http",
        ),
        warc_record("response", "http://ok.example/", http_page(article("Small page")), "application/http"),
        warc_record(
            "response",
            "http://raw.example/",
            http_page(
                deflated.compress(article("Raw deflate")) + deflated.flush(), "Content-Encoding: deflate\r\n"
            ),
            "application/http",
        ),
        warc_record(
            "response",
            "http://zlib.example/",
            http_page(zlib.compress(article("Zlib deflate")), "Content-Encoding: deflate\r\n"),
            "application/http",
        ),
    ]
    (tmp_path / "cap.warc.gz").write_bytes(b"".join(gzip.compress(r) for r in records))
    rows, _ = read(tmp_path / "cap.warc.gz", max_record_bytes=60_000, extractor="resiliparse")
    assert [r["_drop"] for r in rows] == ["quarantine:record_too_large", None, None, None]
    assert "HTTP body" in rows[0]["_detail"] and "60000" in rows[0]["_detail"]
    assert "Raw deflate" in rows[2]["text"] and "Zlib deflate" in rows[3]["text"]


def test_parse_http_bounds_every_coding():
    from stages.readers.compression import DecompressionError

    pytest.importorskip("brotli")
    import brotli

    h = parse_http(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n" + brotli.compress(b"<p>br body</p>"))
    assert h.payload == b"<p>br body</p>"
    for coding, body in [("br", brotli.compress(b"\0" * (64 * MIB))), ("gzip", zeros_gzip_member() * 64)]:
        with pytest.raises(DecompressionError) as e:
            parse_http(b"HTTP/1.1 200 OK\r\nContent-Encoding: " + coding.encode() + b"\r\n\r\n" + body)
        assert e.value.reason in ("record_too_large", "decompression_bomb")


def test_warc_zst_and_bz2_archives_are_read(tmp_path):
    src = FIX / "web" / "cc_whirlwind.warc.gz"
    plain = gzip.decompress(src.read_bytes())
    (tmp_path / "a.warc.zst").write_bytes(zstandard.ZstdCompressor().compress(plain))
    (tmp_path / "b.warc.bz2").write_bytes(bz2.compress(plain))
    want = Counter(r["_drop"] or r["modality"] for r in read(src, extractor="resiliparse")[0])
    for name in ("a.warc.zst", "b.warc.bz2"):
        got = Counter(r["_drop"] or r["modality"] for r in read(tmp_path / name, extractor="resiliparse")[0])
        assert got == want, name


def test_zip_members_are_read_by_their_own_readers(tmp_path):
    import fsspec

    planted = fixture_archive(tmp_path / "a.zip")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip at all")
    rows, _ = read(tmp_path, extractor="resiliparse")
    archive = str(tmp_path / "a.zip")
    per_member = Counter()
    for r in rows:
        uri = r["source"]["uri"]
        if uri.startswith("zip://"):
            member, _, outer = uri[len("zip://") :].partition("::")
            assert outer == archive
            per_member[member] += 1
    assert per_member == planted
    d = drops(rows)
    assert d["quarantine:unsupported_format"] == 2  # the nested archive and the unknown extension
    assert d["quarantine:unreadable_archive"] == 1  # broken.zip
    assert len({r["id"] for r in rows}) == len(rows)
    by_member = {r["source"]["uri"]: r for r in rows}
    assert by_member[f"zip://img/rocket_small.jpg::{archive}"]["text"] == "A rocket on its launch pad."
    assert by_member[f"zip://audio/calling.flac::{archive}"]["text"] == "Calling."
    assert by_member[f"zip://data/docs_a.jsonl::{archive}"]["source"]["format"] == "jsonl"
    # the chained URI opens the member with fsspec
    with fsspec.open(f"zip://notes/readme.txt::{archive}", "rb") as f:
        assert f.read() == b"A plain text document inside the archive."
    texts = [r["text"] for r in rows if r["source"]["uri"] == f"zip://data/docs_a.jsonl::{archive}"]
    assert texts == TEXTS
    # a member task read on its own opens its archive itself
    from stages.readers.base import ReadTask

    cfg = InputConfig(uri=archive)
    for fmt, member, n in [("jsonl", "data/docs_a.jsonl", 100), ("parquet", "data/deflated.parquet", 50)]:
        task = ReadTask(uri=f"zip://{member}::{archive}", format=fmt, size=0)
        got = [r for t in load_readers()[fmt](cfg, "test").read(task) for r in t.to_pylist()]
        assert len(got) == n and all(r["_drop"] is None for r in got)


def test_zip_planning_never_opens_the_archive(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"\x00" * 10)
    (tmp_path / "empty.zip").write_bytes(b"")
    cfg = InputConfig(uri=str(tmp_path))
    tasks, unclaimed = plan_reads(list_inputs(str(tmp_path)), cfg, "t")
    assert [t.format for t in tasks] == ["zip", "zip"] and not unclaimed
    rows, _ = read(tmp_path)
    assert drops(rows) == {"quarantine:unreadable_archive": 2}
    # an explicit format applies to the members; the archive still goes to the zip reader
    with zipfile.ZipFile(tmp_path / "docs.zip", "w") as z:
        z.writestr("part.dat", jsonl(LINES[:7]))
    rows, _ = read(tmp_path / "docs.zip", "jsonl")
    assert [r["text"] for r in rows] == TEXTS[:7]


def test_zip_member_headers_are_checked_and_cannot_lie(tmp_path):
    text = TEXTS[0].encode()
    lines = b'{"text": "short record"}\n' * 4
    cap = len(text) + 5
    entries = [
        (
            "big.txt",
            8,
            deflate(text),
            zlib.crc32(text),
            cap + 1,
            0,
        ),  # declares more than the cap: not inflated
        ("short.txt", 8, deflate(text), zlib.crc32(text), len(text) + 3, 0),  # declares more than it holds
        ("badcrc.jsonl", 8, deflate(lines), zlib.crc32(lines) ^ 1, len(lines), 0),
        ("secret.txt", 8, deflate(text), zlib.crc32(text), len(text), 1),  # encrypted flag
        ("lzma.txt", 14, b"\0" * 10, 0, 10, 0),  # LZMA: not supported
        ("ok.txt", 0, text, zlib.crc32(text), len(text), 0),
        ("zstd.txt", 93, zstandard.ZstdCompressor().compress(text), zlib.crc32(text), len(text), 0),
    ]
    (tmp_path / "h.zip").write_bytes(raw_zip(entries))
    rows, _ = read(tmp_path / "h.zip", max_record_bytes=cap)
    got = Counter((r["source"]["uri"].split("::")[0][len("zip://") :], r["_drop"]) for r in rows)
    assert got == Counter(
        {
            ("big.txt", "quarantine:record_too_large"): 1,
            ("short.txt", "quarantine:corrupt_compressed_stream"): 1,
            ("badcrc.jsonl", None): 4,  # the lines read before the check at the end are kept
            ("badcrc.jsonl", "quarantine:corrupt_compressed_stream"): 1,
            ("secret.txt", "quarantine:encrypted_member"): 1,
            ("lzma.txt", "quarantine:unsupported_compression"): 1,
            ("ok.txt", None): 1,
            ("zstd.txt", None): 1,
        }
    )
    assert all("CRC" in r["_detail"] for r in rows if r["_drop"] and "badcrc" in r["source"]["uri"])


def test_overlapping_zip_members_are_bombs(tmp_path):
    text = TEXTS[0].encode()
    entry = ("a.txt", 8, deflate(text), zlib.crc32(text), len(text), 0)
    (tmp_path / "overlap.zip").write_bytes(raw_zip([entry, ("b.txt", *entry[1:])], offsets=[0, 0]))
    rows, _ = read(tmp_path / "overlap.zip")
    assert [(r["source"]["uri"][:11], r["_drop"]) for r in rows] == [
        ("zip://a.txt", None),
        ("zip://b.txt", "quarantine:decompression_bomb"),
    ]


def test_member_uris_use_the_member_name_for_extensions():
    from stages.readers.base import extension_of, strip_compression

    uri = "zip://dir/a.b/docs.jsonl.gz::s3://bucket/x.zip"
    assert extension_of(uri) == ".jsonl"
    assert strip_compression(uri) == ("zip://dir/a.b/docs.jsonl::s3://bucket/x.zip", "gzip")
    assert strip_compression("zip://dir/a.txt::s3://bucket/x.zip") == (
        "zip://dir/a.txt::s3://bucket/x.zip",
        None,
    )
    assert extension_of("s3://bucket/x.zip") == ".zip"
    assert extension_of("/d/x.jsonl.bz2") == ".jsonl"


def test_zip_members_read_from_s3(s3_server, tmp_path):
    planted = fixture_archive(tmp_path / "a.zip")
    uri = s3_server.upload(tmp_path / "a.zip", f"zip-{uuid.uuid4().hex[:6]}") + "a.zip"
    rows, _ = read(uri, extractor="resiliparse", storage_options=s3_server.options("reader"))
    per_member = Counter(r["source"]["uri"].split("::")[0][len("zip://") :] for r in rows)
    assert per_member == planted
    assert all(r["source"]["uri"].endswith("::" + uri) for r in rows)
    local, _ = read(tmp_path / "a.zip", extractor="resiliparse")
    assert sorted(str(r["text"]) for r in rows) == sorted(str(r["text"]) for r in local)


def test_zstd_frame_walker_tells_cut_frames_from_complete_ones():
    from stages.readers.compression import ZstdFrameWalker

    c = zstandard.ZstdCompressor(write_checksum=True)
    parts = [
        c.compress(jsonl(LINES[:30])),
        (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"skip!",
        zstandard.ZstdCompressor(write_content_size=False).compress(jsonl(LINES[30:])),
        c.compress(b""),
    ]
    data = b"".join(parts)
    ends = {sum(len(p) for p in parts[:i]) for i in range(len(parts) + 1)}
    for cut in range(len(data) + 1):
        w = ZstdFrameWalker()
        w.feed(data[:cut])
        assert w.complete == (cut in ends), cut
    w = ZstdFrameWalker()
    for i in range(len(data)):  # byte by byte, as a stream may deliver it
        w.feed(data[i : i + 1])
        assert w.complete == (i + 1 in ends)
