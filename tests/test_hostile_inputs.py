"""Hostile inputs and layouts: repeated ids, folders that are not ours, links, thousands of tiny files, signals,
credentials in URIs, impossible params — and, in the second half, bombs and broken encodings.

Every case counts what it planted and finds each planted record exactly once in what the run published (data,
quarantine or drop log, read from the files the manifest lists), never by the report's own arithmetic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from refinery.commit import OutputExistsError, verify

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures" / "foundation"


def real_texts() -> list[str]:
    """100 real documents (lingua-py sentences, Apache-2.0; tests/fixtures/foundation/README.md)."""
    return [json.loads(line)["text"] for line in (FIX / "docs_a.jsonl").read_text(encoding="utf-8").splitlines()]


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
            uri, off = (r["source_uri"], r["source_offset"]) if kind == "droplog" else (r["source"]["uri"], r["source"]["offset"])
            c[(Path(uri).name, off)] += 1
    return c


def run_cli(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: float = 300,
            prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", **(env or {})}
    e.pop("RAY_ADDRESS", None)
    return subprocess.run([*(prefix or []), sys.executable, "-m", "jobs.cli", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------------------------
# Repeated ids


def plant_shards(folder: Path, shards: int = 4, per_shard: int = 256) -> dict[tuple[str, int], str]:
    """Shards whose ids restart at 0 (numbered per shard, as exports often are); returns location → text."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = real_texts()
    planted = {}
    for k in range(shards):
        recs = [{"id": str(i), "text": f"shard {k} " + long_text(texts, k * per_shard + i)} for i in range(per_shard)]
        for off, r in zip(write_jsonl(folder / f"shard-{k}.jsonl", recs), recs, strict=True):
            planted[(f"shard-{k}.jsonl", off)] = r["text"]
    return planted


def dup_cfg(inp: str, out: str, **input_extra) -> dict:
    return {"input": {"uri": inp, "id_field": "id", **input_extra},
            "output": {"uri": out, "max_batch_mb": 1}, "stages": [{"stage": "normalize"}]}


def test_repeated_ids_lose_nothing_and_are_counted(run_config, tmp_path):
    planted = plant_shards(tmp_path / "in")
    res = run_config(dup_cfg(str(tmp_path / "in"), str(tmp_path / "out")))
    rows = published(tmp_path / "out")
    got = {(Path(r["source"]["uri"]).name, r["source"]["offset"]): r["text"] for r in rows["data"]}
    want = {k: unicodedata.normalize("NFC", v) for k, v in planted.items()}  # the `normalize` stage's form
    assert len(rows["data"]) == 1024 and got == want  # every planted record, once, with its own text
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len([f for f in manifest["files"] if f["kind"] == "data"]) > 1  # several writer batches held id "0"
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
    from jobs.pipeline import DuplicateIdsError

    planted = plant_shards(tmp_path / "in", shards=3, per_shard=40)
    res = run_config(dup_cfg(str(tmp_path / "in"), str(tmp_path / "q"), on_duplicate_id="quarantine"))
    rows = published(tmp_path / "q")
    assert locations(rows) == Counter(planted.keys())  # each record exactly once, kept or quarantined
    assert {Path(r["source"]["uri"]).name for r in rows["data"]} == {"shard-0.jsonl"}  # the first in input order
    assert Counter(r["reason"] for r in rows["quarantine"]) == {"duplicate_id": 80}
    assert res.report["quarantined"] == {"duplicate_id": 80} and res.report["duplicate_ids"] == 80
    with pytest.raises(DuplicateIdsError, match="80 duplicate id"):
        run_config(dup_cfg(str(tmp_path / "in"), str(tmp_path / "e"), on_duplicate_id="error"))
    assert not (tmp_path / "e" / "_SUCCESS").exists()


