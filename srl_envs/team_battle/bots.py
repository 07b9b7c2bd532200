"""Scripted team battle players: they read the text prompt and answer ``ALLOCATE: ...``.

They parse the budget and the field count from the prompt line ``Each round you split B
troops over K fields`` (see :mod:`srl_envs.team_battle.render`), so they play any game
size, like an LLM would, with nothing but the observation.
"""

from __future__ import annotations

import re

import numpy as np

from srl_envs.policies import ScriptedPolicy

__all__ = ["BOTS", "Concentrated", "EqualSplit", "RandomAllocation", "read_game"]

_GAME_RE = re.compile(r"^Each round you split (\d+) troops over (\d+) fields", re.MULTILINE)


def read_game(observation: str) -> tuple[int, int]:
    """``(budget, num_fields)`` from a team battle prompt; ValueError for another text."""
    m = _GAME_RE.search(observation)
    if m is None:
        raise ValueError("not a team battle prompt: no 'Each round you split ...' line")
    return int(m.group(1)), int(m.group(2))


def _answer(troops) -> str:
    return "ALLOCATE: " + ",".join(str(int(t)) for t in troops)


class RandomAllocation(ScriptedPolicy):
    """Spends the whole budget, uniformly at random over all ways to split it."""

    name = "random"

    def act(self, observation: str) -> str:
        budget, k = read_game(observation)
        # Stars and bars: K-1 distinct bar positions among budget+K-1 slots.
        bars = np.sort(self.rng.choice(budget + k - 1, size=k - 1, replace=False))
        edges = np.concatenate(([-1], bars, [budget + k - 1]))
        return _answer(np.diff(edges) - 1)


class EqualSplit(ScriptedPolicy):
    """Spreads the budget evenly; the ``budget % K`` leftover troops go to random fields."""

    name = "heuristic"

    def act(self, observation: str) -> str:
        budget, k = read_game(observation)
        q, r = divmod(budget, k)
        troops = np.full(k, q)
        troops[self.rng.choice(k, size=r, replace=False)] += 1
        return _answer(troops)


class Concentrated(ScriptedPolicy):
    """Piles the budget evenly onto a random bare majority of fields (K // 2 + 1)."""

    name = "concentrate"

    def act(self, observation: str) -> str:
        budget, k = read_game(observation)
        chosen = self.rng.choice(k, size=k // 2 + 1, replace=False)
        q, r = divmod(budget, len(chosen))
        troops = np.zeros(k, dtype=np.int64)
        troops[chosen] = q
        troops[chosen[:r]] += 1  # chosen is already in random order
        return _answer(troops)


BOTS: dict[str, type[ScriptedPolicy]] = {
    "random": RandomAllocation,
    "heuristic": EqualSplit,
    "concentrate": Concentrated,
}
