"""The rules of team Colonel Blotto: no text, no spaces, no PettingZoo.

Two teams (``red``, ``blue``) of ``team_size`` players. Every round each player spreads
at most ``budget`` troops (whole numbers) over ``num_fields`` battlefields. A team's
strength on a field is the sum of its members' troops there; the stronger team takes the
field, an exact tie gives the field to nobody. The team whose taken fields are worth more
(each field is worth ``field_values[f]``, 1 by default) wins the round.

Raw score of every member of a team for one round (identical for teammates, zero-sum
across the two teams)::

    score = outcome + MARGIN_WEIGHT * (value_won - value_lost) / total_value

with ``outcome`` +1 (win), 0 (draw) or -1 (loss), so a score lies in [-1.5, 1.5].

Over budget: an allocation whose sum exceeds ``budget`` is scaled down proportionally to
exactly ``budget`` troops with largest-remainder rounding (ties to the lower field
index), see :func:`scale_to_budget`. It is a repair, not an error.

The game always lasts ``episode_length`` rounds and then ends naturally (termination,
never truncation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from srl_envs.checks import check_int_range

__all__ = [
    "MARGIN_WEIGHT",
    "MAX_SCORE",
    "SIMULTANEOUS",
    "TEAMS",
    "TEAM_NAMES",
    "ZERO_SUM",
    "Outcome",
    "Params",
    "State",
    "agent_ids",
    "apportion",
    "equal_split",
    "initial_state",
    "scale_to_budget",
    "step",
    "team_of",
]

# ----------------------------------------------------------------- what the game is
SIMULTANEOUS = True  # every player moves every round, none sees the others' moves
ZERO_SUM = True  # between the two teams: red's score == -blue's score every round
TEAMS = True  # teammates share one score
GENERAL_SUM = False
DETERMINISTIC = True  # no chance in the rules (randomness lives only in the bots)
PERFECT_INFORMATION = False  # simultaneous moves
TEAM_NAMES = ("red", "blue")
MARGIN_WEIGHT = 0.5
MAX_SCORE = 1.0 + MARGIN_WEIGHT  # |score| <= MAX_SCORE

# Argument ranges (also quoted in the env's documentation).
TEAM_SIZE_RANGE = (1, 8)
NUM_FIELDS_RANGE = (2, 12)
BUDGET_RANGE = (1, 1000)
EPISODE_LENGTH_RANGE = (1, 50)
FIELD_VALUE_RANGE = (1, 100)
MESSAGE_CHARS_RANGE = (0, 500)


@dataclass(frozen=True)
class Params:
    """Game parameters, validated on construction (errors name the argument and range)."""

    team_size: int = 4
    num_fields: int = 5
    budget: int = 10
    episode_length: int = 3
    field_values: Sequence[int] | None = None  # None: every field is worth 1 (stored as a tuple)
    message_max_chars: int = 80

    def __post_init__(self) -> None:
        check_int_range("team_size", self.team_size, *TEAM_SIZE_RANGE)
        check_int_range("num_fields", self.num_fields, *NUM_FIELDS_RANGE)
        check_int_range("budget", self.budget, *BUDGET_RANGE)
        check_int_range("episode_length", self.episode_length, *EPISODE_LENGTH_RANGE)
        check_int_range("message_max_chars", self.message_max_chars, *MESSAGE_CHARS_RANGE)
        if self.field_values is None:
            values = (1,) * self.num_fields
        else:
            if isinstance(self.field_values, str | bytes) or not isinstance(
                self.field_values, Sequence
            ):
                raise ValueError(
                    f"field_values must be a sequence of {self.num_fields} integers in "
                    f"{list(FIELD_VALUE_RANGE)} (one per field) or None, got {self.field_values!r}"
                )
            if len(self.field_values) != self.num_fields:
                raise ValueError(
                    f"field_values must have num_fields={self.num_fields} entries, "
                    f"got {len(self.field_values)}"
                )
            values = tuple(
                check_int_range(f"field_values[{i}]", v, *FIELD_VALUE_RANGE)
                for i, v in enumerate(self.field_values)
            )
        # Normalize ints (numpy ints become int) so that Params compare and hash simply.
        for name in ("team_size", "num_fields", "budget", "episode_length", "message_max_chars"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "field_values", values)

    @property
    def values(self) -> tuple[int, ...]:
        """The value of each field (never ``None``)."""
        return self.field_values  # type: ignore[return-value]

    @property
    def total_value(self) -> int:
        return sum(self.values)

    @property
    def uniform_values(self) -> bool:
        return all(v == 1 for v in self.values)


def agent_ids(team_size: int) -> list[str]:
    """``red_0 .. red_{n-1}, blue_0 .. blue_{n-1}``: the id names the team."""
    return [f"{team}_{i}" for team in TEAM_NAMES for i in range(team_size)]


@dataclass(frozen=True)
class State:
    """The game after ``round`` rounds.

    ``history[r]`` holds round ``r``'s per-field team totals as ``{team: totals}``;
    ``messages`` holds each agent's message of the last round (read by its teammates);
    ``score`` is each team's summed raw score so far.
    """

    round: int
    history: tuple[Mapping[str, tuple[int, ...]], ...]
    messages: Mapping[str, str]
    score: Mapping[str, float]

    def done(self, params: Params) -> bool:
        return self.round >= params.episode_length


class Outcome(NamedTuple):
    """What happened in one round (the env turns it into rewards and infos)."""

    totals: dict[str, tuple[int, ...]]  # team -> troops per field
    winner: tuple[str | None, ...]  # per field: the team that took it, None on a tie
    fields_won: dict[str, int]  # team -> number of fields taken
    value_won: dict[str, int]  # team -> summed value of the fields taken
    result: dict[str, int]  # team -> +1 win, 0 draw, -1 loss
    margin: dict[str, float]  # team -> MARGIN_WEIGHT * (value_won - value_lost) / total_value
    score: dict[str, float]  # team -> result + margin (every member's raw score)
    allocations: dict[str, tuple[int, ...]]  # agent -> troops applied (after scaling)
    scaled: dict[str, bool]  # agent -> allocation was over budget and scaled down
    done: bool  # the episode has ended


def initial_state(params: Params) -> State:
    return State(round=0, history=(), messages={}, score={t: 0.0 for t in TEAM_NAMES})


def team_of(agent: str) -> str:
    return agent.split("_", 1)[0]


def equal_split(budget: int, num_fields: int) -> tuple[int, ...]:
    """``budget`` spread evenly; the first ``budget % num_fields`` fields get one more."""
    q, r = divmod(budget, num_fields)
    return tuple(q + 1 if f < r else q for f in range(num_fields))


def apportion(weights: Sequence[int], total: int) -> tuple[int, ...]:
    """Split ``total`` in proportion to ``weights`` (non-negative, positive sum), exactly.

    Field ``f`` gets ``floor(weights[f] * total / sum(weights))``; the units left over go
    one each to the fields with the largest remainders, ties to the lower field index.
    Integer arithmetic only, so the result is exact and deterministic.
    """
    weight_sum = sum(weights)
    quotas = [divmod(w * total, weight_sum) for w in weights]
    shares = [q for q, _ in quotas]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda f: (-quotas[f][1], f))
    for f in order[:left]:
        shares[f] += 1
    return tuple(shares)


def scale_to_budget(troops: Sequence[int], budget: int) -> tuple[int, ...]:
    """An over-budget allocation scaled down to exactly ``budget`` troops
    (:func:`apportion`); an allocation within budget is returned unchanged."""
    if sum(troops) <= budget:
        return tuple(troops)
    return apportion(troops, budget)


def _check_allocation(agent: str, troops: Sequence[int], num_fields: int) -> None:
    if len(troops) != num_fields:
        raise ValueError(f"{agent}: allocation needs {num_fields} numbers, got {len(troops)}")
    for t in troops:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"{agent}: troops must be non-negative ints, got {troops!r}")


def step(
    params: Params,
    state: State,
    allocations: Mapping[str, Sequence[int]],
    messages: Mapping[str, str] | None = None,
) -> tuple[State, Outcome]:
    """Play one round.

    Args:
        params: the game parameters.
        state: the game before this round (must not be finished).
        allocations: agent -> troops per field for EVERY agent (non-negative ints, length
            ``num_fields``; over-budget allocations are scaled down, see
            :func:`scale_to_budget`).
        messages: agent -> message for its teammates (already sanitized); missing agents
            send none.

    Returns:
        ``(new_state, outcome)``. Raises ``ValueError`` on a malformed allocation or a
        finished game: the env adapter guarantees neither happens.
    """
    if state.done(params):
        raise ValueError("the game is over: call initial_state() for a new one")
    k = params.num_fields
    expected = agent_ids(params.team_size)
    if set(allocations) != set(expected):
        raise ValueError(f"allocations must cover exactly the agents {expected}")
    totals = {t: [0] * k for t in TEAM_NAMES}
    applied: dict[str, tuple[int, ...]] = {}
    scaled: dict[str, bool] = {}
    for agent in expected:
        troops = allocations[agent]
        _check_allocation(agent, troops, k)
        fixed = scale_to_budget(troops, params.budget)
        applied[agent] = fixed
        scaled[agent] = fixed != tuple(troops)
        team_totals = totals[team_of(agent)]
        for f in range(k):
            team_totals[f] += fixed[f]
    red, blue = (tuple(totals[t]) for t in TEAM_NAMES)
    winner = tuple("red" if r > b else "blue" if b > r else None for r, b in zip(red, blue))
    values = params.values
    fields_won = {t: sum(1 for w in winner if w == t) for t in TEAM_NAMES}
    value_won = {t: sum(v for w, v in zip(winner, values) if w == t) for t in TEAM_NAMES}
    diff = value_won["red"] - value_won["blue"]
    red_result = (diff > 0) - (diff < 0)
    red_margin = MARGIN_WEIGHT * diff / params.total_value
    result = {"red": red_result, "blue": -red_result}
    margin = {"red": red_margin, "blue": 0.0 - red_margin}  # 0.0 - x: no "-0.0"
    score = {t: result[t] + margin[t] for t in TEAM_NAMES}
    round_totals = {"red": red, "blue": blue}
    new_state = State(
        round=state.round + 1,
        history=(*state.history, round_totals),
        messages=dict(messages or {}),
        score={t: state.score[t] + score[t] for t in TEAM_NAMES},
    )
    outcome = Outcome(
        totals=round_totals,
        winner=winner,
        fields_won=fields_won,
        value_won=value_won,
        result=result,
        margin=margin,
        score=score,
        allocations=applied,
        scaled=scaled,
        done=new_state.done(params),
    )
    return new_state, outcome
