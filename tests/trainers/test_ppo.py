"""Turn-level PPO: GAE by hand, the clipped policy and value losses, a value head that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from srl_trainers.algorithms.ppo import ValueHead, compute_gae, ppo_loss


# ---------------------------------------------------------------------- GAE
def test_gae_hand_computed_terminal_episode():
    rewards, values = [1.0, 0.0, 2.0], [0.5, 0.4, 0.3]
    adv, ret = compute_gae(rewards, values, gamma=0.9, lam=0.8)
    # delta_2 = 2 - 0.3 = 1.7 (episode over: nothing bootstrapped)
    # delta_1 = 0 + 0.9 * 0.3 - 0.4 = -0.13;  A_1 = -0.13 + 0.72 * 1.7 = 1.094
    # delta_0 = 1 + 0.9 * 0.4 - 0.5 = 0.86;   A_0 = 0.86 + 0.72 * 1.094 = 1.64768
    np.testing.assert_allclose(adv, [1.64768, 1.094, 1.7])
    np.testing.assert_allclose(ret, [2.14768, 1.494, 2.0])
    assert adv.dtype == np.float64 and ret.shape == (3,)


def test_gae_truncated_trajectory_bootstraps_last_value():
    adv, ret = compute_gae([1.0, 0.0, 2.0], [0.5, 0.4, 0.3], gamma=0.9, lam=0.8, last_value=1.0)
    # delta_2 = 2 + 0.9 * 1.0 - 0.3 = 2.6; A_1 = -0.13 + 0.72 * 2.6; A_0 = 0.86 + 0.72 * A_1
    np.testing.assert_allclose(adv, [0.86 + 0.72 * 1.742, 1.742, 2.6])
    np.testing.assert_allclose(ret, adv + np.array([0.5, 0.4, 0.3]))


def test_gae_done_flags_stop_bootstrapping():
    rewards, values = [1.0, 0.0, 2.0], [0.5, 0.4, 0.3]
    # ended with the last turn: last_value is ignored
    ended, _ = compute_gae(
        rewards, values, gamma=0.9, lam=0.8, last_value=5.0, dones=[False, False, True]
    )
    np.testing.assert_allclose(ended, compute_gae(rewards, values, gamma=0.9, lam=0.8)[0])
    # two episodes end to end: nothing flows across the boundary after turn 1
    adv, _ = compute_gae(rewards, values, gamma=0.9, lam=0.8, dones=[False, True, False])
    # A_2 = 2 - 0.3; A_1 = 0 - 0.4 (terminal); A_0 = 0.86 + 0.72 * (-0.4)
    np.testing.assert_allclose(adv, [0.86 + 0.72 * -0.4, -0.4, 1.7])


def test_gae_limits_monte_carlo_and_td():
    rewards, values = [1.0, 0.0, 2.0], [0.5, 0.4, 0.3]
    _, mc = compute_gae(rewards, values, gamma=1.0, lam=1.0)
    np.testing.assert_allclose(mc, [3.0, 2.0, 2.0])  # undiscounted reward-to-go
    td, _ = compute_gae(rewards, values, gamma=0.9, lam=0.0)
    np.testing.assert_allclose(td, [0.86, -0.13, 1.7])  # one-step TD errors


def test_gae_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        compute_gae([1.0, 2.0], [0.0], gamma=1.0, lam=1.0)
    with pytest.raises(ValueError, match="dones"):
        compute_gae([1.0, 2.0], [0.0, 0.0], gamma=1.0, lam=1.0, dones=[True])


# ---------------------------------------------------------------------- loss
def _turns(batch: int = 2, length: int = 3):
    logps = torch.full((batch, length), -1.0, requires_grad=True)
    mask = torch.ones(batch, length)
    return logps, mask


def _loss(logps, old, adv, mask, values, old_values, returns, **kwargs):
    kwargs = {"clip_range": 0.2, "value_clip": 0.2, "vf_coef": 1.0, **kwargs}
    return ppo_loss(logps, old, adv, mask, values, old_values, returns, **kwargs)


def test_value_loss_is_clipped():
    logps, mask = _turns()
    values = torch.tensor([1.0, 1.0], requires_grad=True)
    old_values = torch.zeros(2)
    returns = torch.tensor([2.0, 0.0])
    zeros = torch.zeros(2)
    loss, metrics = _loss(logps, logps.detach(), zeros, mask, values, old_values, returns)
    loss.backward()
    # turn 0: unclipped (1 - 2)^2 = 1, clipped (0.2 - 2)^2 = 3.24 -> the clipped term, no gradient
    # turn 1: unclipped (1 - 0)^2 = 1, clipped (0.2 - 0)^2 = 0.04 -> the unclipped term
    assert metrics["value_loss"] == pytest.approx(0.5 * (3.24 + 1.0) / 2)
    torch.testing.assert_close(values.grad, torch.tensor([0.0, 0.5]))
    assert metrics["value_clipfrac"] == 1.0

    values.grad = None
    loss, metrics = _loss(
        logps, logps.detach(), zeros, mask, values, old_values, returns, value_clip=None
    )
    loss.backward()
    assert metrics["value_loss"] == pytest.approx(0.5 * (1.0 + 1.0) / 2)
    torch.testing.assert_close(values.grad, torch.tensor([-0.5, 0.5]))


def test_positive_advantage_raises_the_logp():
    """A few SGD steps on a tiny categorical policy: the good turn's tokens become likelier."""
    torch.manual_seed(0)
    logits = torch.zeros(2, 3, 5, requires_grad=True)  # 2 turns, 3 tokens, vocab 5
    actions = torch.tensor([[1, 2, 3], [4, 0, 2]])
    mask = torch.ones(2, 3)
    mask[1, 2] = 0
    advantages = torch.tensor([1.0, -1.0])
    values = torch.zeros(2, requires_grad=True)

    def logps():
        return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    old = logps().detach()
    optimizer = torch.optim.SGD([logits], lr=0.5)
    for _ in range(3):
        loss, _ = _loss(logps(), old, advantages, mask, values, values.detach(), torch.zeros(2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    new = logps().detach()
    assert (new[0] > old[0]).all()
    assert (new[1, :2] < old[1, :2]).all()
    assert new[1, 2] == pytest.approx(old[1, 2].item())  # masked token: untouched


def test_policy_loss_gradient_sign_and_clipping():
    logps, mask = _turns()
    zeros = torch.zeros(2)
    loss, metrics = _loss(
        logps,
        logps.detach(),
        torch.tensor([1.0, -1.0]),
        mask,
        zeros,
        zeros,
        zeros,
        normalize_advantages=False,
    )
    loss.backward()
    assert (logps.grad[0] < 0).all()  # descending the loss increases logp where A > 0
    assert (logps.grad[1] > 0).all()
    assert metrics["clipfrac"] == 0.0 and metrics["approx_kl"] == pytest.approx(0.0)

    # ratio e^1 > 1.2 with A > 0 is clipped: no gradient; with A < 0 the unclipped term stays
    logps.grad = None
    old = logps.detach() - 1.0
    loss, metrics = _loss(
        logps, old, torch.tensor([1.0, -1.0]), mask, zeros, zeros, zeros, normalize_advantages=False
    )
    loss.backward()
    assert logps.grad[0].eq(0).all()
    torch.testing.assert_close(logps.grad[1], torch.full((3,), math.e / 6))
    assert metrics["clipfrac"] == 1.0
    assert metrics["approx_kl"] == pytest.approx(math.e - 2)


def test_advantage_normalisation_and_masking():
    logps, mask = _turns(batch=3)
    mask[2, 1:] = 0
    zeros = torch.zeros(3)
    adv = torch.tensor([3.0, 1.0, 2.0])
    loss, metrics = _loss(logps, logps.detach(), adv, mask, zeros, zeros, zeros)
    loss.backward()
    # standardised: [1, -1, 0] -> on-policy policy loss = -mean over the 7 active tokens
    assert metrics["policy_loss"] == pytest.approx(-(3 * 1.0 + 3 * -1.0) / 7)
    torch.testing.assert_close(logps.grad[0], torch.full((3,), -1 / 7))
    assert logps.grad[2].eq(0).all()
    # padding holding garbage cannot overflow into NaN
    old = logps.detach().masked_fill(mask == 0, -1e4)
    loss, metrics = _loss(logps, old, adv, mask, zeros, zeros, zeros)
    assert torch.isfinite(loss)
    assert all(math.isfinite(v) for k, v in metrics.items() if k != "explained_variance")


def test_kl_penalty_to_the_reference():
    logps, mask = _turns()
    zeros = torch.zeros(2)
    ref = logps.detach() + 0.5
    base, _ = _loss(logps, logps.detach(), zeros, mask, zeros, zeros, zeros)
    loss, metrics = _loss(
        logps, logps.detach(), zeros, mask, zeros, zeros, zeros, ref_per_token_logps=ref, beta=0.1
    )
    kl = math.exp(0.5) - 0.5 - 1
    assert metrics["kl"] == pytest.approx(kl)
    assert (loss - base).item() == pytest.approx(0.1 * kl)
    loss.backward()
    assert (logps.grad < 0).all()  # the reference likes these tokens more: raise them
    with pytest.raises(ValueError, match="ref_per_token_logps"):
        _loss(logps, logps.detach(), zeros, mask, zeros, zeros, zeros, beta=0.1)


def test_explained_variance():
    logps, mask = _turns(batch=3)
    returns = torch.tensor([1.0, 2.0, 3.0])
    zeros = torch.zeros(3)
    _, perfect = _loss(logps, logps.detach(), zeros, mask, returns, returns, returns)
    _, constant = _loss(logps, logps.detach(), zeros, mask, zeros, zeros, returns)
    assert perfect["explained_variance"] == pytest.approx(1.0)
    assert constant["explained_variance"] == pytest.approx(0.0)


# ---------------------------------------------------------------------- value head
def test_value_head_shapes_dtype_and_near_zero_init():
    torch.manual_seed(0)
    head = ValueHead(16)
    hidden = torch.randn(5, 16, dtype=torch.bfloat16)
    values = head(hidden)
    assert values.shape == (5,) and values.dtype == torch.float32
    assert values.abs().max() < 0.1
    assert head(torch.randn(2, 3, 16)).shape == (2, 3)
    bf16_head = ValueHead(16, dtype=torch.bfloat16)
    assert bf16_head.summary.weight.dtype == torch.bfloat16
    assert bf16_head(hidden).dtype == torch.float32


def test_value_head_regresses_returns():
    """The value part of ppo_loss, as the trainer runs it: a head on frozen hidden states."""
    torch.manual_seed(0)
    hidden = torch.randn(32, 16)
    returns = hidden @ torch.randn(16) * 0.5 + 1.0
    head = ValueHead(16)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-2)
    logps = torch.zeros(32, 1)
    mask = torch.ones(32, 1)
    zeros = torch.zeros(32)
    losses = []
    for _ in range(60):  # each iteration: a fresh "rollout" (old values), then 4 epochs
        old_values = head(hidden).detach()
        for _ in range(4):
            loss, metrics = ppo_loss(
                logps,
                logps,
                zeros,
                mask,
                head(hidden),
                old_values,
                returns,
                clip_range=0.2,
                value_clip=0.5,
                vf_coef=0.5,
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(metrics["value_loss"])
    assert losses[-1] < 0.01 * losses[0]
    error = (head(hidden) - returns).abs().max().item()
    assert error < 0.05 * returns.abs().max().item()
    assert metrics["explained_variance"] > 0.99
