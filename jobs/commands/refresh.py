"""`refinery refresh CONFIG [--set k=v] [--date YYYY-MM-DD]`: publish new and changed inputs as a snapshot.

Exit codes: 0 published or nothing new, 1 failed, 2 invalid config or input, 3 published with drift alerts,
75 refused because another refresh holds the lock.
"""

from __future__ import annotations

import argparse

from jobs.cli import command
from jobs.refresh import add_refresh_args, refresh_from_args


@command("refresh", add_refresh_args)
def cmd_refresh(args: argparse.Namespace) -> int:
    return refresh_from_args(args)
