"""`refinery forget` on a three-snapshot refresh chain built from scripts/data/make_corpus.py (real texts, with
exact and near duplicates whose ground truth the generator records).

The request names 50 published ids, 2 domains and 5 texts. Checks: every matching document and every generated
duplicate of them is gone from every snapshot, no other row changes (row-level diff), `verify` and
`verify --forgotten` pass, `snapshots` lists the new generations, the request is stored hashed only, the next
refresh drops the same documents fed again as `forgotten`, and a crash at each step leaves a consistent published
state that a re-run completes.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import read_droplog

FAULT_POINTS = [  # a commit's own points, then forget's
    "after_data",
    "before_success",
    "forget:after_generations",
    "forget:after_pointer",
    "forget:after_state",
]
ROOT = Path(__file__).resolve().parents[1]


def cli(*argv: str) -> int:
    from jobs.cli import main

    return main(list(argv))


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(x) for x in f]


def rows(out: Path) -> dict[tuple[str, str], dict]:
    """(snapshot, id) → row (all columns) of each snapshot's current generation."""
    from jobs.forget import current_generations

    got = {}
    for sid, uri in current_generations(str(out)).items():
        manifest = json.loads((Path(uri) / "manifest.json").read_text())
        for f in manifest["files"]:
            if f["kind"] == "data":
                for r in pq.read_table(Path(uri) / f["path"]).to_pylist():
                    got[(sid, r["id"])] = r
    return got


@pytest.fixture(scope="module")
def chain(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forget")
    corpus = tmp / "corpus"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.data.make_corpus",
            "--out",
            str(corpus),
            "--docs",
            "600",
            "--seed",
            "3",
        ]
        + ["--shard-docs", "200", "--edit-rates", "0.01,0.02,0.05", "--quiet"]
        + ["--source", str(ROOT / "tests" / "fixtures" / "corpus_source")],  # no ../shared in a fresh clone
        check=True,
        cwd=ROOT,
    )
    inputs, out = tmp / "inputs", tmp / "out"
    inputs.mkdir()
    cfg = tmp / "nightly.yaml"
    stages = [{"stage": "normalize"}, {"stage": "exact_dedup"}, {"stage": "fuzzy_dedup"}]
    cfg.write_text(
        yaml.safe_dump(
            {"input": {"uri": str(inputs), "id_field": "id"}, "output": {"uri": str(out)}, "stages": stages}
        )
    )
    for day in range(3):
        shutil.copy(corpus / f"part-{day:05d}.jsonl.gz", inputs)
        assert cli("refresh", str(cfg), "--date", f"2026-01-0{day + 1}") in (0, 3)
    docs = {d["id"]: d for p in sorted(corpus.glob("part-*.jsonl.gz")) for d in _jsonl(p)}
    truth = {g["id"]: g for g in _jsonl(corpus / "ground_truth.jsonl.gz")}
    before = rows(out)
    assert len({sid for sid, _ in before}) == 3
    rng = random.Random(5)
    published = sorted({i for _, i in before})
    chosen = rng.sample(published, 60)
    ids, texts = chosen[:50], chosen[50:55]
    by_domain: dict[str, list[str]] = {}
    for i in published:
        by_domain.setdefault(docs[i]["url"].split("/")[2].removeprefix("www."), []).append(i)
    domains = sorted(by_domain, key=lambda d: (-len(by_domain[d]), d))[:2]
    request = tmp / "request.jsonl"
    lines = (
        [{"id": i} for i in ids]
        + [{"domain": d} for d in domains]
        + [{"text": docs[i]["text"]} for i in texts]
    )
    request.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    targets = set(ids) | set(texts) | {i for d in domains for i in by_domain[d]}
    # ground truth: the targets, their generated duplicates, and (for a duplicate) its original and siblings
    family: dict[str, set[str]] = {}
    for i, g in truth.items():
        root = g["dup_of"] or i
        family.setdefault(root, set()).add(i)
    # A duplicate counts when it shares word 5-grams with its original (Jaccard ≥ 0.5): a CJK text edited by
    # characters has no word shingles in common with its original, and no word-shingle method can find it.
    family_of = {
        i: {i}
        | {
            m
            for m in family[truth[i]["dup_of"] or i]
            if _jaccard(docs[m]["text"], docs[truth[i]["dup_of"] or i]["text"]) >= 0.5
        }
        for i in targets
    }
    expected = set().union(*family_of.values())
    shutil.copytree(out, tmp / "before")
    return {
        "tmp": tmp, "out": out, "cfg": cfg, "inputs": inputs, "corpus": corpus, "docs": docs, "request": request,
        "before": before, "expected": expected, "targets": targets, "domains": domains, "texts": texts,
        "family_of": family_of,
    }  # fmt: skip


