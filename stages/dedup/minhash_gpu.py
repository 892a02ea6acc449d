"""MinHash signatures from text on a GPU with torch (CuPy only for the signature step when torch is absent),
bit-identical to the numpy path of `minhash.py`.

`TorchMinHash` takes what `minhash.prepare_texts` gives (UTF-8 bytes and offsets: pure-ASCII texts as they are,
the others NFKC-normalized on the CPU, because Unicode normalization has no GPU kernel) and does the rest on the
device: token spans, token hashes (polynomial prefix sums), word n-gram shingle hashes, the K permutations and
the per-document minimum. Batches are cut into chunks of whole documents; each chunk goes through a pinned host
buffer and is copied on a side stream while the previous chunk computes, so copies overlap compute.

torch has no uint64 arithmetic, so values live in int64: two's-complement multiply/add wrap exactly like uint64
mod 2^64, logical right shifts are arithmetic shifts with the sign bits masked off, and the unsigned minimum is
taken on x XOR 2^63, which maps unsigned order onto signed order. The minimum is dense: documents of a chunk are
grouped by shingle count, each group padded (with repeats of its own shingles) to a rectangle and reduced with
`amin`, which is much faster than scatter-min atomics.

This module imports only numpy and `minhash` (itself numpy-only at import) at module level; torch/CuPy are
imported when used: stage discovery imports it on machines without either, and the device check
(scripts/bench/gpu_minhash.py) runs it where there is neither Ray nor pyarrow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from stages.dedup.minhash import (
    LEN_MIX,
    LOWER,
    SEPARATOR,
    _powers,
    combine_constant,
)

_SIGN = np.uint64(1 << 63)
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _s64(x: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


class TorchMinHash:
    """Text → signatures on one torch device (`cuda`, or `cpu` for tests: same code, same bits)."""

    def __init__(
        self,
        a: np.ndarray,
        b: np.ndarray,
        ngram: int = 5,
        device: str = "cuda",
        chunk_bytes: int = 32 << 20,
        cells: int = 1 << 27,
    ):
        import torch

        self.torch = torch
        self.dev = torch.device(device)
        self.cuda = self.dev.type == "cuda"
        self.ngram = ngram
        self.chunk_bytes = chunk_bytes
        self.cells = cells  # int64 cells of the (docs × shingles × permutations) block reduced at once
        self.k = len(a)
        self.a = torch.from_numpy(a.view(np.int64).copy()).to(self.dev)
        self.b = torch.from_numpy(b.view(np.int64).copy()).to(self.dev)
        self.sep = torch.from_numpy(SEPARATOR.copy()).to(self.dev)
        self.lower = torch.from_numpy(LOWER.astype(np.int64)).to(self.dev)
        self.comb = [_s64(combine_constant(k)) for k in range(ngram)]
        self._pw: tuple[Any, Any] | None = None
        self.copy_stream = torch.cuda.Stream(self.dev) if self.cuda else None
        self._pinned: list[Any] = [None, None]
        self._turn = 0

    # ---------------------------------------------------------------------------------------------- public

    def signatures(self, data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """uint64[docs, K] for one batch (as `minhash.signatures(shingle_texts(...))`)."""
        return next(iter(self.signatures_many([(data, offsets)])))

    def signatures_many(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Signatures of each batch in turn; chunk i+1 is copied to the device while chunk i computes."""
        parts: list[np.ndarray] = []
        pending = None
        for _, last, data, off in self._chunks(batches):
            staged = self._stage(data, off)
            if pending is not None:
                parts.append(self._compute(pending[0]))
                if pending[1]:
                    yield np.concatenate(parts) if len(parts) > 1 else parts[0]
                    parts = []
            pending = (staged, last)
        if pending is not None:
            parts.append(self._compute(pending[0]))
            yield np.concatenate(parts) if len(parts) > 1 else parts[0]

    # ---------------------------------------------------------------------------------------------- stages

    def _chunks(
        self, batches: Iterable[tuple[np.ndarray, np.ndarray]]
    ) -> Iterator[tuple[int, bool, np.ndarray, np.ndarray]]:
        """Chunks of whole documents of at most `chunk_bytes` (a longer document alone): (batch, last?, bytes,
        offsets from 0)."""
        for bi, (data, offsets) in enumerate(batches):
            offsets = np.asarray(offsets, dtype=np.int64)
            ndocs = len(offsets) - 1
            i = 0
            while True:
                j = int(np.searchsorted(offsets, offsets[i] + self.chunk_bytes, side="right")) - 1
                j = min(max(j, i + 1), ndocs) if ndocs else 0
                s0, s1 = int(offsets[i]), int(offsets[j])
                yield bi, j >= ndocs, data[s0:s1], offsets[i : j + 1] - s0
                if j >= ndocs:
                    break
                i = j

    def _stage(self, data: np.ndarray, off: np.ndarray) -> tuple[Any, Any, Any]:
        """Start copying one chunk to the device through one of two (pinned, on CUDA) host buffers; returns its
        tensors. On the CPU device the same packing runs, with a plain copy: the tests cover it."""
        torch = self.torch
        # offsets first: a view as int64 must start at a multiple of 8 bytes
        head = 8 * len(off)
        need = head + len(data)
        self._turn ^= 1
        buf = self._pinned[self._turn]
        if buf is None or buf[0].numel() < need:
            buf = (torch.empty(max(need, 1), dtype=torch.uint8, pin_memory=self.cuda), None)
        elif buf[1] is not None:
            buf[1].synchronize()  # the copy that last read this buffer has finished
        host = buf[0]
        host_np = host.numpy()
        host_np[:head].view(np.int64)[:] = off
        host_np[head:need] = data
        if self.cuda:
            event = torch.cuda.Event()
            with torch.cuda.stream(self.copy_stream):
                dev = host[:need].to(self.dev, non_blocking=True)
                event.record(self.copy_stream)
            sync = (event, dev)
        else:
            event, dev, sync = None, host[:need].clone(), None
        self._pinned[self._turn] = (host, event)
        return dev[head:need], dev[:head].view(torch.int64), sync

    def _compute(self, staged: tuple[Any, Any, Any]) -> np.ndarray:
        torch = self.torch
        data, off, sync = staged
        if sync is not None:
            event, dev = sync
            torch.cuda.current_stream(self.dev).wait_event(event)
            dev.record_stream(torch.cuda.current_stream(self.dev))
        data, off = data.to(self.dev), off.to(self.dev)
        ndocs = len(off) - 1
        tok, doc_off = self._tokens(data, off)
        sh, sh_off, nsh = self._shingles(tok, doc_off)
        sig = self._minhash(sh, sh_off, nsh, ndocs)
        out = torch.bitwise_xor(sig, _s64(int(_SIGN))).cpu().numpy()
        return out.view(np.uint64)

    # ---------------------------------------------------------------------------------------------- kernels

    def _srl(self, x: Any, s: int) -> Any:
        return (x >> s) & ((1 << (64 - s)) - 1)

    def _mix(self, x: Any) -> Any:
        """splitmix64's finalizer on int64 bits."""
        x = x ^ self._srl(x, 30)
        x = x * _s64(_MIX1)
        x = x ^ self._srl(x, 27)
        x = x * _s64(_MIX2)
        return x ^ self._srl(x, 31)

    def _powers(self, n: int) -> tuple[Any, Any]:
        if self._pw is None or self._pw[0].numel() < n:
            p, pinv = _powers(max(n, 1 << 16))
            self._pw = (
                self.torch.from_numpy(p.view(np.int64).copy()).to(self.dev),
                self.torch.from_numpy(pinv.view(np.int64).copy()).to(self.dev),
            )
        return self._pw

    def _tokens(self, data: Any, off: Any) -> tuple[Any, Any]:
        """Token hashes and per-document token offsets (minhash.tokenize_bytes)."""
        torch = self.torch
        n = data.numel()
        idx = data.long()
        tok = ~self.sep[idx]
        nonempty = torch.nonzero(off[1:] > off[:-1]).flatten()
        first = torch.zeros(n, dtype=torch.bool, device=self.dev)
        first[off[nonempty]] = True
        last = torch.zeros(n, dtype=torch.bool, device=self.dev)
        last[off[nonempty + 1] - 1] = True
        prev = torch.zeros(n, dtype=torch.bool, device=self.dev)
        prev[1:] = tok[:-1]
        nxt = torch.zeros(n, dtype=torch.bool, device=self.dev)
        nxt[:-1] = tok[1:]
        starts = torch.nonzero(tok & (~prev | first)).flatten()
        ends = torch.nonzero(tok & (~nxt | last)).flatten() + 1
        doc_off = torch.searchsorted(starts, off)
        if starts.numel() == 0:
            return starts, doc_off
        p, pinv = self._powers(n + 1)
        pref = torch.zeros(n + 1, dtype=torch.int64, device=self.dev)
        torch.cumsum(self.lower[idx] * p[:n], 0, out=pref[1:])
        h = (pref[ends] - pref[starts]) * pinv[starts]
        h = h ^ ((ends - starts) * _s64(LEN_MIX))
        return self._mix(h), doc_off

    def _shingles(self, tok: Any, doc_off: Any) -> tuple[Any, Any, Any]:
        """Word n-gram hashes per document, in text order (minhash.shingles; repeats do not change a min)."""
        torch = self.torch
        n = self.ngram
        counts = doc_off[1:] - doc_off[:-1]
        nsh = torch.where(counts >= n, counts - n + 1, torch.clamp(counts, max=1))
        sh_off = torch.zeros(len(counts) + 1, dtype=torch.int64, device=self.dev)
        torch.cumsum(nsh, 0, out=sh_off[1:])
        total = int(sh_off[-1])
        if total == 0:
            return torch.zeros(0, dtype=torch.int64, device=self.dev), sh_off, nsh
        doc_of = torch.repeat_interleave(torch.arange(len(counts), device=self.dev), nsh)
        starts = doc_off[doc_of] + (torch.arange(total, device=self.dev) - sh_off[doc_of])
        ends = doc_off[doc_of + 1]
        acc = torch.zeros(total, dtype=torch.int64, device=self.dev)
        top = tok.numel() - 1
        for k in range(n):
            i = starts + k
            vals = torch.where(i < ends, tok[torch.clamp(i, max=top)], 0)
            acc += vals * self.comb[k]
        return self._mix(acc), sh_off, nsh

    def _minhash(self, sh: Any, sh_off: Any, nsh: Any, ndocs: int) -> Any:
        """Per-document minimum of (a·x + b) ^ 2^63 over its shingles, in groups of similar shingle counts."""
        torch = self.torch
        sign = _s64(int(_SIGN))
        sig = torch.full((ndocs, self.k), torch.iinfo(torch.int64).max, dtype=torch.int64, device=self.dev)
        counts = nsh.cpu().numpy()
        order = np.argsort(counts, kind="stable")
        order = order[counts[order] > 0]
        i = 0
        while i < len(order):
            # documents sorted by count: a group's widest row is its last; grow while the block fits
            width = int(counts[order[i]])
            rows = max(1, self.cells // (width * self.k))
            j = min(i + rows, len(order))
            while int(counts[order[j - 1]]) * (j - i) * self.k > self.cells and j > i + 1:
                j = i + max(1, (j - i) // 2)
            g = torch.from_numpy(order[i:j]).to(self.dev)
            width = int(counts[order[j - 1]])
            cols = torch.arange(width, device=self.dev)
            pos = sh_off[g][:, None] + torch.minimum(cols[None, :], nsh[g][:, None] - 1)
            v = sh[pos][:, :, None] * self.a
            v += self.b
            v ^= sign
            sig[g] = v.amin(dim=1)
            i = j
        return sig


def minhash_gpu(
    sh: np.ndarray,
    sh_off: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    device: str = "cuda",
    chunk: int = 1 << 20,
) -> np.ndarray:
    """Signatures of given shingle hashes on the device (the signature step only; torch, else CuPy)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return _minhash_cupy(sh, sh_off, a, b, chunk)
    return _minhash_torch(sh, sh_off, a, b, device, chunk)


def _minhash_torch(sh, sh_off, a, b, device, chunk):
    import torch

    m = TorchMinHash(a, b, device=device)
    x = torch.from_numpy(sh.view(np.int64).copy()).to(m.dev)
    off = torch.from_numpy(np.asarray(sh_off, dtype=np.int64)).to(m.dev)
    sig = m._minhash(x, off, off[1:] - off[:-1], len(sh_off) - 1)
    return torch.bitwise_xor(sig, _s64(int(_SIGN))).cpu().numpy().view(np.uint64)


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
