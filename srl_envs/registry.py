"""Versioned environment ids (``srl/<name>-v<N>``) and their factories.

``make("srl/team_battle-v0", **kwargs)`` builds an env; ``make("team_battle")`` resolves a
bare name to its newest version. A name may hold dashes (``srl/pz-tictactoe-v3``: the
PettingZoo game ``tictactoe_v3`` through :mod:`srl_envs.bridge`). Each entry also names the game's scripted bots.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from srl_envs.policies import ScriptedPolicy

__all__ = ["EnvSpec", "list_envs", "make", "make_bot", "register", "spec"]

_ID_RE = re.compile(r"^srl/(?P<name>[a-z][a-z_]*(?:-[a-z][a-z_]*)*)-v(?P<version>\d+)$")


@dataclass(frozen=True)
class EnvSpec:
    """One registered environment."""

    id: str
    entry_point: Callable[..., Any]
    bots: dict[str, type[ScriptedPolicy]] = field(default_factory=dict)
    default_bot: str = "heuristic"
    description: str = ""
    #: The episode length srl's trainer plays when ``MultiModelConfig.episode_length`` is
    #: None: 2 rounds for srl's games (CPU-sized), None (the whole game) for PettingZoo's.
    trainer_episode_length: int | None = 2

    @property
    def name(self) -> str:
        return _ID_RE.match(self.id).group("name")

    @property
    def version(self) -> int:
        return int(_ID_RE.match(self.id).group("version"))


_REGISTRY: dict[str, EnvSpec] = {}


def register(env_spec: EnvSpec) -> None:
    if not _ID_RE.match(env_spec.id):
        raise ValueError(
            f"env id must look like 'srl/<name>-v<N>' (name: lower case, '_' and '-'), got {env_spec.id!r}"
        )
    if env_spec.id in _REGISTRY:
        raise ValueError(f"env id {env_spec.id!r} is already registered")
    if env_spec.bots and env_spec.default_bot not in env_spec.bots:
        raise ValueError(f"default_bot {env_spec.default_bot!r} is not among {list(env_spec.bots)}")
    _REGISTRY[env_spec.id] = env_spec


def list_envs() -> list[str]:
    """All registered ids, sorted."""
    return sorted(_REGISTRY)


def spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``; a bare name (``"team_battle"``) means its newest version."""
    if env_id in _REGISTRY:
        return _REGISTRY[env_id]
    versions = [s for s in _REGISTRY.values() if s.name == env_id]
    if versions:
        return max(versions, key=lambda s: s.version)
    names = sorted({s.name for s in _REGISTRY.values()})
    raise ValueError(f"unknown env {env_id!r}: use one of {list_envs()} or a bare name in {names}")


def make(env_id: str, **kwargs: Any):
    """Build the env registered as ``env_id`` with its keyword arguments."""
    return spec(env_id).entry_point(**kwargs)


def make_bot(env_id: str, name: str | None = None, seed: int | None = None) -> ScriptedPolicy:
    """A scripted bot of this env (``name=None`` gives the env's default heuristic)."""
    s = spec(env_id)
    name = name or s.default_bot
    if name not in s.bots:
        raise ValueError(f"unknown bot {name!r} for {s.id}: use one of {sorted(s.bots)}")
    return s.bots[name](seed=seed)
