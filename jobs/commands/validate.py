"""`refinery validate CONFIG [--refresh]`: check a config completely (every key, stage, param and location)
without running; `--refresh` adds the rules of `refinery refresh` (docs/REFRESH.md)."""

from __future__ import annotations

import argparse

from jobs.cli import add_config_args, command, config_from_args
from jobs.errors import EXIT_OK, report


def _args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--refresh", action="store_true", help="validate as a `refinery refresh` config")


@command("validate", _args)
def cmd_validate(args: argparse.Namespace) -> int:
    try:
        cfg, path = config_from_args(args, "refresh" if args.refresh else "run")
    except Exception as e:
        return report(e, [], "validate")
    print(f"{path}: ok ({len(cfg.stages)} stage(s): {', '.join(s.stage for s in cfg.stages) or 'none'})")
    return EXIT_OK
