"""Prompt text for team battle: what each agent reads (printable ASCII, short, stable).

The prompt has three parts: the rules (fixed per agent and game), the state of play
(round, the last rounds' team totals per field, teammates' messages), and the answer
format with an example that is valid for this game's budget and field count. The bots in
:mod:`srl_envs.team_battle.bots` read the line ``Each round you split B troops over K
fields`` back, so keep it stable (a change is an observation change: bump the env
version).
"""

from __future__ import annotations

from collections.abc import Mapping

from srl_envs.team_battle.core import TEAM_NAMES, Params, State, apportion, team_of

__all__ = [
    "EXAMPLES",
    "HISTORY_SHOWN",
    "answer_text",
    "example_allocation",
    "format_round",
    "random_allocation",
    "render_global",
    "render_prompt",
    "rules_text",
]

# Only the last rounds are shown: small models lose track in long prompts.
HISTORY_SHOWN = 5
# What the answer line shows as its example (the env's ``answer_example`` argument).
EXAMPLES = ("fixed", "random", "none")


def example_allocation(params: Params) -> tuple[int, ...]:
    """A valid example for the prompt: the budget split in proportion K, K-1, ..., 1.

    For budget 10 over 5 fields this is ``3,3,2,1,1``.
    """
    return apportion(tuple(range(params.num_fields, 0, -1)), params.budget)


def random_allocation(params: Params, rng) -> tuple[int, ...]:
    """A valid example drawn from ``rng`` (a ``numpy.random.Generator``): the whole budget,
    uniformly over all the ways to split it over the fields (stars and bars)."""
    b, k = params.budget, params.num_fields
    bars = sorted(int(x) for x in rng.choice(b + k - 1, size=k - 1, replace=False))
    edges = [-1, *bars, b + k - 1]
    return tuple(edges[i + 1] - edges[i] - 1 for i in range(k))


def _has_chat(params: Params) -> bool:
    return params.team_size > 1 and params.message_max_chars > 0


def rules_text(params: Params, agent: str) -> str:
    """The fixed opening of ``agent``'s prompt (rules, team, budget, fields)."""
    team = team_of(agent)
    other = TEAM_NAMES[1 - TEAM_NAMES.index(team)]
    n, b, k = params.team_size, params.budget, params.num_fields
    players = "player" if n == 1 else "players"
    lines = [
        f"TEAM BATTLE. You are {agent} on team {team.upper()} ({n} {players}) "
        f"against team {other.upper()} ({n} {players}).",
        f"Each round you split {b} troops over {k} fields (whole numbers, total at most {b}).",
    ]
    if n > 1:
        lines.append("Your team's troops on a field add up.")
    lines.append("More troops on a field takes it; a tie takes nobody.")
    if params.uniform_values:
        lines.append("The team that takes more fields wins the round.")
    else:
        values = ",".join(map(str, params.values))
        lines.append(
            f"Field values: {values}. The team whose fields are worth more wins the round."
        )
    return "\n".join(lines)


def format_round(params: Params, number: int, totals: Mapping[str, tuple[int, ...]]) -> str:
    """One history line: ``Round 1: RED 8,8,8,8,8 | BLUE 12,4,10,6,8 -> RED took 2, ...``."""
    red, blue = totals["red"], totals["blue"]
    took = {"red": 0, "blue": 0}
    worth = {"red": 0, "blue": 0}
    for r, b, v in zip(red, blue, params.values):
        if r != b:
            t = "red" if r > b else "blue"
            took[t] += 1
            worth[t] += v
    if params.uniform_values:
        result = f"RED took {took['red']}, BLUE took {took['blue']}"
    else:
        result = (
            f"RED took {took['red']} (value {worth['red']}), "
            f"BLUE took {took['blue']} (value {worth['blue']})"
        )
    if worth["red"] == worth["blue"]:
        verdict = "draw"
    else:
        verdict = "RED won" if worth["red"] > worth["blue"] else "BLUE won"
    red_s, blue_s = ",".join(map(str, red)), ",".join(map(str, blue))
    return f"Round {number}: RED {red_s} | BLUE {blue_s} -> {result}, {verdict}"


def history_text(params: Params, state: State) -> str:
    """Round counter and the last rounds' team totals (identical for every agent)."""
    if state.done(params):
        lines = [f"Game over: all {params.episode_length} rounds played."]
    else:
        lines = [f"Round {state.round + 1} of {params.episode_length}."]
    if not state.history:
        lines.append("No rounds played yet.")
        return "\n".join(lines)
    first = max(0, len(state.history) - HISTORY_SHOWN)
    lines.append(f"Team troops on fields 1-{params.num_fields} in past rounds:")
    if first:
        lines.append(f"(rounds 1-{first} not shown)")
    lines.extend(
        format_round(params, r + 1, state.history[r]) for r in range(first, len(state.history))
    )
    return "\n".join(lines)


def messages_text(params: Params, state: State, agent: str) -> str:
    """Teammates' messages of the last round ("" when there are none to show)."""
    if not _has_chat(params):
        return ""
    team = team_of(agent)
    lines = [
        f"{sender}: {msg}"
        for sender, msg in state.messages.items()
        if msg and sender != agent and team_of(sender) == team
    ]
    if not lines:
        return ""
    return "Teammate messages:\n" + "\n".join(lines)


def answer_text(params: Params, example: tuple[int, ...] | None = None) -> str:
    """The answer format, with ``example`` (default :func:`example_allocation`); an empty
    tuple shows the format alone."""
    if example is None:
        example = example_allocation(params)
    k = params.num_fields
    line = f"Answer with: ALLOCATE: <{k} numbers>"
    if example:
        line += ", e.g. ALLOCATE: " + ",".join(map(str, example))
    lines = [line]
    if _has_chat(params):
        lines.append(
            f"You may add a line MESSAGE: <note to your team, max {params.message_max_chars} chars>"
        )
    return "\n".join(lines)


def render_prompt(
    params: Params,
    state: State,
    agent: str,
    *,
    rules: str | None = None,
    history: str | None = None,
    answer: str | None = None,
) -> str:
    """``agent``'s full prompt. The keyword parts may be passed in precomputed (the env
    caches them: rules and answer never change, the history is shared by all agents)."""
    parts = [
        rules if rules is not None else rules_text(params, agent),
        history if history is not None else history_text(params, state),
    ]
    chat = messages_text(params, state, agent)
    if chat:
        parts.append(chat)
    parts.append(answer if answer is not None else answer_text(params))
    return "\n".join(parts)


def render_global(params: Params, state: State) -> str:
    """The whole game for a human (``render_mode="ansi"``): history, scores, all messages."""
    lines = [
        f"Team battle {params.team_size}v{params.team_size}, {params.num_fields} fields, "
        f"budget {params.budget}, round {state.round}/{params.episode_length}",
    ]
    lines.extend(format_round(params, r + 1, t) for r, t in enumerate(state.history))
    lines.append(f"Score: RED {state.score['red']:+.2f}, BLUE {state.score['blue']:+.2f}")
    lines.extend(f"{a} says: {m}" for a, m in state.messages.items() if m)
    return "\n".join(lines)
