"""`fineweb_quality`: FineWeb's extra line rules (Penedo et al. 2024), as in datatrove's FineWebQualityFilter.

Why: after Gopher and C4, FineWeb found that pages made of short, unpunctuated or repeated lines (menus, lists,
tables) were still the main source of junk. Signals go into `quality`; defaults are the published values.

Drop reasons (datatrove's order): empty, line_punct_ratio, short_line_ratio, char_dup_ratio, list_ratio.
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

    def process(self, batch: pa.Table) -> StageResult:
        texts = pc.fill_null(batch["text"], "").to_pylist()
        n = len(texts)
        rows = qrules.group_rows(
            qrules.batch_langs(batch), self.base, self.by_lang, self.params.only_languages, n
        )
        sig = {k: np.full(n, np.nan) for k in SIGNALS}
        reasons: list[str | None] = [None] * n
        for rules, idx in rows.groups:
            stops = (
                tuple(rules.stop_chars) if rules.stop_chars is not None else tuple(qtok.TERMINAL_PUNCTUATION)
            )
            for i in idx.tolist():
                r = self._row(texts[i], i, rules, stops, sig)
                reasons[i] = r if rows.judged[i] else None
        out = set_struct_fields(batch, "quality", qrules.signal_columns(sig, SIGNALS))
        return out, pa.array(reasons, pa.string()) if any(r is not None for r in reasons) else None

    @staticmethod
    def _row(text: str, i: int, r: FineWebQualityRules, stops: tuple[str, ...], sig: dict) -> str | None:
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return "empty" if r.active("empty") else None
        fails: list[str] = []
        n_lines = len(lines)
        punct = sum(1 for line in lines if line.endswith(stops)) / n_lines
        sig["fw_line_punct_ratio"][i] = punct
        if r.line_punct_thr is not None and r.active("line_punct_ratio"):
            if punct < r.line_punct_thr and not (punct == 0 and r.line_punct_exclude_zero):
                fails.append("line_punct_ratio")
        short = sum(1 for line in lines if len(line) <= r.short_line_length) / n_lines
        sig["fw_short_line_ratio"][i] = short
        if r.short_line_thr is not None and r.active("short_line_ratio") and short > r.short_line_thr:
            fails.append("short_line_ratio")
        non_nl = len(text) - text.count("\n")
        dup = qrules.find_duplicates(lines)[1] / non_nl if non_nl else 0.0
        sig["fw_char_dup_ratio"][i] = dup
        if (
            r.char_duplicates_ratio is not None
            and r.active("char_dup_ratio")
            and dup > r.char_duplicates_ratio
        ):
            fails.append("char_dup_ratio")
        n_words = len(qtok.words_of(qtok.tokens(text)))
        if n_words:
            ratio = text.count("\n") / n_words
            sig["fw_list_ratio"][i] = ratio
            if r.new_line_ratio is not None and r.active("list_ratio") and ratio > r.new_line_ratio:
                fails.append("list_ratio")
        return fails[0] if fails else None
