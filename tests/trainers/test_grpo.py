"""GRPO: group advantages and the loss, checked by hand and against a real ``trl.GRPOTrainer``."""

from __future__ import annotations

import math

import pytest
import torch

from srl_trainers.algorithms.grpo import completion_logps, group_advantages, grpo_loss

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")


# ---------------------------------------------------------------------- advantages
def test_group_advantages_hand_computed():
    rewards = torch.tensor([1.0, 3.0, 0.0, 2.0, 4.0])
    groups = torch.tensor([0, 0, 1, 1, 1])
    # group 0: mean 2, unbiased std sqrt(2); group 1: mean 2, unbiased std 2
    expected = torch.tensor(
        [-1 / (math.sqrt(2) + 1e-4), 1 / (math.sqrt(2) + 1e-4), -2 / 2.0001, 0.0, 2 / 2.0001]
    )
    torch.testing.assert_close(group_advantages(rewards, groups), expected)
    unscaled = group_advantages(rewards, groups, scale_by_std=False)
    torch.testing.assert_close(unscaled, torch.tensor([-1.0, 1.0, -2.0, 0.0, 2.0]))


def test_group_advantages_any_group_order_and_ids():
    rewards = torch.tensor([1.0, 0.0, 3.0, 2.0, 4.0])
    groups = torch.tensor([7, 2, 7, 2, 2])  # interleaved, arbitrary ids
    adv = group_advantages(rewards, groups)
    ordered = group_advantages(
        torch.tensor([1.0, 3.0, 0.0, 2.0, 4.0]), torch.tensor([0, 0, 1, 1, 1])
    )
    torch.testing.assert_close(adv[[0, 2, 1, 3, 4]], ordered)


def test_group_advantages_zero_std_single_member_and_nan_give_zero():
    rewards = torch.tensor([0.1, 0.1, 0.1, 5.0, 2.0, float("nan"), 4.0])
    groups = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    adv = group_advantages(rewards, groups)
    assert torch.isfinite(adv).all()
    assert adv[:3].eq(0).all()  # all-equal group: exactly 0, not (rounding error) / 1e-4
    assert adv[3] == 0  # group of one
    assert adv[5] == 0  # unscorable reward
    # the NaN is left out of its group's statistics: [2, 4] -> mean 3, std sqrt(2)
    torch.testing.assert_close(adv[[4, 6]], torch.tensor([-1.0, 1.0]) / (math.sqrt(2) + 1e-4))


def test_group_advantages_match_trl_formula():
    from trl.trainer.utils import nanstd

    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(24, generator=gen)
    num_generations = 4
    grouped = rewards.view(-1, num_generations)
    mean = grouped.mean(dim=1).repeat_interleave(num_generations)
    std = nanstd(grouped, dim=1).repeat_interleave(num_generations)
    expected = (rewards - mean) / (std + 1e-4)
    groups = torch.arange(6).repeat_interleave(num_generations)
    torch.testing.assert_close(group_advantages(rewards, groups), expected)


