"""`gopher_repetition`: Gopher's repetition rules (Rae et al. 2021, table A1) as stored signals plus thresholds.

Why: repeated lines, paragraphs and n-grams are the signature of templated spam and crawler traps, and
repetitive text harms language models. Signals go into `quality` (re-threshold without recomputing); the
defaults are the published values as implemented by datatrove's GopherRepetitionFilter (the agreement
reference). Word n-grams are compared as 64-bit hashes of spaCy token ids with numpy instead of as joined
strings, which is where most of datatrove's time goes.

Drop reasons (first failing rule, datatrove's order): empty, dup_para_frac, dup_para_char_frac, dup_line_frac,
dup_line_char_frac, top_<n>_gram, duplicated_<n>_n_grams.
"""

from __future__ import annotations

import re
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.schema import set_struct_fields
from refinery.stage import Fraction, StageResult, register
from stages.quality import rules as qrules
from stages.quality import tokenizer as qtok

_PARA = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")
NGramSize = Annotated[int, Field(ge=1, le=20)]
TOP_N_GRAMS = ((2, 0.2), (3, 0.18), (4, 0.16))
DUP_N_GRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))


class GopherRepetitionRules(qrules.RuleSet):
    dup_line_frac: Fraction | None = 0.3
    dup_para_frac: Fraction | None = 0.3
    dup_line_char_frac: Fraction | None = 0.2
    dup_para_char_frac: Fraction | None = 0.2
    # (n, largest share of characters) pairs, n from 1 to 20
    top_n_grams: list[tuple[NGramSize, Fraction]] = Field(
        default_factory=lambda: [tuple(x) for x in TOP_N_GRAMS]
    )
    dup_n_grams: list[tuple[NGramSize, Fraction]] = Field(
        default_factory=lambda: [tuple(x) for x in DUP_N_GRAMS]
    )

    @classmethod
    def rule_names(cls) -> tuple[str, ...]:
        return (
            "empty", "dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac",
            *(f"top_{n}_gram" for n in range(1, 21)), *(f"duplicated_{n}_n_grams" for n in range(1, 21)),
        )  # fmt: skip


class GopherRepetitionParams(qrules.LanguageRulesParams, GopherRepetitionRules):
    pass


_BASE_SIGNALS = {
    "rep_dup_para_frac": pa.float64(),
    "rep_dup_para_char_frac": pa.float64(),
    "rep_dup_line_frac": pa.float64(),
    "rep_dup_line_char_frac": pa.float64(),
}


def top_ngram_chars(words: np.ndarray, n: int) -> int | None:
    """Characters covered by the most frequent word n-gram (ties: the first seen), as in datatrove."""
    ids = qrules.ngram_ids(words[:, qtok.ORTH], n)
    if len(ids) == 0:
        return None
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    best = counts.max()
    pos = int(first[counts == best].min())
    chars = int(words[pos : pos + n, qtok.LENGTH].sum()) + n - 1  # joined with spaces
    return chars * int(best)


def duplicated_ngram_chars(words: np.ndarray, n: int) -> int:
    """datatrove's find_all_duplicate: greedy left-to-right, a repeated n-gram's characters count once and the
    scan jumps past it. Only positions whose n-gram occurs more than once can count, so only those are visited."""
    ids = qrules.ngram_ids(words[:, qtok.ORTH], n)
    if len(ids) < 2:
        return 0
    ordered = np.sort(ids)
    if not (ordered[1:] == ordered[:-1]).any():  # the common case: no n-gram repeats
        return 0
    _, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)
    cand = np.nonzero(counts[inv] > 1)[0]
    if len(cand) == 0:
        return 0
    cum = np.concatenate(([0], np.cumsum(words[:, qtok.LENGTH].astype(np.int64))))
    seen: set[int] = set()
    idx = 0
    repeated = 0
    id_list = ids.tolist()
    for p in cand.tolist():
        if p < idx:
            continue
        key = id_list[p]
        if key in seen:
            repeated += int(cum[p + n] - cum[p])
            idx = p + n
        else:
            seen.add(key)
            idx = p + 1
    return repeated


