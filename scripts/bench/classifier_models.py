"""Models the classifier tests and benchmarks build themselves from real text: nothing is downloaded.

- `build_hf_model`: a BERT sequence classifier from a config (random weights, seeded) with a WordPiece tokenizer
  trained on the given texts, saved as a Hugging Face folder (config.json, model.safetensors, tokenizer files):
  the shape of FineWeb-Edu's classifier (`num_labels=1`, a regression head) or of a domain classifier.
  `size="base"` has BERT-base's 12 layers, 768 wide (86-110 M parameters with the vocabulary), for speed figures.
- `train_fasttext`: a fastText supervised model on (text, label) pairs, any `train_supervised` arguments.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
}


def build_hf_model(
    folder: Path,
    texts: Sequence[str],
    num_labels: int = 1,
    size: str = "tiny",
    max_position: int = 512,
    vocab_size: int = 2000,
    seed: int = 0,
) -> Path:
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1, show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        wp.save_model(tmp)
        tok = BertTokenizerFast(vocab_file=str(Path(tmp) / "vocab.txt"), model_max_length=max_position)
    tok.save_pretrained(folder)
    labels = {0: "score"} if num_labels == 1 else {i: f"class_{i}" for i in range(num_labels)}
    cfg = BertConfig(
        vocab_size=len(tok),
        max_position_embeddings=max_position,
        num_labels=num_labels,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        problem_type="regression" if num_labels == 1 else "single_label_classification",
        initializer_range=0.5,  # random weights large enough that documents get different scores
        **SIZES[size],
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():  # a random head whose outputs differ visibly between documents
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.fill_(2.5 if num_labels == 1 else 0.0)
    model.eval().save_pretrained(folder)
    return folder


def train_fasttext(path: Path, records: Sequence[tuple[str, str]], **args: Any) -> Path:
    """A fastText supervised model of (text, label) records (texts already one line each), saved at `path`."""
    from jobs.train_classifier import train_supervised

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        for text, label in records:
            f.write(f"__label__{label} {text}\n")
    train_supervised(Path(f.name), Path(path), {"verbose": 0, "seed": 0, "thread": 1, **args})
    Path(f.name).unlink()
    return Path(path)
