"""The structured mode as MARL libraries use it, over every registered env (the rows of
``test_conformance.CASES``): the one action contract, ``state()`` / ``state_space``,
numeric infos, ``render_mode="human"``, ``max_cycles``, and the staged wrapper's fixed
spaces.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.test import max_cycles_test, render_test, state_test
from pettingzoo.utils.conversions import parallel_to_aec

import srl_envs
from srl_envs.staged import StagedEnv
from srl_envs.structured import cast_action, numeric_info
from tests.envs.test_conformance import NATIVE_ENVS, case_id, env_cases

CASES = env_cases()


def make(case, **overrides):
    env_id, kw = case
    return srl_envs.make(env_id, **{"action_mode": "structured", **kw, **overrides})


# ----------------------------------------------------------------- the action contract
def accepted_forms(space: spaces.Space, action: Any) -> list[Any]:
    """Every unambiguous form of ``action`` (an element of ``space``) that must be cast."""
    if isinstance(space, spaces.Discrete):
        a = int(action)
        return [
            a,
            np.int64(a),
            np.int8(a),
            float(a),
            np.float32(a),
            np.array(a),
            np.array([a]),
            np.array([[a]], dtype=np.float64),
            [a],
            (a,),
            torch.tensor(a),
            torch.tensor([a]),
            torch.tensor([float(a)], requires_grad=True),
        ]
    a = np.asarray(action, dtype=np.int64)
    return [
        a,
        a.tolist(),
        tuple(a.tolist()),
        a.astype(np.int32),
        a.astype(np.float32),
        a[None, :],
        a[:, None],
        torch.tensor(a),
        torch.tensor(a, dtype=torch.float32)[None],
    ]


def rejected_forms(space: spaces.Space) -> list[Any]:
    """Forms no cast can make an element of ``space`` unambiguously."""
    common = [None, "3", b"\x01", {"a": 1}, float("nan"), float("inf"), object()]
    if isinstance(space, spaces.Discrete):
        n = int(space.n)
        return [
            *common,
            2.5,
            np.float32(1.5),
            n,
            -1,
            2**70,
            True,
            np.bool_(False),
            np.array([1, 2]),
            np.zeros((2, 1)),
            torch.tensor([1, 2]),
            torch.tensor(True),
            [[1], [2]],
        ]
    k = space.shape[0]
    high = int(space.nvec.max())
    return [
        *common,
        3,
        np.zeros(k + 1, dtype=np.int64),
        np.zeros((2, k), dtype=np.int64),
        np.full(k, high),  # one past the top of every entry
        np.full(k, -1),
        np.full(k, 0.5),
        np.zeros(k, dtype=bool),
        [[1, 2], [3]],
        ["1"] * k,
        torch.zeros(k + 1),
    ]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_unambiguous_forms_are_cast_and_act_like_the_plain_action(case):
    env, twin = make(case), make(case)
    env.reset(seed=3)
    twin.reset(seed=3)
    agents = env.possible_agents
    for agent in agents:
        env.action_space(agent).seed(3)
    plain = {a: env.action_space(a).sample() for a in agents}
    forms = {a: accepted_forms(env.action_space(a), plain[a]) for a in agents}
    for i in range(max(len(f) for f in forms.values())):
        form = {a: forms[a][i % len(forms[a])] for a in agents}
        for a in agents:
            cast = cast_action(a, form[a], env.action_space(a))
            assert env.action_space(a).contains(cast), (a, form[a])
            np.testing.assert_array_equal(cast, plain[a])
        got = env.step(form)
        want = twin.step(plain)
        np.testing.assert_equal(got, want)
        if not env.agents:
            env.reset(seed=i)
            twin.reset(seed=i)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_anything_else_raises_naming_the_agent_the_value_and_the_space(case):
    env, twin = make(case), make(case)
    env.reset(seed=0)
    twin.reset(seed=0)
    agent = env.agents[-1]
    space = env.action_space(agent)
    space.seed(0)
    valid = {a: env.action_space(a).sample() for a in env.agents}
    for bad in rejected_forms(space):
        with pytest.raises(ValueError) as info:
            env.step({**valid, agent: bad})
        message = str(info.value)
        assert agent in message and str(space) in message, message
        if bad is not None:
            assert repr(bad)[:20] in message, message
    with pytest.raises(ValueError, match=f"no action for {agent!r}"):
        env.step({a: x for a, x in valid.items() if a != agent})
    # A rejected step changed nothing: the env goes on exactly like its twin.
    np.testing.assert_equal(env.step(valid), twin.step(valid))
    np.testing.assert_equal(env.state(), twin.state())


def test_text_mode_never_raises_on_structured_looking_actions():
    env = srl_envs.make("srl/coop_compete-v0", num_models=2)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({"player_0": np.array([5]), "player_1": None})
    assert infos["player_0"]["harvest"] == 5 and infos["player_1"]["invalid_action"]


# ----------------------------------------------------------------- global state
@pytest.mark.filterwarnings("ignore:Environment's maximum and minimum state space values")
@pytest.mark.filterwarnings("ignore:State numpy array is all zeros")
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_state_and_state_space_pass_pettingzoo_state_test(case):
    env = make(case)
    assert isinstance(env.state_space, spaces.Box) and env.state_space is env.state_space
    state_test(parallel_to_aec(make(case)), make(case), num_cycles=20)
    env.reset(seed=1)
    for agent in env.possible_agents:
        env.action_space(agent).seed(1)
    states = [env.state()]
    while env.agents:
        env.step({a: env.action_space(a).sample() for a in env.agents})
        states.append(env.state())
    assert all(env.state_space.contains(s) for s in states)
    assert any(not np.array_equal(states[0], s) for s in states[1:])  # it tracks the game


def test_commons_state_is_the_game_seen_from_seat_0():
    env = srl_envs.make("srl/coop_compete-v0", num_models=3, action_mode="structured")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.state(), obs["player_0"])
    obs, *_ = env.step({"player_0": 1, "player_1": 2, "player_2": 3})
    np.testing.assert_array_equal(env.state(), obs["player_0"])
    assert env.state_space == env.observation_space("player_0")


def test_team_battle_state_is_reds_view_without_the_team_flag():
    env = srl_envs.make(
        "srl/team_battle-v0", team_size=2, num_fields=3, budget=6, action_mode="structured"
    )
    env.reset(seed=0)
    obs, *_ = env.step({a: np.array([1, 2, 3]) for a in env.agents})
    np.testing.assert_array_equal(env.state(), obs["red_0"][:-1])
    assert env.state_space.shape == (env.observation_space("red_0").shape[0] - 1,)


def test_text_mode_has_the_same_state():
    text = srl_envs.make("srl/team_battle-v0", team_size=1)
    structured = srl_envs.make("srl/team_battle-v0", team_size=1, action_mode="structured")
    text.reset(seed=0)
    structured.reset(seed=0)
    text.step({"red_0": "1 2 3 4 0", "blue_0": "2 2 2 2 2"})
    structured.step({"red_0": [1, 2, 3, 4, 0], "blue_0": [2, 2, 2, 2, 2]})
    np.testing.assert_array_equal(text.state(), structured.state())
    assert text.state_space == structured.state_space


# ----------------------------------------------------------------- numeric infos
def leaves(info: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_infos_are_numbers_with_the_same_keys_at_every_step(case):
    env = make(case)
    keys = None
    for episode in range(6):  # long enough for the staged rows to pass a stage or two
        _, infos = env.reset(seed=episode)
        assert infos == {a: {} for a in env.agents}
        for agent in env.possible_agents:
            env.action_space(agent).seed(episode)
        while env.agents:
            *_, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
            for info in infos.values():
                flat = leaves(info)
                assert all(type(v) in (bool, int, float) for v in flat.values()), flat
                assert all(np.isfinite(v) for v in flat.values()), flat
                keys = keys or set(flat)
                assert set(flat) == keys
    assert {"raw_score", "reward_components/mixed", "invalid_action"} <= keys


def test_numeric_info_keeps_numbers_and_drops_the_rest():
    info = {
        "a": np.int64(3),
        "b": np.float32(0.5),
        "c": np.bool_(True),
        "d": "text",
        "e": None,
        "f": (1, 2),
        "g": {"h": 1.0, "i": "x", "j": {"k": "y"}},
    }
    assert numeric_info(info) == {"a": 3, "b": 0.5, "c": True, "g": {"h": 1.0}}
    assert [type(v) for v in numeric_info(info).values()] == [int, float, bool, dict]


# ----------------------------------------------------------------- render, max_cycles
@pytest.mark.parametrize("action_mode", ["text", "structured"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_render_modes_pass_pettingzoo_render_test(case, action_mode, capsys):
    def env_fn(render_mode):
        return parallel_to_aec(make(case, action_mode=action_mode, render_mode=render_mode))

    render_test(env_fn)
    assert capsys.readouterr().out  # human mode printed the ansi view


def test_human_mode_prints_what_ansi_returns(capsys):
    human = srl_envs.make("srl/coop_compete-v0", num_models=2, render_mode="human")
    ansi = srl_envs.make("srl/coop_compete-v0", num_models=2, render_mode="ansi")
    human.reset(seed=0)
    ansi.reset(seed=0)
    assert human.render() is None
    assert capsys.readouterr().out == ansi.render() + "\n"


# Settings that cannot end before max_cycles rounds (no collapse in the commons).
MAX_CYCLES_CASES = [
    ("srl/coop_compete-v0", {"num_models": 3, "max_harvest": 1}),
    ("srl/team_battle-v0", {"team_size": 2}),
    ("srl/staged-v0", {"num_models": 4, "warmup_episodes": 1, "max_harvest": 1}),
    ("srl/staged-v0", {"base": "team_battle", "num_models": 2, "warmup_episodes": 0}),
]


@pytest.mark.parametrize("case", MAX_CYCLES_CASES, ids=case_id)
def test_max_cycles_is_the_pettingzoo_name_of_episode_length(case):
    module = types.SimpleNamespace(
        parallel_env=lambda **kw: make(case, **kw),
        env=lambda **kw: parallel_to_aec(make(case, **kw)),
    )
    max_cycles_test(module)
    env = make(case, max_cycles=7, episode_length=7)
    inner = env.env if isinstance(env, StagedEnv) else env
    assert inner.params.episode_length == 7
    with pytest.raises(ValueError, match=r"max_cycles.*episode_length"):
        make(case, max_cycles=7, episode_length=6)
    with pytest.raises(ValueError, match="max_cycles must be an integer"):
        make(case, max_cycles=0)


def test_registered_envs_list_both_render_modes():
    for env_id in NATIVE_ENVS:
        assert srl_envs.spec(env_id).entry_point.metadata["render_modes"] == ["human", "ansi"]


# ----------------------------------------------------------------- the staged wrapper
def test_staged_agents_can_be_assigned_like_any_parallel_env():
    env = srl_envs.make("srl/staged-v0", num_models=3, warmup_episodes=0)
    env.reset(seed=0)
    env.agents = env.agents[:2]  # what wrappers that track agents do
    assert env.agents == ["player_0", "player_1"] and env.env.agents == env.agents
    env.reset(seed=0)
    assert env.agents == env.possible_agents


def test_staged_team_battle_keeps_one_space_over_stages_of_different_field_counts():
    def staged():  # the default stages: 3, 5 and 7 fields
        return srl_envs.make(
            "srl/staged-v0",
            base="team_battle",
            num_models=4,
            warmup_episodes=0,
            episodes_per_stage=1,
            action_mode="structured",
        )

    env, twin = staged(), staged()
    act, obs_space = env.action_space("red_0"), env.observation_space("red_0")
    assert act == spaces.MultiDiscrete([11] * 7)
    widths = [e.observation_space("red_0").shape[0] for e in env._envs]
    assert obs_space.shape == (max(widths),) and env.state_space.shape == (max(widths) - 1,)
    for stage, fields in enumerate((3, 5, 7)):
        obs, _ = env.reset(seed=stage)
        twin.reset(seed=stage)
        assert env.stage == stage and env.env.params.num_fields == fields
        assert env.env.action_space("red_0") == spaces.MultiDiscrete([11] * fields)
        assert all(obs_space.contains(o) and not o[widths[stage] :].any() for o in obs.values())
        # The fields a stage does not have are ignored: any value there plays the same.
        used = np.arange(fields) % 4
        junk = {a: np.r_[used, np.full(7 - fields, 10)] for a in env.agents}
        zero = {a: np.r_[used, np.zeros(7 - fields, dtype=int)] for a in env.agents}
        while env.agents:
            got, want = env.step(junk), twin.step(zero)
            np.testing.assert_equal(got, want)
            assert all(obs_space.contains(o) for o in got[0].values())
            assert env.state_space.contains(env.state())
