"""scripts/data/make_corpus.py: deterministic output, ground truth that matches the data, valid planted PII."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import scripts.data.make_corpus as mc

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "fixtures" / "corpus_source"


def _run(out: Path, *args: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "scripts.data.make_corpus",
        "--out",
        str(out),
        "--source",
        str(SOURCE),
        "--quiet",
        *args,
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)


def _rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _corpus(out: Path) -> tuple[list[dict], list[dict], dict]:
    docs = [r for p in sorted(out.glob("part-*.jsonl.gz")) for r in _rows(p)]
    return docs, _rows(out / "ground_truth.jsonl.gz"), json.loads((out / "corpus.json").read_text())


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, list[dict], list[dict], dict]:
    out = tmp_path_factory.mktemp("big")
    _run(out, "--docs", "3000", "--seed", "7", "--shard-docs", "700")
    return (out, *_corpus(out))


def test_same_args_give_byte_identical_files(tmp_path: Path, big) -> None:
    out, *_ = big
    again = tmp_path / "again"
    _run(again, "--docs", "3000", "--seed", "7", "--shard-docs", "700")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert [f"part-{i:05d}.jsonl.gz" for i in range(5)] == [n for n in names if n.startswith("part-")]
    for name in names:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_other_seed_differs_and_smaller_run_is_a_prefix(tmp_path: Path, big) -> None:
    _, docs, gt, _ = big
    _run(tmp_path / "small", "--docs", "500", "--seed", "7", "--shard-docs", "128")
    small_docs, small_gt, _ = _corpus(tmp_path / "small")
    assert small_docs == docs[:500] and small_gt == gt[:500]
    _run(tmp_path / "other", "--docs", "500", "--seed", "8")
    other_docs, _, _ = _corpus(tmp_path / "other")
    assert [d["text"] for d in other_docs] != [d["text"] for d in small_docs]


def test_records_and_ground_truth_agree(big) -> None:
    _, docs, gt, meta = big
    assert len(docs) == len(gt) == meta["docs"] == 3000
    assert all(set(d) == {"id", "text", "url", "lang"} for d in docs)
    assert [d["id"] for d in docs] == [g["id"] for g in gt]
    assert len({d["id"] for d in docs}) == len(docs)
    assert meta["bytes"] == sum(len(d["text"].encode()) for d in docs)
    assert sum(f["docs"] for f in meta["files"]) == 3000
    assert dict(Counter(g["kind"] for g in gt)) == meta["counts"]["kind"]
    assert Counter(d["lang"] for d in docs) == Counter(g["lang"] for g in gt)
    assert Counter(d["lang"] for d in docs).most_common(1)[0][0] == "en"


def test_duplicates_are_where_ground_truth_says(big) -> None:
    _, docs, gt, _ = big
    text = {d["id"]: d["text"] for d in docs}
    kind = {g["id"]: g["kind"] for g in gt}
    pos = {d["id"]: i for i, d in enumerate(docs)}
    # originals are pairwise distinct; only exact_dups repeat a text
    originals = [text[g["id"]] for g in gt if g["kind"] == "original"]
    assert len(set(originals)) == len(originals)
    by_text = Counter(text.values())
    counts = Counter(kind.values())
    assert 0.03 < counts["exact_dup"] / len(gt) < 0.08
    assert 0.07 < counts["near_dup"] / len(gt) < 0.14
    assert sum(n - 1 for n in by_text.values()) == counts["exact_dup"]
    rates = set()
    for g in gt:
        if g["kind"] == "original":
            assert g["dup_of"] is None
            continue
        src = g["dup_of"]
        assert kind[src] == "original" and pos[src] < pos[g["id"]]
        if g["kind"] == "exact_dup":
            assert text[g["id"]] == text[src]
            continue
        rates.add(g["edit_rate"])
        assert text[g["id"]] != text[src]
        assert g["n_edits"] == max(1, round(g["edit_rate"] * g["n_units"]))
        # each edit changes at most 2 units (a substitution touches one, an insert/delete shifts by one)
        a = text[src].split(" ") if g["lang"] not in mc.NO_SPACE_LANGS else list(text[src])
        b = text[g["id"]].split(" ") if g["lang"] not in mc.NO_SPACE_LANGS else list(text[g["id"]])
        assert abs(len(a) - len(b)) <= g["n_edits"]
        common = len(set(a) & set(b)) / max(1, len(set(a) | set(b)))
        if g["edit_rate"] <= 0.02 and g["n_units"] >= 100:
            assert common > 0.9
    assert rates == set(mc.DEFAULTS["edit_rates"])


def test_planted_pii_is_verbatim_and_valid(big) -> None:
    _, docs, gt, _ = big
    text = {d["id"]: d["text"] for d in docs}
    seen = Counter()
    for g in gt:
        for e in g["pii"]:
            assert e["value"] in text[g["id"]], (g["id"], e["type"])
            seen[e["type"]] += 1
            if e["origin"] != "generated":
                continue
            v = e["value"]
            if e["type"] == "CREDIT_CARD":
                assert mc.luhn_ok(v) and len(re.sub(r"\D", "", v)) in (15, 16)
            elif e["type"] == "IBAN_CODE":
                assert mc.iban_ok(v)
            elif e["type"] == "US_SSN":
                area, group, serial = v.split("-")
                assert area not in ("000", "666") and int(area) < 900 and group != "00" and serial != "0000"
            elif e["type"] == "EMAIL_ADDRESS":
                assert re.fullmatch(r"[a-z._0-9]+@[a-z.-]+\.[a-z]+", v)
    for kind in mc.PII_KINDS + ["PERSON"]:
        assert seen[kind] > 0, kind


def test_luhn_and_iban_checkers_reject_corruption() -> None:
    assert mc.luhn_ok("4111 1111 1111 1111") and not mc.luhn_ok("4111 1111 1111 1112")
    assert mc.iban_ok("GB82 WEST 1234 5698 7654 32") and not mc.iban_ok("GB82 WEST 1234 5698 7654 33")


def test_scale_mode_reaches_target(tmp_path: Path) -> None:
    _run(tmp_path / "s", "--scale", "0.002", "--shard-docs", "50")
    docs, _, meta = _corpus(tmp_path / "s")
    target = int(0.002 * mc.SCALE_BYTES)
    assert meta["bytes"] >= target
    assert meta["bytes"] - len(docs[-1]["text"].encode()) < target
    assert len(meta["files"]) == -(-len(docs) // 50)
