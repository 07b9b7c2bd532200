"""The thin adapter between a pure game core and PettingZoo's ``ParallelEnv``.

A game subclasses :class:`SRLParallelEnv` and fills in a few hooks (reset and step of its
core, the prompt renderer, the text parser, and the numeric encodings of the structured
mode and of the global state). Everything every game shares lives here: the two action
modes, seeding, cached spaces, invalid-action handling, reward mixing, the ``infos``
layout, ``state()`` and rendering.

``infos[agent]`` after every step holds at least:

* ``raw_score``: the game's raw score for this agent this step (before mixing),
* ``reward_components``: the named parts of the reward (``mixed``, ``format_penalty``),
* ``invalid_action`` (bool) and ``invalid_reason`` (str, empty when valid),
* ``action``: the typed action the game applied (the fallback when invalid),
* ``action_span``: for a valid text action, the character offsets ``(start, end)`` of the
  part of the text the action was read from (``ParseResult.span``); ``None`` otherwise.

In structured mode the infos are numeric (:func:`srl_envs.structured.numeric_info`: the
bools, ints and floats above and the game's, the same keys at every step), and actions
follow :func:`srl_envs.structured.cast_action`: one that no unambiguous cast puts in the
action space raises a ``ValueError``, so ``invalid_action`` is always ``False`` there.

``env.state()`` is the whole game as a numeric vector in ``env.state_space`` (a ``Box``),
in both modes, for centralised critics (MAPPO, MADDPG, QMIX). ``render_mode="human"``
prints what ``"ansi"`` returns.
"""

from __future__ import annotations

import re
import string
from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from srl_envs.checks import check_choice, check_float_range, check_keywords, check_unit_interval
from srl_envs.parsing import ParseResult, truncate_for_parsing
from srl_envs.rewards import mix_rewards
from srl_envs.structured import cast_action, numeric_info

__all__ = ["MAX_ACTION_CHARS", "MAX_OBS_CHARS", "TEXT_CHARSET", "SRLParallelEnv"]

# Observations are prompts and messages; both use printable ASCII (newlines included).
TEXT_CHARSET = frozenset(string.printable)
MAX_OBS_CHARS = 16384
MAX_ACTION_CHARS = 8192
ACTION_MODES = ("text", "structured")
RENDER_MODES = ("human", "ansi")


_OUTSIDE_CHARSET = re.compile(r"[^\t\n\r\x0b\x0c\x20-\x7e]")


def to_charset(text: str) -> str:
    """Map text onto the observation charset (anything but printable ASCII becomes '?')."""
    return _OUTSIDE_CHARSET.sub("?", text)


