"""`c4_quality`: C4's line-level cleanup and page rules (Raffel et al. 2020), as in datatrove's C4QualityFilter.

Why: C4's rules remove the navigation, cookie banners, code and placeholder text that survive HTML extraction.
Unlike the other rule sets this one *changes the text*: it removes lines without terminal punctuation, lines
with fewer than `min_words_per_line` words or a word longer than `max_word_length`, lines mentioning
javascript, and policy/cookie lines, and strips Wikipedia-style citations. Every change is reported: per row
in `quality` (`c4_lines_removed`, `c4_chars_removed` and the lines removed per cause) and summed over the
committed rows in report.json's counters (`Stage.summarize`). Rows that are dropped (or only flagged under
`action: annotate`) keep their original text.

Page rules → drop reasons: lorem_ipsum, curly_bracket, too_few_sentences. Sentences are spaCy sentencizer
sentences of the kept lines, counted from the document's single tokenization (stages/quality/tokenizer.py), which gives the
same count as datatrove's per-line spaCy call. Defaults are the published values (datatrove's defaults).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.schema import set_struct_fields
from refinery.stage import StageResult, register
from stages.quality import rules as qrules
from stages.quality import tokenizer as qtok

CITATION_REGEX = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
ELLIPSIS = "..."
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_RULES = ("lorem_ipsum", "curly_bracket", "too_few_sentences")
_LINE_CAUSES = ("too_long_word", "no_terminal_punct", "too_few_words", "javascript", "policy")


class C4QualityRules(qrules.RuleSet):
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = Field(default=5, ge=-1)  # -1 disables
    min_words_per_line: int = Field(default=3, ge=-1)  # -1 disables
    max_word_length: int = Field(default=1000, ge=-1)  # -1 disables
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True

    @classmethod
    def rule_names(cls) -> tuple[str, ...]:
        return _RULES


class C4QualityParams(qrules.LanguageRulesParams, C4QualityRules):
    pass
    # False: compute signals and page decisions but leave the text unchanged.
    clean_text: bool = True


SIGNALS = {
    "c4_sentences": pa.int32(),
    "c4_lines": pa.int32(),
    "c4_lines_removed": pa.int32(),
    "c4_chars_removed": pa.int64(),
    **{f"c4_lines_{c}": pa.int32() for c in _LINE_CAUSES},
}


def count_sentences(toks: np.ndarray) -> int:
    """spaCy Sentencizer's sentence count over a token span: a new sentence starts at the first token that is
    neither punctuation nor a sentence mark after a sentence mark (other punctuation in between is neutral)."""
    if len(toks) == 0:
        return 1
    sent = toks[:, qtok.SENT_PUNCT] != 0
    word = (toks[:, qtok.PUNCT] == 0) & ~sent
    keep = sent | word
    s, w = sent[keep], word[keep]
    return 1 + int(np.count_nonzero(w[1:] & s[:-1]))


def c4_document(
    text: str, r: C4QualityRules, doc_tokens: np.ndarray
) -> tuple[str | None, str, dict[str, int], np.ndarray | None]:
    """Apply C4 to one document → (page rule failed or None, cleaned text, counts, tokens of the cleaned text)."""
    counts = dict.fromkeys(_LINE_CAUSES, 0)
    idx_col = doc_tokens[:, qtok.IDX].astype(np.int64) if len(doc_tokens) else np.zeros(0, np.int64)
    num_sentences = 0
    kept_lines: list[str] = []
    kept_tokens: list[np.ndarray] = []
    pos = 0
    n_lines = 0
    failed: str | None = None
    for raw in text.splitlines(keepends=True):
        start = pos
        pos += len(raw)
        n_lines += 1
        line = raw.strip()
        words = line.split()
        if r.max_word_length != -1 and any(len(w) > r.max_word_length for w in words):
            counts["too_long_word"] += 1
            continue
        cited = False
        if r.remove_citations and "[" in line:
            new = CITATION_REGEX.sub("", line)
            cited = new != line
            line = new
        if r.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
            counts["no_terminal_punct"] += 1
            continue
        if len(words) < r.min_words_per_line:
            counts["too_few_words"] += 1
            continue
        line_l = line.lower()
        if r.filter_lorem_ipsum and "lorem ipsum" in line_l and r.active("lorem_ipsum"):
            failed = "lorem_ipsum"
            break
        if r.filter_javascript and "javascript" in line_l:
            counts["javascript"] += 1
            continue
        if r.filter_curly_bracket and "{" in line and r.active("curly_bracket"):
            failed = "curly_bracket"
            break
        if r.filter_policy and any(p in line_l for p in POLICY_SUBSTRINGS):
            counts["policy"] += 1
            continue
        if cited:
            toks = qtok.tokenizer()(line)  # citation removal can re-join tokens: tokenize the edited line
        else:
            lo = start + (len(raw) - len(raw.lstrip()))
            a, b = np.searchsorted(idx_col, [lo, lo + len(line)])
            toks = doc_tokens[a:b].copy()
            toks[:, qtok.IDX] -= np.uint64(lo)
        if r.min_num_sentences != -1:
            num_sentences += count_sentences(toks)
        kept_lines.append(line)
        kept_tokens.append(toks)
    lines_removed = n_lines - len(kept_lines)
    info = {"sentences": num_sentences, "lines": n_lines, "lines_removed": lines_removed}
    info.update({f"lines_{c}": v for c, v in counts.items()})
    if failed is not None:
        return failed, text, info, None
    if num_sentences < r.min_num_sentences and r.active("too_few_sentences"):
        return "too_few_sentences", text, info, None
    cleaned = "\n".join(kept_lines).strip()
    return None, cleaned, info, _join_tokens(kept_lines, kept_tokens)


def _join_tokens(lines: list[str], toks: list[np.ndarray]) -> np.ndarray:
    """Tokens of "\\n".join(lines): each line's tokens shifted to its offset, with a "\\n" token between lines."""
    if not toks:
        return np.zeros((0, 8), dtype=np.uint64)
    nl = _newline_token()
    parts = []
    off = 0
    for j, (line, t) in enumerate(zip(lines, toks, strict=True)):
        if j:
            sep = nl.copy()
            sep[0, qtok.IDX] = off - 1
            parts.append(sep)
        t = t.copy()
        t[:, qtok.IDX] += np.uint64(off)
        parts.append(t)
        off += len(line) + 1
    return np.concatenate(parts)


