"""Weight-update strategies on a tiny PEFT multi-adapter Llama: cadences, exact averaging, state."""

from __future__ import annotations

import json
import math

import pytest
import torch

from srl_trainers.config import ConfigError, MultiModelConfig
from srl_trainers.lora import (
    init_lora_weights,
    lora_deltas,
    lora_modules,
    lora_parameters,
    product_svd,
)
from srl_trainers.strategies import (
    STRATEGIES,
    AsynchronousStrategy,
    FederatedStrategy,
    SelectiveStrategy,
    SynchronizedStrategy,
    federated_weights,
    make_strategy,
)

SLOTS3 = ["model_0_smollm2", "model_1_smollm2", "model_2_smollm2"]


# ---------------------------------------------------------------------- helpers
def tiny_model(slots, strategy=None, rank=4, base_seed=0):
    """A 1-layer random Llama with one LoRA adapter per slot, seeded by the strategy (float32)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        vocab_size=64,
    )
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj", "o_proj"])
    model = get_peft_model(LlamaForCausalLM(cfg), lora, adapter_name=slots[0])
    for slot in slots[1:]:
        model.add_adapter(slot, lora)
    for i, slot in enumerate(slots):
        seed = strategy.lora_init_seed(i, base_seed) if strategy else base_seed + i
        init_lora_weights(model, slot, seed)
    return model


def refresh_trainable(model, strategy):
    """After PEFT's ``set_adapter`` (which freezes the inactive adapters), as the trainer does."""
    for slot in strategy.slots:
        strategy.trainable_parameters(model, slot)


