"""`fasttext_classifier`: score documents with a user's fastText model (DCLM-style quality, topic, toxicity ...)
→ `scores.<name>` {label, prob, probs}, filtered by `keep`/`drop` minimum probabilities.

Why this way: a fastText classifier is only as good as the match between how its training text and the scored
text were preprocessed, so newline handling and lowercasing are params (`preset: dclm` is DCLM's
`" ".join(text.strip().splitlines())`, `preset: datatrove` is datatrove's default `strip().replace("\\n", "")`),
and `refinery train-classifier` writes a stage snippet with the preprocessing it trained with. The model (a path or
any fsspec URI) is copied once per node; the default engine scores with the model's projection on its labels,
memory-mapped once per node (stages/classify/fasttext_engine.py), which is both faster than fastText's own predict
and one copy per node instead of one model per actor. Models that engine cannot run (quantized `.ftz`, character
n-grams, hierarchical softmax) are loaded with the `fasttext` module, once per actor.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from refinery.schema import set_struct_fields
from refinery.stage import PosInt, Resources, StageParams, StageResult, register
from stages.classify.common import (
    LABEL_FIELDS,
    SCORES,
    ClassifierParams,
    ClassifierStage,
    check_known,
    check_probability_thresholds,
    judged_rows,
    label_struct,
    reasons,
    texts_of,
)

log = logging.getLogger("refinery.progress")

PRESETS: dict[str, dict[str, object]] = {
    "dclm": {"newlines": "space", "lowercase": False},  # DCLM's classify_fasttext_hq_prob
    "datatrove": {
        "newlines": "remove",
        "lowercase": False,
    },  # FastTextClassifierFilter(newline_replacement="")
}


def preprocess(texts: list[str | None], newlines: str = "space", lowercase: bool = False) -> list[str]:
    """One line per document, as the model was trained: `space` joins the lines with a space (after strip;
    Python's splitlines, so \\r, \\v, \\f, \\x1c-\\x1e, \\x85, \\u2028, \\u2029 end lines too), `remove` deletes
    \\n (after strip). The same function prepares training text (`refinery train-classifier`)."""
    out = []
    for t in texts:
        t = t or ""
        t = " ".join(t.strip().splitlines()) if newlines == "space" else t.strip().replace("\n", "")
        out.append(t.lower() if lowercase else t)
    return out


class TextPrep(StageParams):
    """How text is made one line before fastText sees it, at training and at scoring alike."""

    preset: Literal["dclm", "datatrove"] | None = Field(
        default=None, description="named preprocessing (sets newlines and lowercase)"
    )
    newlines: Literal["space", "remove"] = "space"
    lowercase: bool = False

    @model_validator(mode="after")
    def _preset(self) -> TextPrep:
        if self.preset is not None:
            clash = sorted({"newlines", "lowercase"} & self.model_fields_set)
            if clash:
                raise ValueError(
                    f"preset {self.preset!r} sets {clash}: give a preset or those keys, not both"
                )
            for k, v in PRESETS[self.preset].items():
                object.__setattr__(self, k, v)
        return self

    def prep_params(self) -> dict[str, object]:
        """As stage params: the preset's name, or the two keys."""
        return (
            {"preset": self.preset}
            if self.preset
            else {"newlines": self.newlines, "lowercase": self.lowercase}
        )


class FastTextClassifierParams(ClassifierParams, TextPrep):
    model: str = Field(description="fastText .bin/.ftz: a path or any fsspec URI (s3://...)")
    top_k: PosInt | None = Field(
        default=None, description="probs holds the k most probable labels; None: all"
    )
    engine: Literal["auto", "projected", "fasttext"] = Field(
        default="auto",
        description="projected: memory-mapped projection, one copy per node; fasttext: the fasttext module, "
        "one copy per actor; auto: projected when the model allows it",
    )

    @field_validator("keep", "drop")
    @classmethod
    def _probabilities(cls, v: dict[str, float]) -> dict[str, float]:
        return check_probability_thresholds(v)


FASTTEXT_TYPE = pa.struct(LABEL_FIELDS)


@register
class FastTextClassifier(ClassifierStage[FastTextClassifierParams]):
    name = "fasttext_classifier"
    # Fractional CPU, as langid: a pool of model actors holding every core starved the read tasks (Ray 2.60).
    resources = Resources(num_cpus=0.5)

    engine = ""  # projected or fasttext, once set up

    def output_fields(self) -> list[pa.Field]:
        return [pa.field(SCORES, pa.struct([pa.field(self.params.name, FASTTEXT_TYPE)]))]

    def setup(self) -> None:
        if self.model is not None:
            return
        from refinery.model_cache import node_cache_dir
        from stages.classify.fasttext_engine import (
            FastTextModule,
            ProjectedModel,
            Unsupported,
            build_projection,
        )

        p = self.params
        if p.engine != "fasttext":
            try:
                _, folder = node_cache_dir(p.model, p.storage_options, build_projection, kind="ft-projection")
                self.model, self.engine = ProjectedModel(folder), "projected"
            except Unsupported as e:
                if p.engine == "projected":
                    raise ValueError(f"{p.model}: engine projected cannot run this model: {e}") from None
                log.info("fasttext_classifier %s: %s, using the fasttext module", p.name, e)
        if self.model is None:
            local, _ = node_cache_dir(p.model, p.storage_options)
            self.model, self.engine = FastTextModule(Path(local)), "fasttext"
        self.labels = list(self.model.labels)
        check_known(p, self.labels)

    def predict(self, texts: list[str | None]) -> np.ndarray:
        """Probabilities (documents × self.labels) of preprocessed texts; NaN where fastText predicts nothing."""
        if self.model is None:
            self.setup()
        p = self.params
        prepared = preprocess(texts, p.newlines, p.lowercase)
        return self.model.predict(pa.array(prepared, pa.large_string()))  # type: ignore[union-attr]

    def process(self, batch: pa.Table) -> StageResult:
        if self.model is None:
            self.setup()
        p = self.params
        texts, has_text = texts_of(batch)
        probs = self.predict(texts) if texts else np.zeros((0, len(self.labels)))
        probs[~has_text] = np.nan  # no text (an image without caption): no score, not judged
        out = set_struct_fields(batch, SCORES, {p.name: label_struct(self.labels, probs, p.top_k)})
        values = {lab: probs[:, i] for i, lab in enumerate(self.labels)}
        judged = judged_rows(batch, p, ~np.isnan(probs).any(axis=1))
        return out, reasons(values, p, judged)
