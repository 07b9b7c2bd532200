"""Structured mode with a real MARL library: a few MAPPO iterations with TorchRL."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torchrl")
torch = pytest.importorskip("torch")

from examples.marl_torchrl import train  # noqa: E402


@pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested")
@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        ("srl/coop_compete-v0", {"num_models": 3, "episode_length": 5}),  # Discrete actions
        ("srl/team_battle-v0", {"team_size": 2, "num_fields": 3}),  # MultiDiscrete actions
        ("srl/staged-v0", {"num_models": 2, "warmup_episodes": 2, "episodes_per_stage": 2}),
    ],
)
def test_mappo_trains_a_few_iterations(env_id, kwargs, one_thread):
    result = train(
        env_id,
        iterations=2,
        frames_per_batch=48,
        epochs=2,
        minibatch_size=24,
        hidden=16,
        log=False,
        **kwargs,
    )
    assert len(result.returns) == 2
    assert all(math.isfinite(r) for r in result.returns)  # episodes finish within a batch
    changed = [
        k
        for k, v in result.initial_parameters.items()
        if not torch.equal(v, result.final_parameters[k])
    ]
    assert result.relative_change() > 0
    for group in result.critics:  # every group's actor and critic moved
        assert any(k.startswith(f"{group}.actor_network_params") for k in changed), changed
        assert any(k.startswith(f"{group}.critic_network_params") for k in changed), changed
