#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (PyTorch and CuPy, no Ray, no project install).
# Writes its log to $OUT/gpu_minhash.log (or ./gpu_minhash.log). Usage: bash scripts/bench/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
LOG="${OUT:-.}/gpu_minhash.log"
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import numpy, sys; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1 | tail -1
  python -c "import cupy; print('cupy', cupy.__version__)" 2>&1 | tail -1
  echo "== bit-identity and throughput, 20k docs x 400 shingles, 14x8 permutations"
  python -m scripts.bench.gpu_minhash --docs 20000 --backend all
  echo "== throughput, 100k docs"
  python -m scripts.bench.gpu_minhash --docs 100000 --backend all
} 2>&1 | tee "$LOG"
