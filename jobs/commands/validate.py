"""`refinery validate CONFIG`: check a config completely (every key, stage, param and location) without running."""

from __future__ import annotations

import argparse

from jobs.cli import add_config_args, command, config_from_args
from jobs.errors import EXIT_OK, report


@command("validate", add_config_args)
def cmd_validate(args: argparse.Namespace) -> int:
    try:
        cfg, path = config_from_args(args)
    except Exception as e:
        return report(e, [], "validate")
    print(f"{path}: ok ({len(cfg.stages)} stage(s): {', '.join(s.stage for s in cfg.stages) or 'none'})")
    return EXIT_OK
