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
