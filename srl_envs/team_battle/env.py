"""Team battle (``srl/team_battle-v0``): a team Colonel Blotto between two teams of LLMs.

Each round every agent spreads a fixed budget of troops over ``K`` battlefields. A team's
strength on a field is the sum of its members' troops; the stronger team takes the field.
The team whose fields are worth more wins the round. The game lasts ``episode_length``
rounds. Teammates may send each other one short message per round.

Agents/Teams
------------
``2 * team_size`` agents (``team_size`` in 1..8, default 4: a 4v4): ``red_0 .. red_{n-1}``
and ``blue_0 .. blue_{n-1}``; the id names the team. ``env.teams`` maps agent -> team and
``env.team_of(agent)`` gives one agent's team. All agents move simultaneously every
round; no agent leaves early.

Actions
-------
Text mode (default), one free-text answer per agent, read leniently (case-insensitive)::

    ALLOCATE: 3,3,2,1,1
    MESSAGE: heavy on field 1 next round

* The allocation is ``K`` whole non-negative numbers: after ``ALLOCATE:`` or bare
  (``3 3 2 1 1``, ``[3, 3, 2, 1, 1]``, ``3;3;2;1;1``), or by field
  (``field 1: 3, field 2: 3, field 3: 4``; unnamed fields get 0). The first list of
  exactly ``K`` numbers counts; a list of another length is invalid (never padded).
* Sum above ``budget``: scaled down proportionally to exactly ``budget`` troops
  (largest-remainder rounding, ties to the lower field). This is a valid action;
  ``infos[agent]["over_budget"]`` says it happened. Troops left unspent are lost.
* ``MESSAGE:`` (optional) up to the end of its line, cut to ``message_max_chars``
  printable characters. Teammates read it in the next round's prompt; the other team
  never sees it. Ignored when ``team_size == 1`` or ``message_max_chars == 0``.
* Invalid text (no list of ``K`` numbers, a negative or fractional number, an unknown or
  repeated field; the parser's reason is in ``infos[agent]["invalid_reason"]``): the
  agent plays the fallback, an equal split (``budget // K`` per field, the
  ``budget % K`` leftover troops on the first fields), sends no message, and loses
  ``format_penalty`` from its reward.

Structured mode: ``MultiDiscrete([budget + 1] * K)``, troops per field; a sum above
``budget`` is scaled down as in text mode. No messages. Actions follow
:func:`srl_envs.structured.cast_action`: lists, whole-number float arrays, arrays of shape
``(1, K)`` or ``(K, 1)`` and torch tensors are cast; the wrong number of fields, a
fraction, a value out of range, a missing action or anything else raises a
``ValueError`` naming the agent, the value and the space (never a silent fallback).

Observations
------------
Text mode: a prompt of printable ASCII with the rules, the agent's team, budget and
``K``, the round number, the team totals per field of both teams in the last 5 rounds
(with who took how many fields), the teammates' messages from the last round, and the
answer format with a valid example, chosen by ``answer_example``: ``"fixed"`` (default)
shows the budget split in proportion ``K, K-1, ..., 1`` (``ALLOCATE: 3,3,2,1,1`` for
budget 10 over 5 fields); ``"random"`` shows a fresh allocation every round, drawn from
the env's seeded rng uniformly over all the ways to spend the whole budget (the same for
every agent of a round); ``"none"`` shows the format alone (``ALLOCATE: <5 numbers>``).
A fixed example is a focal point: small models copy it, and RL from there can settle on it
(see ``benchmarks/RESULTS.md``); a random one shows the format without handing out a move,
but SmolLM2-135M follows the format less often with it (88% invalid answers at T = 1, vs 70%).

Structured mode: ``Box(0, 1, (2 * episode_length * K + K + 2,), float32)``, from the
agent's side: for every round slot ``r`` (zeros for rounds not yet played) its own
team's totals per field, then the other team's, each divided by ``team_size * budget``;
then the field values divided by the largest value; then ``round / episode_length``;
then the team flag (0 red, 1 blue).

Global state (both modes): ``env.state()`` in ``env.state_space``,
``Box(0, 1, (2 * episode_length * K + K + 1,), float32)``: the observation layout seen
from red (red's totals first) without the team flag, for centralised critics.

Rewards
-------
Raw score of every member of a team for a round (the same for teammates; the two teams'
scores sum to zero)::

    raw = result + 0.5 * (value_won - value_lost) / total_value

``result`` is +1 if the team's taken fields are worth more than the other team's, -1 if
less, 0 on a draw; ``value_won``/``value_lost`` are the summed values of the fields the
team / the other team took (with the default values of 1: fields won / lost). A field
with equal totals (a tie, including 0 vs 0) is taken by nobody. So ``raw`` is in
[-1.5, 1.5]. Rewards come from :func:`srl_envs.rewards.mix_rewards` with the teams; as the
raw team scores are already zero-sum, the reward of a team is ``raw * (c + (1 - c) * (1 +
k))`` (``c`` cooperation level, ``k`` competition intensity): teammates always get
identical rewards, and the teams' rewards are zero-sum at every ``c``. Invalid actions
cost ``format_penalty`` on top.

``infos[agent]`` adds to the common keys (``raw_score``, ``reward_components``,
``invalid_action``, ``invalid_reason``, ``action``): ``team``, ``round`` (1-based round
just played), ``fields_won``, ``fields_lost``, ``fields_tied``, ``round_result`` (+1/0/-1),
``margin``, ``team_totals`` (``{"red": (...), "blue": (...)}``), ``allocation`` (the
troops applied, after scaling), ``over_budget``, ``message`` and ``team_score`` (the
team's summed raw score so far). In structured mode the infos hold the numbers only
(:func:`srl_envs.structured.numeric_info`: no ``team``, ``message``, ``action``,
``allocation``, ``team_totals``, ``action_span`` or ``invalid_reason``), the same keys
every step, so replay buffers can stack them.

Through ``parallel_to_aec`` (Tianshou's and other AEC pipelines) a round's rewards are
produced on the last agent's turn, and the others read theirs at their next turn: a
learner that credits a reward to the transition it just stored sees 0 for all agents but
the last unless its n-step horizon covers a whole round (``2 * team_size`` turns).

The episode ends by termination (a natural end) after ``episode_length`` rounds; it is
never truncated.

Arguments
---------
* ``team_size`` (int, 1..8, default 4): agents per team.
* ``num_fields`` (int, 2..12, default 5): battlefields ``K``; raise it for harder stages.
* ``budget`` (int, 1..1000, default 10): troops per agent per round.
* ``episode_length`` (int, 1..50, default 3): rounds per game.
* ``field_values`` (``None`` or ``K`` ints in 1..100, default ``None`` = all 1).
* ``message_max_chars`` (int, 0..500, default 80): team chat length; 0 turns chat off.
* ``answer_example`` (``"fixed"``, ``"random"`` or ``"none"``, default ``"fixed"``): the
  example on the prompt's answer line, see Observations.
* ``cooperation_level`` (float in [0, 1], default 1.0), ``competition_intensity``
  (float >= 0, default 0.0): reward mixing, see Rewards.
* ``action_mode`` (``"text"`` or ``"structured"``), ``format_penalty`` (float >= 0,
  default 0.1), ``render_mode`` (``None``, ``"human"``: ``render()`` prints the view, or
  ``"ansi"``: ``render()`` returns it).
* ``max_cycles`` (int, default ``None``): PettingZoo's name for ``episode_length`` (give
  one, or both equal).

Version History
---------------
* v0: initial version. ``answer_example`` was added later; its default is the original
  prompt, so v0 observations are unchanged. Later, with valid play unchanged: structured
  actions are cast or rejected with a ``ValueError`` (they were an equal-split fallback),
  structured infos are numeric, ``state()`` / ``state_space``, ``max_cycles`` and
  ``render_mode="human"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from srl_envs.base import RENDER_MODES, SRLParallelEnv
from srl_envs.checks import check_choice, episode_length_arg
from srl_envs.parsing import ParseResult
from srl_envs.team_battle import core, render
from srl_envs.team_battle.core import TEAM_NAMES, Params, equal_split
from srl_envs.team_battle.parse import TeamAction, parse_action

__all__ = ["TeamBattleEnv"]


class TeamBattleEnv(SRLParallelEnv):
    """Team Colonel Blotto as a PettingZoo ``ParallelEnv`` (see the module docstring)."""

    base_id: ClassVar[str] = "srl/team_battle-v0"
    metadata: ClassVar[dict[str, Any]] = {
        "name": "team_battle_v0",
        "render_modes": list(RENDER_MODES),
        "is_parallelizable": True,
    }
    action_prefix = "ALLOCATE:"

    def __init__(
        self,
        *,
        team_size: int = 4,
        num_fields: int = 5,
        budget: int = 10,
        episode_length: int | None = None,
        field_values: Sequence[int] | None = None,
        message_max_chars: int = 80,
        answer_example: str = "fixed",
        cooperation_level: float = 1.0,
        competition_intensity: float = 0.0,
        action_mode: str = "text",
        format_penalty: float = 0.1,
        render_mode: str | None = None,
        max_cycles: int | None = None,
    ) -> None:
        self.params = Params(
            team_size=team_size,
            num_fields=num_fields,
            budget=budget,
            episode_length=episode_length_arg(
                episode_length, max_cycles, 3, *core.EPISODE_LENGTH_RANGE
            ),
            field_values=field_values,
            message_max_chars=message_max_chars,
        )
        self.answer_example = check_choice("answer_example", answer_example, render.EXAMPLES)
        p = self.params
        self._teams = {a: core.team_of(a) for a in core.agent_ids(p.team_size)}
        self._rules = {a: render.rules_text(p, a) for a in self._teams}
        self._answer = render.answer_text(p, () if answer_example == "none" else None)
        self._fallback = TeamAction(equal_split(p.budget, p.num_fields), "")
        self._state = core.initial_state(p)
        self._history_cache: tuple[int, str] = (-1, "")
        super().__init__(
            action_mode=action_mode,
            cooperation_level=cooperation_level,
            competition_intensity=competition_intensity,
            format_penalty=format_penalty,
            render_mode=render_mode,
        )

    # ----------------------------------------------------------------- teams
    @property
    def teams(self) -> dict[str, str]:
        """Agent -> team (``"red"`` or ``"blue"``)."""
        return self._teams

    @property
    def game_state(self) -> core.State:
        """The core state (read-only; rounds played, history, messages, team scores)."""
        return self._state

    # ----------------------------------------------------------------- core hooks
    def _make_agents(self) -> list[str]:
        return core.agent_ids(self.params.team_size)

    def _core_reset(self, rng: np.random.Generator) -> None:
        self._state = core.initial_state(self.params)
        self._history_cache = (-1, "")
        self._draw_example(rng)

    def _draw_example(self, rng: np.random.Generator) -> None:
        """With ``answer_example="random"``: this round's example, shared by every agent."""
        if self.answer_example == "random":
            example = render.random_allocation(self.params, rng)
            self._answer = render.answer_text(self.params, example)

    def _core_step(
        self, actions: dict[str, Any], rng: np.random.Generator
    ) -> tuple[dict[str, float], bool, bool, dict[str, dict[str, Any]]]:
        troops = {a: act.troops for a, act in actions.items()}
        messages = {a: act.message for a, act in actions.items() if act.message}
        self._state, out = core.step(self.params, self._state, troops, messages)
        if not out.done:
            self._draw_example(rng)
        k = self.params.num_fields
        per_team = {}
        for team in TEAM_NAMES:
            won = out.fields_won[team]
            lost = out.fields_won[TEAM_NAMES[1 - TEAM_NAMES.index(team)]]
            per_team[team] = {
                "team": team,
                "round": self._state.round,
                "fields_won": won,
                "fields_lost": lost,
                "fields_tied": k - won - lost,
                "round_result": out.result[team],
                "margin": out.margin[team],
                "team_totals": out.totals,
                "team_score": self._state.score[team],
            }
        raw, extra = {}, {}
        for agent, team in self._teams.items():
            raw[agent] = out.score[team]
            extra[agent] = {
                **per_team[team],
                "allocation": out.allocations[agent],
                "over_budget": out.scaled[agent],
                "message": messages.get(agent, ""),
            }
        return raw, out.done, False, extra

    # ----------------------------------------------------------------- text codec
    def _render_observation(self, agent: str) -> str:
        state = self._state
        if self._history_cache[0] != state.round:
            self._history_cache = (state.round, render.history_text(self.params, state))
        return render.render_prompt(
            self.params,
            state,
            agent,
            rules=self._rules[agent],
            history=self._history_cache[1],
            answer=self._answer,
        )

    def _parse_action(self, agent: str, text: str) -> ParseResult:
        return parse_action(text, self.params)

    def _fallback_action(self, agent: str) -> TeamAction:
        return self._fallback

    # ----------------------------------------------------------------- structured codec
    def _structured_observation_space(self, agent: str) -> spaces.Box:
        p = self.params
        size = 2 * p.episode_length * p.num_fields + p.num_fields + 2
        return spaces.Box(low=0.0, high=1.0, shape=(size,), dtype=np.float32)

    def _structured_action_space(self, agent: str) -> spaces.MultiDiscrete:
        p = self.params
        return spaces.MultiDiscrete([p.budget + 1] * p.num_fields)

    def _encode_observation(self, agent: str) -> np.ndarray:
        team = self._teams[agent]
        return np.append(self._encode(team), np.float32(TEAM_NAMES.index(team)))

    def _encode(self, team: str) -> np.ndarray:
        """The game seen from ``team``: its totals first in every round (no team flag)."""
        p, state = self.params, self._state
        k, length = p.num_fields, p.episode_length
        other = TEAM_NAMES[1 - TEAM_NAMES.index(team)]
        obs = np.zeros(2 * length * k + k + 1, dtype=np.float32)
        history = np.zeros((length, 2, k), dtype=np.float32)
        for r, totals in enumerate(state.history):
            history[r, 0] = totals[team]
            history[r, 1] = totals[other]
        obs[: 2 * length * k] = history.ravel() / (p.team_size * p.budget)
        values = np.asarray(p.values, dtype=np.float32)
        obs[2 * length * k : 2 * length * k + k] = values / values.max()
        obs[-1] = state.round / length
        return obs

    def _decode_action(self, agent: str, action: np.ndarray) -> TeamAction:
        return TeamAction(tuple(int(x) for x in action), "")

    def _state_space(self) -> spaces.Box:
        p = self.params
        size = 2 * p.episode_length * p.num_fields + p.num_fields + 1
        return spaces.Box(low=0.0, high=1.0, shape=(size,), dtype=np.float32)

    def _encode_state(self) -> np.ndarray:
        return self._encode(TEAM_NAMES[0])

    def _render_global(self) -> str:
        return render.render_global(self.params, self._state)
