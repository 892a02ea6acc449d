"""The rule framework of the quality stages: per-language rule sets, row grouping, signal columns, and the
`RuleSetStage` skeleton that Gopher, C4 and FineWeb share.

Why one framework: every rule set is "thresholds (overridable per language, each switchable off) applied to
signals computed from one tokenization", so that shape is written once and each stage only computes its signals.
This module is not a stage (it registers nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from refinery.stage import FilterParams, NotRecomputable, Stage, StageParams
from stages.quality.tokenizer import HASH_MIX

# --- small pure helpers shared by rule sets -------------------------------------------------------------------


def find_duplicates(items: Sequence[str]) -> tuple[int, int]:
    """(number of repeated elements, characters in the repeats), as in datatrove/Gopher."""
    seen: set[str] = set()
    dup_n = dup_chars = 0
    for x in items:
        if x in seen:
            dup_n += 1
            dup_chars += len(x)
        else:
            seen.add(x)
    return dup_n, dup_chars


def next_ngram_ids(prev: np.ndarray, orth: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit id per word n-gram (position i covers words i..i+n-1), from the ids of the (n-1)-grams (`orth`
    itself for n = 2): one multiply-add per position, since the repetition rules need every n from 2 to 10."""
    m = len(orth) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return prev[:m] * HASH_MIX + orth[n - 1 : n - 1 + m] + np.uint64(n - 1)


# --- per-language rule sets ---------------------------------------------------------------------------------


class RuleSet(BaseModel):
    """Thresholds of one rule set. A threshold of None (or a rule listed in `skip`) switches that rule off."""

    model_config = ConfigDict(extra="forbid")
    skip: list[str] = Field(default_factory=list, description="rule names switched off")

    def active(self, rule: str) -> bool:
        return rule not in self.skip

    @model_validator(mode="after")
    def _known_skips(self) -> RuleSet:
        known = set(self.rule_names())
        bad = [s for s in self.skip if s not in known]
        if bad:
            raise ValueError(f"unknown rule(s) in skip: {bad}; known: {sorted(known)}")
        return self

    @classmethod
    def rule_names(cls) -> tuple[str, ...]:
        return ()


class LanguageRulesParams(FilterParams):
    """What every rule-set stage takes besides its thresholds: overrides per language, and the languages whose
    rows may be dropped (rows of other languages are annotated only)."""

    per_language: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="language code → threshold overrides (and `skip: [rules]`) for rows of that language",
    )
    only_languages: list[str] | None = None


def resolve_rule_sets(
    base: RuleSet, per_language: Mapping[str, Mapping[str, Any]], rules_cls: type[RuleSet]
) -> dict[str, RuleSet]:
    """Validate each language's overrides on top of the base thresholds (so config errors surface early)."""
    base_values = base.model_dump()
    out = {}
    for lang, over in per_language.items():
        merged = {**base_values, **dict(over)}
        if "skip" in over:
            merged["skip"] = sorted(set(base.skip) | set(over["skip"]))
        try:
            out[lang] = rules_cls(**merged)
        except ValidationError as e:  # point at the override, not at the base key of the same name
            errors = [{**err, "loc": ("per_language", lang, *err["loc"])} for err in e.errors()]
            raise ValidationError.from_exception_data(e.title, errors) from None  # type: ignore[arg-type]
    return out


def base_rules(params: BaseModel, rules_cls: type[RuleSet]) -> RuleSet:
    return rules_cls(**{k: getattr(params, k) for k in rules_cls.model_fields})


@dataclass
class RowGroups:
    """Rows of a batch grouped by the rule set that applies to them."""

    groups: list[tuple[RuleSet, np.ndarray]]
    judged: np.ndarray  # bool per row: False for rows whose language is excluded by `only_languages`


def group_rows(
    langs: Sequence[str | None] | None,
    base: RuleSet,
    by_lang: Mapping[str, RuleSet],
    only_languages: Iterable[str] | None,
    n: int,
) -> RowGroups:
    judged = np.ones(n, dtype=bool)
    if only_languages is not None:
        only = set(only_languages)
        judged = (
            np.array([lg in only for lg in langs], dtype=bool)
            if langs is not None
            else np.zeros(n, dtype=bool)
        )
    if langs is None or not by_lang:
        return RowGroups([(base, np.arange(n))], judged)
    keys: dict[str, list[int]] = {}
    for i, lg in enumerate(langs):
        keys.setdefault(lg if lg in by_lang else "", []).append(i)
    groups = [(by_lang.get(k, base), np.asarray(v, dtype=np.int64)) for k, v in keys.items()]
    return RowGroups(groups, judged)


def batch_langs(batch: pa.Table) -> list[str | None] | None:
    return batch["lang"].to_pylist() if "lang" in batch.column_names else None


