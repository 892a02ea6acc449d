"""`refinery train-classifier CONFIG`: train a fastText classifier from labelled sources (jobs/train_classifier.py)
and publish model.bin, metrics.json, MODEL_CARD.md and stage.yaml under the config's output.uri."""

from __future__ import annotations

import argparse

from jobs.cli import add_config_args, command
from jobs.errors import EXIT_OK, report


@command("train-classifier", add_config_args)
def cmd_train_classifier(args: argparse.Namespace) -> int:
    from jobs.train_classifier import load_train_config, train
    from refinery.config import ConfigError

    path = args.config_opt or args.config
    try:
        if not path:
            raise ConfigError("<args>", [("config", "no config file given")])
        cfg = load_train_config(path, args.overrides)
        m = train(cfg)
    except Exception as e:
        return report(e, [], "train-classifier")
    per = ", ".join(f"{k} F1 {v['f1']:.3f}" for k, v in m["labels"].items())
    print(f"{cfg.name}: accuracy {m['accuracy']:.4f} on {m['n']} held-out records ({per})")
    print(f"wrote model.bin, metrics.json, MODEL_CARD.md, stage.yaml to {cfg.output.uri}")
    return EXIT_OK
