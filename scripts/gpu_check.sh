#!/usr/bin/env bash
# scripts/gpu_check.sh [OUT_DIR]      on a machine with an NVIDIA GPU, from the repository root
#
# Checks and measures the GPU paths in one go (bf16 training and the hf backend on the GPU with the real
# recipe, the benchmark on the real model or random-weight models of its architecture and of a 1B-class
# Llama, DeepSpeed ZeRO-2 under accelerate launch, vLLM where it is installed) and writes every figure to
# OUT_DIR/gpu_check.json (default runs/gpu-check; $OUT when set, as on the lent machines). See
# scripts/gpu_check.py for the steps and docs/gpus.md for what the figures mean.
#
# A machine that cannot download (the lent ones) gets humpback's missing dependencies as wheels carried
# in .whl/: make them on a machine with the registry with scripts/gpu_wheels.sh, then carry .whl.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-runs/gpu-check}}
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  # Only what the machine lacks: a carried wheel never replaces the machine's own torch or CUDA libraries.
  $PY -m pip install -q --no-index --find-links .whl --no-deps .whl/*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
exec "$PY" scripts/gpu_check.py --output "$OUT_DIR" "${@:2}"
