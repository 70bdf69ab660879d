#!/usr/bin/env bash
# Create .venv and install freqdata (editable, with its C extension) plus test tools.
# DALI (the [dali] extra, ~1 GB, no CUDA toolkit) is installed so its CPU pipeline is tested.
# torch: on a machine without an NVIDIA GPU the local CPU build torch==2.13.0 is pinned, so no
# CUDA packages are pulled; with a GPU, pip's default (CUDA) build is used. An already
# installed torch is kept. Set PYTHON to choose the interpreter (>= 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "freqdata needs Python >= 3.11 (set PYTHON=...)" >&2; exit 2; }
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $PIP install -q torch
  else
    $PIP install -q torch==2.13.0
  fi
fi
$PIP install -q setuptools wheel numpy
$PIP install -q --no-build-isolation -e ".[dev,dali,dask]"
