"""fsspec helpers shared by readers, the writer and the commit protocol.

Local folders and object stores go through the same calls, so a job behaves the same on a laptop and on S3.
Errors are re-raised as StorageError naming the operation and location, never the credentials.
"""

from __future__ import annotations

import errno
import fnmatch
import io
import logging
import os
import posixpath
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, TypeVar

import fsspec
from fsspec.core import url_to_fs

log = logging.getLogger("refinery.fsio")
T = TypeVar("T")


class StorageError(Exception):
    """A storage operation failed; the message names operation and location and carries no secrets."""


# S3 error codes that no retry can fix: fail at once and say which bucket/prefix and which operation.
FATAL_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "ExpiredToken",
        "InvalidToken",
        "AccountProblem",
    }
)
# Throttling and server-side hiccups: worth a bounded, jittered retry.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)
_TRANSIENT_TYPES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "HTTPClientError",
        "ProxyConnectionError",
        "ResponseStreamingError",
        "IncompleteRead",
        "FSTimeoutError",
        "ClientConnectionError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ClientOSError",
        "ServerTimeoutError",
        "ProtocolError",
    }
)
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
    }
)
_TRANSIENT_TEXT = (
    "SlowDown",
    "reduce your request rate",
    "Service Unavailable",
    "ServiceUnavailable",
    "Please reduce",
    "Connection reset",
    "Connection refused",
    "Server disconnected",
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in seen and len(seen) < 10:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def error_code(exc: BaseException) -> str | None:
    """The S3 error code (``AccessDenied``, ``SlowDown`` …) behind an exception, if any, searching its causes."""
    for e in _chain(exc):
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            err = resp.get("Error") or {}
            code = err.get("Code") or (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if code:
                # HEAD requests carry no error body: botocore reports the bare HTTP status
                return {"403": "AccessDenied", "404": "NotFound"}.get(str(code), str(code))
    return None


def is_fatal(exc: BaseException) -> bool:
    """Errors that cannot succeed on retry: wrong or read-only credentials, missing bucket."""
    code = error_code(exc)
    if code in FATAL_CODES:
        return True
    return any(isinstance(e, PermissionError) for e in _chain(exc))


def is_transient(exc: BaseException) -> bool:
    """Throttling (SlowDown/503), server errors and network failures: worth another try after a pause."""
    if is_fatal(exc):
        return False
    if error_code(exc) in TRANSIENT_CODES:
        return True
    for e in _chain(exc):
        if isinstance(e, FileNotFoundError | IsADirectoryError | NotADirectoryError | FileExistsError):
            return False
        if isinstance(e, ConnectionError | TimeoutError):
            return True
        if any(k.__name__ in _TRANSIENT_TYPES for k in type(e).__mro__):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return True
        if any(t in str(e)[:500] for t in _TRANSIENT_TEXT):
            return True
    return False


_RETRIES: Counter[str] = Counter()  # retried storage requests in this process, per operation


def note_retry(op: str, n: int = 1) -> None:
    _RETRIES[op] += n


def retries_since(before: dict[str, int]) -> dict[str, int]:
    """Requests retried in this process since `before` (a `retry_counts()`), per operation, without zeros."""
    return {k: v - before.get(k, 0) for k, v in _RETRIES.items() if v != before.get(k, 0)}


def retry_counts() -> dict[str, int]:
    """Storage requests retried in this process so far, per operation (read, write, list, publish …)."""
    return dict(_RETRIES)


def retry_policy() -> tuple[int, float, float]:
    """(attempts, base seconds, cap seconds); tune with REFINERY_IO_RETRIES / _RETRY_BASE_S / _RETRY_CAP_S."""
    return (
        max(1, int(os.environ.get("REFINERY_IO_RETRIES", "7"))),
        float(os.environ.get("REFINERY_IO_RETRY_BASE_S", "0.5")),
        float(os.environ.get("REFINERY_IO_RETRY_CAP_S", "20")),
    )


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with 'equal jitter': half the step is fixed, half random, so the waits still span an
    outage while many workers retrying at once spread out instead of hammering the store together."""
    step = min(cap, base * (2**attempt))
    return step / 2 + random.uniform(0, step / 2)


def retry_call(
    fn: Callable[[], T],
    op: str,
    location: str,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn`, retrying transient storage errors with bounded exponential backoff and jitter.

    Fatal errors (AccessDenied, NoSuchBucket, InvalidAccessKeyId …) and non-storage errors propagate at once;
    a transient error that outlives every attempt propagates too. Messages name `op` and `location` only.
    """
    n, base, cap = retry_policy()
    n = attempts or n
    for attempt in range(n):
        try:
            return fn()
        except Exception as e:
            if attempt == n - 1 or not is_transient(e):
                raise
            delay = backoff_delay(attempt, base, cap)
            note_retry(op)
            log.warning(
                "retrying %s %s in %.1fs after %s (attempt %d/%d)",
                op,
                location,
                delay,
                error_code(e) or type(e).__name__,
                attempt + 1,
                n,
            )
            sleep(delay)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class InputFile:
    uri: str  # full URL (with protocol for remote stores) as readers open it
    size: int
    etag: str | None = None
    mtime: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def get_fs(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and in-filesystem path for a URL.

    S3 gets no listing cache (other processes - Ray workers - write the same prefixes, and a stale
    listing would hide their files from the commit) unless `use_listings_cache` is set in storage_options.
    """
    opts = dict(storage_options or {})
    s3 = uri.startswith(("s3://", "s3a://"))
    if s3:
        opts.setdefault("use_listings_cache", False)
        # Throttling (503 SlowDown), 5xx and dropped connections are retried by s3fs on every call, after
        # 0.1 s, 0.17 s, 0.29 s … growing ×1.7 (`retries`: 10 tries, ~29 s in all), then by retry_call around
        # whole operations. botocore's own retries would sit below and wait 0.5 s on average before the first
        # retry: at 10% SlowDown that doubled a job's wall time (docs/benchmarks/resume.md). The user's
        # `config_kwargs.retries` wins.
        ck = dict(opts.get("config_kwargs") or {})
        ck.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
        opts["config_kwargs"] = ck
        _retry_transient_in_s3fs()
    fs, path = url_to_fs(uri, **opts)
    if s3:
        # a class attribute in s3fs, not a constructor option
        fs.retries = max(int(getattr(fs, "retries", 0)), S3FS_TRIES)
        count_client_retries(fs)
    return fs, path


S3FS_TRIES = 10


def _retry_transient_in_s3fs() -> None:
    """s3fs retries SlowDown by its message only; a 503 to a HEAD request has no body, hence no message. Let it
    retry every error we call transient (status 5xx/429, throttling codes, network failures)."""
    import s3fs.core

    if s3fs.core.CUSTOM_ERROR_HANDLER is not is_transient:
        s3fs.core.set_custom_error_handler(is_transient)


def _count_failed_attempt(
    event_name: str, response_dict: Any = None, exception: Any = None, **_: Any
) -> None:
    """Every failed attempt (throttling, 5xx, a dropped connection), counted per S3 operation whichever layer
    retries it, so the report shows what the store really did."""
    status = (response_dict or {}).get("status_code", 0) if exception is None else 0
    if exception is not None or status >= 500 or status == 429:
        note_retry("s3." + event_name.rsplit(".", 1)[-1])


def count_client_retries(fs: fsspec.AbstractFileSystem) -> None:
    """Hook the failed-attempt counter into an S3 filesystem's client, once per client (s3fs makes one lazily)."""
    try:
        client = fs.connect()
    except Exception:  # noqa: BLE001 - no client yet (bad endpoint, no credentials): the operation will say why
        return
    if not getattr(client, "_refinery_counted", False):
        client.meta.events.register("response-received.s3", _count_failed_attempt)
        client._refinery_counted = True


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
    """A short, secret-free description of a storage failure (with the S3 error code when there is one)."""
    kind = type(exc).__name__
    code = error_code(exc)
    if code and code not in kind:
        kind = f"{kind} ({code})"
    detail = getattr(exc, "strerror", None) or str(exc).split("\n")[0]
    detail = detail[:300]
    return f"{op} {location}: {kind}: {detail}"


def _is_hidden(path: str) -> bool:
    name = posixpath.basename(path.rstrip("/"))
    return name.startswith(".") or name.startswith("_")


def list_inputs(
    uri: str, storage_options: dict[str, Any] | None = None, exclude: list[str] | None = None
) -> list[InputFile]:
    """Resolve a file, folder (recursive), or glob into input files with size/etag/mtime, sorted by uri.

    Hidden and underscore-prefixed names (``_SUCCESS``, ``.DS_Store``, staging folders) are skipped, like Spark
    and pyarrow datasets do. Raises StorageError when the input does not exist or cannot be listed.
    """
    try:
        fs, path = get_fs(uri, storage_options)
    except Exception as e:  # bad URL or missing optional filesystem
        raise StorageError(describe_error("open filesystem for", uri, e)) from None

    def _list() -> list[tuple[str, dict[str, Any]]]:
        if any(ch in path for ch in "*?["):
            infos = fs.glob(path, detail=True)
            entries = []
            for p, info in infos.items():
                if info.get("type") == "directory":
                    entries += list(fs.find(p, detail=True).items())
                else:
                    entries.append((p, info))
            return entries
        if protocol_of(fs) == "file" and os.path.isdir(path):
            return _walk_local(path)
        if fs.isdir(path):  # one flat, paginated listing (ListObjectsV2 without delimiter on S3)
            return list(fs.find(path, detail=True).items())
        if fs.exists(path):
            return [(path, fs.info(path))]
        raise FileNotFoundError(path)

    try:
        entries = retry_call(_list, "list", uri)
    except Exception as e:
        if is_fatal(e):
            raise StorageError(describe_error("list", uri, e) + fatal_hint(e)) from None
        if any(isinstance(x, FileNotFoundError) for x in _chain(e)):
            code = error_code(e)
            what = (
                "bucket does not exist"
                if code == "NoSuchBucket" or "bucket" in str(e).lower()
                else "not found"
            )
            raise StorageError(f"input not found: {uri} ({what})") from None
        raise StorageError(describe_error("list", uri, e)) from None
    files = []
    root = path.rstrip("/")
    for p, info in entries:
        if info.get("type") == "directory":
            continue
        rel = p[len(root) :].lstrip("/") if p.startswith(root) else posixpath.basename(p)
        if any(_is_hidden(part) for part in rel.split("/") if part):
            continue
        if exclude and any(
            fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(posixpath.basename(p), pat) for pat in exclude
        ):
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
    if protocol_of(fs) == "file":
        for f in files:
            if os.path.lexists(f.uri) and os.path.exists(f.uri) and not os.access(f.uri, os.R_OK):
                raise StorageError(
                    f"cannot read input {f.uri}: permission denied (check the file's permissions)"
                )
    probe_readable(fs, files[0].uri)
    return files


def _walk_local(root: str) -> list[tuple[str, dict[str, Any]]]:
    """Every file under a local folder, following symbolic links to folders and files.

    A folder reached twice (a link loop, or two links to one folder) is walked once, and a file reached twice
    (a link to a file that is also listed) is listed once, under the first path met (folders are walked in name
    order, a folder's files before its subfolders): the same bytes read twice would be committed twice. A link
    to nothing is listed (size 0) so that reading it quarantines it with a reason instead of it vanishing
    unseen. Hidden folders (`.x`, `_x`) are not entered; hidden files are filtered by the caller."""
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    out: list[tuple[str, dict[str, Any]]] = []
    stack = [root]
    while stack:
        d = stack.pop()
        st = os.stat(d)
        if (st.st_dev, st.st_ino) in seen_dirs:
            log.warning("not following %s again: it leads to a folder already read (symbolic link loop?)", d)
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=True):
                    if not _is_hidden(e.name):
                        subdirs.append(e.path)
                    continue
                est = e.stat(follow_symlinks=True)
            except FileNotFoundError:  # a dangling link
                out.append((e.path, {"type": "file", "size": 0, "mtime": None}))
                continue
            key = (est.st_dev, est.st_ino)
            if key in seen_files:
                log.info("%s is the same file as one already listed; read once", e.path)
                continue
            seen_files.add(key)
            out.append((e.path, {"type": "file", "size": est.st_size, "mtime": est.st_mtime}))
        stack.extend(reversed(subdirs))
    return out


def fatal_hint(exc: BaseException, op: str = "") -> str:
    """A short hint for a fatal storage error (which kind of mistake it most likely is)."""
    code = error_code(exc)
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
        return " (the credentials were rejected: check key/secret in storage_options or the AWS credential chain)"
    if code in ("NoSuchBucket", "InvalidBucketName"):
        return " (no such bucket)"
    if op == "write":
        return " (permission denied: are these read-only credentials?)"
    return " (permission denied: do these credentials allow this operation on this bucket/prefix?)"


def probe_readable(fs: fsspec.AbstractFileSystem, uri: str) -> None:
    """Read one byte of an input on the driver, so that credentials that may list but not read fail the job
    before any work instead of quarantining every file. Only fatal errors (access, credentials) are raised."""
    path = fs._strip_protocol(uri)
    try:
        retry_call(lambda: fs.cat_file(path, start=0, end=1), "read", uri)
    except Exception as e:
        if is_fatal(e):
            raise StorageError(describe_error("read", uri, e) + fatal_hint(e)) from None


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a small object so that readers see either the old or the new content, never half of it."""
    if protocol_of(fs) != "file":  # object stores publish a PUT atomically; retry throttling/network errors
        retry_call(lambda: fs.pipe_file(path, data), "write", full_uri(fs, path))
        return
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_input(fs: fsspec.AbstractFileSystem, path: str) -> BinaryIO:
    """Open a file for streaming reads. Object-store files get an `io.BufferedReader` on top: fsspec's buffered
    files lack parts of the standard file API readers rely on (e.g. `readline(limit)` in the JSONL reader)."""
    f = fs.open(path, "rb")
    if protocol_of(fs) == "file":
        return f
    return io.BufferedReader(f, buffer_size=1 << 20)


def read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    if protocol_of(fs) != "file":
        return retry_call(lambda: fs.cat_file(path), "read", full_uri(fs, path))
    with fs.open(path, "rb") as f:
        return f.read()


def put_file(fs: fsspec.AbstractFileSystem, local_path: str, path: str) -> None:
    """Upload (or move, locally) a finished file; s3fs switches to multipart upload for large files."""
    if protocol_of(fs) == "file":
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        os.replace(local_path, path)
    else:  # idempotent (same name, same bytes), so a retry after a lost response is safe
        retry_call(lambda: fs.put_file(local_path, path), "upload", full_uri(fs, path))
        os.unlink(local_path)
