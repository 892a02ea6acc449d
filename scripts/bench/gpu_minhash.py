"""GPU MinHash from text: bit-identity with the numpy path and docs/s text → signatures, on real documents.

Runs where there is neither Ray nor pyarrow (the lent GPU machine has numpy and torch, maybe CuPy, and cannot
install anything): it imports only numpy, torch and the pure modules `stages/dedup/minhash.py` and
`minhash_gpu.py`, and says so at the end (it fails if pyarrow or Ray was imported).

Documents: the SPDX licences and lingua sentences in tests/fixtures (and ../shared/data/dedup's 728 SPDX texts
when present), repeated to `--docs`. The pipeline prepares texts with Arrow (`minhash.prepare_texts`: ASCII texts
as they are, others NFKC-normalized); here the same is done in Python (`prepare`), timed apart, since the
GPU's share starts from UTF-8 bytes and offsets on the host, as an Arrow string column holds them.

Figures:
  identical   TorchMinHash on the device vs tokenize_bytes + shingles + minhash_cpu (numpy), first --check docs
  numpy       docs/s of that numpy path, one core
  gpu         docs/s of TorchMinHash.signatures_many over batches of --batch docs: host bytes in, host
              signatures out (copies through pinned buffers, overlapped with compute, included)
  end to end  the same with the Python preparation included at its rate on the real texts (one CPU core)

    python -m scripts.bench.gpu_minhash [--docs 200000] [--batch 50000] [--check 3000] [--device cuda]

Exit status 0 = identical (or no CUDA device: SKIP), 1 = mismatch or a forbidden import.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
_SEP = re.compile(r"[\W_]+")


def real_texts() -> list[str]:
    texts: list[str] = []
    for f in (
        ROOT.parent / "shared" / "data" / "dedup" / "spdx_licenses.jsonl.gz",
        ROOT / "tests" / "fixtures" / "dedup" / "spdx_slice.jsonl.gz",
        ROOT / "tests" / "fixtures" / "langid" / "lingua_sentences_slice.jsonl.gz",
    ):
        if f.exists():
            with gzip.open(f, "rt") as fh:
                texts += [json.loads(line)["text"] or "" for line in fh]
    return texts


def prepare(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and offsets as `minhash.prepare_texts` gives them, in Python: ASCII texts as they are, the
    others NFKC + lower case + runs of non-alphanumerics → one space."""
    enc = [
        (t if t.isascii() else _SEP.sub(" ", unicodedata.normalize("NFKC", t).lower()).strip()).encode()
        for t in texts
    ]
    off = np.zeros(len(enc) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in enc], out=off[1:])
    return np.frombuffer(bytearray(b"".join(enc)), dtype=np.uint8), off


def numpy_signatures(
    mh, data: np.ndarray, off: np.ndarray, a: np.ndarray, b: np.ndarray, n: int
) -> np.ndarray:
    tok, doc_off = mh.tokenize_bytes(data, off)
    sh, sh_off = mh.shingles(tok, doc_off, n)
    return mh.minhash_cpu(sh, sh_off, a, b), len(sh)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.gpu_minhash", description=__doc__)
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=50_000, help="documents per batch handed to the GPU")
    ap.add_argument("--check", type=int, default=3000, help="documents compared with the numpy path")
    ap.add_argument("--bands", type=int, default=14)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda", help="torch device (cpu: a dry run of the same code)")
    args = ap.parse_args()
    from stages.dedup import minhash as mh

    if args.device == "cuda" and not mh.gpu_available():
        print("SKIP: no CUDA device visible to torch or CuPy")
        return 0
    import torch

    from stages.dedup.minhash_gpu import TorchMinHash, minhash_gpu

    base = real_texts()
    texts = [base[i % len(base)] for i in range(max(args.check, len(base)))]
    a, b = mh.permutations(args.bands * args.rows, args.seed)
    t0 = time.perf_counter()
    data_b, off_b = prepare(base)
    prep_rate = len(base) / (time.perf_counter() - t0)
    # batches of whole copies of the prepared real texts (preparing each copy again would only time Python)
    reps = max(1, args.batch // len(base))
    per = reps * len(base)
    batch = (
        np.tile(data_b, reps),
        np.concatenate([off_b[:-1] + k * len(data_b) for k in range(reps)] + [[reps * len(data_b)]]),
    )
    batches = [batch] * max(1, round(args.docs / per))
    args.docs = per * len(batches)
    t_prep = args.docs / prep_rate
    nbytes = sum(len(d) for d, _ in batches)
    print(
        f"torch {torch.__version__} device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
    )
    print(
        f"docs={args.docs} from {len(base)} real texts, {nbytes / args.docs:.0f} bytes/doc, "
        f"permutations={len(a)}, ngram={args.ngram}, batch={per}"
    )

    # bit-identity on the first --check documents (numpy reference, one core)
    data, off = prepare(texts[: args.check])
    t0 = time.perf_counter()
    ref, nsh = numpy_signatures(mh, data, off, a, b, args.ngram)
    t_np = time.perf_counter() - t0
    hasher = TorchMinHash(a, b, args.ngram, args.device)
    got = hasher.signatures(data, off)
    same = np.array_equal(got, ref)
    tok, doc_off = mh.tokenize_bytes(data, off)
    sh, sh_off = mh.shingles(tok, doc_off, args.ngram)
    same_step = np.array_equal(minhash_gpu(sh, sh_off, a, b, device=args.device), ref)
    print(f"identical (text → signatures on {args.device} vs numpy, {args.check} docs): {same}")
    print(f"identical (signature step alone on given shingles): {same_step}")
    if not same:
        bad = np.argwhere(got != ref)
        print("  first mismatches (doc, perm):", bad[:5].tolist())
    print(f"numpy: {args.check / t_np:,.0f} docs/s ({nsh / args.check:.0f} shingles/doc, one core)")

    list(hasher.signatures_many(batches[:1]))  # warm-up: kernels, pinned buffers, powers
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    n = sum(len(s) for s in hasher.signatures_many(batches))
    sync()
    t_gpu = time.perf_counter() - t0
    print(
        f"gpu: {n / t_gpu:,.0f} docs/s text → signatures ({t_gpu:.2f}s, {nbytes / t_gpu / 1e9:.2f} GB/s of text), "
        f"{t_np / args.check * n / t_gpu:.0f}x one numpy core"
    )
    print(
        f"end to end with Python preparation on one core: {n / (t_gpu + t_prep):,.0f} docs/s "
        f"(preparation alone {prep_rate:,.0f} docs/s)"
    )
    heavy = sorted(m for m in ("pyarrow", "ray", "pandas") if m in sys.modules)
    print(f"imported pyarrow/ray/pandas: {heavy or 'none'}")
    return 0 if same and same_step and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
