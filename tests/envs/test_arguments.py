"""Constructor arguments of every registered env: each bad one is a ValueError that names
the argument and says what is allowed (the checks live in srl_envs.checks).

``BAD_ARGUMENTS`` is the table: per env id, ``(kwargs, name)`` rows where ``name`` must
appear in the message. The games' own test files hold their range rows; this table holds
the rows every env shares (unknown keywords, numbers given as strings or bools) and the
wrapper's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import srl_envs
from srl_envs.checks import check_float_range, check_int_range, check_keywords
from srl_envs.staged import Stage

BAD_ARGUMENTS: dict[str, list[tuple[dict[str, Any], str]]] = {
    "srl/coop_compete-v0": [
        ({"num_modelz": 4}, "num_modelz"),  # a typo: not a TypeError
        ({"cooperation_level": "0.5"}, "cooperation_level"),  # numbers are numbers
        ({"cooperation_level": True}, "cooperation_level"),
        ({"cooperation_level": np.nan}, "cooperation_level"),
        ({"competition_intensity": "1"}, "competition_intensity"),
        ({"format_penalty": None}, "format_penalty"),
        ({"regen_rate": "1.0"}, "regen_rate"),
        ({"capacity": 100.0}, "capacity"),
        ({"num_models": "4"}, "num_models"),
        ({"safe_hint": 1}, "safe_hint"),
        ({"action_mode": None}, "action_mode"),
        ({"render_mode": "rgb_array"}, "render_mode"),
        ({"render_mode": ["ansi"]}, "render_mode"),
    ],
    "srl/team_battle-v0": [
        ({"teamsize": 2}, "teamsize"),
        ({"cooperation_level": "1"}, "cooperation_level"),
        ({"competition_intensity": float("inf")}, "competition_intensity"),
        ({"format_penalty": "0.1"}, "format_penalty"),
        ({"budget": 10.0}, "budget"),
        ({"field_values": 5}, "field_values"),
        ({"answer_example": None}, "answer_example"),
        ({"action_mode": "Text"}, "action_mode"),
        ({"render_mode": "rgb_array"}, "render_mode"),
    ],
    "srl/staged-v0": [
        ({"stages": 5}, "stages"),  # was a TypeError from tuple(5)
        ({"stages": "abc"}, "stages"),
        ({"stages": [Stage("a", {}), "b"]}, "stages"),
        ({"no_such_argument": 1}, "no_such_argument"),  # neither the wrapper's nor the base's
        ({"base": "team_battle", "num_models": 4, "regen_rate": 0.5}, "regen_rate"),
        ({"warmup_episodes": "3"}, "warmup_episodes"),
        ({"episodes_per_stage": 2.0}, "episodes_per_stage"),
        ({"advance": "performance", "gate_threshold": "1"}, "gate_threshold"),
        ({"gate_window": True}, "gate_window"),
        ({"num_models": "4"}, "num_models"),
        ({"base": 5}, "base"),
        ({"action_mode": "tokens"}, "action_mode"),
        ({"render_mode": "rgb_array"}, "render_mode"),
        ({"stages": [Stage("a", {"capacity": "50"})]}, "capacity"),
    ],
    # PettingZoo's games through the text bridge: the bridge's options and the game's own
    "srl/pz-tictactoe-v3": [
        ({"seat_order": "shuffled"}, "seat_order"),
        ({"episode_length": 0}, "episode_length"),
        ({"episode_length": 3, "max_cycles": 4}, "max_cycles"),
        ({"fallback": "centre"}, "fallback"),
        ({"format_penalty": -1.0}, "format_penalty"),
        ({"render_mode": "rgb_array"}, "render_mode"),
        ({"no_such_argument": 1}, "no_such_argument"),
    ],
    "srl/pz-connect_four-v3": [
        ({"fallback": 7}, "fallback"),
        ({"fallback": True}, "fallback"),
        ({"seat_order": None}, "seat_order"),
    ],
    "srl/pz-leduc_holdem-v4": [
        ({"fallback": "all-in"}, "fallback"),
        ({"episode_length": "2"}, "episode_length"),
    ],
    "srl/pz-rps-v2": [
        ({"num_action": 5}, "num_action"),
        ({"seat_order": 1}, "seat_order"),
    ],
    "srl/ta-tictactoe-v0": [
        ({"num_players": 0}, "num_players"),
        ({"episode_length": 0}, "episode_length"),
        ({"format_penalty": "0.1"}, "format_penalty"),
    ],
    "srl/ta-kuhn_poker-v0": [({"render_mode": "rgb_array"}, "render_mode")],
    "srl/ta-prisoners_dilemma-v0": [
        ({"no_such_argument": 1}, "no_such_argument"),
        ({"max_cycles": 0}, "max_cycles"),
    ],
}


def test_every_registered_env_has_a_bad_argument_table():
    assert set(BAD_ARGUMENTS) == set(srl_envs.list_envs())


@pytest.mark.parametrize(
    ("env_id", "kwargs", "name"),
    [(env_id, kw, name) for env_id, rows in BAD_ARGUMENTS.items() for kw, name in rows],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_bad_argument_is_a_value_error_naming_it(env_id, kwargs, name):
    with pytest.raises(ValueError) as info:
        srl_envs.make(env_id, **kwargs)
    message = str(info.value)
    assert name in message
    assert any(word in message for word in ("must", "arguments are", "one of")), message


def test_unknown_keywords_name_the_arguments_there_are():
    with pytest.raises(ValueError, match=r"no argument 'num_modelz'.*'num_models'"):
        srl_envs.CoopCompeteEnv(num_modelz=4)  # the class itself, not only make()
    with pytest.raises(ValueError, match=r"no argument 'teamsize'.*'team_size'"):
        srl_envs.create_multi_model_team_battle(teamsize=2)
    with pytest.raises(ValueError, match="no argument 'regen'"):
        srl_envs.create_multi_model_staged_env(num_models=2, regen=0.5)


def test_numbers_of_numpy_types_are_accepted():
    env = srl_envs.make(
        "srl/coop_compete-v0",
        num_models=np.int64(3),
        cooperation_level=np.float32(0.5),
        regen_rate=1,  # an int is a real number
    )
    assert env.cooperation_level == 0.5 and env.params.num_agents == 3


@pytest.mark.parametrize(
    ("check", "args", "message"),
    [
        (check_int_range, ("n", 0, 1, 5), "n must be an integer [1, 5], got 0"),
        (check_int_range, ("n", "3", 1), "n must be an integer >= 1, got '3'"),
        (check_float_range, ("x", "0.5", 0.0, 1.0), "x must be a finite number in [0.0, 1.0]"),
        (check_float_range, ("x", 0.0, 0.0, None), None),
        (check_float_range, ("x", 0.0, 0.0, 10.0), None),
    ],
)
def test_range_checks(check, args, message):
    if message is None:
        check(*args)
        return
    with pytest.raises(ValueError) as info:
        check(*args)
    assert message in str(info.value)


def test_check_keywords_passes_functions_that_take_any_keyword():
    check_keywords("f", lambda **kw: None, {"anything": 1})
    with pytest.raises(ValueError, match="f has no argument 'b': the arguments are \\['a'\\]"):
        check_keywords("f", lambda a=1: None, {"b": 2})
