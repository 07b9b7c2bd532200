"""PettingZoo conformance of every registered env, over a table of parameter combinations.

``CASES`` is the one table of small, varied settings per env id; the other env tests
import it (and :func:`env_cases`) so that a new registered env is covered everywhere by
default (with its default arguments until it gets its own rows).
"""

from __future__ import annotations

from typing import Any

import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from pettingzoo.utils.conversions import parallel_to_aec

import srl_envs
from srl_envs.bridge import PZ_GAMES, TA_GAMES
from srl_envs.staged import Stage

# srl's own games (text and structured modes, reward mixing); PettingZoo's and TextArena's
# games through the bridge are text-only and keep their own rewards (tests/envs/test_bridge.py,
# tests/envs/test_textarena.py).
BRIDGED = {**PZ_GAMES, **TA_GAMES}
NATIVE_ENVS = [env_id for env_id in srl_envs.list_envs() if env_id not in BRIDGED]

# Stages that keep the field count (the default stages change it: 3, 5, 7 fields).
TEAM_BUDGET_STAGES = (
    Stage("small_budget", {"budget": 5}, cooperation_level=1.0),
    Stage("big_budget", {"budget": 5, "field_values": (1, 2, 3, 1, 2)}, cooperation_level=0.0),
)

CASES: dict[str, list[dict[str, Any]]] = {
    "srl/coop_compete-v0": [
        {},
        {"num_models": 2, "episode_length": 3, "message_max_chars": 0},
        {
            "num_models": 8,
            "capacity": 40,
            "regen_rate": 0.3,
            "cooperation_level": 0.0,
            "competition_intensity": 0.5,
        },
    ],
    "srl/team_battle-v0": [
        {},
        {"team_size": 1, "num_fields": 2, "budget": 1, "episode_length": 1},
        {
            "team_size": 3,
            "num_fields": 7,
            "field_values": (1, 2, 3, 1, 2, 3, 9),
            "cooperation_level": 0.2,
            "competition_intensity": 1.0,
        },
    ],
    "srl/staged-v0": [
        {"num_models": 3, "warmup_episodes": 1, "episodes_per_stage": 1, "episode_length": 4},
        {
            "base": "team_battle",
            "num_models": 4,
            "warmup_episodes": 1,
            "stages": TEAM_BUDGET_STAGES,
        },
        {"base": "team_battle", "num_models": 2, "warmup_episodes": 1, "episodes_per_stage": 1},
        {
            "base": "srl/coop_compete-v0",
            "num_models": 2,
            "warmup_episodes": 0,
            "advance": "performance",
            "gate_threshold": -100.0,
            "gate_window": 1,
        },
    ],
    "srl/pz-tictactoe-v3": [{}, {"seat_order": "random"}, {"episode_length": 2}],
    "srl/pz-connect_four-v3": [{}, {"fallback": "4"}],
    "srl/pz-leduc_holdem-v4": [{}, {"seat_order": "random", "format_penalty": 0.0}],
    "srl/pz-rps-v2": [{}, {"num_actions": 5, "max_cycles": 4}],
    "srl/ta-tictactoe-v0": [{}, {"episode_length": 2}],
    "srl/ta-kuhn_poker-v0": [{}],
}


def env_cases(native: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """``(env_id, kwargs)`` for every registered env (only srl's own with ``native``) and
    every row of its table."""
    ids = NATIVE_ENVS if native else srl_envs.list_envs()
    return [(env_id, kw) for env_id in ids for kw in CASES.get(env_id, [{}])]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    env_id, kw = case
    shown = ",".join(f"{k}={v}" for k, v in kw.items() if k != "stages")
    return f"{env_id.removeprefix('srl/')}[{shown}]"


def test_every_registered_env_has_cases():
    assert set(CASES) <= set(srl_envs.list_envs())


@pytest.mark.filterwarnings("ignore:Action space for each agent probably should be")
@pytest.mark.parametrize("action_mode", ["text", "structured"])
@pytest.mark.parametrize("case", env_cases(native=False), ids=case_id)
def test_pettingzoo_conformance(case, action_mode):
    env_id, kw = case
    if env_id in BRIDGED and action_mode == "structured":
        pytest.skip("a bridged game is text-only (a PettingZoo game's structured mode is itself)")

    def make():
        if env_id in BRIDGED:
            return srl_envs.make(env_id, **kw)
        return srl_envs.make(env_id, action_mode=action_mode, **kw)

    parallel_api_test(make(), num_cycles=60)
    parallel_seed_test(make, num_cycles=60)
    if action_mode == "structured":
        # The AEC test only works on array observations (PettingZoo limitation).
        api_test(parallel_to_aec(make()), num_cycles=60)
