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

    def process(self, batch: pa.Table) -> StageResult:
        texts = pc.fill_null(batch["text"], "").to_pylist()
        n = len(texts)
        rows = qrules.group_rows(
            qrules.batch_langs(batch), self.base, self.by_lang, self.params.only_languages, n
        )
        sig = {k: np.full(n, np.nan) for k in SIGNALS}
        fail: dict[str, np.ndarray] = {r: np.zeros(n, dtype=bool) for r in _RULES}
        for rules, idx in rows.groups:
            stop_hashes = np.array([qtok.word_hash(w) for w in rules.stop_words], dtype=np.uint64)
            for i in idx.tolist():
                self._row(texts[i], i, rules, stop_hashes, sig, fail)
        out = set_struct_fields(batch, "quality", qrules.signal_columns(sig, SIGNALS))
        return out, qrules.first_reasons(n, [(fail[r], r) for r in _RULES], rows.judged)

    @staticmethod
    def _row(
        text: str, i: int, r: GopherQualityRules, stop_hashes: np.ndarray, sig: dict, fail: dict
    ) -> None:
        words = qtok.words_of(qtok.tokens(text))
        n_words = len(words)
        nonsym = words[:, qtok.NONSYM] != 0
        n_ns = int(nonsym.sum())
        sig["gopher_words"][i] = n_ns
        mean_len = float(words[nonsym, qtok.LENGTH].mean()) if n_ns else float("nan")
        sig["gopher_mean_word_length"][i] = mean_len
        lines = text.splitlines()
        n_lines = len(lines)
        if n_words:
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

        a = r.active
        if a("too_few_words") and _on(r.min_doc_words) and n_ns < r.min_doc_words:
            fail["too_few_words"][i] = True
        if a("too_many_words") and _on(r.max_doc_words) and n_ns > r.max_doc_words:
            fail["too_many_words"][i] = True
        if a("mean_word_length") and (
            (_on(r.min_avg_word_length) and mean_len < r.min_avg_word_length)
            or (_on(r.max_avg_word_length) and mean_len > r.max_avg_word_length)
        ):
            fail["mean_word_length"][i] = True
        if _on(r.max_symbol_word_ratio) and n_words:
            if a("hash_ratio") and sig["gopher_hash_ratio"][i] > r.max_symbol_word_ratio:
                fail["hash_ratio"][i] = True
            if a("ellipsis_ratio") and sig["gopher_ellipsis_ratio"][i] > r.max_symbol_word_ratio:
                fail["ellipsis_ratio"][i] = True
        if n_lines:
            if (
                a("bullet_lines")
                and _on(r.max_bullet_lines_ratio)
                and sig["gopher_bullet_lines_ratio"][i] > r.max_bullet_lines_ratio
            ):
                fail["bullet_lines"][i] = True
            if (
                a("ellipsis_lines")
                and _on(r.max_ellipsis_lines_ratio)
                and sig["gopher_ellipsis_lines_ratio"][i] > r.max_ellipsis_lines_ratio
            ):
                fail["ellipsis_lines"][i] = True
        if (
            a("alpha_words")
            and _on(r.max_non_alpha_words_ratio)
            and n_words
            and sig["gopher_alpha_words_ratio"][i] < r.max_non_alpha_words_ratio
        ):
            fail["alpha_words"][i] = True
        if a("stop_words") and _on(r.min_stop_words) and sig["gopher_stop_words"][i] < r.min_stop_words:
            fail["stop_words"][i] = True
