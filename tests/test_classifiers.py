"""Model-based classifiers: train-classifier on real labelled text, fasttext_classifier against fastText's own
predict, hf_classifier on a model built here from a config, and both inside a pipeline with full accounting.

Labels: tests/fixtures/classify (README there): lines of 181 real web pages, `article` where a person marked them
as the article, else `boilerplate`. No model is downloaded: every model is trained or built by the test.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from refinery.config import ConfigError, parse_config, parse_model
from refinery.stage import build_stage
from scripts.bench.classifier_models import build_hf_model, train_fasttext

FIX = Path(__file__).parent / "fixtures" / "classify"
ARTICLE, BOILER = FIX / "article_lines.jsonl.gz", FIX / "boilerplate_lines.jsonl.gz"
# held-out accuracy floor of the article/boilerplate classifier on the fixture (measured 0.87-0.90)
ACCURACY_FLOOR = 0.82


def lines(path: Path) -> list[str]:
    return [json.loads(x)["text"] for x in gzip.open(path, "rt", encoding="utf-8")]


def table(texts: list[str | None], **cols) -> pa.Table:
    return pa.table(
        {"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.large_string()), **cols}
    )


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REFINERY_MODEL_CACHE", str(tmp_path / "model-cache"))


@pytest.fixture(scope="module")
def labelled() -> list[tuple[str, str]]:
    return [(t, "article") for t in lines(ARTICLE)] + [(t, "boilerplate") for t in lines(BOILER)]


@pytest.fixture(scope="module")
def ft_model(tmp_path_factory, labelled) -> Path:
    """A DCLM-shaped model (word bigrams, softmax) on the fixture, with a small bucket to keep the test quick."""
    from stages.classify.fasttext_classifier import preprocess

    texts = preprocess([t for t, _ in labelled])
    recs = list(zip(texts, [lab for _, lab in labelled], strict=True))
    return train_fasttext(
        tmp_path_factory.mktemp("ft") / "m.bin", recs, wordNgrams=2, bucket=50000, dim=16, epoch=5
    )


# ------------------------------------------------------------------------------------------ train-classifier


def train_cfg(tmp_path: Path, **over) -> str:
    cfg = {
        "name": "article-vs-boilerplate",
        "sources": [
            {"uri": str(ARTICLE), "format": "jsonl", "text_field": "text", "label": "article"},
            {"uri": str(BOILER), "format": "jsonl", "text_field": "text", "label": "boilerplate"},
        ],
        "holdout": 0.1,
        "seed": 0,
        "preprocess": {"preset": "dclm"},
        "fasttext": {"epoch": 10, "wordNgrams": 2, "lr": 0.5, "bucket": 200000},
        "stage": {"keep_label": "article", "top_share": 0.3},
        "output": {"uri": str(tmp_path / "model")},
        **over,
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def test_train_classifier_held_out_accuracy_and_fasttext_agreement(tmp_path):
    from jobs.train_classifier import TrainConfig, train

    cfg = parse_model(train_cfg(tmp_path), "train.yaml", TrainConfig)
    m = train(cfg)
    out = tmp_path / "model"
    assert {p.name for p in out.iterdir()} >= {"model.bin", "metrics.json", "MODEL_CARD.md", "stage.yaml"}
    assert m["accuracy"] >= ACCURACY_FLOOR, m["accuracy"]
    assert m["records"]["holdout"] == m["n"] == round(0.1 * 1000) * 2
    # our held-out metrics (the stage's engine) agree with fastText's own `test` on the same split
    ft = m["fasttext_test"]
    assert ft["n"] == m["n"] and abs(ft["precision_at_1"] - m["accuracy"]) < 1e-9
    for lab, v in m["labels"].items():
        assert abs(ft["labels"][lab]["precision"] - v["precision"]) < 1e-9
        assert abs(ft["labels"][lab]["recall"] - v["recall"]) < 1e-9
        assert abs(ft["labels"][lab]["f1score"] - v["f1"]) < 1e-9
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Calibration" in card and "article" in card and str(m["records"]["train"]) in card
    # stage.yaml is a ready-to-paste, valid stage: the top 30% by P(article) of the held-out split
    snippet = yaml.safe_load((out / "stage.yaml").read_text())
    params = snippet[0]["params"]
    assert snippet[0]["stage"] == "fasttext_classifier" and params["preset"] == "dclm"
    stage = build_stage("fasttext_classifier", params)
    stage.setup()
    assert stage.engine == "projected" and sorted(stage.labels) == ["article", "boilerplate"]
    texts = lines(ARTICLE)[:100] + lines(BOILER)[:100]
    _, reasons = stage.process(table(texts))
    kept = reasons.null_count if reasons is not None else len(texts)
    assert 0 < kept < len(texts)


def test_train_classifier_label_field_source(tmp_path):
    from jobs.train_classifier import TrainConfig, train

    mixed = tmp_path / "reviewed.jsonl"
    with open(mixed, "w") as f:
        for t in lines(ARTICLE)[:300]:
            f.write(json.dumps({"text": t, "verdict": "good"}) + "\n")
        for t in lines(BOILER)[:300]:
            f.write(json.dumps({"text": t, "verdict": "bad"}) + "\n")
        f.write(json.dumps({"text": "no label on this one", "verdict": None}) + "\n")
    src = [{"uri": str(mixed), "format": "jsonl", "label_field": "verdict"}]
    cfg = parse_model(train_cfg(tmp_path, sources=src, stage={}), "t.yaml", TrainConfig)
    m = train(cfg)
    assert sorted(m["labels"]) == ["bad", "good"]
    assert m["sources"][0]["records"] == 600  # the unlabelled record is left out
    assert m["accuracy"] >= 0.7


def test_train_config_errors_name_file_key_and_line(tmp_path):
    from jobs.train_classifier import TrainConfig

    text = train_cfg(tmp_path, fasttext={"epoch": 2, "wordNgram": 2})
    text = text.replace("label: boilerplate", "label: boilerplate\n  label_field: x")
    with pytest.raises(ConfigError) as e:
        parse_model(text, "train.yaml", TrainConfig)
    msg = str(e.value)
    assert "train.yaml: fasttext (line" in msg and "wordNgram" in msg
    assert "sources[1]" in msg and "exactly one of label" in msg


# ------------------------------------------------------------------------------------------ fasttext_classifier

EDGE = [
    "",
    "   ",
    "one",
    "__label__article spelled like a label in the middle __label__x of text",
    "tabs\tand\rcarriage returns\vand\fform feeds",
    "a NUL\x00inside a word",
    "non-breaking\u00a0space and ideographic\u3000space are not fastText whitespace",
    "émoji 😀 and ünïcödé and 中文 words",
    "x" * 5000,
    "Lines\nbecome one\r\nline\u2028here",
]


@pytest.mark.parametrize("preset", ["dclm", "datatrove"])
def test_projected_engine_equals_fasttext_predict(ft_model, preset):
    import fasttext

    from stages.classify.fasttext_classifier import PRESETS, preprocess

    texts = lines(ARTICLE)[:300] + lines(BOILER)[:300] + EDGE
    stage = build_stage("fasttext_classifier", {"model": str(ft_model), "name": "q", "preset": preset})
    stage.setup()
    assert stage.engine == "projected"
    ours = stage.predict(texts)
    model = fasttext.load_model(str(ft_model))
    prep = preprocess(texts, **PRESETS[preset])  # type: ignore[arg-type]
    labels, probs = model.predict(prep, k=-1)
    theirs = np.full_like(ours, np.nan)
    for i, (ls, ps) in enumerate(zip(labels, probs, strict=True)):
        for lab, p in zip(ls, ps, strict=True):
            theirs[i, stage.labels.index(lab.removeprefix("__label__"))] = p
    assert np.isnan(ours).sum() == np.isnan(theirs).sum()
    np.testing.assert_allclose(ours, theirs, atol=2e-6, rtol=0)
    # and the fasttext-module engine gives the same
    mod = build_stage(
        "fasttext_classifier", {"model": str(ft_model), "name": "q", "preset": preset, "engine": "fasttext"}
    )
    np.testing.assert_allclose(mod.predict(texts), theirs, atol=1e-7, rtol=0)


def test_projected_engine_trigrams_and_fallback(tmp_path, labelled):
    import fasttext

    recs = labelled[::3]
    tri = train_fasttext(tmp_path / "tri.bin", recs, wordNgrams=3, bucket=30000, dim=8, epoch=2)
    sub = train_fasttext(tmp_path / "sub.bin", recs, minn=3, maxn=5, bucket=30000, dim=8, epoch=1, lr=0.05)
    texts = [t for t, _ in labelled[1::50]]
    s = build_stage("fasttext_classifier", {"model": str(tri), "name": "t"})
    s.setup()
    assert s.engine == "projected"
    lab, pr = fasttext.load_model(str(tri)).predict(texts, k=-1)
    for i, (ls, ps) in enumerate(zip(lab, pr, strict=True)):
        for x, p in zip(ls, ps, strict=True):
            assert abs(s.predict([texts[i]])[0, s.labels.index(x.removeprefix("__label__"))] - p) < 2e-6
    # character n-grams: the projected engine cannot run it, `auto` falls back to the fasttext module
    f = build_stage("fasttext_classifier", {"model": str(sub), "name": "t"})
    f.setup()
    assert f.engine == "fasttext"
    with pytest.raises(ValueError, match="character n-grams"):
        build_stage("fasttext_classifier", {"model": str(sub), "name": "t", "engine": "projected"}).setup()


def test_fasttext_stage_columns_keep_drop_and_unknown_label(ft_model):
    art, bp = lines(ARTICLE)[:50], lines(BOILER)[:50]
    params = {"model": str(ft_model), "name": "hq", "keep": {"article": 0.5}, "top_k": 1}
    stage = build_stage("fasttext_classifier", params)
    out, reasons = stage.process(table([*art, *bp, None]))
    col = out["scores"].combine_chunks().field("hq")
    assert out.schema.field("scores").type == stage.output_fields()[0].type
    label, prob = col.field("label").to_pylist(), col.field("prob").to_numpy(zero_copy_only=False)
    probs = col.field("probs").to_pylist()
    assert col.is_null().to_pylist()[-1]  # no text: no score
    assert all(len(p) == 1 and p[0][0] == lab for p, lab in zip(probs[:-1], label[:-1], strict=True))
    r = reasons.to_pylist()
    assert r[-1] is None  # not judged
    p_article = stage.predict([*art, *bp])[:, stage.labels.index("article")]
    assert [x == "hq_below_keep" for x in r[:-1]] == list(p_article < 0.5)
    assert sum(x is None for x in r[:50]) > 40 and sum(x is not None for x in r[50:100]) > 40
    assert np.allclose(prob[:-1], np.max(stage.predict([*art, *bp]), axis=1), atol=1e-6)
    bad = build_stage("fasttext_classifier", {"model": str(ft_model), "name": "hq", "drop": {"spam": 0.5}})
    with pytest.raises(ValueError, match="not among the model's labels"):
        bad.setup()


def test_fasttext_params_are_validated_with_locations(ft_model):
    cfg = {
        "input": {"uri": "/tmp/in"},
        "output": {"uri": "/tmp/out-x"},
        "stages": [
            {
                "stage": "fasttext_classifier",
                "params": {"model": str(ft_model), "name": "hq", "keep": {"hq": 1.5}},
            }
        ],
    }
    with pytest.raises(ConfigError, match=r"c.yaml: stages\[0\].params.keep \(line \d+\).*from 0 to 1"):
        parse_config(yaml.safe_dump(cfg), "c.yaml")
    cfg["stages"][0]["params"] = {"model": str(ft_model), "name": "hq", "preset": "dclm", "lowercase": True}
    with pytest.raises(ConfigError, match="give a preset or those keys"):
        parse_config(yaml.safe_dump(cfg), "c.yaml")
    cfg["stages"][0]["params"] = {"model": str(ft_model), "name": "hq", "only_languages": ["en"]}
    with pytest.raises(ConfigError, match="add a `langid` stage before it"):
        parse_config(yaml.safe_dump(cfg), "c.yaml")


def test_model_copied_once_per_node_from_a_uri(ft_model, tmp_path):
    import fsspec

    from refinery.model_cache import node_cache_dir
    from stages.classify.fasttext_engine import build_projection

    fs = fsspec.filesystem("memory")
    fs.pipe("/models/m.bin", ft_model.read_bytes())
    calls = []

    def derive(model: Path, folder: Path) -> None:
        calls.append(model)
        build_projection(model, folder)

    a = node_cache_dir("memory://models/m.bin", derived=derive, kind="t")
    b = node_cache_dir("memory://models/m.bin", derived=derive, kind="t")
    assert a == b and len(calls) == 1 and a[0].read_bytes() == ft_model.read_bytes()
    s = build_stage("fasttext_classifier", {"model": "memory://models/m.bin", "name": "q"})
    s.setup()
    assert s.engine == "projected" and len(s.predict(["a line of text"])) == 1


# ------------------------------------------------------------------------------------------ hf_classifier


@pytest.fixture(scope="module")
def hf_regression(tmp_path_factory) -> Path:
    return build_hf_model(tmp_path_factory.mktemp("hf") / "edu", lines(ARTICLE)[:500], num_labels=1)


def test_hf_regression_deterministic_across_batch_sizes(hf_regression):
    texts = lines(ARTICLE)[:40] + lines(BOILER)[:40] + ["", "short", " ".join(lines(ARTICLE)[:60])]
    runs = []
    for bs in (1, 7, 64):
        s = build_stage(
            "hf_classifier",
            {"model": str(hf_regression), "name": "edu", "batch_size": bs, "keep": {"int_score": 3}},
        )
        out, reasons = s.process(table(texts))
        col = out["scores"].combine_chunks().field("edu")
        runs.append(
            (col.field("score").to_numpy(zero_copy_only=False), col.field("int_score").to_pylist(), reasons)
        )
    base, ints, reasons = runs[0]
    assert np.std(base) > 0.1  # documents get different scores
    for other, _, _ in runs[1:]:
        np.testing.assert_allclose(other, base, atol=1e-4, rtol=0)
    assert ints == [int(round(max(0.0, min(float(x), 5.0)))) for x in base]
    assert [r == "edu_below_keep" for r in reasons.to_pylist()] == [i < 3 for i in ints]
    assert s.max_length == 512  # truncated to the model's maximum: the long document did not fail


def test_hf_classification_head_and_device_choice(tmp_path):
    folder = build_hf_model(tmp_path / "dom", lines(BOILER)[:300], num_labels=3)
    s = build_stage("hf_classifier", {"model": str(folder), "name": "domain", "drop": {"class_2": 0.6}})
    assert s.output_fields()[0].type.field("domain").type.get_field_index("probs") >= 0
    out, _ = s.process(table(lines(ARTICLE)[:20]))
    col = out["scores"].combine_chunks().field("domain")
    probs = col.field("probs").to_pylist()
    assert all(abs(sum(v for _, v in p) - 1) < 1e-5 for p in probs)
    assert col.field("label").to_pylist() == [max(p, key=lambda kv: kv[1])[0] for p in probs]
    # placement: GPUs only where the cluster has some (auto), always (cuda), never (cpu)
    assert s.resources_on(0).num_gpus == 0 and s.resources_on(2).num_gpus == 1.0
    cuda = build_stage(
        "hf_classifier", {"model": str(folder), "name": "d", "device": "cuda", "gpu_share": 0.25}
    )
    assert cuda.resources_on(0).num_gpus == 0.25
    cpu = build_stage("hf_classifier", {"model": str(folder), "name": "d", "device": "cpu"}, {"num_gpus": 1})
    assert cpu.resources_on(4).num_gpus == 0


def test_classifier_on_custom_resources_is_its_own_operator(hf_regression):
    from jobs.plan import PlannedStage, StageGroup, group_stages, place_on_devices

    def planned(name, params, res=None):
        return PlannedStage(name, name, params, build_stage(name, params, res))

    segs = group_stages(
        [
            planned("normalize", {}),
            planned("hf_classifier", {"model": str(hf_regression), "name": "e"}, {"custom": {"accel": 0.5}}),
            planned("length_filter", {}),
        ]
    )
    assert [[p.name for p in s.stages] for s in segs if isinstance(s, StageGroup)] == [
        ["normalize"],
        ["hf_classifier"],
        ["length_filter"],
    ]
    assert segs[1].resources.ray_options()["resources"] == {"accel": 0.5}
    # on a cluster with GPUs the classifier asks for one; alone in its group all the same
    placed = place_on_devices(segs, cluster_gpus=1)
    assert placed[1].resources.num_gpus == 1.0 and placed[0].resources.num_gpus == 0


def test_bundled_train_configs_are_valid():
    from jobs.train_classifier import load_train_config

    paths = sorted((Path(__file__).parent.parent / "configs" / "train").glob("*.yaml"))
    assert paths
    for p in paths:
        cfg = load_train_config(str(p))
        assert cfg.stage.keep_label in {s.label for s in cfg.sources}
