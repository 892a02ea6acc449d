"""Format unification: a registry of readers, one module per input format (the one format registry:
`input.format` is checked against it).

A reader module registers its class with @register_reader; `reader_class_for` picks one per file from
`input.format` or, with `auto`, from the file extension.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from refinery.config import InputConfig
from refinery.fsio import (
    InputFile,
    StorageError,
    backoff_delay,
    describe_error,
    fatal_hint,
    is_fatal,
    is_transient,
    note_retry,
    retry_policy,
)
from refinery.redact import scrub, secret_values
from refinery.registry import Registry
from stages.readers.base import Reader, ReadTask, RowBuilder, extension_of, logical_name, split_member

log = logging.getLogger("refinery.read")

READERS: Registry[type[Reader]] = Registry("reader", "stages.readers")
register_reader = READERS.decorator(lambda cls: getattr(cls, "format", ""))
INTERNAL_FORMATS = ("unsupported",)  # formats the planner assigns, never a config value


def load_readers() -> dict[str, type[Reader]]:
    return READERS.load()


def format_names() -> list[str]:
    """What `input.format` accepts."""
    return ["auto", *(n for n in READERS.names() if n not in INTERNAL_FORMATS)]


def reader_class_for(f: InputFile, cfg: InputConfig) -> type[Reader] | None:
    """The reader of a file: zip archives always by the zip reader (which applies `format` to the members),
    others by `input.format` or, with `auto`, by extension (a zip member's by its member name)."""
    readers = load_readers()
    ext = extension_of(f.uri)
    if ext == ".zip" and split_member(f.uri) is None:
        return readers["zip"]
    if cfg.format != "auto":
        return readers[cfg.format]
    lower = logical_name(f.uri).lower()
    for cls in readers.values():
        if ext in cls.extensions or any(lower.endswith(e) for e in cls.extensions if e.count(".") > 1):
            return cls
    return None


def plan_reads(
    files: list[InputFile], cfg: InputConfig, run_id: str
) -> tuple[list[ReadTask], list[InputFile]]:
    """Split input files into read tasks. Returns (tasks, files no reader claims)."""
    readers = {name: cls(cfg, run_id) for name, cls in load_readers().items()}
    skip: set[str] = set()
    for r in readers.values():
        if cfg.format in ("auto", r.format):
            skip |= r.sidecars(files)
    tasks: list[ReadTask] = []
    unclaimed: list[InputFile] = []
    for f in files:
        if f.uri in skip:
            continue
        cls = reader_class_for(f, cfg)
        if cls is None:
            # Quarantined by the "unsupported" reader rather than silently skipped: nothing is lost unseen.
            unclaimed.append(f)
            tasks.append(ReadTask(uri=f.uri, format="unsupported", size=f.size, etag=f.etag))
            continue
        tasks += readers[cls.format].plan(f)
    return tasks, unclaimed


def read_task(task: ReadTask, cfg: InputConfig, run_id: str, ledger: dict[str, Any]) -> Iterator[pa.Table]:
    """Read one task, leaving the reader's counters (blank lines …) in `ledger["counters"]`.

    On a transient storage error (SlowDown/503, dropped connection) the file starts again after a jittered backoff
    and the batches already emitted are skipped (readers are deterministic), so no row is lost or repeated.
    Fatal errors (access denied, bad credentials) fail the job; any other error about one file is quarantined."""
    readers = load_readers()
    secrets = secret_values(cfg.storage_options)
    attempts, base, cap = retry_policy()
    emitted = 0
    attempt = 0
    while True:
        seen = 0
        reader = readers[task.format](cfg, run_id)  # fresh per attempt: its counters start at 0
        try:
            for table in reader.read(task):
                seen += 1
                if seen <= emitted:
                    continue
                emitted += 1
                yield table
            ledger["counters"] = dict(getattr(reader, "counters", {}) or {})
            return
        except Exception as e:
            if is_fatal(e):
                raise StorageError(
                    scrub(describe_error("read", task.uri, e) + fatal_hint(e), secrets)
                ) from None
            if is_transient(e):
                attempt += 1
                if attempt >= attempts:
                    raise StorageError(
                        scrub(describe_error("read", task.uri, e), secrets)
                        + f" (gave up after {attempt} attempts)"
                    ) from None
                delay = backoff_delay(attempt - 1, base, cap)
                note_retry("read")
                log.warning(
                    "retrying read of %s in %.1fs (attempt %d/%d)", task.uri, delay, attempt, attempts
                )
                time.sleep(delay)
                continue
            # one unreadable file must not stop the job
            # (the detail names the error type only: a parser's message may quote the record, i.e. PII)
            rows = RowBuilder(task, cfg, run_id)
            detail = type(e).__name__ + (f": {e.strerror}" if isinstance(e, OSError) and e.strerror else "")
            rows.quarantine(offset=task.start, reason="unreadable_file", detail=detail)
            yield rows.flush()
            return


__all__ = [
    "READERS",
    "Reader",
    "ReadTask",
    "format_names",
    "load_readers",
    "plan_reads",
    "read_task",
    "reader_class_for",
    "register_reader",
]
