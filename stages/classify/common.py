"""What the model-based classifier stages share: the `scores` column, keep/drop thresholds, `only_languages`.

Why one place: `fasttext_classifier` and `hf_classifier` follow the same contract as the rule stages
(annotate, then filter): each writes its result as one child of the shared struct column `scores`, named by the
config (`scores.hq`, `scores.edu`, ...), so several classifiers coexist in one run, and each turns the same
`keep`/`drop` maps into drop reasons. This module is not a stage (it registers nothing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from refinery.stage import FilterParams, Stage

SCORES = "scores"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PROBS_TYPE = pa.map_(pa.string(), pa.float32())
# label: the most probable label; prob: its probability; probs: every label's (or the top k) probability
LABEL_FIELDS = [pa.field("label", pa.string()), pa.field("prob", pa.float32()), pa.field("probs", PROBS_TYPE)]


class ClassifierParams(FilterParams):
    """Params every classifier stage takes besides its model."""

    name: str = Field(description="child of the `scores` column this classifier writes (scores.<name>)")
    keep: dict[str, float] = Field(
        default_factory=dict, description="keep a row only if one of these labels/scores reaches its minimum"
    )
    drop: dict[str, float] = Field(
        default_factory=dict, description="drop a row if one of these labels/scores reaches its minimum"
    )
    only_languages: list[str] | None = Field(
        default=None, description="judge only rows of these languages (needs `lang`); others are annotated"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for the model")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r}: a column name of letters, digits and underscores")
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> ClassifierParams:
        both = set(self.keep) & set(self.drop)
        if both:
            raise ValueError(f"a label cannot be in both keep and drop: {sorted(both)}")
        return self


def check_probability_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    """keep/drop minimums on label probabilities must be probabilities."""
    for label, v in thresholds.items():
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{label}: a minimum probability, from 0 to 1 (got {v})")
    return thresholds


def check_known(params: ClassifierParams, known: Sequence[str], what: str = "labels") -> None:
    """Every key of keep/drop must be something the model produces (caught when the model loads)."""
    unknown = sorted((set(params.keep) | set(params.drop)) - set(known))
    if unknown:
        raise ValueError(
            f"{params.name}: {unknown} in keep/drop is not among the model's {what} {sorted(known)}"
        )


def classifier_requires(params: ClassifierParams) -> tuple[str, ...]:
    return ("id", "text", "lang") if params.only_languages is not None else ("id", "text")


def judged_rows(batch: pa.Table, params: ClassifierParams, has_value: np.ndarray) -> np.ndarray:
    """Rows the thresholds apply to: with a score, and in `only_languages` when it is set."""
    judged = has_value.copy()
    if params.only_languages is not None:
        langs = batch["lang"].to_pylist()
        only = set(params.only_languages)
        judged &= np.array([lg in only for lg in langs], dtype=bool)
    return judged


def reasons(
    values: Mapping[str, np.ndarray], params: ClassifierParams, judged: np.ndarray
) -> pa.Array | None:
    """Drop reasons from keep/drop (datatrove's semantics): `<name>_below_keep` when no `keep` entry reaches its
    minimum, `<name>_drop_<key>` for the first `drop` entry that does. NaN never reaches a minimum."""
    if not params.keep and not params.drop:
        return None
    n = len(judged)
    out = np.full(n, None, dtype=object)
    with np.errstate(invalid="ignore"):
        if params.keep:
            ok = np.zeros(n, dtype=bool)
            for key, minimum in params.keep.items():
                ok |= np.asarray(values[key], np.float64) >= minimum
            out[judged & ~ok] = f"{params.name}_below_keep"
        for key, minimum in params.drop.items():
            hit = judged & (np.asarray(values[key], np.float64) >= minimum) & (out == None)  # noqa: E711
            out[hit] = f"{params.name}_drop_{key}"
    if (out == None).all():  # noqa: E711
        return None
    return pa.array(out.tolist(), pa.string())


def label_struct(labels: Sequence[str], probs: np.ndarray, top_k: int | None) -> pa.StructArray:
    """{label, prob, probs} per row from a documents × labels matrix; a row of NaN (no prediction) is null."""
    n, nl = probs.shape
    valid = ~np.isnan(probs).any(axis=1) if nl else np.zeros(n, bool)
    filled = np.where(np.isnan(probs), -1.0, probs)
    order = np.argsort(-filled, axis=1, kind="stable")
    k = nl if top_k is None else min(top_k, nl)
    top = order[:, :k]
    lab_arr = np.asarray(labels, dtype=object)
    keys = pa.array(lab_arr[top].ravel().tolist() if n and k else [], pa.string())
    items = pa.array(np.take_along_axis(filled, top, axis=1).ravel().astype(np.float32), pa.float32())
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32) if k else np.zeros(n + 1, np.int32))
    probs_map = pa.MapArray.from_arrays(offsets, keys, items)
    best = top[:, 0] if k else np.zeros(n, np.int64)
    label = pa.array(
        [labels[i] if v else None for i, v in zip(best.tolist(), valid, strict=True)], pa.string()
    )
    prob = pa.array(
        np.take_along_axis(filled, best[:, None], axis=1).ravel().astype(np.float32), pa.float32()
    )
    return pa.StructArray.from_arrays(
        [label, prob, probs_map], fields=LABEL_FIELDS, mask=pa.array(~valid, pa.bool_())
    )


def texts_of(batch: pa.Table) -> tuple[list[str | None], np.ndarray]:
    """The batch's texts and which rows have one (media rows without a caption have none)."""
    col = batch["text"]
    texts = col.to_pylist()
    has = (
        np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=bool)
        if len(texts)
        else np.zeros(0, bool)
    )
    return texts, has


CP = TypeVar("CP", bound=ClassifierParams)


class ClassifierStage(Stage[CP], Generic[CP]):
    """Base of the classifier stages: a model per actor (loaded in `setup`), `lang` needed with only_languages."""

    stateful = True

    def __init__(self, params: Any = None, resources: Any = None) -> None:
        super().__init__(params, resources)
        self.model: Any = None
        self.labels: list[str] = []

    def requires(self) -> tuple[str, ...]:
        return classifier_requires(self.params)
