"""The structured-mode examples with Stable-Baselines3 + SuperSuit and AgileRL: a few
training iterations each move the networks and score them against random play (slow:
AgileRL alone takes seconds to import). The TorchRL example has ``test_torchrl.py``."""

from __future__ import annotations

import importlib
import math

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow


def check(result) -> None:
    assert math.isfinite(result.trained) and math.isfinite(result.random)
    assert result.changed(), "training moved no parameter"


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("srl/coop_compete-v0", {"num_models": 3, "episode_length": 5}),  # Discrete
        ("srl/team_battle-v0", {"team_size": 2, "num_fields": 3}),  # MultiDiscrete, teams
        ("srl/staged-v0", {"base": "team_battle", "num_models": 2, "warmup_episodes": 1}),
    ],
)
def test_sb3_shared_ppo_trains_a_few_iterations(env_id, kwargs, one_thread):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("supersuit")
    from examples.marl_sb3 import train

    result = train(env_id, timesteps=600, copies=2, eval_episodes=2, log=False, **kwargs)
    check(result)
    changed = result.changed()
    assert any("policy_net" in k or "action_net" in k for k in changed), changed
    assert any("value_net" in k for k in changed), changed


def test_agilerl_maddpg_trains_a_few_iterations(one_thread):
    pytest.importorskip("agilerl")
    from examples.marl_agilerl import train

    result = train(steps=400, eval_episodes=2, log=False, num_models=3, episode_length=5)
    check(result)
    changed = result.changed()
    assert any(k.startswith("actors.") for k in changed), changed
    assert any(k.startswith("critics.") for k in changed), changed


@pytest.mark.parametrize(
    ("module", "library"),
    [("examples.marl_sb3", "stable_baselines3"), ("examples.marl_agilerl", "agilerl")],
)
def test_bad_arguments_exit_with_code_2_and_one_line(module, library, capsys):
    pytest.importorskip(library)
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as info:
        main(["--cooperation-level", "1.5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cooperation_level must be" in err
