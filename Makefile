.PHONY: setup setup-vllm train test test-slow test-vllm lint golden bench
setup:
	bash scripts/setup.sh
train: setup
	.venv/bin/python -m srl_trainers.run
test: setup
	.venv/bin/python -m pytest
test-slow: setup
	.venv/bin/python -m pytest -m slow
setup-vllm:
	bash scripts/setup_vllm.sh
test-vllm: setup-vllm
	.venv-vllm/bin/python -m pytest -m vllm tests/vllm
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
golden:
	.venv/bin/python tests/golden/regenerate.py && .venv/bin/python tests/golden/trainer_metrics.py
