"""Format unification: a registry of readers, one module per input format (the one format registry:
`input.format` is checked against it).

A reader module registers its class with @register_reader; `reader_class_for` picks one per file from
`input.format` or, with `auto`, from the file extension.
"""

from __future__ import annotations

from refinery.config import InputConfig
from refinery.fsio import InputFile
from refinery.registry import Registry
from stages.readers.base import Reader, ReadTask, extension_of, logical_name, split_member

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


__all__ = [
    "READERS",
    "Reader",
    "ReadTask",
    "format_names",
    "load_readers",
    "plan_reads",
    "reader_class_for",
    "register_reader",
]
