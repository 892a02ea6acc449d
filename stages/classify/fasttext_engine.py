"""fastText supervised inference without fastText: the model projected onto its labels, memory-mapped, batched.

Why: a fastText classifier's score is linear in the average of the input-matrix rows of a document's words and
word n-grams, before the softmax: `logits = O · mean(E[ids]) = mean((E · Oᵀ)[ids])`. So the input matrix E
(rows × dim, gigabytes for DCLM-size models) can be replaced, once per node, by its projection P = E · Oᵀ
(rows × labels: 2 floats a row for a binary classifier, 128× smaller at dim 256). P is written to the node's model
cache and memory-mapped by every actor, so a node holds one copy of it, not one model per actor, and scoring a
document reads 8 bytes per token instead of a kilobyte. Tokens are split, looked up and hashed for a whole batch at
once with Arrow and NumPy. The result equals fastText's `predict` (tests/test_classifiers.py checks it) up to
float rounding: fastText sums the rows in float32, we sum projected rows in float64.

What it reproduces of fastText 0.9.2's `predict` (src/dictionary.cc, src/loss.cc): tokens split on ASCII
whitespace and NUL; the end-of-line token `</s>` that `predict` appends; tokens starting with `__label__` left out;
FNV-1a word hashes (bytes sign-extended, as fastText's `int8_t` cast does), word n-gram ids
`h = h * 116049371 + hash[j]` over sign-extended 32-bit hashes, modulo `bucket`, after the vocabulary; softmax or
one-vs-all sigmoid; and the `+1e-5` fastText adds before its log (so a probability lies in [1e-5, 1.00001]).
Supported: dense (not quantized, not pruned) models without character n-grams (`maxn` 0, fastText's default for
supervised models) and softmax or one-vs-all loss. Anything else (a `.ftz`, `maxn > 0`, hierarchical softmax)
is run by the `fasttext` module instead (`FastTextModule`), with one copy of the model per actor.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAGIC = 793712314
EOS = "</s>"
LABEL_PREFIX = "__label__"
LOSS_NAMES = {1: "hs", 2: "ns", 3: "softmax", 4: "ova"}
_FNV32_OFFSET, _FNV32_PRIME = np.uint32(2166136261), np.uint32(16777619)
_FNV64_OFFSET, _FNV64_PRIME = np.uint64(14695981039346656037), np.uint64(1099511628211)
_NGRAM_MIX = np.uint64(116049371)
_ARGS = ("dim", "ws", "epoch", "minCount", "neg", "wordNgrams", "loss", "model", "bucket", "minn", "maxn")


class Unsupported(ValueError):
    """The model needs fastText's own code (quantized, character n-grams, hierarchical softmax)."""


@dataclass
class Header:
    args: dict[str, Any]
    words: list[bytes]  # vocabulary words, then labels (fastText's order)
    nwords: int
    nlabels: int
    pruned: bool
    quantized: bool
    input_offset: int  # byte offset of the input matrix data
    rows: int
    dim: int
    output: np.ndarray | None  # labels × dim (dense output only)

    @property
    def labels(self) -> list[str]:
        return [w.decode("utf-8", "replace").removeprefix(LABEL_PREFIX) for w in self.words[self.nwords :]]


def read_header(path: str | Path) -> Header:
    """Parse a fastText .bin: arguments, dictionary, where the input matrix lies, and the output matrix."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        magic, version = struct.unpack_from("<ii", mm, 0)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a fastText model (bad magic number)")
        vals = struct.unpack_from("<12id", mm, 8)
        args = dict(zip(_ARGS, vals[:11], strict=True))
        args["loss_name"] = LOSS_NAMES.get(args["loss"], str(args["loss"]))
        pos = 8 + 12 * 4 + 8
        size, nwords, nlabels, _ntokens, prune = struct.unpack_from("<iiiqq", mm, pos)
        pos += 4 * 3 + 8 * 2
        words = []
        for _ in range(size):
            end = mm.find(b"\0", pos)
            words.append(mm[pos:end])
            pos = end + 1 + 8 + 1  # NUL, int64 count, int8 type
        pos += max(prune, 0) * 8
        quant = bool(mm[pos])
        pos += 1
        if quant:
            return Header(args, words, nwords, nlabels, prune >= 0, True, -1, 0, args["dim"], None)
        rows, dim = struct.unpack_from("<qq", mm, pos)
        pos += 16
        input_offset = pos
        pos += rows * dim * 4
        qout = bool(mm[pos])
        output = None
        if not qout:
            orows, odim = struct.unpack_from("<qq", mm, pos + 1)
            output = np.frombuffer(mm, np.float32, orows * odim, pos + 17).reshape(orows, odim).copy()
    return Header(args, words, nwords, nlabels, prune >= 0, False, input_offset, rows, dim, output)


def unsupported_reason(h: Header) -> str | None:
    if h.quantized:
        return "quantized model (.ftz)"
    if h.pruned:
        return "pruned dictionary"
    if h.args["maxn"] > 0:
        return f"character n-grams (maxn={h.args['maxn']})"
    if h.args["loss_name"] not in ("softmax", "ova"):
        return f"{h.args['loss_name']} loss"
    if h.output is None:
        return "quantized output matrix"
    return None


# ------------------------------------------------------------------------------------------------ hashing


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, int8 bytes) of a string/large_string array without copying the data."""
    arr = arr.cast(pa.large_string()) if arr.type == pa.string() else arr
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int64, len(arr) + 1, arr.offset * 8)
    data = np.frombuffer(bufs[2], np.int8) if bufs[2] is not None else np.zeros(0, np.int8)
    return offsets, data


