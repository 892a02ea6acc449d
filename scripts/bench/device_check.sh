#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (numpy and PyTorch, maybe CuPy; no Ray, no pyarrow, no
# project install, nothing to download). About 2 minutes on an H200. Writes its log to $OUT/gpu_minhash.log
# (or ./gpu_minhash.log). Usage: bash scripts/bench/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
LOG="${OUT:-.}/gpu_minhash.log"
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import numpy, sys; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1 | tail -1
  python -c "import cupy; print('cupy', cupy.__version__)" 2>&1 | tail -1
  python -c "import pyarrow; print('pyarrow', pyarrow.__version__)" 2>&1 | tail -1
  echo "== text -> signatures on the GPU: bit-identity with numpy, docs/s (real documents, 14x8 permutations)"
  timeout 300 python -m scripts.bench.gpu_minhash --docs 200000 --batch 50000 --check 3000
  echo "== larger batches"
  timeout 200 python -m scripts.bench.gpu_minhash --docs 400000 --batch 200000 --check 500
} 2>&1 | tee "$LOG"
