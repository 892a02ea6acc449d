"""Evaluations: quality figures on real labelled data from ../shared/data (pages in docs/evaluation/).

Run from the repository root, e.g. `.venv/bin/python -m scripts.eval.langid`, then
`.venv/bin/python -m scripts.data.collect_docs` to reassemble docs/EVALUATION.md.
"""
