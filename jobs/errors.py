"""The one mapping from what went wrong to an exit code and a one-line message, for every command.

Exit codes: 0 ok, 1 the run failed, 2 invalid config or unreadable input/output, 3 alerts (drift, residual PII),
75 a refresh refused because another holds the lock, 128+N stopped by signal N (130 SIGINT, 143 SIGTERM).

Errors from workers arrive wrapped by Ray (RayTaskError, UserCodeException) around a remote traceback; the user
sees one line about their file instead: the first of our own errors in the chain, else the innermost.
"""

from __future__ import annotations

import signal
import sys
from typing import TextIO

from jobs.finalize import AccountingError, DuplicateIdsError
from refinery.commit import OutputExistsError
from refinery.config import ConfigError
from refinery.fsio import StorageError
from refinery.redact import scrub
from refinery.refresh.lock import LockHeld

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_ALERT, EXIT_BUSY = 0, 1, 2, 3, 75

# Expected outcomes, told in one line: bad input or output (exit 2) and runs that refuse to publish (exit 1).
USER_ERRORS = (StorageError, OutputExistsError)
REFUSALS = (DuplicateIdsError, AccountingError)


def root_cause(e: BaseException) -> BaseException:
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen and len(seen) < 20:
        seen.append(cur)
        if isinstance(cur, (*USER_ERRORS, *REFUSALS, ConfigError, LockHeld)):
            return cur
        cur = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
    return seen[-1]


def stop_signal(e: BaseException) -> int | None:
    """The signal number when `e` means the process was asked to stop (None otherwise). `ray.init` installs its
    own SIGTERM handler that calls sys.exit(15) while Ray starts; that counts too."""
    if isinstance(e, SystemExit):
        return signal.SIGTERM if e.code == signal.SIGTERM else None
    if isinstance(e, KeyboardInterrupt):
        return signal.SIGINT
    return getattr(e, "signum", None) if type(e).__name__ == "Stopped" else None


def report(
    e: BaseException, secrets: list[str], what: str = "run", stop_note: str = "", stream: TextIO | None = None
) -> int:
    """Print the one line for `e` (credentials scrubbed) to stderr and return its exit code."""
    stream = stream or sys.stderr
    signum = stop_signal(e)
    if signum is not None:
        print(
            f"refinery: stopped by {signal.Signals(signum).name}{'; ' + stop_note if stop_note else ''}",
            file=stream,
        )
        return 128 + int(signum)
    cause = root_cause(e)
    if isinstance(cause, ConfigError):
        print(cause.render(), file=stream)
        return EXIT_CONFIG
    if isinstance(cause, LockHeld):
        print(f"refinery: {what} refused: {scrub(str(cause), secrets)}", file=stream)
        return EXIT_BUSY
    text = scrub(str(cause), secrets)
    if isinstance(cause, USER_ERRORS):
        print(f"refinery: error: {text}", file=stream)
        return EXIT_CONFIG
    if isinstance(cause, REFUSALS):
        print(
            f"refinery: {what} failed: {text.splitlines()[0] if text else type(cause).__name__}", file=stream
        )
        return EXIT_FAIL
    print(f"refinery: {what} failed: {type(cause).__name__}: {text[:2000]}", file=stream)
    return EXIT_FAIL
