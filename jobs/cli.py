"""`refinery` command line. Exit codes are in jobs/errors.py (0 ok, 1 failed, 2 invalid config or input, 3 alerts).

Each subcommand lives in its own module under jobs/commands/ and registers itself with `@command`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from refinery.config import Context, RunConfig, load_config
from refinery.progress import show_progress
from refinery.registry import Registry


@dataclass(frozen=True)
class Command:
    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command", "jobs.commands")


def command(name: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated function as `refinery <name>`."""

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.add(name, Command(name, add_arguments, fn))
        return fn

    return deco


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file")
    p.add_argument("--config", dest="config_opt", help="YAML config file (same as the positional argument)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="dotted.key=value",
        help="override a config value, e.g. --set output.uri=/tmp/out (repeatable)",
    )


def config_from_args(args: argparse.Namespace, context: Context = "run") -> tuple[RunConfig, str]:
    """The validated config named on the command line (raises ConfigError listing every problem)."""
    from refinery.config import ConfigError

    path = args.config_opt or args.config
    if not path:
        raise ConfigError("<args>", [("config", "no config file given")])
    return load_config(path, args.overrides, context), path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    show_progress()
    parser = argparse.ArgumentParser(prog="refinery", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, cmd in sorted(COMMANDS.load().items()):
        cmd.add_arguments(sub.add_parser(name))
    args = parser.parse_args(argv)
    return COMMANDS.get(args.command).handler(args)


if __name__ == "__main__":  # `python -m jobs.cli`: run the imported module, where the commands register
    from jobs.cli import main as _main

    sys.exit(_main())