@pytest.fixture(scope="module")
def forgotten(chain):
    assert cli("forget", str(chain["out"]), "--request", str(chain["request"])) == 0
    return rows(chain["out"])


def _jaccard(a: str, b: str) -> float:
    import pyarrow as pa

    from stages.dedup.minhash import jaccard_sorted, shingle_texts

    sb = shingle_texts(pa.array([a, b], pa.large_string()), 5)
    return jaccard_sorted(sb.doc(0), sb.doc(1))


def _jaccard_to_targets(chain, text: str) -> float:
    import pyarrow as pa

    from stages.dedup.minhash import jaccard_sorted, shingle_texts

    targets = [chain["docs"][i]["text"] for i in sorted(chain["targets"])]
    sb = shingle_texts(pa.array([text, *targets], pa.large_string()), 5)
    return max(jaccard_sorted(sb.doc(0), sb.doc(k)) for k in range(1, len(targets) + 1))


def test_forget_removes_matches_and_their_duplicates_and_nothing_else(chain, forgotten):
    before, after = chain["before"], forgotten
    removed = {i for _, i in set(before) - set(after)}
    published = {i for _, i in before}
    assert chain["expected"] & published <= removed, (
        "a target or a generated duplicate of one is still published"
    )
    assert not {i for _, i in after} & chain["expected"]
    assert len(chain["expected"] & published) > len(chain["targets"]), "duplicates must take part in the test"
    for i in removed - chain["expected"]:  # anything else removed must really be a near-copy of a target
        assert _jaccard_to_targets(chain, before[next(k for k in before if k[1] == i)]["text"]) >= 0.4, i
    assert set(after) <= set(before)
    for key, row in after.items():  # row-level diff: every remaining row is unchanged
        assert row == before[key], key


def test_verify_snapshots_and_the_stored_request(chain, forgotten, capsys):
    out = chain["out"]
    assert cli("verify", str(out), "--forgotten") == 0
    capsys.readouterr()
    assert cli("snapshots", str(out), "--json") == 0
    snaps = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in snaps] == ["20260101", "20260102", "20260103"]
    rid = next(p.stem for p in (out / "_state" / "forgotten" / "requests").glob("*.json"))
    assert all(s["requests"] == [rid] and "generations/" in s["uri"] for s in snaps)
    assert sum(s["rows"] for s in snaps) == len(forgotten)
    latest = json.loads((out / "latest").read_text())
    assert latest["uri"] == snaps[-1]["uri"]
    # the request, its ids, domains and texts appear nowhere in the state, manifests or run log
    secrets = list(chain["domains"]) + [chain["docs"][i]["text"][:60] for i in chain["texts"]] + ["s3-0000"]
    for p in [
        *(out / "_state").rglob("*.json*"),
        *(out / "generations").rglob("manifest.json"),
        out / "generations.json",
    ]:
        body = p.read_text(errors="replace")
        assert not any(s in body for s in secrets), p
    # an old generation is untouched: readers of it saw a consistent old state
    assert rows_of(out / "snapshots" / "20260101") == rows_of(
        chain["tmp"] / "before" / "snapshots" / "20260101"
    )


def rows_of(snap: Path) -> list[dict]:
    manifest = json.loads((snap / "manifest.json").read_text())
    return sorted(
        (
            r
            for f in manifest["files"]
            if f["kind"] == "data"
            for r in pq.read_table(snap / f["path"]).to_pylist()
        ),
        key=lambda r: r["id"],
    )


def test_verify_forgotten_fails_on_a_forgotten_row(chain, forgotten, tmp_path, capsys):
    """Put a forgotten document back into a current generation (its manifest rewritten to match): caught."""
    bad = tmp_path / "bad"
    shutil.copytree(chain["out"], bad)
    assert cli("verify", str(bad), "--forgotten") == 0
    gens = json.loads((bad / "generations.json").read_text())["snapshots"]
    sid = sorted(gens)[0]
    gen_dir = bad / gens[sid]["path"]
    old_dir = chain["tmp"] / "before" / "snapshots" / sid
    shutil.rmtree(gen_dir)
    shutil.copytree(old_dir, gen_dir)  # the pre-forget generation under the new name
    capsys.readouterr()
    assert cli("verify", str(bad), "--forgotten") == 1
    assert "match forgotten items" in capsys.readouterr().out


