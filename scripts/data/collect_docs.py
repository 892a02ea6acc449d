"""Assemble docs/EVALUATION.md and BENCHMARKS.md from the per-topic pages in docs/evaluation/ and docs/benchmarks/.

Each evaluation or benchmark script writes its own page (with the command that produced it); this keeps the two
top-level documents in one place without scripts overwriting each other's sections.

    python -m scripts.data.collect_docs
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEADERS = {
    "docs/EVALUATION.md": (
        "docs/evaluation",
        "# Evaluation\n\nQuality figures measured on real labelled data from `../shared/data`. Every figure comes from a "
        "script in `scripts/`; each section names the exact command, the machine and the date. Regenerate this page "
        "with `python -m scripts.data.collect_docs` after re-running a script.\n",
    ),
    "BENCHMARKS.md": (
        "docs/benchmarks",
        "# Benchmarks\n\nSpeed and memory, measured by scripts users can run. The machine is a shared 2-core, 24 GiB "
        "box, so absolute numbers are noisy: compare the ratios against the peer measured in the same run. Each "
        "section names the exact command, versions and date. `bash scripts/bench/run_all.sh` re-runs every "
        "benchmark below and regenerates this page; `python -m scripts.data.collect_docs` only reassembles it from "
        "the pages in docs/benchmarks/.\n",
    ),
}

ORDER = [
    "peers",
    "peers_40k",
    "peers_160k",
    "peers_nemo",
    "memory",
    "scale",
    "filters",
    "langid",
    "quality",
    "dedup",
    "pii",
    "extraction",
    "s3",
]


def assemble(target: str) -> str:
    folder, header = HEADERS[target]
    pages = sorted(
        (ROOT / folder).glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem)
    )
    parts = [header]
    for page in pages:
        body = page.read_text(encoding="utf-8").strip()
        lines, in_code = [], False
        for line in body.splitlines():  # demote every heading one level: each page becomes a section
            if line.startswith("```"):
                in_code = not in_code
            lines.append("#" + line if line.startswith("#") and not in_code else line)
        parts.append("\n".join(lines) + f"\n\n<sub>source: `{page.relative_to(ROOT)}`</sub>\n")
    return "\n".join(parts)


def main() -> None:
    for target in HEADERS:
        (ROOT / target).write_text(assemble(target), encoding="utf-8")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