@register
class GopherRepetition(qrules.RuleSetStage[GopherRepetitionParams]):
    name = "gopher_repetition"

    Rules = GopherRepetitionRules
    SIGNALS = _BASE_SIGNALS

    def __init__(self, params=None) -> None:
        super().__init__(params)
        sets = [self.base, *self.by_lang.values()]
        self.top_ns = sorted({n for r in sets for n, _ in r.top_n_grams})
        self.dup_ns = sorted({n for r in sets for n, _ in r.dup_n_grams})
        self.signals.update({f"rep_top_{n}_gram_frac": pa.float64() for n in self.top_ns})
        self.signals.update({f"rep_dup_{n}_gram_frac": pa.float64() for n in self.dup_ns})

    def process(self, batch: pa.Table) -> StageResult:
        texts = pc.fill_null(batch["text"], "").to_pylist()
        n = len(texts)
        rows = qrules.group_rows(
            qrules.batch_langs(batch), self.base, self.by_lang, self.params.only_languages, n
        )
        sig = {k: np.full(n, np.nan) for k in self.signals}
        reasons: list[str | None] = [None] * n
        for rules, idx in rows.groups:
            for i in idx.tolist():
                reasons[i] = self._row(texts[i], i, rules, sig)
        out = set_struct_fields(batch, "quality", qrules.signal_columns(sig, self.signals))
        judged = rows.judged
        final = [r if judged[i] else None for i, r in enumerate(reasons)]
        return out, pa.array(final, pa.string()) if any(r is not None for r in final) else None

    def _row(self, text: str, i: int, r: GopherRepetitionRules, sig: dict) -> str | None:
        """Compute every signal of one document; return the first rule it fails (or None)."""
        if not text:
            return "empty" if r.active("empty") else None
        n_chars = len(text)
        fails: list[str] = []

        def check(rule: str, value: float, thr: float | None) -> None:
            if thr and r.active(rule) and value > thr:
                fails.append(rule)

        paragraphs = _PARA.split(text.strip())
        p_dup, p_chars = qrules.find_duplicates(paragraphs)
        sig["rep_dup_para_frac"][i] = p_dup / len(paragraphs)
        sig["rep_dup_para_char_frac"][i] = p_chars / n_chars
        check("dup_para_frac", sig["rep_dup_para_frac"][i], r.dup_para_frac)
        check("dup_para_char_frac", sig["rep_dup_para_char_frac"][i], r.dup_para_char_frac)
        lines = _LINES.split(text)
        l_dup, l_chars = qrules.find_duplicates(lines)
        sig["rep_dup_line_frac"][i] = l_dup / len(lines)
        sig["rep_dup_line_char_frac"][i] = l_chars / n_chars
        check("dup_line_frac", sig["rep_dup_line_frac"][i], r.dup_line_frac)
        check("dup_line_char_frac", sig["rep_dup_line_char_frac"][i], r.dup_line_char_frac)

        words = qtok.words_of(qtok.tokens(text))
        top_thr = dict(r.top_n_grams)
        for n in self.top_ns:
            chars = top_ngram_chars(words, n)
            if chars is None:
                continue  # fewer words than n: datatrove skips the rule
            sig[f"rep_top_{n}_gram_frac"][i] = chars / n_chars
            if n in top_thr:
                check(f"top_{n}_gram", chars / n_chars, top_thr[n])
        dup_thr = dict(r.dup_n_grams)
        repeats = True
        for (
            n
        ) in self.dup_ns:  # ascending: once no n-gram repeats, no longer one can (it would start with one)
            chars = duplicated_ngram_chars(words, n) if repeats else 0
            repeats = chars > 0
            frac = chars / n_chars
            sig[f"rep_dup_{n}_gram_frac"][i] = frac
            if n in dup_thr:
                check(f"duplicated_{n}_n_grams", frac, dup_thr[n])
        return fails[0] if fails else None
