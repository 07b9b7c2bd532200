"""Weight-update strategies: how the LoRA adapters of one policy group update.

A policy group is the set of trainable slots (one LoRA adapter each) on one shared base model.
Frozen policies (API models, scripted bots) never enter a group, so no strategy touches them.
A strategy is a small object with a few hooks, picked by ``config.weight_update_strategy``
from :data:`STRATEGIES` through :func:`make_strategy`. The trainer calls, per group::

    strategy = make_strategy(config, slots)              # slots: the group's adapter names
    for i, slot in enumerate(slots):                     # before training, per slot:
        seed = strategy.lora_init_seed(i, config.seed)   #   seeded LoRA init, e.g. with
        lora.init_lora_weights(model, slot, seed)        #   srl_trainers.lora
        optimizers[slot] = AdamW(strategy.trainable_parameters(model, slot))
    # every training episode:
    stepping = strategy.select(episode, recent_rewards)  # slots that take an optimizer step now
    for slot in stepping: loss(slot).backward()
    strategy.before_optimizer_step(model, stepping)      # e.g. average gradients
    for slot in stepping: clip; optimizers[slot].step(); optimizers[slot].zero_grad()
    strategy.after_optimizer_step(model, stepping, recent_rewards)  # e.g. federated averaging
    strategy.metrics(); strategy.update_counts           # {"strategy/...": float}, {slot: int}
    strategy.state_dict() / strategy.load_state_dict(d)  # JSON-safe, for checkpoints

``recent_rewards`` maps a slot to its mean reward over the recent window; a slot may be
missing (no data yet). ``before_optimizer_step`` may run several times per episode (several
optimisation epochs); ``after_optimizer_step`` runs once, and one call counts one update of
each slot in ``stepping``. :meth:`Strategy.trainable_parameters` sets ``requires_grad`` on a
slot's LoRA tensors (``trains(key)`` says which train); PEFT's ``set_adapter`` makes the
active adapter's tensors all trainable and the others frozen, so re-apply it after that.

Cadence: a slot is *due* once ``update_frequency`` of its episodes (``select`` calls) have
passed since its last due episode; ``update_frequency`` is one int or one per slot.

- ``synchronized``: every slot steps together when due (one shared frequency). Before the
  step the gradients of each LoRA tensor are averaged over the group and the same average is
  written to every slot; a slot with no gradient (no samples this episode) counts as zero, i.e.
  the group follows the gradient of the mean of the slots' losses. All slots get the same LoRA
  init seed, so with equal AdamW settings the adapters stay bit-identical. Every slot of the
  group must step, with or without samples (``before_optimizer_step`` raises otherwise).
- ``asynchronous``: each slot steps on its own data at its own frequency; distinct init seeds
  (``base_seed + position in the group``); the adapters drift apart.
- ``federated``: every slot steps on its own data (one shared frequency); after every
  ``federated_interval`` group steps each adapter's effective delta ΔW_j = scaling · B_j A_j
  per LoRA layer becomes ``(1 - λ) ΔW_j + λ Σ_i w_i ΔW_i`` with ``w = softmax(r / T)`` over
  the slots' recent rewards (a slot without a reward gets weight 0; none at all: uniform),
  ``λ = federated_strength``, ``T = federated_temperature``. Scheme: FFA-LoRA (Sun et al.,
  ICLR 2024): all slots share one init seed and the A matrices stay frozen (only B trains,
  ``trains()`` says so), so mixing the B matrices is exactly the mix of the products and the
  rank stays r. If A differs in a layer (``freeze_lora_A=False`` or adapters loaded from
  elsewhere) the exact mixed product is re-factored at rank r by truncated SVD, the best rank-r
  approximation (see :func:`srl_trainers.lora.mix_adapters`), and the relative residual is
  reported as ``strategy/federated_refactor_residual``. The re-factoring changes A and B, so
  AdamW moments of those tensors refer to the old factorisation after it.
- ``selective``: when due (one shared frequency) only the ``selective_top_k`` slots with the
  best recent reward step (default: half the group, rounded up); ties go to the earlier slot,
  a slot without a reward ranks last; the others keep their weights exactly. Distinct seeds.

Metrics (floats): ``strategy/stepped`` (slots selected this episode), ``strategy/divergence``
(mean pairwise relative distance of the adapters' effective deltas, measured after each
step, see :func:`srl_trainers.lora.adapter_divergence`), ``strategy/updates/<slot>``;
federated adds ``strategy/federated_weight/<slot>``, ``strategy/federated_refactor_residual``
and ``strategy/federated_averagings``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import nn

from srl_trainers.config import ConfigError, MultiModelConfig, WeightUpdateStrategy
from srl_trainers.lora import adapter_divergence, lora_parameters, mix_adapters

__all__ = [
    "STRATEGIES",
    "AsynchronousStrategy",
    "FederatedStrategy",
    "SelectiveStrategy",
    "Strategy",
    "SynchronizedStrategy",
    "federated_weights",
    "make_strategy",
]


class Strategy:
    """Base class: cadence, update counts, divergence, checkpoint state (see module doc)."""

    name: ClassVar[str] = ""
    shared_init: ClassVar[bool] = False  # every slot gets the same LoRA init seed
    common_cadence: ClassVar[bool] = False  # the group steps on one frequency

    def __init__(self, slots: Sequence[str], *, update_frequency: int | Sequence[int] = 1) -> None:
        if not slots or len(set(slots)) != len(slots):
            raise ValueError(f"a policy group needs distinct slot names, got {list(slots)}")
        self.slots = list(slots)
        freqs = (
            [update_frequency] * len(slots)
            if isinstance(update_frequency, int)
            else list(update_frequency)
        )
        if len(freqs) != len(slots) or any(f < 1 for f in freqs):
            raise ConfigError(
                f"MultiModelConfig.update_frequency={update_frequency!r} is not allowed: expected "
                f"one int >= 1 or one per slot of {self.slots}"
            )
        if self.common_cadence and len(set(freqs)) > 1:
            raise ConfigError(
                f"MultiModelConfig.update_frequency={update_frequency!r} is not allowed: the "
                f"{self.name} strategy steps the group {self.slots} together, so its slots need "
                "one frequency (per-slot frequencies are for 'asynchronous')"
            )
        self.update_frequency = dict(zip(self.slots, freqs))
        self.update_counts = dict.fromkeys(self.slots, 0)
        self.last_episode = -1
        self._since_due = dict.fromkeys(self.slots, 0)
        self._stepped: list[str] = []
        self._rewards: dict[str, float] = {}
        self._divergence = 0.0

    @classmethod
    def from_config(cls, config: MultiModelConfig, slots: Sequence[str]) -> Strategy:
        return cls(slots, update_frequency=_group_frequencies(config, slots))

    # ------------------------------------------------------------------ setup
    def lora_init_seed(self, slot_index: int, base_seed: int) -> int:
        """LoRA init seed of the group's ``slot_index``-th slot: shared, or ``base_seed + index``."""
        return base_seed if self.shared_init else base_seed + slot_index

    def trains(self, key: str) -> bool:
        """Whether the LoRA tensor with adapter-independent ``key`` is trained."""
        return True

    def trainable_parameters(self, model: nn.Module, slot: str) -> list[nn.Parameter]:
        """Set ``requires_grad`` on ``slot``'s LoRA tensors per :meth:`trains` and return the
        trained ones (what the slot's optimizer holds)."""
        out = []
        for key, param in lora_parameters(model, slot).items():
            param.requires_grad_(self.trains(key))
            if self.trains(key):
                out.append(param)
        return out

    # ------------------------------------------------------------------ hooks
    def select(self, episode: int, recent_rewards: Mapping[str, float]) -> list[str]:
        """Slots that take an optimizer step in ``episode`` (in slot order)."""
        if episode <= self.last_episode:
            raise ValueError(f"episode {episode} is not after the last one ({self.last_episode})")
        self.last_episode = episode
        self._set_rewards(recent_rewards)
        due = []
        for slot in self.slots:
            self._since_due[slot] += 1
            if self._since_due[slot] >= self.update_frequency[slot]:
                self._since_due[slot] = 0
                due.append(slot)
        self._stepped = self._choose(due)
        return list(self._stepped)

    def _choose(self, due: list[str]) -> list[str]:
        return due

    def _set_rewards(self, recent_rewards: Mapping[str, float]) -> None:
        self._rewards = {}
        for slot in self.slots:
            if slot in recent_rewards:
                r = float(recent_rewards[slot])
                if math.isnan(r):
                    raise ValueError(f"recent reward of {slot!r} is NaN")
                self._rewards[slot] = r

    def before_optimizer_step(self, model: nn.Module, stepping: Sequence[str]) -> None:
        """After the backward passes of ``stepping``, before their optimizer steps."""

    def after_optimizer_step(
        self, model: nn.Module, stepping: Sequence[str], recent_rewards: Mapping[str, float]
    ) -> None:
        """After the optimizer steps of ``stepping``: count them, measure divergence."""
        self._set_rewards(recent_rewards)
        for slot in stepping:
            self.update_counts[slot] += 1
        if stepping:
            self._divergence = adapter_divergence(model, self.slots)

    # ------------------------------------------------------------------ reporting, state
    def metrics(self) -> dict[str, float]:
        out = {
            "strategy/stepped": float(len(self._stepped)),
            "strategy/divergence": float(self._divergence),
        }
        out.update({f"strategy/updates/{s}": float(n) for s, n in self.update_counts.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: counters, cadence, last stepped slots and rewards, divergence."""
        return {
            "strategy": self.name,
            "slots": list(self.slots),
            "last_episode": self.last_episode,
            "update_counts": dict(self.update_counts),
            "since_due": dict(self._since_due),
            "stepped": list(self._stepped),
            "recent_rewards": dict(self._rewards),
            "divergence": self._divergence,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["strategy"] != self.name or list(state["slots"]) != self.slots:
            raise ValueError(
                f"checkpoint holds strategy {state['strategy']!r} over {state['slots']}, "
                f"this run uses {self.name!r} over {self.slots}"
            )
        self.last_episode = int(state["last_episode"])
        self.update_counts = {s: int(state["update_counts"][s]) for s in self.slots}
        self._since_due = {s: int(state["since_due"][s]) for s in self.slots}
        self._stepped = list(state["stepped"])
        self._rewards = {s: float(r) for s, r in state["recent_rewards"].items()}
        self._divergence = float(state["divergence"])


class SynchronizedStrategy(Strategy):
    """All slots step together on the group-averaged gradient; shared init: bit-identical."""

    name = "synchronized"
    shared_init = True
    common_cadence = True

    def before_optimizer_step(self, model: nn.Module, stepping: Sequence[str]) -> None:
        if not stepping:
            return
        if sorted(stepping) != sorted(self.slots):
            raise ValueError(
                f"synchronized steps every slot of the group {self.slots} together, got "
                f"{list(stepping)}: pass every slot (one without samples has no gradient, which "
                "counts as zero)"
            )
        params = {slot: lora_parameters(model, slot) for slot in self.slots}
        n = len(self.slots)
        for key in params[self.slots[0]]:
            tensors = [params[slot][key] for slot in self.slots]
            grads = [p.grad for p in tensors if p.grad is not None]
            if not grads or not self.trains(key):
                continue
            avg = (sum(g.float() for g in grads) / n).to(grads[0].dtype)
            for p in tensors:
                if p.grad is None:
                    p.grad = avg.clone()
                else:
                    p.grad.copy_(avg)


class AsynchronousStrategy(Strategy):
    """Each slot steps on its own data at its own ``update_frequency``; distinct inits."""

    name = "asynchronous"


class FederatedStrategy(Strategy):
    """Local steps, then a reward-weighted exact mix of the group's LoRA deltas (FFA-LoRA)."""

    name = "federated"
    shared_init = True
    common_cadence = True

    def __init__(
        self,
        slots: Sequence[str],
        *,
        update_frequency: int | Sequence[int] = 1,
        strength: float = 0.5,
        temperature: float = 1.0,
        interval: int = 1,
        freeze_lora_A: bool = True,
    ) -> None:
        super().__init__(slots, update_frequency=update_frequency)
        if not 0.0 <= strength <= 1.0 or temperature <= 0 or interval < 1:
            raise ConfigError(
                f"federated needs 0 <= strength <= 1, temperature > 0, interval >= 1; got "
                f"{strength}, {temperature}, {interval}"
            )
        self.strength = strength
        self.temperature = temperature
        self.interval = interval
        self.freeze_lora_A = freeze_lora_A
        self.rounds = 0  # group optimizer steps
        self.averagings = 0
        self._weights = {s: 1.0 / len(self.slots) for s in self.slots}
        self._residual = 0.0

    @classmethod
    def from_config(cls, config: MultiModelConfig, slots: Sequence[str]) -> Strategy:
        return cls(
            slots,
            update_frequency=_group_frequencies(config, slots),
            strength=config.federated_strength,
            temperature=config.federated_temperature,
            interval=config.federated_interval,
        )

    def trains(self, key: str) -> bool:
        return not (self.freeze_lora_A and ".lora_A." in key)

    def after_optimizer_step(
        self, model: nn.Module, stepping: Sequence[str], recent_rewards: Mapping[str, float]
    ) -> None:
        self._set_rewards(recent_rewards)
        if stepping:
            self.rounds += 1
            if self.rounds % self.interval == 0:
                self._weights = federated_weights(self._rewards, self.slots, self.temperature)
                self._residual = mix_adapters(
                    model, self.slots, [self._weights[s] for s in self.slots], self.strength
                )
                self.averagings += 1
        super().after_optimizer_step(model, stepping, recent_rewards)

    def metrics(self) -> dict[str, float]:
        out = super().metrics()
        out.update({f"strategy/federated_weight/{s}": w for s, w in self._weights.items()})
        out["strategy/federated_refactor_residual"] = self._residual
        out["strategy/federated_averagings"] = float(self.averagings)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "rounds": self.rounds,
            "averagings": self.averagings,
            "weights": dict(self._weights),
            "residual": self._residual,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.rounds = int(state["rounds"])
        self.averagings = int(state["averagings"])
        self._weights = {s: float(state["weights"][s]) for s in self.slots}
        self._residual = float(state["residual"])


class SelectiveStrategy(Strategy):
    """When due, only the ``top_k`` slots by recent reward step; the rest keep their weights."""

    name = "selective"
    common_cadence = True

    def __init__(
        self,
        slots: Sequence[str],
        *,
        update_frequency: int | Sequence[int] = 1,
        top_k: int | None = None,
    ) -> None:
        super().__init__(slots, update_frequency=update_frequency)
        if top_k is not None and top_k < 1:
            raise ConfigError(f"MultiModelConfig.selective_top_k={top_k} is not allowed: >= 1")
        n = len(self.slots)
        self.top_k = math.ceil(n / 2) if top_k is None else min(top_k, n)

    @classmethod
    def from_config(cls, config: MultiModelConfig, slots: Sequence[str]) -> Strategy:
        return cls(
            slots,
            update_frequency=_group_frequencies(config, slots),
            top_k=config.selective_top_k,
        )

    def _choose(self, due: list[str]) -> list[str]:
        if not due:
            return []
        order = sorted(range(len(due)), key=lambda i: (-self._rewards.get(due[i], -math.inf), i))
        return [due[i] for i in sorted(order[: self.top_k])]


STRATEGIES: dict[str, type[Strategy]] = {
    "synchronized": SynchronizedStrategy,
    "asynchronous": AsynchronousStrategy,
    "federated": FederatedStrategy,
    "selective": SelectiveStrategy,
}


def make_strategy(config: MultiModelConfig, slots: Sequence[str]) -> Strategy:
    """The strategy named by ``config.weight_update_strategy`` for one policy group."""
    return STRATEGIES[WeightUpdateStrategy(config.weight_update_strategy).value].from_config(
        config, slots
    )


def federated_weights(
    rewards: Mapping[str, float], slots: Sequence[str], temperature: float
) -> dict[str, float]:
    """``softmax(reward / temperature)`` over the slots that have a reward (the others get 0);
    uniform when none has one. The weights sum to 1."""
    known = [s for s in slots if s in rewards]
    if not known:
        return {s: 1.0 / len(slots) for s in slots}
    top = max(rewards[s] for s in known)
    exp = {s: math.exp((rewards[s] - top) / temperature) for s in known}
    total = sum(exp.values())
    return {s: exp[s] / total if s in exp else 0.0 for s in slots}


def _group_frequencies(config: MultiModelConfig, slots: Sequence[str]) -> int | list[int]:
    """The group's update frequencies; a per-slot list is looked up by ``config.slot_ids()``."""
    if isinstance(config.update_frequency, int):
        return config.update_frequency
    ids = config.slot_ids()
    unknown = [s for s in slots if s not in ids]
    if unknown:
        raise ConfigError(
            f"MultiModelConfig.update_frequency={config.update_frequency!r} is per slot, but "
            f"slots {unknown} are not among the config's slot ids {ids}"
        )
    return [config.slot_update_frequency(ids.index(s)) for s in slots]
