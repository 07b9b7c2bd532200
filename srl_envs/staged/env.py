"""Staged (curriculum) environment: ``srl/staged-v0``.

A ``ParallelEnv`` wrapper over any registered srl game (the *base*, ``coop_compete`` by
default). It holds one inner env per stage, built up front from stage-dependent keyword
arguments, and switches to the current stage's env on ``reset()``.

* **Warm-up**: episodes ``0 .. warmup_episodes - 1`` (exactly ``warmup_episodes`` of
  them) are played in stage 0, and every agent receives the same reward each step:
  the mean of the inner rewards of that step.
* **Stages**: after the warm-up, stages raise the difficulty and lower the cooperation
  level. A stage ends after ``episodes_per_stage`` episodes (``advance="episodes"``) or
  once the mean episode return over its last ``gate_window`` episodes reaches
  ``gate_threshold`` (``advance="performance"``); see :mod:`.curriculum`.

Default stages (:data:`DEFAULT_STAGES`; pass ``stages=`` to override)::

    coop_compete   warm-up/0 "abundant"  regen_rate=1.0   cooperation_level=0.9
                   1 "scarce"            regen_rate=0.5   cooperation_level=0.6
                   2 "harsh"             regen_rate=0.25  cooperation_level=0.3
    team_battle    0 "few_fields"        num_fields=3     cooperation_level=0.9
                   1 "standard"          num_fields=5     cooperation_level=0.6
                   2 "many_fields"       num_fields=7     cooperation_level=0.3

In team battle the raw team scores are already zero-sum, so the cooperation level only
changes rewards when ``competition_intensity > 0`` (see :mod:`srl_envs.rewards`), and a
warm-up step pays everyone ``0`` minus the mean format penalty: the warm-up then teaches
the answer format only.

Agents
------
The base game's agents. ``num_models`` sets their number: ``coop_compete`` gets
``num_models`` players (``player_0 ..``, 2 to 8), ``team_battle`` gets two teams of
``num_models // 2`` (``red_0 .. blue_{n-1}``; ``num_models`` must be even, 2 to 16).
For another registered base, pass ``num_models=None``, the agent count in the base's own
keyword arguments, and ``stages=``. ``env.teams`` / ``env.team_of(agent)`` are the base's.

Actions
-------
Those of the base game (text grammar or structured spaces, see its documentation). In
structured mode the action space is one for every stage: the stages' own when they agree,
else the longest ``MultiDiscrete`` when the stages differ only in length (team battle's
3, 5 and 7 fields give ``MultiDiscrete([budget + 1] * 7)``); a stage uses the first
entries and ignores the rest (the fields it does not have). Stages whose action spaces
differ otherwise (a commons stage with another ``max_harvest``) raise a ``ValueError`` at
construction in structured mode.

Observations
------------
Those of the base game at the current stage. Spaces are fixed at construction and
constant across stages, so classic MARL libraries can run the whole curriculum: in text
mode they are the base's ``Text`` spaces; in structured mode the observation ``Box`` is
as long as the longest stage's and spans every stage's bounds, and a shorter stage's
observation fills its first entries, the rest being 0. ``env.state()`` /
``env.state_space`` (the base's global state) are padded the same way.

Rewards
-------
The base game's rewards at the stage's ``cooperation_level`` (``mix_rewards``), except in
the warm-up, where every agent gets the mean of the inner rewards. ``infos[agent]`` holds
the inner infos plus ``stage`` (index), ``stage_name``, ``warmup`` (bool), and
``reward_components`` gains ``warmup_share`` (the reward minus the inner reward: 0 outside
the warm-up), so the components still add up to the reward. In structured mode infos are
numeric, as the base's (no ``stage_name``). ``reset()`` returns the base's (empty) infos, so
that libraries that derive info specs from ``reset()`` (TorchRL) see no string fields;
``env.stage``, ``env.stage_name`` and ``env.warmup`` describe the episode in progress.

The episode return the performance gate averages is the group's, independent of the
cooperation level: the mean over agents of the episode's summed ``raw_score`` minus
format penalties (coop_compete: 1.0 per round is a fair share of the maximum sustainable
yield, so about ``0.8 * episode_length`` means "mostly sustainable"; team_battle: it is
minus the format penalties, so the gate measures answer validity).

Arguments
---------
* ``base`` (str): a registered game, bare name or id (not ``staged``). Default
  ``"coop_compete"``.
* ``num_models`` (int | None): agent count, see Agents. Default 8.
* ``warmup_episodes`` (int >= 0): warm-up length in episodes. Default 50.
* ``stages`` (sequence of :class:`Stage` | None): ``None`` gives the base's defaults.
* ``advance`` (``"episodes"`` | ``"performance"``): the stage-advancement rule.
* ``episodes_per_stage`` (int >= 1): stage length for ``advance="episodes"``. Default 100.
* ``gate_threshold`` (float): required for ``advance="performance"``.
* ``gate_window`` (int >= 1): episodes the gate averages. Default 20.
* ``action_mode`` (``"text"`` | ``"structured"``): passed to the base.
* ``render_mode``, ``max_cycles`` (PettingZoo's name for ``episode_length``) and the
  base's other arguments: passed to the base, see below.
* ``**base_kwargs``: any other argument of the base game, for every stage. Arguments that
  a stage sets, the agent count and ``cooperation_level`` belong to the stages and are
  rejected here; for the same reason ``reset(options=...)`` does not apply the
  ``cooperation_level`` and ``competition_intensity`` that the plain games take there.

The scripted bots of the registry entry are ``coop_compete``'s (the base is only known at
construction): a trainer looks bots up with ``srl_envs.make_bot(env.base_id)``, as it does
for every game (a plain game's ``base_id`` is its own id, its ``curriculum`` None).
Episode counting is per env instance; ``env.state_dict()`` / ``env.load_state_dict()``
save and restore the curriculum and the seeding generator (a loaded stage applies from
the next ``reset()``), and ``env.metrics()`` reports ``curriculum/...`` values.

Version History
---------------
* v0: first version (warm-up of exactly ``warmup_episodes`` episodes, count or
  performance gate, stages as data). Later, with valid play unchanged: structured mode
  over stages of different field counts (padded spaces), ``state()``, numeric structured
  infos, ``warmup_share`` in every step's ``reward_components``, and an ``agents`` setter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from srl_envs.base import RENDER_MODES, SRLParallelEnv
from srl_envs.checks import check_choice, check_int_range, check_keywords
from srl_envs.coop_compete import core as coop_core
from srl_envs.registry import spec
from srl_envs.staged.curriculum import Curriculum, Stage
from srl_envs.structured import cast_action, numeric_info
from srl_envs.team_battle import core as team_core

__all__ = ["DEFAULT_STAGES", "StagedEnv", "create_multi_model_staged_env"]

DEFAULT_STAGES: dict[str, tuple[Stage, ...]] = {
    "coop_compete": (
        Stage("abundant", {"regen_rate": 1.0}, cooperation_level=0.9),
        Stage("scarce", {"regen_rate": 0.5}, cooperation_level=0.6),
        Stage("harsh", {"regen_rate": 0.25}, cooperation_level=0.3),
    ),
    "team_battle": (
        Stage("few_fields", {"num_fields": 3}, cooperation_level=0.9),
        Stage("standard", {"num_fields": 5}, cooperation_level=0.6),
        Stage("many_fields", {"num_fields": 7}, cooperation_level=0.3),
    ),
}


def _agent_kwargs(base: str, num_models: int | None) -> dict[str, int]:
    """The base game's agent-count argument for ``num_models`` models."""
    if base == "coop_compete":
        low, high = coop_core.MIN_AGENTS, coop_core.MAX_AGENTS
        return {"num_models": check_int_range("num_models", num_models, low, high)}
    if base == "team_battle":
        low, high = (2 * n for n in team_core.TEAM_SIZE_RANGE)
        n = check_int_range("num_models", num_models, low, high)
        if n % 2:
            raise ValueError(
                f"num_models must be even for team_battle (two teams of num_models // 2), got {n}"
            )
        return {"team_size": n // 2}
    if num_models is not None:
        raise ValueError(
            f"num_models must be None for base {base!r} (only coop_compete and team_battle "
            "map it): put the agent count in the base's own keyword arguments"
        )
    return {}


def _padded(x: np.ndarray, size: int) -> np.ndarray:
    """A 1-D array filled up with zeros to ``size`` entries."""
    return x if x.shape[0] == size else np.pad(x, (0, size - x.shape[0]))


def _padded_box(boxes: list[spaces.Box], what: str) -> spaces.Box:
    """One ``Box`` for every stage's: 1-D boxes of different lengths are padded with zeros
    at the end (a stage's vector fills the first entries), and the bounds span them all."""
    first = boxes[0]
    if all(box == first for box in boxes[1:]):
        return first
    if not all(
        isinstance(box, spaces.Box) and len(box.shape) == 1 and box.dtype == first.dtype
        for box in boxes
    ):
        raise ValueError(
            f"structured mode needs {what} to be 1-D boxes of one dtype in every stage, got "
            f"{boxes}: use action_mode='text' or stages= whose env_kwargs keep the shapes"
        )
    size = max(box.shape[0] for box in boxes)
    low = np.minimum.reduce([_padded(box.low, size) for box in boxes])
    high = np.maximum.reduce([_padded(box.high, size) for box in boxes])
    return spaces.Box(low=low, high=high, shape=(size,), dtype=first.dtype)


def _common_action_space(action_spaces: list[spaces.Space], agent: str) -> spaces.Space:
    """The one action space of every stage: the stages' own, or, when they are
    ``MultiDiscrete`` spaces of different lengths that agree on their common entries (team
    battle's field counts), the longest; a shorter stage uses its first entries."""
    first = action_spaces[0]
    if all(space == first for space in action_spaces[1:]):
        return first
    longest = max(action_spaces, key=lambda space: space.shape[0] if space.shape else 0)
    if all(
        isinstance(space, spaces.MultiDiscrete)
        and len(space.shape) == 1
        and np.array_equal(space.nvec, longest.nvec[: space.shape[0]])
        and np.array_equal(space.start, longest.start[: space.shape[0]])
        for space in action_spaces
    ):
        return longest
    raise ValueError(
        f"structured mode needs one action space for {agent!r} in every stage, but the "
        f"stages give {action_spaces} (MultiDiscrete spaces may differ in length only): use "
        "action_mode='text' or stages= whose env_kwargs keep the action spaces"
    )


class StagedEnv(ParallelEnv):
    """Curriculum wrapper over a registered game (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "staged_v0",
        "render_modes": list(RENDER_MODES),
        "is_parallelizable": True,
    }

    def __init__(
        self,
        base: str = "coop_compete",
        num_models: int | None = 8,
        warmup_episodes: int = 50,
        stages: Sequence[Stage] | None = None,
        advance: str = "episodes",
        episodes_per_stage: int = 100,
        gate_threshold: float | None = None,
        gate_window: int = 20,
        action_mode: str = "text",
        **base_kwargs: Any,
    ) -> None:
        if not isinstance(base, str):
            raise ValueError(f"base must be a registered game's id or name, got {base!r}")
        base_spec = spec(base)
        if base_spec.name == "staged":
            raise ValueError(f"base must be a game, not the staged env itself, got {base!r}")
        self.base_id = base_spec.id
        name = base_spec.name
        if stages is None:
            if name not in DEFAULT_STAGES:
                raise ValueError(
                    f"stages must be given for base {base!r}: defaults exist only for "
                    f"{sorted(DEFAULT_STAGES)}"
                )
            stages = DEFAULT_STAGES[name]
        if (
            isinstance(stages, str)
            or not isinstance(stages, Sequence)
            or not stages
            or not all(isinstance(s, Stage) for s in stages)
        ):
            raise ValueError(f"stages must be a non-empty sequence of Stage, got {stages!r}")
        stages = tuple(stages)
        self.stages = stages
        self.action_mode = check_choice("action_mode", action_mode, ("text", "structured"))
        self.curriculum = Curriculum(
            num_stages=len(stages),
            warmup_episodes=warmup_episodes,
            advance=advance,
            episodes_per_stage=episodes_per_stage,
            gate_threshold=gate_threshold,
            gate_window=gate_window,
        )
        check_keywords(f"StagedEnv's base game {base_spec.id}", base_spec.entry_point, base_kwargs)
        agent_kwargs = _agent_kwargs(name, num_models)
        owned = {"cooperation_level", *agent_kwargs}
        for stage in stages:
            clash = sorted({"action_mode", *agent_kwargs} & set(stage.env_kwargs))
            if clash:
                raise ValueError(
                    f"stage {stage.name!r} sets {clash[0]} in env_kwargs, but the staged env "
                    "sets it for every stage (num_models= / action_mode=)"
                )
            owned.update(stage.env_kwargs)
        clash = sorted(owned & set(base_kwargs))
        if clash:
            raise ValueError(
                f"{clash[0]} is set by the staged env (agent count, cooperation_level or a "
                f"stage's env_kwargs) and cannot be passed as a base argument: set it in "
                "stages= instead"
            )
        self._envs = tuple(
            base_spec.entry_point(
                **base_kwargs,
                **stage.env_kwargs,
                **agent_kwargs,
                cooperation_level=stage.cooperation_level,
                action_mode=action_mode,
            )
            for stage in stages
        )
        first = self._envs[0]
        self.possible_agents = list(first.possible_agents)
        for stage, env in zip(stages, self._envs):
            if list(env.possible_agents) != self.possible_agents:
                raise ValueError(
                    f"every stage must have the same agents; stage {stage.name!r} has "
                    f"{env.possible_agents}, stage 0 has {self.possible_agents}"
                )
        self.render_mode = first.render_mode
        self._obs_spaces: dict[str, spaces.Space] = {}
        self._act_spaces: dict[str, spaces.Space] = {}
        for agent in self.possible_agents:
            if self.action_mode == "text":
                self._act_spaces[agent] = first.action_space(agent)
                self._obs_spaces[agent] = first.observation_space(agent)
                continue
            self._act_spaces[agent] = _common_action_space(
                [env.action_space(agent) for env in self._envs], agent
            )
            self._obs_spaces[agent] = _padded_box(
                [env.observation_space(agent) for env in self._envs],
                f"the observation spaces of {agent!r}",
            )
        # Per stage: whether its action spaces are shorter than the env's (cut in step()).
        self._cut_actions = tuple(
            any(env.action_space(a) != self._act_spaces[a] for a in self.possible_agents)
            for env in self._envs
        )
        #: The space of :meth:`state`: the stages' state spaces, padded like observations.
        self.state_space = _padded_box([env.state_space for env in self._envs], "the states")
        self._rng = np.random.default_rng()
        self._stage = self.curriculum.stage
        self._episode = self.curriculum.episode
        self._warmup = self.curriculum.warmup
        self._episode_return = 0.0

    # ----------------------------------------------------------------- introspection
    @property
    def env(self) -> ParallelEnv:
        """The inner env of the episode in progress."""
        return self._envs[self._stage]

    @property
    def agents(self) -> list[str]:
        return self.env.agents

    @agents.setter
    def agents(self, agents: list[str]) -> None:
        # Wrappers that track live agents assign them; they belong to the stage in play.
        self.env.agents = agents

    @property
    def acting_agents(self) -> list[str]:
        """The agents whose actions the next ``step`` reads (the stage in play's)."""
        return list(getattr(self.env, "acting_agents", self.env.agents))

    @property
    def stage(self) -> int:
        """Stage index of the episode in progress (fixed at ``reset()``)."""
        return self._stage

    @property
    def stage_name(self) -> str:
        return self.stages[self._stage].name

    @property
    def episode(self) -> int:
        """Index of the episode in progress (finished episodes before it)."""
        return self._episode

    @property
    def warmup(self) -> bool:
        """Whether the episode in progress is a warm-up episode."""
        return self._warmup

    @property
    def teams(self) -> dict[str, str] | None:
        return self.env.teams

    @property
    def action_prefix(self) -> str | None:
        """The base game's answer keyword (the same in every stage)."""
        return getattr(self.env, "action_prefix", None)

    def team_of(self, agent: str) -> str | None:
        return self.env.team_of(agent)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The curriculum and the seeding generator (for checkpoints; plain Python data)."""
        return {"curriculum": self.curriculum.state_dict(), "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the restored stage applies from the next ``reset()``."""
        self.curriculum.load_state_dict(state["curriculum"])
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]

    def metrics(self) -> dict[str, float]:
        """``curriculum/...`` metrics (stage, episode, warm-up flag, gate window mean)."""
        return self.curriculum.metrics()

    # ----------------------------------------------------------------- PettingZoo API
    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._stage = self.curriculum.stage
        self._episode = self.curriculum.episode
        self._warmup = self.curriculum.warmup
        self._episode_return = 0.0
        inner_seed = int(self._rng.integers(2**31 - 1))
        # the stages own the cooperation level: a caller's per-episode level does not apply
        options = {
            k: v for k, v in (options or {}).items() if k not in SRLParallelEnv.RESET_OPTIONS
        }
        observations, infos = self.env.reset(seed=inner_seed, options=options or None)
        return self._fit_observations(observations), infos

    def step(self, actions: dict[str, Any]):
        if self._cut_actions[self._stage]:
            actions = self._fit_actions(actions)
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        shared = sum(rewards.values()) / len(rewards)
        stage = self.stages[self._stage]
        for agent, info in infos.items():
            self._episode_return += (
                info["raw_score"] + info["reward_components"]["format_penalty"]
            ) / len(infos)
            info.update(stage=self._stage, stage_name=stage.name, warmup=self._warmup)
            share = shared - rewards[agent] if self._warmup else 0.0
            info["reward_components"] = {**info["reward_components"], "warmup_share": share}
            if self.action_mode == "structured":
                infos[agent] = numeric_info(info)
        if self._warmup:
            rewards = dict.fromkeys(rewards, shared)
        if not self.env.agents:
            self.curriculum.on_episode_end(self._episode_return)
        return self._fit_observations(observations), rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """The stage's global state, padded with zeros to :attr:`state_space`."""
        return _padded(self.env.state(), self.state_space.shape[0])

    def render(self) -> str | None:
        return self.env.render()

    # ----------------------------------------------------------------- structured spaces
    def _fit_observations(self, observations: dict[str, Any]) -> dict[str, Any]:
        """Structured observations padded with zeros to the fixed observation space."""
        if self.action_mode == "text":
            return observations
        return {a: _padded(o, self._obs_spaces[a].shape[0]) for a, o in observations.items()}

    def _fit_actions(self, actions: dict[str, Any]) -> dict[str, Any]:
        """Actions cast into the fixed action space, cut to the stage's own (the entries a
        stage does not have are ignored)."""
        fitted = {}
        for agent in self.env.agents:
            action = cast_action(agent, actions.get(agent), self._act_spaces[agent])
            fitted[agent] = action[: self.env.action_space(agent).shape[0]]
        return fitted

    def close(self) -> None:
        for env in self._envs:
            env.close()


def create_multi_model_staged_env(
    num_models: int = 8, warmup_episodes: int = 50, base: str = "coop_compete", **kwargs: Any
) -> StagedEnv:
    """A staged env over ``base`` for ``num_models`` models (other arguments: :class:`StagedEnv`)."""
    return StagedEnv(base=base, num_models=num_models, warmup_episodes=warmup_episodes, **kwargs)
