"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


# ---------------------------------------------------------------------- tiny model (models.py)
@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A tiny random Llama checkpoint (hidden 64, 2 layers) with a byte-level ChatML tokenizer."""
    from srl_trainers.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


# ---------------------------------------------------------------------- end tiny model


@pytest.fixture
def one_thread():
    """torch on one thread for the test (small networks train fastest so), then as before."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_vllm(monkeypatch):
    """vLLM looks uninstalled, as on a machine without it."""
    import importlib.util
    import sys

    find_spec = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "vllm" else find_spec(name, *a),
    )
