"""`refinery train-classifier CONFIG`: train a fastText classifier from labelled sources, hold out a seeded split,
and publish model.bin, metrics.json, MODEL_CARD.md and a ready-to-paste stage.yaml.

Why here: the `fasttext_classifier` stage is only as good as the model, and a model is only trustworthy with its
held-out metrics, the counts it was trained on and the preprocessing it expects written next to it. The sources are
read by the pipeline's own readers (any `input` format or URI), or taken from an earlier run: its kept rows, or
the rows one of its stages dropped (re-read from that run's input by their source location, since the drop log
keeps locations, not text). Texts are prepared by the stage's own `preprocess`, so training and scoring see the
same text; the held-out metrics are computed with the stage's own scoring engine and recorded beside fastText's
`test`, which must agree with them.
"""

from __future__ import annotations

import json
import math
import random
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import AfterValidator, Field, field_validator, model_validator

from refinery.config import SafeUri, _known_format, _Strict, parse_model
from refinery.location import Location
from refinery.progress import progress
from stages.classify.fasttext_classifier import TextPrep

FASTTEXT_ARGS = (
    "lr",
    "dim",
    "ws",
    "epoch",
    "minCount",
    "minCountLabel",
    "minn",
    "maxn",
    "neg",
    "wordNgrams",
    "loss",
    "bucket",
    "thread",
    "lrUpdateRate",
    "t",
    "verbose",
    "pretrainedVectors",
    "seed",
)
_LABEL = re.compile(r"^\S+$")


def _label(v: str) -> str:
    if not _LABEL.match(v) or v.startswith("__label__"):
        raise ValueError(f"{v!r}: a label is one word without whitespace (written without __label__)")
    return v


Label = Annotated[str, AfterValidator(_label)]


class SourceSpec(_Strict):
    """Where records come from: any readable input (as in `input`), or an earlier run's kept or dropped rows."""

    uri: SafeUri | None = Field(default=None, description="file, folder, glob or fsspec URL, as input.uri")
    run: SafeUri | None = Field(default=None, description="a committed refinery output")
    rows: Literal["kept", "dropped"] = "kept"
    stage: str | None = Field(default=None, description="dropped rows: only those this stage label dropped")
    reason: str | None = Field(default=None, description="dropped rows: only those with this reason")
    format: Annotated[str, AfterValidator(_known_format)] = "auto"
    text_field: str = "text"
    exclude: list[str] = Field(default_factory=list)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    max_records: int | None = Field(default=None, gt=0, description="a seeded sample of at most this many")

    @model_validator(mode="after")
    def _one_place(self) -> SourceSpec:
        if (self.uri is None) == (self.run is None):
            raise ValueError("give exactly one of uri (any input) or run (an earlier run's output)")
        if self.run is None and (self.stage or self.reason or "rows" in self.model_fields_set):
            raise ValueError("rows, stage and reason apply to a run source only")
        if self.rows == "kept" and (self.stage or self.reason):
            raise ValueError("stage and reason select dropped rows (rows: dropped)")
        return self


class TrainSource(SourceSpec):
    label: Label | None = Field(default=None, description="the label of every record of this source")
    label_field: str | None = Field(default=None, description="the field (or column) holding each label")

    @model_validator(mode="after")
    def _one_label(self) -> TrainSource:
        if (self.label is None) == (self.label_field is None):
            raise ValueError("give exactly one of label (fixed) or label_field (per record)")
        return self


class StageSpecOut(_Strict):
    """What stage.yaml says: the score column's name and, optionally, the filter."""

    name: str | None = Field(default=None, description="scores.<name>; default: the config's name")
    keep_label: Label | None = Field(default=None, description="the label the filter keeps")
    min_prob: float | None = Field(
        default=None, ge=0, le=1, description="keep rows with P(keep_label) ≥ this"
    )
    top_share: float | None = Field(
        default=None, gt=0, lt=1, description="or: keep this share, the threshold read off `calibration`"
    )

    @model_validator(mode="after")
    def _filter(self) -> StageSpecOut:
        if (self.min_prob is not None or self.top_share is not None) and not self.keep_label:
            raise ValueError("min_prob and top_share need keep_label")
        if self.min_prob is not None and self.top_share is not None:
            raise ValueError("give min_prob or top_share, not both")
        return self


