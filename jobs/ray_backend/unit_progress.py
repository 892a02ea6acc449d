"""Progress inside a unit of work, so that a killed (or retried) unit does not do again what it already did.

A unit can run for many minutes: a 128 MiB byte range through NER is about 25 minutes of one core. Every
`ray.checkpoint_seconds` its runner saves the stage batches it has handed to its PartSink since the last save, as
one segment under `_work/<run>/progress/<step>/<unit>/`: an Arrow IPC file, then a JSON record naming it with its
size and sha256, the range of stage batches it covers and the sizes the sink measured for them. When the unit
runs again, the valid segments are replayed into a fresh sink in the same order with the same sizes and their
batches are not computed again: the sink sees exactly what it would have seen, so the unit's parts come out byte
for byte the same (parts are written from contiguous buffers, so how Arrow chunked the rows does not matter).
Segments are removed once the unit's completion record is written.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from refinery.location import Location

MAX_WRITE_SHARE = 0.05  # a save waits until the work since the last one is 20x what the last save took
MAX_PENDING_BYTES = 256 << 20  # in-memory bytes of finished batches kept for the next save
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")
_LEN = struct.Struct("<Q")

# What the sink counted of a batch: in-memory bytes of its live rows, of its dead rows
Sizes = tuple[int, int]


@dataclass
class Segment:
    batches: list[pa.Table]
    sizes: list[Sizes]
    seconds: dict[str, float]  # stage time spent on these batches when they were computed


class UnitProgress:
    """The saved segments of one unit: `replay` them, `add` each new batch (saved when it is time), `clear` at the
    end."""

    def __init__(self, folder: Location, unit_sha256: str, every_s: float):
        self.folder = folder
        self.unit_sha256 = unit_sha256
        self.every_s = every_s
        self.done = 0  # stage batches of the unit covered by saved segments
        self.touched = False  # segments exist (loaded or saved): clear() has something to remove
        self._seq = 0
        self.off = False  # stopped saving (see add)
        self._pending: list[pa.Table] = []
        self._sizes: list[Sizes] = []
        self._bytes = 0
        self._since = time.monotonic()
        self._last_write_s = 0.0
        self._base: dict[str, float] = {}

    def replay(self, add: Callable[[pa.Table, Sizes], object], seconds: dict[str, float]) -> int:
        """Hand the trusted segments' batches to `add` in their order and count the stage time they took into
        `seconds`; returns how many stage batches of the unit are done. Trusted are the segments of this very
        work whose file is intact, up to the first that is missing, damaged or does not follow on (a later one
        cannot be used without it)."""
        for name in self.folder.names():
            if not name.endswith(".json"):
                continue
            self.touched = True
            seg = self._read(name)
            if seg is None:
                break
            for batch, sizes in zip(seg.batches, seg.sizes, strict=True):
                add(batch, sizes)
            for k, v in seg.seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
        self._base = dict(seconds)
        self._since = time.monotonic()
        return self.done

    def _read(self, name: str) -> Segment | None:
        rec = self.folder.join(name).read_json_or_none()
        if not (
            isinstance(rec, dict)
            and rec.get("unit_sha256") == self.unit_sha256
            and rec.get("seq") == self._seq
            and rec.get("start") == self.done
            and name == f"{self._seq:06d}.json"
        ):
            return None
        try:
            data = self.folder.join(rec["file"]).read_bytes()
        except (FileNotFoundError, OSError):
            return None
        if len(data) != rec["bytes"] or hashlib.sha256(data).hexdigest() != rec["sha256"]:
            return None
        batches = _decode(data)
        sizes = [(int(a), int(d)) for a, d in rec["sizes"]]
        if len(batches) != len(sizes) or rec["end"] - rec["start"] != len(sizes):
            return None
        self._seq += 1
        self.done = int(rec["end"])
        return Segment(batches, sizes, {k: float(v) for k, v in rec.get("seconds", {}).items()})

    def add(self, batch: pa.Table, sizes: Sizes, seconds: dict[str, float]) -> None:
        """Keep a batch the unit has finished, and save what is kept when it is time; `seconds` is the unit's
        time so far, by stage.

        Kept batches are memory beyond what the part writer holds, so they are saved early once they pass
        MAX_PENDING_BYTES. If that would cost more than MAX_WRITE_SHARE (a fast unit), the unit stops saving
        instead: it will be done soon, and a later segment would be useless without the batches dropped now."""
        if self.off:
            return
        self._pending.append(batch)
        self._sizes.append(sizes)
        self._bytes += sizes[0] + sizes[1]
        since = time.monotonic() - self._since
        affordable = since >= self._last_write_s / MAX_WRITE_SHARE
        if affordable and (since >= self.every_s or self._bytes >= MAX_PENDING_BYTES):
            self._save(seconds)
        elif self._bytes >= MAX_PENDING_BYTES:
            self.off = True
            self._pending, self._sizes, self._bytes = [], [], 0

    def _save(self, seconds: dict[str, float]) -> None:
        t0 = time.monotonic()
        # stage time only: "(read)" and "(write)" are spent again by the attempt that replays the segment
        spent = {k: round(v - self._base.get(k, 0.0), 6) for k, v in seconds.items() if not k.startswith("(")}
        data = _encode(self._pending)
        name = f"{self._seq:06d}"
        self.folder.join(f"{name}.arrows").write_bytes(data)
        record: dict[str, Any] = {
            "unit_sha256": self.unit_sha256,
            "seq": self._seq,
            "start": self.done,
            "end": self.done + len(self._pending),
            "file": f"{name}.arrows",
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "sizes": self._sizes,
            "seconds": spent,
        }
        self.folder.join(f"{name}.json").write_json(record, indent=None)  # after its file: it names it
        self.touched = True
        self._seq += 1
        self.done += len(self._pending)
        self._pending, self._sizes, self._bytes = [], [], 0
        self._base = dict(seconds)
        self._since = time.monotonic()
        self._last_write_s = self._since - t0

    def clear(self) -> None:
        """Remove the segments (the unit's completion record now covers them); a failure only leaves scratch."""
        if self.touched:
            try:
                self.folder.remove(recursive=True)
            except Exception:
                pass


def _encode(batches: list[pa.Table]) -> bytes:
    """Each batch as its own IPC stream (batches of one unit may differ in schema), length-prefixed."""
    out = bytearray()
    for table in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
            writer.write_table(table)
        buf = sink.getvalue()
        out += _LEN.pack(buf.size)
        out += buf.to_pybytes()
    return bytes(out)


def _decode(data: bytes) -> list[pa.Table]:
    tables, pos = [], 0
    while pos < len(data):
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        tables.append(pa.ipc.open_stream(pa.py_buffer(data[pos : pos + n])).read_all())
        pos += n
    return tables
