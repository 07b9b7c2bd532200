"""Rules of the commons game: a pure core, no LLM, no PettingZoo, no prompt text.

N agents share an integer stock of a renewable resource (fish in a lake). Each round:

1. Every agent requests a harvest ``h_i`` in ``0..max_harvest``.
2. **Rationing.** If ``sum(h_i) <= stock`` everyone gets what they asked for. Otherwise
   the whole stock ``S`` is split in proportion to the requests (Hamilton / largest
   remainder, exact integer arithmetic): agent ``i`` first gets ``floor(S * h_i / R)``
   with ``R = sum(h)``; the few units left go one each to the agents with the largest
   remainders ``(S * h_i) mod R``, ties broken by the larger request, then by a
   rotating order that starts at agent ``round mod N`` (so no seat is favoured over a
   game). Nobody ever gets more than they asked for, and rationing empties the stock.
3. **Collapse.** ``left = stock - sum(received)``. If ``left < collapse_threshold`` the
   stock collapses: it does not regrow and the episode terminates.
4. **Regeneration.** Otherwise ``stock = min(capacity, floor(left * (1 + regen_rate)))``.
5. The episode is truncated after ``episode_length`` rounds without a collapse.

Messages are opaque strings here: the core only stores the last round's messages so a
renderer can show them.

Sustainability: from stock ``S`` the stock does not shrink when ``left`` satisfies
``floor(left * (1 + r)) >= S``; :func:`safe_total_harvest` is the largest total harvest
that keeps it so (and keeps ``left >= collapse_threshold``). At full stock it is about
``capacity * r / (1 + r)``: 50 of 100 when the stock doubles. The per-agent
sustainable share :func:`sustainable_share` ``= capacity * r / (1 + r) / N`` scales the
raw score: an agent's raw score for a round is ``received harvest / sustainable_share``
(1.0 = its fair share of the maximum sustainable yield).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from srl_envs.checks import check_float_range, check_int_range

__all__ = [
    "MAX_AGENTS",
    "MIN_AGENTS",
    "NUM_AGENTS",
    "SIMULTANEOUS",
    "TEAMS",
    "ZERO_SUM",
    "Outcome",
    "Params",
    "RoundRecord",
    "State",
    "initial_state",
    "ration",
    "regrow",
    "safe_total_harvest",
    "step",
    "sustainable_share",
]

# What the game is, declared up front.
SIMULTANEOUS = True  # every agent acts every round, without seeing the others' choice
ZERO_SUM = False  # general-sum: the group can do well or badly together
TEAMS = False  # no teams: every agent scores its own harvest
MIN_AGENTS = 2
MAX_AGENTS = 8
NUM_AGENTS = (MIN_AGENTS, MAX_AGENTS)

# Guards float rounding in floor(left * (1 + r)) (e.g. 10 * 1.1 = 11.000000000000002).
_EPS = 1e-9


@dataclass(frozen=True)
class Params:
    """Validated game parameters (errors name the argument and its allowed range).

    ``max_harvest=None`` means ``capacity // num_agents``: then all agents taking the
    maximum at full stock empty it in one round.
    """

    num_agents: int = 4
    episode_length: int = 10
    capacity: int = 100
    regen_rate: float = 1.0
    max_harvest: int | None = None
    collapse_threshold: int = 5
    message_max_chars: int = 120

    def __post_init__(self) -> None:
        check_int_range("num_agents", self.num_agents, MIN_AGENTS, MAX_AGENTS)
        check_int_range("episode_length", self.episode_length, 1, 1000)
        check_int_range("capacity", self.capacity, 2, 1_000_000)
        check_float_range("regen_rate", self.regen_rate, 0.0, 10.0, low_open=True)
        check_int_range("collapse_threshold", self.collapse_threshold, 1, self.capacity - 1)
        check_int_range("message_max_chars", self.message_max_chars, 0, 500)
        if self.max_harvest is None:
            object.__setattr__(self, "max_harvest", max(1, self.capacity // self.num_agents))
        else:
            check_int_range("max_harvest", self.max_harvest, 1, self.capacity)
        # Store plain Python numbers (numpy scalars are accepted on input).
        for name in (
            "num_agents",
            "episode_length",
            "capacity",
            "max_harvest",
            "collapse_threshold",
            "message_max_chars",
        ):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "regen_rate", float(self.regen_rate))


@dataclass(frozen=True)
class RoundRecord:
    """What happened in one round (indices are agent indices)."""

    round: int  # 1-based
    stock_before: int
    requested: tuple[int, ...]
    received: tuple[int, ...]
    left: int
    stock_after: int
    collapsed: bool

    @property
    def total(self) -> int:
        return sum(self.received)


@dataclass(frozen=True)
class State:
    """The whole game state. ``round`` counts the rounds played so far."""

    stock: int
    round: int = 0
    collapsed: bool = False
    history: tuple[RoundRecord, ...] = ()
    messages: tuple[str, ...] = ()  # posted last round, by agent index

    def done(self, params: Params) -> bool:
        return self.collapsed or self.round >= params.episode_length


@dataclass(frozen=True)
class Outcome:
    """The result of one :func:`step`: per-agent harvests and the episode flags."""

    record: RoundRecord
    raw_scores: tuple[float, ...]
    terminated: bool
    truncated: bool


def initial_state(params: Params) -> State:
    """The stock starts full; nobody has posted a message yet."""
    return State(stock=params.capacity, messages=("",) * params.num_agents)


def sustainable_share(params: Params) -> float:
    """Per-agent share of the maximum sustainable yield, the unit of the raw score."""
    r = params.regen_rate
    return params.capacity * r / (1.0 + r) / params.num_agents


def regrow(params: Params, left: int) -> int:
    """Stock after regeneration from ``left`` (no collapse check)."""
    return min(params.capacity, math.floor(left * (1.0 + params.regen_rate) + _EPS))


def safe_total_harvest(params: Params, stock: int) -> int:
    """The largest total harvest from ``stock`` after which the stock does not shrink.

    That is the largest ``H`` with ``regrow(stock - H) >= stock`` and
    ``stock - H >= collapse_threshold`` (0 when no harvest is safe).
    """
    left = max(params.collapse_threshold, math.ceil(stock / (1.0 + params.regen_rate) - _EPS))
    while left < stock and regrow(params, left) < stock:
        left += 1
    return max(0, stock - left)


def ration(stock: int, requested: tuple[int, ...], start: int = 0) -> tuple[int, ...]:
    """Split ``stock`` among the requests (see the module docstring for the rule).

    ``start`` is the agent index that wins the first tie of the rotating order.
    """
    total = sum(requested)
    if total <= stock:
        return tuple(requested)
    n = len(requested)
    received = [stock * h // total for h in requested]
    leftover = stock - sum(received)
    order = sorted(
        range(n),
        key=lambda i: (-(stock * requested[i] % total), -requested[i], (i - start) % n),
    )
    for i in order[:leftover]:
        received[i] += 1
    return tuple(received)


def step(
    params: Params, state: State, harvests: Mapping[int, int], messages: Mapping[int, str]
) -> tuple[State, Outcome]:
    """Play one round. ``harvests``/``messages`` map agent index -> request / message.

    Requests must be integers in ``0..max_harvest`` (parsers clamp before this);
    a missing message is the empty string. Raises ``ValueError`` on a finished game or
    malformed requests: those are programming errors, not agent mistakes.
    """
    if state.done(params):
        raise ValueError("step() on a finished game: start a new one with initial_state()")
    n = params.num_agents
    requested = []
    for i in range(n):
        h = harvests.get(i)
        if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= params.max_harvest:
            raise ValueError(
                f"harvest of agent {i} must be an int in [0, {params.max_harvest}], got {h!r}"
            )
        requested.append(h)
    requested = tuple(requested)
    received = ration(state.stock, requested, start=state.round % n)
    left = state.stock - sum(received)
    collapsed = left < params.collapse_threshold
    stock_after = left if collapsed else regrow(params, left)
    rnd = state.round + 1
    record = RoundRecord(
        round=rnd,
        stock_before=state.stock,
        requested=requested,
        received=received,
        left=left,
        stock_after=stock_after,
        collapsed=collapsed,
    )
    new_state = State(
        stock=stock_after,
        round=rnd,
        collapsed=collapsed,
        history=(*state.history, record),
        messages=tuple(messages.get(i, "") for i in range(n)),
    )
    share = sustainable_share(params)
    outcome = Outcome(
        record=record,
        raw_scores=tuple(h / share for h in received),
        terminated=collapsed,
        truncated=not collapsed and rnd >= params.episode_length,
    )
    return new_state, outcome
