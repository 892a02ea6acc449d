"""`refinery run CONFIG [--set k=v]`: run the pipeline and commit (the same as `python -m jobs.run`)."""

from __future__ import annotations

import argparse

from jobs.cli import command


def add_run_args(p: argparse.ArgumentParser) -> None:
    from jobs.run import add_run_args as add

    add(p)


@command("run", add_run_args)
def cmd_run(args: argparse.Namespace) -> int:
    from jobs.run import run_from_args

    return run_from_args(args)