class TrainOutput(_Strict):
    uri: SafeUri
    storage_options: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    name: str
    sources: list[TrainSource] = Field(min_length=1)
    holdout: float = Field(default=0.1, gt=0, lt=1, description="share of each label held out for metrics")
    seed: int = 0
    fasttext: dict[str, Any] = Field(default_factory=dict, description="fasttext.train_supervised arguments")
    preprocess: TextPrep = Field(default_factory=TextPrep)
    calibration: SourceSpec | None = Field(
        default=None, description="unlabelled sample of the corpus to score: thresholds by share kept"
    )
    stage: StageSpecOut = Field(default_factory=StageSpecOut)
    output: TrainOutput

    @field_validator("fasttext")
    @classmethod
    def _ft_args(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) - set(FASTTEXT_ARGS))
        if bad:
            raise ValueError(f"unknown fastText argument(s) {bad}; known: {', '.join(FASTTEXT_ARGS)}")
        return v


def load_train_config(path: str, overrides: list[str] | None = None) -> TrainConfig:
    """Read and validate a train-classifier config; ConfigError lists every problem with file, key and line."""
    from refinery.config import ConfigError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(path, [("<file>", f"cannot read config: {e.strerror or e}")]) from None
    return parse_model(text, path, TrainConfig, overrides)


# ------------------------------------------------------------------------------------------ reading sources


def _read_input(
    uri: str, fmt: str, text_field: str, storage_options: dict[str, Any], exclude: list[str]
) -> Iterator[pa.Table]:
    """Live rows of any input, through the pipeline's readers (quarantined records left out)."""
    from refinery.config import InputConfig
    from refinery.fsio import list_inputs
    from refinery.schema import split_alive
    from stages.readers import plan_reads, read_task

    icfg = InputConfig(
        uri=uri, format=fmt, text_field=text_field, storage_options=storage_options, exclude=exclude
    )
    tasks, _ = plan_reads(list_inputs(uri, storage_options, exclude), icfg, "train-classifier")
    for task in tasks:
        for table in read_task(task, icfg, "train-classifier", {}):
            yield split_alive(table)[0]


def _field(table: pa.Table, name: str) -> list[Any]:
    """A column, or a key of the `meta` JSON (where readers keep the input's other fields)."""
    if name in table.column_names:
        return table[name].to_pylist()
    return [json.loads(m).get(name) if m else None for m in table["meta"].to_pylist()]


def _run_rows(src: SourceSpec) -> Iterator[pa.Table]:
    """Kept rows of a committed run, or the input rows its drop log names (re-read from the run's input)."""
    import pyarrow.compute as pc

    out = Location(src.run or "", src.storage_options)
    if not out.join("_SUCCESS").exists():
        raise FileNotFoundError(f"{src.run}: not a committed refinery output (no _SUCCESS)")
    manifest = out.join("manifest.json").read_json()
    kind = "data" if src.rows == "kept" else "droplog"
    files = [f for f in manifest["files"] if f["kind"] == kind]
    if src.rows == "kept":
        for f in files:
            yield from (pa.Table.from_batches([b]) for b in out.join(f["path"]).iter_parquet_batches())
        return
    wanted: set[tuple[str, int]] = set()
    for f in files:
        for b in out.join(f["path"]).iter_parquet_batches():
            t = pa.Table.from_batches([b])
            if src.stage:
                t = t.filter(pc.equal(t["stage"], src.stage))
            if src.reason:
                t = t.filter(pc.equal(t["reason"], src.reason))
            wanted |= set(zip(t["source_uri"].to_pylist(), t["source_offset"].to_pylist(), strict=True))
    inp = manifest["config"]["input"]
    for table in _read_input(
        inp["uri"],
        inp.get("format", "auto"),
        inp.get("text_field", "text"),
        src.storage_options,
        inp.get("exclude", []),
    ):
        src_col = table["source"].combine_chunks()
        keys = zip(src_col.field("uri").to_pylist(), src_col.field("offset").to_pylist(), strict=True)
        mask = [k in wanted for k in keys]
        if any(mask):
            yield table.filter(pa.array(mask))


