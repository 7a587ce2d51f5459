#!/usr/bin/env bash
# scripts/gpu_wheels.sh [PYTHON_VERSION]     e.g. scripts/gpu_wheels.sh 3.12   (needs the package registry)
#
# Fills .whl/ with the wheels that humpback needs and the lent GPU machines lack (they have CUDA torch,
# transformers, peft, accelerate, pyarrow, pandas, fsspec, matplotlib, but no trl, datasets, deepspeed,
# wandb or vLLM, and cannot download): pure-Python ones, and binary ones for the target's Python version
# (the lent machines run Python 3.12). scripts/gpu_check.sh installs them there. Together they stay under
# the 64 MiB a device call can carry; vLLM cannot be carried (its wheel alone is far larger).
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
mkdir -p .whl
PURE="trl datasets dill multiprocess warcio selectolax py3langid gguf hjson pydantic pydantic-core
      annotated-types typing-inspection nltk absl-py"
# Binary wheels for the target interpreter (manylinux, x86-64); pure-Python ones resolve the same way.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d .whl $PURE
# DeepSpeed and rouge-score ship only source archives: build them here as pure-Python wheels (DeepSpeed's
# CUDA ops compile on first use there, with the machine's nvcc).
DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps -w .whl deepspeed "rouge-score>=0.1.2"
du -sh .whl
