"""Benchmarks: speed and memory, ours against peers measured in the same run (pages in docs/benchmarks/).

Run from the repository root, e.g. `.venv/bin/python -m scripts.bench.filters`;
`bash scripts/bench/run_all.sh` re-runs all of them and reassembles BENCHMARKS.md. Helpers shared with the
evaluations are in `common`.
"""
