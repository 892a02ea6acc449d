"""`fineweb_quality`: FineWeb's extra line rules (Penedo et al. 2024), as in datatrove's FineWebQualityFilter.

Why: after Gopher and C4, FineWeb found that pages made of short, unpunctuated or repeated lines (menus, lists,
tables) were still the main source of junk. Signals go into `quality`; defaults are the published values.

Drop reasons (datatrove's order): empty, line_punct_ratio, short_line_ratio, char_dup_ratio, list_ratio.
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

_RULES = ("empty", "line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio")


class FineWebQualityRules(qrules.RuleSet):
    line_punct_thr: Fraction | None = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: list[str] | None = Field(
        default=None, description="line-final marks; default: datatrove's TERMINAL_PUNCTUATION"
    )
    short_line_thr: Fraction | None = 0.67
    short_line_length: NonNegInt = 30
    char_duplicates_ratio: Fraction | None = 0.01
    new_line_ratio: NonNegFloat | None = 0.3  # newlines per word: may exceed 1

    @classmethod
    def rule_names(cls) -> tuple[str, ...]:
        return _RULES


class FineWebQualityParams(qrules.LanguageRulesParams, FineWebQualityRules):
    pass


SIGNALS = {
    "fw_line_punct_ratio": pa.float64(),
    "fw_short_line_ratio": pa.float64(),
    "fw_char_dup_ratio": pa.float64(),
    "fw_list_ratio": pa.float64(),
}


@register
class FineWebQuality(qrules.RuleSetStage[FineWebQualityParams]):
    name = "fineweb_quality"

    Rules = FineWebQualityRules
    SIGNALS = SIGNALS

    SIGNAL_PARAMS = frozenset({"stop_chars", "short_line_length"})

    def process(self, batch: pa.Table) -> StageResult:
        texts = pc.fill_null(batch["text"], "").to_pylist()
        n = len(texts)
        langs = qrules.batch_langs(batch)
        rows = qrules.group_rows(langs, self.base, self.by_lang, self.params.only_languages, n)
        sig = {k: np.full(n, np.nan) for k in SIGNALS}
        for rules, idx in rows.groups:
            stops = (
                tuple(rules.stop_chars) if rules.stop_chars is not None else tuple(qtok.TERMINAL_PUNCTUATION)
            )
            for i in idx.tolist():
                self._row(texts[i], i, rules, stops, sig)
        out = set_struct_fields(batch, "quality", qrules.signal_columns(sig, SIGNALS))
        return out, self.reasons_from_signals(sig, langs, n)

    @staticmethod
    def _row(text: str, i: int, r: FineWebQualityRules, stops: tuple[str, ...], sig: dict) -> None:
        """The signals of one document; all stay undefined (NaN) for a document without a non-blank line."""
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return
        n_lines = len(lines)
        sig["fw_line_punct_ratio"][i] = sum(1 for line in lines if line.endswith(stops)) / n_lines
        sig["fw_short_line_ratio"][i] = sum(1 for line in lines if len(line) <= r.short_line_length) / n_lines
        non_nl = len(text) - text.count("\n")
        sig["fw_char_dup_ratio"][i] = qrules.find_duplicates(lines)[1] / non_nl if non_nl else 0.0
        n_words = len(qtok.words_of(qtok.tokens(text)))
        if n_words:
            sig["fw_list_ratio"][i] = text.count("\n") / n_words

    def checks(self, sig: Mapping[str, np.ndarray], rules: Any) -> list[tuple[np.ndarray, str]]:
        """datatrove's rules in its order; an empty document fails only `empty`."""
        r: FineWebQualityRules = rules
        out: list[tuple[np.ndarray, str]] = []
        punct = sig["fw_line_punct_ratio"]

        def rule(name: str, on: bool, mask: np.ndarray) -> None:
            if on and r.active(name):
                out.append((mask, name))

        rule("empty", True, np.isnan(punct))
        zero_ok = (punct == 0) & r.line_punct_exclude_zero
        rule("line_punct_ratio", r.line_punct_thr is not None, (punct < (r.line_punct_thr or 0)) & ~zero_ok)
        rule(
            "short_line_ratio",
            r.short_line_thr is not None,
            sig["fw_short_line_ratio"] > (r.short_line_thr or 0),
        )
        rule(
            "char_dup_ratio",
            r.char_duplicates_ratio is not None,
            sig["fw_char_dup_ratio"] > (r.char_duplicates_ratio or 0),
        )
        rule("list_ratio", r.new_line_ratio is not None, sig["fw_list_ratio"] > (r.new_line_ratio or 0))
        return out
