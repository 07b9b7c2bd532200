.PHONY: setup train test test-slow lint golden bench
setup:
	bash scripts/setup.sh
train: setup
	.venv/bin/python -m srl_trainers.run
test: setup
	.venv/bin/python -m pytest
test-slow: setup
	.venv/bin/python -m pytest -m slow
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
golden:
	.venv/bin/python tests/golden/regenerate.py && .venv/bin/python tests/golden/trainer_metrics.py
