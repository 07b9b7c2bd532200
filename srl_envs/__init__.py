"""srl_envs: multi-agent text environments for LLM agents, as PettingZoo ``ParallelEnv``s.

>>> import srl_envs
>>> env = srl_envs.make("srl/team_battle-v0")           # text mode: prompts in, text out
>>> observations, infos = env.reset(seed=0)

Registered ids: ``srl/coop_compete-v0``, ``srl/team_battle-v0``, ``srl/staged-v0``, and
PettingZoo's classic games through the text bridge (:func:`text_env` wraps any PettingZoo
game with discrete actions): ``srl/pz-tictactoe-v3``, ``srl/pz-connect_four-v3``,
``srl/pz-leduc_holdem-v4``, ``srl/pz-rps-v2``.
"""

from srl_envs.base import SRLParallelEnv
from srl_envs.bridge import (
    TextArenaEnv,
    TextBridgeEnv,
    register_pettingzoo,
    text_env,
    textarena_env,
)
from srl_envs.coop_compete import CoopCompeteEnv, create_multi_model_coop_compete_env
from srl_envs.parsing import ParseResult
from srl_envs.policies import ScriptedPolicy
from srl_envs.registry import EnvSpec, list_envs, make, make_bot, register, spec
from srl_envs.rewards import mix_rewards
from srl_envs.staged import StagedEnv, create_multi_model_staged_env
from srl_envs.team_battle import TeamBattleEnv, create_multi_model_team_battle

__all__ = [
    "CoopCompeteEnv",
    "EnvSpec",
    "ParseResult",
    "SRLParallelEnv",
    "ScriptedPolicy",
    "StagedEnv",
    "TeamBattleEnv",
    "TextArenaEnv",
    "TextBridgeEnv",
    "create_multi_model_coop_compete_env",
    "create_multi_model_staged_env",
    "create_multi_model_team_battle",
    "list_envs",
    "make",
    "make_bot",
    "mix_rewards",
    "register",
    "register_pettingzoo",
    "spec",
    "text_env",
    "textarena_env",
]
