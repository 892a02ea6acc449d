"""The house rules that keep the code easy to live in, checked on the sources themselves."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "jobs" / "ray_backend"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def test_only_the_backend_imports_ray():
    offenders = [str(p.relative_to(ROOT)) for p in _sources("refinery", "stages", "jobs")
                 if BACKEND not in p.parents and any(n == "ray" or n.startswith("ray.") for n in _imports(p))]
    assert offenders == []
    assert any("ray" in _imports(p) for p in BACKEND.glob("*.py"))  # the walk does see imports


def test_the_core_and_the_stages_never_import_the_jobs():
    offenders = [str(p.relative_to(ROOT)) for p in _sources("refinery", "stages")
                 if any(n == "jobs" or n.startswith("jobs.") for n in _imports(p))]
    assert offenders == []


def test_no_test_hooks_or_prints_in_library_code():
    offenders = []
    for p in _sources("refinery", "stages"):
        text = p.read_text(encoding="utf-8")
        if "REFINERY_TEST" in text:
            offenders.append(f"{p.relative_to(ROOT)}: test hook")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{p.relative_to(ROOT)}:{node.lineno}: print")
    assert offenders == []
