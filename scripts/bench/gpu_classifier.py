"""GPU check of hf_classifier (issue #16): throughput of a base-size encoder at 512 tokens in fp16/bf16, and how
well GPU scores agree with CPU scores on the same texts. Short (a few minutes), for whenever a GPU is lent.

    python -m scripts.bench.gpu_classifier [--docs 4096] [--batch-size 256] [--out docs/benchmarks/gpu_classifier.md]

It builds everything itself (nothing downloaded): a BERT-base-sized regression head (12 layers × 768, random
weights, FineWeb-Edu's shape) with a WordPiece tokenizer trained on bundled real text (samples/), and documents of
512+ tokens from the same text. Through the stage's own code (`HFClassifier.logits`: tokenize, sort by length,
pad, forward):
  1. GPU throughput, docs/s, per dtype (bfloat16 where supported, float16), the model at its best batch size;
     the H200 target is >= 3,000 docs/s at <= 512 tokens;
  2. agreement: the same 256 texts on CPU (float32) and on GPU (each dtype): max and mean absolute score
     difference, Spearman rank correlation, and the share of equal `int_score`s.
On a machine without CUDA it runs the CPU part on a few texts and prints SKIP for the GPU parts (exit 0).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def texts(n: int) -> list[str]:
    lines = [json.loads(x)["text"] for x in gzip.open(ROOT / "samples/classify/article_lines.jsonl.gz", "rt")]
    return [" ".join(lines[(i * 9) % len(lines) : (i * 9) % len(lines) + 9]) for i in range(n)]


def stage(folder: Path, device: str, dtype: str, batch: int) -> Any:
    from refinery.stage import build_stage

    s = build_stage(
        "hf_classifier",
        {"model": str(folder), "name": "edu", "device": device, "dtype": dtype, "batch_size": batch},
    )
    s.setup()
    return s


def spearman(a: Any, b: Any) -> float:
    import numpy as np

    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from scripts.bench.classifier_models import build_hf_model

    ap = argparse.ArgumentParser(
        prog="python -m scripts.bench.gpu_classifier", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--docs", type=int, default=4096, help="documents for the GPU throughput run")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--agree-docs", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="also write the results as markdown here")
    a = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    res: dict[str, Any] = {"torch": torch.__version__, "cuda": cuda}
    with tempfile.TemporaryDirectory(prefix="gpu-classifier-") as tmp:
        folder = build_hf_model(
            Path(tmp) / "bert-base", texts(2000), num_labels=1, size="base", vocab_size=30000
        )
        n_agree = a.agree_docs if cuda else 8
        sample = texts(n_agree)
        t0 = time.time()
        cpu = stage(folder, "cpu", "float32", 16)
        cpu_logits = cpu.logits(sample)[:, 0]
        res["cpu"] = {"docs": n_agree, "seconds": round(time.time() - t0, 2)}
        del cpu
        if not cuda:
            print(json.dumps(res))
            print("SKIP: no CUDA device; GPU throughput and GPU/CPU agreement not measured")
            return 0
        res["gpu"] = torch.cuda.get_device_name(0)
        dtypes = ["bfloat16", "float16"] if torch.cuda.is_bf16_supported() else ["float16"]
        docs = texts(a.docs)
        for dt in dtypes:
            g = stage(folder, "cuda", dt, a.batch_size)
            g.logits(docs[: a.batch_size])  # warm-up (kernels, allocator)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            g.logits(docs)
            torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            gl = g.logits(sample)[:, 0]
            lo, hi = 0, 5
            ic, ig = np.rint(np.clip(cpu_logits, lo, hi)), np.rint(np.clip(gl, lo, hi))
            res[dt] = {
                "docs": len(docs),
                "batch_size": a.batch_size,
                "max_tokens": g.max_length,
                "seconds": round(wall, 3),
                "docs_per_s": round(len(docs) / wall, 1),
                "agree_max_abs": float(np.abs(gl - cpu_logits).max()),
                "agree_mean_abs": float(np.abs(gl - cpu_logits).mean()),
                "agree_spearman": spearman(gl, cpu_logits),
                "agree_int_score": float((ic == ig).mean()),
            }
            print(json.dumps({dt: res[dt]}))
            del g
            torch.cuda.empty_cache()
    print(json.dumps(res))
    if a.out:
        lines = [
            "# hf_classifier on GPU (python -m scripts.bench.gpu_classifier)",
            "",
            f"GPU: {res['gpu']}; torch {res['torch']}; BERT-base-sized regression head, random weights, 512 tokens.",
            "",
            "| dtype | docs/s | batch | max abs diff vs CPU fp32 | mean abs diff | Spearman | equal int_score |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for dt in ("bfloat16", "float16"):
            if dt in res:
                r = res[dt]
                lines.append(
                    f"| {dt} | {r['docs_per_s']} | {r['batch_size']} | {r['agree_max_abs']:.4f} | "
                    f"{r['agree_mean_abs']:.4f} | {r['agree_spearman']:.4f} | {r['agree_int_score']:.3f} |"
                )
        a.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
