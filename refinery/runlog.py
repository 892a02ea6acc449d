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

from refinery.fsio import get_fs, join, protocol_of, read_bytes, write_bytes

RUNLOG = "runlog.jsonl"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def append(state_uri: str, record: dict[str, Any], so: dict[str, Any] | None = None, locked: bool = True) -> None:
    line = (json.dumps({"time": now_iso(), **record}, sort_keys=False, default=str) + "\n").encode()
    fs, root = get_fs(state_uri, so)
    path = join(root, RUNLOG)
    if protocol_of(fs) == "file":
        os.makedirs(root, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    if not locked:
        name = f"{now_iso().replace(':', '')}-{uuid.uuid4().hex[:8]}.json"
        write_bytes(fs, join(root, "runlog-refused", name), line)
        return
    try:
        old = read_bytes(fs, path)
    except FileNotFoundError:
        old = b""
    write_bytes(fs, path, old + line)


def read(state_uri: str, so: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    fs, root = get_fs(state_uri, so)
    try:
        body = read_bytes(fs, join(root, RUNLOG))
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in body.decode().splitlines() if x.strip()]
