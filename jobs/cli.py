"""`refinery` command line. Exit codes: 0 ok, 1 runtime failure, 2 invalid config or input, 3 alerts raised."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from refinery.config import ConfigError, RunConfig, load_config

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_ALERT = 0, 1, 2, 3

# Subcommands register here: name -> (add_arguments, handler). Keeps each command in its own module.
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def deco(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (add_arguments, fn)
        return fn

    return deco


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file")
    p.add_argument("--config", dest="config_opt", help="YAML config file (same as the positional argument)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value",
                   help="override a config value, e.g. --set output.uri=/tmp/out (repeatable)")


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, str]:
    path = args.config_opt or args.config
    if not path:
        raise ConfigError("<args>", [("config", "no config file given")])
    return load_config(path, args.overrides), path


@command("validate", add_config_args)
def cmd_validate(args: argparse.Namespace) -> int:
    try:
        cfg, path = config_from_args(args)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: ok ({len(cfg.stages)} stage(s): {', '.join(s.stage for s in cfg.stages) or 'none'})")
    return EXIT_OK


@command("run", add_config_args)
def cmd_run(args: argparse.Namespace) -> int:
    from jobs.run import run_from_args

    return run_from_args(args)


def _load_extra_commands() -> None:
    """Commands that live in their own modules (refresh, verify, audit-pii …) register on import."""
    import importlib
    import pkgutil

    import jobs

    for mod in pkgutil.iter_modules(jobs.__path__):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"jobs.{mod.name}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _load_extra_commands()
    parser = argparse.ArgumentParser(prog="refinery", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][1](args)


if __name__ == "__main__":
    sys.exit(main())
