"""`forgotten`: drop documents that an erasure request removed (`refinery forget`), and their near-copies.

Why: an erased document must not come back with the next crawl. `refinery forget` persists, under
`<state>/forgotten/`, only what recognises a document without holding it: the sha256 of its text and its MinHash
signature (`ForgottenSet`). A run or refresh whose state holds such a set runs this stage (added by the planner,
after `normalize`): a row whose text hashes to a forgotten hash, or whose signature agrees with a forgotten one on
at least `threshold` of its values (estimated Jaccard of word 5-grams), is dropped with reason `forgotten`. The
same matcher decides what `forget` removes and what `refinery verify --forgotten` checks, so the three agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from refinery.location import Location
from refinery.stage import FilterParams, Fraction, Stage, StageResult, register
from stages.dedup.minhash import band_keys, shingle_texts, signatures

FORGOTTEN = "forgotten"  # <state>/forgotten/: set-<request id>.parquet, requests/<request id>.json
NGRAM, BANDS, ROWS, SEED = 5, 14, 8, 1  # the signatures of fuzzy_dedup's defaults (112 values)
# Candidates are found with narrower bands than dedup's (37 bands of 3 values: a pair at Jaccard 0.5 shares one
# with probability 0.99, at 0.4 with 0.9), then judged by the share of agreeing signature values. Dedup's 14 × 8
# bands aim at 0.8 and would find a pair at 0.6 only one time in five.
CAND_BANDS, CAND_ROWS = 37, 3
DEFAULT_THRESHOLD = 0.5


def text_hashes(texts: Sequence[str | None]) -> list[str | None]:
    """sha256 of each UTF-8 text (null for null)."""
    return [hashlib.sha256(t.encode()).hexdigest() if t is not None else None for t in texts]


def minhashes(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(signatures [n, BANDS*ROWS] uint64, has-shingles mask) of texts, as fuzzy_dedup computes them."""
    sb = shingle_texts(pc.fill_null(texts, ""), NGRAM)
    return signatures(sb, BANDS, ROWS, SEED), np.diff(sb.offsets) > 0


@dataclass
class ForgottenSet:
    """Text hashes and MinHash signatures of forgotten documents; `match` finds them and their near-copies."""

    hashes: set[str] = field(default_factory=set)
    sigs: np.ndarray = field(default_factory=lambda: np.zeros((0, BANDS * ROWS), np.uint64))
    threshold: float = DEFAULT_THRESHOLD
    _bands: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        self._bands = {}
        if len(self.sigs):
            for i, row in enumerate(band_keys(self.sigs, CAND_BANDS, CAND_ROWS)):
                for k in row.tolist():
                    self._bands.setdefault(k, []).append(i)

    def add(self, hashes: Sequence[str], sigs: np.ndarray) -> None:
        self.hashes.update(hashes)
        if len(sigs):
            self.sigs = np.concatenate([self.sigs, sigs.astype(np.uint64)])
            self._index()

    def __len__(self) -> int:
        return len(self.hashes)

    def match(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Per text: True if it is forgotten or a near-copy of a forgotten document."""
        n = len(texts)
        out = np.zeros(n, dtype=bool)
        if not self.hashes and not len(self.sigs):
            return out
        out |= np.array([h in self.hashes for h in text_hashes(pc.fill_null(texts, "").to_pylist())], bool)
        if not len(self.sigs):
            return out
        sigs, has = minhashes(texts)
        keys = band_keys(sigs, CAND_BANDS, CAND_ROWS)
        cand = np.isin(keys, np.fromiter(self._bands, np.uint64, len(self._bands))).any(axis=1) & has & ~out
        for i in np.flatnonzero(cand).tolist():
            targets = {t for k in keys[i].tolist() for t in self._bands.get(k, ())}
            agree = (self.sigs[sorted(targets)] == sigs[i]).mean(axis=1)
            out[i] = bool((agree >= self.threshold).any())
        return out


def set_table(hashes: Sequence[str], sigs: np.ndarray) -> pa.Table:
    """The persisted form: one row per forgotten document, its text hash and signature (no text)."""
    flat = pa.array(sigs.astype(np.uint64).reshape(-1), pa.uint64())
    return pa.table(
        {
            "sha256": pa.array(list(hashes), pa.string()),
            "minhash": pa.FixedSizeListArray.from_arrays(flat, BANDS * ROWS),
        }
    )


def load_forgotten(state: Location, threshold: float = DEFAULT_THRESHOLD) -> ForgottenSet:
    """Every persisted set under `<state>/forgotten/` (written whole by `refinery forget` once its request is
    applied)."""
    fs = ForgottenSet(threshold=threshold)
    folder = state.join(FORGOTTEN)
    if not folder.exists():
        return fs
    for f in sorted(folder.find(".parquet"), key=lambda x: x.path):
        if not f.name.startswith("set-"):
            continue
        with f.open("rb") as fh:
            t = pq.read_table(fh)
        sigs = np.asarray(t["minhash"].combine_chunks().flatten().to_numpy(), np.uint64).reshape(
            -1, BANDS * ROWS
        )
        fs.add([h for h in t["sha256"].to_pylist() if h], sigs)
    return fs


class ForgottenParams(FilterParams):
    state_uri: str  # the run's state folder (set by the planner, never by a config)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    threshold: Fraction = Field(default=DEFAULT_THRESHOLD)


@register
class Forgotten(Stage[ForgottenParams]):
    name = "forgotten"

    def setup(self) -> None:
        state = Location(self.params.state_uri, self.params.storage_options)
        self._set = load_forgotten(state, self.params.threshold)

    def process(self, batch: pa.Table) -> StageResult:
        if not hasattr(self, "_set"):
            self.setup()
        hit = self._set.match(batch["text"])
        if not hit.any():
            return batch, None
        return batch, pa.array(["forgotten" if h else None for h in hit.tolist()], pa.string())
