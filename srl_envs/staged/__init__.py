"""Staged (curriculum) wrapper over any srl game: ``srl/staged-v0`` (see :mod:`.env`)."""

import srl_envs.coop_compete  # noqa: F401  (registers the base whose bots the spec lists)
from srl_envs.registry import EnvSpec, register, spec
from srl_envs.staged.curriculum import ADVANCE_RULES, Curriculum, Stage
from srl_envs.staged.env import DEFAULT_STAGES, StagedEnv, create_multi_model_staged_env

__all__ = [
    "ADVANCE_RULES",
    "DEFAULT_STAGES",
    "Curriculum",
    "Stage",
    "StagedEnv",
    "create_multi_model_staged_env",
]

_BOTS_SPEC = spec("srl/coop_compete-v0")

register(
    EnvSpec(
        id="srl/staged-v0",
        entry_point=StagedEnv,
        # The base game is chosen at construction; these are coop_compete's (the default
        # base). A trainer should find the right ones with make_bot(env.base_id).
        bots=dict(_BOTS_SPEC.bots),
        default_bot=_BOTS_SPEC.default_bot,
        description="Curriculum over a registered game: equal-reward warm-up, then stages "
        "of rising difficulty and falling cooperation.",
    )
)