# ---------------------------------------------------------------------- loss, by hand
def _toy_batch(seed: int = 0, batch: int = 4, length: int = 5):
    gen = torch.Generator().manual_seed(seed)
    logps = (-torch.rand(batch, length, generator=gen) * 3).requires_grad_()
    old = logps.detach() + 0.4 * torch.randn(batch, length, generator=gen)
    ref = logps.detach() + 0.3 * torch.randn(batch, length, generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 3:] = 0
    mask[2, 1:] = 0
    advantages = torch.tensor([1.0, -0.5, 0.7, -1.2])[:batch]
    return logps, old, ref, advantages, mask


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_grpo_loss_gradients_flow_to_active_tokens_only(loss_type, beta):
    logps, old, ref, adv, mask = _toy_batch()
    loss, metrics = grpo_loss(
        logps,
        old,
        ref,
        adv,
        mask,
        beta=beta,
        epsilon_low=10.0,
        epsilon_high=10.0,
        loss_type=loss_type,
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert logps.grad[mask == 0].eq(0).all()
    assert logps.grad[mask == 1].ne(0).all()
    assert metrics["loss"] == pytest.approx(loss.item())
    assert set(metrics) >= {"loss", "ratio_mean", "clip_ratio/region_mean", "kl"}


def test_grpo_loss_on_policy_is_the_policy_gradient():
    """old=None: ratio 1, so the grpo loss is -mean(A) and its gradient is -A / |o| per token."""
    logps, _, _, adv, mask = _toy_batch()
    loss, metrics = grpo_loss(
        logps, None, None, adv, mask, beta=0.0, epsilon_low=0.2, epsilon_high=0.2, loss_type="grpo"
    )
    loss.backward()
    assert loss.item() == pytest.approx(-adv.mean().item())
    lengths = mask.sum(-1, keepdim=True)
    expected = -adv.unsqueeze(1) / lengths / len(adv) * mask
    torch.testing.assert_close(logps.grad, expected)
    assert metrics["ratio_mean"] == pytest.approx(1.0)
    assert metrics["clip_ratio/region_mean"] == 0.0


def test_grpo_loss_clipping_zeroes_the_gradient_on_the_clipped_side():
    eps = 0.2
    logps = torch.zeros(4, 1, requires_grad=True)
    # ratios: 2.0 (high), 2.0 (high), 0.5 (low), 0.5 (low)
    old = torch.log(torch.tensor([[0.5], [0.5], [2.0], [2.0]]))
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    mask = torch.ones(4, 1)
    loss, metrics = grpo_loss(
        logps, old, None, adv, mask, beta=0.0, epsilon_low=eps, epsilon_high=eps, loss_type="bnpo"
    )
    loss.backward()
    grad = logps.grad.squeeze(1)
    # ratio above 1 + eps with A > 0, and below 1 - eps with A < 0: clipped, no gradient
    assert grad[0] == 0 and grad[2] == 0
    # the other side is not clipped (min picks the unclipped, pessimistic term): gradient flows
    # d/dlogp of -A * r / 4 = -A * r / 4
    assert grad[1].item() == pytest.approx(1.0 * 2.0 / 4)
    assert grad[3].item() == pytest.approx(-1.0 * 0.5 / 4)
    assert metrics["clip_ratio/high_mean"] == 0.25
    assert metrics["clip_ratio/low_mean"] == 0.25
    assert metrics["clip_ratio/region_mean"] == 0.5


def test_grpo_loss_padding_with_garbage_stays_finite():
    logps, old, ref, adv, mask = _toy_batch()
    old = old.masked_fill(mask == 0, -1e4)  # exp(logp - old) would overflow to inf there
    ref = ref.masked_fill(mask == 0, 1e4)
    for loss_type in LOSS_TYPES:
        loss, metrics = grpo_loss(
            logps,
            old,
            ref,
            adv,
            mask,
            beta=0.1,
            epsilon_low=0.2,
            epsilon_high=0.28,
            loss_type=loss_type,
        )
        assert torch.isfinite(loss)
        assert all(math.isfinite(v) for v in metrics.values())


def test_grpo_loss_normalisations():
    logps, old, _, adv, mask = _toy_batch()
    kwargs = dict(beta=0.0, epsilon_low=0.2, epsilon_high=0.28)
    per_seq = {}
    for loss_type in LOSS_TYPES:
        per_seq[loss_type], _ = grpo_loss(
            logps, old, None, adv, mask, loss_type=loss_type, **kwargs
        )
    total = per_seq["bnpo"] * mask.sum()  # bnpo: sum over active tokens / their count
    torch.testing.assert_close(per_seq["dapo"], per_seq["bnpo"])  # one process, one batch
    torch.testing.assert_close(per_seq["dr_grpo"], total / (4 * 5))  # default: padded length
    dr, _ = grpo_loss(
        logps, old, None, adv, mask, loss_type="dr_grpo", max_completion_length=16, **kwargs
    )
    torch.testing.assert_close(dr, total / (4 * 16))
    dapo, _ = grpo_loss(
        logps, old, None, adv, mask, loss_type="dapo", num_items_in_batch=40, **kwargs
    )
    torch.testing.assert_close(dapo, total / 40)


def test_grpo_loss_bf16_inputs_are_computed_in_float32():
    """A bf16 token count is exact only up to 256: the loss must not depend on it."""
    logps = torch.full((2, 300), -1.0, dtype=torch.bfloat16, requires_grad=True)
    mask = torch.ones(2, 300, dtype=torch.long)
    mask[1, 257:] = 0
    loss, _ = grpo_loss(
        logps,
        None,
        None,
        torch.tensor([1.0, 1.0]),
        mask,
        beta=0.0,
        epsilon_low=0.2,
        epsilon_high=0.2,
        loss_type="dapo",
    )
    loss.backward()
    assert loss.dtype == torch.float32 and loss.item() == -1.0
    assert logps.grad.dtype == torch.bfloat16
    assert logps.grad[0, 0].item() == pytest.approx(-1 / 557, rel=1e-2)


def test_grpo_loss_rejects_bad_arguments():
    logps, old, _, adv, mask = _toy_batch()
    kwargs = dict(epsilon_low=0.2, epsilon_high=0.2)
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(logps, old, None, adv, mask, beta=0.0, loss_type="cispo", **kwargs)
    with pytest.raises(ValueError, match="ref_per_token_logps"):
        grpo_loss(logps, old, None, adv, mask, beta=0.1, loss_type="grpo", **kwargs)
    with pytest.raises(ValueError, match="importance_sampling_level"):
        grpo_loss(
            logps,
            old,
            None,
            adv,
            mask,
            beta=0.0,
            loss_type="grpo",
            importance_sampling_level="x",
            **kwargs,
        )


# ---------------------------------------------------------------------- parity with TRL
TEMPERATURE = 0.7
EPS_LOW, EPS_HIGH = 0.2, 0.28
MAX_COMPLETION_LENGTH = 8


def _zero_reward(completions, **kwargs):
    return [0.0] * len(completions)


def _score_reward(completions, score, **kwargs):
    return list(score)


def _make_trl_trainer(tmp_path, *, loss_type="dapo", beta=0.0, level="token", reward=_zero_reward):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from srl_trainers.testing import build_tiny_model, build_tiny_tokenizer

    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        num_generations=2,
        max_completion_length=MAX_COMPLETION_LENGTH,
        temperature=TEMPERATURE,
        beta=beta,
        loss_type=loss_type,
        epsilon=EPS_LOW,
        epsilon_high=EPS_HIGH,
        importance_sampling_level=level,
        seed=0,
    )
    dataset = Dataset.from_dict({"prompt": ["ab", "cd"], "score": [0.0, 0.0]})
    trainer = GRPOTrainer(
        model=str(build_tiny_model()),
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=build_tiny_tokenizer(),
    )
    trainer.model.train()
    # Set by Trainer's training loop; 1 with gradient_accumulation_steps=1.
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def _padded_batch(pad_id: int):
    """4 sequences: prompts left-padded to 5 tokens, completions right-padded to 6."""
    gen = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(0, 256, (4, 5), generator=gen)
    prompt_mask = torch.ones(4, 5, dtype=torch.long)
    prompt_mask[1, :2] = 0
    prompt_mask[3, :1] = 0
    completion_ids = torch.randint(0, 256, (4, 6), generator=gen)
    completion_mask = torch.ones(4, 6, dtype=torch.long)
    completion_mask[0, 4:] = 0
    completion_mask[2, 1:] = 0
    completion_mask[3, 3:] = 0
    prompt_ids = prompt_ids.masked_fill(prompt_mask == 0, pad_id)
    completion_ids = completion_ids.masked_fill(completion_mask == 0, pad_id)
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([1.3, -0.8, 0.4, -1.1]),
        "num_items_in_batch": completion_mask.sum(),
    }