def test_dedup_judges_rows_not_ids(run_config, tmp_path):
    """Two rows share id "7": one is a copy of another document, the other is unique. Only the copy goes."""
    texts = real_texts()
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"id": "1", "text": texts[0]}, {"id": "7", "text": texts[1]}])
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"id": "7", "text": texts[0]}, {"id": "9", "text": texts[2]}])
    for stage in ("exact_dedup", "fuzzy_dedup"):
        out = tmp_path / f"out-{stage}"
        run_config({"input": {"uri": str(tmp_path / "in"), "id_field": "id"}, "output": {"uri": str(out)},
                    "stages": [{"stage": stage, "params": {"priority": ["earliest"]}}]})
        rows = published(out)
        kept = sorted(r["text"] for r in rows["data"])
        assert kept == sorted([texts[0], texts[1], texts[2]]), stage
        assert [(Path(r["source_uri"]).name, r["id"]) for r in rows["droplog"]] == [("b.jsonl", "7")], stage


# ---------------------------------------------------------------------------------------------------------------
# The output folder is ours or nobody's


def small_input(folder: Path, n: int = 20) -> dict[tuple[str, int], str]:
    folder.mkdir(parents=True, exist_ok=True)
    recs = [{"text": t} for t in real_texts()[:n]]
    return {("docs.jsonl", o): r["text"] for o, r in zip(write_jsonl(folder / "docs.jsonl", recs), recs, strict=True)}


def test_a_folder_that_is_not_ours_is_refused_and_untouched(run_config, tmp_path):
    small_input(tmp_path / "in")
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "important.csv").write_text("a,b\n1,2\n")
    (out / "notes.txt").write_text("mine")
    for if_exists in ("error", "overwrite"):
        with pytest.raises(OutputExistsError, match="holds no refinery output"):
            run_config({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(out), "if_exists": if_exists}})
    assert (out / "data" / "important.csv").read_text() == "a,b\n1,2\n" and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.rglob("*")) == ["data", "important.csv", "notes.txt"]


def test_overwrite_replaces_only_what_a_manifest_lists(run_config, tmp_path):
    planted = small_input(tmp_path / "in")
    out = tmp_path / "out"
    run_config({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(out)}})
    first = {f["path"] for f in json.loads((out / "manifest.json").read_text())["files"]}
    (out / "data" / "mine.csv").write_text("keep me")  # a user's file inside a refinery output
    run_config({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(out), "if_exists": "overwrite"},
                "stages": [{"stage": "length_filter", "params": {"min_chars": 200}}]})
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
    run_config({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(out)},
                "stages": [{"stage": "normalize", "params": {"form": "NFKC"}}]})
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
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["docs.jsonl"]  # nothing deleted, nothing added


# ---------------------------------------------------------------------------------------------------------------
# Input layouts


def test_symlinked_folders_are_followed_once(run_config, tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    texts = real_texts()
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
    texts = real_texts()
    n = 3000
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
    cfg.write_text(yaml.safe_dump({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(tmp_path / "out")}}))
    # root reads anything: drop the capabilities that let it ignore file permissions
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    p = run_cli(["run", str(cfg)], prefix=prefix)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [f"refinery: error: cannot read input {secret}: permission denied (check the file's permissions)"]
    assert "Traceback" not in p.stdout + p.stderr and "credentials" not in p.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_end_cleanly(tmp_path, sig):
    plant_shards(tmp_path / "in", shards=2, per_shard=64)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dup_cfg(str(tmp_path / "in"), str(tmp_path / "out"))))
    e = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "REFINERY_TEST_WRITE_DELAY": "5"}
    e.pop("RAY_ADDRESS", None)
    p = subprocess.Popen([sys.executable, "-m", "jobs.cli", "run", str(cfg)], cwd=ROOT, env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "out" / "_work").exists():
        time.sleep(0.2)
    time.sleep(4)  # inside the run (Ray started, writers sleeping)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err[-2000:]
    last = [ln for ln in err.splitlines() if ln.startswith("refinery:")]
    assert last == [f"refinery: stopped by {sig.name}; the run did not commit, so nothing of it is published "
                    "(run it again to redo it)"]
    assert "SIGABRT" not in err and "*** " not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "_SUCCESS").exists()


