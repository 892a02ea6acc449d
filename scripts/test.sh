#!/usr/bin/env bash
# The README's test command: set up .venv (with the dev extra) on a fresh clone and run the whole test suite.
#   scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
.venv/bin/python -m pip check >/dev/null || { .venv/bin/python -m pip check; exit 1; }
# Main suite: one shared local Ray for the session, a SeaweedFS S3 server started by a fixture.
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# Tests that must own the whole machine's Ray (the fake autoscaler runs `ray stop --force`) run last, alone.
if [ -d tests/isolated ] && [ $# -eq 0 ]; then
  REFINERY_ISOLATED=1 .venv/bin/python -m pytest -q -p no:cacheprovider -m isolated tests/isolated
fi
