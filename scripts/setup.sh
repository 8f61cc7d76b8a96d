#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv and install the project into it.
#
#   bash scripts/setup.sh [EXTRAS]      EXTRAS defaults to "train,server,test"
#
# torch is installed first and on purpose: a plain "torch" requirement on a machine without one
# pulls a multi-GB CUDA build. With an NVIDIA driver present (nvidia-smi works) the CUDA build from
# PyPI is what you want; without one the CPU build is taken from PyTorch's CPU index when it can
# be reached, and otherwise the pinned version from the configured package index. TORCH_SPEC and
# TORCH_INDEX_URL override the choice (e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128).
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-train,server,test}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
cpu_index="https://download.pytorch.org/whl/cpu"

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    echo "setup: installing $torch_spec from $TORCH_INDEX_URL"
    "${pip[@]}" "$torch_spec" --index-url "$TORCH_INDEX_URL"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing the CUDA build of $torch_spec"
    "${pip[@]}" "$torch_spec"
  elif .venv/bin/python -c "import urllib.request as u; u.urlopen('$cpu_index/', timeout=5)" 2>/dev/null; then
    echo "setup: no GPU, installing the CPU build of $torch_spec"
    "${pip[@]}" "$torch_spec" --index-url "$cpu_index"
  else
    echo "setup: no GPU and no PyTorch index reachable, installing $torch_spec from the configured index"
    "${pip[@]}" "$torch_spec"
  fi
fi

echo "setup: installing the project with extras [$extras]"
"${pip[@]}" -e ".[$extras]"
.venv/bin/python -c "import torch, ttc_runtime; print(f'setup: ready (torch {torch.__version__}, cuda available: {torch.cuda.is_available()})')"
