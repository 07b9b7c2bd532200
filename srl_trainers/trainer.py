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
import functools
import os
import random
import signal
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

import srl_envs
from srl_trainers.algorithms import ValueHead
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
)
from srl_trainers.credit import (
    compute_returns,
    counterfactual_baseline,
    grpo_advantages,
    ppo_advantages,
)
from srl_trainers.league import Ratings, SnapshotLeague
from srl_trainers.learner import Learner, write_adapter_files
from srl_trainers.models import ModelPool
from srl_trainers.monitor import UnifiedMonitor
from srl_trainers.policies import Policy, SnapshotPolicy
from srl_trainers.population import Population, response_prefix_of
from srl_trainers.rollout import (
    EVAL_SEED_OFFSET,
    Rollout,
    RolloutResult,
    TrainingEnvironment,
    Turn,
)

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
        # eval_episodes > 0: "before" and "after" training, and "episode N" every eval_interval
        # episodes (summaries of srl_trainers.evaluate)
        self.evaluations: dict[str, dict[str, Any]] = {}
        # keep_best_checkpoint: the best evaluation's checkpoint_id, episode, win_rate (the
        # mean over its opponents), temperature, opponents, and score (the greedy and the
        # eval_temperature win rate, each the mean over the opponents)
        self.best: dict[str, Any] | None = None
        self.runtime = None  # Ray mode: the actors (srl_trainers.distributed.RayRuntime)
        # the command that continues this run, for messages (the CLI sets it)
        self.resume_command: str | None = None

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
        if cfg.distributed_backend == "ray":  # learners, engines and rollout workers as actors
            self._start_ray()
        else:
            self.rollout = Rollout(
                cfg,
                self.environment,
                self.envs,
                self.policies,
                self.policy_mapping,
                pools={
                    p.checkpoint: self.pools[p.checkpoint] for p in self.population.lora_policies()
                },
                backends=self.backends,
                response_prefix=self.response_prefix,
            )
        self._buffers: dict[str, list[Turn]] = {s: [] for s in self.slots}
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
        """One :class:`~srl_trainers.learner.Learner` per policy group (the slots of one base
        model); its pool is also the group's generation engine here (or feeds the vLLM
        backend's copy of the adapters). Ray mode builds them as actors (:meth:`_start_ray`)."""
        cfg = self.config
        self.learners: dict[str, Learner] = {}
        self.backends: dict[str, Any] = {}  # checkpoint -> vLLM backend (generation_backend="vllm")
        self._adapter_push_dir = Path(cfg.checkpoint_dir) / ".vllm_adapters"
        # Ray mode: the learners are actors, built by _start_ray; these views stay empty
        local_groups = self.groups if cfg.distributed_backend == "local" else {}
        for checkpoint, slots in local_groups.items():
            learner = Learner(cfg, checkpoint, slots)
            self.learners[checkpoint] = learner
            if cfg.generation_backend == "vllm":
                from srl_trainers.vllm_backend import VLLMGenerationBackend

                self.backends[checkpoint] = VLLMGenerationBackend.from_pool(learner.pool)
        # views of the learners' parts, by base model and by slot
        self.pools: dict[str, ModelPool] = {k: x.pool for k, x in self.learners.items()}
        self.strategies = {k: x.strategy for k, x in self.learners.items()}
        self.pool_of: dict[str, ModelPool] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.value_heads: dict[str, ValueHead] = {}
        for learner in self.learners.values():
            for slot in learner.slots:
                self.pool_of[slot] = learner.pool
            self.optimizers.update(learner.optimizers)
            self.value_heads.update(learner.value_heads)
        for checkpoint in self.backends:  # vLLM starts from the learners' adapters
            self._push_weights(checkpoint, self.groups[checkpoint])

    def _start_ray(self) -> None:
        """Ray mode: the learners, engines and rollout workers as actors
        (:class:`~srl_trainers.distributed.RayRuntime`); the trainer keeps the loop."""
        from srl_trainers.distributed import DistributedRollout, RayRuntime

        self.runtime = RayRuntime(
            self.config,
            self.groups,
            self.environment,
            self.num_copies,
            resume_hint=self._resume_hint,
        )
        self.learners = dict(self.runtime.learners)
        self.rollout = DistributedRollout(
            self.runtime, self.policy_mapping, self.envs, self.policies
        )

    def _resume_hint(self) -> str:
        last = self.checkpoints_saved[-1] if self.checkpoints_saved else None
        if last is None:
            return "No checkpoint was saved yet: start the run again."
        command = self.resume_command or (
            "python -m srl_trainers.run <the same arguments> --resume latest"
        )
        return (
            f"The last checkpoint, {last}, in {self.config.checkpoint_dir} is intact; resume "
            f"with: {command}"
        )

    def _push_weights(self, checkpoint: str, slots: list[str]) -> None:
        """After an update: the engines that serve copies of the adapters (vLLM, Ray's engine
        actors) get the new weights of ``slots``; the local HF pool generates with the trained
        weights themselves."""
        if self.runtime is not None:
            self.runtime.push_weights(checkpoint, slots)
        elif checkpoint in self.backends:
            self.backends[checkpoint].push_from_pool(
                self.pools[checkpoint], slots, self._adapter_push_dir / Path(checkpoint).name
            )

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
                    cfg.eval_interval
                    and (episode + 1) % cfg.eval_interval == 0
                    and self.current_episode < cfg.max_episodes  # the last one is "after"
                ):
                    # before the checkpoint of this episode, so a resumed run has it
                    when = f"episode {episode + 1}"
                    self.evaluations[when] = await self._evaluate(f"at {when}")
                    new_best = self._is_best(self.evaluations[when])
                else:
                    new_best = False
                if (
                    new_best
                    or (episode + 1) % cfg.save_interval == 0
                    or self.current_episode >= cfg.max_episodes
                ):
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
            if cfg.keep_best_checkpoint and self.checkpoints_saved:
                self._is_best(self.evaluations["after"])  # the last checkpoint is this one's
                self._protect_best()
        return {
            "evaluation": dict(self.evaluations),
            "training_completed": completed,
            "interrupted": self._stop_requested and self.current_episode < cfg.max_episodes,
            "total_episodes": self.current_episode,
            "training_time": self.training_time,
            "training_metrics": dict(self._last_metrics),
            "final_model_states": self.get_model_performance_summary(),
            "checkpoints_saved": list(self.checkpoints_saved),
            "best_checkpoint": dict(self.best) if self.best else None,
            "checkpoint_dir": str(Path(cfg.checkpoint_dir).resolve()),
            "log_dir": str(monitor.run_dir) if monitor is not None else None,
        }

    def _is_best(self, summary: dict[str, Any]) -> bool:
        """With keep_best_checkpoint: whether this evaluation beats every earlier one; if it
        does, it becomes ``self.best`` (its checkpoint is the one of its episode, which the
        caller saves)."""
        if not self.config.keep_best_checkpoint:
            return False
        # every opponent evaluated (opponent_policy, and opponent_mix's others) counts alike
        each = [summary, *summary.get("opponents", {}).values()]
        scored = [e.get("greedy", e) for e in each]
        # with eval_greedy, the eval_temperature win rate breaks a tie of greedy ones (a
        # greedy win rate of 1.00 is often reached long before the sampled one peaks)
        score = [
            float(np.mean([e["win_rate"] for e in scored])),
            float(np.mean([e["win_rate"] for e in each])),
        ]
        opponents = [e.get("opponent", self.config.opponent_policy) for e in each]
        # a best scored against other opponents (a run resumed with another opponent_mix or
        # opponent_policy) is no yardstick: the first evaluation on these ones replaces it
        earlier = None if self.best is None else self.best.get("opponents", opponents)
        if earlier == opponents and score <= self.best["score"]:
            return False
        self.best = {
            "checkpoint_id": checkpoint_id_for(summary["episode"]),
            "episode": summary["episode"],
            "win_rate": score[0],
            "temperature": scored[0]["temperature"],
            "opponents": opponents,
            "score": score,
        }
        return True

    def _protect_best(self) -> None:
        """Keep the best checkpoint out of rotation (the earlier best goes back into it)."""
        self.checkpoints.protected = {self.best["checkpoint_id"]} if self.best else set()

    async def _evaluate(self, when: str) -> dict[str, Any]:
        """The trainable population on ``eval_episodes`` held-out games (srl_trainers.evaluate,
        the config's opponent, ``eval_temperature``): a summary, also logged as ``eval/*``.
        With ``opponent_mix``, the same games against each other opponent of the mix too
        (``summary["opponents"]``, logged as ``eval/<name>/*``)."""
        from srl_trainers.evaluate import decoding_label, format_evaluation

        cfg = self.config
        monitor = self._ensure_monitor()
        say = monitor.note if monitor is not None else functools.partial(print, flush=True)
        temperatures = {"": cfg.eval_temperature}
        if cfg.eval_greedy and cfg.eval_temperature != 0:
            temperatures["greedy"] = 0.0
        how = " and ".join(decoding_label(t) for t in temperatures.values())
        others = [o for o in cfg.opponent_mix if o != cfg.opponent_policy]
        say(
            f"srl: evaluating {when}: {cfg.eval_episodes} {cfg.eval_seeds.replace('_', '-')} "
            f"games against "
            f"{', '.join([cfg.opponent_policy, *others])}, {how}"
        )
        summary, logged = await self._evaluate_against(None, temperatures, "eval/")
        if others:
            summary["opponents"] = {}
            for name in others:
                summary["opponents"][name], more = await self._evaluate_against(
                    name, temperatures, f"eval/{name}/"
                )
                summary["seconds"] += summary["opponents"][name].pop("seconds")
                logged.update(more)
        if monitor is not None:
            monitor.log(logged, step=summary["episode"])
        say(f"srl: {when}: {format_evaluation(summary)}")
        return summary

    async def _evaluate_against(
        self, opponent: str | None, temperatures: dict[str, float], prefix: str
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """One opponent's evaluation (None: opponent_policy) at each of ``temperatures``
        (key "" the eval_temperature one, "greedy" T = 0): its summary and ``prefix`` metrics."""
        from srl_trainers.evaluate import aevaluate

        summary: dict[str, Any] = {}
        logged: dict[str, float] = {}
        for key, temperature in temperatures.items():
            report = await aevaluate(
                self,
                num_episodes=self.config.eval_episodes,
                temperature=temperature,
                opponent=opponent,
                seeds=self.config.eval_seeds,
            )
            group = report.population
            figures = {
                "win_rate": group.win_rate,
                "win_ci": list(group.win_ci),
                "draw_rate": group.draw_rate,
                "invalid_rate": group.invalid_rate,
                "mean_return": group.mean_return,
            }
            head = f"{prefix}{key}_" if key else prefix
            logged.update(
                {
                    f"{head}win_rate": group.win_rate,
                    f"{head}win_ci_low": group.win_ci[0],
                    f"{head}win_ci_high": group.win_ci[1],
                    f"{head}invalid_rate": group.invalid_rate,
                    f"{head}mean_return": group.mean_return,
                }
            )
            if key:  # the greedy figures beside the eval_temperature ones
                summary[key] = {"temperature": temperature, **figures}
                summary["seconds"] += report.seconds
            else:
                summary.update(
                    episode=report.training_episode,
                    games=report.num_episodes,
                    opponent=report.opponent,
                    temperature=report.temperature,
                    seeds=list(report.seeds),
                    **figures,
                    seconds=report.seconds,
                )
        return summary, logged

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
        elif self.config.opponent_mix:  # this episode's opponent, drawn from the mix
            self._played_mapping = self.population.mix_mapping(episode_num)
            self.rollout.policy_mapping = self._played_mapping
        t0 = time.perf_counter()
        try:
            rollout = await self.rollout.play(episode_num, coop, comp)
        finally:
            self.rollout.policy_mapping = self.policy_mapping  # evaluation plays the fixed one
        t1 = time.perf_counter()
        self._compute_returns(rollout.turns)
        for turn in rollout.turns:
            self._buffers[turn.slot].append(turn)
        welfare = self._update_stats(rollout)
        update_metrics = self._update_policies(episode_num)
        # wall time of the episode's rollout and of its updates (with the weight pushes)
        update_metrics["perf/rollout_seconds"] = t1 - t0
        update_metrics["perf/update_seconds"] = time.perf_counter() - t1
        if league is not None:
            update_metrics.update(self._league_step(rollout, episode_num))
        self.modes.observe(welfare)
        self.current_episode = episode_num + 1
        metrics = self._episode_metrics(rollout, update_metrics, coop, comp, welfare)
        if self.config.opponent_mix:  # the slots' win rate against this episode's opponent
            drawn = next(
                p for a, p in self._played_mapping.items() if a in self.population.opponent_agents()
            )
            name = next(n for n, p in self.population.opponent_mix.items() if p == drawn)
            rates = [metrics.get(f"model/{s}/win_rate") for s in self.slots]
            rates = [r for r in rates if r is not None]
            if rates:
                metrics[f"mix/{name}/win_rate"] = float(np.mean(rates))
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
        """Every learner updates the slots its strategy picks on their buffered turns; the
        slots whose weights changed go to the engines."""
        metrics: dict[str, float] = {}
        # wall time inside the learners' own processes, and of the weight pushes: with Ray
        # learners, perf/update_seconds less these two is what the calls' transport cost
        learner_seconds = push_seconds = 0.0
        for checkpoint, learner in self.learners.items():
            slots = self.groups[checkpoint]
            done = learner.update(
                {s: self._buffers[s] for s in slots}, episode, self._recent_rewards(slots)
            )
            metrics.update(done.metrics)
            learner_seconds += done.seconds
            if done.changed:
                t0 = time.perf_counter()
                self._push_weights(checkpoint, done.changed)
                push_seconds += time.perf_counter() - t0
            for slot in done.stepped:
                self._buffers[slot] = []
            for k, v in done.strategy_metrics.items():
                metrics[k if len(self.groups) == 1 else f"{k}/{Path(checkpoint).name}"] = v
        # bound the buffers of slots that did not step to their newest update's worth
        slot_ids = self.config.slot_ids()  # API slots are not in self.slots
        for slot in self.slots:
            cap = (
                self.config.batch_size * self.config.slot_update_frequency(slot_ids.index(slot)) * 2
            )
            if len(self._buffers[slot]) > cap:
                self._buffers[slot] = self._buffers[slot][-cap:]
        metrics["perf/learner_seconds"] = learner_seconds
        metrics["perf/push_seconds"] = push_seconds
        return metrics

    @property
    def _entropy_coef(self) -> dict[str, float]:
        """Each slot's entropy bonus coefficient (its learner's; a copy)."""
        return {s: c for x in self.learners.values() for s, c in x.entropy_coef.items()}

    # the update's parts, by slot (tests and benchmarks look inside an update through these)
    def _prepare_batch(self, slot: str) -> dict[str, Any]:
        return self._prepare_batches(self.pool_of[slot], [slot])[slot]

    def _backward(self, slot: str, batch: dict[str, Any]) -> dict[str, float]:
        return self._backward_slots(self.pool_of[slot], {slot: batch})[slot]

    def _prepare_batches(self, pool: ModelPool, slots: list[str]) -> dict[str, dict[str, Any]]:
        return self._learner_of_pool(pool).prepare_batches(self._buffers, slots)

    def _backward_slots(
        self, pool: ModelPool, batches: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, float]]:
        return self._learner_of_pool(pool).backward_slots(batches)

    def _learner_of_pool(self, pool: ModelPool) -> Learner:
        return next(x for x in self.learners.values() if x.pool is pool)

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
        for checkpoint, copies in self._by_checkpoint(ids).items():
            self.learners[checkpoint].snapshot(copies)  # the learner freezes its own copies
            self._serve_snapshots(checkpoint, copies, episode)
        for snap in evicted:
            for checkpoint, copies in self._by_checkpoint(snap["policies"]).items():
                self._drop_snapshots(checkpoint, list(copies))
        self.league.mark = min(self._update_count(s) for s in self.slots)

    def _by_checkpoint(self, ids: dict[str, str]) -> dict[str, dict[str, str]]:
        """League ids ``{slot: snapshot id}`` -> ``{base checkpoint: {snapshot id: slot}}``."""
        out: dict[str, dict[str, str]] = defaultdict(dict)
        for slot, pid in ids.items():
            out[self.policies[slot].checkpoint][pid] = slot
        return out

    def _serve_snapshots(self, checkpoint: str, copies: dict[str, str], episode: int) -> None:
        """New snapshots (``{id: slot}``, held by the learner of ``checkpoint``) as policies
        the rollout can play: Ray's engines and workers get them; the vLLM backend loads them."""
        for pid, slot in copies.items():
            self._add_snapshot_policy(pid, self.policies[slot], episode)
        if self.runtime is not None:
            self.runtime.add_snapshots(checkpoint, copies, episode)
        elif checkpoint in self.backends:
            self.backends[checkpoint].push_from_pool(
                self.pools[checkpoint], list(copies), self._adapter_push_dir / Path(checkpoint).name
            )

    def _drop_snapshots(self, checkpoint: str, pids: list[str]) -> None:
        """Evicted snapshots leave the learner, the engines that served them and the policies."""
        self.learners[checkpoint].remove_adapters(pids)
        if self.runtime is not None:
            self.runtime.remove_snapshots(pids)
        elif checkpoint in self.backends:
            for pid in pids:
                self.backends[checkpoint].remove_adapter(pid)
        for pid in pids:
            del self.policies[pid]
            self._history.pop(pid, None)
            self._totals.pop(pid, None)

    def _add_snapshot_policy(self, pid: str, src: Policy, episode: int) -> None:
        self.policies[pid] = SnapshotPolicy.of(pid, src, episode)
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
        played = rollout.curriculum_stages
        if played:  # the stage this episode was played in (mean over copies: gates are per copy)
            metrics["curriculum/stage"] = float(np.mean([stage for stage, _ in played]))
            metrics["curriculum/warmup"] = float(np.mean([warmup for _, warmup in played]))
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
                return int(self.learners[checkpoint].update_counts()[pid])
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
            # gathered from the learners (in Ray mode, actors that may live on other nodes)
            snapshots = {
                pid: p.checkpoint
                for pid, p in self.policies.items()
                if isinstance(p, SnapshotPolicy)
            }
            learner_states = {}
            for checkpoint, learner in self.learners.items():
                mine = [pid for pid, c in snapshots.items() if c == checkpoint]
                files = learner.adapter_files([*learner.slots, *mine])
                for name, content in files.items():
                    kind = "snapshots" if name in snapshots else "adapters"
                    write_adapter_files(content, directory / kind / name)
                learner_states[checkpoint] = learner.state_dict()
            torch.save(
                {s: o for st in learner_states.values() for s, o in st["optimizers"].items()},
                directory / OPTIMIZERS_FILE,
            )
            heads = {s: h for st in learner_states.values() for s, h in st["value_heads"].items()}
            if heads:
                torch.save(heads, directory / VALUE_HEADS_FILE)
            state = self.training_state(learner_states)
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
        self._protect_best()  # before save() rotates
        self.checkpoints.save(cid, write, metadata)
        if cid not in self.checkpoints_saved:
            self.checkpoints_saved.append(cid)
        return cid

    def training_state(self, learner_states: dict[str, Any] | None = None) -> dict[str, Any]:
        """The plain state of the run besides weights, optimizers and RNG (JSON data, what a
        checkpoint's ``trainer_state.json`` holds): counters, strategy and mode state,
        reward history, sample buffers, entropy coefficients, curricula, monitor position,
        API counters. :meth:`load_training_state` puts it back exactly."""
        self.setup()
        if learner_states is None:
            learner_states = {k: x.state_dict() for k, x in self.learners.items()}
        return {
            "current_episode": self.current_episode,
            "training_time": self.training_time,
            "strategies": {Path(k).name: st["strategy"] for k, st in learner_states.items()},
            "modes": self.modes.state_dict(),
            "history": {k: list(v) for k, v in self._history.items()},
            "totals": self._totals,
            "buffers": {
                slot: [dataclasses.asdict(turn) for turn in turns]
                for slot, turns in self._buffers.items()
            },
            "entropy_coef": {
                s: c for st in learner_states.values() for s, c in st["entropy_coef"].items()
            },
            "curricula": [env.state_dict() for env in self.envs if env.curriculum is not None],
            "monitor": self.monitor.state_dict() if self.monitor is not None else None,
            "checkpoints_saved": list(self.checkpoints_saved),
            "api": {
                p: x.state_dict() for p, x in self.policies.items() if x.state_dict() is not None
            },
            "ratings": self.ratings.state_dict(),
            "evaluations": self.evaluations,
            "best_checkpoint": self.best,
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
        for k, learner in self.learners.items():
            learner.load_state_dict(
                {
                    "strategy": state["strategies"][Path(k).name],
                    "entropy_coef": state["entropy_coef"],
                }
            )
        self.modes.load_state_dict(state["modes"])
        # the checkpoint's statistics over this run's fresh ones: a resumed run may play
        # policies the checkpointed one did not (an opponent_mix added on resume)
        self._history.update(
            {k: deque(v, maxlen=self.config.reward_window) for k, v in state["history"].items()}
        )
        self._totals.update(state["totals"])
        self._buffers = {
            slot: [Turn.from_dict(t) for t in turns] for slot, turns in state["buffers"].items()
        }
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
        self.best = state.get("best_checkpoint")  # none in older checkpoints
        self._protect_best()
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
        heads = load_tensors(path / VALUE_HEADS_FILE) if self.config.algorithm == "ppo" else {}
        state = read_state(path / TRAINER_STATE_FILE)
        rng = load_tensors(path / RNG_FILE)
        for learner in self.learners.values():
            learner.load_adapter_files(
                {slot: _files_of(path / "adapters" / slot) for slot in learner.slots}
            )
        if self.league is not None and state.get("league"):  # the snapshots, frozen again
            for snap in state["league"]["snapshots"]:
                new = {s: p for s, p in snap["policies"].items() if p not in self.policies}
                for checkpoint, copies in self._by_checkpoint(new).items():
                    self.learners[checkpoint].load_snapshot_files(
                        {pid: _files_of(path / "snapshots" / pid) for pid in copies}
                    )
                    self._serve_snapshots(checkpoint, copies, snap["episode"])
        for checkpoint, learner in self.learners.items():
            self._push_weights(checkpoint, learner.slots)
            learner.load_state_dict(
                {
                    "optimizers": {s: optim[s] for s in learner.slots},
                    "value_heads": {s: heads[s] for s in learner.slots if s in heads},
                }
            )
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
        if self.runtime is not None:
            self.runtime.shutdown()
            self.runtime = None
        for backend in getattr(self, "backends", {}).values():
            backend.close()
        self.backends = {}
        self.pools = {}
        self.pool_of = {}
        self._built = False


def _files_of(directory: Path) -> dict[str, bytes]:
    """The files of a saved adapter directory, by name (what ``Learner.load_adapter_files``
    takes); FileNotFoundError naming the directory when it holds none."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} holds no adapter")
    return {f.name: f.read_bytes() for f in directory.iterdir() if f.is_file()}


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
