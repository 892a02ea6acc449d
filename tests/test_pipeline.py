"""End to end in local mode on a real Ray: commit, accounting, quarantine, idempotence, crash + rerun."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from refinery.accounting import check_accounting
from refinery.commit import verify
from tests.conftest import read_output
from tests.job_process import kill_job, start_job
from tests.plugins import pause

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures" / "foundation"
N_DOCS = 300  # 100 jsonl + 100 jsonl.gz + 50 jsonl.zst + 50 parquet


def _cfg(inp, out, stages=None, **extra):
    cfg = {
        "input": {"uri": str(inp), "exclude": ["README.md", "LICENSE*"]},
        "output": {"uri": str(out), "target_shard_mb": 0.05},
        "stages": stages or [],
    }
    for k, v in extra.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


STAGES = [
    {"stage": "normalize"},
    {"stage": "length_filter", "params": {"min_chars": 700, "max_chars": 5000}},
]


def _check_counts(result, expected_read):
    table, manifest = read_output(result.output_uri)
    data_rows = sum(f["rows"] for f in manifest["files"] if f["kind"] == "data")
    assert data_rows == table.num_rows == result.report["rows_out"] == manifest["counts"]["rows_out"]
    assert result.report["rows_read"] == expected_read
    assert check_accounting(result.report) == []
    for s in result.report["stages"]:
        assert s["rows_in"] == s["rows_out"] + sum(s["dropped"].values())
    total = (
        result.report["rows_out"]
        + result.report["dropped_total"]
        + sum(result.report["quarantined"].values())
    )
    assert total == result.report["rows_read"]
    assert verify(result.output_uri) == []
    return table, manifest


def test_all_formats_commit_with_full_accounting(run_config, tmp_path):
    res = run_config(_cfg(FIX, tmp_path / "out", STAGES))
    assert res.status == "committed"
    table, manifest = _check_counts(res, N_DOCS)
    lf = res.report["stages"][1]
    assert lf["rows_in"] == N_DOCS and set(lf["dropped"]) <= {"too_few_chars", "too_many_chars"}
    assert lf["dropped"].get("too_few_chars", 0) > 0  # real short documents exist in the fixture
    lengths = [len(t) for t in table["text"].to_pylist()]
    assert min(lengths) >= 700 and max(lengths) <= 5000
    # every format made it through
    fmts = {s["format"] for s in table["source"].to_pylist()}
    assert fmts == {"jsonl", "parquet"}
    uris = {Path(s["uri"]).name for s in table["source"].to_pylist()}
    assert uris == {"docs_a.jsonl", "docs_b.jsonl.gz", "docs_c.jsonl.zst", "docs_d.parquet"}
    # manifest records what a data engineer needs to audit the run
    assert manifest["config_hash"] and manifest["code_version"] and len(manifest["inputs"]) == 4
    assert all(f["sha256"] and f["bytes"] > 0 for f in manifest["files"])
    assert all(f["path"].startswith(("data/", "droplog/")) for f in manifest["files"])
    # the drop log says which rows went and why
    droplog = pq.read_table(
        Path(res.output_uri) / next(f["path"] for f in manifest["files"] if f["kind"] == "droplog")
    )
    assert set(droplog["stage"].to_pylist()) == {"length_filter"}
    assert not set(droplog["id"].to_pylist()) & set(table["id"].to_pylist())
    assert not (Path(res.output_uri) / "_work").exists() or not any(
        (Path(res.output_uri) / "_work").iterdir()
    )
    # each of the 4 files was read by its own Ray task: Ray Data did not bundle the read items into one task
    # (it does when an operator fused with the read asks for a row-count batch size)
    assert res.report["read_tasks"] == 4 and res.report["read_ray_tasks"] == 4
    assert res.report["io_seconds"]["read"] > 0 and res.report["io_seconds"]["write"] > 0


def test_plain_run_gets_an_offline_html_report(run_config, tmp_path):
    from jobs.run import write_html_report
    from refinery.config import parse_config

    cfg = _cfg(FIX, tmp_path / "out", STAGES)
    res = run_config(cfg)
    uri = write_html_report(parse_config(yaml.safe_dump(cfg)), res)
    page = Path(uri).read_text()
    assert uri == f"{res.output_uri}/report.html" and f"<h1>Run {res.run_id}</h1>" in page
    dropped = res.report["stages"][1]["dropped"]["too_few_chars"]
    assert "too_few_chars" in page and str(dropped) in page  # the funnel shows the real drop count
    assert not any(
        x in page for x in ("<script", "src=", "href=", "@import")
    )  # self-contained, readable offline
    assert verify(res.output_uri) == []  # the page sits outside data/ and changes nothing verify checks


def test_empty_stage_list_reads_unifies_and_writes(run_config, tmp_path):
    res = run_config(_cfg(FIX, tmp_path / "out"))
    table, _ = _check_counts(res, N_DOCS)
    assert table.num_rows == N_DOCS
    assert table.column_names == ["id", "text", "modality", "media", "source", "meta", "run_id"]
    assert set(table["modality"].to_pylist()) == {"text"}


def test_every_bad_case_in_one_run(run_config, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    good = (FIX / "docs_a.jsonl").read_bytes().splitlines(keepends=True)[:20]
    bad = [
        b'{"text": "unterminated\n',
        b'{"text": "bad \xff utf8"}\n',
        b'{"text": 42}\n',
        b'{"x": 1}\n',
        b'{"text": "' + b"y" * 20000 + b'"}\n',
    ]
    (inp / "mixed.jsonl").write_bytes(b"".join(good[:10] + bad + good[10:]))
    import gzip

    blob = gzip.compress(b"".join(good))
    (inp / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (inp / "empty.jsonl").write_bytes(b"")
    res = run_config(_cfg(inp, tmp_path / "out", input={"max_record_bytes": 10000}))
    table, manifest = read_output(res.output_uri)
    q = res.report["quarantined"]
    assert q == {
        "malformed_json": 1,
        "invalid_utf8": 1,
        "text_not_string": 1,
        "missing_text_field": 1,
        "record_too_large": 1,
        "truncated_compressed_stream": 1,
        "empty_file": 1,
    }
    texts = table["text"].to_pylist()
    good_texts = [json.loads(line)["text"] for line in good]
    assert all(t in texts for t in good_texts)  # every good record of mixed.jsonl is in the output
    truncated_kept = table.num_rows - len(good_texts)
    assert 0 < truncated_kept < 20  # the readable part of the truncated gzip is kept
    qfiles = [f for f in manifest["files"] if f["kind"] == "quarantine"]
    qt = pq.read_table(Path(res.output_uri) / qfiles[0]["path"]) if len(qfiles) == 1 else None
    if qt is not None:
        assert sorted(qt["reason"].to_pylist()) == sorted(q)
        assert all(s["uri"] for s in qt["source"].to_pylist())
    assert res.report["rows_read"] == table.num_rows + sum(q.values())


def test_same_config_same_input_same_rows_and_noop_rerun(run_config, tmp_path):
    a = run_config(_cfg(FIX, tmp_path / "a", STAGES))
    b = run_config(_cfg(FIX, tmp_path / "b", STAGES))
    ta, _ = read_output(a.output_uri)
    tb, _ = read_output(b.output_uri)
    rows = lambda t: sorted(zip(t["id"].to_pylist(), t["text"].to_pylist(), strict=True))  # noqa: E731
    assert rows(ta) == rows(tb)
    again = run_config(_cfg(FIX, tmp_path / "a", STAGES))
    assert again.status == "noop" and again.run_id == a.run_id


def test_committed_output_of_another_run_is_protected(run_config, tmp_path):
    run_config(_cfg(FIX, tmp_path / "out", STAGES))
    from refinery.commit import OutputExistsError

    with pytest.raises(OutputExistsError):
        run_config(_cfg(FIX, tmp_path / "out", []))
    res = run_config(_cfg(FIX, tmp_path / "out", [], output={"if_exists": "overwrite"}))
    assert res.status == "committed" and res.report["rows_out"] == N_DOCS
    assert verify(res.output_uri) == []


def test_annotate_keeps_rows_and_flags_them(run_config, tmp_path):
    stages = [{"stage": "length_filter", "params": {"min_chars": 700, "action": "annotate"}}]
    res = run_config(_cfg(FIX, tmp_path / "out", stages))
    table, _ = read_output(res.output_uri)
    assert table.num_rows == N_DOCS and res.report["dropped_total"] == 0
    flagged = [f for f in table["flagged"].to_pylist() if f]
    assert flagged and all(f == ["length_filter:too_few_chars"] for f in flagged)
    short = sum(1 for t in table["text"].to_pylist() if len(t) < 700)
    assert len(flagged) == short == res.report["stages"][0]["flagged"]["too_few_chars"]


def test_kill_during_write_leaves_nothing_published_and_rerun_matches(run_config, tmp_path):
    inp = tmp_path / "in"
    shutil.copytree(FIX, inp)
    out = tmp_path / "out"
    cfg_path = tmp_path / "job.yaml"
    cfg = _cfg(inp, out, [*STAGES, pause(2)], ray={"num_cpus": 2})  # slow batches: the kill lands mid-write
    cfg["output"]["target_shard_mb"] = 0.01
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = start_job(cfg_path)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if list(out.glob("_work/*/s*/data/part-*.parquet")):
                break
            assert proc.poll() is None, "job ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("no staged part appeared")
    finally:
        kill_job(proc)  # the driver and its local Ray at once, as a crashed machine would
    assert not (out / "_SUCCESS").exists()
    assert not (out / "data").exists() and not (out / "manifest.json").exists()
    visible = [
        p
        for p in out.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(out).parts)
    ]
    assert visible == []
    rerun = run_config(cfg)
    clean = run_config(_cfg(inp, tmp_path / "clean", STAGES))
    t1, _ = read_output(rerun.output_uri)
    t2, _ = read_output(clean.output_uri)
    assert sorted(zip(t1["id"].to_pylist(), t1["text"].to_pylist(), strict=True)) == sorted(
        zip(t2["id"].to_pylist(), t2["text"].to_pylist(), strict=True)
    )
    assert not list(out.glob("_work/*/s*/data/*"))  # staging of the killed run was cleaned


class _MarkLongest:
    """The toy stage's output: one checkpoint slice it saved, with `_drop` on all but the kept ids."""

    def __init__(self, keep: set[str], label: str, options: dict):
        self.keep, self.label, self.options = keep, label, options

    def __call__(self, uri: str) -> pa.Table:
        from refinery.location import Location

        with Location(uri, self.options).open("rb") as f:
            batch = pq.read_table(f)
        drop = [None if i in self.keep else f"{self.label}:not_longest" for i in batch["id"].to_pylist()]
        return batch.append_column("_drop", pa.array(drop, pa.string()))


