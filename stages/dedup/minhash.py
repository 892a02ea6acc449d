"""Pure, Ray-free MinHash-LSH building blocks: tokens, shingles, signatures, band keys, exact Jaccard.

Everything is vectorized numpy over whole Arrow batches (no per-token Python), and every step is defined so the
GPU path (`minhash_gpu.py`) can reproduce it bit for bit:

* **Normalization** (`normalize_for_shingles`): Unicode NFKC, lower case, every run of characters that are not
  letters or digits (punctuation, symbols, whitespace) becomes one space.
* **Tokens**: the space-separated words of the normalized text. A token's 64-bit hash is a polynomial hash of its
  UTF-8 bytes mod 2^64 (odd base), mixed with its length and finalized with splitmix64.
* **Shingles**: word n-grams (default 5) of consecutive tokens; a shingle hash is splitmix64 of a fixed linear
  combination (mod 2^64) of its token hashes. A document with fewer than n tokens has one shingle of all its
  tokens; an empty document has none (it never matches anything).
* **MinHash**: K = bands × rows permutations h_k(x) = (a_k·x + b_k) mod 2^64 with odd a_k, drawn from
  numpy's PCG64 with a fixed seed; signature_k = min over the document's shingles (unsigned compare).
* **Bands**: band j's key is splitmix64 of a linear combination of its `rows` signature values and j, so equal
  keys mean "same band, same values" (up to 2^-64 collisions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

M64 = (1 << 64) - 1
_U = np.uint64
# Constants for the polynomial token hash and the shingle/band combinations (arbitrary odd 64-bit numbers).
TOKEN_BASE = 0x100000001B3 | 1
LEN_MIX = 0x9E3779B97F4A7C15
COMBINE = (
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x27D4EB2F165667C5,
    0x85EBCA77C2B2AE63,
    0xFF51AFD7ED558CCD,
    0xC4CEB9FE1A85EC53,
    0x9FB21C651E98DF25,
    0xD6E8FEB86659FD93,
)
BAND_MIX = 0xA0761D6478BD642F
_CHUNK_BYTES = 1 << 20


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on a uint64 array (wrapping arithmetic)."""
    x = x.astype(_U, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> _U(30)
        x *= _U(0xBF58476D1CE4E5B9)
        x ^= x >> _U(27)
        x *= _U(0x94D049BB133111EB)
        x ^= x >> _U(31)
    return x


def combine_constant(k: int) -> int:
    """The k-th odd multiplier used to combine several 64-bit hashes into one (stable for any k)."""
    if k < len(COMBINE):
        return COMBINE[k]
    return int(splitmix64(np.array([k * LEN_MIX & M64], dtype=_U))[0]) | 1


def normalize_for_shingles(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC + lower case + every run of non-alphanumerics → one space (nulls become empty strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pc.fill_null(text, "")
    t = pc.utf8_normalize(t, "NFKC")
    t = pc.utf8_lower(t)
    t = pc.utf8_trim_whitespace(pc.replace_substring_regex(t, r"[^\p{L}\p{N}]+", " "))
    if isinstance(t, pa.ChunkedArray):
        t = t.combine_chunks()
    return t


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 data, int64 offsets with len+1 entries) of a string array, honouring slices."""
    import pyarrow as pa

    arr = arr.cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1 + arr.offset)[arr.offset :]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return data, offsets.astype(np.int64)


_POW_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Q^i and Q^-i mod 2^64 for i < n (Q odd, so it is invertible mod 2^64)."""
    size = 1 << max(10, int(n - 1).bit_length())
    if size not in _POW_CACHE:
        q = np.full(size, TOKEN_BASE, dtype=_U)
        q[0] = 1
        qinv = np.full(size, pow(TOKEN_BASE, -1, 1 << 64), dtype=_U)
        qinv[0] = 1
        with np.errstate(over="ignore"):
            _POW_CACHE.clear()
            _POW_CACHE[size] = (np.cumprod(q, dtype=_U), np.cumprod(qinv, dtype=_U))
    p, pinv = _POW_CACHE[size]
    return p[:n], pinv[:n]


def hash_spans(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte span data[starts[i]:ends[i]] (spans sorted, non-overlapping), vectorized."""
    out = np.empty(len(starts), dtype=_U)
    if len(starts) == 0:
        return out
    i = 0
    while i < len(starts):
        c0 = int(starts[i])
        # take whole spans until the chunk is full (at least one span)
        j = int(np.searchsorted(ends, c0 + _CHUNK_BYTES, side="right"))
        j = max(j, i + 1)
        c1 = int(ends[j - 1])
        seg = data[c0:c1].astype(_U)
        p, pinv = _powers(len(seg) + 1)
        with np.errstate(over="ignore"):
            pref = np.zeros(len(seg) + 1, dtype=_U)
            np.cumsum(seg * p[: len(seg)], dtype=_U, out=pref[1:])
            s = starts[i:j] - c0
            e = ends[i:j] - c0
            h = (pref[e] - pref[s]) * pinv[s]
            h ^= (e - s).astype(_U) * _U(LEN_MIX)
        out[i:j] = h
        i = j
    return splitmix64(out)


def hash_strings(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Vectorized 64-bit hash of each string (nulls hash like the empty string). Used for partitioning."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.fill_null(arr, "")
    data, offsets = _string_parts(arr)
    return hash_spans(data, offsets[:-1], offsets[1:])


def tokenize(norm: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes of normalized texts and per-document token offsets (len(norm)+1)."""
    return tokenize_bytes(*_string_parts(norm))


# ASCII bytes that separate tokens (everything but ASCII letters and digits); bytes >= 0x80 belong to tokens
SEPARATOR = np.ones(256, dtype=bool)
SEPARATOR[48:58] = SEPARATOR[65:91] = SEPARATOR[97:123] = False
SEPARATOR[128:] = False
LOWER = np.arange(256, dtype=np.uint8)
LOWER[65:91] += 32


def token_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, per-document token offsets) of the tokens of UTF-8 texts `data` cut at `offsets`.

    A token is a maximal run of non-separator bytes inside one document. On a normalized text (the only ASCII
    byte between words is a space) these are its space-separated words; on a pure-ASCII text they are the words
    of its normalization, since NFKC leaves ASCII alone and lower-casing is done by `LOWER` when hashing."""
    n = len(data)
    tok = ~SEPARATOR[data]
    nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
    first = np.zeros(n, dtype=bool)
    first[offsets[nonempty]] = True
    last = np.zeros(n, dtype=bool)
    last[offsets[nonempty + 1] - 1] = True
    prev = np.zeros(n, dtype=bool)
    prev[1:] = tok[:-1]
    nxt = np.zeros(n, dtype=bool)
    nxt[:-1] = tok[1:]
    starts = np.flatnonzero(tok & (~prev | first))
    ends = np.flatnonzero(tok & (~nxt | last)) + 1
    return starts, ends, np.searchsorted(starts, offsets).astype(np.int64)


def tokenize_bytes(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes (of lower-cased bytes) and per-document token offsets; see `token_spans`. Pure numpy, the
    reference the GPU path (minhash_gpu.py) reproduces."""
    starts, ends, doc_off = token_spans(data, offsets)
    return hash_spans(LOWER[data], starts, ends), doc_off


def prepare_texts(text: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and offsets that `tokenize_bytes` turns into the tokens of the normalized texts: pure-ASCII
    texts as they are (no copy through the regex: most web text is ASCII), the others normalized."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pc.fill_null(text, "")
    if isinstance(t, pa.ChunkedArray):
        t = t.combine_chunks()
    other = pc.invert(pc.string_is_ascii(t))
    if pc.any(other).as_py():
        t = pc.replace_with_mask(t, other, normalize_for_shingles(t.filter(other)).cast(t.type))
    return _string_parts(t)


def shingles(tok: np.ndarray, doc_off: np.ndarray, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of word n-grams per document and per-document shingle offsets (documents keep their order)."""
    ndocs = len(doc_off) - 1
    counts = np.diff(doc_off)
    n_sh = np.where(counts >= n, counts - n + 1, np.minimum(counts, 1))
    sh_off = np.zeros(ndocs + 1, dtype=np.int64)
    np.cumsum(n_sh, out=sh_off[1:])
    total = int(sh_off[-1])
    if total == 0:
        return np.zeros(0, dtype=_U), sh_off
    doc_of = np.repeat(np.arange(ndocs), n_sh)
    starts = doc_off[doc_of] + (np.arange(total) - sh_off[doc_of])
    ends = doc_off[doc_of + 1]
    acc = np.zeros(total, dtype=_U)
    with np.errstate(over="ignore"):
        for k in range(n):
            idx = starts + k
            ok = idx < ends
            vals = np.where(ok, tok[np.minimum(idx, len(tok) - 1)], _U(0))
            acc += vals * _U(combine_constant(k))
    return splitmix64(acc), sh_off


def unique_per_doc(sh: np.ndarray, sh_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct shingle hashes of each document (the sets exact Jaccard is computed on)."""
    ndocs = len(sh_off) - 1
    if len(sh) == 0:
        return sh, np.zeros(ndocs + 1, dtype=np.int64)
    doc_of = np.repeat(np.arange(ndocs, dtype=np.int32), np.diff(sh_off))
    # two stable passes (values, then document: a radix sort on small ints) beat a two-key lexsort
    order = np.argsort(sh, kind="stable")
    order = order[np.argsort(doc_of[order], kind="stable")]
    s = sh[order]
    d = doc_of[order]
    keep = np.ones(len(s), dtype=bool)
    keep[1:] = (s[1:] != s[:-1]) | (d[1:] != d[:-1])
    s, d = s[keep], d[keep]
    off = np.zeros(ndocs + 1, dtype=np.int64)
    np.cumsum(np.bincount(d, minlength=ndocs), out=off[1:])
    return s, off


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The hash family: odd multipliers a and offsets b, from numpy's PCG64 with a fixed seed."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(0, 1 << 64, size=num_perm, dtype=_U, endpoint=False) | _U(1)
    b = rng.integers(0, 1 << 64, size=num_perm, dtype=_U, endpoint=False)
    return a, b


def minhash_cpu(
    sh: np.ndarray, sh_off: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 1 << 15
) -> np.ndarray:
    """uint64[docs, K] signatures; documents without shingles get all-ones rows (never banded).

    Laid out permutation-major (K × shingles) so the per-document min is a contiguous `reduceat`.
    """
    ndocs = len(sh_off) - 1
    k = len(a)
    sig = np.full((ndocs, k), M64, dtype=_U)
    nonempty = np.flatnonzero(np.diff(sh_off) > 0)
    ends = sh_off[nonempty + 1]
    i = 0
    while i < len(nonempty):
        d0 = nonempty[i]
        j = int(np.searchsorted(ends, sh_off[d0] + chunk, side="right"))
        j = max(j, i + 1)
        docs = nonempty[i:j]
        s0, s1 = int(sh_off[docs[0]]), int(sh_off[docs[-1] + 1])
        v = np.multiply(a[:, None], sh[None, s0:s1])
        v += b[:, None]
        sig[docs] = np.minimum.reduceat(v, sh_off[docs] - s0, axis=1).T
        i = j
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64[docs, bands]: one key per band (band index mixed in, so bands never collide with each other)."""
    n = sig.shape[0]
    out = np.zeros((n, bands), dtype=_U)
    with np.errstate(over="ignore"):
        for j in range(bands):
            acc = np.full(n, _U((j + 1) * BAND_MIX & M64))
            for r in range(rows):
                acc += sig[:, j * rows + r] * _U(combine_constant(r))
            out[:, j] = splitmix64(acc)
    return out


def jaccard_sorted(x: np.ndarray, y: np.ndarray) -> float:
    """Exact Jaccard of two sorted arrays of distinct values."""
    if len(x) == 0 and len(y) == 0:
        return 1.0
    inter = len(np.intersect1d(x, y, assume_unique=True))
    return inter / (len(x) + len(y) - inter)


def s_curve(j: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Probability that two documents with Jaccard j share at least one band: 1 - (1 - j^r)^b."""
    return 1.0 - (1.0 - np.asarray(j, dtype=float) ** rows) ** bands


def implied_threshold(bands: int, rows: int) -> float:
    """The usual LSH threshold estimate (1/b)^(1/r): where the S-curve is steepest."""
    return (1.0 / bands) ** (1.0 / rows)


@dataclass
class ShingledBatch:
    """Per-document distinct shingles of a batch (flat values + offsets)."""

    values: np.ndarray
    offsets: np.ndarray

    def doc(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]


def shingle_texts(text: pa.Array | pa.ChunkedArray, n: int = 5, distinct: bool = True) -> ShingledBatch:
    """Normalize, tokenize and shingle a batch of texts; returns distinct sorted shingles per document, or with
    `distinct=False` every shingle in text order (enough for signatures: a minimum ignores repeats)."""

    tok, doc_off = tokenize_bytes(*prepare_texts(text))
    sh, sh_off = shingles(tok, doc_off, n)
    if not distinct:
        return ShingledBatch(sh, sh_off)
    u, u_off = unique_per_doc(sh, sh_off)
    return ShingledBatch(u, u_off)


def signatures(
    batch: ShingledBatch, bands: int = 14, rows: int = 8, seed: int = 1, device: str = "cpu"
) -> np.ndarray:
    """MinHash signatures of a shingled batch on the CPU or (device='cuda') the GPU; bit-identical results."""
    a, b = permutations(bands * rows, seed)
    if device == "cuda":
        from stages.dedup.minhash_gpu import minhash_gpu

        return minhash_gpu(batch.values, batch.offsets, a, b)
    return minhash_cpu(batch.values, batch.offsets, a, b)


def gpu_available() -> bool:
    """True when torch (or CuPy) can see a CUDA device; never raises, never imports them eagerly elsewhere."""
    try:
        import torch  # noqa: F401

        return bool(torch.cuda.is_available())
    except Exception:
        pass
    try:
        import cupy  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
