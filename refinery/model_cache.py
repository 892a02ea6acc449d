"""Node-local copies of model files: fetched once per node, shared by every worker on it.

Why: a classifier stage runs as N actors per node. Each one downloading a multi-GB model from `s3://` (or
reading it into its own memory) multiplies the transfer and the memory by N. Here the first worker on a node
copies the model into a cache folder under a file lock; the others wait for the lock and find the copy. A stage
may also derive files from the model once per node (`derived`), under the same lock, so that every actor can
memory-map them instead of building its own.

The cache folder is `$REFINERY_MODEL_CACHE`, else `<tmp>/refinery-models`. A copy is keyed by the URI and the
file's size and version (ETag or modification time), so a model replaced in place is fetched again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refinery.location import Location


def cache_root() -> Path:
    root = os.environ.get("REFINERY_MODEL_CACHE") or os.path.join(tempfile.gettempdir(), "refinery-models")
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root)


def _fingerprint(loc: Location) -> str:
    """Size and version of a model file or folder, so that a model replaced in place is fetched again."""
    if loc.is_local:
        p = Path(loc.path)
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        return ";".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file())
    parts = []
    for f in loc.find() if loc.isdir() else [loc]:
        info: dict[str, Any] = f.fs.info(f.path)
        version = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        parts.append(f"{f.uri}:{info.get('size')}:{version}")
    return ";".join(parts)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def node_cache_dir(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    derived: Callable[[Path, Path], None] | None = None,
    kind: str = "",
) -> tuple[Path, Path]:
    """(local model path, this model's cache folder). A remote model (any fsspec URI) is copied into the cache
    once per node; a local one is used where it is. `derived(model_path, folder)`, when given, writes files derived
    from the model into `folder` once per node (keyed by `kind` too); every later caller finds them ready."""
    loc = Location(uri, storage_options)
    if not loc.exists():
        raise FileNotFoundError(f"model not found: {uri}")
    key = hashlib.sha256(f"{uri}\n{_fingerprint(loc)}\n{kind}".encode()).hexdigest()[:24]
    root = cache_root()
    folder = root / key
    ready = folder / "_READY"
    if not ready.exists():
        with _locked(root / f"{key}.lock"):
            if not ready.exists():  # the first worker on this node builds it; the others waited for the lock
                tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=root))
                try:
                    src = _local_source(loc, tmp / "model")
                    if derived is not None:
                        derived(Path(src) if src else Path(loc.path), tmp)
                    (tmp / "_READY").write_text(json.dumps({"uri": uri}))
                    shutil.rmtree(folder, ignore_errors=True)
                    os.replace(tmp, folder)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
    model = folder / "model"
    return (model if model.exists() else Path(loc.path)), folder


def _local_source(loc: Location, dest: Path) -> str | None:
    """Copy a remote model (file or folder) to `dest`, streaming; None for a local model (used in place)."""
    if loc.is_local:
        return None
    if loc.isdir():
        for f in loc.find():
            rel = f.path[len(loc.path.rstrip("/")) + 1 :]
            _copy(f, dest / rel)
    else:
        _copy(loc, dest)
    return str(dest)


def _copy(src: Location, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with src.open_input() as fin, open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout, 8 << 20)