class _SaveSlice:
    """The toy stage's map step: save a slice under the stage's scratch folder, return (id, label, length)."""

    def __init__(self, work):
        self.work = work

    def __call__(self, batch: pa.Table) -> pa.Table:
        import hashlib

        name = hashlib.sha256("".join(batch["id"].to_pylist()).encode()).hexdigest()[:16]
        self.work.join("slices").makedirs()
        target = self.work.join("slices", f"{name}.parquet")
        with target.open("wb") as f:
            pq.write_table(batch, f)
        labels = [json.loads(m)["lang_label"] for m in batch["meta"].to_pylist()]
        return pa.table(
            {
                "id": batch["id"],
                "label": labels,
                "length": pc.utf8_length(batch["text"]),
                "file": [target.uri] * batch.num_rows,
            }
        )


def _register_toy_global_stage():
    """A toy global stage written against the contract (no Ray): keeps the longest document per language label."""
    from refinery.stage import FilterParams, GlobalStage, register

    @register
    class LongestPerLabel(GlobalStage[FilterParams]):
        name = "test_longest_per_label"

        def apply(self, ds, ctx):
            rows = ctx.map_collect(ds, _SaveSlice(ctx.work), 100)
            best: dict[str, tuple[int, str]] = {}
            for r in rows:  # a toy: 300 rows come back to the driver; real stages never collect rows
                key = (r["length"], r["id"])
                if r["label"] not in best or key > best[r["label"]]:
                    best[r["label"]] = key
            keep = {v[1] for v in best.values()}
            files = sorted({r["file"] for r in rows})
            return ctx.dataset_from(_MarkLongest(keep, ctx.label, ctx.work.storage_options), files)

    return LongestPerLabel