def hash_strings(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(fastText's 32-bit FNV-1a with sign-extended bytes, a 64-bit FNV-1a key) of every string, vectorized:
    one NumPy step per byte position, over the strings at least that long (longest first)."""
    n = len(arr)
    h32 = np.full(n, _FNV32_OFFSET, np.uint32)
    h64 = np.full(n, _FNV64_OFFSET, np.uint64)
    if n == 0:
        return h32, h64
    offsets, data = _string_parts(arr)
    starts, lengths = offsets[:-1], np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    s_starts = starts[order]
    a32, a64 = h32[order], h64[order]
    # how many strings are longer than j, for each byte position j
    counts = np.searchsorted(-sorted_len, -np.arange(int(sorted_len[0]) if n else 0), side="left")
    with np.errstate(over="ignore"):
        for j, m in enumerate(counts.tolist()):
            b = data[s_starts[:m] + j]
            a32[:m] = (a32[:m] ^ b.astype(np.int32).astype(np.uint32)) * _FNV32_PRIME
            a64[:m] = (a64[:m] ^ b.astype(np.uint8).astype(np.uint64)) * _FNV64_PRIME
    h32[order], h64[order] = a32, a64
    return h32, h64


# ------------------------------------------------------------------------------------------------ projection


def build_projection(model_path: Path, folder: Path, chunk_rows: int = 65536) -> None:
    """Write the node-local files the projected engine memory-maps: proj.npy (rows × labels, float32), the
    vocabulary (vocab.arrow, keys.npy/ids.npy sorted by 64-bit key, hash32.npy) and meta.json. Reads the input
    matrix in chunks, so building it never holds the model in memory."""
    h = read_header(model_path)
    reason = unsupported_reason(h)
    if reason:
        raise Unsupported(reason)
    assert h.output is not None
    out = h.output.astype(np.float64)
    if h.args["loss_name"] == "softmax":
        # softmax ignores a shift of all logits: keep each label's logit minus the last one's (one column fewer,
        # half the memory for a binary classifier)
        out = out[:-1] - out[-1:]
    out_t = out.T.copy()  # dim × columns
    # one zero row at the end stands for "nothing" (an unknown word, an n-gram past the end of a document)
    proj = np.lib.format.open_memmap(folder / "proj.npy", "w+", np.float32, (h.rows + 1, out_t.shape[1]))
    proj[h.rows] = 0
    with open(model_path, "rb") as f:
        f.seek(h.input_offset)
        for start in range(0, h.rows, chunk_rows):
            n = min(chunk_rows, h.rows - start)
            block = np.fromfile(f, np.float32, n * h.dim).reshape(n, h.dim)
            proj[start : start + n] = block.astype(np.float64) @ out_t
    proj.flush()
    del proj
    vocab = pa.array([w.decode("utf-8", "surrogateescape") for w in h.words[: h.nwords]], pa.large_string())
    h32, h64 = hash_strings(vocab)
    keys, ids = hash_table(h64)
    np.save(folder / "table_keys.npy", keys)
    np.save(folder / "table_ids.npy", ids)
    with (
        pa.OSFile(str(folder / "vocab.arrow"), "wb") as sink,
        pa.ipc.new_file(sink, pa.schema([("w", pa.large_string())])) as w,
    ):
        w.write_table(pa.table({"w": vocab}))
    words = [w.decode("utf-8", "replace") for w in h.words[: h.nwords]]
    meta = {
        "args": h.args,
        "labels": h.labels,
        "nwords": h.nwords,
        "rows": h.rows,
        "dim": h.dim,
        "eos": words.index(EOS) if EOS in words else -1,
        "eos_hash": int(hash_strings(pa.array([EOS]))[0][0]),
    }
    (folder / "meta.json").write_text(json.dumps(meta))


def hash_table(h64: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An open-addressing table (linear probing, load ≤ 1/2) from 64-bit key to vocabulary id (-1: empty)."""
    if len(np.unique(h64)) != len(h64):
        raise Unsupported("two vocabulary words share a 64-bit key")
    size = 1 << max(4, int(2 * max(len(h64), 1) - 1).bit_length())
    mask = size - 1
    keys = np.zeros(size, np.uint64)
    ids = np.full(size, -1, np.int32)
    todo = np.arange(len(h64))
    slot = (h64 & np.uint64(mask)).astype(np.int64)
    while len(todo):
        free = ids[slot[todo]] < 0
        cand = todo[free]
        # one winner per free slot; the rest probe on
        _, first = np.unique(slot[cand], return_index=True)
        won = cand[first]
        keys[slot[won]] = h64[won]
        ids[slot[won]] = won
        todo = np.setdiff1d(todo, won, assume_unique=True)
        slot[todo] = (slot[todo] + 1) & mask
    return keys, ids


class ProjectedModel:
    """Scores batches of preprocessed texts with the memory-mapped projection (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        meta = json.loads((folder / "meta.json").read_text())
        self.labels: list[str] = meta["labels"]
        self.nwords: int = meta["nwords"]
        self.bucket: int = meta["args"]["bucket"]
        self.ngrams: int = meta["args"]["wordNgrams"]
        self.ova = meta["args"]["loss_name"] == "ova"
        self.eos, self.eos_hash = int(meta["eos"]), np.uint32(meta["eos_hash"])
        # memory-mapped: every actor on the node shares the page cache's one copy
        self.proj = np.asarray(np.load(folder / "proj.npy", mmap_mode="r"))  # rows + 1 (a zero row) × labels
        self.zero_row = len(self.proj) - 1
        self.table_keys = np.asarray(np.load(folder / "table_keys.npy", mmap_mode="r"))
        self.table_ids = np.asarray(np.load(folder / "table_ids.npy", mmap_mode="r"))
        self.vocab = pa.ipc.open_file(pa.memory_map(str(folder / "vocab.arrow"))).read_all()["w"]
        self.vocab = self.vocab.combine_chunks() if self.vocab.num_chunks != 1 else self.vocab.chunk(0)

    def _lookup(self, uniq: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(word id or -1, fastText hash) of each distinct token: open addressing on the 64-bit key, and a key
        match confirmed by comparing the text."""
        h32, h64 = hash_strings(uniq)
        n = len(uniq)
        wid = np.full(n, -1, np.int64)
        mask = np.uint64(len(self.table_keys) - 1)
        slot = (h64 & mask).astype(np.int64)
        todo = np.arange(n)
        while len(todo):
            k = self.table_keys[slot[todo]]
            found = k == h64[todo]
            wid[todo[found]] = self.table_ids[slot[todo[found]]]
            todo = todo[~found & (self.table_ids[slot[todo]] >= 0)]  # occupied by another key: probe on
            slot[todo] = (slot[todo] + 1) & int(mask)
        hit = np.nonzero(wid >= 0)[0]
        if len(hit):
            same = pc.equal(self.vocab.take(pa.array(wid[hit])), uniq.take(pa.array(hit)))
            wid[hit[~np.asarray(same.to_numpy(zero_copy_only=False), bool)]] = -1
        return wid, h32

    def predict(self, texts: pa.Array) -> np.ndarray:
        """Probabilities (documents × labels, float64) as fastText's predict(k=-1) reports them; NaN rows for
        documents fastText makes no prediction for (no known word and no n-gram)."""
        n = len(texts)
        tokens = pc.ascii_split_whitespace(pc.replace_substring(texts, "\x00", " "))  # NUL splits in fastText
        doc_len = np.asarray(pc.list_value_length(tokens).fill_null(0), np.int64)
        flat = pc.list_flatten(tokens)
        if len(flat):
            enc = flat.dictionary_encode()
            wid_u, h_u = self._lookup(enc.dictionary)
            codes = np.asarray(enc.indices, np.int64)
            # tokens spelled like labels count as nothing (fastText's getLine), nor do the empty strings Arrow's
            # split leaves for leading and trailing whitespace
            skip = np.asarray(pc.starts_with(enc.dictionary, LABEL_PREFIX), bool) | (
                np.asarray(pc.binary_length(enc.dictionary)) == 0
            )
            if skip.any():
                keep = ~skip[codes]
                owner = np.repeat(np.arange(n), doc_len)[keep]
                codes = codes[keep]
                doc_len = np.bincount(owner, minlength=n).astype(np.int64)
            wid_t, h_t = wid_u[codes], h_u[codes]
        else:
            wid_t, h_t = np.zeros(0, np.int64), np.zeros(0, np.uint32)
        # the sequence fastText scores: each document's tokens, then </s>
        seq_len = doc_len + 1
        total = int(seq_len.sum())
        ends = np.cumsum(seq_len) - 1
        tok_pos = np.ones(total, bool)
        tok_pos[ends] = False
        wid = np.empty(total, np.int64)
        wid[tok_pos], wid[ends] = wid_t, self.eos
        hs = np.empty(total, np.uint32)
        hs[tok_pos], hs[ends] = h_t, self.eos_hash
        zero = self.zero_row
        g = self.ngrams
        ids = np.empty((total, g), np.int64)
        ids[:, 0] = np.where(wid >= 0, wid, zero)
        if g > 1:
            h64 = hs.view(np.int32).astype(np.int64).view(np.uint64)
            h = h64
            dist_to_end = np.repeat(ends, seq_len) - np.arange(total)  # tokens after this one in its document
            with np.errstate(over="ignore"):
                for k in range(1, g):
                    h = h[:-1] * _NGRAM_MIX + h64[k:]
                    col = (h % np.uint64(self.bucket)).astype(np.int64) + self.nwords
                    ids[: total - k, k] = np.where(dist_to_end[: total - k] >= k, col, zero)
                    ids[total - k :, k] = zero
        cols = self.proj.shape[1]
        rows = self.proj[ids.ravel()]
        starts = (np.cumsum(seq_len) - seq_len) * g
        sums = np.add.reduceat(rows, starts, axis=0, dtype=np.float64) if cols else np.zeros((n, 0))
        counts = np.bincount(np.repeat(np.arange(n), seq_len), weights=wid >= 0, minlength=n)
        for k in range(1, g):
            counts += np.maximum(seq_len - k, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            logits = sums / counts[:, None]
            if self.ova:
                p = ova_sigmoid(logits)
            else:  # the last label's logit is 0 (see build_projection)
                logits = np.concatenate([logits, np.zeros((n, 1))], axis=1)
                z = np.exp(logits - logits.max(axis=1, keepdims=True))
                p = z / z.sum(axis=1, keepdims=True)
        p = p + 1e-5
        p[counts == 0] = np.nan
        return p


def ova_sigmoid(x: np.ndarray) -> np.ndarray:
    """fastText's table sigmoid (512 steps over [-8, 8]), which its one-vs-all loss uses when predicting."""
    size, limit = 512, 8
    table = (1.0 / (1.0 + np.exp(-((np.arange(size + 1) * 2.0 * limit) / size - limit)))).astype(np.float32)
    x32 = x.astype(np.float32)
    idx = ((x32 + np.float32(limit)) * np.float32(size) / np.float32(limit) / np.float32(2)).astype(np.int64)
    out = table[np.clip(idx, 0, size)].astype(np.float64)
    out[x32 < -limit] = 0.0
    out[x32 > limit] = 1.0
    return out


class FastTextModule:
    """The `fasttext` module's own predict, for models the projected engine does not support."""

    def __init__(self, path: Path) -> None:
        import fasttext

        self.model = fasttext.load_model(str(path))
        raw = list(self.model.get_labels())
        self.labels = [x.removeprefix(LABEL_PREFIX) for x in raw]
        self._index = {x: i for i, x in enumerate(raw)}

    def predict(self, texts: pa.Array) -> np.ndarray:
        py = texts.to_pylist()
        out = np.full((len(py), len(self.labels)), np.nan)
        if not py:
            return out
        labels, probs = self.model.predict([t or "" for t in py], k=-1)
        for i, (ls, ps) in enumerate(zip(labels, probs, strict=True)):
            for lab, p in zip(ls, ps, strict=True):
                out[i, self._index[lab]] = p
        return out