# ---------------------------------------------------------------------------------------------------------------
# Errors that must not leak or pass


def test_credentials_in_uris_are_refused_and_never_echoed(tmp_path):
    small_input(tmp_path / "in")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"input": {"uri": "s3://AKIAHOSTILE:S3cr3tValue@bucket/crawl/"},
                                   "output": {"uri": "s3://AKIAHOSTILE:S3cr3tValue@bucket/out/"}}))
    p = run_cli(["run", str(cfg)])
    assert p.returncode == 2
    assert "S3cr3tValue" not in p.stdout + p.stderr and "AKIAHOSTILE" not in p.stdout + p.stderr
    assert "input.uri (line" in p.stderr and "output.uri (line" in p.stderr and "credentials inside a URI" in p.stderr
    from refinery.redact import scrub

    assert scrub("list https://bob:hunter2@host/x failed", []) == "list https://***@host/x failed"


@pytest.mark.parametrize("stage,params,where", [
    ("langid", {"min_score": -3}, "min_score"),
    ("langid", {"min_score": {"en": 1.5}}, "min_score"),
    ("gopher_quality", {"max_bullet_lines_ratio": 1.7}, "max_bullet_lines_ratio"),
    ("gopher_quality", {"min_doc_words": -1}, "min_doc_words"),
    ("gopher_repetition", {"per_language": {"de": {"dup_para_frac": -0.1}}}, "per_language.de.dup_para_frac"),
    ("fineweb_quality", {"line_punct_thr": -0.5}, "line_punct_thr"),
    ("c4_quality", {"min_num_sentences": -4}, "min_num_sentences"),
    ("normalize", {"max_blank_lines": -2}, "max_blank_lines"),
    ("length_filter", {"min_chars": -5}, "min_chars"),
])
def test_impossible_params_are_config_errors(stage, params, where):
    from refinery.config import ConfigError, parse_config

    text = yaml.safe_dump({"input": {"uri": "in"}, "output": {"uri": "out"}, "stages": [{"stage": stage, "params": params}]})
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml")
    assert f"stages[0].params.{where}" in e.value.render()


def test_a_lost_or_doubled_part_cannot_pass():
    """The commit compares what the readers produced with what the parts hold, and `verify` (even --quick)
    rejects a manifest that lists a part twice, the signature of the old id-named parts overwriting each other."""
    from jobs.pipeline import check_files
    from refinery.accounting import build_report, check_accounting

    files = [{"path": "final/data/part-a.parquet", "rows": 256}, {"path": "final/data/part-a.parquet", "rows": 256}]
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
    body = json.dumps({"run_id": "r", "files": [entry, entry], "counts": {"rows_out": 4, "rows_read": 4}}).encode()
    (out / "manifest.json").write_bytes(body)
    (out / "_SUCCESS").write_text(json.dumps({"run_id": "r", "manifest_sha256": hashlib.sha256(body).hexdigest()}))
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
                out[s["type"]].append(r["text"][s["start"]:s["end"]])
    return out


