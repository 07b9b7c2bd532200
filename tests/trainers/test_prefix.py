"""Shared prompt prefixes (srl_trainers.prefix): the plan, and the same maths as the plain path.

Tolerance: the shared path sums attention over the same keys in another batch layout, so float32
results differ by round-off only: the tests hold every log-prob, entropy, hidden state, loss,
metric and gradient to 1e-5 absolute (measured on the tiny model: 3e-6 at most, on gradients
whose largest entry is about 5).
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from srl_trainers.models import ModelPool
from srl_trainers.prefix import plan_prefixes

ATOL = 1e-5


# ---------------------------------------------------------------------- the plan
def test_identical_prompts_share_all_but_their_last_token():
    prompts = [list(range(20))] * 4
    plan = plan_prefixes(prompts)
    assert plan.prefixes == [list(range(19))]
    assert plan.row_prefix == [0, 0, 0, 0]
    assert plan.shared == [19] * 4


def test_rows_share_only_under_the_same_key():
    prompts = [list(range(20))] * 4
    plan = plan_prefixes(prompts, keys=["a", "a", "b", "b"])
    assert len(plan.prefixes) == 2
    assert plan.prefix_keys == ["a", "b"]
    assert plan.row_prefix[0] == plan.row_prefix[1] != plan.row_prefix[2] == plan.row_prefix[3]


def test_prefixes_shorter_than_the_minimum_or_saving_too_little_are_not_shared():
    assert plan_prefixes([[1, 2, 3, 4], [1, 2, 3, 5]]) is None  # 3 < MIN_PREFIX_TOKENS
    assert plan_prefixes([list(range(20))]) is None  # one row
    # two rows that share 10 of 100 tokens: the saving is below min_saving
    a, b = list(range(100)), list(range(10)) + [7] * 90
    assert plan_prefixes([a, b]) is None
    assert plan_prefixes([a, b], min_saving=0.0).shared == [10, 10]


def test_the_plan_maximises_the_tokens_saved():
    system = list(range(100, 140))  # 40 tokens every row starts with
    x = system + list(range(60))  # 3 rows of x, 2 of y, 2 of z
    y = system + list(range(200, 250))
    z = system + [9] * 30
    prompts = [y, x, z, x, y, x, z]
    plan = plan_prefixes(prompts, min_saving=0.0)
    # each prompt's rows share their whole prompt but the last token: one run of all seven
    # with the 40-token system prompt would save 6 * 40 = 240 tokens, these runs save
    # 2 * 99 + 1 * 89 + 1 * 69 = 356
    assert [plan.shared[i] for i in (1, 3, 5)] == [len(x) - 1] * 3
    assert [plan.shared[i] for i in (0, 4)] == [len(y) - 1] * 2
    assert [plan.shared[i] for i in (2, 6)] == [len(z) - 1] * 2
    assert len(plan.prefixes) == 3
    for i, k in enumerate(plan.row_prefix):  # each row's own part starts where its prefix ends
        assert prompts[i][: plan.shared[i]] == plan.prefixes[k]
    plain, shared = plan.tokens([len(p) for p in prompts])
    assert (plain, shared) == (7 * 100, 3 * 99 + 7 * 1)


def test_a_row_that_shares_nothing_keeps_the_padded_layout_wide():
    """Every row runs its own part padded to the longest one: a row without a prefix makes
    that its whole prompt, and here the plan would put more tokens through than the plain
    layout, so there is none."""
    system = list(range(100, 140))
    x, y, z = system + list(range(60)), system + list(range(200, 250)), system + [9] * 30
    assert plan_prefixes([y, x, z, x, y, x], min_saving=0.0) is None


# ---------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def pool(tiny_model_path):
    pool = ModelPool(str(tiny_model_path), dtype="float32", device="cpu")
    lora = dict(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj"])
    pool.add_adapter("slot_a", seed=1, **lora)
    pool.add_adapter("slot_b", seed=2, **lora)
    torch.manual_seed(0)
    for name, p in pool.model.named_parameters():
        if "lora_B" in name:  # fresh LoRA B is zero: make the adapters differ from the base
            torch.nn.init.normal_(p, std=0.1)
    return pool


def _batch(tok):
    rules = "You are agent red_0. Allocate 20 soldiers over 5 fields, the most wins. "
    first = tok.encode(rules + "State: round 1.")
    second = tok.encode(rules + "State: round 2, you played 5 5 5 5 0.")
    prompts = [first] * 4 + [second] * 3 + [tok.encode("another prompt entirely")]
    completions = [
        tok.encode(text) for text in ("4 4 4 4 4", "20", "1 2", "", "7 7 6", "x", "3", "abc")
    ]
    return prompts, completions


@pytest.mark.parametrize("adapter", ["slot_a", None])
def test_sequence_logprobs_and_gradients_equal_the_plain_path(pool, adapter):
    prompts, completions = _batch(pool.tokenizer)
    params = pool.trainable_parameters("slot_a")
    numbers = pool.number_token_ids

    def forward(share: bool):
        pool.share_prefix = share
        for p in params:
            p.grad = None
        before = dict(pool.token_counts)
        out = pool.sequence_logprobs(
            adapter,
            prompts,
            completions,
            temperature=0.7,
            requires_grad=adapter is not None,
            return_entropy=True,
            entropy_vocab=numbers,
            return_hidden=True,
        )
        if adapter is not None:
            (
                out.logprobs.sum()
                + out.entropy.sum()
                + out.vocab_entropy.sum()
                + 0.1 * out.hidden.sum()
            ).backward()
        grads = [p.grad.clone() if p.grad is not None else None for p in params]
        kind = "train" if adapter is not None else "score"
        used = pool.token_counts[kind] - before.get(kind, 0)
        return out, grads, used

    plain, plain_grads, plain_tokens = forward(False)
    shared, shared_grads, shared_tokens = forward(True)
    pool.share_prefix = True
    assert shared_tokens < plain_tokens / 2  # 7 of the 8 rows share a long prefix
    for field in ("logprobs", "mask", "entropy", "vocab_entropy", "vocab_logprobs", "hidden"):
        a, b = getattr(plain, field), getattr(shared, field)
        assert a.shape == b.shape, field
        assert (a - b).abs().max() < ATOL, field
    for a, b in zip(plain_grads, shared_grads):
        if adapter is None:
            assert a is None and b is None
        else:
            assert a.abs().max() > 0.01  # the test compares gradients that exist
            assert (a - b).abs().max() < ATOL


def test_generation_gives_the_same_completions_with_several_adapters(pool):
    prompts, _ = _batch(pool.tokenizer)
    adapters = ["slot_a"] * 4 + ["slot_b"] * 3 + [None]
    outs = {}
    for share in (False, True):
        pool.share_prefix = share
        before = pool.token_counts["generate"]
        outs[share] = pool.generate(prompts, adapters, max_new_tokens=6, generator_seed=3)
        outs[share, "tokens"] = pool.token_counts["generate"] - before
    pool.share_prefix = True
    assert outs[True, "tokens"] < outs[False, "tokens"] / 2
    for a, b in zip(outs[False], outs[True]):
        assert a.completion_ids == b.completion_ids
        assert a.prompt_ids == b.prompt_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=ATOL)
    # and the adapters were applied: the rows of one prompt differ between slot_a and the base
    greedy = pool.generate(
        [prompts[0], prompts[0]], ["slot_a", None], max_new_tokens=6, do_sample=False
    )
    assert greedy[0].logprobs != pytest.approx(greedy[1].logprobs, abs=1e-3)


# ---------------------------------------------------------------------- the trainer's loss
TRAINER_CASES = {
    "grpo-grpo": {"loss_type": "grpo"},
    "grpo-dapo": {"loss_type": "dapo"},
    "grpo-dr_grpo": {"loss_type": "dr_grpo"},
    "grpo-bnpo-iterations": {"loss_type": "bnpo", "num_iterations": 2},
    "grpo-kl-entropy-numbers": {
        "beta": 0.05,
        "entropy_coef": 0.05,
        "entropy_target": None,
        "entropy_scope": "numbers",
        "number_kl_coef": 0.03,
    },
    "grpo-counterfactual": {
        "env": "team_battle",
        "env_kwargs": {"team_size": 2, "num_fields": 3},
        "baseline": "counterfactual",
        "episode_length": 1,
    },
    "ppo": {"algorithm": "ppo", "beta": 0.05},
}


def _trainer_after_one_rollout(tiny_model_path, tmp_path, seed: int, **overrides):
    """A tiny trainer whose buffers hold one rollout, with returns spread by seeded noise: the
    tiny random model's answers are mostly invalid, all alike, so without it the advantages
    (counterfactual or group-relative) and the gradients would be 0. Its LoRA B weights are
    made nonzero, so the gradients reach both A and B."""
    from srl_trainers import MultiModelTrainer
    from srl_trainers.testing import tiny_trainer_config

    trainer = MultiModelTrainer(
        tiny_trainer_config(tiny_model_path, tmp_path, seed=seed, **overrides)
    )
    trainer.setup()
    rollout = asyncio.run(trainer.rollout.play(0, 1.0, 0.4))
    trainer._compute_returns(rollout.turns)
    noise = torch.Generator().manual_seed(seed)
    for turn in rollout.turns:
        turn.ret += float(torch.randn((), generator=noise))
        turn.reward = turn.ret
        trainer._buffers[turn.slot].append(turn)
    with torch.no_grad():
        for name, p in trainer.pool_of[trainer.slots[0]].model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    return trainer


@pytest.mark.parametrize("case", list(TRAINER_CASES))
def test_the_trainers_loss_and_gradients_equal_the_plain_path(
    case, tiny_model_path, tmp_path, one_thread
):
    """One rollout (two rounds but where noted, so round 2's prompts share only a part), then
    the update's loss, metrics and gradients with and without sharing."""
    overrides = {"max_new_tokens": 6, "batch_size": 4, "group_size": 4, **TRAINER_CASES[case]}
    trainer = _trainer_after_one_rollout(tiny_model_path, tmp_path, 3, **overrides)
    slot = trainer.slots[0]
    pool = trainer.pool_of[slot]
    params = pool.trainable_parameters(slot)
    if trainer.config.algorithm == "ppo":
        params = params + list(trainer.value_heads[slot].parameters())

    def update(share: bool):
        pool.share_prefix = share
        for p in params:
            p.grad = None
        before = pool.token_counts["train"] + pool.token_counts["score"]
        metrics = trainer._backward(slot, trainer._prepare_batch(slot))
        used = pool.token_counts["train"] + pool.token_counts["score"] - before
        return metrics, [p.grad.clone() for p in params], used

    plain, plain_grads, plain_tokens = update(False)
    shared, shared_grads, shared_tokens = update(True)
    assert shared_tokens < plain_tokens
    assert sorted(plain) == sorted(shared)
    for key, value in plain.items():
        assert shared[key] == pytest.approx(value, abs=ATOL), key
    assert max(float(g.abs().max()) for g in plain_grads) > 1e-3
    for a, b in zip(plain_grads, shared_grads):
        assert (a - b).abs().max() < ATOL


# ---------------------------------------------------------------------- several adapters at once
@pytest.mark.parametrize("share", [True, False])
def test_one_call_over_several_adapters_equals_one_call_per_adapter(pool, share):
    """The trainer scores and trains the slots of one base model in one call: its rows'
    log-probs and each adapter's gradients are those of separate calls."""
    prompts, completions = _batch(pool.tokenizer)
    adapters = ["slot_a", "slot_b"] * 4
    params = pool.trainable_parameters("slot_a") + pool.trainable_parameters("slot_b")
    pool.share_prefix = share

    def grads() -> list[torch.Tensor]:
        out = [p.grad.clone() for p in params]
        for p in params:
            p.grad = None
        return out

    joint = pool.sequence_logprobs(adapters, prompts, completions, return_entropy=True)
    (joint.logprobs.sum() + joint.entropy.sum()).backward()
    joint_grads = grads()
    for name in ("slot_a", "slot_b"):
        rows = [i for i, a in enumerate(adapters) if a == name]
        alone = pool.sequence_logprobs(
            name, [prompts[i] for i in rows], [completions[i] for i in rows], return_entropy=True
        )
        (alone.logprobs.sum() + alone.entropy.sum()).backward()
        width = alone.logprobs.shape[1]
        assert (joint.logprobs[rows, :width] - alone.logprobs).abs().max() < ATOL
        assert joint.logprobs[rows, width:].abs().sum() == 0  # padding
    separate = grads()
    pool.share_prefix = True
    assert min(float(g.abs().max()) for g in separate) > 1e-3  # both adapters get gradients
    for a, b in zip(joint_grads, separate):
        assert (a - b).abs().max() < ATOL


def test_several_adapters_in_one_call_need_the_per_row_path(tiny_model_path):
    pool = ModelPool(str(tiny_model_path), dtype="float32", device="cpu")
    lora = dict(rank=4, alpha=8, target_modules=["q_proj", "v_proj"], seed=0)
    pool.add_adapter("slot_a", dropout=0.1, **lora)
    pool.add_adapter("slot_b", dropout=0.1, **lora)
    assert not pool.rows_can_mix
    with pytest.raises(ValueError, match="call it once per adapter"):
        pool.sequence_logprobs(["slot_a", "slot_b"], [[1, 2], [3, 4]], [[5], [6]])
    pool.sequence_logprobs(["slot_a", "slot_a"], [[1, 2], [3, 4]], [[5], [6]])  # one adapter


def test_the_trainer_updates_its_slots_together_as_it_would_one_by_one(
    tiny_model_path, tmp_path, one_thread
):
    trainer = _trainer_after_one_rollout(
        tiny_model_path, tmp_path, 5, max_new_tokens=6, beta=0.05, number_kl_coef=0.03
    )
    slots = trainer.slots
    pool = trainer.pool_of[slots[0]]
    assert len(slots) == 2 and all(trainer.pool_of[s] is pool for s in slots)
    params = {s: pool.trainable_parameters(s) for s in slots}

    def take() -> dict[str, list[torch.Tensor]]:
        out = {s: [p.grad.clone() for p in ps] for s, ps in params.items()}
        for ps in params.values():
            for p in ps:
                p.grad = None
        return out

    calls = []
    forward = pool.sequence_logprobs

    def counted(adapter, *a, **kw):
        calls.append(adapter)
        return forward(adapter, *a, **kw)

    pool.sequence_logprobs = counted
    together = trainer._backward_slots(pool, trainer._prepare_batches(pool, slots))
    joint_calls, calls[:] = list(calls), []
    together_grads = take()
    alone = {s: trainer._backward(s, trainer._prepare_batch(s)) for s in slots}
    alone_grads = take()
    del pool.sequence_logprobs
    # one reference call and one training call for both slots, against one each per slot
    assert len(joint_calls) == 2 and len(calls) == 4
    assert set(joint_calls[1]) == set(slots)
    for s in slots:
        assert sorted(together[s]) == sorted(alone[s])
        for key, value in alone[s].items():
            assert together[s][key] == pytest.approx(value, abs=ATOL), (s, key)
        for a, b in zip(together_grads[s], alone_grads[s]):
            assert (a - b).abs().max() < ATOL
