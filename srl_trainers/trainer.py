"""``MultiModelTrainer``: GRPO and PPO over a population of LoRA policies.

One training episode, in the order of the methods below:

1. **rollout** (:class:`srl_trainers.rollout.Rollout`): ``E`` env copies play to the end.
   Every round, the prompts of all agents played by LoRA slots of one base model go into ONE
   batched, mixed-adapter ``generate`` call; scripted bots and API models answer for the
   other agents.
2. **rewards**: the env mixes each agent's reward from raw scores with the training mode's
   cooperation balance (:class:`ModeController`); a user ``reward_function`` may add to or
   replace the reward of each LLM turn.
3. **advantages** (:mod:`srl_trainers.credit`): credit rule: every LLM turn is one sample,
   credited with the return of its agent from that turn to the end of the env episode
   (reward-to-go, undiscounted).
   GRPO: copies come in groups of ``group_size`` sharing one env seed; a turn's advantage is
   its return relative to the same agent's turns at the same round in its group, or, with
   ``baseline="counterfactual"``, for a turn that ends the game, relative to the rewards
   its agent would have got with its groupmates' answers (:func:`counterfactual_baseline`).
   PPO: GAE over each agent's turns with a value head per adapter.
4. **loss + weight-update strategy**: per policy group (slots sharing a base model) the
   strategy picks the slots that step; each stepping slot backpropagates its loss into its
   own adapter; the strategy may average gradients before, or weights after, the step.
5. **log and save**: metrics to the monitor; checkpoints every ``save_interval`` episodes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import tempfile
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

import srl_envs
from srl_envs.staged import StagedEnv
from srl_trainers.algorithms import ValueHead, grpo_loss, ppo_loss
from srl_trainers.checkpoint import (
    RNG_FILE,
    CheckpointManager,
    checkpoint_id_for,
    list_available_checkpoints,
    load_tensors,
    read_state,
    restore_rng_state,
    save_rng_state,
    to_jsonable,
    write_state,
)
from srl_trainers.config import (
    ConfigError,
    MultiModelConfig,
    TrainingMode,
    WeightUpdateStrategy,
)
from srl_trainers.credit import (
    compute_returns,
    counterfactual_baseline,
    grpo_advantages,
    ppo_advantages,
)
from srl_trainers.league import Ratings, SnapshotLeague
from srl_trainers.models import ModelPool, SequenceOutput
from srl_trainers.monitor import UnifiedMonitor
from srl_trainers.policies import Policy, SnapshotPolicy
from srl_trainers.population import Population, build_pool, response_prefix_of
from srl_trainers.rollout import (
    EVAL_SEED_OFFSET,
    Rollout,
    RolloutResult,
    TrainingEnvironment,
    Turn,
)
from srl_trainers.strategies import make_strategy

__all__ = [
    "EVAL_SEED_OFFSET",
    "ModeController",
    "MultiModelTrainer",
    "TrainingEnvironment",
    "Turn",
    "counterfactual_baseline",
]

# Files of a checkpoint besides the adapters (adapters/<slot>/, PEFT safetensors): tensors
# through torch.save / checkpoint.load_tensors, the plain training state as JSON.
OPTIMIZERS_FILE = "optimizers.pt"
VALUE_HEADS_FILE = "value_heads.pt"
TRAINER_STATE_FILE = "trainer_state.json"
# Config fields a checkpoint is bound to: its adapters, optimizer states and strategy state
# only fit a run with the same values (learning rate, max_episodes and the like may change).
RESUME_FIELDS = (
    "env",
    "algorithm",
    "weight_update_strategy",
    "num_models",
    "model_types",
    "lora_rank",
    "lora_alpha",
    "lora_target_modules",
    "opponent_sampling",
)


class ModeController:
    """The cooperation balance of the training mode.

    * COOPERATIVE: ``c = cooperation_strength``, ``k = 0``.
    * COMPETITIVE: ``c = 0`` (zero-sum), ``k = competition_intensity``.
    * MIXED: ``k = competition_intensity`` and ``c`` starts at ``cooperation_strength``; after
      every training episode ``c`` moves by ``mixed_adapt_rate`` toward cooperation when the
      group welfare (mean raw score per agent) fell below its running average (EMA, 0.8), and
      toward competition when it rose above it; ``c`` stays in [0.05, 0.95].
    """

    def __init__(self, config: MultiModelConfig) -> None:
        self.config = config
        self.cooperation = config.cooperation_strength
        self.welfare_ema: float | None = None

    def balance(self) -> tuple[float, float]:
        """(cooperation level c, competition intensity k) for the next episode."""
        mode = self.config.training_mode
        if mode is TrainingMode.COOPERATIVE:
            return self.config.cooperation_strength, 0.0
        if mode is TrainingMode.COMPETITIVE:
            return 0.0, self.config.competition_intensity
        return self.cooperation, self.config.competition_intensity

    def observe(self, welfare: float) -> None:
        if self.config.training_mode is not TrainingMode.MIXED:
            return
        if self.welfare_ema is not None:
            step = self.config.mixed_adapt_rate
            if welfare < self.welfare_ema - 1e-9:
                self.cooperation = min(0.95, self.cooperation + step)
            elif welfare > self.welfare_ema + 1e-9:
                self.cooperation = max(0.05, self.cooperation - step)
            self.welfare_ema = 0.8 * self.welfare_ema + 0.2 * welfare
        else:
            self.welfare_ema = welfare

    def state_dict(self) -> dict[str, Any]:
        return {"cooperation": self.cooperation, "welfare_ema": self.welfare_ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cooperation = state["cooperation"]
        self.welfare_ema = state["welfare_ema"]


# ------------------------------------------------------------------------------ trainer
class MultiModelTrainer:
    """Trains the LoRA slots of a population on an srl env (see the module docstring).

    Heavy objects (models, env copies) are built at the first ``train()`` or
    ``load_checkpoint()``, so ``trainer.config`` stays editable until then.
    """

    def __init__(
        self, config: MultiModelConfig | None = None, *, monitor: UnifiedMonitor | None = None
    ) -> None:
        self.config = config if config is not None else MultiModelConfig()
        self.environment = TrainingEnvironment(self.config)
        self.monitor = monitor
        self.is_training = False
        self.current_episode = 0
        self.training_time = 0.0
        self.checkpoints_saved: list[str] = []
        self.resumed_from: str | None = None  # id of the checkpoint load_checkpoint restored
        self.policies: dict[str, Policy] = {}
        self.policy_mapping: dict[str, str] = {}
        self._built = False
        self._stop_requested = False
        self._history: dict[str, deque] = {}
        self._totals: dict[str, dict[str, float]] = {}
        self._last_metrics: dict[str, float] = {}
        # eval_episodes > 0: "before" and "after" training (summaries of srl_trainers.evaluate)
        self.evaluations: dict[str, dict[str, Any]] = {}

    # ================================================================= setup
    def setup(self) -> None:
        """Build env copies, models, adapters, optimizers and strategies (idempotent)."""
        if self._built:
            return
        cfg = self.config
        cfg.validate()
        _seed_everything(cfg.seed)
        probe = self.environment.make()
        self.population = Population(cfg, probe)
        self.agents = self.population.agents
        self.teams = self.population.teams
        self.policy_mapping = self.population.policy_mapping
        self.policies = self.population.policies
        self.groups = self.population.groups
        self.slots = self.population.slots
        self._build_learners()
        self.modes = ModeController(cfg)
        self.num_copies = self.population.num_copies()
        self.envs = [probe] + [self.environment.make() for _ in range(self.num_copies - 1)]
        self.response_prefix: str = response_prefix_of(cfg, probe)
        self.population.make_bots(self.num_copies)
        self.rollout = Rollout(
            cfg,
            self.environment,
            self.envs,
            self.policies,
            self.policy_mapping,
            pools={p.checkpoint: self.pools[p.checkpoint] for p in self.population.lora_policies()},
            backends=self.backends,
            response_prefix=self.response_prefix,
        )
        self._buffers: dict[str, list[Turn]] = {s: [] for s in self.slots}
        # each adapter's entropy bonus coefficient (adapted when cfg.entropy_target is set)
        self._entropy_coef: dict[str, float] = dict.fromkeys(self.slots, cfg.entropy_coef)
        self._history = {p: deque(maxlen=cfg.reward_window) for p in self.policies}
        self._totals = {
            p: {"episodes": 0, "env_episodes": 0, "wins": 0, "invalid": 0, "turns": 0}
            for p in self.policies
        }
        # openskill ratings of every policy (slots, bots, the base, API models) from the games
        # played in training: rating/<policy>/{mu,sigma,ordinal}
        self.ratings = Ratings()
        # self-play: snapshots of the slots play the opponents (opponent_sampling != "fixed")
        self._played_mapping: dict[str, str] = self.policy_mapping
        self.league: SnapshotLeague | None = None
        if cfg.opponent_sampling != "fixed":
            self.league = SnapshotLeague(
                cfg.opponent_sampling,
                self.slots,
                [a for a in self.agents if not self.policies[self.policy_mapping[a]].trainable],
                max_snapshots=cfg.max_snapshots,
                seed=cfg.seed + 101,
            )
        self.checkpoints = CheckpointManager(
            cfg.checkpoint_dir, max_checkpoints=cfg.max_checkpoints
        )
        self._built = True
        self._print_mapping()

    def _build_learners(self) -> None:
        cfg = self.config
        self.pools: dict[str, ModelPool] = {}
        self.backends: dict[str, Any] = {}  # checkpoint -> vLLM backend (generation_backend="vllm")
        self._adapter_push_dir = Path(cfg.checkpoint_dir) / ".vllm_adapters"
        self.strategies = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.value_heads: dict[str, ValueHead] = {}
        self.pool_of: dict[str, ModelPool] = {}
        for checkpoint, slots in self.groups.items():
            strategy = make_strategy(cfg, slots)
            self.strategies[checkpoint] = strategy
            pool = build_pool(
                cfg,
                checkpoint,
                slots,
                init_seed=lambda i, s=strategy: s.lora_init_seed(i, cfg.seed),
            )
            self.pools[checkpoint] = pool
            for slot in slots:
                self.pool_of[slot] = pool
            if cfg.generation_backend == "vllm":
                from srl_trainers.vllm_backend import VLLMGenerationBackend

                self.backends[checkpoint] = VLLMGenerationBackend.from_pool(pool)
                self.backends[checkpoint].push_from_pool(
                    pool, slots, self._adapter_push_dir / Path(checkpoint).name
                )
            for slot in slots:
                params = strategy.trainable_parameters(pool.model, slot)
                trainable = {id(p) for p in params}
                pool.freeze([p for p in pool.trainable_parameters(slot) if id(p) not in trainable])
                if cfg.algorithm == "ppo":
                    torch.manual_seed(cfg.seed + 7919)
                    head = ValueHead(pool.hidden_size).to(pool.device)
                    self.value_heads[slot] = head
                    params = [*params, *head.parameters()]
                self.optimizers[slot] = torch.optim.AdamW(params, lr=cfg.learning_rate)

    @property
    def _uses_numbers(self) -> bool:
        """Whether updates look at the distribution over number tokens (the number entropy
        bonus or the number KL)."""
        return self.config.entropy_scope == "numbers" or self.config.number_kl_coef > 0

    def _print_mapping(self) -> None:
        lines = [
            f"srl: env {self.environment.env_id}, {self.num_copies} copies, "
            f"{self.config.algorithm.upper()}, {self.config.weight_update_strategy.value}, "
            f"{self.config.training_mode.value}"
        ]
        lines.extend(self.population.describe())
        print("\n".join(lines), flush=True)

    # ================================================================= training loop
    async def train(self) -> dict[str, Any]:
        """Run training episodes until ``max_episodes``; returns the run's results."""
        self.setup()
        cfg = self.config
        cfg.validate()
        self.check_output_dirs(new_run=self.resumed_from is None and not self.checkpoints_saved)
        monitor = self._ensure_monitor()
        if monitor is not None:
            monitor.start()
            cfg.run_name = monitor.run_name  # a fresh run beside a finished one gets "<name>-2"
        self.is_training = True
        self._stop_requested = False
        start = time.time() - self.training_time
        if cfg.eval_episodes and "before" not in self.evaluations:  # kept across a resume
            self.evaluations["before"] = await self._evaluate("before training")
        if monitor is not None:
            monitor.progress(cfg.max_episodes, initial=self.current_episode)
        try:
            while self.current_episode < cfg.max_episodes and not self._stop_requested:
                episode = self.current_episode
                results = await self.train_multi_model_episode(episode)
                self.training_time = time.time() - start
                if monitor is not None:
                    if (episode + 1) % cfg.log_metrics_interval == 0:
                        monitor.log(results["metrics"], step=episode + 1)
                        for slot, text in results["samples"].items():
                            monitor.log_text(f"samples/{slot}", text, step=episode + 1)
                    monitor.update_progress(episode + 1, self._progress_summary())
                if (
                    episode + 1
                ) % cfg.save_interval == 0 or self.current_episode >= cfg.max_episodes:
                    self.save_checkpoint()
            if self._stop_requested and (
                not self.checkpoints_saved
                or self.checkpoints_saved[-1] != checkpoint_id_for(self.current_episode)
            ):
                self.save_checkpoint()
        finally:
            self.is_training = False
            self.training_time = time.time() - start
        completed = self.current_episode >= cfg.max_episodes
        if cfg.eval_episodes and completed and not self._stop_requested:
            if monitor is not None:
                monitor.close_progress()
            self.evaluations["after"] = await self._evaluate("after training")
        return {
            "evaluation": dict(self.evaluations),
            "training_completed": completed,
            "interrupted": self._stop_requested and self.current_episode < cfg.max_episodes,
            "total_episodes": self.current_episode,
            "training_time": self.training_time,
            "training_metrics": dict(self._last_metrics),
            "final_model_states": self.get_model_performance_summary(),
            "checkpoints_saved": list(self.checkpoints_saved),
            "checkpoint_dir": str(Path(cfg.checkpoint_dir).resolve()),
            "log_dir": str(monitor.run_dir) if monitor is not None else None,
        }

    async def _evaluate(self, when: str) -> dict[str, Any]:
        """The trainable population on ``eval_episodes`` held-out games (srl_trainers.evaluate,
        the config's opponent, ``eval_temperature``): a summary, also logged as ``eval/*``."""
        from srl_trainers.evaluate import aevaluate

        cfg = self.config
        how = "greedy" if cfg.eval_temperature == 0 else f"T = {cfg.eval_temperature:g}"
        print(
            f"srl: evaluating {when}: {cfg.eval_episodes} held-out games against "
            f"{cfg.opponent_policy}, {how}",
            flush=True,
        )
        report = await aevaluate(
            self, num_episodes=cfg.eval_episodes, temperature=cfg.eval_temperature
        )
        group = report.population
        summary = {
            "episode": report.training_episode,
            "games": report.num_episodes,
            "opponent": report.opponent,
            "temperature": report.temperature,
            "win_rate": group.win_rate,
            "win_ci": list(group.win_ci),
            "draw_rate": group.draw_rate,
            "invalid_rate": group.invalid_rate,
            "mean_return": group.mean_return,
            "seconds": report.seconds,
        }
        monitor = self._ensure_monitor()
        if monitor is not None:
            monitor.log(
                {
                    "eval/win_rate": group.win_rate,
                    "eval/win_ci_low": group.win_ci[0],
                    "eval/win_ci_high": group.win_ci[1],
                    "eval/invalid_rate": group.invalid_rate,
                    "eval/mean_return": group.mean_return,
                },
                step=report.training_episode,
            )
        return summary

    def train_sync(self) -> dict[str, Any]:
        """``train()`` for scripts without asyncio."""
        return asyncio.run(self.train())

    def request_stop(self) -> None:
        """Finish the current episode, save a checkpoint and return from ``train()``."""
        self._stop_requested = True

    async def train_multi_model_episode(self, episode_num: int) -> dict[str, Any]:
        """One training episode: rollout, rewards, advantages, updates; returns its metrics."""
        self.setup()
        coop, comp = self.modes.balance()
        league = self.league
        if league is not None:  # self-play: this episode's opponents are one snapshot
            if not league.snapshots:
                self._take_snapshot(episode_num)
            self._played_mapping = league.mapping(self.policy_mapping, league.draw())
            self.rollout.policy_mapping = self._played_mapping
        try:
            rollout = await self.rollout.play(episode_num, coop, comp)
        finally:
            self.rollout.policy_mapping = self.policy_mapping  # evaluation plays the fixed one
        self._compute_returns(rollout.turns)
        for turn in rollout.turns:
            self._buffers[turn.slot].append(turn)
        welfare = self._update_stats(rollout)
        update_metrics = self._update_policies(episode_num)
        if league is not None:
            update_metrics.update(self._league_step(rollout, episode_num))
        self.modes.observe(welfare)
        self.current_episode = episode_num + 1
        metrics = self._episode_metrics(rollout, update_metrics, coop, comp, welfare)
        self._last_metrics = metrics
        return {"episode": episode_num, "metrics": metrics, "samples": self._samples(rollout)}

    @staticmethod
    def _samples(rollout: RolloutResult, per_slot: int = 4) -> dict[str, str]:
        """What each trainable slot wrote: its first ``per_slot`` turns of the episode (agent,
        round, credited return, the text the env read), for ``samples.jsonl`` / TensorBoard."""
        out: dict[str, list[str]] = defaultdict(list)
        for turn in rollout.turns:
            if len(out[turn.slot]) < per_slot:
                out[turn.slot].append(
                    f"{turn.agent} round {turn.round + 1}, return {turn.ret:+.3f}: {turn.text!r}"
                )
        return {slot: "\n".join(lines) for slot, lines in out.items()}

    # ================================================================= rollout
    def env_seed(self, episode: int, group: int) -> int:
        """Seed of the env copies of one GRPO group (shared inside the group)."""
        return self.rollout.env_seed(episode, group)

    # ================================================================= returns and advantages
    @staticmethod
    def _compute_returns(turns: list[Turn]) -> None:
        compute_returns(turns)

    def _grpo_advantages(self, samples: list[Turn]) -> torch.Tensor:
        return grpo_advantages(
            samples,
            counterfactual=self.config.baseline == "counterfactual",
            scale_by_std=self.config.scale_rewards,
        )

    def _ppo_advantages(
        self, samples: list[Turn], values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return ppo_advantages(samples, values, gamma=self.config.gamma, lam=self.config.gae_lambda)

    # ================================================================= loss and updates
    def _update_policies(self, episode: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for checkpoint, slots in self.groups.items():
            strategy = self.strategies[checkpoint]
            pool = self.pools[checkpoint]
            stepping = strategy.select(episode, self._recent_rewards(slots))
            if not stepping:
                continue
            batches = self._prepare_batches(pool, stepping)
            for _ in range(self.config.num_iterations):
                for slot, slot_metrics in self._backward_slots(pool, batches).items():
                    for k, v in slot_metrics.items():
                        metrics[f"model/{slot}/{k}"] = v
                strategy.before_optimizer_step(pool.model, stepping)
                for slot in stepping:
                    params = [
                        p for group in self.optimizers[slot].param_groups for p in group["params"]
                    ]
                    if self.config.max_grad_norm > 0:
                        norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
                        metrics[f"model/{slot}/grad_norm"] = float(norm)
                    self.optimizers[slot].step()
                    self.optimizers[slot].zero_grad(set_to_none=True)
            strategy.after_optimizer_step(pool.model, stepping, self._recent_rewards(slots))
            scope = _SCOPE_METRIC[self.config.entropy_scope]
            for slot in stepping:
                metrics[f"model/{slot}/entropy_coef"] = self._entropy_coef[slot]
                self._adapt_entropy_coef(slot, metrics.get(f"model/{slot}/{scope}"))
            if (
                checkpoint in self.backends
            ):  # vLLM serves copies of the adapters: push the new weights
                changed = (
                    slots
                    if self.config.weight_update_strategy is WeightUpdateStrategy.FEDERATED
                    else stepping
                )
                self.backends[checkpoint].push_from_pool(
                    pool, changed, self._adapter_push_dir / Path(checkpoint).name
                )
            for slot in stepping:
                self._buffers[slot] = []
            for k, v in strategy.metrics().items():
                metrics[k if len(self.groups) == 1 else f"{k}/{Path(checkpoint).name}"] = v
        # bound the buffers of slots that did not step to their newest update's worth
        slot_ids = self.config.slot_ids()  # API slots are not in self.slots
        for slot in self.slots:
            cap = (
                self.config.batch_size * self.config.slot_update_frequency(slot_ids.index(slot)) * 2
            )
            if len(self._buffers[slot]) > cap:
                self._buffers[slot] = self._buffers[slot][-cap:]
        return metrics

    def _adapt_entropy_coef(self, slot: str, entropy: float | None) -> None:
        """Adaptive entropy control: the coefficient of the next update steps up while the
        adapter's entropy is below ``entropy_target`` and down while above it (unchanged by
        an update that had no tokens in scope)."""
        cfg = self.config
        if cfg.entropy_target is None or entropy is None:
            return
        step = cfg.entropy_coef_step if entropy < cfg.entropy_target else -cfg.entropy_coef_step
        self._entropy_coef[slot] = min(
            max(self._entropy_coef[slot] + step, 0.0), cfg.entropy_coef_max
        )

    def _prepare_batch(self, slot: str) -> dict[str, Any]:
        """:meth:`_prepare_batches` of one slot."""
        return self._prepare_batches(self.pool_of[slot], [slot])[slot]

    def _backward(self, slot: str, batch: dict[str, Any]) -> dict[str, float]:
        """:meth:`_backward_slots` of one slot."""
        return self._backward_slots(self.pool_of[slot], {slot: batch})[slot]

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
        pool: ModelPool,
        batches: dict[str, dict[str, Any]],
        adapter_of: dict[str, str | None],
        *,
        hidden: bool = False,
        vocab=None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """No-grad outputs of every slot's batch, each under ``adapter_of[slot]``, padded to the
        slot's widest completion: ``logprobs``, with ``hidden`` the last-prompt hidden states,
        with ``vocab`` the ``vocab_logprobs``."""
        mixed = len(set(adapter_of.values())) == 1 or pool.rows_can_mix
        parts: dict[str, dict[str, list[torch.Tensor]]] = {s: defaultdict(list) for s in batches}
        sizes = {s: len(b["samples"]) for s, b in batches.items()}
        for call in self._micro_batches(sizes, mixed):
            adapters, prompts, completions, parts_rows = self._call_rows(call, batches, adapter_of)
            out = pool.sequence_logprobs(
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

    def _prepare_batches(self, pool: ModelPool, slots: list[str]) -> dict[str, dict[str, Any]]:
        """Per slot of ``pool``, the tensors that stay fixed over the iterations: advantages,
        reference and old log-probs (scored for all the slots together, see
        :meth:`_micro_batches`)."""
        cfg = self.config
        batches: dict[str, dict[str, Any]] = {}
        for slot in slots:
            samples = self._buffers[slot]
            batches[slot] = {
                "samples": samples,
                "prompts": [t.prompt_ids for t in samples],
                "completions": [t.completion_ids for t in samples],
            }
        own = {slot: slot for slot in slots}
        if cfg.beta > 0 or cfg.number_kl_coef > 0:
            ref = self._scored(
                pool,
                batches,
                dict.fromkeys(slots),
                vocab=pool.number_token_ids if cfg.number_kl_coef > 0 else None,
            )
            for slot in slots:
                batches[slot]["ref"] = ref[slot]["logprobs"]
                if "vocab_logprobs" in ref[slot]:
                    batches[slot]["ref_numbers"] = ref[slot]["vocab_logprobs"]
        if cfg.algorithm == "grpo":
            old = self._scored(pool, batches, own) if cfg.num_iterations > 1 else {}
            for slot in slots:
                batches[slot]["advantages"] = self._grpo_advantages(batches[slot]["samples"])
                if slot in old:
                    batches[slot]["old"] = old[slot]["logprobs"]
        else:
            old = self._scored(pool, batches, own, hidden=True)
            for slot in slots:
                batch = batches[slot]
                with torch.no_grad():
                    values = self.value_heads[slot](old[slot]["hidden"])
                batch["old"], batch["old_values"] = old[slot]["logprobs"], values
                batch["advantages"], batch["returns"] = self._ppo_advantages(
                    batch["samples"], values
                )
        return batches

    def _backward_slots(
        self, pool: ModelPool, batches: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, float]]:
        """Every slot's loss on its batch, backpropagated in micro-batches (weights keep the
        loss normalisation of each slot's full batch); the slots' losses of one micro-batch
        call go backward together (their adapters' parameters are disjoint). Returns the
        metrics per slot."""
        cfg = self.config
        numbers = pool.number_token_ids if self._uses_numbers else None
        sums: dict[str, dict[str, float]] = {s: defaultdict(float) for s in batches}
        counts: dict[str, dict[str, float]] = {s: defaultdict(float) for s in batches}
        sizes = {s: len(b["samples"]) for s, b in batches.items()}
        totals = {s: sum(len(c) for c in b["completions"]) for s, b in batches.items()}
        own = {slot: slot for slot in batches}
        for call in self._micro_batches(sizes, pool.rows_can_mix):
            adapters, prompts, completions, parts_rows = self._call_rows(call, batches, own)
            out = pool.sequence_logprobs(
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

    # ================================================================= stats and metrics
    def _recent_rewards(self, slots: list[str]) -> dict[str, float]:
        return {
            s: float(np.mean([h["reward"] for h in self._history[s]])) if self._history[s] else 0.0
            for s in slots
        }

    def _update_stats(self, rollout: RolloutResult) -> float:
        """Per-policy episode stats; returns the group welfare (mean raw score per agent)."""
        per_policy: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        welfare = []
        for copy in range(self.num_copies):
            raw = rollout.raw_totals[copy]
            wins = _wins(raw, self.teams)
            welfare.append(float(np.mean(list(raw.values()))))
            for agent, total in rollout.reward_totals[copy].items():
                pid = self._played_mapping[agent]
                per_policy[pid]["reward"].append(total)
                per_policy[pid]["raw"].append(raw[agent])
                per_policy[pid]["win"].append(float(wins[agent]))
                per_policy[pid]["invalid"].append(rollout.invalid_counts[copy].get(agent, 0))
                per_policy[pid]["turns"].append(rollout.turn_counts[copy].get(agent, 0))
        group_welfare = float(np.mean(welfare))
        for copy in range(self.num_copies):
            self._rate_copy(rollout.raw_totals[copy])
        for pid, stats in per_policy.items():
            invalid, turns = sum(stats["invalid"]), sum(stats["turns"])
            self._history[pid].append(
                {
                    "reward": float(np.mean(stats["reward"])),
                    "raw": float(np.mean(stats["raw"])),
                    "win_rate": float(np.mean(stats["win"])),
                    "invalid_rate": invalid / max(turns, 1),
                    "welfare": group_welfare,
                }
            )
            totals = self._totals[pid]
            totals["episodes"] += 1
            totals["env_episodes"] += len(stats["win"])
            totals["wins"] += sum(stats["win"])
            totals["invalid"] += invalid
            totals["turns"] += turns
        return group_welfare

    # ================================================================= self-play
    def _take_snapshot(self, episode: int) -> None:
        """Freeze a copy of every slot's adapter as a snapshot policy of the league."""
        ids, evicted = self.league.add(episode)
        for slot, pid in ids.items():
            pool = self.pool_of[slot]
            with tempfile.TemporaryDirectory(prefix="srl-snapshot-") as tmp:
                pool.save_adapter(slot, tmp)
                pool.load_adapter(pid, tmp)
            pool.freeze(pool.trainable_parameters(pid))
            src = self.policies[slot]
            self._add_snapshot_policy(pid, src, episode)
        for snap in evicted:
            for pid in snap["policies"].values():
                self.pools[self.policies[pid].checkpoint].remove_adapter(pid)
                del self.policies[pid]
                self._history.pop(pid, None)
                self._totals.pop(pid, None)
        self.league.mark = min(self._update_count(s) for s in self.slots)

    def _add_snapshot_policy(self, pid: str, src: Policy, episode: int) -> None:
        self.policies[pid] = SnapshotPolicy(
            pid,
            src.model_type,
            f"{src.model_name} (snapshot of {src.policy_id}, episode {episode})",
            checkpoint=src.checkpoint,
            source=src.policy_id,
            episode=episode,
        )
        self._history.setdefault(pid, deque(maxlen=self.config.reward_window))
        self._totals.setdefault(
            pid, {"episodes": 0, "env_episodes": 0, "wins": 0, "invalid": 0, "turns": 0}
        )

    def _league_step(self, rollout: RolloutResult, episode: int) -> dict[str, float]:
        """Record the learners' results against this episode's snapshot, take the next
        snapshot when ``snapshot_interval`` updates have passed; the league's metrics."""
        league = self.league
        opponents = set(league.opponents)
        results = []
        for copy in range(self.num_copies):
            raw = rollout.raw_totals[copy]
            mine = [v for a, v in raw.items() if a not in opponents]
            theirs = [v for a, v in raw.items() if a in opponents]
            lead = float(np.mean(mine)) - float(np.mean(theirs))
            results.append(1.0 if lead > 0 else 0.5 if lead == 0 else 0.0)
        played = league.current
        league.record(results)
        metrics = {
            "league/win_rate": float(np.mean(results)),
            "league/opponent_episode": float(
                next(s["episode"] for s in league.snapshots if s["name"] == played)
            ),
        }
        if min(self._update_count(s) for s in self.slots) - league.mark >= (
            self.config.snapshot_interval
        ):
            self._take_snapshot(episode + 1)
        metrics["league/snapshots"] = float(len(league.snapshots))
        return metrics

    def _rate_copy(self, raw: dict[str, float]) -> None:
        """Rate one game: in a team game the teams (the policy of each of its agents: a policy
        that plays several seats counts once per seat), else each policy by its agents' mean
        raw score; games where one policy plays on both teams (or only one policy plays) rate
        nothing."""
        sides: dict[str, list[str]] = defaultdict(list)
        for agent in raw:
            side = self.teams[agent] if self.teams else self._played_mapping[agent]
            sides[side].append(agent)
        if len(sides) < 2:
            return
        teams = [sorted(self._played_mapping[a] for a in agents) for agents in sides.values()]
        members = [p for team in teams for p in set(team)]
        if len(members) != len(set(members)):
            return
        scores = [float(np.mean([raw[a] for a in agents])) for agents in sides.values()]
        self.ratings.rate(teams, scores)

    def _episode_metrics(self, rollout, update_metrics, coop, comp, welfare) -> dict[str, float]:
        metrics: dict[str, float] = {
            "train/cooperation_balance": coop,
            "train/competition_intensity": comp,
            "env/group_welfare": welfare,
            "env/invalid_rate": float(np.mean([t.invalid for t in rollout.turns]))
            if rollout.turns
            else 0.0,
            "perf/tokens_per_second": rollout.tokens_generated
            / max(rollout.generation_seconds, 1e-9),
            "perf/generated_tokens": float(rollout.tokens_generated),
        }
        for key, value in rollout.env_metrics.items():
            metrics[f"model/{key}" if "/" in key else f"env/{key}"] = value
        staged = [env for env in self.envs if isinstance(env, StagedEnv)]
        if staged:  # the stage this episode was played in (mean over copies: gates are per copy)
            metrics["curriculum/stage"] = float(np.mean([env.stage for env in staged]))
            metrics["curriculum/warmup"] = float(np.mean([env.warmup for env in staged]))
        for pid in self.policies:
            last = self._history[pid][-1] if self._history[pid] else None
            if last is None:
                continue
            metrics[f"model/{pid}/reward"] = last["reward"]
            metrics[f"model/{pid}/avg_reward"] = self._recent_rewards([pid])[pid]
            metrics[f"model/{pid}/win_rate"] = last["win_rate"]
            metrics[f"model/{pid}/invalid_rate"] = last["invalid_rate"]
            metrics[f"model/{pid}/update_count"] = float(self._update_count(pid))
        for policy in self.policies.values():  # api/<policy>/failures, token usage, ...
            metrics.update(policy.metrics())
        for row in self.ratings.table():
            for key in ("mu", "sigma", "ordinal"):
                metrics[f"rating/{row['player']}/{key}"] = row[key]
        metrics.update(update_metrics)
        return metrics

    def _rating_of(self, pid: str) -> dict[str, float]:
        """``rating_mu``, ``rating_sigma``, ``rating_ordinal`` of a rated policy (else {})."""
        for row in self.ratings.table():
            if row["player"] == pid:
                return {f"rating_{k}": row[k] for k in ("mu", "sigma", "ordinal")}
        return {}

    def _update_count(self, pid: str) -> int:
        for checkpoint, slots in self.groups.items():
            if pid in slots:
                return int(self.strategies[checkpoint].update_counts[pid])
        return 0

    def _progress_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for pid in self.slots:
            h = self._history[pid]
            if h:
                short = pid.split("_")[1]
                summary[f"r{short}"] = round(float(np.mean([x["reward"] for x in h])), 3)
                summary[f"w{short}"] = round(float(np.mean([x["win_rate"] for x in h])), 2)
        summary["inv"] = round(self._last_metrics.get("env/invalid_rate", 0.0), 2)
        return summary

    def get_training_status(self) -> dict[str, Any]:
        """Core SRL's status dict (progress = episodes done / max_episodes)."""
        return {
            "is_training": self.is_training,
            "current_episode": self.current_episode,
            "max_episodes": self.config.max_episodes,
            "progress": self.current_episode / self.config.max_episodes,
            "training_time": self.training_time,
            "model_states": self.get_model_performance_summary(),
            "checkpoints_count": len(self.checkpoints_saved),
            "config": self.config.to_dict(),
        }

    def get_model_performance_summary(self) -> dict[str, dict[str, Any]]:
        """Per policy: recent ``avg_reward`` and ``win_rate``, totals and update counts.

        A win: the agent's (team's) total raw score over an env episode is strictly higher
        than the mean of the other agents' (the other team's); ties are not wins.
        """
        out = {}
        for pid, policy in self.policies.items():
            h = list(self._history.get(pid, []))
            totals = self._totals.get(pid, {})
            out[pid] = {
                "model_type": policy.model_type,
                "model_name": policy.model_name,
                "trainable": policy.trainable,
                "agents": list(policy.agents),
                "avg_reward": float(np.mean([x["reward"] for x in h])) if h else 0.0,
                "avg_raw_score": float(np.mean([x["raw"] for x in h])) if h else 0.0,
                "win_rate": float(np.mean([x["win_rate"] for x in h])) if h else 0.0,
                "overall_win_rate": totals.get("wins", 0) / max(totals.get("env_episodes", 0), 1),
                "invalid_rate": float(np.mean([x["invalid_rate"] for x in h])) if h else 0.0,
                "cooperation_score": float(np.mean([x["welfare"] for x in h])) if h else 0.0,
                "total_episodes": int(totals.get("episodes", 0)),
                "update_count": self._update_count(pid),
                **self._rating_of(pid),
            }
            out[pid].update(policy.usage())  # API: requests, failures, retries, tokens
        return out

    # ================================================================= monitor
    def _ensure_monitor(self) -> UnifiedMonitor | None:
        """The run's monitor (created, not started: a resume loads its state first)."""
        if self.monitor is None and self.config.enable_monitoring:
            self.monitor = UnifiedMonitor(self.config.log_dir, run_name=self._run_name())
        return self.monitor

    def _run_name(self) -> str:
        cfg = self.config
        if cfg.run_name:
            return cfg.run_name
        cfg.run_name = (
            f"{srl_envs.spec(cfg.env).name}_{cfg.algorithm}_{cfg.weight_update_strategy.value}"
            f"_s{cfg.seed}_"
            f"{time.strftime('%Y%m%d-%H%M%S')}"
        )
        return cfg.run_name

    # ================================================================= checkpoints
    def check_output_dirs(self, *, new_run: bool) -> None:
        """Fail fast (:class:`ConfigError`), before any model loads or episode runs, when
        this run could not save: ``checkpoint_dir`` (and ``log_dir`` with monitoring on)
        must be a writable directory or creatable as one; and a new run (``new_run``) must
        not write into a ``checkpoint_dir`` holding another run's checkpoints, which it
        would overwrite one id at a time. ``train()`` checks this itself."""
        cfg = self.config
        _check_writable_dir("checkpoint_dir", cfg.checkpoint_dir)
        if cfg.enable_monitoring:
            _check_writable_dir("log_dir", cfg.log_dir)
        if new_run:
            existing = list_available_checkpoints(cfg.checkpoint_dir)
            if existing:
                raise ConfigError(
                    f"checkpoint_dir {cfg.checkpoint_dir!r} already holds checkpoints of a run "
                    f"({', '.join(existing)}) that a new run would overwrite: continue that run "
                    "(--resume latest; trainer.load_checkpoint('latest')) or give this run "
                    "another checkpoint_dir (--checkpoint-dir)"
                )

    def save_checkpoint(self) -> str:
        """Write a complete checkpoint of the current state; returns its id."""
        self.setup()
        cid = checkpoint_id_for(self.current_episode)

        def write(directory: Path) -> None:
            for slot in self.slots:
                self.pool_of[slot].save_adapter(slot, directory / "adapters" / slot)
            for pid, policy in self.policies.items():
                if isinstance(policy, SnapshotPolicy):
                    self.pools[policy.checkpoint].save_adapter(pid, directory / "snapshots" / pid)
            torch.save(
                {s: o.state_dict() for s, o in self.optimizers.items()},
                directory / OPTIMIZERS_FILE,
            )
            if self.value_heads:
                torch.save(
                    {s: h.state_dict() for s, h in self.value_heads.items()},
                    directory / VALUE_HEADS_FILE,
                )
            state = self.training_state()
            if cid not in state["checkpoints_saved"]:  # a resumed run counts this one too
                state["checkpoints_saved"].append(cid)
            write_state(state, directory / TRAINER_STATE_FILE)
            save_rng_state(directory)

        metadata = {
            "checkpoint_id": cid,
            "episode": self.current_episode,
            "config": self.config.to_dict(),
            "policy_mapping": dict(self.policy_mapping),
            "slots": list(self.slots),
            "training_time": self.training_time,
            "summary": self.get_model_performance_summary(),
        }
        self.checkpoints.save(cid, write, metadata)
        if cid not in self.checkpoints_saved:
            self.checkpoints_saved.append(cid)
        return cid

    def training_state(self) -> dict[str, Any]:
        """The plain state of the run besides weights, optimizers and RNG (JSON data, what a
        checkpoint's ``trainer_state.json`` holds): counters, strategy and mode state,
        reward history, sample buffers, entropy coefficients, curricula, monitor position,
        API counters. :meth:`load_training_state` puts it back exactly."""
        self.setup()
        return {
            "current_episode": self.current_episode,
            "training_time": self.training_time,
            "strategies": {Path(k).name: s.state_dict() for k, s in self.strategies.items()},
            "modes": self.modes.state_dict(),
            "history": {k: list(v) for k, v in self._history.items()},
            "totals": self._totals,
            "buffers": {
                slot: [dataclasses.asdict(turn) for turn in turns]
                for slot, turns in self._buffers.items()
            },
            "entropy_coef": self._entropy_coef,
            "curricula": [env.state_dict() for env in self.envs if env.curriculum is not None],
            "monitor": self.monitor.state_dict() if self.monitor is not None else None,
            "checkpoints_saved": list(self.checkpoints_saved),
            "api": {
                p: x.state_dict() for p, x in self.policies.items() if x.state_dict() is not None
            },
            "ratings": self.ratings.state_dict(),
            "evaluations": self.evaluations,
            "league": (
                None
                if self.league is None
                else {**self.league.state_dict(), "mark": self.league.mark}
            ),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`training_state` (the monitor's position only with monitoring on)."""
        self.setup()
        self.current_episode = state["current_episode"]
        self.training_time = state["training_time"]
        for k, s in self.strategies.items():
            s.load_state_dict(state["strategies"][Path(k).name])
        self.modes.load_state_dict(state["modes"])
        self._history = {
            k: deque(v, maxlen=self.config.reward_window) for k, v in state["history"].items()
        }
        self._totals = state["totals"]
        self._buffers = {
            slot: [Turn.from_dict(t) for t in turns] for slot, turns in state["buffers"].items()
        }
        self._entropy_coef.update(state["entropy_coef"])
        curricula = [env for env in self.envs if env.curriculum is not None]
        for env, sd in zip(curricula, state["curricula"]):
            env.load_state_dict(sd)
        if state["monitor"] is not None and self.config.enable_monitoring:
            self._ensure_monitor().load_state_dict(state["monitor"])
        self.checkpoints_saved = list(state["checkpoints_saved"])
        for pid, counters in state["api"].items():
            self.policies[pid].load_state_dict(counters)
        self.ratings = Ratings()
        self.ratings.load_state_dict(state.get("ratings", {}))  # none in older checkpoints
        self.evaluations = dict(state.get("evaluations", {}))
        if self.league is not None and state.get("league"):
            self.league.load_state_dict(state["league"])
            self.league.mark = int(state["league"]["mark"])

    def load_checkpoint(self, checkpoint_id: str = "latest") -> bool:
        """Restore a checkpoint (id or ``"latest"``) so that ``train()`` continues from it.

        The checkpoint is verified first (every file against its sha256; ``"latest"`` falls
        back to the newest one that verifies) and must have been made with this config's
        :data:`RESUME_FIELDS`; both fail before any model loads. Tensors are read with
        ``weights_only`` and the plain state as JSON: loading runs no code from the files.
        """
        path, meta = CheckpointManager(self.config.checkpoint_dir, max_checkpoints=-1).verify(
            checkpoint_id
        )
        self._check_resume_fields(path.name, meta["config"])
        self.setup()
        if meta["slots"] != self.slots or meta["policy_mapping"] != self.policy_mapping:
            raise ConfigError(
                f"checkpoint {path.name} was made for slots {meta['slots']} / mapping "
                f"{meta['policy_mapping']}, not this config's {self.slots} / {self.policy_mapping}"
            )
        # Read every file before changing anything: a bad one leaves the trainer as it was.
        optim = load_tensors(path / OPTIMIZERS_FILE)
        heads = load_tensors(path / VALUE_HEADS_FILE) if self.value_heads else {}
        state = read_state(path / TRAINER_STATE_FILE)
        rng = load_tensors(path / RNG_FILE)
        for slot in self.slots:
            self.pool_of[slot].load_adapter(slot, path / "adapters" / slot)
        if self.league is not None and state.get("league"):  # the snapshots, frozen again
            for snap in state["league"]["snapshots"]:
                for slot, pid in snap["policies"].items():
                    if pid not in self.policies:
                        pool = self.pool_of[slot]
                        pool.load_adapter(pid, path / "snapshots" / pid)
                        pool.freeze(pool.trainable_parameters(pid))
                        self._add_snapshot_policy(pid, self.policies[slot], snap["episode"])
        for checkpoint, backend in self.backends.items():
            backend.push_from_pool(
                self.pools[checkpoint],
                self.groups[checkpoint],
                self._adapter_push_dir / Path(checkpoint).name,
            )
        for slot, opt in self.optimizers.items():
            opt.load_state_dict(optim[slot])
        for slot, head in self.value_heads.items():
            head.load_state_dict(heads[slot])
        self.load_training_state(state)
        restore_rng_state(rng)
        self.resumed_from = path.name
        return True

    def _check_resume_fields(self, checkpoint_id: str, saved: dict[str, Any]) -> None:
        for name in RESUME_FIELDS:
            given = to_jsonable(getattr(self.config, name))
            if name in saved and saved[name] != given:
                raise ConfigError(
                    f"checkpoint {checkpoint_id} was made with {name}={saved[name]!r}, but this "
                    f"run has {name}={given!r}: resume with {name}={saved[name]!r} "
                    f"(--{name.replace('_', '-')}), or start a new run in another checkpoint_dir"
                )

    async def shutdown(self) -> None:
        """Stop the monitor and release models."""
        if self.monitor is not None:
            self.monitor.stop()
        for policy in self.policies.values():
            await policy.aclose()
        self.pools = {}
        self.pool_of = {}
        self._built = False


# Sequences per forward/backward micro-batch (bounds activation memory on a laptop).
_MICRO_BATCH = 8
# the logged metric that the adaptive entropy target follows, per entropy_scope
_SCOPE_METRIC = {"completion": "entropy", "action": "action_entropy", "numbers": "number_entropy"}


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


def _check_writable_dir(name: str, path: str) -> None:
    """ConfigError naming field ``name`` unless ``path`` is a writable directory, or could be
    created as one (its nearest existing ancestor is a writable directory)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = (
            "is a file" if existing == os.path.abspath(path) else f"is under the file {existing!r}"
        )
        raise ConfigError(f"{name}={path!r} {where}: give a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{name}={path!r} is not writable (no write permission on {existing!r}): give a "
            "directory this user can write"
        )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def _wins(raw: dict[str, float], teams: dict[str, str] | None) -> dict[str, bool]:
    if teams is None:
        out = {}
        for agent, score in raw.items():
            others = [s for a, s in raw.items() if a != agent]
            out[agent] = bool(others) and score > float(np.mean(others)) + 1e-9
        return out
    team_total: dict[str, list[float]] = defaultdict(list)
    for agent, score in raw.items():
        team_total[teams[agent]].append(score)
    means = {t: float(np.mean(v)) for t, v in team_total.items()}
    return {
        a: means[teams[a]]
        > float(np.mean([m for t, m in means.items() if t != teams[a]] or [np.inf])) + 1e-9
        for a in raw
    }


def install_sigint_handler(trainer: MultiModelTrainer) -> None:
    """First Ctrl-C: finish the episode, save, stop. Second Ctrl-C: stop at once."""

    def handler(signum, frame):
        if trainer._stop_requested:
            raise KeyboardInterrupt
        print(
            "\nsrl: stopping after this episode and saving a checkpoint (Ctrl-C again to abort)",
            flush=True,
        )
        trainer.request_stop()

    signal.signal(signal.SIGINT, handler)
