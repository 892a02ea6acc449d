"""Generators of what other tools and the docs read: benchmark corpora (make_corpus), the bundled samples/
and test fixtures (build_samples), and docs/EVALUATION.md + BENCHMARKS.md assembled from their pages
(collect_docs). Run from the repository root, e.g. `.venv/bin/python -m scripts.data.collect_docs`.
"""