def test_global_stage_gets_checkpointed_live_rows_and_drops_are_accounted(run_config, tmp_path):
    _register_toy_global_stage()
    stages = [
        *STAGES,
        {"stage": "test_longest_per_label"},
        {"stage": "length_filter", "params": {"max_chars": 4000}},
    ]
    res = run_config(_cfg(FIX, tmp_path / "out", stages))
    table, manifest = _check_counts(res, N_DOCS)
    import json as _json

    labels = [_json.loads(m)["lang_label"] for m in table["meta"].to_pylist()]
    assert len(labels) == len(set(labels))  # at most one document per language survived
    names = [s["name"] for s in res.report["stages"]]
    assert names == ["normalize", "length_filter", "test_longest_per_label", "length_filter#2"]
    assert res.report["stages"][2]["dropped"]["not_longest"] > 0
    kinds = {f["kind"] for f in manifest["files"]}
    assert kinds == {"data", "droplog"}


def test_checkpoint_reader_cuts_a_small_checkpoint_into_a_task_per_core(ray_session, tmp_path):
    """A small run's checkpoint is one row group; read whole, the next global stage would run on one core."""
    from jobs.ray_backend.operators import read_checkpoint
    from refinery.location import Location

    path = tmp_path / "part.parquet"
    pq.write_table(pa.table({"id": [f"d{i:05d}" for i in range(3000)]}), path, row_group_size=8192)
    ds = read_checkpoint([(Location(str(path)), 3000)], num_cpus=2)
    blocks = [b["id"].to_pylist() for b in ds.iter_batches(batch_size=None, batch_format="pyarrow")]
    assert len(blocks) == 4  # 2 per core
    assert sorted(i for b in blocks for i in b) == [f"d{i:05d}" for i in range(3000)]  # every row once
    # many row groups already give enough tasks: none is cut
    pq.write_table(pa.table({"id": [f"d{i:05d}" for i in range(3000)]}), path, row_group_size=500)
    assert read_checkpoint([(Location(str(path)), 3000)], num_cpus=2, row_group_rows=500).count() == 3000
    assert (
        read_checkpoint([(Location(str(path)), 3000)], num_cpus=2, row_group_rows=500)
        .materialize()
        .num_blocks()
        == 6
    )
