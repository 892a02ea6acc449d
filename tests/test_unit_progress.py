"""A unit's saved batches (jobs/ray_backend/unit_progress.py), without Ray: what a next attempt replays, what it
refuses, and that kept batches stay bounded in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.ray_backend import unit_progress
from jobs.ray_backend.unit_progress import UnitProgress
from refinery.location import Location

FIX = Path(__file__).parent / "fixtures" / "foundation"


class Clock:
    """Time that passes only when a test says so: each batch 'takes' a second of work."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(unit_progress, "time", c)
    return c


def batches(n: int, rows: int = 5) -> list[pa.Table]:
    """Real documents in batches, each with its own schema (a dropped row's batch has more columns)."""
    docs = [json.loads(line) for line in (FIX / "docs_a.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for i in range(n):
        part = docs[i * rows : (i + 1) * rows]
        cols = {"id": [str(d.get("id")) for d in part], "text": [d["text"] for d in part]}
        if i % 2:
            cols["_drop"] = [None] * (rows - 1) + ["length_filter:too_short"]
        out.append(pa.table(cols))
    return out


def attempt(folder: Path, every_s: float = 0.0) -> tuple[UnitProgress, list, dict]:
    """A new attempt at the unit: what it replays (batch, sizes) and the stage seconds it carries over."""
    progress = UnitProgress(Location(str(folder)), "digest-1", every_s)
    got: list = []
    seconds: dict[str, float] = {}
    progress.replay(lambda b, sizes: got.append((b, sizes)), seconds)
    return progress, got, seconds


def test_saved_batches_come_back_in_order_with_their_sizes_and_stage_time(tmp_path, clock):
    work = batches(6)
    first, got, _ = attempt(tmp_path)
    assert got == [] and first.done == 0
    seconds = {"langid": 0.0, "(read)": 0.0}
    for k, b in enumerate(work[:4]):  # a save after every batch (every_s 0), then the worker dies
        clock.now += 1
        seconds["langid"] += 0.5
        first.add(b, (1000 + k, 7 * k), seconds)
    again, got, carried = attempt(tmp_path)
    assert again.done == 4
    assert [b.to_pylist() for b, _ in got] == [b.to_pylist() for b in work[:4]]
    assert [b.schema for b, _ in got] == [b.schema for b in work[:4]]
    assert [s for _, s in got] == [(1000 + k, 7 * k) for k in range(4)]
    assert carried == {"langid": pytest.approx(2.0)}  # stage time only: reading is spent again
    clock.now += 1
    again.add(work[4], (1, 1), {"langid": 2.5})
    assert [s["start"] for s in map(json.loads, map(Path.read_text, sorted(tmp_path.glob("*.json"))))] == [
        0, 1, 2, 3, 4,
    ]  # fmt: skip
    again.clear()
    assert not tmp_path.exists()


def test_a_damaged_missing_or_foreign_segment_ends_what_is_replayed(tmp_path, clock):
    first, _, _ = attempt(tmp_path)
    for k, b in enumerate(batches(4)):
        clock.now += 1
        first.add(b, (k, 0), {})
    seg = tmp_path / "000002.arrows"
    seg.write_bytes(seg.read_bytes()[:-3])
    _, got, _ = attempt(tmp_path)
    assert len(got) == 2  # the third is damaged, and the fourth cannot be used without it
    (tmp_path / "000001.json").unlink()
    again, got, _ = attempt(tmp_path)
    assert len(got) == 1 and again.done == 1
    other = UnitProgress(Location(str(tmp_path)), "digest-of-other-work", 0.0)
    assert other.replay(lambda b, s: pytest.fail("replayed another unit's work"), {}) == 0


def test_kept_batches_are_saved_early_or_dropped_when_they_outgrow_memory(tmp_path, monkeypatch, clock):
    monkeypatch.setattr(unit_progress, "MAX_PENDING_BYTES", 10_000)
    work = batches(5)
    saved = tmp_path / "a"
    progress = UnitProgress(Location(str(saved)), "digest-1", every_s=3600.0)
    clock.now += 1
    progress.add(work[0], (6_000, 0), {})
    assert not list(saved.glob("*.json"))  # under the bound and not yet time: kept
    clock.now += 1
    progress.add(work[1], (6_000, 0), {})
    assert len(list(saved.glob("*.json"))) == 1  # past the bound: saved before it is time
    # The next save would cost more than 5% of the work since this one (it took 1 s against 1 s of work): past
    # the bound again, the unit stops saving, and drops what it kept, since a later segment would need it
    monkeypatch.setattr(
        unit_progress, "_encode", lambda b, real=unit_progress._encode: clock_tick(clock, real(b))
    )
    clock.now += 1
    progress.add(work[2], (20_000, 0), {})
    assert len(list(saved.glob("*.json"))) == 2 and not progress.off
    clock.now += 1
    progress.add(work[3], (20_000, 0), {})
    assert progress.off and progress._pending == []
    clock.now += 100
    progress.add(work[4], (1, 0), {})
    assert len(list(saved.glob("*.json"))) == 2
    _, got, _ = attempt(saved)
    assert [b.to_pylist() for b, _ in got] == [b.to_pylist() for b in work[:3]]


def clock_tick(clock: Clock, value: bytes) -> bytes:
    clock.now += 1.0  # a save that takes a second
    return value
