"""Team battle: a team Colonel Blotto (two teams of LLM agents split troops over fields).

See :mod:`srl_envs.team_battle.env` for the documentation page.
"""

from __future__ import annotations

from typing import Any

from srl_envs.registry import EnvSpec, register
from srl_envs.team_battle.bots import BOTS
from srl_envs.team_battle.env import TeamBattleEnv

__all__ = ["BOTS", "TeamBattleEnv", "create_multi_model_team_battle"]


def create_multi_model_team_battle(team_size: int = 4, **kwargs: Any) -> TeamBattleEnv:
    """A team battle of two teams of ``team_size`` agents (4v4 by default).

    ``kwargs`` go to :class:`TeamBattleEnv`. The agent count is ``2 * team_size``,
    exactly as asked: nothing is forced to 8.
    """
    return TeamBattleEnv(team_size=team_size, **kwargs)


register(
    EnvSpec(
        id=TeamBattleEnv.base_id,
        entry_point=TeamBattleEnv,
        bots=BOTS,
        default_bot="heuristic",
        description=(
            "Team Colonel Blotto: two teams (red, blue) of team_size agents split a troop "
            "budget over num_fields battlefields each round; the stronger team takes each "
            "field. Team rewards, zero-sum across teams; team chat."
        ),
    )
)
