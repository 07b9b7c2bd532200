"""Turn-level PPO for multi-turn LLM agents: a value head, GAE over turns, the clipped loss.

TRL no longer ships a ``PPOTrainer``; this module gives the pieces in the same spirit as
:mod:`srl_trainers.algorithms.grpo`, as pure functions on tensors. One agent turn is one
step of that agent's trajectory:

- the *state* is the turn's prompt; its value is read by :class:`ValueHead` from the hidden
  state of the last prompt token;
- the *action* is the whole completion; its log-prob is the sum of its token log-probs, and
  the policy loss is the per-token clipped surrogate with the turn's advantage broadcast
  over the turn's tokens (as GRPO does with a completion's advantage);
- rewards arrive per turn; :func:`compute_gae` turns one trajectory of turns into
  advantages and returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["ValueHead", "compute_gae", "ppo_loss"]


class ValueHead(nn.Module):
    """``[..., H]`` hidden states -> ``[...]`` state values, computed in float32.

    One linear layer, initialised near zero (small weights, zero bias) so that the first
    value estimates do not swamp the advantages. Its parameters live in ``dtype``; the
    product is taken in float32 whatever the model's dtype (bf16 hidden states included).
    """

    def __init__(self, hidden_size: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.summary = nn.Linear(hidden_size, 1, dtype=dtype)
        nn.init.normal_(self.summary.weight, std=1e-3)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.summary.weight.float()
        bias = self.summary.bias.float()
        return nn.functional.linear(hidden.float(), weight, bias).squeeze(-1)


def compute_gae(
    rewards: Sequence[float],
    values: Sequence[float],
    *,
    gamma: float,
    lam: float,
    last_value: float = 0.0,
    dones: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over one agent's turns: ``(advantages, returns)``.

    ``rewards[t]`` follows the action of turn ``t`` whose state value is ``values[t]``.
    ``dones[t]`` says the episode ended with turn ``t``: nothing after it is bootstrapped
    (its next value is 0 and the GAE sum restarts), so several episodes may be laid end to
    end. The step after the last turn is valued ``last_value``: leave it 0 when the
    trajectory ends with its episode, pass ``V(next state)`` when it was cut mid-episode
    (with ``dones[-1]`` true, ``last_value`` is ignored). ``returns = advantages + values``
    are the value head's regression targets. Float64 arrays of the trajectory's length.
    """
    rewards_arr = np.asarray(rewards, dtype=np.float64)
    values_arr = np.asarray(values, dtype=np.float64)
    if rewards_arr.ndim != 1 or values_arr.shape != rewards_arr.shape:
        raise ValueError(
            f"rewards and values must be 1-D of the same length; got {rewards_arr.shape} "
            f"and {values_arr.shape}"
        )
    dones_arr = np.zeros(len(rewards_arr), bool) if dones is None else np.asarray(dones, dtype=bool)
    if dones_arr.shape != rewards_arr.shape:
        raise ValueError(
            f"dones must have the length of rewards ({len(rewards_arr)}); got {dones_arr.shape}"
        )

    advantages = np.zeros_like(rewards_arr)
    gae = 0.0
    for t in reversed(range(len(rewards_arr))):
        not_done = 0.0 if dones_arr[t] else 1.0
        next_value = values_arr[t + 1] if t + 1 < len(rewards_arr) else last_value
        delta = rewards_arr[t] + gamma * next_value * not_done - values_arr[t]
        gae = delta + gamma * lam * not_done * gae
        advantages[t] = gae
    return advantages, advantages + values_arr


