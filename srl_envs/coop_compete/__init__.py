"""The cooperative-competitive commons game (``srl/coop_compete-v0``).

>>> from srl_envs.coop_compete import create_multi_model_coop_compete_env
>>> env = create_multi_model_coop_compete_env(num_models=4, cooperation_level=0.6)
>>> observations, infos = env.reset(seed=0)

See :mod:`srl_envs.coop_compete.env` for the documentation page (agents, actions,
observations, rewards, arguments).
"""

from __future__ import annotations

from typing import Any

from srl_envs.coop_compete.bots import BOTS, GreedyHarvest, RandomHarvest, SustainableHarvest
from srl_envs.coop_compete.env import CoopCompeteEnv
from srl_envs.registry import EnvSpec, register

__all__ = [
    "BOTS",
    "CoopCompeteEnv",
    "GreedyHarvest",
    "RandomHarvest",
    "SustainableHarvest",
    "create_multi_model_coop_compete_env",
]


def create_multi_model_coop_compete_env(
    num_models: int = 4, cooperation_level: float = 0.6, **kwargs: Any
) -> CoopCompeteEnv:
    """A commons env with one agent per model slot (other keywords go to the env)."""
    return CoopCompeteEnv(num_models=num_models, cooperation_level=cooperation_level, **kwargs)


register(
    EnvSpec(
        id=CoopCompeteEnv.base_id,
        entry_point=CoopCompeteEnv,
        bots=BOTS,
        default_bot="heuristic",
        description=(
            "Commons dilemma: 2-8 agents harvest a shared, regrowing stock and post public "
            "messages; over-harvesting collapses it and ends the episode."
        ),
    )
)
