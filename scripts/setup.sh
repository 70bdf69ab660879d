#!/usr/bin/env bash
# Create .venv and install freqdata (editable, with its C extension) plus the test tools.
#
#   scripts/setup.sh           what `make demo` needs: torch, freqdata[dev]
#   scripts/setup.sh --test    what `make test` needs: also the [dali] and [dask] extras
#                              (DALI is ~1 GB; its CPU pipeline is tested, no CUDA toolkit)
#
# 1. System requirements (a C compiler, Python >= 3.11 with its headers and venv, the
#    libjpeg-turbo headers) are checked first. Missing ones are installed with apt-get when
#    running as root on Debian/Ubuntu; otherwise the exact command is printed (exit 2).
# 2. torch: on a machine without an NVIDIA GPU the CPU build torch==2.13.0+cpu is installed,
#    from PyTorch's CPU wheel index (short timeout) or else from the configured index, but only
#    if `pip install --dry-run --report` shows it plans no nvidia-* / triton package (exit 2
#    otherwise). With a GPU, pip's default (CUDA) build. An installed torch is kept.
# Set PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
WITH_TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
  esac
done
say() { echo "setup: $*" >&2; }

# ---------------------------------------------------------------- system requirements
missing_packages() {  # prints the Debian/Ubuntu packages of what is missing
  local pyver jpegdev
  pyver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  jpegdev=libjpeg62-turbo-dev
  if grep -qi '^ID=ubuntu' /etc/os-release 2>/dev/null; then jpegdev=libjpeg-turbo8-dev; fi
  command -v cc >/dev/null 2>&1 || echo gcc
  "$PYTHON" - <<'EOF' || echo "python$pyver-dev"
import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
EOF
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || echo "python$pyver-venv"
  if command -v cc >/dev/null 2>&1; then
    echo '#include <stdio.h>
#include <jpeglib.h>' | cc -E -x c - >/dev/null 2>&1 || echo "$jpegdev"
  elif [ ! -f /usr/include/jpeglib.h ]; then
    echo "$jpegdev"
  fi
}

if [ ! -x .venv/bin/python ]; then
  command -v "$PYTHON" >/dev/null 2>&1 \
    || { say "no $PYTHON found: install Python >= 3.11 (or set PYTHON=...)"; exit 2; }
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { say "freqdata needs Python >= 3.11 (set PYTHON=...)"; exit 2; }
fi
MISSING=$(missing_packages | sort -u | tr '\n' ' ' | sed 's/ *$//')
if [ -n "$MISSING" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: $MISSING"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $MISSING >/dev/null
  else
    say "missing system packages; install them with:"
    echo "    sudo apt-get update && sudo apt-get install -y $MISSING" >&2
    say "(on Fedora/RHEL: gcc python3-devel libjpeg-turbo-devel)"
    exit 2
  fi
fi

# ---------------------------------------------------------------- venv and torch
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

cuda_free() {  # $1: a pip --report JSON; true when it plans no nvidia-* / triton package
  .venv/bin/python - "$1" <<'EOF'
import json, sys
names = [i["metadata"]["name"].lower() for i in json.load(open(sys.argv[1]))["install"]]
bad = [n for n in names if n.startswith("nvidia-") or n == "triton"]
if bad:
    print("setup: the configured index offers torch with CUDA packages: " + ", ".join(bad),
          file=sys.stderr)
sys.exit(bool(bad))
EOF
}

install_cpu_torch() {
  if $PIP install -q --timeout 10 --retries 0 --index-url "$TORCH_CPU_INDEX" \
      "torch==$TORCH_VERSION+cpu" 2>/dev/null; then
    return 0
  fi
  say "PyTorch's CPU index not reachable: trying the configured index for torch==$TORCH_VERSION"
  local report
  report=$(mktemp)
  $PIP install -q --dry-run --ignore-installed --report "$report" "torch==$TORCH_VERSION"
  if ! cuda_free "$report"; then
    rm -f "$report"
    say "refusing to install CUDA wheels on a machine without an NVIDIA GPU; install the CPU"
    say "build yourself (.venv/bin/pip install torch==$TORCH_VERSION+cpu --index-url" \
        "$TORCH_CPU_INDEX) and run setup again"
    exit 2
  fi
  rm -f "$report"
  $PIP install -q "torch==$TORCH_VERSION"
}

$PIP install -q setuptools wheel numpy
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if has_gpu; then
    $PIP install -q torch
  else
    install_cpu_torch
    .venv/bin/python -c 'import sys, torch; sys.exit("+cpu" not in torch.__version__)' || {
      say "torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') is not" \
          "the CPU build"
      exit 2
    }
  fi
fi

# ---------------------------------------------------------------- freqdata
EXTRAS=dev
if [ "$WITH_TEST" = 1 ]; then EXTRAS=dev,dali,dask; fi
$PIP install -q --no-build-isolation -e ".[$EXTRAS]"
say "ready: .venv (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'),"\
" extras $EXTRAS)"
