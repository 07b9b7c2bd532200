"""The learner seam (srl_trainers.learner): one policy group's update, its weights and its state,
what a remote learner hands to engines and checkpoints."""

from __future__ import annotations

import pytest
import torch

from srl_trainers import MultiModelTrainer
from srl_trainers.learner import Learner
from srl_trainers.testing import tiny_trainer_config


def _played_trainer(tiny_model_path, tmp_path, **overrides) -> MultiModelTrainer:
    """A trainer whose buffers hold one episode's turns (rollout played, no update yet)."""
    cfg = tiny_trainer_config(tiny_model_path, tmp_path, max_episodes=1, **overrides)
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    import asyncio

    rollout = asyncio.run(trainer.rollout.play(0, *trainer.modes.balance()))
    trainer._compute_returns(rollout.turns)
    for turn in rollout.turns:
        trainer._buffers[turn.slot].append(turn)
    return trainer


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_a_second_learner_fed_the_first_ones_weights_and_state_updates_the_same(
    tiny_model_path, tmp_path, algorithm
):
    trainer = _played_trainer(tiny_model_path, tmp_path, algorithm=algorithm)
    ((checkpoint, first),) = trainer.learners.items()
    buffers = {s: list(trainer._buffers[s]) for s in first.slots}
    rewards = trainer._recent_rewards(first.slots)
    # a learner built elsewhere (a Ray actor) gets the first one's weights and state
    second = Learner(trainer.config, checkpoint, first.slots)
    torch.manual_seed(1)
    with torch.no_grad():  # make the copies differ before the state moves over
        for p in second.pool.trainable_parameters(first.slots[0]):
            p.add_(0.5)
    second.set_adapter_weights(first.adapter_weights())
    second.load_state_dict(first.state_dict())
    assert all(_same(first.adapter_weights()[s], second.adapter_weights()[s]) for s in first.slots)
    a = first.update(buffers, 0, rewards)
    b = second.update(buffers, 0, rewards)
    assert a.stepped == b.stepped == first.slots and a.changed == b.changed
    assert a.metrics.keys() == b.metrics.keys()
    for key in a.metrics:
        assert a.metrics[key] == pytest.approx(b.metrics[key], abs=1e-6), key
    for s in first.slots:
        assert _same(first.adapter_weights()[s], second.adapter_weights()[s]), s
    assert first.update_counts() == second.update_counts() == dict.fromkeys(first.slots, 1)


def test_adapter_files_round_trip_and_weights_are_copies(tiny_model_path, tmp_path):
    trainer = _played_trainer(tiny_model_path, tmp_path)
    learner = next(iter(trainer.learners.values()))
    slot = learner.slots[0]
    files = learner.adapter_files([slot])
    assert set(files[slot]) == {"adapter_model.safetensors", "adapter_config.json"}
    before = learner.adapter_weights([slot])[slot]
    weights = learner.adapter_weights([slot])
    for t in weights[slot].values():  # what adapter_weights returns is a copy
        t.add_(1.0)
    assert _same(before, learner.adapter_weights([slot])[slot])
    learner.set_adapter_weights(weights)
    assert not _same(before, learner.adapter_weights([slot])[slot])
    learner.load_adapter_files(files)  # back to what was saved, in place
    assert _same(before, learner.adapter_weights([slot])[slot])


def test_weights_that_do_not_fit_are_refused(tiny_model_path, tmp_path):
    trainer = _played_trainer(tiny_model_path, tmp_path)
    learner = next(iter(trainer.learners.values()))
    slot = learner.slots[0]
    weights = learner.adapter_weights([slot])
    bad = {k: t[..., :1] for k, t in weights[slot].items()}
    with pytest.raises((ValueError, RuntimeError)):
        learner.set_adapter_weights({slot: bad})
    with pytest.raises(ValueError, match="do not match"):
        learner.set_adapter_weights({slot: {"nonsense.weight": torch.zeros(1)}})


def test_the_engines_follow_the_generation_engine_protocol(tiny_model_path, tmp_path):
    from srl_trainers.distributed import EngineHost, RemoteEngine
    from srl_trainers.engines import GenerationEngine, PromptFormatter

    trainer = _played_trainer(tiny_model_path, tmp_path)
    pool = next(iter(trainer.pools.values()))
    assert isinstance(pool, GenerationEngine) and isinstance(pool, PromptFormatter)
    for cls in (EngineHost, RemoteEngine):
        assert callable(cls.generate) and callable(cls.set_adapter_weights)
    remote = RemoteEngine(pool.checkpoint, actor=None, kv_cache_size=pool.kv_cache_size)
    assert isinstance(remote, PromptFormatter)
    observations = ["state: 1", "state: 2"]
    assert remote.format_prompts(observations, "Play.") == pool.format_prompts(
        observations, "Play."
    )
