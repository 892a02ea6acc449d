"""The memoized tokenizer gives exactly spaCy's tokens (the quality rules' agreement with datatrove rests on it)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from stages.quality import tokenizer as qtok

FIX = Path(__file__).parent / "fixtures"


def _reference():
    """A pristine spaCy blank English tokenizer with every default lexeme getter, plus our three flags."""
    import spacy
    from spacy.attrs import IDX, IS_PUNCT, IS_SPACE, LENGTH, ORTH
    from spacy.pipeline.sentencizer import Sentencizer

    nlp = spacy.blank("en")
    sent = frozenset(Sentencizer.default_punct_chars)
    flags = [
        nlp.vocab.add_flag(lambda s: any(ch not in qtok.PUNCTUATION_SET for ch in s)),
        nlp.vocab.add_flag(lambda s: any(ch.isalpha() for ch in s)),
        nlp.vocab.add_flag(lambda s: s in sent),
    ]
    attrs = [ORTH, IDX, LENGTH, IS_SPACE, IS_PUNCT, *flags]

    def tokenize(text: str) -> np.ndarray:
        doc = nlp.tokenizer(text)
        return doc.to_array(attrs).reshape(-1, 8) if len(doc) else np.zeros((0, 8), dtype=np.uint64)

    return tokenize


def _real_texts() -> list[str]:
    texts = [
        json.loads(line)["text"]
        for line in gzip.open(FIX / "quality" / "docs.jsonl.gz", "rt", encoding="utf-8")
    ]
    texts += [
        json.loads(line)["text"]
        for line in gzip.open(FIX / "langid" / "lingua_sentences_slice.jsonl.gz", "rt", encoding="utf-8")
    ]
    return texts


def _hostile_texts(n: int = 1500) -> list[str]:
    """Random mixes of the characters spaCy treats specially: runs of mixed whitespace, punctuation that splits
    as prefix/suffix/infix, special cases (emoticons, abbreviations, contractions) and URLs."""
    pieces = [
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "\u00a0",
        "\u2003",
        " \n ",
        "a",
        "word",
        "Hello",
        "U.S.",
        "a.m.",
        "p.m.",
        "e.g.",
        ":)",
        ":-(",
        "<3",
        "(",
        ")",
        "[x]",
        '"q"',
        "'s",
        "don't",
        "can't",
        "—",
        "...",
        "!",
        "?",
        "http://example.org/a?b=c",
        "user@example.com",
        "12,000",
        "3.14",
        "#tag",
        "@you",
        "日本語",
        "Привет",
        "co-operate",
        "C++",
        "$5",
        "10%",
        "’",
        "«",
        "»",
        ".",
        ",",
        "naïve",
        "Ñandú",
        "ελληνικά",
        "عربي",
        "हिन्दी",
        "ไทย",
        "ǅ",
        "ﬁne",
        "Straße",
        "İ",
        "ª",
        "º",
        "²",
        "Ⅻ",
        "cannot",
        "gonna",
        "Mr",
        "Dr",
        "etc",
        "vs",
        "i",
        "I",
        "em",
        "ll",
        "s",
        "A",
        "B",
    ]
    rng = random.Random(7)
    # spaCy's phrase matcher can match across a space and so block a special case beside it ("( :)" is "(" ":" ")")
    shadowed = ["( :)", "x ( :),y", "Containers: 1", "2001) -", "it 's", "(: :)", "a.m .", "It 's :)"]
    return shadowed + ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 60))) for _ in range(n)]


@pytest.mark.parametrize("source", ["real", "hostile"])
def test_memoized_tokens_equal_spacy_tokens(source):
    texts = _real_texts() if source == "real" else _hostile_texts()
    ref = _reference()
    tok = qtok._Tokenizer("en")
    assert tok.memoize
    for _ in range(2):  # the second pass is served from the memo of runs
        for t in texts:
            got, want = tok(t), ref(t)
            assert np.array_equal(got, want), f"tokens differ for {t[:80]!r}"
    assert len(tok.runs) > 100


def test_affixed_words_split_as_spacy_splits_them():
    """Words of affixes around a core, which the tokenizer splits itself with spaCy's affix loop: every branch of
    that loop (a special case left after a prefix or a suffix, both affixes at once, nested affixes, a rule the
    phrase matcher fuses over the split tokens) against spaCy, each word alone and all of them in one text."""
    cores = ["word", "Word", "WORD", "aB", "s", "S", "i", "I", "Mr", "etc", "cannot", "gonna", "em", "ll", "naïve",
             "Straße", "日本語", "ไทย", "ǅ", "ﬁne", "ª", "Ⅻ", "U.S", "a.m", "don't", "co", "x"]  # fmt: skip
    prefixes = ["", "(", "((", "'", '"', "“", "«", "$", "#", "...", "-", "[", ":", "'(", "(:"]
    suffixes = ["", ",", ".", "..", ")", "),", ".)", "'s", "’s", "'", ":", ":)", "!", "?!", "%", "”", "»", ").",
                "'s,", "s", "-", ",)"]  # fmt: skip
    words = [p + c + s for c in cores for p in prefixes for s in suffixes]
    ref, tok = _reference(), qtok._Tokenizer("en")
    for w in words:
        assert np.array_equal(tok(w), ref(w)), f"tokens differ for {w!r}"
    fresh = qtok._Tokenizer("en")
    text = " ".join(words)
    assert np.array_equal(fresh(text), ref(text))
    assert sum(fresh._affixed(w) is not None for w in words) > len(words) // 3  # the path under test is taken
