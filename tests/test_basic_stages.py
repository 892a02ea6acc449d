"""`normalize` and `length_filter` on their own: tiny Arrow tables made from real fixture text, no Ray."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from stages.length_filter import LengthFilter
from stages.normalize import Normalize

TEXTS = [
    json.loads(line)["text"]
    for line in (Path(__file__).parent / "fixtures" / "foundation" / "docs_a.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]  # 100 real documents (lingua-py, Apache-2.0)


def table(texts: list[str | None], modality: list[str] | None = None) -> pa.Table:
    return pa.table(
        {
            "id": [str(i) for i in range(len(texts))],
            "text": pa.array(texts, pa.large_string()),
            "modality": modality or ["text"] * len(texts),
        }
    )


def test_normalize_makes_one_canonical_text():
    base = TEXTS[3]
    messy = "  " + base.replace(" ", " \t\u00a0 ", 3) + "\r\n\r\n\r\n\r\nzweiter\u200b Absatz\x07 \r\n"
    decomposed = unicodedata.normalize("NFD", "Émile Zola, café")
    out, reasons = Normalize().process(table([messy, decomposed, None]))
    assert reasons is None
    text = out["text"].to_pylist()
    assert text[0] == base + "\n\nzweiter Absatz"  # CRLF, control chars, zero-width space, runs of spaces
    assert text[1] == "Émile Zola, café" and text[1] == unicodedata.normalize("NFC", decomposed)
    assert text[2] is None
    assert out.schema == table([messy]).schema  # same columns, same types


def test_normalize_params_change_what_it_does():
    s = "ﬁne  ligature\n\n\n\nend"
    assert Normalize({"form": "NFKC"}).process(table([s]))[0]["text"][0].as_py() == "fine ligature\n\nend"
    assert (
        Normalize({"form": "none", "collapse_whitespace": False}).process(table([s]))[0]["text"][0].as_py()
        == s
    )
    assert Normalize({"max_blank_lines": 0}).process(table([s]))[0]["text"][0].as_py() == "ﬁne ligature\nend"
    with pytest.raises(ValidationError):
        Normalize({"max_blank_lines": -1})


def test_length_filter_gives_one_reason_per_dropped_row():
    words = [len(t.split()) for t in TEXTS]
    stage = LengthFilter({"min_words": 100, "max_chars": 2000})
    _, reasons = stage.process(table(TEXTS))
    got = reasons.to_pylist()
    for t, n, r in zip(
        TEXTS, words, got, strict=True
    ):  # the first failing check (chars before words) names it
        assert r == ("too_many_chars" if len(t) > 2000 else "too_few_words" if n < 100 else None)
    assert {"too_few_words", None} <= set(got)  # the fixture has both kinds


def test_length_filter_judges_only_its_modalities():
    t = table(["", "a caption", "x" * 10], modality=["text", "image", "text"])
    reasons = LengthFilter({"min_chars": 5}).process(t)[1].to_pylist()
    assert reasons == ["too_few_chars", None, None]
    reasons = LengthFilter({"min_chars": 50, "modalities": ["text", "image"]}).process(t)[1].to_pylist()
    assert reasons == ["too_few_chars", "too_few_chars", "too_few_chars"]
    with pytest.raises(ValidationError, match="greater than"):
        LengthFilter({"min_chars": 10, "max_chars": 5})