class SRLParallelEnv(ParallelEnv):
    """Base class of every srl game. Subclasses implement the ``_core_*`` and codec hooks.

    Args:
        action_mode: ``"text"`` (prompts in, free text out) or ``"structured"`` (``Box``
            observations, ``Discrete``/``MultiDiscrete`` actions).
        cooperation_level: ``c`` in [0, 1] for :func:`srl_envs.rewards.mix_rewards`.
        competition_intensity: ``k >= 0`` for the zero-sum part of the mix.
        format_penalty: subtracted from an agent's reward when its action is invalid.
        render_mode: ``None``, ``"human"`` (``render()`` prints the view) or ``"ansi"``
            (``render()`` returns it).
    """

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "is_parallelizable": True}

    def __new__(cls, *args: Any, **kwargs: Any):
        # An unknown keyword is a ValueError naming it and the arguments there are, like every
        # other bad argument (Python's own TypeError would say neither what is allowed).
        check_keywords(cls.__name__, cls, kwargs)
        return super().__new__(cls)

    #: The keyword a text answer starts with (``"ALLOCATE:"``), or None. Trainers may prefill
    #: it after the assistant turn marker (``MultiModelConfig.response_prefix="auto"``): small
    #: models answer in format far more often when the keyword is already written.
    action_prefix: str | None = None
    #: The registered id of the game played, whose scripted bots play it
    #: (``srl_envs.make_bot(env.base_id, ...)``); a staged env gives its base game's.
    base_id: ClassVar[str]
    #: A staged env's :class:`~srl_envs.staged.Curriculum`; None for a plain game, whose
    #: episodes carry nothing from one to the next (every ``reset(seed=...)`` starts afresh).
    curriculum: Any = None
    #: What ``reset(options=...)`` may set for the episode it starts.
    RESET_OPTIONS: ClassVar[tuple[str, ...]] = ("cooperation_level", "competition_intensity")

    def __init__(
        self,
        *,
        action_mode: str = "text",
        cooperation_level: float = 0.5,
        competition_intensity: float = 0.0,
        format_penalty: float = 0.1,
        render_mode: str | None = None,
    ) -> None:
        self.action_mode = check_choice("action_mode", action_mode, ACTION_MODES)
        self.cooperation_level = check_unit_interval("cooperation_level", cooperation_level)
        self.competition_intensity = check_float_range(
            "competition_intensity", competition_intensity, 0.0
        )
        self.format_penalty = check_float_range("format_penalty", format_penalty, 0.0)
        self.render_mode = check_choice("render_mode", render_mode, (None, *RENDER_MODES))
        self.possible_agents: list[str] = list(self._make_agents())
        self.agents: list[str] = []
        self._rng = np.random.default_rng()
        self._obs_spaces: dict[str, spaces.Space] = {}
        self._act_spaces: dict[str, spaces.Space] = {}
        for agent in self.possible_agents:
            if self.action_mode == "text":
                self._obs_spaces[agent] = spaces.Text(
                    max_length=MAX_OBS_CHARS, min_length=0, charset=TEXT_CHARSET
                )
                self._act_spaces[agent] = spaces.Text(
                    max_length=MAX_ACTION_CHARS, min_length=0, charset=TEXT_CHARSET
                )
            else:
                self._obs_spaces[agent] = self._structured_observation_space(agent)
                self._act_spaces[agent] = self._structured_action_space(agent)
        #: The space of :meth:`state` (the same in both action modes).
        self.state_space: spaces.Box = self._state_space()

    # ----------------------------------------------------------------- hooks for games
    @abstractmethod
    def _make_agents(self) -> list[str]:
        """The agent ids, in a fixed order."""

    @abstractmethod
    def _core_reset(self, rng: np.random.Generator) -> None:
        """Start a new game (store the core state on ``self``)."""

    @abstractmethod
    def _core_step(
        self, actions: dict[str, Any], rng: np.random.Generator
    ) -> tuple[dict[str, float], bool, bool, dict[str, dict[str, Any]]]:
        """Apply typed actions; return ``(raw_scores, terminated, truncated, extra_infos)``."""

    @abstractmethod
    def _render_observation(self, agent: str) -> str:
        """The full prompt this agent sees now."""

    @abstractmethod
    def _parse_action(self, agent: str, text: str) -> ParseResult:
        """Text -> typed action (never raises)."""

    @abstractmethod
    def _fallback_action(self, agent: str) -> Any:
        """The typed action applied when the agent's action is invalid (documented per game)."""

    @abstractmethod
    def _structured_observation_space(self, agent: str) -> spaces.Box:
        """The numeric observation space of the structured mode."""

    @abstractmethod
    def _structured_action_space(self, agent: str) -> spaces.Space:
        """The ``Discrete``/``MultiDiscrete`` action space of the structured mode."""

    @abstractmethod
    def _encode_observation(self, agent: str) -> np.ndarray:
        """The numeric observation of the structured mode."""

    @abstractmethod
    def _decode_action(self, agent: str, action: Any) -> Any:
        """A structured action, already cast into the action space (an ``int`` or an
        ``int64`` array, :func:`srl_envs.structured.cast_action`) -> the typed action."""

    @abstractmethod
    def _state_space(self) -> spaces.Box:
        """The space of the global state."""

    @abstractmethod
    def _encode_state(self) -> np.ndarray:
        """The global state: everything a centralised critic may see, as one vector."""

    @abstractmethod
    def _render_global(self) -> str:
        """A human-readable view of the whole game (``render_mode="ansi"``)."""

    @property
    def acting_agents(self) -> list[str]:
        """The agents whose actions the next ``step`` reads: every live agent (srl's games are
        simultaneous; a turn-based game through :mod:`srl_envs.bridge` names its mover)."""
        return list(self.agents)

    @property
    def teams(self) -> dict[str, str] | None:
        """Agent -> team id in team games, ``None`` otherwise."""
        return None

    def team_of(self, agent: str) -> str | None:
        teams = self.teams
        return None if teams is None else teams[agent]

    # ----------------------------------------------------------------- PettingZoo API
    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """PettingZoo's reset. ``options`` may set the episode's ``cooperation_level`` and
        ``competition_intensity`` (they stay until changed again; a bad value is a
        ValueError); other keys are ignored, as PettingZoo's own envs do (its
        ``parallel_api_test`` passes one)."""
        if options:
            if "cooperation_level" in options:
                self.cooperation_level = check_unit_interval(
                    "cooperation_level", options["cooperation_level"]
                )
            if "competition_intensity" in options:
                self.competition_intensity = check_float_range(
                    "competition_intensity", options["competition_intensity"], 0.0
                )
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._core_reset(self._rng)
        observations = {a: self._observe(a) for a in self.agents}
        return observations, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        typed: dict[str, Any] = {}
        invalid: dict[str, str] = {}
        spans: dict[str, tuple[int, int] | None] = {}
        for agent in self.agents:  # every action is read before the game moves
            if self.action_mode == "structured":
                cast = cast_action(agent, actions.get(agent), self._act_spaces[agent])
                typed[agent] = self._decode_action(agent, cast)
                continue
            result = self._interpret(agent, actions.get(agent))
            if result.valid:
                typed[agent] = result.action
                spans[agent] = result.span
            else:
                typed[agent] = self._fallback_action(agent)
                invalid[agent] = result.reason or "invalid action"
        raw, terminated, truncated, extra = self._core_step(typed, self._rng)
        mixed = mix_rewards(raw, self.cooperation_level, self.teams, self.competition_intensity)
        rewards, infos = {}, {}
        for agent in self.agents:
            penalty = self.format_penalty if agent in invalid else 0.0
            rewards[agent] = float(mixed[agent] - penalty)
            infos[agent] = {
                "raw_score": float(raw[agent]),
                "reward_components": {"mixed": float(mixed[agent]), "format_penalty": -penalty},
                "invalid_action": agent in invalid,
                "invalid_reason": invalid.get(agent, ""),
                "action": typed[agent],
                "action_span": spans.get(agent),
                **extra.get(agent, {}),
            }
            if self.action_mode == "structured":
                infos[agent] = numeric_info(infos[agent])
        acting = list(self.agents)
        terminations = {a: bool(terminated) for a in acting}
        truncations = {a: bool(truncated and not terminated) for a in acting}
        observations = {a: self._observe(a) for a in acting}
        if terminated or truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """The global state, in :attr:`state_space` (see the module docstring)."""
        return self._encode_state()

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        view = self._render_global()
        if self.render_mode == "human":
            print(view)
            return None
        return view

    def close(self) -> None:
        pass

    # ----------------------------------------------------------------- helpers
    def _observe(self, agent: str) -> Any:
        if self.action_mode == "text":
            return to_charset(self._render_observation(agent))[:MAX_OBS_CHARS]
        return self._encode_observation(agent)

    def _interpret(self, agent: str, action: Any) -> ParseResult:
        """A text-mode action -> its parse (never raises)."""
        if action is None:
            return ParseResult(None, "no action given")
        try:
            return self._parse_action(agent, truncate_for_parsing(action))
        except Exception as exc:  # an action object that cannot even be read is invalid
            return ParseResult(None, f"unreadable action of type {type(action).__name__}: {exc}")
