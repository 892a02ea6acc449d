"""Check that GPU MinHash signatures are bit-identical to the CPU path, and print signatures/s for both.

Standalone: needs only numpy, torch (or CuPy) and the two module files of stages/dedup, loaded by path (no
pyarrow, no Ray, no project install; so it imports nothing else of ours, not even scripts/bench/common.py).
Shingle hashes are random 64-bit values with realistic per-document counts; the signature step is the same
function of them on both devices (shingling itself always runs on the CPU).

    python -m scripts.bench.gpu_minhash [--docs 20000] [--shingles-per-doc 400] [--bands 14] [--rows 8] \
        [--backend all]

Exit status 0 = identical (or no GPU: prints SKIP), 1 = mismatch.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[2] / "stages" / "dedup"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.gpu_minhash")
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--shingles-per-doc", type=int, default=400)
    ap.add_argument("--bands", type=int, default=14)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", choices=["torch", "cupy", "all"], default="all")
    args = ap.parse_args()
    mh = _load("minhash")
    gpu = _load("minhash_gpu")
    if not mh.gpu_available():
        print("SKIP: no CUDA device visible to torch or CuPy")
        return 0
    rng = np.random.default_rng(0)
    counts = rng.poisson(args.shingles_per_doc, size=args.docs)
    counts[::97] = 0  # some empty documents
    off = np.zeros(args.docs + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    sh = rng.integers(0, 1 << 64, size=int(off[-1]), dtype=np.uint64, endpoint=False)
    a, b = mh.permutations(args.bands * args.rows, args.seed)

    t0 = time.perf_counter()
    cpu = mh.minhash_cpu(sh, off, a, b)
    t_cpu = time.perf_counter() - t0
    print(f"docs={args.docs} shingles={len(sh)} permutations={len(a)}")
    print(f"cpu: {args.docs / t_cpu:,.0f} signatures/s ({t_cpu:.2f}s, one core, numpy)")
    backends = {
        "torch": lambda *x: gpu._minhash_torch(*x, "cuda", 1 << 20),
        "cupy": lambda *x: gpu._minhash_cupy(*x, 1 << 20),
    }
    chosen = list(backends) if args.backend == "all" else [args.backend]
    ok = True
    for name in chosen:
        try:
            backends[name](sh[: off[100]], off[:101], a, b)  # warm-up (CUDA context, kernels)
        except ImportError:
            print(f"{name}: not installed")
            continue
        t0 = time.perf_counter()
        dev = backends[name](sh, off, a, b)
        t_gpu = time.perf_counter() - t0
        same = np.array_equal(cpu, dev)
        ok &= same
        print(
            f"{name}: {args.docs / t_gpu:,.0f} signatures/s ({t_gpu:.2f}s), speedup {t_cpu / t_gpu:.1f}x, "
            f"bit-identical: {same}"
        )
        if not same:
            bad = np.argwhere(cpu != dev)
            print("  first mismatches (doc, perm):", bad[:5].tolist())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
