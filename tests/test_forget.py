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
        + ["--shard-docs", "200", "--edit-rates", "0.01,0.02,0.05", "--quiet"],
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
    expected = set(targets)
    for i in targets:
        root_id = truth[i]["dup_of"] or i
        expected |= {m for m in family[root_id] if _jaccard(docs[m]["text"], docs[root_id]["text"]) >= 0.5}
    shutil.copytree(out, tmp / "before")
    return {
        "tmp": tmp, "out": out, "cfg": cfg, "inputs": inputs, "corpus": corpus, "docs": docs, "request": request,
        "before": before, "expected": expected, "targets": targets, "domains": domains, "texts": texts,
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


@pytest.mark.parametrize(
    "point",
    [
        "after_data",
        "before_success",
        "forget:after_generations",
        "forget:after_pointer",
        "forget:after_state",
    ],
)
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
