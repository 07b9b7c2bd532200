"""GRPO as pure tensor functions: group-relative advantages and TRL 1.16's clipped loss.

TRL keeps its GRPO loss inside ``GRPOTrainer._compute_loss``, tied to one policy and one
trainer. The multi-policy trainer needs the same objective per LoRA adapter, so this module
restates it on plain tensors with the same semantics (``tests/trainers/test_grpo.py`` checks
it against a real ``trl.GRPOTrainer``):

- advantages: reward minus its group mean, divided by the group's unbiased std plus ``1e-4``
  (``scale_rewards="group"``, ``multi_objective_aggregation="sum_then_normalize"``);
- loss: the two-sided clipped importance ratio (``epsilon_low`` / ``epsilon_high``), an
  optional per-token KL to the reference ``exp(ref - logp) - (ref - logp) - 1`` times
  ``beta`` (by default multiplied by the ratio, TRL's ``use_bias_correction_kl=True``), and
  one of the ``grpo`` / ``dr_grpo`` / ``dapo`` / ``bnpo`` normalisations.

Per-token log-probs come from ``trl.trainer.utils.selective_log_softmax`` of the completion
logits divided by the sampling temperature (see :func:`completion_logps`).
"""

from __future__ import annotations

import torch
from trl.trainer.utils import selective_log_softmax

__all__ = ["GRPO_LOSS_TYPES", "completion_logps", "group_advantages", "grpo_loss"]