_NL: np.ndarray | None = None


def _newline_token() -> np.ndarray:
    global _NL
    if _NL is None:
        _NL = qtok.tokenizer()("a\nb")[1:2].copy()
    return _NL


@register
class C4Quality(qrules.RuleSetStage[C4QualityParams]):
    name = "c4_quality"

    Rules = C4QualityRules
    SIGNALS = SIGNALS

    def process(self, batch: pa.Table) -> StageResult:
        p = self.params
        texts = pc.fill_null(batch["text"], "").to_pylist()
        n = len(texts)
        rows = qrules.group_rows(qrules.batch_langs(batch), self.base, self.by_lang, p.only_languages, n)
        sig = {k: np.zeros(n, dtype=np.int64) for k in SIGNALS}
        reasons: list[str | None] = [None] * n
        new_texts = list(texts)
        changed = False
        for rules, idx in rows.groups:
            for i in idx.tolist():
                text = texts[i]
                failed, cleaned, info, toks = c4_document(text, rules, qtok.tokens(text))
                if not rows.judged[i]:
                    failed = None
                reasons[i] = failed
                for k, v in info.items():
                    sig[f"c4_{k}"][i] = v
                if failed is None and p.clean_text:
                    if cleaned != text:
                        sig["c4_chars_removed"][i] = len(text) - len(cleaned)
                        new_texts[i] = cleaned
                        changed = True
                        if toks is not None:
                            qtok.remember_tokens(cleaned, toks)
                else:  # text left as it was: nothing was removed
                    for k in ("c4_lines_removed", *(f"c4_lines_{c}" for c in _LINE_CAUSES)):
                        sig[k][i] = 0
        out = batch
        if changed:
            text_field = batch.schema.field("text")
            arr = pa.array(
                [
                    None if t is None else nt
                    for t, nt in zip(batch["text"].to_pylist(), new_texts, strict=True)
                ],
                text_field.type,
            )
            out = out.set_column(out.schema.get_field_index("text"), text_field, arr)
        out = set_struct_fields(out, "quality", qrules.signal_columns(sig, SIGNALS))
        return out, pa.array(reasons, pa.string()) if any(r is not None for r in reasons) else None

    def summarize(self, kept: pa.Table) -> dict[str, float]:
        """Lines and characters C4 removed from the committed rows (what the cleanup changed)."""
        if "quality" not in kept.column_names or kept.num_rows == 0:
            return {}
        q = kept["quality"].combine_chunks()
        names = {q.type.field(i).name for i in range(q.type.num_fields)}
        out: dict[str, float] = {}
        for k in ("c4_lines_removed", "c4_chars_removed", *(f"c4_lines_{c}" for c in _LINE_CAUSES)):
            if k in names:
                out[k.removeprefix("c4_")] = float(pc.sum(q.field(k)).as_py() or 0)
        return out
