"""What a rollout is made of: the env the trainer plays, and the turns it records.

* :class:`TrainingEnvironment`: the configured env, with the user's ``reward_function`` hook.
* :class:`Turn`: one LLM action, a training sample of its slot (prompt and completion ids, the
  sampling log-probs, the reward and what credit assignment adds to it).
* :class:`RolloutResult`: what one episode's env copies produced (turns and per-copy totals).

The rollout loop itself is :meth:`srl_trainers.trainer.MultiModelTrainer.rollout`;
``srl_trainers.credit`` turns its turns into returns and advantages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import srl_envs
from srl_trainers.config import ConfigError, MultiModelConfig

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "EVAL_SEED_OFFSET",
    "GAME_FIGURES",
    "RolloutResult",
    "TrainingEnvironment",
    "Turn",
]

DEFAULT_SYSTEM_PROMPT = (
    "You are a player in a multi-agent game. Read the rules and the state, then answer with "
    "your action in exactly the format the prompt shows. Be brief."
)
# Game figures averaged into env/<name> and model/<policy>/<name> metrics (when a game
# reports them in infos): commons harvests and stock, team battle fields and margin.
GAME_FIGURES = frozenset(
    {"harvest", "group_harvest", "stock", "fields_won", "fields_lost", "margin"}
)
# Training env seeds live below 2**31; evaluation seeds start at EVAL_SEED_OFFSET, so the two
# never overlap.
EVAL_SEED_OFFSET = 2**40


# ------------------------------------------------------------------------------ data
@dataclass
class Turn:
    """One LLM action: a training sample of ``slot``."""

    slot: str
    episode: int
    copy: int
    group: int
    agent: str
    round: int
    prompt_ids: list[int]
    completion_ids: list[int]
    gen_logprobs: list[float]
    text: str
    reward: float = 0.0
    ret: float = 0.0
    advantage: float = 0.0
    invalid: bool = False
    done: bool = False
    baseline: float = math.nan  # counterfactual baseline of the turn's reward; NaN: group mean
    # completion tokens [i, j) that wrote the part of the text the env read the action from
    action_tokens: tuple[int, int] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        """The turn whose ``dataclasses.asdict`` (through JSON) is ``data``."""
        span = data["action_tokens"]
        return cls(**{**data, "action_tokens": None if span is None else tuple(span)})


@dataclass
class RolloutResult:
    """What one training episode's env copies produced."""

    turns: list[Turn]
    # per copy: agent -> summed raw score, summed reward, invalid count, turns
    raw_totals: list[dict[str, float]]
    reward_totals: list[dict[str, float]]
    invalid_counts: list[dict[str, int]]
    turn_counts: list[dict[str, int]]
    env_metrics: dict[str, float] = field(default_factory=dict)
    tokens_generated: int = 0
    generation_seconds: float = 0.0


# ------------------------------------------------------------------------------ env side
class TrainingEnvironment:
    """The environment the trainer plays, with the custom reward hook users expect.

    ``reward_function(model_output: str, context: dict) -> float`` is called for every LLM
    turn; with ``reward_function_mode="add"`` (default) its value is added to the env reward,
    with ``"replace"`` it replaces it. ``context`` holds ``agent``, ``policy_id``, ``round``,
    ``observation``, ``action`` (the parsed action), ``invalid``, ``env_reward``,
    ``raw_score`` and ``info``.
    """

    def __init__(self, config: MultiModelConfig) -> None:
        self.config = config
        self.reward_function: Callable[[str, dict[str, Any]], float] | None = None
        self.reward_function_mode = "add"

    @property
    def env_id(self) -> str:
        return srl_envs.spec(self.config.env).id

    def env_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs: ``episode_length`` and the player count from the config, then
        the user's ``env_kwargs`` on top."""
        kwargs: dict[str, Any] = {"episode_length": self.config.episode_length}
        if self.config.env in ("coop_compete", "staged") and self.config.policy_mapping is None:
            kwargs["num_models"] = max(self.config.num_models, 2)
        return {**kwargs, **self.config.env_kwargs}

    def make(self):
        try:
            return srl_envs.make(self.config.env, **self.env_kwargs())
        except ValueError as exc:
            raise ConfigError(f"MultiModelConfig.env_kwargs: {exc}") from None

    def custom_reward(self, text: str, context: dict[str, Any], env_reward: float) -> float:
        if self.reward_function is None:
            return env_reward
        if self.reward_function_mode not in ("add", "replace"):
            raise ConfigError(
                f"reward_function_mode={self.reward_function_mode!r}: use 'add' or 'replace'"
            )
        value = float(self.reward_function(text, context))
        if not math.isfinite(value):
            raise ValueError(f"reward_function returned {value!r} for agent {context['agent']}")
        return value if self.reward_function_mode == "replace" else env_reward + value
