"""`hf_classifier`: score documents with a Hugging Face sequence-classification model (a folder: config,
weights, tokenizer) → `scores.<name>`: {score, int_score} for a regression head (FineWeb-Edu), {label, prob, probs}
for a classification head (domain, toxicity).

Why this way: the runtime is PyTorch + transformers (optional extra `classifiers`, docs/ARCHITECTURE.md says why),
which loads any such folder as it is, runs fp16/bf16 on a GPU and fp32 on CPUs, with one code path. Each batch is
tokenized at once (Rust tokenizers), truncated to the model's maximum length, and run in sub-batches of documents
sorted by token length, so padding costs little; a document's score does not depend on its neighbours
(tests/test_classifiers.py checks it across batch sizes). `device: auto` asks Ray for GPUs when the cluster has them
when the run starts and runs on CPUs otherwise; `cuda` always asks (an autoscaling cluster whose GPU nodes start at
0); `cpu` never does. The model folder (a path or fsspec URI) is copied once per node and loaded once per actor.

FineWeb-Edu's head: `score` is the regression output, `int_score = int(round(max(0, min(score, 5))))` (Python's
round: halves to even), with the clip range `int_range`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from refinery.schema import set_struct_fields
from refinery.stage import PosInt, Resources, StageResult, register
from stages.classify.common import (
    LABEL_FIELDS,
    SCORES,
    ClassifierParams,
    ClassifierStage,
    check_known,
    judged_rows,
    label_struct,
    reasons,
    texts_of,
)

log = logging.getLogger("refinery.progress")

REGRESSION_TYPE = pa.struct([pa.field("score", pa.float32()), pa.field("int_score", pa.int32())])
CLASSIFICATION_TYPE = pa.struct(LABEL_FIELDS)


class HFClassifierParams(ClassifierParams):
    model: str = Field(description="folder with config.json, weights and tokenizer: a path or fsspec URI")
    head: Literal["auto", "regression", "classification"] = Field(
        default="auto", description="auto: regression when the model has one output (or says so)"
    )
    max_length: PosInt | None = Field(default=None, description="tokens per document; default: the model's")
    batch_size: PosInt = Field(default=32, description="documents per forward pass")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpu_share: float = Field(
        default=1.0, gt=0, le=1, description="GPUs per actor when on GPU (0.25: 4 a GPU)"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="auto: bfloat16 on GPUs that have it, else float16; float32 on CPU"
    )
    int_range: tuple[int, int] = Field(default=(0, 5), description="int_score = round(score) clipped to this")
    top_k: PosInt | None = None

    @model_validator(mode="after")
    def _range(self) -> HFClassifierParams:
        if self.int_range[0] > self.int_range[1]:
            raise ValueError("int_range: [low, high] with low <= high")
        return self


def _read_model_config(uri: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    from refinery.location import Location

    return Location(uri, storage_options).join("config.json").read_json()


def head_kind(config: dict[str, Any], head: str) -> str:
    if head != "auto":
        return head
    if config.get("problem_type") == "regression":
        return "regression"
    n = config.get("num_labels") or len(config.get("id2label") or {}) or 2
    return "regression" if n == 1 else "classification"


@register
class HFClassifier(ClassifierStage[HFClassifierParams]):
    name = "hf_classifier"
    resources = Resources(num_cpus=1)
    tokenizer: Any = None
    device = "cpu"
    _kind: str | None = None

    @property
    def kind(self) -> str:
        """regression or classification, from the params or the model's config.json (read once, at planning)."""
        if self._kind is None:
            p = self.params
            cfg = {} if p.head != "auto" else _read_model_config(p.model, p.storage_options)
            self._kind = head_kind(cfg, p.head)
        return self._kind

    def output_fields(self) -> list[pa.Field]:
        typ = REGRESSION_TYPE if self.kind == "regression" else CLASSIFICATION_TYPE
        return [pa.field(SCORES, pa.struct([pa.field(self.params.name, typ)]))]

    def resources_on(self, cluster_gpus: float) -> Resources:
        p, res = self.params, self.resources
        if p.device == "cpu" or (p.device == "auto" and cluster_gpus <= 0):
            if res.num_gpus > 0:
                log.info("hf_classifier %s: no GPU in the cluster, running on CPUs", p.name)
            return res.with_(num_gpus=0)
        return res if res.num_gpus > 0 else res.with_(num_gpus=p.gpu_share)

    def setup(self) -> None:
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from refinery.model_cache import node_cache_dir

        p = self.params
        local, _ = node_cache_dir(p.model, p.storage_options, kind="hf")
        cuda = p.device != "cpu" and torch.cuda.is_available()
        self.device = "cuda" if cuda else "cpu"
        if p.dtype != "auto":
            dtype = getattr(torch, p.dtype)
        elif cuda:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
        if not cuda:  # one actor, its share of the cores: no oversubscription with the other actors
            torch.set_num_threads(max(1, math.ceil(self.resources.num_cpus)))
        self.tokenizer = AutoTokenizer.from_pretrained(str(local))
        model = AutoModelForSequenceClassification.from_pretrained(str(local), dtype=dtype)
        self.model = model.to(self.device).eval()
        cfg = model.config
        limit = getattr(cfg, "max_position_embeddings", None) or 512
        tok_max = getattr(self.tokenizer, "model_max_length", limit) or limit
        self.max_length = min(p.max_length or limit, limit, tok_max if tok_max < 10**6 else limit)
        self._kind = head_kind(cfg.to_dict(), p.head)
        if self._kind == "classification":
            self.labels = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]
            check_known(p, self.labels)
        else:
            check_known(p, ["score", "int_score"], "outputs")
        self.multi_label = getattr(cfg, "problem_type", None) == "multi_label_classification"

    def logits(self, texts: list[str]) -> np.ndarray:
        """Model outputs (documents × outputs, float32) in input order; sub-batches sorted by token length."""
        import torch

        if self.model is None:
            self.setup()
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        ids = enc["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.zeros((len(texts), self.model.config.num_labels), np.float32)
        bs = self.params.batch_size
        with torch.inference_mode():
            for s in range(0, len(order), bs):
                idx = order[s : s + bs]
                feats = [{k: enc[k][i] for k in enc.keys()} for i in idx.tolist()]
                batch = self.tokenizer.pad(feats, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                out[idx] = self.model(**batch).logits.float().cpu().numpy()
        return out

    def process(self, batch: pa.Table) -> StageResult:
        if self.model is None:
            self.setup()
        p = self.params
        texts, has_text = texts_of(batch)
        rows = np.nonzero(has_text)[0]
        logits = self.logits([texts[i] for i in rows.tolist()]) if len(rows) else None
        n = len(texts)
        if self._kind == "regression":
            score = np.full(n, np.nan)
            if logits is not None:
                score[rows] = logits[:, 0]
            lo, hi = p.int_range
            ints = np.rint(np.clip(np.nan_to_num(score), lo, hi)).astype(np.int32)
            mask = np.isnan(score)
            struct = pa.StructArray.from_arrays(
                [pa.array(score, pa.float32(), mask=mask), pa.array(ints, pa.int32(), mask=mask)],
                fields=list(REGRESSION_TYPE),
            )
            values = {"score": score, "int_score": np.where(np.isnan(score), np.nan, ints)}
        else:
            probs = np.full((n, len(self.labels)), np.nan)
            if logits is not None:
                x = logits.astype(np.float64)
                if self.multi_label:
                    probs[rows] = 1.0 / (1.0 + np.exp(-x))
                else:
                    z = np.exp(x - x.max(axis=1, keepdims=True))
                    probs[rows] = z / z.sum(axis=1, keepdims=True)
            struct = label_struct(self.labels, probs, p.top_k)
            values = {lab: probs[:, i] for i, lab in enumerate(self.labels)}
        out = set_struct_fields(batch, SCORES, {p.name: struct})
        judged = judged_rows(batch, p, ~np.isnan(next(iter(values.values()))) if values else has_text)
        return out, reasons(values, p, judged)