def read_source(
    src: SourceSpec, label: str | None = None, label_field: str | None = None
) -> list[tuple[str, str]]:
    """(text, label) of every record of a source (label '' when the source has none)."""
    tables = (
        _run_rows(src)
        if src.run
        else _read_input(src.uri or "", src.format, src.text_field, src.storage_options, src.exclude)
    )
    out: list[tuple[str, str]] = []
    for t in tables:
        texts = t["text"].to_pylist()
        labels = _field(t, label_field) if label_field else [label or ""] * len(texts)
        for x, lab in zip(texts, labels, strict=True):
            if not x:
                continue
            if not label_field:
                out.append((x, label or ""))
            elif lab is not None and str(lab).strip():  # records without a label are left out
                out.append((x, _label(str(lab).strip())))
    return out


# ------------------------------------------------------------------------------------------ training


def split_holdout(
    records: list[tuple[str, str]], holdout: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Seeded split per label (every label keeps its share in both parts)."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, (_, lab) in enumerate(records):
        by_label.setdefault(lab, []).append(i)
    train, test = [], []
    for lab in sorted(by_label):
        idx = by_label[lab]
        rng.shuffle(idx)
        k = int(round(len(idx) * holdout)) if len(idx) > 1 else 0
        test += idx[:k]
        train += idx[k:]
    rng.shuffle(train)
    return [records[i] for i in train], [records[i] for i in sorted(test)]


_TRAIN = """
import json, sys
import fasttext
args = json.loads(sys.argv[1])
model = fasttext.train_supervised(input=args.pop("input"), **args.pop("params"))
model.save_model(args["output"])
"""


def train_supervised(input_path: Path, model_path: Path, params: dict[str, Any]) -> None:
    """fasttext.train_supervised in a fresh Python process. Why: with fasttext-numpy2-wheel 0.9.2, a second
    training in one process intermittently fails with "Encountered NaN" (seen from the 2nd to the 4th call, with
    any learning rate and thread count); the first training in a process never did, in 20 tries."""
    import subprocess
    import sys

    blob = json.dumps({"input": str(input_path), "output": str(model_path), "params": params})
    p = subprocess.run([sys.executable, "-c", _TRAIN, blob], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(
            f"fastText training failed: {p.stderr.strip().splitlines()[-1] if p.stderr else p.returncode}"
        )


def _write_fasttext_file(path: Path, records: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for text, lab in records:
            f.write(f"__label__{lab} {text}\n")


def label_metrics(truth: list[str], pred: list[str], labels: list[str]) -> dict[str, Any]:
    """accuracy, and precision, recall, F1 and support per label."""
    n = len(truth)
    per: dict[str, dict[str, float]] = {}
    for lab in labels:
        tp = sum(1 for t, p in zip(truth, pred, strict=True) if t == lab and p == lab)
        npred = sum(1 for p in pred if p == lab)
        ntrue = sum(1 for t in truth if t == lab)
        prec = tp / npred if npred else 0.0
        rec = tp / ntrue if ntrue else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": prec, "recall": rec, "f1": f1, "support": ntrue}
    acc = sum(1 for t, p in zip(truth, pred, strict=True) if t == p) / n if n else 0.0
    return {"accuracy": acc, "n": n, "labels": per}


def calibration_table(
    probs: np.ndarray, truth: list[str], labels: list[str], bins: int = 10
) -> list[dict[str, Any]]:
    """Per label and probability bin: held-out rows, their mean predicted probability and the observed share of
    that label (a calibrated model has the two close)."""
    rows = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    for j, lab in enumerate(labels):
        p = np.clip(probs[:, j], 0.0, 1.0)
        is_lab = np.array([t == lab for t in truth], bool)
        which = np.minimum((p * bins).astype(int), bins - 1)
        for b in range(bins):
            m = which == b
            if m.any():
                rows.append(
                    {
                        "label": lab,
                        "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                        "n": int(m.sum()),
                        "mean_prob": float(p[m].mean()),
                        "observed": float(is_lab[m].mean()),
                    }
                )
    return rows


SHARES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5)


def threshold_table(scores: np.ndarray, shares: tuple[float, ...] = SHARES) -> list[dict[str, float]]:
    """The minimum probability that keeps each top share of `scores`."""
    s = np.sort(scores[~np.isnan(scores)])[::-1]
    out = []
    for share in shares:
        if len(s):
            k = max(1, int(math.ceil(share * len(s))))
            out.append({"top_share": share, "min_prob": float(s[k - 1])})
    return out


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Read the sources, split, train, evaluate, and publish the four files; returns metrics.json's content."""
    import fasttext

    from stages.classify.fasttext_classifier import FastTextClassifier, preprocess

    prep = cfg.preprocess
    rng = random.Random(cfg.seed)
    records: list[tuple[str, str]] = []
    source_counts = []
    for i, src in enumerate(cfg.sources):
        got = read_source(src, src.label, src.label_field)
        if src.max_records and len(got) > src.max_records:
            got = rng.sample(got, src.max_records)
        texts = preprocess([t for t, _ in got], prep.newlines, prep.lowercase)
        kept = [(t, lab) for t, (_, lab) in zip(texts, got, strict=True) if t.strip()]
        source_counts.append(
            {
                "source": src.uri or f"{src.run} ({src.rows}{', stage ' + src.stage if src.stage else ''})",
                "label": src.label or f"<{src.label_field}>",
                "records": len(kept),
                "by_label": dict(sorted(Counter(lab for _, lab in kept).items())),
            }
        )
        progress("source %d: %d records", i, len(kept))
        records += kept
    labels = sorted({lab for _, lab in records})
    if len(labels) < 2:
        raise ValueError(f"training needs at least two labels, found {labels}")
    train_set, test_set = split_holdout(records, cfg.holdout, cfg.seed)
    params = {"seed": cfg.seed, "verbose": 0, **cfg.fasttext}
    out = Location(cfg.output.uri, cfg.output.storage_options)
    with tempfile.TemporaryDirectory(prefix="refinery-train-") as tmp:
        tr, te, mp = Path(tmp, "train.txt"), Path(tmp, "test.txt"), Path(tmp, "model.bin")
        _write_fasttext_file(tr, train_set)
        _write_fasttext_file(te, test_set)
        progress("training fastText on %d records (%d held out)", len(train_set), len(test_set))
        train_supervised(tr, mp, params)
        model = fasttext.load_model(str(mp))
        ft_n, ft_p, ft_r = model.test(str(te), k=1)
        ft_labels = {k.removeprefix("__label__"): v for k, v in model.test_label(str(te), k=1).items()}
        # held-out metrics with the stage's own engine (what the pipeline will compute)
        stage = FastTextClassifier({"model": str(mp), "name": "m", **prep.prep_params()})
        stage.setup()
        probs = stage.predict([t for t, _ in test_set]) if test_set else np.zeros((0, len(labels)))
        model_labels = stage.labels
        pred = [model_labels[int(np.nanargmax(r))] if not np.isnan(r).all() else "" for r in probs]
        truth = [lab for _, lab in test_set]
        metrics = label_metrics(truth, pred, model_labels)
        metrics["engine"] = stage.engine
        metrics["fasttext_test"] = {
            "n": ft_n,
            "precision_at_1": ft_p,
            "recall_at_1": ft_r,
            "labels": ft_labels,
        }
        metrics["calibration"] = calibration_table(probs, truth, model_labels)
        keep_label = cfg.stage.keep_label
        if keep_label and keep_label not in model_labels:
            raise ValueError(f"stage.keep_label {keep_label!r} is not a label of the model ({model_labels})")
        thresholds: list[dict[str, float]] = []
        calib_on = "held-out split"
        if keep_label:
            col = model_labels.index(keep_label)
            scores = probs[:, col]
            if cfg.calibration is not None:
                sample = read_source(cfg.calibration)
                if cfg.calibration.max_records and len(sample) > cfg.calibration.max_records:
                    sample = rng.sample(sample, cfg.calibration.max_records)
                scores = stage.predict([t for t, _ in sample])[:, col]
                calib_on = cfg.calibration.uri or str(cfg.calibration.run)
            shares = sorted({*SHARES, *([cfg.stage.top_share] if cfg.stage.top_share else [])})
            thresholds = threshold_table(scores, tuple(shares))
        metrics["thresholds"] = {"label": keep_label, "scored": calib_on, "rows": thresholds}
        metrics["records"] = {"train": len(train_set), "holdout": len(test_set)}
        metrics["sources"] = source_counts
        metrics["params"] = {**model_args(model), **params}
        snippet = stage_snippet(cfg, metrics)
        out.makedirs()
        out.join("model.bin").put_file(str(mp))
    out.join("metrics.json").write_json(metrics)
    out.join("stage.yaml").write_bytes(snippet.encode())
    out.join("MODEL_CARD.md").write_bytes(model_card(cfg, metrics, snippet).encode())
    return metrics


def model_args(model: Any) -> dict[str, Any]:
    a = model.f.getArgs()
    names = ("dim", "epoch", "lr", "wordNgrams", "minCount", "bucket", "minn", "maxn", "neg", "ws")
    out = {k: getattr(a, k) for k in names if hasattr(a, k)}
    out["loss"] = str(getattr(a, "loss", "")).split(".")[-1]
    return out


def stage_snippet(cfg: TrainConfig, metrics: dict[str, Any]) -> str:
    import yaml

    params: dict[str, Any] = {
        "model": cfg.output.uri.rstrip("/") + "/model.bin",
        "name": cfg.stage.name or re.sub(r"\W", "_", cfg.name),
        **cfg.preprocess.prep_params(),
    }
    s = cfg.stage
    if s.keep_label and s.min_prob is not None:
        params["keep"] = {s.keep_label: s.min_prob}
    elif s.keep_label and s.top_share is not None:
        row = next(r for r in metrics["thresholds"]["rows"] if r["top_share"] == s.top_share)
        params["keep"] = {s.keep_label: round(row["min_prob"], 6)}
    head = (
        f"# fasttext_classifier trained by `refinery train-classifier` ({cfg.name}); paste under `stages:`\n"
    )
    if s.top_share is not None:
        head += (
            f"# keep: the top {s.top_share:.0%} by P({s.keep_label}) on {metrics['thresholds']['scored']}\n"
        )
    return head + yaml.safe_dump([{"stage": "fasttext_classifier", "params": params}], sort_keys=False)


def model_card(cfg: TrainConfig, m: dict[str, Any], snippet: str) -> str:
    L = [
        f"# Model card: {cfg.name}",
        "",
        "fastText supervised classifier trained by `refinery train-classifier`.",
        "",
    ]
    L += ["## Sources", "", "| source | label | records | by label |", "|---|---|---:|---|"]
    for s in m["sources"]:
        L.append(f"| `{s['source']}` | {s['label']} | {s['records']} | {s['by_label']} |")
    L += [
        "",
        f"Trained on {m['records']['train']} records; {m['records']['holdout']} held out "
        f"(holdout {cfg.holdout}, seed {cfg.seed}, per label).",
    ]
    L += ["", "## Parameters", "", f"- preprocessing: {cfg.preprocess.prep_params()}"]
    L += [f"- {k}: {v}" for k, v in m["params"].items()]
    L += [
        "",
        "## Held-out metrics",
        "",
        f"Accuracy **{m['accuracy']:.4f}** on {m['n']} records "
        f"(scored with the stage's `{m['engine']}` engine; fastText's own `test`: precision@1 "
        f"{m['fasttext_test']['precision_at_1']:.4f} on {m['fasttext_test']['n']}).",
        "",
    ]
    L += ["| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for lab, v in m["labels"].items():
        L.append(f"| {lab} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |")
    L += [
        "",
        "## Calibration (held-out)",
        "",
        "| label | P bin | rows | mean P | observed share |",
        "|---|---|---:|---:|---:|",
    ]
    for r in m["calibration"]:
        L.append(f"| {r['label']} | {r['bin']} | {r['n']} | {r['mean_prob']:.3f} | {r['observed']:.3f} |")
    t = m["thresholds"]
    if t["rows"]:
        L += [
            "",
            f"## Thresholds for `{t['label']}` (scored on {t['scored']})",
            "",
            "| keep top share | min probability |",
            "|---:|---:|",
        ]
        L += [f"| {r['top_share']:.0%} | {r['min_prob']:.6f} |" for r in t["rows"]]
    L += ["", "## Stage", "", "```yaml", snippet.rstrip(), "```", ""]
    return "\n".join(L)
