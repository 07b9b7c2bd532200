"""Stages as data, and the small :class:`Curriculum` that moves through them.

A curriculum is a warm-up phase followed by a sequence of stages. The warm-up is the
first ``warmup_episodes`` episodes (episodes ``0 .. warmup_episodes - 1``), played in
stage 0. After it, a stage ends by one of two rules (``ADVANCE_RULES``):

* ``"episodes"``: after ``episodes_per_stage`` episodes in the stage;
* ``"performance"``: once the mean episode return over the stage's last ``gate_window``
  episodes reaches ``gate_threshold`` (the window starts empty in every stage).

The last stage never ends. Only finished episodes count: the env calls
:meth:`Curriculum.on_episode_end` when an episode ends, never on ``reset()``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from srl_envs.checks import check_float_range, check_int_range, check_unit_interval

__all__ = ["ADVANCE_RULES", "Curriculum", "Stage"]

ADVANCE_RULES = ("episodes", "performance")


@dataclass(frozen=True)
class Stage:
    """One stage: the base game's keyword arguments and the cooperation level to play at.

    Args:
        name: short label, reported in ``infos[agent]["stage_name"]``.
        env_kwargs: keyword arguments of the base game for this stage (difficulty).
        cooperation_level: the base game's ``cooperation_level`` in this stage.
    """

    name: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    cooperation_level: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Stage name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(
                f"Stage {self.name!r}: env_kwargs must be a mapping, got {self.env_kwargs!r}"
            )
        if "cooperation_level" in self.env_kwargs:
            raise ValueError(
                f"Stage {self.name!r}: set the cooperation level with the Stage's "
                "cooperation_level field, not in env_kwargs"
            )
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        object.__setattr__(
            self,
            "cooperation_level",
            check_unit_interval(f"stage {self.name!r} cooperation_level", self.cooperation_level),
        )


class Curriculum:
    """Counts finished episodes and decides the warm-up flag and the current stage.

    Args:
        num_stages: how many stages there are (>= 1).
        warmup_episodes: episodes ``0 .. warmup_episodes - 1`` are the warm-up.
        advance: ``"episodes"`` or ``"performance"`` (see the module docstring).
        episodes_per_stage: stage length for ``advance="episodes"``.
        gate_threshold: the mean episode return a stage must reach to end, for
            ``advance="performance"`` (required there).
        gate_window: how many of the stage's latest episodes the gate averages.
    """

    def __init__(
        self,
        num_stages: int,
        warmup_episodes: int = 0,
        advance: str = "episodes",
        episodes_per_stage: int = 100,
        gate_threshold: float | None = None,
        gate_window: int = 20,
    ) -> None:
        self.num_stages = check_int_range("num_stages", num_stages, 1)
        self.warmup_episodes = check_int_range("warmup_episodes", warmup_episodes, 0)
        if advance not in ADVANCE_RULES:
            raise ValueError(f"advance must be one of {list(ADVANCE_RULES)}, got {advance!r}")
        self.advance = advance
        self.episodes_per_stage = check_int_range("episodes_per_stage", episodes_per_stage, 1)
        self.gate_window = check_int_range("gate_window", gate_window, 1)
        if advance == "performance" and gate_threshold is None:
            raise ValueError(
                "gate_threshold must be a finite number when advance='performance', got None"
            )
        self.gate_threshold = (
            None
            if gate_threshold is None
            else check_float_range("gate_threshold", gate_threshold, float("-inf"))
        )
        self.episode = 0  # finished episodes == index of the episode being played
        self.stage = 0
        self.episodes_in_stage = 0  # finished post-warm-up episodes in this stage
        self._window: deque[float] = deque(maxlen=self.gate_window)

    @property
    def warmup(self) -> bool:
        """Whether the episode now being played (number ``episode``) is a warm-up episode."""
        return self.episode < self.warmup_episodes

    def on_episode_end(self, episode_return: float) -> bool:
        """Record a finished episode; return ``True`` when this advanced the stage."""
        was_warmup = self.warmup
        self.episode += 1
        if was_warmup:
            return False
        self.episodes_in_stage += 1
        self._window.append(float(episode_return))
        if self.stage == self.num_stages - 1:
            return False
        if self.advance == "episodes":
            done = self.episodes_in_stage >= self.episodes_per_stage
        else:
            done = (
                len(self._window) == self.gate_window
                and sum(self._window) / self.gate_window >= self.gate_threshold
            )
        if done:
            self.stage += 1
            self.episodes_in_stage = 0
            self._window.clear()
        return done

    def state_dict(self) -> dict[str, Any]:
        return {
            "episode": self.episode,
            "stage": self.stage,
            "episodes_in_stage": self.episodes_in_stage,
            "window": list(self._window),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        stage = check_int_range("stage", state["stage"], 0, self.num_stages - 1)
        self.episode = check_int_range("episode", state["episode"], 0)
        self.stage = stage
        self.episodes_in_stage = check_int_range("episodes_in_stage", state["episodes_in_stage"], 0)
        self._window = deque((float(x) for x in state["window"]), maxlen=self.gate_window)

    def metrics(self) -> dict[str, float]:
        window = list(self._window)
        return {
            "curriculum/episode": float(self.episode),
            "curriculum/stage": float(self.stage),
            "curriculum/warmup": float(self.warmup),
            "curriculum/episodes_in_stage": float(self.episodes_in_stage),
            "curriculum/window_mean_return": sum(window) / len(window) if window else 0.0,
        }
