"""`refinery refilter`: re-thresholding a committed output from its stored signals.

Real documents (tests/fixtures/quality: web articles and lingua-py sentences). The contract: a rule stage's
decision from stored signals (`Stage.decide`) is the decision `process` makes, and a refiltered output keeps exactly
the rows a full run with the new params keeps, with full accounting and lineage to its source.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from refinery.accounting import check_accounting
from refinery.stage import NotRecomputable, build_stage
from tests.conftest import read_droplog, read_output

FIX = Path(__file__).parent / "fixtures" / "quality"
RULE_STAGES = ("gopher_quality", "gopher_repetition", "fineweb_quality")
# params that change each stage's decisions on these documents, per-language ones included
VARIANTS = {
    "gopher_quality": [
        {},
        {"min_stop_words": 4, "max_avg_word_length": 6, "per_language": {"de": {"min_doc_words": 200}}},
        {"skip": ["stop_words"], "only_languages": ["en"]},
    ],
    "gopher_repetition": [
        {},
        {"dup_line_frac": 0.05, "top_n_grams": [[2, 0.05], [3, 0.04], [4, 0.03]]},
        {"per_language": {"en": {"skip": ["empty"], "dup_n_grams": [[5, 0.02]]}}},
    ],
    "fineweb_quality": [
        {},
        {"line_punct_thr": 0.5, "char_duplicates_ratio": 0.001, "line_punct_exclude_zero": True},
        {"new_line_ratio": 0.05, "per_language": {"fr": {"short_line_thr": 0.2}}},
    ],
}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return [json.loads(line) for line in gzip.open(FIX / "docs.jsonl.gz", "rt", encoding="utf-8")]


def _table(docs: list[dict]) -> pa.Table:
    langs = ["en", "de", "fr", None]
    return pa.table(
        {
            "id": [str(i) for i in range(len(docs))],
            "text": pa.array([d["text"] for d in docs] + [], pa.large_string()),
            "lang": [langs[i % 4] for i in range(len(docs))],
        }
    )


@pytest.mark.parametrize("name", RULE_STAGES)
def test_decide_from_stored_signals_is_the_decision_of_process(name, docs):
    """Signals computed once under the defaults, stored as Arrow (Parquet types), then judged under other params:
    the verdicts are those of `process` run afresh with those params."""
    t = _table(docs)
    stored, _ = build_stage(name, {}).process(t)
    stored = pa.Table.from_batches(stored.to_batches())  # the Arrow types a Parquet round trip keeps
    changed = 0
    for params in VARIANTS[name]:
        fresh = build_stage(name, params)
        _, expected = fresh.process(t)
        got = fresh.decide(stored)
        exp = expected.to_pylist() if expected is not None else [None] * t.num_rows
        assert (got.to_pylist() if got is not None else [None] * t.num_rows) == exp, params
        changed += exp != ([None] * t.num_rows)
    assert changed >= 2, "the variants must make decisions for the comparison to mean anything"


def test_decide_refuses_signals_that_were_not_computed(docs):
    t = _table(docs[:5])
    stored, _ = build_stage("gopher_repetition", {}).process(t)
    with pytest.raises(NotRecomputable, match="rep_top_5_gram_frac"):
        build_stage("gopher_repetition", {"top_n_grams": [[5, 0.1]]}).decide(stored)
    with pytest.raises(NotRecomputable, match="length_filter"):
        build_stage("length_filter", {"min_words": 3}).decide(stored)
    gq = build_stage("gopher_quality", {"stop_words": ["the"]})
    assert "stop_words" in gq.refilter_problem(build_stage("gopher_quality", {}).params)


# --- end to end ------------------------------------------------------------------------------------------------

SOURCE_STAGES = [
    {"stage": "normalize"},
    {"stage": "length_filter", "params": {"min_words": 5}},
    {"stage": "gopher_repetition", "params": {"action": "annotate"}},
    {"stage": "gopher_quality", "params": {"action": "annotate"}},
    {"stage": "fineweb_quality", "params": {"action": "annotate"}},
]
NEW = {
    "stages.2.params.action": "drop",
    "stages.2.params.dup_line_frac": 0.1,
    "stages.3.params.min_stop_words": 3,
    "stages.3.params.max_non_alpha_words_ratio": 0.5,  # looser than 0.8: rows the source flagged come back
    "stages.3.params.max_avg_word_length": 7,
    "stages.4.params.line_punct_thr": 0.3,  # stays annotate: its flags change
}


def cli(*argv: str) -> int:
    from jobs.cli import main

    return main(list(argv))


def _config(tmp: Path, inp: Path, out: Path, stages: list[dict]) -> Path:
    cfg = {
        "input": {"uri": str(inp), "id_field": "id"},
        "output": {"uri": str(out), "target_shard_mb": 1},
        "stages": stages,
    }
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _with(stages: list[dict], sets: dict[str, object]) -> list[dict]:
    out = json.loads(json.dumps(stages))
    for key, value in sets.items():
        _, i, _, k = key.split(".")
        out[int(i)].setdefault("params", {})[k] = value
    return out


@pytest.fixture(scope="module")
def runs(docs, ray_session, tmp_path_factory):
    """The annotated source run, and a full run with the new params (the ground truth for refilter)."""
    tmp = tmp_path_factory.mktemp("refilter")
    inp = tmp / "in"
    inp.mkdir()
    with open(inp / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n")
    src, full = tmp / "source", tmp / "full"
    assert cli("run", str(_config(tmp, inp, src, SOURCE_STAGES))) == 0
    assert cli("run", str(_config(tmp, inp, full, _with(SOURCE_STAGES, NEW)))) == 0
    return {"tmp": tmp, "inp": inp, "src": src, "full": full}


def _sets(sets: dict[str, object]) -> list[str]:
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def _rows(path: Path) -> dict[str, dict]:
    table, _ = read_output(path)
    rows = {r["id"]: {k: v for k, v in r.items() if k != "run_id"} for r in table.to_pylist()}
    assert len(rows) == table.num_rows, "ids repeat: compare by another key"
    return rows


def test_refilter_matches_a_full_run_with_the_new_params(runs, capsys):
    out = runs["tmp"] / "refiltered"
    assert cli("refilter", str(runs["src"]), *_sets(NEW), "--out", str(out)) == 0
    got, want = _rows(out), _rows(runs["full"])
    assert len(want) < len(_rows(runs["src"])), "the new params must drop rows for the test to mean anything"
    assert got.keys() == want.keys()
    assert got == want, "kept rows differ from a full run (text, signals, flags)"
    src = _rows(runs["src"])
    back = [i for i in got if "gopher_quality:alpha_words" in (src[i]["flagged"] or [])]
    assert back, "a looser threshold must keep rows the source flagged"
    assert read_droplog(out) == read_droplog(runs["full"])
    rep = json.loads((out / "report.json").read_text())
    full_rep = json.loads((runs["full"] / "report.json").read_text())
    assert check_accounting(rep) == []
    for a, b in zip(rep["stages"], full_rep["stages"], strict=True):
        assert (a["name"], a["rows_in"], a["rows_out"], a["dropped"], a["flagged"]) == (
            b["name"], b["rows_in"], b["rows_out"], b["dropped"], b["flagged"],
        )  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    src_manifest = json.loads((runs["src"] / "manifest.json").read_text())
    assert manifest["refilter"]["source_run_id"] == src_manifest["run_id"]
    assert manifest["refilter"]["stages"] == ["gopher_repetition", "gopher_quality", "fineweb_quality"]
    assert manifest["config"]["stages"][3]["params"]["min_stop_words"] == 3
    assert cli("verify", str(out)) == 0
    capsys.readouterr()
    assert cli("refilter", str(runs["src"]), *_sets(NEW), "--out", str(out)) == 0  # the same: nothing to do
    assert "noop" in capsys.readouterr().out


def test_refilter_of_a_stage_that_dropped_rows_needs_tighten_only(runs, tmp_path):
    """From the refiltered output (gopher_repetition now drops; the rows it dropped are gone): a change to it is
    refused without --tighten-only, and tightening with it gives a full run's rows."""
    mid = tmp_path / "mid"
    assert cli("refilter", str(runs["src"]), *_sets(NEW), "--out", str(mid)) == 0
    tighter = {"stages.2.params.dup_line_frac": 0.05}
    assert cli("refilter", str(mid), *_sets(tighter), "--out", str(tmp_path / "refused")) == 2
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "tight"
    assert cli("refilter", str(mid), *_sets(tighter), "--tighten-only", "--out", str(out)) == 0
    full = tmp_path / "full2"
    assert (
        cli("run", str(_config(tmp_path, runs["inp"], full, _with(SOURCE_STAGES, {**NEW, **tighter})))) == 0
    )
    assert _rows(out) == _rows(full)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"stages.2.params.top_n_grams": "[[5, 0.1]]"}, "rep_top_5_gram_frac"),
        ({"stages.3.params.stop_words": "[the]"}, "stop_words changes how its signals are computed"),
        ({"stages.1.params.min_words": 50}, "keeps no signals"),
        ({"output.uri": "/tmp/x"}, "stage params only"),
        ({"stages.3.params.min_stop_words": -1}, "stages.3.params.min_stop_words"),
    ],
)
def test_refilter_refuses_what_signals_cannot_answer(runs, tmp_path, capsys, sets, message):
    capsys.readouterr()
    assert cli("refilter", str(runs["src"]), *_sets(sets), "--out", str(tmp_path / "o")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
