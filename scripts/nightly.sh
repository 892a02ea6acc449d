#!/usr/bin/env bash
# Nightly corpus refresh on a Ray cluster: `ray job submit … -- python -m jobs.refresh --config CONFIG`.
#   scripts/nightly.sh [CONFIG] [--set k=v ...] [--date YYYY-MM-DD]
# Env: RAY_ADDRESS (default http://127.0.0.1:8265), RAY_AUTH_MODE / RAY_AUTH_TOKEN (Ray 2.60 token auth, see
# docs/CLUSTER.md), RAY_EXTRA (extra `ray job submit` flags).
# Exit code (for cron/schedulers, see docs/REFRESH.md): 0 published or nothing new, 3 published with drift alerts
# (page someone), 75 another refresh holds the lock, 1 failed. `ray job submit` only reports success/failure, so
# the outcome is read back from the run log (<output.uri>/_state/refresh/runlog.jsonl) after the job ends.
# Example cron line (02:15 UTC every night, one log per day):
#   15 2 * * *  cd /srv/corpus-refinery && scripts/nightly.sh configs/nightly.yaml >> logs/nightly-$(date +\%F).log 2>&1
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-configs/nightly.yaml}"; [ $# -ge 1 ] && shift
RAY="${RAY:-$( [ -x .venv/bin/ray ] && echo .venv/bin/ray || echo ray )}"
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
RUNTIME_ENV='{"pip": {"packages": ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"], "pip_install_options": ["--no-deps", "--no-build-isolation", "--disable-pip-version-check", "--no-cache-dir"], "pip_check": false}}'
started="$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
# shellcheck disable=SC2086
"$RAY" job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" --working-dir . ${RAY_EXTRA:-} \
  --runtime-env-json "$RUNTIME_ENV" -- python -m jobs.refresh --config "$CONFIG" "$@"
submit_rc=$?
# The job's own exit code (3 = alerts, 75 = refused) does not survive `ray job submit`: read the run log.
"$PY" - "$CONFIG" "$started" "$submit_rc" "$@" <<'PYEOF'
import sys
from refinery.refresh import runlog
from refinery.config import load_config
from refinery.refresh.snapshots import refresh_state_uri

config, started, submit_rc, rest = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
overrides = [rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--set"]
cfg = load_config(config, overrides)
ends = [r for r in runlog.read(refresh_state_uri(cfg.output.uri), cfg.output.storage_options)
        if r.get("event") == "end" and r.get("time", "") >= started]
outcome = ends[-1]["outcome"] if ends else None
code = {"published": 0, "nothing_new": 0, "recovered": 0, "alert": 3, "refused": 75}.get(outcome, 1)
if submit_rc and code == 0:
    code = 1
print(f"nightly: job exit {submit_rc}, refresh outcome {outcome!r} → exit {code}", file=sys.stderr)
sys.exit(code)
PYEOF