def signal_columns(sig: Mapping[str, np.ndarray], types: Mapping[str, pa.DataType]) -> dict[str, pa.Array]:
    """numpy signal arrays → Arrow columns; NaN (signal undefined, e.g. no words) becomes null."""
    out = {}
    for k, v in sig.items():
        typ = types[k]
        arr = np.asarray(v)
        if pa.types.is_integer(typ):
            out[k] = pa.array(np.nan_to_num(arr).astype(np.int64), type=typ)
        else:
            out[k] = pa.array(arr, type=typ, from_pandas=True)
    return out


def first_reasons(n: int, checks: list[tuple[np.ndarray, str]], judged: np.ndarray) -> pa.Array | None:
    """Per row the name of the first failing rule (datatrove's order), or null."""
    out: list[str | None] = [None] * n
    any_fail = False
    for mask, reason in checks:
        for i in np.nonzero(mask & judged)[0].tolist():
            if out[i] is None:
                out[i] = reason
                any_fail = True
    return pa.array(out, pa.string()) if any_fail else None


RP = TypeVar("RP", bound=LanguageRulesParams)


class RuleSetStage(Stage[RP]):
    """Shared skeleton of the quality stages: a base rule set from the params, per-language overrides, and the
    `quality` children the stage fills (``self.signals``)."""

    Rules: type[RuleSet]
    SIGNALS: dict[str, pa.DataType] = {}

    def __init__(self, params: Any = None, resources: Any = None) -> None:
        super().__init__(params, resources)
        self.base = base_rules(self.params, self.Rules)
        self.by_lang = resolve_rule_sets(self.base, self.params.per_language, self.Rules)
        self.signals = dict(self.SIGNALS)

    def requires(self) -> tuple[str, ...]:
        """Rules chosen per language need each row's language: without an earlier `langid` they would silently
        judge every row by the base thresholds, or drop nothing."""
        p = self.params
        return ("id", "text", "lang") if p.only_languages is not None or p.per_language else ("id", "text")

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("quality", pa.struct([pa.field(k, t) for k, t in self.signals.items()]))]

    # Params that change how signals are computed, not only the decision: `refinery refilter` refuses them.
    SIGNAL_PARAMS: frozenset[str] = frozenset()

    def checks(self, sig: Mapping[str, np.ndarray], rules: Any) -> list[tuple[np.ndarray, str]]:
        """The whole decision: (failing mask, reason) per rule, in the rule set's order, from signal arrays
        (NaN = undefined). `process` and `decide` both call it, so a re-threshold can never disagree with a run."""
        raise NotImplementedError

    def reasons_from_signals(
        self, sig: Mapping[str, np.ndarray], langs: Sequence[str | None] | None, n: int
    ) -> pa.Array | None:
        """Per row the first failing rule of the rule set that applies to its language (null = keep)."""
        rows = group_rows(langs, self.base, self.by_lang, self.params.only_languages, n)
        out: list[str | None] = [None] * n
        for rules, idx in rows.groups:
            sub = {k: np.asarray(v, dtype=np.float64)[idx] for k, v in sig.items()}
            with np.errstate(invalid="ignore"):
                reasons = first_reasons(len(idx), self.checks(sub, rules), rows.judged[idx])
            if reasons is not None:
                for j, r in zip(idx.tolist(), reasons.to_pylist(), strict=True):
                    out[j] = r
        return pa.array(out, pa.string()) if any(r is not None for r in out) else None

    def decide(self, batch: pa.Table) -> pa.Array | None:
        """Reasons from the `quality` signals a run stored (refinery refilter)."""
        names = set()
        if "quality" in batch.column_names:
            q = batch["quality"].combine_chunks()
            names = {f.name for f in q.type}
        missing = sorted(k for k in self.signals if k not in names)
        if missing:
            raise NotRecomputable(
                f"stage {self.name!r}: signal(s) {', '.join('quality.' + m for m in missing)} were not stored by "
                "the source run (a signal it did not compute, e.g. another n-gram size); re-run the pipeline"
            )
        sig = {
            k: pc.struct_field(q, k).cast(pa.float64()).to_numpy(zero_copy_only=False) for k in self.signals
        }
        return self.reasons_from_signals(sig, batch_langs(batch), batch.num_rows)

    def refilter_problem(self, old: StageParams) -> str | None:
        before = type(self)(old)
        langs = sorted(set(self.by_lang) | set(before.by_lang))
        for lang in [None, *langs]:
            new = self.by_lang.get(lang, self.base) if lang else self.base
            prev = before.by_lang.get(lang, before.base) if lang else before.base
            for key in sorted(self.SIGNAL_PARAMS):
                if getattr(new, key) != getattr(prev, key):
                    where = f"per_language.{lang}.{key}" if lang else key
                    return (
                        f"stage {self.name!r}: {where} changes how its signals are computed, not only the "
                        "decision; the stored signals cannot answer that; re-run the pipeline"
                    )
        return None
