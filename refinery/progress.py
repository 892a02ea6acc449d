"""Progress of a run, told through `logging` so that library code never prints.

Everything a long job wants to say while it runs (what it planned, what it checkpointed, which stage it is on)
goes to the `refinery.progress` logger at INFO. The command line shows those lines as `[refinery] …` on stdout;
a program embedding the pipeline decides for itself (they are silent under the default WARNING level).
"""

from __future__ import annotations

import logging
import sys

LOGGER = "refinery.progress"
log = logging.getLogger(LOGGER)


def progress(message: str, *args: object) -> None:
    log.info(message, *args)


def warn(message: str, *args: object) -> None:
    """A progress line that must not be missed (shown by the CLI like the others, at WARNING level)."""
    log.warning(message, *args)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is when a line is logged (tests and embedders swap it)."""

    @property
    def stream(self):  # noqa: D102
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def show_progress(prefix: str = "[refinery] ") -> None:
    """Print progress lines on stdout (the CLI calls this)."""
    if any(isinstance(h, _StdoutHandler) for h in log.handlers):
        return
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
