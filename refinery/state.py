"""Generations of persisted state (dedup indexes) that become visible only when their run commits.

A global stage that extends an index writes its new entries to `<index_uri>/gen-<run_id>/part-*.parquet` during
the run. The pipeline (or the nightly refresh, after it moves its `latest` pointer) then writes
`gen-<run_id>/_COMMITTED`. Readers load only committed generations, so a crashed run never leaves index entries
for documents that were not published, and a re-run of the same run id simply rewrites its own generation.
"""

from __future__ import annotations

import posixpath
from typing import Any

from refinery.fsio import join
from refinery.location import Location

MARKER = "_COMMITTED"
GEN_PREFIX = "gen-"


def generation_uri(index_uri: str, run_id: str) -> str:
    return join(index_uri, f"{GEN_PREFIX}{run_id}")


def committed_generations(index_uri: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Paths (within the filesystem) of the Parquet files of every committed generation, sorted."""
    files: list[str] = []
    for gen in Location(index_uri, storage_options).children():
        if gen.name.startswith(GEN_PREFIX) and gen.join(MARKER).exists():
            files += [f.path for f in gen.find(".parquet")]
    return files


def commit_generations(
    state_uri: str, run_id: str, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Mark every `gen-<run_id>` folder under `state_uri` as committed; returns the folders marked."""
    state = Location(state_uri, storage_options)
    if not state.exists():
        return []
    marked = []
    target = f"{GEN_PREFIX}{run_id}"
    for path in state.fs.find(state.path, withdirs=True, detail=False):
        if posixpath.basename(path.rstrip("/")) == target and state.fs.isdir(path):
            gen = Location(state.child_uri(path), storage_options)
            gen.join(MARKER).write_bytes(run_id.encode())
            marked.append(path)
    return marked
