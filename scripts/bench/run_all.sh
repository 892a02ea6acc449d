#!/usr/bin/env bash
# Re-run every benchmark behind BENCHMARKS.md, then reassemble it. Needs the dev install (scripts/install.sh dev)
# and a quiet machine: the figures are ratios against peers measured in the same runs, and two cores shared with
# anything else distort them. Takes about an hour on a 2-core machine (the 1M-document dedup run alone ~10 min),
# plus the 160k-document datatrove comparison (~30 min) and the 1M + 4M-document scale run (~2 h).
#   bash scripts/bench/run_all.sh            everything
#   bash scripts/bench/run_all.sh --quick    skip the 1M-document dedup run, the 160k comparison, the scale run
#                                            and the refresh timings
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install.sh dev
PY=.venv/bin/python
QUICK="${1:-}"
run() { echo "[run_all] $*"; "$@"; }
run $PY -m scripts.bench.peers --base-docs 10000 --sizes 1,4,16 --peer-timeout 1200
run $PY -m scripts.bench.peers --base-docs 10000 --peer-size 4 --sizes '' --no-alone --peers datatrove --md docs/benchmarks/peers_40k.md
[ "$QUICK" = "--quick" ] || run $PY -m scripts.bench.peers --base-docs 10000 --peer-size 16 --sizes 16 --no-alone --peers datatrove --peer-timeout 5400 --md docs/benchmarks/peers_160k.md
run $PY -m scripts.bench.peers --compare nemo-shared --base-docs 10000 --peer-size 4 --md docs/benchmarks/peers_nemo.md
run $PY -m scripts.bench.dedup --base-docs 20000 --scales 1,4,16 --datatrove-max-docs 80000
[ "$QUICK" = "--quick" ] || run $PY -m scripts.bench.dedup --base-docs 62500 --scales 16 --skip-datatrove --shard-docs 10000 --out docs/benchmarks/dedup_1m.md
run $PY -m scripts.bench.filters
run $PY -m scripts.bench.classifiers --docs 10000
run $PY -m scripts.bench.memory --scales 1,8
[ "$QUICK" = "--quick" ] || run $PY -m scripts.bench.scale --docs 1000000,4000000 --cleanup
run $PY -m scripts.bench.pii --docs 2000 --ner-docs 200
run $PY -m scripts.bench.s3 --copies 4 --repeat 3
run $PY -m scripts.bench.refilter --docs 40000
# kill-and-resume, local and S3, and the throttled S3 run (~4 h at 40k documents: the NER in pii dominates)
[ "$QUICK" = "--quick" ] || run $PY -m scripts.bench.resume --docs 40000
# the refresh timings (docs/benchmarks/refresh.md is written by hand from this run's --durations output)
[ "$QUICK" = "--quick" ] || RAY_AUTH_MODE=disabled run $PY -m pytest tests/test_refresh.py tests/test_monitoring.py -q --durations=15
# the GPU MinHash check, only where a GPU is visible (docs/benchmarks/gpu_minhash.log)
if command -v nvidia-smi >/dev/null 2>&1; then
  OUT=docs/benchmarks run bash scripts/bench/device_check.sh
  run $PY -m scripts.bench.gpu_classifier --out docs/benchmarks/gpu_classifier.md
fi
run $PY -m scripts.data.collect_docs
