"""The learner of one policy group: the LoRA slots that share a base model.

A :class:`Learner` holds what training changes and nothing that plays: the trainable
:class:`~srl_trainers.models.ModelPool` (base model and adapters), the optimizers, PPO's value
heads, the adaptive entropy coefficients and the weight-update strategy. The trainer hands it
each slot's buffered turns; :meth:`Learner.update` scores them (reference and old log-probs),
computes the advantages, backpropagates each stepping slot's loss, lets the strategy act around
the optimizer step, and says which slots' weights changed, so that the trainer (or, in Ray
mode, the driver) can push exactly those to the generation engines without knowing which
strategy ran. :meth:`adapter_weights`, :meth:`state_dict` and :meth:`load_state_dict` are what a
remote learner needs to feed engines and checkpoints (``srl_trainers.distributed``).

In local mode the trainer's pool of a base model is also its generation engine; in Ray mode the
same class runs inside a Ray actor.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from srl_trainers.algorithms import ValueHead, grpo_loss, ppo_loss
from srl_trainers.config import MultiModelConfig, WeightUpdateStrategy
from srl_trainers.credit import grpo_advantages, ppo_advantages
from srl_trainers.models import ModelPool, SequenceOutput
from srl_trainers.population import build_pool
from srl_trainers.rollout import Turn
from srl_trainers.strategies import make_strategy

__all__ = ["Learner", "LearnerUpdate"]

# Sequences per forward/backward micro-batch (bounds activation memory on a laptop).
_MICRO_BATCH = 8
# the logged metric that the adaptive entropy target follows, per entropy_scope
_SCOPE_METRIC = {"completion": "entropy", "action": "action_entropy", "numbers": "number_entropy"}


@dataclass
class LearnerUpdate:
    """What one :meth:`Learner.update` did."""

    stepped: list[str] = field(default_factory=list)  # slots whose optimizer stepped
    changed: list[str] = field(default_factory=list)  # slots whose adapter weights changed
    metrics: dict[str, float] = field(default_factory=dict)  # model/<slot>/<name>
    strategy_metrics: dict[str, float] = field(default_factory=dict)  # the strategy's own
    seconds: float = 0.0  # wall time of the update in the learner's own process


class Learner:
    """Trains the slots ``slots`` of base model ``checkpoint`` (see the module docstring).

    ``pool``: an already built pool (tests); by default it is built from the config, with the
    strategy's LoRA initialisation seeds.
    """

    def __init__(
        self,
        config: MultiModelConfig,
        checkpoint: str,
        slots: list[str],
        *,
        pool: ModelPool | None = None,
    ) -> None:
        cfg = config
        self.config = cfg
        self.checkpoint = checkpoint
        self.slots = list(slots)
        self.strategy = make_strategy(cfg, self.slots)
        strategy = self.strategy
        self.pool = pool or build_pool(
            cfg,
            checkpoint,
            self.slots,
            init_seed=lambda i: strategy.lora_init_seed(i, cfg.seed),
        )
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.value_heads: dict[str, ValueHead] = {}
        for slot in self.slots:
            params = strategy.trainable_parameters(self.pool.model, slot)
            trainable = {id(p) for p in params}
            self.pool.freeze(
                [p for p in self.pool.trainable_parameters(slot) if id(p) not in trainable]
            )
            if cfg.algorithm == "ppo":
                torch.manual_seed(cfg.seed + 7919)
                head = ValueHead(self.pool.hidden_size).to(self.pool.device)
                self.value_heads[slot] = head
                params = [*params, *head.parameters()]
            self.optimizers[slot] = torch.optim.AdamW(params, lr=cfg.learning_rate)
        # each adapter's entropy bonus coefficient (adapted when cfg.entropy_target is set)
        self._entropy_coef: dict[str, float] = dict.fromkeys(self.slots, cfg.entropy_coef)

    @property
    def entropy_coef(self) -> dict[str, float]:
        return self._entropy_coef

    @property
    def _uses_numbers(self) -> bool:
        """Whether updates look at the distribution over number tokens (the number entropy
        bonus or the number KL)."""
        return self.config.entropy_scope == "numbers" or self.config.number_kl_coef > 0

    # ================================================================= the update
    def update(
        self,
        buffers: dict[str, list[Turn]],
        episode: int,
        recent_rewards: dict[str, float],
    ) -> LearnerUpdate:
        """One update of the slots the strategy picks (``recent_rewards``: each slot's mean
        reward over the reward window, what selective strategies choose by), on their
        ``buffers``; ``num_iterations`` optimizer steps over the same batch."""
        start = time.perf_counter()
        out = self._update(buffers, episode, recent_rewards)
        out.seconds = time.perf_counter() - start
        return out

    def _update(
        self, buffers: dict[str, list[Turn]], episode: int, recent_rewards: dict[str, float]
    ) -> LearnerUpdate:
        cfg = self.config
        out = LearnerUpdate()
        strategy = self.strategy
        stepping = strategy.select(episode, recent_rewards)
        if not stepping:
            return out
        metrics = out.metrics
        batches = self.prepare_batches(buffers, stepping)
        for _ in range(cfg.num_iterations):
            for slot, slot_metrics in self.backward_slots(batches).items():
                for k, v in slot_metrics.items():
                    metrics[f"model/{slot}/{k}"] = v
            strategy.before_optimizer_step(self.pool.model, stepping)
            for slot in stepping:
                params = [
                    p for group in self.optimizers[slot].param_groups for p in group["params"]
                ]
                if cfg.max_grad_norm > 0:
                    norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    metrics[f"model/{slot}/grad_norm"] = float(norm)
                self.optimizers[slot].step()
                self.optimizers[slot].zero_grad(set_to_none=True)
        strategy.after_optimizer_step(self.pool.model, stepping, recent_rewards)
        scope = _SCOPE_METRIC[cfg.entropy_scope]
        for slot in stepping:
            metrics[f"model/{slot}/entropy_coef"] = self._entropy_coef[slot]
            self.adapt_entropy_coef(slot, metrics.get(f"model/{slot}/{scope}"))
        out.stepped = list(stepping)
        # federated averaging writes every slot's weights, the other strategies only the
        # stepping slots'
        federated = cfg.weight_update_strategy is WeightUpdateStrategy.FEDERATED
        out.changed = list(self.slots) if federated else list(stepping)
        out.strategy_metrics = dict(strategy.metrics())
        return out

    def update_counts(self) -> dict[str, int]:
        """Optimizer steps each slot has taken (the strategy's count)."""
        return {s: int(self.strategy.update_counts[s]) for s in self.slots}

    # ================================================================= weights and state
    def adapter_weights(self, slots: list[str] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Each slot's adapter tensors (CPU copies, PEFT's names), what an engine loads."""
        return {s: self.pool.adapter_state(s) for s in (self.slots if slots is None else slots)}

    def set_adapter_weights(self, weights: dict[str, dict[str, torch.Tensor]]) -> None:
        """Copy :meth:`adapter_weights` output into the slots' adapters, in place."""
        for slot, tensors in weights.items():
            self.pool.set_adapter_state(slot, tensors)

    def adapter_files(self, names: list[str] | None = None) -> dict[str, dict[str, bytes]]:
        """Adapters (slots, or any adapter of the pool: snapshots) as the files of a PEFT
        adapter directory, by name: what a checkpoint gathers from a learner that may live
        on another node."""
        out = {}
        for name in self.slots if names is None else names:
            with tempfile.TemporaryDirectory(prefix="srl-adapter-") as tmp:
                self.pool.save_adapter(name, tmp)
                out[name] = {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}
        return out

    def load_adapter_files(self, files: dict[str, dict[str, bytes]]) -> None:
        """Load adapters given as :meth:`adapter_files` (each checked before any changes:
        :meth:`ModelPool.load_adapter`)."""
        load_adapter_files(self.pool, files)

    def snapshot(self, copies: dict[str, str]) -> None:
        """Freeze a copy of slots' adapters under new names, ``{new name: slot}`` (self-play's
        snapshots): adapters of the pool that never train, in the same generate batch."""
        files = self.adapter_files(sorted(set(copies.values())))
        self.load_snapshot_files({name: files[slot] for name, slot in copies.items()})

    def load_snapshot_files(self, files: dict[str, dict[str, bytes]]) -> None:
        """Load adapters given as :meth:`adapter_files` as frozen snapshots (a resume)."""
        load_adapter_files(self.pool, files, frozen=True)

    def remove_adapters(self, names: list[str]) -> None:
        """Delete snapshot adapters (evicted from the league)."""
        for name in names:
            if name in self.slots:
                raise ValueError(f"{name!r} is a trained slot of this learner, not a snapshot")
            self.pool.remove_adapter(name)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds of this learner besides its adapters: optimizer and value
        head states (tensors), the strategy's state and the entropy coefficients (JSON)."""
        return {
            "optimizers": {s: o.state_dict() for s, o in self.optimizers.items()},
            "value_heads": {s: h.state_dict() for s, h in self.value_heads.items()},
            "strategy": self.strategy.state_dict(),
            "entropy_coef": dict(self._entropy_coef),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (parts that are absent stay as they are)."""
        for slot, opt in self.optimizers.items():
            if "optimizers" in state:
                opt.load_state_dict(state["optimizers"][slot])
        for slot, head in self.value_heads.items():
            if "value_heads" in state:
                head.load_state_dict(state["value_heads"][slot])
        if "strategy" in state:
            self.strategy.load_state_dict(state["strategy"])
        for slot, coef in state.get("entropy_coef", {}).items():
            if slot in self._entropy_coef:
                self._entropy_coef[slot] = coef

    # ================================================================= batches and losses
    @staticmethod
    def _micro_batches(sizes: dict[str, int], mixed: bool) -> list[list[tuple[str, slice]]]:
        """The forward calls over the batches of several slots of one pool: lists of (slot, rows
        of its batch). Each slot's batch is cut into micro-batches of ``_MICRO_BATCH`` rows; with
        ``mixed`` (adapters per row allowed, see ``ModelPool.rows_can_mix``) the i-th
        micro-batches of all slots go in one call, which amortises the per-call cost of the
        model's many small ops (the preset: 4 slots' 8 rows, one call instead of four)."""
        cuts = {
            s: [slice(lo, lo + _MICRO_BATCH) for lo in range(0, n, _MICRO_BATCH)]
            for s, n in sizes.items()
        }
        if not mixed:
            return [[(s, sl)] for s, slices in cuts.items() for sl in slices]
        deepest = max((len(v) for v in cuts.values()), default=0)
        return [[(s, v[i]) for s, v in cuts.items() if i < len(v)] for i in range(deepest)]

    @staticmethod
    def _call_rows(
        call: list[tuple[str, slice]], batches: dict[str, dict[str, Any]], adapter_of
    ) -> tuple[list, list, list, list[slice]]:
        """One forward call's rows: (adapters, prompts, completions), and the rows of the
        call's output that belong to each (slot, rows) part of ``call``."""
        adapters, prompts, completions, parts = [], [], [], []
        for slot, sl in call:
            rows = batches[slot]["prompts"][sl]
            parts.append(slice(len(prompts), len(prompts) + len(rows)))
            adapters += [adapter_of[slot]] * len(rows)
            prompts += rows
            completions += batches[slot]["completions"][sl]
        return adapters, prompts, completions, parts

    def _scored(
        self,
        batches: dict[str, dict[str, Any]],
        adapter_of: dict[str, str | None],
        *,
        hidden: bool = False,
        vocab=None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """No-grad outputs of every slot's batch, each under ``adapter_of[slot]``, padded to the
        slot's widest completion: ``logprobs``, with ``hidden`` the last-prompt hidden states,
        with ``vocab`` the ``vocab_logprobs``."""
        mixed = len(set(adapter_of.values())) == 1 or self.pool.rows_can_mix
        parts: dict[str, dict[str, list[torch.Tensor]]] = {s: defaultdict(list) for s in batches}
        sizes = {s: len(b["samples"]) for s, b in batches.items()}
        for call in self._micro_batches(sizes, mixed):
            adapters, prompts, completions, parts_rows = self._call_rows(call, batches, adapter_of)
            out = self.pool.sequence_logprobs(
                adapters,
                prompts,
                completions,
                temperature=self.config.temperature,
                requires_grad=False,
                return_hidden=hidden,
                entropy_vocab=vocab,
            )
            for (slot, _), rows in zip(call, parts_rows):
                width = max(len(c) for c in batches[slot]["completions"])
                lp = out.logprobs[rows, :width].float()
                parts[slot]["logprobs"].append(
                    torch.nn.functional.pad(lp, (0, width - lp.shape[1]))
                )
                if hidden:
                    parts[slot]["hidden"].append(out.hidden[rows].float())
                if vocab is not None:
                    vl = out.vocab_logprobs[rows, :width].float()
                    parts[slot]["vocab_logprobs"].append(
                        torch.nn.functional.pad(vl, (0, 0, 0, width - vl.shape[1]))
                    )
        return {s: {k: torch.cat(v) for k, v in d.items()} for s, d in parts.items()}

    def prepare_batches(
        self, buffers: dict[str, list[Turn]], slots: list[str]
    ) -> dict[str, dict[str, Any]]:
        """Per slot of ``pool``, the tensors that stay fixed over the iterations: advantages,
        reference and old log-probs (scored for all the slots together, see
        :meth:`_micro_batches`)."""
        cfg = self.config
        batches: dict[str, dict[str, Any]] = {}
        for slot in slots:
            samples = buffers[slot]
            batches[slot] = {
                "samples": samples,
                "prompts": [t.prompt_ids for t in samples],
                "completions": [t.completion_ids for t in samples],
            }
        own = {slot: slot for slot in slots}
        if cfg.beta > 0 or cfg.number_kl_coef > 0:
            ref = self._scored(
                batches,
                dict.fromkeys(slots),
                vocab=self.pool.number_token_ids if cfg.number_kl_coef > 0 else None,
            )
            for slot in slots:
                batches[slot]["ref"] = ref[slot]["logprobs"]
                if "vocab_logprobs" in ref[slot]:
                    batches[slot]["ref_numbers"] = ref[slot]["vocab_logprobs"]
        if cfg.algorithm == "grpo":
            old = self._scored(batches, own) if cfg.num_iterations > 1 else {}
            for slot in slots:
                batches[slot]["advantages"] = grpo_advantages(
                    batches[slot]["samples"],
                    counterfactual=cfg.baseline == "counterfactual",
                    scale_by_std=cfg.scale_rewards,
                )
                if slot in old:
                    batches[slot]["old"] = old[slot]["logprobs"]
        else:
            old = self._scored(batches, own, hidden=True)
            for slot in slots:
                batch = batches[slot]
                with torch.no_grad():
                    values = self.value_heads[slot](old[slot]["hidden"])
                batch["old"], batch["old_values"] = old[slot]["logprobs"], values
                batch["advantages"], batch["returns"] = ppo_advantages(
                    batch["samples"], values, gamma=cfg.gamma, lam=cfg.gae_lambda
                )
        return batches

    def backward_slots(self, batches: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
        """Every slot's loss on its batch, backpropagated in micro-batches (weights keep the
        loss normalisation of each slot's full batch); the slots' losses of one micro-batch
        call go backward together (their adapters' parameters are disjoint). Returns the
        metrics per slot."""
        cfg = self.config
        numbers = self.pool.number_token_ids if self._uses_numbers else None
        sums: dict[str, dict[str, float]] = {s: defaultdict(float) for s in batches}
        counts: dict[str, dict[str, float]] = {s: defaultdict(float) for s in batches}
        sizes = {s: len(b["samples"]) for s, b in batches.items()}
        totals = {s: sum(len(c) for c in b["completions"]) for s, b in batches.items()}
        own = {slot: slot for slot in batches}
        for call in self._micro_batches(sizes, self.pool.rows_can_mix):
            adapters, prompts, completions, parts_rows = self._call_rows(call, batches, own)
            out = self.pool.sequence_logprobs(
                adapters,
                prompts,
                completions,
                temperature=cfg.temperature,
                requires_grad=True,
                # the loss has the entropy of the whole completion or of the action only in
                # those scopes; otherwise it is logged
                return_entropy=True if cfg.entropy_scope in ("completion", "action") else "no_grad",
                entropy_vocab=numbers,
                return_hidden=cfg.algorithm == "ppo",
            )
            loss = 0.0
            for (slot, sl), rows in zip(call, parts_rows):
                part = _rows_of(out, rows, batches[slot]["completions"][sl])
                loss = loss + self._part_loss(
                    slot,
                    batches[slot],
                    sl,
                    part,
                    numbers,
                    sums[slot],
                    counts[slot],
                    sizes[slot],
                    totals[slot],
                )
            loss.backward()
        metrics = {}
        for slot, batch in batches.items():
            m = sums[slot]
            # the means over every action (number) token of the batch; absent when there was none
            for key in ("action_entropy", "number_entropy", "number_kl"):
                if counts[slot][key]:
                    m[key] /= counts[slot][key]
                else:
                    m.pop(key, None)
            m["samples"] = sizes[slot]
            m["mean_advantage"] = float(batch["advantages"].mean())
            metrics[slot] = dict(m)
        return metrics

    def _part_loss(
        self, slot, batch, sl, out, numbers, sums, counts, n: int, total_tokens: int
    ) -> torch.Tensor:
        """The loss of ``slot`` on rows ``sl`` of its batch (``out``: their forward), weighted
        for the batch's normalisation; adds the part's metrics to ``sums`` / ``counts``."""
        cfg = self.config
        completions = batch["completions"][sl]
        number_set = frozenset(numbers or ())
        width = out.logprobs.shape[1]
        logps = out.logprobs.float()
        mask = out.mask.float()
        device = logps.device  # advantages and returns are built on the CPU
        ref = batch["ref"][sl, :width] if "ref" in batch else None
        old = batch["old"][sl, :width] if "old" in batch else None
        if cfg.algorithm == "grpo":
            loss, m = grpo_loss(
                logps,
                old,
                ref,
                batch["advantages"][sl].to(device),
                mask,
                beta=cfg.beta,
                epsilon_low=cfg.epsilon,
                epsilon_high=cfg.epsilon_high if cfg.epsilon_high is not None else cfg.epsilon,
                loss_type=cfg.loss_type,
                max_completion_length=cfg.max_new_tokens,
            )
        else:
            values = self.value_heads[slot](out.hidden.float())
            loss, m = ppo_loss(
                logps,
                old,
                batch["advantages"][sl].to(device),
                mask,
                values,
                batch["old_values"][sl].to(device),
                batch["returns"][sl].to(device),
                clip_range=cfg.epsilon,
                value_clip=cfg.value_clip,
                vf_coef=cfg.vf_coef,
                ref_per_token_logps=ref,
                beta=cfg.beta,
            )
        token_entropy = out.entropy.float()
        entropy = (token_entropy * mask).sum() / mask.sum().clamp(min=1)
        action_mask = _action_mask(batch["samples"][sl], width).to(device) * mask
        action_sum = (token_entropy * action_mask).sum()
        scopes = {"completion": entropy, "action": action_sum / action_mask.sum().clamp(min=1)}
        sums["action_entropy"] += float(action_sum.detach())
        counts["action_entropy"] += float(action_mask.sum())
        if numbers is not None:
            number_mask = _action_mask(batch["samples"][sl], width, number_set).to(device) * mask
            n_numbers = number_mask.sum()
            numbers_counted = float(n_numbers)  # one device sync for both logs
            number_sum = (out.vocab_entropy.float() * number_mask).sum()
            scopes["numbers"] = number_sum / n_numbers.clamp(min=1)
            sums["number_entropy"] += float(number_sum.detach())
            counts["number_entropy"] += numbers_counted
            if cfg.number_kl_coef > 0:
                # KL(base || policy) over the number tokens, at the action's digits
                ref_lp = batch["ref_numbers"][sl, :width].to(device)
                kl = (ref_lp.exp() * (ref_lp - out.vocab_logprobs.float())).sum(-1)
                kl_sum = (kl * number_mask).sum()
                loss = loss + cfg.number_kl_coef * kl_sum / n_numbers.clamp(min=1)
                sums["number_kl"] += float(kl_sum.detach())
                counts["number_kl"] += numbers_counted
        scoped = scopes[cfg.entropy_scope]
        coef = self._entropy_coef[slot]
        if coef and (cfg.entropy_target is None or float(scoped.detach()) < cfg.entropy_target):
            loss = loss - coef * scoped
        token_share = float(mask.sum()) / max(total_tokens, 1)
        seq_share = len(completions) / n
        weight = (
            token_share
            if cfg.algorithm == "grpo" and cfg.loss_type in ("dapo", "bnpo")
            else seq_share
        )
        sums["loss"] += float(loss.detach()) * weight
        for k, v in m.items():
            sums[k] += float(v) * seq_share
        sums["entropy"] += float(entropy.detach()) * seq_share
        return loss * weight

    def adapt_entropy_coef(self, slot: str, entropy: float | None) -> None:
        """Adaptive entropy control (unchanged by an update that had no tokens in scope).
        ``entropy_control="step"``: the coefficient of the next update steps up while the
        adapter's entropy is below ``entropy_target`` and down while above it.
        ``"proportional"``: it is ``entropy_coef_max`` times the entropy's shortfall from the
        target, as a share of the target."""
        cfg = self.config
        if cfg.entropy_target is None or entropy is None:
            return
        if cfg.entropy_control == "proportional":
            shortfall = (cfg.entropy_target - entropy) / cfg.entropy_target
            coef = cfg.entropy_coef_max * shortfall
        else:
            step = cfg.entropy_coef_step
            coef = self._entropy_coef[slot] + (step if entropy < cfg.entropy_target else -step)
        self._entropy_coef[slot] = min(max(coef, 0.0), cfg.entropy_coef_max)


def write_adapter_files(content: dict[str, bytes], directory: str | Path) -> Path:
    """Write one adapter's files, as :meth:`Learner.adapter_files` gives them, into
    ``directory`` (created; file names only, never a path)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for fname, data in content.items():
        (out / Path(fname).name).write_bytes(data)
    return out


def load_adapter_files(
    pool: ModelPool, files: dict[str, dict[str, bytes]], *, frozen: bool = False
) -> None:
    """Load adapters given as :meth:`Learner.adapter_files` into ``pool`` (new ones added,
    existing ones updated in place); ``frozen``: as snapshots that never train."""
    for name, content in files.items():
        with tempfile.TemporaryDirectory(prefix="srl-adapter-") as tmp:
            pool.load_adapter(name, write_adapter_files(content, tmp))
        if frozen:
            pool.freeze(pool.trainable_parameters(name))


def _rows_of(out: SequenceOutput, rows: slice, completions: list[list[int]]) -> SequenceOutput:
    """Rows ``rows`` of a forward's output, cut to the width of their own longest completion
    (what a forward of those rows alone returns)."""
    width = max(1, max(len(c) for c in completions))

    def cut(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[rows, :width]

    return SequenceOutput(
        logprobs=cut(out.logprobs),
        mask=cut(out.mask),
        entropy=cut(out.entropy),
        vocab_entropy=cut(out.vocab_entropy),
        vocab_logprobs=cut(out.vocab_logprobs),
        hidden=None if out.hidden is None else out.hidden[rows],
    )


def _action_mask(
    samples: list[Turn], width: int, only: frozenset[int] | None = None
) -> torch.Tensor:
    """[B, width] float mask, 1 on each sample's ``action_tokens`` (completions right-padded);
    with ``only``, on those of them whose token id is in ``only``."""
    mask = torch.zeros(len(samples), width)
    for i, turn in enumerate(samples):
        if turn.action_tokens is None:
            continue
        a, b = turn.action_tokens
        if only is None:
            mask[i, a:b] = 1.0
        else:
            for t in range(a, b):
                mask[i, t] = float(turn.completion_ids[t] in only)
    return mask