def slot_data(slots, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {s: torch.randint(0, 64, (2, 8), generator=gen) for s in slots}


def snapshot(model, slot):
    return {k: p.detach().clone() for k, p in lora_parameters(model, slot).items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Loop:
    """The trainer's per-group update loop as the strategies module documents it."""

    def __init__(self, model, strategy, lr=1e-2):
        self.model, self.strategy = model, strategy
        self.params = {s: strategy.trainable_parameters(model, s) for s in strategy.slots}
        self.opts = {s: torch.optim.AdamW(p, lr=lr) for s, p in self.params.items()}

    def backward_and_step(self, episode, rewards, data):
        stepping = self.strategy.select(episode, rewards)
        for slot in stepping:
            self.model.set_adapter(slot)
            refresh_trainable(self.model, self.strategy)
            ids = data[slot]
            self.model(input_ids=ids, labels=ids).loss.backward()
        self.strategy.before_optimizer_step(self.model, stepping)
        for slot in stepping:
            torch.nn.utils.clip_grad_norm_(self.params[slot], 1.0)
            self.opts[slot].step()
            self.opts[slot].zero_grad()
        return stepping

    def episode(self, episode, rewards, data):
        stepping = self.backward_and_step(episode, rewards, data)
        self.strategy.after_optimizer_step(self.model, stepping, rewards)
        return stepping


def config(strategy, num_models=3, **kw):
    return MultiModelConfig(num_models=num_models, weight_update_strategy=strategy, **kw)


# ---------------------------------------------------------------------- construction
def test_make_strategy_picks_class_seeds_and_checks_cadence():
    for name, cls in STRATEGIES.items():
        s = make_strategy(config(name), SLOTS3)
        assert type(s) is cls and s.name == name
        seeds = [s.lora_init_seed(i, 7) for i in range(3)]
        if name in ("synchronized", "federated"):
            assert seeds == [7, 7, 7]
        else:
            assert len(set(seeds)) == 3
    per_slot = config("asynchronous", update_frequency=[1, 2, 3])
    assert make_strategy(per_slot, SLOTS3).update_frequency == dict(zip(SLOTS3, [1, 2, 3]))
    assert make_strategy(per_slot, SLOTS3[1:]).update_frequency == dict(zip(SLOTS3[1:], [2, 3]))
    for name in ("synchronized", "federated", "selective"):
        with pytest.raises(ConfigError, match="update_frequency"):
            make_strategy(config(name, update_frequency=[1, 2, 1]), SLOTS3)
    with pytest.raises(ConfigError, match="slot ids"):
        make_strategy(per_slot, ["not_a_slot"])
    fed = make_strategy(config("federated", federated_strength=0.3, federated_interval=2), SLOTS3)
    assert (fed.strength, fed.interval) == (0.3, 2)
    assert make_strategy(config("selective"), SLOTS3).top_k == 2  # ceil(3 / 2)
    s = AsynchronousStrategy(SLOTS3)
    s.select(0, {})
    with pytest.raises(ValueError, match="not after"):
        s.select(0, {})


# ---------------------------------------------------------------------- synchronized
def test_synchronized_adapters_stay_bit_identical():
    strategy = SynchronizedStrategy(SLOTS3)
    model = tiny_model(SLOTS3, strategy, base_seed=3)
    init = snapshot(model, SLOTS3[0])
    loop = Loop(model, strategy)
    for episode in range(4):
        data = slot_data(SLOTS3, seed=episode)  # different data for every adapter
        stepping = loop.strategy.select(episode, {})
        assert stepping == SLOTS3
        for slot in stepping:
            model.set_adapter(slot)
            refresh_trainable(model, strategy)
            model(input_ids=data[slot], labels=data[slot]).loss.backward()
        grads = [lora_parameters(model, s) for s in SLOTS3]
        key = next(k for k in grads[0] if ".lora_B." in k)
        assert not torch.equal(grads[0][key].grad, grads[1][key].grad)  # the data differ
        strategy.before_optimizer_step(model, stepping)
        assert torch.equal(grads[0][key].grad, grads[1][key].grad)
        for slot in stepping:
            torch.nn.utils.clip_grad_norm_(loop.params[slot], 1.0)
            loop.opts[slot].step()
            loop.opts[slot].zero_grad()
        strategy.after_optimizer_step(model, stepping, {})
    first = snapshot(model, SLOTS3[0])
    assert all(not torch.equal(first[k], init[k]) for k in first)  # A and B both trained
    for slot in SLOTS3[1:]:
        assert same(snapshot(model, slot), first)
    assert strategy.update_counts == dict.fromkeys(SLOTS3, 4)
    assert strategy.metrics()["strategy/divergence"] == 0.0


def test_synchronized_missing_gradient_counts_as_zero():
    strategy = SynchronizedStrategy(SLOTS3)
    model = tiny_model(SLOTS3, strategy)
    for p in lora_parameters(model, SLOTS3[0]).values():
        with torch.no_grad():
            p.normal_()
    for slot in SLOTS3[:2]:  # the third slot has no samples: no backward
        init_lora_weights(model, slot, 0)
        with torch.no_grad():
            for p in lora_parameters(model, slot).values():
                p.grad = torch.randn_like(p)
    g0, g1 = ({k: p.grad.clone() for k, p in lora_parameters(model, s).items()} for s in SLOTS3[:2])
    strategy.before_optimizer_step(model, SLOTS3)
    for slot in SLOTS3:
        for k, p in lora_parameters(model, slot).items():
            torch.testing.assert_close(p.grad, (g0[k] + g1[k]) / 3)
    with pytest.raises(ValueError, match="together"):
        strategy.before_optimizer_step(model, SLOTS3[:2])


# ---------------------------------------------------------------------- asynchronous
def test_asynchronous_cadences_and_drift():
    slots = SLOTS3[:2]
    strategy = make_strategy(config("asynchronous", num_models=2, update_frequency=[1, 2]), slots)
    model = tiny_model(slots, strategy, base_seed=1)
    loop = Loop(model, strategy)
    for episode in range(4):
        before = snapshot(model, slots[1])
        stepping = loop.episode(episode, {}, slot_data(slots, seed=episode))
        assert stepping == (slots if episode % 2 == 1 else slots[:1])
        if slots[1] not in stepping:
            assert same(snapshot(model, slots[1]), before)
    assert strategy.update_counts == {slots[0]: 4, slots[1]: 2}
    assert not same(snapshot(model, slots[0]), snapshot(model, slots[1]))
    assert strategy.metrics()["strategy/divergence"] > 0.1


# ---------------------------------------------------------------------- federated
def test_federated_weights_are_a_softmax():
    w = federated_weights({"a": 1.0, "b": 2.0, "c": 0.5}, ["a", "b", "c"], temperature=0.5)
    assert math.isclose(sum(w.values()), 1.0)
    assert w["b"] > w["a"] > w["c"]
    assert math.isclose(w["b"] / w["a"], math.exp(2.0))
    assert federated_weights({"a": 3.0, "b": 3.0}, ["a", "b"], 1.0) == {"a": 0.5, "b": 0.5}
    assert federated_weights({}, ["a", "b"], 1.0) == {"a": 0.5, "b": 0.5}
    assert federated_weights({"a": 1e4}, ["a", "b"], 1e-3) == {"a": 1.0, "b": 0.0}


def mixed_targets(deltas, slots, weights, lam):
    return {
        j: {
            layer: (1 - lam) * deltas[j][layer]
            + lam * sum(weights[i] * deltas[i][layer] for i in slots)
            for layer in deltas[j]
        }
        for j in slots
    }


def test_federated_ffa_shared_frozen_A_is_exact():
    strategy = FederatedStrategy(SLOTS3, strength=0.6, temperature=0.5, interval=2)
    model = tiny_model(SLOTS3, strategy, base_seed=5)
    params = strategy.trainable_parameters(model, SLOTS3[0])
    named = lora_parameters(model, SLOTS3[0])
    assert {id(p) for p in params} == {id(p) for k, p in named.items() if ".lora_B." in k}
    assert all(p.requires_grad != (".lora_A." in k) for k, p in named.items())
    A0 = {n: A.detach().clone() for n, (A, _, _) in lora_modules(model, SLOTS3[0]).items()}
    loop = Loop(model, strategy)
    rewards = {SLOTS3[0]: 1.0, SLOTS3[1]: 0.0, SLOTS3[2]: 2.0}
    loop.episode(0, rewards, slot_data(SLOTS3, seed=0))  # round 1: no averaging (interval 2)
    assert strategy.averagings == 0
    assert strategy.metrics()["strategy/divergence"] > 0
    loop.backward_and_step(1, rewards, slot_data(SLOTS3, seed=1))
    deltas = {s: lora_deltas(model, s) for s in SLOTS3}
    strategy.after_optimizer_step(model, SLOTS3, rewards)  # round 2: averaging
    assert strategy.averagings == 1
    m = strategy.metrics()
    weights = {s: m[f"strategy/federated_weight/{s}"] for s in SLOTS3}
    assert weights == federated_weights(rewards, SLOTS3, 0.5)
    assert math.isclose(sum(weights.values()), 1.0)
    assert m["strategy/federated_refactor_residual"] == 0.0
    expected = mixed_targets(deltas, SLOTS3, weights, 0.6)
    worst = 0.0
    for s in SLOTS3:
        for name, (A, _, _) in lora_modules(model, s).items():
            assert torch.equal(A, A0[name])  # A frozen through training and averaging
        for name, d in lora_deltas(model, s).items():
            worst = max(worst, (d - expected[s][name]).abs().max().item())
    assert max(d.abs().max().item() for d in deltas[SLOTS3[0]].values()) > 0
    assert worst < 1e-6


def set_factors(model, slot, factors):
    with torch.no_grad():
        for name, (A, B, _) in lora_modules(model, slot).items():
            a, b = factors[name]
            A.copy_(a)
            B.copy_(b)


def run_merge(model, slots, rewards, strength):
    strategy = FederatedStrategy(slots, strength=strength, freeze_lora_A=False)
    strategy.select(0, rewards)
    deltas = {s: lora_deltas(model, s) for s in slots}
    strategy.after_optimizer_step(model, slots, rewards)
    m = strategy.metrics()
    weights = {s: m[f"strategy/federated_weight/{s}"] for s in slots}
    return mixed_targets(deltas, slots, weights, strength), m


def test_federated_svd_path_exact_when_the_mix_has_rank_r():
    r = 4
    model = tiny_model(SLOTS3, rank=r)
    gen = torch.Generator().manual_seed(1)
    shapes = {
        n: (B.shape[0], A.shape[1]) for n, (A, B, _) in lora_modules(model, SLOTS3[0]).items()
    }
    base = {
        n: (torch.randn(o, r, generator=gen), torch.randn(r, i, generator=gen))
        for n, (o, i) in shapes.items()
    }
    for slot in SLOTS3:  # A_i = N_i A0, B_i = B0 C_i: different factors, common rank-r subspaces
        factors = {}
        for n, (b0, a0) in base.items():
            N, C = torch.randn(r, r, generator=gen), torch.randn(r, r, generator=gen)
            factors[n] = (N @ a0, b0 @ C)
        set_factors(model, slot, factors)
    rewards = {SLOTS3[0]: 0.3, SLOTS3[1]: 1.0, SLOTS3[2]: -0.5}
    expected, m = run_merge(model, SLOTS3, rewards, strength=0.7)
    for s in SLOTS3:
        for name, d in lora_deltas(model, s).items():
            torch.testing.assert_close(d, expected[s][name], rtol=1e-5, atol=1e-5)
    assert m["strategy/federated_refactor_residual"] < 1e-6


def test_federated_svd_path_is_the_optimal_truncation():
    r = 4
    model = tiny_model(SLOTS3, rank=r)
    gen = torch.Generator().manual_seed(2)
    for slot in SLOTS3:  # independent random factors: the mix has rank up to 3r
        factors = {
            n: (torch.randn(A.shape, generator=gen), torch.randn(B.shape, generator=gen))
            for n, (A, B, _) in lora_modules(model, slot).items()
        }
        set_factors(model, slot, factors)
    expected, m = run_merge(model, SLOTS3, {s: 0.0 for s in SLOTS3}, strength=0.5)
    resid_sq = total_sq = 0.0
    for s in SLOTS3:
        for name, d in lora_deltas(model, s).items():
            U, S, Vh = torch.linalg.svd(expected[s][name].double())
            best = (U[:, :r] * S[:r]) @ Vh[:r]
            torch.testing.assert_close(d.double(), best, rtol=1e-4, atol=1e-4)
            resid_sq += float((S[r:] ** 2).sum())
            total_sq += float((S**2).sum())
    assert m["strategy/federated_refactor_residual"] > 0.05
    assert math.isclose(
        m["strategy/federated_refactor_residual"], math.sqrt(resid_sq / total_sq), rel_tol=1e-5
    )


def test_product_svd_matches_dense_svd():
    gen = torch.Generator().manual_seed(3)
    B, A = torch.randn(20, 6, generator=gen), torch.randn(6, 30, generator=gen)
    U, S, Vh = product_svd(B, A)
    product = B.double() @ A.double()
    torch.testing.assert_close(S, torch.linalg.svdvals(product)[:6])
    torch.testing.assert_close((U * S) @ Vh, product)
    torch.testing.assert_close(U.T @ U, torch.eye(6, dtype=torch.float64))
    torch.testing.assert_close(Vh @ Vh.T, torch.eye(6, dtype=torch.float64))


# ---------------------------------------------------------------------- selective
def test_selective_top_k_ties_and_untouched_slots():
    slots = [*SLOTS3, "model_3_smollm2"]
    s = SelectiveStrategy(slots, top_k=2, update_frequency=2)
    assert s.select(0, {}) == []  # not due yet
    rewards = {slots[0]: 1.0, slots[1]: 3.0, slots[2]: 3.0, slots[3]: 0.0}
    assert s.select(1, rewards) == [slots[1], slots[2]]
    s.select(2, {})
    assert s.select(3, dict.fromkeys(slots, 1.0)) == slots[:2]  # tie: slot order
    s.select(4, {})
    assert s.select(5, {slots[3]: -1.0}) == [slots[0], slots[3]]  # missing ranks last

    strategy = SelectiveStrategy(SLOTS3)  # default top_k = ceil(3 / 2) = 2
    model = tiny_model(SLOTS3, strategy)
    loop = Loop(model, strategy)
    rewards = {SLOTS3[0]: 0.0, SLOTS3[1]: 2.0, SLOTS3[2]: 1.0}
    for episode in range(3):
        before = snapshot(model, SLOTS3[0])
        assert loop.episode(episode, rewards, slot_data(SLOTS3, episode)) == SLOTS3[1:]
        assert same(snapshot(model, SLOTS3[0]), before)
    assert strategy.update_counts == {SLOTS3[0]: 0, SLOTS3[1]: 3, SLOTS3[2]: 3}
    assert strategy.metrics()["strategy/stepped"] == 2.0


# ---------------------------------------------------------------------- checkpointing
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_state_dict_round_trip(name):
    cfg = config(name, update_frequency=[1, 2, 3] if name == "asynchronous" else 2)
    strategy = make_strategy(cfg, SLOTS3)
    model = tiny_model(SLOTS3, strategy)
    loop = Loop(model, strategy)
    rewards = {SLOTS3[0]: 0.5, SLOTS3[1]: 1.5, SLOTS3[2]: -1.0}
    for episode in range(3):
        loop.episode(episode, rewards, slot_data(SLOTS3, episode))
    state = json.loads(json.dumps(strategy.state_dict()))  # JSON-safe
    restored = make_strategy(cfg, SLOTS3)
    restored.load_state_dict(state)
    assert restored.state_dict() == strategy.state_dict()
    assert restored.metrics() == strategy.metrics()
    assert restored.update_counts == strategy.update_counts
    for episode in range(3, 9):  # the cadence continues where it left off
        assert restored.select(episode, rewards) == strategy.select(episode, rewards)
    with pytest.raises(ValueError, match="checkpoint"):
        make_strategy(cfg, SLOTS3[:2]).load_state_dict(state)
