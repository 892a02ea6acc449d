"""`gopher_quality`: the Gopher quality heuristics (Rae et al. 2021, table A1) as stored signals plus thresholds.

Why: these rules remove boilerplate, lists, symbol soup and non-prose. The signals go into the `quality` struct
so a user can re-threshold later without recomputing; the defaults are the published values as implemented by
datatrove's GopherQualityFilter, which is the reference we check agreement against (tests/test_quality.py,
scripts/eval/quality_agreement.py). Words are spaCy's blank-English tokens, exactly as in datatrove.

Drop reasons (first failing rule, datatrove's order): too_few_words, too_many_words, mean_word_length (below
min or above max), hash_ratio, ellipsis_ratio, bullet_lines, ellipsis_lines, alpha_words, stop_words.
The stop-word rule is English; `per_language` can change or `skip` any rule for a language, and
`only_languages` limits the drops to some languages (the others are annotated only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.schema import set_struct_fields
from refinery.stage import Fraction, NonNegFloat, NonNegInt, StageResult, register
from stages.quality import rules as qrules
from stages.quality import tokenizer as qtok

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
_RULES = (
    "too_few_words",
    "too_many_words",
    "mean_word_length",
    "hash_ratio",
    "ellipsis_ratio",
    "bullet_lines",
    "ellipsis_lines",
    "alpha_words",
    "stop_words",
)


class GopherQualityRules(qrules.RuleSet):
    min_doc_words: NonNegInt | None = 50
    max_doc_words: NonNegInt | None = 100_000
    min_avg_word_length: NonNegFloat | None = 3
    max_avg_word_length: NonNegFloat | None = 10
    max_symbol_word_ratio: NonNegFloat | None = 0.1  # symbols per word: may exceed 1
    max_bullet_lines_ratio: Fraction | None = 0.9
    max_ellipsis_lines_ratio: Fraction | None = 0.3
    # datatrove's name; it is the *minimum* share of words that contain a letter
    max_non_alpha_words_ratio: Fraction | None = 0.8
    min_stop_words: NonNegInt | None = 2
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS))

    @classmethod
    def rule_names(cls) -> tuple[str, ...]:
        return _RULES


class GopherQualityParams(qrules.LanguageRulesParams, GopherQualityRules):
    pass


SIGNALS = {
    "gopher_words": pa.int32(),  # words with at least one non-punctuation character
    "gopher_mean_word_length": pa.float64(),
    "gopher_hash_ratio": pa.float64(),
    "gopher_ellipsis_ratio": pa.float64(),
    "gopher_bullet_lines_ratio": pa.float64(),
    "gopher_ellipsis_lines_ratio": pa.float64(),
    "gopher_alpha_words_ratio": pa.float64(),
    "gopher_stop_words": pa.int32(),  # distinct stop words present
}


def _on(v: float | None) -> bool:
    # datatrove tests thresholds for truthiness: 0 and None both switch a rule off
    return bool(v)


@register
class GopherQuality(qrules.RuleSetStage[GopherQualityParams]):
    name = "gopher_quality"

    Rules = GopherQualityRules
    SIGNALS = SIGNALS

    SIGNAL_PARAMS = frozenset({"stop_words"})

    def process(self, batch: pa.Table) -> StageResult:
        texts = pc.fill_null(batch["text"], "").to_pylist()
        n = len(texts)
        langs = qrules.batch_langs(batch)
        rows = qrules.group_rows(langs, self.base, self.by_lang, self.params.only_languages, n)
        sig = {k: np.full(n, np.nan) for k in SIGNALS}
        for rules, idx in rows.groups:
            stop_hashes = np.array([qtok.word_hash(w) for w in rules.stop_words], dtype=np.uint64)
            for i in idx.tolist():
                self._row(texts[i], i, stop_hashes, sig)
        out = set_struct_fields(batch, "quality", qrules.signal_columns(sig, SIGNALS))
        return out, self.reasons_from_signals(sig, langs, n)

    @staticmethod
    def _row(text: str, i: int, stop_hashes: np.ndarray, sig: dict) -> None:
        words = qtok.words_of(qtok.tokens(text))
        n_words = len(words)
        nonsym = words[:, qtok.NONSYM] != 0
        n_ns = int(nonsym.sum())
        sig["gopher_words"][i] = n_ns
        sig["gopher_mean_word_length"][i] = float(words[nonsym, qtok.LENGTH].mean()) if n_ns else float("nan")
        lines = text.splitlines()
        n_lines = len(lines)
        if n_words:  # left undefined (NaN) without words: the ratio rules then do not apply
            sig["gopher_hash_ratio"][i] = text.count("#") / n_words
            sig["gopher_ellipsis_ratio"][i] = (text.count("...") + text.count("…")) / n_words
            sig["gopher_alpha_words_ratio"][i] = int((words[:, qtok.ALPHA] != 0).sum()) / n_words
        if n_lines:
            sig["gopher_bullet_lines_ratio"][i] = (
                sum(s.lstrip().startswith(("•", "-")) for s in lines) / n_lines
            )
            sig["gopher_ellipsis_lines_ratio"][i] = (
                sum(s.rstrip().endswith(("...", "…")) for s in lines) / n_lines
            )
        sig["gopher_stop_words"][i] = int(np.isin(stop_hashes, words[:, qtok.ORTH]).sum()) if n_words else 0

    def checks(self, sig: Mapping[str, np.ndarray], rules: Any) -> list[tuple[np.ndarray, str]]:
        """datatrove's rules in its order; comparisons with an undefined (NaN) signal fail no rule."""
        r: GopherQualityRules = rules
        out: list[tuple[np.ndarray, str]] = []
        words, mean = sig["gopher_words"], sig["gopher_mean_word_length"]

        def rule(name: str, on: bool, mask: np.ndarray) -> None:
            if on and r.active(name):
                out.append((mask, name))

        rule("too_few_words", _on(r.min_doc_words), words < (r.min_doc_words or 0))
        rule("too_many_words", _on(r.max_doc_words), words > (r.max_doc_words or 0))
        too_short = mean < r.min_avg_word_length if _on(r.min_avg_word_length) else np.zeros(len(mean), bool)
        too_long = mean > r.max_avg_word_length if _on(r.max_avg_word_length) else np.zeros(len(mean), bool)
        rule("mean_word_length", True, too_short | too_long)
        sym = r.max_symbol_word_ratio or 0
        rule("hash_ratio", _on(r.max_symbol_word_ratio), sig["gopher_hash_ratio"] > sym)
        rule("ellipsis_ratio", _on(r.max_symbol_word_ratio), sig["gopher_ellipsis_ratio"] > sym)
        rule(
            "bullet_lines",
            _on(r.max_bullet_lines_ratio),
            sig["gopher_bullet_lines_ratio"] > (r.max_bullet_lines_ratio or 0),
        )
        rule(
            "ellipsis_lines",
            _on(r.max_ellipsis_lines_ratio),
            sig["gopher_ellipsis_lines_ratio"] > (r.max_ellipsis_lines_ratio or 0),
        )
        rule(
            "alpha_words",
            _on(r.max_non_alpha_words_ratio),
            sig["gopher_alpha_words_ratio"] < (r.max_non_alpha_words_ratio or 0),
        )
        rule("stop_words", _on(r.min_stop_words), sig["gopher_stop_words"] < (r.min_stop_words or 0))
        return out