GRPO_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def completion_logps(
    logits: torch.Tensor, completion_ids: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Per-token log-probs ``[B, C]`` of ``completion_ids`` from the logits that predict them.

    ``logits`` is the model output over prompt + completion ``[B, P + C, V]``; the token at
    position ``i`` is predicted by the logits at ``i - 1``, so the completion is scored by
    ``logits[:, P - 1 : -1]``. The temperature is the one the completions were sampled at.
    """
    num_completion = completion_ids.size(1)
    logits = logits[:, -num_completion - 1 : -1]
    return selective_log_softmax(logits, completion_ids, temperature=temperature)


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-4,
    baselines: torch.Tensor | None = None,
) -> torch.Tensor:
    """Group-relative advantages ``[N]``: reward minus its group mean, over the group std.

    As in TRL 1.16: the std is unbiased (Bessel's correction) and ``eps`` is added to it,
    ``(r - mean) / (std + eps)``. Groups are the distinct values of ``group_ids`` (any
    order, any sizes). NaN rewards (unscorable) are left out of their group's statistics and
    get advantage 0; a group of one, or whose rewards are all equal, gets advantage 0.

    ``baselines`` (``[N]``, optional) replaces the group mean of the samples where it is not
    NaN (a per-sample counterfactual baseline): their deviation is ``r - baseline``, which
    need not be 0 when the group's rewards are all equal. The std is then the root mean
    square of the group's deviations (with Bessel's correction), which is the std of the
    rewards when every sample uses the group mean.
    """
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards and group_ids must both have shape [N]; got {tuple(rewards.shape)} "
            f"and {tuple(group_ids.shape)}"
        )
    if baselines is not None and baselines.shape != rewards.shape:
        raise ValueError(
            f"baselines must have the shape of rewards {tuple(rewards.shape)}; "
            f"got {tuple(baselines.shape)}"
        )
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if rewards.numel() == 0:
        return rewards.clone()
    _, group = torch.unique(group_ids, return_inverse=True)
    num_groups = int(group.max()) + 1
    valid = ~torch.isnan(rewards)
    zeros = rewards.new_zeros(num_groups)

    count = zeros.index_add(0, group, valid.to(rewards.dtype))
    mean = zeros.index_add(0, group, torch.where(valid, rewards, 0.0)) / count
    deviation = rewards - mean[group]
    own = None
    if baselines is not None:
        own = ~torch.isnan(baselines)
        deviation = torch.where(own, rewards - baselines.to(rewards.dtype), deviation)
    advantages = deviation
    if scale_by_std:
        squared = torch.where(valid, deviation, 0.0) ** 2
        std = (zeros.index_add(0, group, squared) / (count - 1)).sqrt()  # NaN for groups of one
        advantages = deviation / (std[group] + eps)
    # All-equal groups: exactly 0 (float rounding of the mean would otherwise leave ~1e-4).
    high = zeros.scatter_reduce(
        0, group, torch.where(valid, rewards, -torch.inf), "amax", include_self=False
    )
    low = zeros.scatter_reduce(
        0, group, torch.where(valid, rewards, torch.inf), "amin", include_self=False
    )
    all_equal = (high == low)[group]
    if own is not None:
        all_equal &= ~own
    advantages = torch.where(all_equal, 0.0, advantages)
    return torch.nan_to_num(advantages, nan=0.0)


def grpo_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor | None,
    ref_per_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    beta: float,
    epsilon_low: float,
    epsilon_high: float,
    loss_type: str,
    max_completion_length: int | None = None,
    importance_sampling_level: str = "token",
    use_bias_correction_kl: bool = True,
    num_items_in_batch: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """TRL 1.16's GRPO loss on one batch of completions; returns ``(loss, metrics)``.

    Args:
        per_token_logps: ``[B, T]`` log-probs of the completion tokens under the policy
            being trained (with grad).
        old_per_token_logps: ``[B, T]`` log-probs under the policy that sampled them, or
            None when on-policy (then the ratio is ``exp(logp - logp.detach())``: 1, with the
            policy-gradient derivative).
        ref_per_token_logps: ``[B, T]`` log-probs under the reference (needed when
            ``beta != 0``; when given with ``beta == 0`` only the ``kl`` metric uses it).
        advantages: ``[B]`` per completion, or ``[B, T]`` per token.
        completion_mask: ``[B, T]``, 1 on the tokens that count.
        beta: KL coefficient.
        epsilon_low, epsilon_high: the ratio is clipped to ``[1 - low, 1 + high]``.
        loss_type: ``grpo`` (mean over each sequence's tokens, then over sequences),
            ``bnpo`` (mean over the batch's active tokens), ``dr_grpo`` (sum over
            ``B * max_completion_length``), ``dapo`` (sum over ``num_items_in_batch``).
        max_completion_length: ``dr_grpo``'s constant (default: ``T``, the padded length).
        importance_sampling_level: ``token``, or ``sequence`` (GSPO: one ratio per sequence,
            the exp of its mean log-ratio).
        use_bias_correction_kl: multiply the per-token KL by the ratio (TRL's default).
        num_items_in_batch: ``dapo``'s normaliser: the active tokens of the whole batch the
            gradient is accumulated over (TRL: the generation batch over all processes).
            Default: this batch's ``completion_mask.sum()``.

    The loss is for this batch alone: under gradient accumulation, divide ``grpo`` /
    ``bnpo`` / ``dr_grpo`` losses by the number of micro-batches (TRL does it inside) and
    give ``dapo`` the accumulated ``num_items_in_batch``. Tokens outside the mask never
    contribute, whatever their log-probs (they are zeroed before the exp, so padding holding
    arbitrary values cannot overflow into NaN).
    """
    if loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(
            f"loss_type={loss_type!r} is not supported; expected one of {list(GRPO_LOSS_TYPES)}"
        )
    if importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError(
            f"importance_sampling_level={importance_sampling_level!r} is not supported; expected one "
            f"of {list(IMPORTANCE_SAMPLING_LEVELS)}"
        )
    if beta != 0.0 and ref_per_token_logps is None:
        raise ValueError("beta != 0 needs ref_per_token_logps (the reference model's log-probs)")
    if per_token_logps.dim() != 2 or completion_mask.shape != per_token_logps.shape:
        raise ValueError(
            f"per_token_logps and completion_mask must both be [B, T]; got "
            f"{tuple(per_token_logps.shape)} and {tuple(completion_mask.shape)}"
        )
    # float32 throughout: a bf16 token count is exact only up to 256
    per_token_logps = per_token_logps.float()
    active = completion_mask.bool()
    mask = completion_mask.float()
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    advantages = advantages.float()
    if old_per_token_logps is None:
        old_per_token_logps = per_token_logps.detach()
    old_per_token_logps = old_per_token_logps.float()
    if ref_per_token_logps is not None:
        ref_per_token_logps = ref_per_token_logps.float()

    log_ratio = torch.where(active, per_token_logps - old_per_token_logps, 0.0)
    if importance_sampling_level == "token":
        log_importance_weights = log_ratio
    else:
        log_importance_weights = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        log_importance_weights = log_importance_weights.unsqueeze(-1)
    coef_1 = torch.exp(log_importance_weights)  # [B, T] (token) or [B, 1] (sequence)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)

    per_token_kl = None
    if ref_per_token_logps is not None:
        with torch.set_grad_enabled(beta != 0.0 and torch.is_grad_enabled()):
            diff = torch.where(active, ref_per_token_logps - per_token_logps, 0.0)
            per_token_kl = torch.exp(diff) - diff - 1
            if use_bias_correction_kl:
                per_token_kl = per_token_kl * coef_1
        if beta != 0.0:
            per_token_loss = per_token_loss + beta * per_token_kl

    batch_size, length = per_token_logps.shape
    masked_loss = per_token_loss * mask  # broadcasts a [B, 1] sequence-level loss over tokens
    if loss_type == "grpo":
        loss = (masked_loss.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = masked_loss.sum() / mask.sum().clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = masked_loss.sum() / (batch_size * (max_completion_length or length))
    else:  # dapo
        normalizer = mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = masked_loss.sum() / torch.as_tensor(
            normalizer, dtype=mask.dtype, device=mask.device
        ).clamp(min=1.0)

    with torch.no_grad():
        is_low = (coef_1 < 1 - epsilon_low) & (advantages < 0)
        is_high = (coef_1 > 1 + epsilon_high) & (advantages > 0)
        metrics = {
            "loss": loss.item(),
            "ratio_mean": _masked_mean(coef_1, mask),
            "clip_ratio/low_mean": _masked_mean(is_low.float(), mask),
            "clip_ratio/high_mean": _masked_mean(is_high.float(), mask),
            "clip_ratio/region_mean": _masked_mean((is_low | is_high).float(), mask),
            "clip_ratio/low_min": _seq_extreme(is_low.float(), mask, torch.min),
            "clip_ratio/high_max": _seq_extreme(is_high.float(), mask, torch.max),
        }
        if per_token_kl is not None:
            metrics["kl"] = _masked_mean(per_token_kl, mask)
    return loss, metrics


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over active tokens; a ``[B, 1]`` (sequence-level) tensor is a mean over sequences."""
    if x.size(1) == 1:
        return x.float().mean().item()
    return ((x * mask).sum() / mask.sum().clamp(min=1.0)).item()


def _seq_extreme(x: torch.Tensor, mask: torch.Tensor, reduce) -> float:
    """Min or max over sequences of the per-sequence mean (sequences without tokens skipped)."""
    if x.size(1) == 1:
        per_seq = x.squeeze(1)
    else:
        per_seq = ((x * mask).sum(-1) / mask.sum(-1))[mask.sum(-1) > 0]
    return reduce(per_seq).item() if per_seq.numel() else 0.0
