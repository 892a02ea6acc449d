"""Both classifier stages inside a real pipeline (actor pools, accounting), then train-classifier from that run.

In its own module, after test_config.py: it starts the session's local Ray, which test_config checks is not
started by `refinery validate`.
"""

from __future__ import annotations

import json

from refinery.config import parse_model
from tests.test_classifiers import (
    ARTICLE,
    BOILER,
    ft_model,
    hf_regression,
    labelled,
    lines,
    model_cache,
    train_cfg,
)

__all__ = ["ft_model", "hf_regression", "labelled", "model_cache"]  # fixtures shared with test_classifiers


def test_classifiers_in_a_pipeline_then_train_from_the_run(run_config, tmp_path, ft_model, hf_regression):
    """Both stages run on actor pools with full accounting; the run's kept rows and drop log then train a model."""
    from jobs.train_classifier import TrainConfig, train
    from tests.conftest import read_output

    inp = tmp_path / "in"
    inp.mkdir()
    with open(inp / "lines.jsonl", "w") as f:
        for i, t in enumerate(lines(ARTICLE)[:150] + lines(BOILER)[:150]):
            f.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
    out = tmp_path / "out"
    res = run_config(
        {
            "input": {"uri": str(inp), "format": "jsonl", "id_field": "id"},
            "output": {"uri": str(out)},
            "stages": [
                {"stage": "normalize"},
                {
                    "stage": "fasttext_classifier",
                    "params": {
                        "model": str(ft_model),
                        "name": "hq",
                        "preset": "dclm",
                        "keep": {"article": 0.5},
                    },
                },
                {
                    "stage": "hf_classifier",
                    "params": {
                        "model": str(hf_regression),
                        "name": "edu",
                        "action": "annotate",
                        "keep": {"int_score": 1},
                    },
                },
            ],
        }
    )
    rep = res.report
    ft = next(s for s in rep["stages"] if s["name"] == "fasttext_classifier")
    assert ft["rows_in"] == 300 and ft["rows_out"] + sum(ft["dropped"].values()) == 300
    assert set(ft["dropped"]) == {"hq_below_keep"} and 100 < ft["rows_out"] < 200
    data, _ = read_output(out)
    assert data.num_rows == rep["rows_out"] == ft["rows_out"]
    scores = data["scores"].combine_chunks()
    assert scores.type.get_field_index("hq") >= 0 and scores.type.get_field_index("edu") >= 0
    assert min(scores.field("hq").field("probs").to_pylist(), key=len)  # every kept row has probabilities
    # train a model from this run: its kept rows against the rows fasttext_classifier dropped
    src = [
        {"run": str(out), "rows": "kept", "label": "kept"},
        {"run": str(out), "rows": "dropped", "stage": "fasttext_classifier", "label": "dropped"},
    ]
    cfg = parse_model(train_cfg(tmp_path, sources=src, stage={}), "t.yaml", TrainConfig)
    m = train(cfg)
    assert m["sources"][0]["records"] == ft["rows_out"]
    assert m["sources"][1]["records"] == ft["dropped"]["hq_below_keep"]
