"""The append-only run log: one JSON line per refresh event (start, end), at `<root>/_state/refresh/runlog.jsonl`.

Every refresh appends a `start` line and an `end` line with its outcome (`published`, `nothing_new`, `recovered`,
`failed`, `refused`, `alert`), the snapshot, counts and timings, so an operator can answer "what ran when, and what
came of it" without reading job logs. Locally lines are appended with O_APPEND (one `write` per line, atomic for
lines this small). Object stores cannot append: the log object is read, extended and rewritten whole; the refresh
holds the lock while it does so (a refused run, which does not hold the lock, writes its line to
`runlog-refused/<time>-<owner>.json` instead, so it can never clobber the log).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from typing import Any

from refinery.location import Location

RUNLOG = "runlog.jsonl"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def append(
    state_uri: str, record: dict[str, Any], so: dict[str, Any] | None = None, locked: bool = True
) -> None:
    line = (json.dumps({"time": now_iso(), **record}, sort_keys=False, default=str) + "\n").encode()
    state = Location(state_uri, so)
    log = state.join(RUNLOG)
    if state.is_local:  # a real append: O_APPEND writes of one line do not interleave
        os.makedirs(state.path, exist_ok=True)
        fd = os.open(log.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    if not locked:
        name = f"{now_iso().replace(':', '')}-{uuid.uuid4().hex[:8]}.json"
        state.join("runlog-refused", name).write_bytes(line)
        return
    old = log.read_bytes() if log.exists() else b""  # object stores: rewrite whole, under the refresh lock
    log.write_bytes(old + line)


def read(state_uri: str, so: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    log = Location(state_uri, so).join(RUNLOG)
    if not log.exists():
        return []
    body = log.read_bytes()
    return [json.loads(x) for x in body.decode().splitlines() if x.strip()]