def test_next_refresh_drops_reappearances_as_forgotten(chain, forgotten, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(chain["out"], out)
    inputs = tmp_path / "inputs"
    shutil.copytree(chain["inputs"], inputs)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        chain["cfg"]
        .read_text()
        .replace(str(chain["out"]), str(out))
        .replace(str(chain["inputs"]), str(inputs))
    )
    again = sorted(chain["targets"])[:20]
    fresh = [{"id": f"new-{i}", "text": chain["docs"][i]["text"]} for i in again]
    (inputs / "day4.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in fresh))
    assert cli("refresh", str(cfg), "--date", "2026-01-04") in (0, 3)
    snap = out / "snapshots" / "20260104"
    manifest = json.loads((snap / "manifest.json").read_text())
    drops = read_droplog(snap)
    assert all(drops.get(d["id"]) == ("forgotten", "forgotten") for d in fresh), drops
    assert manifest["counts"]["rows_out"] == 0


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_crash_at_each_step_leaves_a_consistent_state_and_a_rerun_completes(
    chain, forgotten, point, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    shutil.copytree(chain["tmp"] / "before", out)
    monkeypatch.setenv("REFINERY_FAIL_AT", point)
    assert cli("forget", str(out), "--request", str(chain["request"])) == 1
    monkeypatch.delenv("REFINERY_FAIL_AT")
    assert not (out / "_state" / "refresh" / "LOCK").exists()
    assert cli("verify", str(out)) == 0, "a crash left an inconsistent published state"
    crashed = rows(out)
    assert crashed in (chain["before"], forgotten), "readers must see all of the old state or all of the new"
    capsys.readouterr()
    assert cli("forget", str(out), "--request", str(chain["request"])) == 0
    assert "recovery: rolled" in capsys.readouterr().out
    assert rows(out) == forgotten
    assert not (out / "_state" / "forgotten" / "pending.json").exists()
    assert cli("verify", str(out), "--forgotten") == 0
    snaps = json.loads((out / "generations.json").read_text())["snapshots"]
    assert all(len(s["requests"]) == 1 for s in snaps.values())


# --- a plain run output: forgotten in place ------------------------------------------------------------------


def run_rows(out: Path) -> dict[str, dict]:
    """id → row of a committed run output (what its readers read: the folder itself)."""
    manifest = json.loads((out / "manifest.json").read_text())
    got = {}
    for f in manifest["files"]:
        if f["kind"] == "data":
            for r in pq.read_table(out / f["path"]).to_pylist():
                got[r["id"]] = r
    return got


def rows_anywhere(root: Path) -> tuple[set[str], set[str]]:
    """(ids, texts) of every row of every Parquet file under root, whatever it is (published, old, staged)."""
    ids: set[str] = set()
    texts: set[str] = set()
    for p in root.rglob("*.parquet"):
        t = pq.read_table(p)
        if "id" in t.column_names:
            ids |= {str(i) for i in t["id"].to_pylist()}
        if "text" in t.column_names:
            texts |= {x for x in t["text"].to_pylist() if x}
    return ids, texts


@pytest.fixture(scope="module")
def run_output(chain):
    """A real `refinery run` of two of the corpus's shards (small parts, so that some hold no removed row)."""
    tmp = chain["tmp"] / "run"
    inputs, out = tmp / "inputs", tmp / "out"
    inputs.mkdir(parents=True)
    for day in range(2):
        shutil.copy(chain["corpus"] / f"part-{day:05d}.jsonl.gz", inputs)
    cfg = tmp / "run.yaml"
    stages = [{"stage": "normalize"}, {"stage": "exact_dedup"}, {"stage": "fuzzy_dedup"}]
    body = {
        "input": {"uri": str(inputs), "id_field": "id"},
        "output": {"uri": str(out), "target_shard_mb": 0.05},
        "stages": stages,
    }
    cfg.write_text(yaml.safe_dump(body))
    assert cli("run", str(cfg)) in (0, 3)
    before = run_rows(out)
    manifest = json.loads((out / "manifest.json").read_text())
    shutil.copytree(out, tmp / "before")
    return {"tmp": tmp, "out": out, "cfg": cfg, "before": before, "manifest": manifest}


@pytest.fixture(scope="module")
def run_forgotten(chain, run_output):
    assert cli("forget", str(run_output["out"]), "--request", str(chain["request"])) == 0
    return run_rows(run_output["out"])


def _parts_holding(out: Path, manifest: dict, ids: set[str]) -> set[str]:
    """Names of the manifest's part files (any kind) holding one of these ids."""
    return {
        f["path"].split("/")[1]
        for f in manifest["files"]
        if {str(i) for i in pq.read_table(out / f["path"], columns=["id"])["id"].to_pylist()} & ids
    }


def test_forget_on_a_run_output_removes_matches_in_place(chain, run_output, run_forgotten, capsys):
    out, before, after = run_output["out"], run_output["before"], run_forgotten
    removed = set(before) - set(after)
    # this output holds two of the three shards: a target it does not hold can be found only by its text
    findable = {i for i in chain["targets"] if i in before or i in set(chain["texts"])}
    expected = set().union(*(chain["family_of"][i] for i in findable))
    assert expected & set(before) <= removed, "a target or a generated duplicate is still published"
    assert len(expected & set(before)) > len(chain["targets"] & set(before)) > 0
    for i in removed - expected:  # anything else removed must really be a near-copy of a target
        assert _jaccard_to_targets(chain, before[i]["text"]) >= 0.4, i
    assert set(after) <= set(before)
    for key, row in after.items():  # row-level diff: every other row is unchanged
        assert row == before[key], key
    # the old parts that held removed rows are deleted: no file under the output holds a removed row
    old_parts = _parts_holding(run_output["tmp"] / "before", run_output["manifest"], removed)
    assert old_parts
    assert len(old_parts) < len(run_output["manifest"]["files"]), "some parts must be kept as they were"
    assert not {p.name for p in out.rglob("*")} & old_parts
    ids, texts = rows_anywhere(out)
    assert not ids & removed
    assert not texts & {before[i]["text"] for i in removed}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["forgotten"] >= len(removed)
    assert [f["request_id"] for f in manifest["forget"]] == [
        p.stem for p in (out / "_state" / "forgotten" / "requests").glob("*.json")
    ]
    assert not (out / "generations.json").exists() and not (out / "snapshots").exists()
    assert not (out / "_work").exists() or not list((out / "_work").iterdir())
    capsys.readouterr()
    assert cli("verify", str(out)) == 0
    assert cli("verify", str(out), "--forgotten") == 0
    assert "wait" not in capsys.readouterr().out
    # the same request again: nothing to do
    assert cli("forget", str(out), "--request", str(chain["request"])) == 0
    assert "already_applied" in capsys.readouterr().out
    assert run_rows(out) == after
    for p in [*(out / "_state").rglob("*.json*"), out / "manifest.json", out / "report.json"]:
        body = p.read_text(errors="replace")
        assert not any(d in body for d in chain["domains"]), p


def test_verify_forgotten_fails_on_a_forgotten_row_in_a_run_output(
    chain, run_output, run_forgotten, tmp_path
):
    bad = tmp_path / "bad"
    shutil.copytree(run_output["tmp"] / "before", bad)
    shutil.rmtree(bad / "_state")
    shutil.copytree(
        run_output["out"] / "_state", bad / "_state"
    )  # the forgotten set, not applied to the rows
    assert cli("verify", str(bad)) == 0
    assert cli("verify", str(bad), "--forgotten") == 1


def test_next_run_into_a_forgotten_run_output_drops_reappearances(chain, run_output, run_forgotten, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run_output["out"], out)
    removed = sorted(set(run_output["before"]) - set(run_forgotten))
    fresh = [{"id": f"new-{i}", "text": run_output["before"][i]["text"]} for i in removed[:20]]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "again.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in fresh))
    body = yaml.safe_load(run_output["cfg"].read_text())
    body["input"]["uri"], body["output"]["uri"] = str(inputs), str(out)
    body["output"]["if_exists"] = "overwrite"
    cfg = tmp_path / "again.yaml"
    cfg.write_text(yaml.safe_dump(body))
    assert cli("run", str(cfg)) in (0, 3)
    drops = read_droplog(out)
    assert all(drops.get(d["id"]) == ("forgotten", "forgotten") for d in fresh), drops
    assert json.loads((out / "manifest.json").read_text())["counts"]["rows_out"] == 0


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_crash_on_a_run_output_is_consistent_and_a_rerun_completes(
    chain, run_output, run_forgotten, point, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    shutil.copytree(run_output["tmp"] / "before", out)
    monkeypatch.setenv("REFINERY_FAIL_AT", point)
    assert cli("forget", str(out), "--request", str(chain["request"])) == 1
    monkeypatch.delenv("REFINERY_FAIL_AT")
    assert not (out / "_state" / "forgotten" / "LOCK").exists()
    capsys.readouterr()
    if point in ("after_data", "before_success"):
        # inside the in-place commit: unpublished, as a crashed run's commit (readers trust nothing without it)
        assert not (out / "_SUCCESS").exists()
        assert cli("verify", str(out)) == 1
        assert "not a committed output" in capsys.readouterr().out
    else:
        assert cli("verify", str(out)) == 0, "a crash left an inconsistent published state"
        assert run_rows(out) in (run_output["before"], run_forgotten), (
            "all of the old state or all of the new"
        )
    assert cli("forget", str(out), "--request", str(chain["request"])) == 0
    assert "recovery: rolled forward" in capsys.readouterr().out
    assert run_rows(out) == run_forgotten
    assert not (out / "_state" / "forgotten" / "pending.json").exists()
    assert cli("verify", str(out), "--forgotten") == 0
    removed = set(run_output["before"]) - set(run_forgotten)
    assert not rows_anywhere(out)[0] & removed
    assert len(json.loads((out / "manifest.json").read_text())["forget"]) == 1


# --- purge: the superseded generations' rows are deleted ---------------------------------------------------------


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def _assert_purged(chain, forgotten, out: Path, capsys) -> None:
    removed = {i for _, i in set(chain["before"]) - set(forgotten)}
    ids, texts = rows_anywhere(out)
    assert not ids & removed, "a file under the root still holds a forgotten row"
    assert not texts & {chain["docs"][i]["text"] for i in removed}
    assert rows(out) == forgotten  # the current generations are untouched
    capsys.readouterr()
    assert cli("verify", str(out), "--forgotten") == 0
    said = capsys.readouterr().out
    assert "wait" not in said and "FAIL" not in said
    # a purged folder is still a snapshot (its current generation lives elsewhere) but no longer claims rows
    assert cli("snapshots", str(out), "--json") == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == ["20260101", "20260102", "20260103"]
    first = out / "snapshots" / "20260101"
    assert (first / "_PURGED").exists() and not (first / "_SUCCESS").exists()
    assert cli("verify", str(first)) == 1
    assert "purged" in capsys.readouterr().out
    sup = json.loads((out / "generations.json").read_text())["superseded"]
    assert len(sup) == 3 and all(e["purged_at"] for e in sup)


def test_gc_purges_superseded_generations_after_the_grace_period(chain, forgotten, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(chain["tmp"] / "before", out)
    assert cli("forget", str(out), "--request", str(chain["request"])) == 0
    removed = {i for _, i in set(chain["before"]) - set(forgotten)}
    assert rows_anywhere(out)[0] & removed, "without a purge the old generations keep the rows"
    capsys.readouterr()
    assert cli("verify", str(out), "--forgotten") == 0
    assert capsys.readouterr().out.count("wait ") == 3  # awaiting purge: said, not failed
    listed = _listing(out)
    assert cli("gc", str(out)) == 0  # no --yes: lists, deletes nothing
    said = capsys.readouterr().out
    assert "3 superseded generation(s) holding rows" in said and "snapshots/20260101" in said
    assert cli("gc", str(out), "--yes") == 0  # default grace period: 24 h, nothing is old enough
    assert "0 purged" in capsys.readouterr().out
    assert _listing(out) == listed
    assert cli("gc", str(out), "--yes", "--grace-hours", "0") == 0
    assert "3 purged" in capsys.readouterr().out
    _assert_purged(chain, forgotten, out, capsys)
    assert cli("gc", str(out), "--yes", "--grace-hours", "0") == 0  # nothing left to do
    assert "superseded" not in capsys.readouterr().out


def test_forget_purge_deletes_superseded_rows_at_once(chain, forgotten, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(chain["tmp"] / "before", out)
    capsys.readouterr()
    assert cli("forget", str(out), "--request", str(chain["request"]), "--purge") == 0
    assert capsys.readouterr().out.count("purged: ") == 3
    _assert_purged(chain, forgotten, out, capsys)
