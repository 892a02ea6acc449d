"""Quality stages: agreement with datatrove on real documents, per-language rules, C4 accounting, end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.accounting import check_accounting
from refinery.stage import build_stage
from stages.quality import tokenizer as qtok
from tests.conftest import read_output

FIX = Path(__file__).parent / "fixtures" / "quality"
FILTERS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return [json.loads(line) for line in gzip.open(FIX / "docs.jsonl.gz", "rt", encoding="utf-8")]


def _table(texts: list[str], langs: list[str | None] | None = None) -> pa.Table:
    cols = {"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.large_string())}
    if langs is not None:
        cols["lang"] = pa.array(langs, pa.string())
    return pa.table(cols)


def _datatrove(name: str):
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return {
        "gopher_repetition": GopherRepetitionFilter,
        "gopher_quality": GopherQualityFilter,
        "c4_quality": C4QualityFilter,
        "fineweb_quality": FineWebQualityFilter,
    }[name]()


def _run_datatrove(name: str, texts: list[str]) -> tuple[list[str | None], list[str]]:
    from datatrove.data import Document

    f = _datatrove(name)
    reasons, out = [], []
    for i, t in enumerate(texts):
        d = Document(text=t, id=str(i))
        r = f.filter(d)
        reasons.append(None if r is True else r[1])
        out.append(d.text)
    return reasons, out


# datatrove's reason names → ours (ours are named by rule; the runner prefixes the stage label)
DT_REASONS = {
    "gopher_short_doc": "too_few_words", "gopher_long_doc": "too_many_words",
    "gopher_below_avg_threshold": "mean_word_length", "gopher_above_avg_threshold": "mean_word_length",
    "gopher_too_many_hashes": "hash_ratio", "gopher_too_many_ellipsis": "ellipsis_ratio",
    "gopher_too_many_bullets": "bullet_lines", "gopher_too_many_end_ellipsis": "ellipsis_lines",
    "gopher_below_alpha_threshold": "alpha_words", "gopher_enough_stop_words": "stop_words",
}  # fmt: skip


@pytest.mark.parametrize("name", FILTERS)
def test_decisions_agree_with_datatrove(name, docs):
    texts = [d["text"] for d in docs]
    ref, ref_text = _run_datatrove(name, texts)
    out, reasons = build_stage(name, {}).process(_table(texts))
    ours = reasons.to_pylist() if reasons is not None else [None] * len(texts)
    disagreements = [
        (docs[i]["source"], docs[i]["id"], ref[i], ours[i])
        for i in range(len(texts))
        if (ref[i] is None) != (ours[i] is None)
    ]
    assert not disagreements, f"{name} disagrees with datatrove on: {disagreements}"
    # the fixture exercises both outcomes, and the first failing rule is the same rule
    assert any(r is None for r in ref) and any(r is not None for r in ref)
    assert [DT_REASONS.get(r, r) for r in ref] == ours
    if name == "c4_quality":  # the cleaned text is datatrove's cleaned text
        got = out["text"].to_pylist()
        assert [g for g, r in zip(got, ours, strict=True) if r is None] == [
            t for t, r in zip(ref_text, ref, strict=True) if r is None
        ]


def test_c4_hands_exact_tokens_of_its_cleaned_text_to_the_next_stage(docs):
    texts = [d["text"] for d in docs]
    out, reasons = build_stage("c4_quality", {}).process(_table(texts))
    cleaned = [
        t
        for t, r, o in zip(out["text"].to_pylist(), reasons.to_pylist(), texts, strict=True)
        if r is None and t != o
    ]
    assert cleaned
    for t in cleaned:
        cached = qtok.words_of(qtok._CACHE.get(t))
        fresh = qtok.words_of(qtok.tokenizer()(t))
        assert np.array_equal(
            cached[:, [qtok.ORTH, qtok.LENGTH, qtok.PUNCT, qtok.SENT_PUNCT]],
            fresh[:, [qtok.ORTH, qtok.LENGTH, qtok.PUNCT, qtok.SENT_PUNCT]],
        )


def test_c4_reports_what_it_removed():
    text = (
        "Home | About | Contact\n"
        "This site uses cookies to improve your experience.\n"
        "The river rose by two metres overnight. Residents were moved to the school. Roads were closed.\n"
        "Officials said the water would fall by Friday. Schools stay closed until then.\n"
        "Enable JavaScript to view the map of the affected areas.\n"
        "Share this"
    )
    st = build_stage("c4_quality", {})
    out, reasons = st.process(_table([text]))
    assert reasons is None
    q = out["quality"][0].as_py()
    kept = out["text"][0].as_py()
    assert kept.startswith("The river rose") and kept.endswith("until then.")
    assert q["c4_lines"] == 6 and q["c4_lines_removed"] == 4
    assert (
        q["c4_lines_no_terminal_punct"] == 2 and q["c4_lines_policy"] == 1 and q["c4_lines_javascript"] == 1
    )
    assert q["c4_chars_removed"] == len(text) - len(kept)
    assert q["c4_sentences"] == 5
    assert st.summarize(out) == {
        "lines_removed": 4.0,
        "chars_removed": float(len(text) - len(kept)),
        "lines_too_long_word": 0.0,
        "lines_no_terminal_punct": 2.0,
        "lines_too_few_words": 0.0,
        "lines_javascript": 1.0,
        "lines_policy": 1.0,
    }


def test_signals_allow_rethresholding_without_recomputing(docs):
    texts = [d["text"] for d in docs]
    out, reasons = build_stage(
        "gopher_quality", {"min_stop_words": None, "max_non_alpha_words_ratio": None}
    ).process(_table(texts))
    q = out["quality"].to_pylist()
    # mean word length in [3, 10] recomputed from the stored signals gives the stage's decision for that rule
    for row, r in zip(q, reasons.to_pylist() if reasons is not None else [None] * len(q), strict=True):
        if row["gopher_words"] >= 50:
            m = row["gopher_mean_word_length"]
            assert (r == "mean_word_length") == (not 3 <= m <= 10) or r in ("too_many_words",)


def test_per_language_rules_and_skips():
    lingua = [
        json.loads(x)
        for x in gzip.open(FIX.parent / "langid" / "lingua_sentences_slice.jsonl.gz", "rt", encoding="utf-8")
    ]
    sents = {lg: [r["text"] for r in lingua if r["lang"] == lg] for lg in ("de", "fr", "es")}
    german = [
        " ".join(sents["de"]),
        " ".join(sents["fr"] + sents["es"]),
    ]  # the second is labelled de on purpose
    english = "The cat sat on the mat and looked at the dog. " * 12
    texts = [*german, english]
    langs = ["de"] * len(german) + ["en"]
    assert german
    base = build_stage("gopher_quality", {"min_doc_words": 20})
    _, r0 = base.process(_table(texts, langs))
    assert set(r0.to_pylist()[:-1]) == {"stop_words"}  # English stop words: German is wiped out
    per = build_stage(
        "gopher_quality", {"min_doc_words": 20, "per_language": {"de": {"skip": ["stop_words"]}}}
    )
    out, r1 = per.process(_table(texts, langs))
    assert r1 is None or r1.to_pylist()[: len(german)] == [None] * len(german)
    # the signal is still there for everyone
    assert all(v is not None for v in pc_field(out, "gopher_stop_words"))
    per_thr = build_stage(
        "gopher_quality", {"min_doc_words": 20, "per_language": {"de": {"stop_words": ["der", "die", "und"]}}}
    )
    _, r2 = per_thr.process(_table(texts, langs))
    assert (r2.to_pylist() if r2 is not None else [None])[-1] is None
    only = build_stage("gopher_quality", {"min_doc_words": 20, "only_languages": ["en"]})
    _, r3 = only.process(_table(texts, langs))
    assert r3 is None or all(x is None for x in r3.to_pylist())
    with pytest.raises(ValueError):
        build_stage("gopher_quality", {"per_language": {"de": {"skip": ["no_such_rule"]}}})
    with pytest.raises(ValueError):
        build_stage("c4_quality", {"per_language": {"de": {"min_num_sentencez": 3}}})


def pc_field(table: pa.Table, name: str) -> list:
    return [row[name] for row in table["quality"].to_pylist()]


def test_output_fields_declare_every_signal():
    for name in FILTERS:
        st = build_stage(name, {})
        declared = {f.name for f in st.output_fields()[0].type}
        out, _ = st.process(_table(["A first line here.\nA second line follows. " * 30]))
        assert {f.name for f in out.schema.field("quality").type} == declared


def test_end_to_end_report_by_language_and_drop_reasons(run_config, tmp_path, docs):
    inp = tmp_path / "in"
    inp.mkdir()
    with open(inp / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n")
    cfg = {
        "input": {"uri": str(inp)},
        "output": {"uri": str(tmp_path / "out"), "target_shard_mb": 1},
        "stages": [
            {"stage": "langid"},
            {"stage": "gopher_quality", "params": {"only_languages": ["en"]}},
            {"stage": "c4_quality", "params": {"action": "annotate"}},
        ],
    }
    res = run_config(cfg)
    rep = res.report
    assert check_accounting(rep) == []
    assert rep["rows_read"] == len(docs)
    stages = {s["name"]: s for s in rep["stages"]}
    gq = stages["gopher_quality"]
    # only English rows can be dropped by gopher_quality; other languages pass through and are reported
    assert gq["dropped"] and set(gq["by_lang"]) > {"en"}
    for lang, v in gq["by_lang"].items():
        if lang != "en":
            assert v["dropped"] == {}, lang
    assert sum(sum(v["dropped"].values()) for v in gq["by_lang"].values()) == sum(gq["dropped"].values())
    assert set(gq["dropped"]) <= set(ts_rules("gopher_quality"))
    # C4 only annotates: nothing dropped, flags counted, its cleanup is counted
    c4 = stages["c4_quality"]
    assert c4["dropped"] == {} and c4["flagged"]
    assert c4["counters"].get("lines_removed", 0) > 0 and c4["counters"].get("chars_removed", 0) > 0
    table, manifest = read_output(res.output_uri)
    assert {"lang", "lang_score", "quality", "flagged"} <= set(table.column_names)
    qnames = {f.name for f in table.schema.field("quality").type}
    assert {"gopher_mean_word_length", "gopher_stop_words", "c4_lines_removed", "c4_sentences"} <= qnames
    droplog = pq.read_table(
        Path(res.output_uri) / next(f["path"] for f in manifest["files"] if f["kind"] == "droplog")
    )
    reasons = set(zip(droplog["stage"].to_pylist(), droplog["reason"].to_pylist(), strict=True))
    assert ("gopher_quality", next(iter(gq["dropped"]))) in reasons
    assert droplog["lang"].null_count == 0  # dropped rows keep their language


def ts_rules(name: str) -> tuple[str, ...]:
    from stages.quality.gopher_quality import GopherQualityRules

    return {"gopher_quality": GopherQualityRules.rule_names()}[name]


def test_repetition_signals_equal_datatrove_on_repetitive_word_sequences():
    """Every n-gram signal, for every n, equals datatrove's find_top_duplicate / find_all_duplicate on texts
    with many repeats (ids of n-grams are built from those of (n-1)-grams, and the duplicate scan visits only
    repeated positions; both must give datatrove's numbers exactly)."""
    import random

    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate,
        find_top_duplicate,
        get_n_grams,
    )

    rng = random.Random(11)
    vocab = ["alpha", "bravo", "carol", "delta", "eagle", "fable"]  # same length: "".join is unambiguous
    texts, word_lists = [], []
    for _ in range(300):
        k = rng.randint(1, 4)
        motif = [rng.choice(vocab[: rng.randint(2, 6)]) for _ in range(rng.randint(1, 12))]
        words = [w for _ in range(k) for w in motif + [rng.choice(vocab) for _ in range(rng.randint(0, 6))]]
        word_lists.append(words)
        texts.append(" ".join(words))
    out, _ = build_stage("gopher_repetition", {}).process(_table(texts))
    quality = out["quality"].to_pylist()
    for words, text, q in zip(word_lists, texts, quality, strict=True):
        for n in (2, 3, 4):
            want = find_top_duplicate(get_n_grams(words, n)) / len(text) if len(words) >= n else None
            got = q[f"rep_top_{n}_gram_frac"]
            assert (got is None or np.isnan(got)) if want is None else got == pytest.approx(want), (text, n)
        for n in range(5, 11):
            want = find_all_duplicate(words, n) / len(text)
            assert q[f"rep_dup_{n}_gram_frac"] == pytest.approx(want), (text, n)
