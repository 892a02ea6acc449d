"""The `pii` stage's person-name rules (stages/pii/names.py): gazetteer, cues, speakers, lowercase text."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from stages.pii.names import census_names
from stages.pii.scrub import Pii, resolve_model

MODEL = resolve_model("auto")
# the first 500 records of ../shared/data/pii/presidio_synth_v2.jsonl.gz (tests/fixtures/pii_text/README.md)
SYNTH = Path(__file__).parent / "fixtures" / "pii_text" / "presidio_synth_v2_first500.jsonl.gz"
needs_model = pytest.mark.skipif(MODEL is None, reason="no spaCy English model installed")


def scrub(texts: list[str], **params) -> list[str]:
    stage = Pii({"ner_model": "auto", **params})
    stage.setup()
    out, _ = stage.process(
        pa.table({"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.large_string())})
    )
    return out["text"].to_pylist()


def test_census_gazetteer_ships_in_the_installed_package():
    first, last = census_names()
    assert len(first) > 5000 and len(last) > 80000
    assert {"todd", "florence", "maria"} <= first.keys() and {"johnson", "garcia", "nguyen"} <= last
    assert all(0 < share < 5 for share in first.values())  # % of the population, as the Census files give it


@needs_model
def test_rules_find_names_the_model_misses_and_leave_the_rest_intact():
    docs = [
        "I would like to remove my kid Todd from the will. How do I do that?",
        "My name is Ludmiła",
        "Name:    Nayla Montero Address:     unknown",
        "follow up with patricia desrosiers in a couple of months.",
        "she was born on 8/5/1989. her maiden name is nyberg",
        "Ubul: What a wife. Nicole: Remember me, Mary? When I killed your brother! John: You saved my life!",
    ]
    names = ["Todd", "Ludmiła", "Nayla Montero", "patricia desrosiers", "nyberg", "Ubul"]
    before = scrub(docs, name_rules=False)
    after = scrub(docs)
    for name, old, new in zip(names, before, after, strict=True):
        assert name in old, "the model alone finds it: this case no longer tests the rules"
        assert name not in new and "<PERSON>" in new
    # Only the name was replaced: the rest of each sentence is unchanged (the last one has other names too).
    assert after[:5] == [d.replace(n, "<PERSON>") for d, n in zip(docs[:5], names[:5], strict=True)]


@needs_model
def test_common_words_and_the_models_other_labels_are_not_names():
    docs = [
        "Will you come? May is a good month, and I hope to grant it.",
        "We flew to Florence, Italy, last week. Florence was hot.",
        "the committee approved the budget and the minutes.",
    ]
    out = scrub(docs)
    assert out[0] == docs[0]  # given names that are English words ("Will", "May", "Grant") need the model
    assert "<PERSON>" not in out[1]  # the model called Florence a place: one sense per document
    assert out[2] == docs[2]


@needs_model
def test_rules_cut_the_person_leak_on_real_labelled_data():
    with gzip.open(SYNTH, "rt") as f:
        docs = [json.loads(line) for _, line in zip(range(500), f, strict=False)]
    texts = [d["text"] for d in docs]

    def leaks(outs: list[str], kind: str) -> tuple[int, int]:
        vals = [
            (d["text"][s["start"] : s["end"]], o)
            for d, o in zip(docs, outs, strict=True)
            for s in d["spans"]
            if s["type"] == kind
        ]
        return sum(v in o for v, o in vals), len(vals)

    before, after = scrub(texts, name_rules=False), scrub(texts)
    (lb, n), (la, _) = leaks(before, "PERSON"), leaks(after, "PERSON")
    assert n > 200
    assert la < lb and la / n <= 0.10, (lb, la, n)
    for kind in ("EMAIL_ADDRESS", "CREDIT_CARD", "PHONE_NUMBER", "IBAN_CODE"):
        assert leaks(after, kind)[0] == 0, kind