def plant_pii(folder: Path) -> tuple[dict[tuple[str, int], str], list[str]]:
    """Good records whose meta holds PII, and broken records (quarantined) that hold PII."""
    folder.mkdir(parents=True, exist_ok=True)
    pii = real_pii_values()
    emails, phones, cards = pii["EMAIL_ADDRESS"][:12], pii["PHONE_NUMBER"][:12], pii["CREDIT_CARD"][:6]
    texts = real_texts()
    recs, lines = [], []
    for i in range(12):
        recs.append({"text": texts[i], "author_email": emails[i], "phone": phones[i],
                     "url": f"https://shop.example.org/p?email={emails[(i + 1) % 12]}&ref={i}",
                     "title": f"Contact {emails[(i + 2) % 12]} for details"})
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
    from jobs.cmd_audit_pii import audit

    planted, secrets = plant_pii(tmp_path / "in")
    cfg = {"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(tmp_path / "out")},
           "stages": [{"stage": "pii", "params": {"ner_model": None}}]}
    if keep_raw is not None:
        cfg["quarantine"] = {"keep_raw": keep_raw}
    res = run_config(cfg)
    rows = published(tmp_path / "out")
    assert locations(rows) == Counter(planted.keys())  # 12 kept, 6 quarantined
    assert len(rows["data"]) == 12 and Counter(r["reason"] for r in rows["quarantine"]) == {"malformed_json": 6}
    everything = json.dumps([rows, res.report], default=repr, ensure_ascii=False)
    everything += (tmp_path / "out" / "manifest.json").read_text() + (tmp_path / "out" / "report.json").read_text()
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
    from jobs.cmd_audit_pii import audit

    planted, secrets = plant_pii(tmp_path / "in")
    run_config({"input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(tmp_path / "out")}})
    rows = published(tmp_path / "out")
    assert locations(rows) == Counter(planted.keys())
    assert all(r["raw"] for r in rows["quarantine"])  # no pii stage: the record is kept verbatim for inspection
    verdict = audit(str(tmp_path / "out"))
    assert not verdict["clean"] and verdict["by_column"]["meta"]["residual"]["EMAIL_ADDRESS"] >= 12
    assert not verdict["quarantine"]["clean"]
    assert not any(s in json.dumps(verdict) for s in secrets)  # the audit names rows, never values


# ---------------------------------------------------------------------------------------------------------------
# Bombs, broken streams and encodings through the whole job (the readers' own tests, with peak memory measured
# in a child process for every bomb, are in tests/test_hostile_readers.py)


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

    from tests.test_hostile_readers import BOMBS, LINES, article

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
        article("Señor Müller’s café").replace(b"<head>", b'<head><meta charset="iso-8859-1">'))
    expect["charset"] = (2, Counter())

    res = run_config({"input": {"uri": str(inp), "extractor": "resiliparse"}, "output": {"uri": str(tmp_path / "out")}})
    rows = published(tmp_path / "out")
    got: dict[str, tuple[int, Counter]] = {}
    for kind in ("data", "quarantine"):
        for r in rows[kind]:
            top = Path(r["source"]["uri"].split("::")[-1]).relative_to(inp).parts[0]
            n, reasons = got.get(top, (0, Counter()))
            got[top] = (n + 1, reasons) if kind == "data" else (n, reasons + Counter([r["reason"]]))
    assert got == expect
    assert not rows["droplog"]  # nothing skipped or dropped: every record is kept or quarantined
    texts = {Path(r["source"]["uri"]).name: r["text"] for r in rows["data"] if r["source"]["uri"].endswith(".html")}
    assert "Wide claim" in texts["ascii_says_utf16.html"] and "Señor Müller’s café" in texts["utf8_says_latin1.html"]
    assert res.report["input"]["blank_lines"] >= 150 + 4 + 500
    assert all("\x00" not in (r["detail"] or "") for r in rows["quarantine"])


def test_ids_are_kept_exactly_as_written(run_config, tmp_path):
    (tmp_path / "in").mkdir()
    texts = real_texts()
    ids = ["1", '"1"', "123456789012345678901234567890", "1.50"]  # as written in the JSON
    lines = ['{"id": ' + i + ', "text": ' + json.dumps(t) + "}" for i, t in zip(ids, texts, strict=False)]
    (tmp_path / "in" / "ids.jsonl").write_text("\n".join(lines) + "\n")
    res = run_config({"input": {"uri": str(tmp_path / "in"), "id_field": "id"}, "output": {"uri": str(tmp_path / "out")}})
    rows = published(tmp_path / "out")
    assert sorted(r["id"] for r in rows["data"]) == sorted(["1", "1", "123456789012345678901234567890", "1.50"])
    assert res.report["duplicate_ids"] == 1  # `1` and `"1"` are the same id: both kept, the repeat counted
