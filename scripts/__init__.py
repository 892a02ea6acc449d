"""Operator tools. Users run the shell scripts in this folder (install.sh, run_local.sh, test.sh, submit.sh,
nightly.sh, s3_local.sh, screenshot_report.sh); the Python tools are packages, run from the repository root:

    scripts/bench/   benchmarks        .venv/bin/python -m scripts.bench.memory ...  (all: scripts/bench/run_all.sh)
    scripts/eval/    evaluations       .venv/bin/python -m scripts.eval.dedup ...
    scripts/data/    corpora, samples  .venv/bin/python -m scripts.data.make_corpus ...
                     and docs          .venv/bin/python -m scripts.data.collect_docs
"""
