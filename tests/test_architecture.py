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
    offenders = [
        str(p.relative_to(ROOT))
        for p in _sources("refinery", "stages", "jobs")
        if BACKEND not in p.parents and any(n == "ray" or n.startswith("ray.") for n in _imports(p))
    ]
    assert offenders == []
    assert any("ray" in _imports(p) for p in BACKEND.glob("*.py"))  # the walk does see imports


def test_the_core_and_the_stages_never_import_the_jobs():
    offenders = [
        str(p.relative_to(ROOT))
        for p in _sources("refinery", "stages")
        if any(n == "jobs" or n.startswith("jobs.") for n in _imports(p))
    ]
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


def test_the_example_stage_in_the_architecture_page_runs():
    """docs/ARCHITECTURE.md shows a complete filter stage and its test: they must be code that works."""
    import re

    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = page.split("## The Stage contract", 1)[1].split("\n## ", 1)[0]
    stage_src, test_src = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:2]
    assert 25 <= len(stage_src.strip().splitlines()) <= 40  # "about 30 lines"
    namespace: dict = {"__name__": "docs_example_stage"}
    exec(compile(stage_src, "ARCHITECTURE.md:stage", "exec", dont_inherit=True), namespace)
    exec(compile(test_src, "ARCHITECTURE.md:test", "exec", dont_inherit=True), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_")]
    assert tests
    for t in tests:
        t()
