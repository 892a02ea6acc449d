"""`length_filter`: drop documents outside character and word bounds, with a named reason per bound.

Only rows of the configured modalities are judged (by default text), so an image with a short caption is not
dropped as a "short document".
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from refinery.stage import FilterParams, Stage, StageResult, register


class LengthFilterParams(FilterParams):
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)
    min_words: int | None = Field(default=None, ge=0)
    max_words: int | None = Field(default=None, ge=0)
    modalities: list[str] = Field(default_factory=lambda: ["text"])

    @model_validator(mode="after")
    def _bounds(self) -> LengthFilterParams:
        for lo, hi in (("min_chars", "max_chars"), ("min_words", "max_words")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} ({a}) is greater than {hi} ({b})")
        return self


@register
class LengthFilter(Stage[LengthFilterParams]):
    name = "length_filter"

    def process(self, batch: pa.Table) -> StageResult:
        p = self.params
        text = pc.fill_null(batch["text"], "")
        n = batch.num_rows
        reasons = pa.nulls(n, pa.string())
        judged = pc.is_in(pc.fill_null(batch["modality"], "text"), pa.array(p.modalities))
        checks = []
        if p.min_chars is not None or p.max_chars is not None:
            chars = pc.utf8_length(text)
            if p.min_chars is not None:
                checks.append((pc.less(chars, p.min_chars), "too_few_chars"))
            if p.max_chars is not None:
                checks.append((pc.greater(chars, p.max_chars), "too_many_chars"))
        if p.min_words is not None or p.max_words is not None:
            words = pc.list_value_length(pc.utf8_split_whitespace(text))
            if p.min_words is not None:
                checks.append((pc.less(words, p.min_words), "too_few_words"))
            if p.max_words is not None:
                checks.append((pc.greater(words, p.max_words), "too_many_words"))
        # First failing check wins, so each dropped row has exactly one reason.
        for mask, reason in reversed(checks):
            reasons = pc.if_else(pc.and_(mask, judged), pa.scalar(reason), reasons)
        return batch, reasons
