"""Commons (``srl/coop_compete-v0``): a common-pool resource dilemma for 2 to 8 agents.

The agents fish one shared lake. Each round every agent states how much it harvests and
may post a short public message that the others read next round. What is left regrows,
up to a capacity; over-harvesting collapses the stock and ends the game for everyone.
Taking much is best for one agent in one round, restraint is best for the group over the
game: the governance-of-the-commons setting of the LLM studies and Melting Pot's commons
substrates.

Agents
------
``player_0`` .. ``player_{N-1}`` with ``N = num_models`` in [2, 8]. All act every round,
simultaneously. No teams.

Rules (see :mod:`srl_envs.coop_compete.core` for the exact arithmetic)
-----------------------------------------------------------------------
The stock starts at ``capacity``. Each round agent ``i`` requests ``h_i`` in
``0..max_harvest``. If the requests exceed the stock, the stock is split in proportion
to the requests (largest-remainder integer rounding; ties to the larger request, then a
rotating seat order) and nothing is left. Then, with ``left`` the stock after harvest:
if ``left < collapse_threshold`` the stock collapses and the episode **terminates**;
otherwise ``stock = min(capacity, floor(left * (1 + regen_rate)))``. After
``episode_length`` rounds the episode is **truncated**. The game has no chance moves:
the same actions give the same transcript whatever the seed.

Actions
-------
Text mode (default): free text, parsed leniently (:mod:`srl_envs.coop_compete.parse`)::

    HARVEST: 12
    MESSAGE: let's each take 12

``HARVEST: <n>`` (also ``harvest=5``, "I harvest 5 units", a lone "5", number words up
to twenty). Decimals round down, numbers above ``max_harvest`` are clamped (valid),
negative numbers are invalid. ``MESSAGE:`` is optional, the rest of its line, made
printable ASCII and cut to ``message_max_chars``; the others see it next round.
**Fallback**: an invalid text (or a missing action) harvests 0 and posts no message,
``infos[agent]["invalid_action"]`` is ``True`` with the parser's reason in
``invalid_reason``, and ``format_penalty`` is subtracted from that agent's reward.
Harvesting 0 never harms the others, so garbage output cannot wreck the commons.

Structured mode: ``Discrete(max_harvest + 1)``, the requested harvest (no messages).
Actions follow :func:`srl_envs.structured.cast_action`: ``np.array([5])``, ``5.0``,
``np.float32(5)`` and ``torch.tensor([5])`` are the harvest 5; a fraction, a value out of
range, a missing action or anything else raises a ``ValueError`` naming the agent, the
value and the space (never a silent fallback).

Observations
------------
Text mode: the agent's prompt (printable ASCII): the rules, the round, the stock and
capacity, the safe total harvest this round (the largest total that keeps the stock
from shrinking) and its per-head share, the last 3 rounds (stock, own and everyone's
harvests, what was left and regrew), the others' messages from last round, and the
answer format with an example. After the last step it says the game is over.

Structured mode: ``Box(0, 1, (N + 4,), float32)``:
``[stock / capacity, rounds played / episode_length, safe total / capacity,
last round's total harvest / capacity, own last harvest / max_harvest,
the others' last harvests / max_harvest (seats i+1, i+2, ... mod N)]``.

Global state (both modes): ``env.state()`` in ``env.state_space``, the same ``Box`` and
layout seen from seat 0 (everyone's last harvests in seat order): all there is to know
but the messages, for centralised critics (MAPPO, MADDPG, QMIX).

Rewards
-------
Raw score (``infos[agent]["raw_score"]``): the agent's harvest this round divided by
its sustainable share ``capacity * r / (1 + r) / N`` (the per-head maximum sustainable
yield; 12.5 fish with the defaults), so 1.0 per round is the sustainable pace.
Rewards mix raw scores with :func:`srl_envs.rewards.mix_rewards`
(``cooperation_level``, ``competition_intensity``), minus ``format_penalty`` for an
invalid action. ``infos[agent]`` also holds ``harvest`` (received), ``requested``,
``group_harvest`` (everyone's total this round), ``stock`` (after regrowth),
``stock_before``, ``alive`` / ``collapsed``, ``round`` (1-based) and ``messages``
(agent -> message posted this round). In structured mode the infos hold the numbers only
(:func:`srl_envs.structured.numeric_info`: no ``messages``, ``action``, ``action_span``
or ``invalid_reason``), the same keys every step, so replay buffers can stack them.

Two things classic MARL libraries meet here:

* **The default cooperation level teaches the tragedy.** At ``cooperation_level=0.6``
  (the default) 40% of an agent's reward is its lead over the group's mean
  (:func:`srl_envs.rewards.mix_rewards`), so taking more pays the taker, and independent
  and shared-policy PPO (Stable-Baselines3 + SuperSuit, RLlib) learn to take the maximum
  and empty the lake in round 1, scoring below random play. At
  ``cooperation_level=1.0`` (every agent is paid the group's mean) shared-policy PPO
  learns the sustainable harvest: 9.92 raw score per agent over the 10 rounds against
  4.50 for random play (1.0 per round is the sustainable pace) in users' SB3 and RLlib
  runs; ``examples/marl_sb3.py`` measured 10.32 against 4.76 at 1.0 and 1.92 at 0.6 (all
  four take 24 in round 1). AgileRL's MADDPG (``examples/marl_agilerl.py``), whose
  critics see every agent, kept the lake alive at both levels (8.81 and 8.76).
* **Rewards through ``parallel_to_aec``** (Tianshou's and other AEC pipelines) are
  produced when the round is played, on the last agent's turn: the others read theirs
  at their next turn. A learner that credits a reward to the transition it just stored
  then sees 0 for every agent but the last, unless its n-step horizon covers a whole
  round of agents (``num_models`` turns).

Arguments
---------
``num_models`` (4): agents, [2, 8]. ``cooperation_level`` (0.6): [0, 1].
``episode_length`` (10): rounds, [1, 1000]. ``capacity`` (100): [2, 1e6].
``regen_rate`` (1.0, the stock doubles): (0, 10]. ``max_harvest`` (None =
``capacity // num_models``): [1, capacity]. ``collapse_threshold`` (5): [1, capacity-1].
``message_max_chars`` (120): [0, 500], 0 disables messages. ``action_mode`` ("text"):
"text" or "structured". ``competition_intensity`` (0.0): >= 0. ``format_penalty``
(0.1): >= 0. ``render_mode`` (None): None, "human" (``render()`` prints the view) or
"ansi" (``render()`` returns it). ``max_cycles`` (None): PettingZoo's name for
``episode_length`` (give one, or both equal). ``safe_hint`` (True): whether the
text prompt states the safe total and its per-head share (and shows that share as the
example answer). With ``False`` the prompt gives the rules, the stock and the history only,
so an agent has to work out a sustainable harvest itself: an untrained model then shows
how much restraint it has. The structured observation keeps the safe total either way.

Version History
---------------
* v0: initial version. ``safe_hint`` was added later; its default is the original
  prompt. Later, with valid play unchanged: structured actions are cast or rejected with
  a ``ValueError`` (they were a fallback harvest of 0), structured infos are numeric,
  ``state()`` / ``state_space``, ``max_cycles`` and ``render_mode="human"``. The text
  parser no longer reads a number that runs on into letters, digits or a comma (``1e2``,
  ``12abc``, ``0x10``, ``1,000``, ``2.5e1``) as its leading digits: such an answer is
  invalid, as in team battle (it was a harvest of 1, 12, 0, 1, 2). Only answers of that
  form score differently.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from srl_envs.base import RENDER_MODES, SRLParallelEnv
from srl_envs.checks import check_bool, check_int_range, episode_length_arg
from srl_envs.coop_compete import core
from srl_envs.coop_compete.core import Params, State
from srl_envs.coop_compete.parse import HarvestAction, parse_action
from srl_envs.coop_compete.render import Renderer, agent_name
from srl_envs.parsing import ParseResult

__all__ = ["FALLBACK_ACTION", "CoopCompeteEnv"]

FALLBACK_ACTION = HarvestAction(0, "")
# Characters outside the text observation charset (``string.printable``).


class CoopCompeteEnv(SRLParallelEnv):
    """The commons game as a PettingZoo ``ParallelEnv`` (see the module docstring)."""

    base_id: ClassVar[str] = "srl/coop_compete-v0"
    metadata: ClassVar[dict[str, Any]] = {
        "name": "coop_compete_v0",
        "render_modes": list(RENDER_MODES),
        "is_parallelizable": True,
    }
    action_prefix = "HARVEST:"

    def __init__(
        self,
        num_models: int = 4,
        cooperation_level: float = 0.6,
        episode_length: int | None = None,
        capacity: int = 100,
        regen_rate: float = 1.0,
        max_harvest: int | None = None,
        collapse_threshold: int = 5,
        message_max_chars: int = 120,
        action_mode: str = "text",
        competition_intensity: float = 0.0,
        format_penalty: float = 0.1,
        render_mode: str | None = None,
        safe_hint: bool = True,
        max_cycles: int | None = None,
    ) -> None:
        check_int_range("num_models", num_models, core.MIN_AGENTS, core.MAX_AGENTS)
        self.params = Params(
            num_agents=num_models,
            episode_length=episode_length_arg(episode_length, max_cycles, 10, 1, 1000),
            capacity=capacity,
            regen_rate=regen_rate,
            max_harvest=max_harvest,
            collapse_threshold=collapse_threshold,
            message_max_chars=message_max_chars,
        )
        self.safe_hint = check_bool("safe_hint", safe_hint)
        self._renderer = Renderer(self.params, safe_hint=self.safe_hint)
        self._index = {agent_name(i): i for i in range(self.params.num_agents)}
        self._state: State = core.initial_state(self.params)
        super().__init__(
            action_mode=action_mode,
            cooperation_level=cooperation_level,
            competition_intensity=competition_intensity,
            format_penalty=format_penalty,
            render_mode=render_mode,
        )

    @property
    def core_state(self) -> State:
        """The current (immutable) core state."""
        return self._state

    # ----------------------------------------------------------------- game hooks
    def _make_agents(self) -> list[str]:
        return list(self._index)

    def _core_reset(self, rng: np.random.Generator) -> None:
        self._state = core.initial_state(self.params)

    def _core_step(
        self, actions: dict[str, Any], rng: np.random.Generator
    ) -> tuple[dict[str, float], bool, bool, dict[str, dict[str, Any]]]:
        index = self._index
        harvests = {index[a]: act.amount for a, act in actions.items()}
        messages = {index[a]: act.message for a, act in actions.items()}
        self._state, outcome = core.step(self.params, self._state, harvests, messages)
        r = outcome.record
        posted = {a: self._state.messages[i] for a, i in index.items()}
        raw, extra = {}, {}
        for agent, i in index.items():
            raw[agent] = outcome.raw_scores[i]
            extra[agent] = {
                "harvest": r.received[i],
                "requested": r.requested[i],
                "group_harvest": r.total,
                "stock": r.stock_after,
                "stock_before": r.stock_before,
                "alive": not r.collapsed,
                "collapsed": r.collapsed,
                "round": r.round,
                "messages": dict(posted),
            }
        return raw, outcome.terminated, outcome.truncated, extra

    def _render_observation(self, agent: str) -> str:
        return self._renderer.prompt(self._state, self._index[agent])

    def _parse_action(self, agent: str, text: str) -> ParseResult:
        p = self.params
        return parse_action(text, p.max_harvest, p.message_max_chars)

    def _fallback_action(self, agent: str) -> HarvestAction:
        return FALLBACK_ACTION

    # ----------------------------------------------------------------- structured mode
    def _structured_observation_space(self, agent: str) -> spaces.Box:
        n = self.params.num_agents
        return spaces.Box(low=0.0, high=1.0, shape=(n + 4,), dtype=np.float32)

    def _structured_action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(self.params.max_harvest + 1)

    def _encode_observation(self, agent: str) -> np.ndarray:
        return self._encode(self._index[agent])

    def _encode(self, seat: int) -> np.ndarray:
        """The game as seat ``seat`` sees it (the last harvests start at that seat)."""
        p, s = self.params, self._state
        n = p.num_agents
        obs = np.zeros(n + 4, dtype=np.float32)
        obs[0] = s.stock / p.capacity
        obs[1] = s.round / p.episode_length
        obs[2] = 0.0 if s.done(p) else self._renderer.safe_total(s.stock) / p.capacity
        if s.history:
            last = s.history[-1]
            obs[3] = last.total / p.capacity
            for k in range(n):
                obs[4 + k] = last.received[(seat + k) % n] / p.max_harvest
        return np.clip(obs, 0.0, 1.0, out=obs)

    def _decode_action(self, agent: str, action: int) -> HarvestAction:
        return HarvestAction(action, "")

    def _state_space(self) -> spaces.Box:
        return self._structured_observation_space("player_0")

    def _encode_state(self) -> np.ndarray:
        return self._encode(0)

    def _render_global(self) -> str:
        return self._renderer.global_view(self._state)
