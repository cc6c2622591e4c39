#!/usr/bin/env bash
# Create (once) the project's virtual environment in .venv and install the project into it.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run again (it only installs what is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[env] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.lrlivae-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[env] installing dependencies (first run takes a few minutes)"
  python -m pip install -q --upgrade pip
  # The CPU build of torch; a GPU machine can install its CUDA build first and keep it.
  python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
export DVC_NO_ANALYTICS=1
