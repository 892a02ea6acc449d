"""`refinery run CONFIG [--set k=v]`: run the pipeline and commit (the same as `python -m jobs.run`)."""

from __future__ import annotations

import argparse

from jobs.cli import add_config_args, command


@command("run", add_config_args)
def cmd_run(args: argparse.Namespace) -> int:
    from jobs.run import run_from_args

    return run_from_args(args)
