"""Scripted players of the commons game. They read the text prompt and answer in text.

* ``random``: a uniform harvest in ``0..max_harvest``.
* ``heuristic``: takes its share of the safe total the prompt states ("about N each"; with
  ``safe_hint=False`` it works that share out from the rules and the stock),
  so that when every player does the same the stock never shrinks; says so in a message.
* ``greedy``: always takes the maximum.

They parse the lines of :mod:`.render`'s prompt, anchored at line starts, so that text
inside other players' messages (always quoted after ``player_k:``) cannot fool them.
"""

from __future__ import annotations

import functools
import re

from srl_envs.coop_compete.core import Params, safe_total_harvest
from srl_envs.policies import ScriptedPolicy

__all__ = ["BOTS", "GreedyHarvest", "RandomHarvest", "SustainableHarvest"]

_MAX_RE = re.compile(r"^Rules: each round every fisher picks a harvest from 0 to (\d+)\.", re.M)
_SAFE_RE = re.compile(r"^Safe total this round: (\d+) \(about (\d+) each\)", re.M)
_FISHERS_RE = re.compile(r"^You are player_\d+, one of (\d+) fishers", re.M)
_REGROW_RE = re.compile(
    r"multiplied by ([0-9.]+) \(rounded down\), up to the capacity of (\d+)\. "
    r"If less than (\d+) is left"
)
_STOCK_RE = re.compile(r"^Stock now: (\d+) ", re.M)


def _safe_share(observation: str) -> int:
    """The per-head share of the safe total: read from the hint line, or, when the prompt
    has none (``safe_hint=False``), worked out from the rules and the stock it states."""
    m = _SAFE_RE.search(observation)
    if m:
        return int(m.group(2))
    fishers, regrow, stock = (r.search(observation) for r in (_FISHERS_RE, _REGROW_RE, _STOCK_RE))
    if not (fishers and regrow and stock):
        return 0
    return _share_from_rules(
        int(fishers.group(1)),
        regrow.group(1),
        int(regrow.group(2)),
        int(regrow.group(3)),
        int(stock.group(1)),
    )


@functools.lru_cache(maxsize=4096)
def _share_from_rules(n: int, factor: str, capacity: int, threshold: int, stock: int) -> int:
    """Cached: bots act every round of every env copy, and games revisit the same stocks."""
    params = Params(
        num_agents=n,
        capacity=capacity,
        regen_rate=float(factor) - 1.0,
        collapse_threshold=threshold,
        max_harvest=1,
    )
    return safe_total_harvest(params, stock) // n


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
        each = _safe_share(observation)
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