def ppo_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip_range: float,
    value_clip: float | None,
    vf_coef: float,
    normalize_advantages: bool = True,
    ref_per_token_logps: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's loss on a batch of turns; returns ``(loss, metrics)``.

    ``loss = policy_loss + vf_coef * value_loss (+ beta * kl)`` where

    - ``policy_loss``: ``max(-A r, -A clip(r, 1 - clip_range, 1 + clip_range))`` per token,
      with ``r = exp(logp - old_logp)`` and the turn's advantage ``A`` (``[B]``) broadcast
      over its tokens, averaged over all active tokens of the batch. With
      ``normalize_advantages`` the advantages are first standardised over the batch (when it
      holds more than one turn).
    - ``value_loss``: ``0.5 * mean(max((v - R)^2, (v_clip - R)^2))`` with
      ``v_clip = old_v + clip(v - old_v, -value_clip, value_clip)``; ``value_clip`` None or 0
      turns clipping off (plain ``0.5 * mean((v - R)^2)``).
    - ``kl``: with ``beta != 0``, GRPO's per-token ``exp(ref - logp) - (ref - logp) - 1``
      averaged over the active tokens.

    Metrics: ``loss``, ``policy_loss``, ``value_loss``, ``clipfrac`` (tokens whose ratio left
    the clip range), ``value_clipfrac``, ``approx_kl`` (``mean((r - 1) - log r)`` to the
    sampling policy), ``kl`` (when a reference is given) and ``explained_variance`` of the
    returns by the values (NaN when the returns do not vary).
    """
    if per_token_logps.dim() != 2 or completion_mask.shape != per_token_logps.shape:
        raise ValueError(
            f"per_token_logps and completion_mask must both be [B, T]; got "
            f"{tuple(per_token_logps.shape)} and {tuple(completion_mask.shape)}"
        )
    batch_size = per_token_logps.size(0)
    for name, tensor in (
        ("advantages", advantages),
        ("values", values),
        ("old_values", old_values),
        ("returns", returns),
    ):
        if tensor.shape != (batch_size,):
            raise ValueError(
                f"{name} must have shape [B]=[{batch_size}] (one per turn); got {tuple(tensor.shape)}"
            )
    if beta != 0.0 and ref_per_token_logps is None:
        raise ValueError("beta != 0 needs ref_per_token_logps (the reference model's log-probs)")

    # float32 throughout: a bf16 token count is exact only up to 256
    per_token_logps = per_token_logps.float()
    old_per_token_logps = old_per_token_logps.float()
    active = completion_mask.bool()
    mask = completion_mask.float()
    num_tokens = mask.sum().clamp(min=1.0)
    advantages = advantages.float()
    if normalize_advantages and batch_size > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    log_ratio = torch.where(active, per_token_logps - old_per_token_logps, 0.0)
    ratio = torch.exp(log_ratio)
    adv = advantages.unsqueeze(1)
    per_token_pg = torch.max(
        -adv * ratio, -adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    )
    policy_loss = (per_token_pg * mask).sum() / num_tokens

    values = values.float()
    old_values = old_values.float().to(values.device)
    returns = returns.float().to(values.device)
    unclipped = (values - returns) ** 2
    if value_clip:
        clipped_values = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
        value_loss = 0.5 * torch.max(unclipped, (clipped_values - returns) ** 2).mean()
    else:
        value_loss = 0.5 * unclipped.mean()

    loss = policy_loss + vf_coef * value_loss
    kl = None
    if ref_per_token_logps is not None:
        with torch.set_grad_enabled(beta != 0.0 and torch.is_grad_enabled()):
            diff = torch.where(active, ref_per_token_logps.float() - per_token_logps, 0.0)
            kl = ((torch.exp(diff) - diff - 1) * mask).sum() / num_tokens
        if beta != 0.0:
            loss = loss + beta * kl

    with torch.no_grad():
        clipped = ((ratio - 1).abs() > clip_range).to(mask.dtype)
        value_clipped = (
            (values - old_values).abs() > value_clip if value_clip else torch.zeros_like(values)
        )
        var_returns = returns.var(unbiased=False) if batch_size > 1 else returns.new_zeros(())
        explained = (
            1.0 - (returns - values).var(unbiased=False) / var_returns
            if var_returns > 0
            else torch.tensor(float("nan"))
        )
        metrics = {
            "loss": loss.item(),
            "policy_loss": policy_loss.item(),
            "value_loss": value_loss.item(),
            "clipfrac": ((clipped * mask).sum() / num_tokens).item(),
            "value_clipfrac": value_clipped.float().mean().item(),
            "approx_kl": ((((ratio - 1) - log_ratio) * mask).sum() / num_tokens).item(),
            "explained_variance": explained.item(),
        }
        if kl is not None:
            metrics["kl"] = kl.item()
    return loss, metrics
