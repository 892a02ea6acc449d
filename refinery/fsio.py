"""fsspec helpers shared by readers, the writer and the commit protocol.

Local folders and object stores go through the same calls, so a job behaves the same on a laptop and on S3.
Errors are re-raised as StorageError naming the operation and location, never the credentials.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs


class StorageError(Exception):
    """A storage operation failed; the message names operation and location and carries no secrets."""


@dataclass(frozen=True)
class InputFile:
    uri: str  # full URL (with protocol for remote stores) as readers open it
    size: int
    etag: str | None = None
    mtime: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def get_fs(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = url_to_fs(uri, **(storage_options or {}))
    return fs, path


def protocol_of(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return "file" if proto in ("file", "local") else proto


def full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    proto = protocol_of(fs)
    return path if proto == "file" else f"{proto}://{path.lstrip('/')}" if "://" not in path else path


def join(uri: str, *parts: str) -> str:
    base = uri.rstrip("/")
    for p in parts:
        base = base + "/" + p.strip("/")
    return base


def describe_error(op: str, location: str, exc: BaseException) -> str:
    """A short, secret-free description of a storage failure."""
    kind = type(exc).__name__
    detail = getattr(exc, "strerror", None) or str(exc).split("\n")[0]
    detail = detail[:300]
    return f"{op} {location}: {kind}: {detail}"


def _is_hidden(path: str) -> bool:
    name = posixpath.basename(path.rstrip("/"))
    return name.startswith(".") or name.startswith("_")


def list_inputs(uri: str, storage_options: dict[str, Any] | None = None, exclude: list[str] | None = None) -> list[InputFile]:
    """Resolve a file, folder (recursive), or glob into input files with size/etag/mtime, sorted by uri.

    Hidden and underscore-prefixed names (``_SUCCESS``, ``.DS_Store``, staging folders) are skipped, like Spark
    and pyarrow datasets do. Raises StorageError when the input does not exist or cannot be listed.
    """
    try:
        fs, path = get_fs(uri, storage_options)
    except Exception as e:  # bad URL or missing optional filesystem
        raise StorageError(describe_error("open filesystem for", uri, e)) from None
    try:
        if any(ch in path for ch in "*?["):
            infos = fs.glob(path, detail=True)
            entries = []
            for p, info in infos.items():
                if info.get("type") == "directory":
                    entries += list(fs.find(p, detail=True).items())
                else:
                    entries.append((p, info))
        elif fs.isdir(path):
            entries = list(fs.find(path, detail=True).items())
        elif fs.exists(path):
            entries = [(path, fs.info(path))]
        else:
            raise FileNotFoundError(path)
    except FileNotFoundError:
        raise StorageError(f"input not found: {uri}") from None
    except PermissionError as e:
        raise StorageError(describe_error("list", uri, e) + " (permission denied)") from None
    except Exception as e:
        raise StorageError(describe_error("list", uri, e)) from None
    files = []
    root = path.rstrip("/")
    for p, info in entries:
        if info.get("type") == "directory":
            continue
        rel = p[len(root) :].lstrip("/") if p.startswith(root) else posixpath.basename(p)
        if any(_is_hidden(part) for part in rel.split("/") if part):
            continue
        if exclude and any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(posixpath.basename(p), pat) for pat in exclude):
            continue
        etag = info.get("ETag") or info.get("etag")
        mtime = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
        files.append(
            InputFile(
                uri=full_uri(fs, p),
                size=int(info.get("size") or 0),
                etag=str(etag).strip('"') if etag else None,
                mtime=str(mtime) if mtime is not None else None,
            )
        )
    files.sort(key=lambda f: f.uri)
    if not files:
        raise StorageError(f"input {uri} holds no readable files")
    return files


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a small object so that readers see either the old or the new content, never half of it."""
    if protocol_of(fs) == "file":
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:  # object stores publish a PUT atomically
        with fs.open(path, "wb") as f:
            f.write(data)


def read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    with fs.open(path, "rb") as f:
        return f.read()


def put_file(fs: fsspec.AbstractFileSystem, local_path: str, path: str) -> None:
    """Upload (or move, locally) a finished file; s3fs switches to multipart upload for large files."""
    if protocol_of(fs) == "file":
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        os.replace(local_path, path)
    else:
        fs.put_file(local_path, path)
        os.unlink(local_path)
