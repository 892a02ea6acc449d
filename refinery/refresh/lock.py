"""A lease lock on a file or object, so that two refreshes never publish into the same output at once.

The lock is one small JSON object `{"owner", "host", "pid", "acquired_at", "expires_at"}` (times in Unix seconds).

- **Acquire** is a create-if-absent: locally a hard link of the fully written record to the lock path,
  which the OS makes atomic and which fails if the lock exists; on S3 a
  `PutObject` with `If-None-Match: *` (S3 conditional writes, AWS since 2024-08; s3fs `pipe_file(mode="create")`),
  which fails with 412 when the object exists, so exactly one of two racing writers wins.
- **Expiry.** A holder that died (SIGKILL, lost node) leaves its lock behind; once `expires_at` has passed, or, on
  the same host, once the holder's pid is gone, another process may take it over. Take-over replaces the stale
  object conditionally: locally an atomic rename of the stale file to a unique name (only one renamer succeeds),
  then a fresh create-if-absent; on S3 a `PutObject` with `If-Match: <etag of the stale object>`, so a second
  taker (whose etag no longer matches) fails.
- **Renew** rewrites `expires_at` (the refresh renews after each long step); **release** deletes the object only
  when it still names this owner.
- **Stores without conditional writes** (some S3-compatible servers ignore the headers) fall back to write, then
  read back and compare the owner: a race inside that window can let two holders both think they won. The lock
  reports which mode it used (`LeaseLock.mode`), and docs/REFRESH.md says to use a store with conditional writes.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

from refinery.fsio import protocol_of, read_bytes, write_bytes
from refinery.location import Location


class LockHeld(Exception):
    """Another live holder has the lock. `info` is its JSON record (owner, host, pid, expires_at)."""

    def __init__(self, uri: str, info: dict[str, Any]):
        self.uri = uri
        self.info = info
        left = max(0, int(float(info.get("expires_at", 0)) - time.time()))
        super().__init__(
            f"{uri} is held by {info.get('owner')} (host {info.get('host')}, pid {info.get('pid')}, "
            f"acquired {info.get('acquired_at_iso', '?')}, expires in {left}s)"
        )


def _write_durably(f: Any, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseLock:
    def __init__(
        self,
        uri: str,
        ttl_s: float = 6 * 3600,
        storage_options: dict[str, Any] | None = None,
        owner: str | None = None,
    ):
        self.uri = uri
        self.ttl_s = ttl_s
        loc = Location(uri, storage_options)
        self.fs, self.path = loc.fs, loc.path
        self.local = protocol_of(self.fs) == "file"
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.mode = "link-create" if self.local else "s3-conditional"
        self.held = False

    # -- record -----------------------------------------------------------------------------------------------
    def _record(self) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": now,
                "acquired_at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "expires_at": now + self.ttl_s,
            }
        ).encode()

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads(read_bytes(self.fs, self.path) or b"{}")
        except FileNotFoundError:
            return None
        except ValueError:  # a torn or foreign object: treat as stale so it can be taken over after expiry
            return {"owner": "?", "expires_at": 0}

    def _stale(self, info: dict[str, Any]) -> bool:
        if float(info.get("expires_at", 0)) < time.time():
            return True
        return (
            info.get("host") == socket.gethostname()
            and isinstance(info.get("pid"), int)
            and info["pid"] != os.getpid()
            and not _pid_alive(info["pid"])
        )

    # -- acquire ----------------------------------------------------------------------------------------------
    def acquire(self) -> LeaseLock:
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            info = self.read()
            if info is None:
                continue  # released between our create and read: try again
            if not self._stale(info):
                raise LockHeld(self.uri, info)
            if self._take_over(info):
                self.held = True
                return self
        info = self.read() or {}
        raise LockHeld(self.uri, info)

    def _create(self) -> bool:
        data = self._record()
        if self.local:
            # The record is written to a private file first and then hard-linked into place, which fails if the
            # lock exists. With `O_CREAT | O_EXCL` on the lock itself, a racer could read the new file before its
            # owner had written it, take the empty record for a stale lock and take it over: two winners.
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.new-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                _write_durably(f, data)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except (
                OSError
            ):  # a file system without hard links: exclusive create, then write (a narrow window)
                self.mode = "exclusive-create"
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as f:
                    _write_durably(f, data)
            finally:
                os.unlink(tmp)
            return True
        self._probe_conditional()
        if self.fs.exists(self.path):  # cheap pre-check; the conditional PUT below is what makes it exclusive
            return False
        try:
            self.fs.pipe_file(self.path, data, mode="create")
        except FileExistsError:
            return False
        except Exception as e:  # 412 PreconditionFailed surfaces as OSError/ClientError depending on versions
            if _is_precondition_failed(e):
                return False
            raise
        return self._confirm()

    def _probe_conditional(self) -> None:
        """Find out once whether the store honours `If-None-Match: *`; if not, say so in `mode` (see module doc)."""
        if self.mode != "s3-conditional" or getattr(self, "_probed", False):
            return
        self._probed = True
        probe = f"{self.path}.probe-{uuid.uuid4().hex[:8]}"
        try:
            self.fs.pipe_file(probe, b"1", mode="create")
            try:
                self.fs.pipe_file(probe, b"2", mode="create")
                self.mode = "read-back"  # the second exclusive create succeeded: the header is ignored
            except Exception as e:
                if not (isinstance(e, FileExistsError) or _is_precondition_failed(e)):
                    raise
        finally:
            try:
                self.fs.rm(probe)
            except FileNotFoundError:
                pass

    def _take_over(self, stale: dict[str, Any]) -> bool:
        if self.local:
            grave = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(self.path, grave)  # atomic: only one taker moves this exact file
            except FileNotFoundError:
                return False
            # A lock created by someone else between our read and the rename must not be thrown away.
            try:
                moved = json.loads(open(grave, "rb").read() or b"{}")
            except ValueError:
                moved = {}
            if moved.get("owner") != stale.get("owner") and not self._stale(moved):
                try:
                    os.rename(grave, self.path)
                except OSError:
                    pass
                return False
            os.unlink(grave)
            return self._create()
        try:
            etag = self.fs.info(self.path).get("ETag")
            self.fs.invalidate_cache(self.path)
            kwargs = {"IfMatch": etag} if etag else {}
            self.fs.pipe_file(self.path, self._record(), **kwargs)
        except FileNotFoundError:
            return self._create()
        except Exception as e:
            if _is_precondition_failed(e):
                return False
            raise
        return self._confirm()

    def _confirm(self) -> bool:
        """Read back: on a store that ignores conditional headers this is the only guard (see module doc)."""
        self.fs.invalidate_cache(self.path)
        info = self.read() or {}
        if info.get("owner") != self.owner:
            self.mode = "read-back"
            return False
        return True

    # -- renew / release --------------------------------------------------------------------------------------
    def renew(self) -> None:
        if not self.held:
            return
        info = self.read() or {}
        if info.get("owner") != self.owner:
            self.held = False
            raise LockHeld(self.uri, info)
        fs, path = self.fs, self.path
        write_bytes(fs, path, self._record())

    def release(self) -> None:
        if not self.held:
            return
        info = self.read() or {}
        if info.get("owner") == self.owner:
            try:
                self.fs.rm(self.path)
            except FileNotFoundError:
                pass
        self.held = False

    def __enter__(self) -> LeaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_precondition_failed(e: BaseException | None) -> bool:
    """412 PreconditionFailed (or 409 ConditionalRequestConflict); s3fs wraps botocore's error in an OSError."""
    seen = 0
    while e is not None and seen < 5:
        text = f"{type(e).__name__} {e}"
        if any(
            k in text for k in ("PreconditionFailed", "ConditionalRequestConflict", "pre-conditions", " 412")
        ):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False