def _our_logps(model, inputs):
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return completion_logps(logits, inputs["completion_ids"], temperature=TEMPERATURE)


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _trl_vs_ours(trainer, inputs, *, loss_type, beta, level="token"):
    """TRL's loss and parameter gradients, and ours, on the same model and batch."""
    model = trainer.model
    model.zero_grad()
    trl_loss = trainer._compute_loss(model, inputs)
    trl_loss.backward()
    trl_grads = _grads(model)

    model.zero_grad()
    logps = _our_logps(model, inputs)
    ours, metrics = grpo_loss(
        logps,
        inputs.get("old_per_token_logps"),
        inputs.get("ref_per_token_logps"),
        inputs["advantages"],
        inputs["completion_mask"],
        beta=beta,
        epsilon_low=EPS_LOW,
        epsilon_high=EPS_HIGH,
        loss_type=loss_type,
        max_completion_length=MAX_COMPLETION_LENGTH,
        importance_sampling_level=level,
        num_items_in_batch=inputs["num_items_in_batch"],
    )
    ours.backward()
    return trl_loss, trl_grads, ours, _grads(model), metrics


CASES = [(lt, beta, "token", True) for lt in LOSS_TYPES for beta in (0.0, 0.04)] + [
    ("dapo", 0.04, "token", False),  # on-policy: old logps None, the KL's ratio has a gradient
    ("grpo", 0.04, "sequence", True),  # GSPO-style sequence-level ratio
]


