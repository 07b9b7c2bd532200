"""Scripted players of the commons game. They read the text prompt and answer in text.

* ``random``: a uniform harvest in ``0..max_harvest``.
* ``heuristic``: takes its share of the safe total the prompt states ("about N each"),
  so that when every player does the same the stock never shrinks; says so in a message.
* ``greedy``: always takes the maximum.

They parse the lines of :mod:`.render`'s prompt, anchored at line starts, so that text
inside other players' messages (always quoted after ``player_k:``) cannot fool them.
"""

from __future__ import annotations

import re

from srl_envs.policies import ScriptedPolicy

__all__ = ["BOTS", "GreedyHarvest", "RandomHarvest", "SustainableHarvest"]

_MAX_RE = re.compile(r"^Rules: each round every fisher picks a harvest from 0 to (\d+)\.", re.M)
_SAFE_RE = re.compile(r"^Safe total this round: (\d+) \(about (\d+) each\)", re.M)


def _max_harvest(observation: str) -> int:
    m = _MAX_RE.search(observation)
    return int(m.group(1)) if m else 0


class RandomHarvest(ScriptedPolicy):
    """A uniformly random harvest between 0 and the maximum."""

    name = "random"

    def act(self, observation: str) -> str:
        return f"HARVEST: {int(self.rng.integers(0, _max_harvest(observation) + 1))}"


class SustainableHarvest(ScriptedPolicy):
    """Takes its per-head share of the safe total, so the stock persists."""

    name = "heuristic"

    def act(self, observation: str) -> str:
        m = _SAFE_RE.search(observation)
        each = int(m.group(2)) if m else 0
        return f"HARVEST: {each}\nMESSAGE: let's each take {each} so the lake lasts"


class GreedyHarvest(ScriptedPolicy):
    """Always takes the maximum."""

    name = "greedy"

    def act(self, observation: str) -> str:
        return f"HARVEST: {_max_harvest(observation)}"


BOTS: dict[str, type[ScriptedPolicy]] = {
    "random": RandomHarvest,
    "heuristic": SustainableHarvest,
    "greedy": GreedyHarvest,
}
