#!/usr/bin/env bash
# The README's main command: set up .venv on a fresh clone and run the main job on the bundled sample data.
#   scripts/run_local.sh [--set key=value ...]     e.g. --set output.uri=/tmp/refinery-out
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export RAY_USAGE_STATS_ENABLED=0
.venv/bin/refinery run configs/local.yaml "$@"
.venv/bin/python scripts/show_output.py configs/local.yaml "$@"
