#!/usr/bin/env bash
# Submit a refinery job to a Ray cluster exactly as docs/CLUSTER.md documents it.
#   scripts/submit.sh CONFIG [--set k=v ...]
# Env: RAY_ADDRESS (default http://127.0.0.1:8265, e.g. through `ray dashboard cluster.yaml`), RAY_AUTH_MODE and
# RAY_AUTH_TOKEN (token auth, on by default in Ray 2.60), RAY_EXTRA (extra `ray job submit` flags, e.g. --no-wait).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/submit.sh CONFIG [--set k=v ...]" >&2; exit 2; }
CONFIG="$1"; shift
RAY="${RAY:-$( [ -x .venv/bin/ray ] && echo .venv/bin/ray || echo ray )}"
RUNTIME_ENV='{"pip": {"packages": ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"], "pip_install_options": ["--no-deps", "--no-build-isolation", "--disable-pip-version-check", "--no-cache-dir"], "pip_check": false}}'
# shellcheck disable=SC2086
exec "$RAY" job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" --working-dir . ${RAY_EXTRA:-} \
  --runtime-env-json "$RUNTIME_ENV" -- python -m jobs.run --config "$CONFIG" "$@"
