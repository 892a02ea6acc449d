"""MinHash signatures on a GPU (torch, or CuPy when torch is absent), bit-identical to `minhash.minhash_cpu`.

Same hash family, same seeds: h_k(x) = (a_k·x + b_k) mod 2^64, minimum taken as unsigned. torch has no uint64
arithmetic, so values live in int64 (two's-complement multiply/add wrap exactly like uint64 mod 2^64) and the
unsigned minimum is taken on x XOR 2^63, which maps unsigned order onto signed order. Shingling stays on the CPU
(string work); only the K × shingles arithmetic and the per-document min run on the device.

torch/CuPy are imported inside the functions only: this module is imported by stage discovery on machines
without either.
"""

from __future__ import annotations

import numpy as np

_SIGN = np.uint64(1 << 63)


def minhash_gpu(
    sh: np.ndarray,
    sh_off: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    device: str = "cuda",
    chunk: int = 1 << 20,
) -> np.ndarray:
    try:
        import torch  # noqa: F401
    except ImportError:
        return _minhash_cupy(sh, sh_off, a, b, chunk)
    return _minhash_torch(sh, sh_off, a, b, device, chunk)


def _minhash_torch(sh, sh_off, a, b, device, chunk):
    import torch

    dev = torch.device(device)
    ndocs, k = len(sh_off) - 1, len(a)
    ta = torch.from_numpy(a.view(np.int64).copy()).to(dev)
    tb = torch.from_numpy(b.view(np.int64).copy()).to(dev)
    sign = torch.tensor(np.int64(-(1 << 63)), device=dev)
    # all-ones (M64) XOR 2^63 = int64 max: the identity of the flipped minimum
    sig = torch.full((ndocs, k), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
    counts = np.diff(sh_off)
    doc_of = np.repeat(np.arange(ndocs, dtype=np.int64), counts)
    for s in range(0, len(sh), chunk):
        x = torch.from_numpy(sh[s : s + chunk].view(np.int64).copy()).to(dev)
        d = torch.from_numpy(doc_of[s : s + chunk]).to(dev)
        v = torch.bitwise_xor(x[:, None] * ta[None, :] + tb[None, :], sign)
        sig.scatter_reduce_(0, d[:, None].expand(-1, k), v, reduce="amin", include_self=True)
    out = torch.bitwise_xor(sig, sign).cpu().numpy()
    return out.view(np.uint64)


def _minhash_cupy(sh, sh_off, a, b, chunk):
    import cupy as cp

    ndocs, k = len(sh_off) - 1, len(a)
    ca, cb = cp.asarray(a), cp.asarray(b)
    sig = cp.full((ndocs, k), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=cp.uint64)
    doc_of = np.repeat(np.arange(ndocs, dtype=np.int64), np.diff(sh_off))
    for s in range(0, len(sh), chunk):
        x = cp.asarray(sh[s : s + chunk])
        d = cp.asarray(doc_of[s : s + chunk])
        v = x[:, None] * ca[None, :] + cb[None, :]
        rows = cp.repeat(d, k)
        cols = cp.tile(cp.arange(k), len(d))
        cp.minimum.at(sig, (rows, cols), v.reshape(-1))
    return cp.asnumpy(sig)
