"""Scripted policies: fixed players that read the text observation and write a text action.

They use the same interface as an LLM policy (prompt in, text out), so they serve as
baselines, opponents, teammates and test players. Each game defines its own bots in its
``bots`` module and lists them in its registry entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["ScriptedPolicy"]


class ScriptedPolicy(ABC):
    """A fixed policy over text observations.

    Args:
        seed: seeds the policy's own generator (random bots use it; heuristics may not).
    """

    name: str = "scripted"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Reseed between episodes (optional)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    @abstractmethod
    def act(self, observation: str) -> str:
        """Return the action text for this text observation."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
