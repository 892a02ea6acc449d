"""`Location`: one place in storage (a URI and the options to reach it) and everything we do there.

Why one type: a location used to travel as a `(uri, storage_options)` pair that every module turned into a file
system again with `get_fs`, each with its own idea of retries, atomic writes and listing. A `Location` carries
both, is cheap to pickle into Ray tasks (the file system is rebuilt lazily on the other side), and its methods
keep the project's storage rules in one place: small objects are written atomically, transient errors are
retried, missing things are `None`/`False` rather than exceptions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
from collections.abc import Iterator, Mapping
from typing import IO, Any

import fsspec

from refinery.fsio import get_fs, join, open_input, protocol_of, put_file, read_bytes, retry_call, write_bytes


class Location:
    """A folder or file in local or object storage."""

    __slots__ = ("_fs", "_path", "storage_options", "uri")

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None):
        self.uri = uri.rstrip("/") if uri.rstrip("/") else uri
        self.storage_options = dict(storage_options or {})
        self._fs: fsspec.AbstractFileSystem | None = None
        self._path: str | None = None

    # -- identity --------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.uri, self.storage_options) == (
            other.uri,
            other.storage_options,
        )

    def __hash__(self) -> int:
        return hash(self.uri)

    def __getstate__(self) -> dict[str, Any]:  # never pickle a file system (clients, sessions, caches)
        return {"uri": self.uri, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.uri = state["uri"]
        self.storage_options = state["storage_options"]
        self._fs = None
        self._path = None

    def join(self, *parts: str) -> Location:
        return Location(join(self.uri, *parts), self.storage_options)

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri.rstrip("/"))

    # -- file system -----------------------------------------------------------------------------------------
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs, self._path = get_fs(self.uri, self.storage_options)
        return self._fs

    @property
    def path(self) -> str:
        """The location inside its file system (no protocol)."""
        if self._path is None:
            self._fs, self._path = get_fs(self.uri, self.storage_options)
        return self._path

    @property
    def is_local(self) -> bool:
        return protocol_of(self.fs) == "file"

    def child_uri(self, fs_path: str) -> str:
        """The full URI of a path that a listing of this location returned."""
        return fs_path if self.is_local else f"{protocol_of(self.fs)}://{fs_path.lstrip('/')}"

    # -- reading ---------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(retry_call(lambda: self.fs.exists(self.path), "read", self.uri))

    def isdir(self) -> bool:
        return bool(retry_call(lambda: self.fs.isdir(self.path), "read", self.uri))

    def names(self) -> list[str]:
        """Names directly inside this folder, sorted; empty when it does not exist."""
        try:
            listing = retry_call(lambda: self.fs.ls(self.path, detail=False), "list", self.uri)
        except FileNotFoundError:
            return []
        own = self.path.rstrip("/")  # some stores list a folder's own marker
        return sorted({posixpath.basename(p.rstrip("/")) for p in listing if p.rstrip("/") != own} - {""})

    def children(self) -> list[Location]:
        return [self.join(n) for n in self.names()]

    def find(self, suffix: str = "") -> list[Location]:
        """Every file below this folder (recursively), sorted."""
        if not self.exists():
            return []
        paths = retry_call(lambda: self.fs.find(self.path), "list", self.uri)
        return [
            Location(self.child_uri(p), self.storage_options) for p in sorted(paths) if p.endswith(suffix)
        ]

    def open(self, mode: str = "rb") -> IO[Any]:
        return self.fs.open(self.path, mode)

    def open_input(self) -> IO[bytes]:
        """For streaming reads: a file with the whole standard file API, on every store."""
        return open_input(self.fs, self.path)

    def read_bytes(self) -> bytes:
        return read_bytes(self.fs, self.path)

    def read_json(self) -> Any:
        return json.loads(self.read_bytes())

    def read_json_or_none(self, strict: bool = False) -> Any:
        """The JSON object here, or None when there is none; when not `strict`, also None for something that is
        not JSON (a file someone else wrote)."""
        try:
            if not self.exists():
                return None
            return self.read_json()
        except FileNotFoundError:
            return None
        except ValueError:
            if strict:
                raise
            return None

    def size(self) -> int:
        return int(retry_call(lambda: self.fs.info(self.path), "read", self.uri).get("size") or 0)

    def sha256(self) -> str:
        h = hashlib.sha256()
        with self.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def iter_parquet_batches(
        self, columns: list[str] | None = None, batch_size: int = 65536
    ) -> Iterator[Any]:
        import pyarrow.parquet as pq

        with self.open("rb") as f:
            yield from pq.ParquetFile(f).iter_batches(columns=columns, batch_size=batch_size)

    # -- writing ---------------------------------------------------------------------------------------------
    def write_bytes(self, data: bytes) -> None:
        """Readers see the old content or the new one, never half of it (rename locally, one PUT remotely)."""
        write_bytes(self.fs, self.path, data)

    def write_json(self, obj: Any, indent: int | None = 2) -> None:
        self.write_bytes(json.dumps(obj, indent=indent, sort_keys=True).encode())

    def put_file(self, local_path: str) -> None:
        """Move (locally) or upload a finished local file here."""
        put_file(self.fs, local_path, self.path)

    def makedirs(self) -> None:
        self.fs.makedirs(self.path, exist_ok=True)

    def remove(self, recursive: bool = False) -> None:
        """Delete if present, retrying transient errors (deletes are idempotent)."""

        def _rm() -> None:
            if self.fs.exists(self.path):
                try:
                    self.fs.rm(self.path, recursive=recursive)
                except FileNotFoundError:
                    pass

        retry_call(_rm, "delete", self.uri)

    def remove_files(self, names: list[str]) -> None:
        """Delete these files below this folder if present; one request per 1,000 keys on object stores."""
        paths = [join(self.path, n) for n in names]
        if not paths:
            return
        if self.is_local:
            for p in paths:
                try:
                    self.fs.rm_file(p)
                except FileNotFoundError:
                    pass
            return
        for i in range(0, len(paths), 1000):
            chunk = paths[i : i + 1000]
            retry_call(functools.partial(self.fs.rm, chunk), "delete", self.child_uri(chunk[0]))

    def move_to(self, dest: Location) -> None:
        """Publish this file at `dest` (rename locally; a server-side copy on object stores, whose staged original
        goes with its folder later)."""
        if self.is_local:
            dest.fs.makedirs(posixpath.dirname(dest.path), exist_ok=True)
            self.fs.mv(self.path, dest.path)
        else:
            retry_call(lambda: self.fs.copy(self.path, dest.path), "publish", dest.uri)