@pytest.mark.parametrize(("loss_type", "beta", "level", "off_policy"), CASES)
def test_grpo_loss_matches_trl(tmp_path, loss_type, beta, level, off_policy):
    trainer = _make_trl_trainer(tmp_path, loss_type=loss_type, beta=beta, level=level)
    inputs = _padded_batch(trainer.processing_class.pad_token_id)
    with torch.no_grad():
        current = _our_logps(trainer.model, inputs)
    gen = torch.Generator().manual_seed(2)
    if off_policy:  # far enough from the current policy that both clip sides are hit
        inputs["old_per_token_logps"] = current + 0.5 * torch.randn(current.shape, generator=gen)
    if beta != 0.0:
        inputs["ref_per_token_logps"] = current + 0.3 * torch.randn(current.shape, generator=gen)

    trl_loss, trl_grads, ours, our_grads, metrics = _trl_vs_ours(
        trainer, inputs, loss_type=loss_type, beta=beta, level=level
    )

    assert trl_loss.item() != 0.0
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(our_grads, trl_grads, rtol=1e-4, atol=1e-6)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    for key in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"):
        assert metrics[key] == pytest.approx(logged[key], abs=1e-6), key
    if off_policy and level == "token":
        assert metrics["clip_ratio/low_mean"] > 0 and metrics["clip_ratio/high_mean"] > 0
    if beta != 0.0:
        assert metrics["kl"] == pytest.approx(logged["kl"], rel=1e-5)


def test_group_advantages_and_loss_match_trl_on_generated_batch(tmp_path):
    """TRL samples and scores a real batch; our advantages and loss agree with its own."""
    trainer = _make_trl_trainer(tmp_path, loss_type="dapo", beta=0.0, reward=_score_reward)
    rows = [
        {"prompt": "ab", "score": 1.0},
        {"prompt": "ab", "score": 3.0},
        {"prompt": "cd", "score": 2.0},
        {"prompt": "cd", "score": 2.0},
    ]
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(rows)

    rewards = torch.tensor([row["score"] for row in rows])
    groups = torch.tensor([0, 0, 1, 1])  # TRL groups consecutive num_generations rows
    torch.testing.assert_close(batch["advantages"], group_advantages(rewards, groups))

    trl_loss, trl_grads, ours, our_grads, _ = _trl_vs_ours(
        trainer, batch, loss_type="dapo", beta=0.0
    )
    assert trl_grads.abs().max() > 0  # on-policy the loss value is 0; the gradient is not
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(our_grads, trl_grads, rtol=1e-4, atol=1e-6)


def test_group_advantages_per_sample_baselines_replace_the_group_mean():
    nan = float("nan")
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0])
    groups = torch.tensor([0, 0, 0, 1, 1])
    # group 0: all equal, yet sample 1's own baseline says it did better than its alternatives
    baselines = torch.tensor([nan, 0.25, 1.0, nan, 0.5])
    adv = group_advantages(rewards, groups, scale_by_std=False, baselines=baselines)
    torch.testing.assert_close(adv, torch.tensor([0.0, 0.75, 0.0, -1.0, 1.5]))
    # scaled: by the root mean square of the group's deviations (Bessel), here
    # group 0: [0, 0.75, 0] -> sqrt(0.5625 / 2); group 1: [-1, 1.5] -> sqrt(3.25)
    scaled = group_advantages(rewards, groups, baselines=baselines)
    s0, s1 = math.sqrt(0.5625 / 2) + 1e-4, math.sqrt(3.25) + 1e-4
    torch.testing.assert_close(scaled, torch.tensor([0.0, 0.75 / s0, 0.0, -1 / s1, 1.5 / s1]))
    # all-NaN baselines are the plain group advantages
    plain = torch.full_like(rewards, nan)
    torch.testing.assert_close(
        group_advantages(rewards, groups, baselines=plain), group_advantages(rewards, groups)
    )
    with pytest.raises(ValueError, match="baselines must have the shape"):
        group_advantages(rewards, groups, baselines=torch.zeros(2))
