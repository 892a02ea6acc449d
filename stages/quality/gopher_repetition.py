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
from collections.abc import Mapping
from typing import Annotated, Any

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


def top_ngram_chars(words: np.ndarray, n: int, ids: np.ndarray) -> int | None:
    """Characters covered by the most frequent word n-gram (ties: the first seen), as in datatrove. `ids`:
    the n-gram ids (`qrules.next_ngram_ids`)."""
    if len(ids) == 0:
        return None
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    best = counts.max()
    pos = int(first[counts == best].min())
    chars = int(words[pos : pos + n, qtok.LENGTH].sum()) + n - 1  # joined with spaces
    return chars * int(best)


def duplicated_ngram_chars(words: np.ndarray, n: int, ids: np.ndarray) -> int:
    """datatrove's find_all_duplicate: greedy left-to-right, a repeated n-gram's characters count once and the
    scan jumps past it. Only positions whose n-gram occurs more than once can count, so only those are visited.
    `ids`: the n-gram ids (`qrules.next_ngram_ids`)."""
    if len(ids) < 2:
        return 0
    order = np.argsort(ids)
    ordered = ids[order]
    same = ordered[1:] == ordered[:-1]
    if not same.any():  # the common case: no n-gram repeats
        return 0
    repeated_sorted = np.zeros(len(ids), dtype=bool)  # sorted position whose id has a twin
    repeated_sorted[1:] |= same
    repeated_sorted[:-1] |= same
    cand = np.sort(order[repeated_sorted])
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
        sig = {k: np.full(n, np.nan) for k in self.signals}
        for i, text in enumerate(texts):
            self._row(text, i, sig)
        out = set_struct_fields(batch, "quality", qrules.signal_columns(sig, self.signals))
        return out, self.reasons_from_signals(sig, qrules.batch_langs(batch), n)

    def _row(self, text: str, i: int, sig: dict) -> None:
        """Every signal of one document (for every n-gram size any rule set uses); all NaN for an empty text."""
        if not text:
            return
        n_chars = len(text)
        paragraphs = _PARA.split(text.strip())
        p_dup, p_chars = qrules.find_duplicates(paragraphs)
        sig["rep_dup_para_frac"][i] = p_dup / len(paragraphs)
        sig["rep_dup_para_char_frac"][i] = p_chars / n_chars
        lines = _LINES.split(text)
        l_dup, l_chars = qrules.find_duplicates(lines)
        sig["rep_dup_line_frac"][i] = l_dup / len(lines)
        sig["rep_dup_line_char_frac"][i] = l_chars / n_chars
        words = qtok.words_of(qtok.tokens(text))
        orth = words[:, qtok.ORTH]
        top_ns, dup_ns = set(self.top_ns), set(self.dup_ns)
        last_top = max(top_ns, default=0)
        ids = np.zeros(0, dtype=np.uint64)
        repeats = True  # once no n-gram repeats, no longer one can (it would start with one)
        for n in range(1, max(last_top, *dup_ns, 1) + 1):
            if n > last_top and not repeats:
                for m in dup_ns:
                    if m >= n:
                        sig[f"rep_dup_{m}_gram_frac"][i] = 0.0
                break
            ids = orth.copy() if n == 1 else qrules.next_ngram_ids(ids, orth, n)
            if n in top_ns:
                chars = top_ngram_chars(words, n, ids)
                if chars is not None:  # fewer words than n: undefined, and datatrove skips the rule
                    sig[f"rep_top_{n}_gram_frac"][i] = chars / n_chars
            if n in dup_ns:
                chars = duplicated_ngram_chars(words, n, ids) if repeats else 0
                repeats = chars > 0
                sig[f"rep_dup_{n}_gram_frac"][i] = chars / n_chars

    def checks(self, sig: Mapping[str, np.ndarray], rules: Any) -> list[tuple[np.ndarray, str]]:
        """datatrove's order: empty, paragraphs, lines, top n-grams, duplicated n-grams (n ascending)."""
        r: GopherRepetitionRules = rules
        out: list[tuple[np.ndarray, str]] = []

        def check(name: str, key: str, thr: float | None) -> None:
            if thr and r.active(name):
                out.append((sig[key] > thr, name))

        if r.active("empty"):
            out.append((np.isnan(sig["rep_dup_para_frac"]), "empty"))
        check("dup_para_frac", "rep_dup_para_frac", r.dup_para_frac)
        check("dup_para_char_frac", "rep_dup_para_char_frac", r.dup_para_char_frac)
        check("dup_line_frac", "rep_dup_line_frac", r.dup_line_frac)
        check("dup_line_char_frac", "rep_dup_line_char_frac", r.dup_line_char_frac)
        for n, thr in sorted(dict(r.top_n_grams).items()):
            check(f"top_{n}_gram", f"rep_top_{n}_gram_frac", thr)
        for n, thr in sorted(dict(r.dup_n_grams).items()):
            check(f"duplicated_{n}_n_grams", f"rep_dup_{n}_gram_frac", thr)
        return out
