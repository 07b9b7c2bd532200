"""What a rollout is made of: the env the trainer plays, and the turns it records.

* :class:`TrainingEnvironment`: the configured env, with the user's ``reward_function`` hook.
* :class:`Turn`: one LLM action, a training sample of its slot (prompt and completion ids, the
  sampling log-probs, the reward and what credit assignment adds to it).
* :class:`RolloutResult`: what one episode's env copies produced (turns and per-copy totals).

* :class:`Rollout`: the loop that plays E env copies to the end with a population;
  ``srl_trainers.credit`` turns its turns into returns and advantages.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import defaultdict
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import srl_envs
from srl_trainers.config import ConfigError, MultiModelConfig
from srl_trainers.credit import counterfactual_baseline
from srl_trainers.models import ModelPool, token_range
from srl_trainers.policies import Policy

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "EVAL_SEED_OFFSET",
    "GAME_FIGURES",
    "SEED_RANGES",
    "VALIDATION_SEED_OFFSET",
    "Rollout",
    "RolloutResult",
    "TrainingEnvironment",
    "Turn",
]

DEFAULT_SYSTEM_PROMPT = (
    "You are a player in a multi-agent game. Read the rules and the state, then answer with "
    "your action in exactly the format the prompt shows. Be brief."
)
# Game figures averaged into env/<name> and model/<policy>/<name> metrics (when a game
# reports them in infos): commons harvests and stock, team battle fields and margin.
GAME_FIGURES = frozenset(
    {"harvest", "group_harvest", "stock", "fields_won", "fields_lost", "margin"}
)
# Training env seeds live below 2**31; evaluation seeds start at EVAL_SEED_OFFSET, so the two
# never overlap. Held-out evaluations (srl_trainers.evaluate's default, what benchmarks report)
# play from EVAL_SEED_OFFSET up; validation evaluations (the trainer's own with
# eval_seeds="validation", which keep_best_checkpoint chooses by) from VALIDATION_SEED_OFFSET
# up, 2**39 seeds further, so a checkpoint chosen on validation games is reported on others.
EVAL_SEED_OFFSET = 2**40
VALIDATION_SEED_OFFSET = EVAL_SEED_OFFSET + 2**39
SEED_RANGES = {"held_out": EVAL_SEED_OFFSET, "validation": VALIDATION_SEED_OFFSET}


def training_env_seed(seed: int, episode: int, group: int) -> int:
    """The env seed of GRPO group ``group`` in training episode ``episode`` of a run seeded
    ``seed`` (below 2**31; every copy of the group gets it)."""
    return (seed * 1_000_003 + episode * 1_009 + group) % (2**31 - 1)


# ------------------------------------------------------------------------------ data
@dataclass
class Turn:
    """One LLM action: a training sample of ``slot``."""

    slot: str
    episode: int
    copy: int
    group: int
    agent: str
    round: int
    prompt_ids: list[int]
    completion_ids: list[int]
    gen_logprobs: list[float]
    text: str
    reward: float = 0.0
    ret: float = 0.0
    advantage: float = 0.0
    invalid: bool = False
    done: bool = False
    baseline: float = math.nan  # counterfactual baseline of the turn's reward; NaN: group mean
    # completion tokens [i, j) that wrote the part of the text the env read the action from
    action_tokens: tuple[int, int] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        """The turn whose ``dataclasses.asdict`` (through JSON) is ``data``."""
        span = data["action_tokens"]
        return cls(**{**data, "action_tokens": None if span is None else tuple(span)})


@dataclass
class RolloutResult:
    """What one training episode's env copies produced."""

    turns: list[Turn]
    # per copy: agent -> summed raw score, summed reward, invalid count, turns
    raw_totals: list[dict[str, float]]
    reward_totals: list[dict[str, float]]
    invalid_counts: list[dict[str, int]]
    turn_counts: list[dict[str, int]]
    env_metrics: dict[str, float] = field(default_factory=dict)
    tokens_generated: int = 0
    generation_seconds: float = 0.0
    # how many values each env metric averages (to merge the results of several workers)
    env_metric_counts: dict[str, int] = field(default_factory=dict)
    # env copies with a curriculum (the staged env): the (stage, warm-up) each was played in
    curriculum_stages: list[tuple[int, bool]] = field(default_factory=list)
    # Ray mode: those copies' curriculum states after the episode, for the driver's copies
    curriculum_states: list[dict[str, Any]] = field(default_factory=list)
    # Ray mode: what each policy's counters (API usage: its state_dict) grew by in the worker
    counter_increments: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def merge(cls, parts: list[RolloutResult]) -> RolloutResult:
        """One result from the results of consecutive shares of the copies (Ray rollout
        workers, in copy order): lists concatenated, env metrics averaged over all values,
        generation time the slowest share's (they run concurrently)."""
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for part in parts:
            for k, v in part.env_metrics.items():
                n = part.env_metric_counts.get(k, 1)
                sums[k] += v * n
                counts[k] += n
        return cls(
            turns=[t for p in parts for t in p.turns],
            raw_totals=[x for p in parts for x in p.raw_totals],
            reward_totals=[x for p in parts for x in p.reward_totals],
            invalid_counts=[x for p in parts for x in p.invalid_counts],
            turn_counts=[x for p in parts for x in p.turn_counts],
            env_metrics={k: sums[k] / counts[k] for k in sums},
            tokens_generated=sum(p.tokens_generated for p in parts),
            generation_seconds=max((p.generation_seconds for p in parts), default=0.0),
            env_metric_counts=dict(counts),
            curriculum_stages=[x for p in parts for x in p.curriculum_stages],
            curriculum_states=[x for p in parts for x in p.curriculum_states],
            counter_increments=sum_counters([p.counter_increments for p in parts]),
        )


def sum_counters(parts: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per-policy counters (``{policy: {name: value}}``) added up."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for part in parts:
        for pid, counters in part.items():
            for k, v in counters.items():
                out[pid][k] += v
    return {pid: dict(c) for pid, c in out.items()}


# ------------------------------------------------------------------------------ env side
class TrainingEnvironment:
    """The environment the trainer plays, with the custom reward hook users expect.

    ``reward_function(model_output: str, context: dict) -> float`` is called for every LLM
    turn; with ``reward_function_mode="add"`` (default) its value is added to the env reward,
    with ``"replace"`` it replaces it. ``context`` holds ``agent``, ``policy_id``, ``round``,
    ``observation``, ``action`` (the parsed action), ``invalid``, ``env_reward``,
    ``raw_score`` and ``info``.
    """

    def __init__(self, config: MultiModelConfig) -> None:
        self.config = config
        self.reward_function: Callable[[str, dict[str, Any]], float] | None = None
        self.reward_function_mode = "add"

    @property
    def env_id(self) -> str:
        return srl_envs.spec(self.config.env).id

    def env_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs: ``episode_length`` (the config's, or the game's trainer default)
        and the player count from the config, then the user's ``env_kwargs`` on top."""
        kwargs: dict[str, Any] = self.config.episode_length_kwargs()
        game = srl_envs.spec(self.config.env).name
        if game in ("coop_compete", "staged") and self.config.policy_mapping is None:
            kwargs["num_models"] = max(self.config.num_models, 2)
        return {**kwargs, **self.config.env_kwargs}

    def make(self):
        try:
            return srl_envs.make(self.config.env, **self.env_kwargs())
        except ValueError as exc:
            raise ConfigError(f"MultiModelConfig.env_kwargs: {exc}") from None

    def custom_reward(self, text: str, context: dict[str, Any], env_reward: float) -> float:
        if self.reward_function is None:
            return env_reward
        if self.reward_function_mode not in ("add", "replace"):
            raise ConfigError(
                f"reward_function_mode={self.reward_function_mode!r}: use 'add' or 'replace'"
            )
        value = float(self.reward_function(text, context))
        if not math.isfinite(value):
            raise ValueError(f"reward_function returned {value!r} for agent {context['agent']}")
        return value if self.reward_function_mode == "replace" else env_reward + value


class Rollout:
    """Plays every env copy of a training (or evaluation) episode to the end.

    Every round, the prompts of all agents played by LoRA slots of one base model go into ONE
    batched, mixed-adapter ``generate`` call (``pools[checkpoint]``, or its vLLM backend in
    ``backends``); scripted bots and API models answer for the other agents, the API models
    concurrently with the local generate calls. :meth:`play` returns the LLM turns with their
    rewards (through the user's ``reward_function``), the counterfactual baselines when the
    config asks for them, and per-copy totals.

    ``envs``: the E env copies (GRPO groups of ``group_size`` consecutive copies share a seed);
    ``policies`` / ``policy_mapping``: the population (policy id -> policy, agent -> policy id);
    ``pools``: checkpoint -> :class:`~srl_trainers.models.ModelPool` (prompt formatting, the
    tokenizer and, without a backend, generation).
    """

    def __init__(
        self,
        config: MultiModelConfig,
        environment: TrainingEnvironment,
        envs: list[Any],
        policies: dict[str, Policy],
        policy_mapping: dict[str, str],
        *,
        pools: dict[str, Any],
        backends: dict[str, Any] | None = None,
        response_prefix: str = "",
        copy_offset: int = 0,
        total_copies: int | None = None,
    ) -> None:
        self.config = config
        self.environment = environment
        self.envs = envs
        self.policies = policies
        self.policy_mapping = policy_mapping
        self.pools = pools
        self.backends = backends if backends is not None else {}
        self.response_prefix = response_prefix
        # a share of a larger rollout (a Ray rollout worker's copies): these envs are copies
        # copy_offset .. copy_offset + len(envs) - 1 of total_copies; seeds and the copy and
        # group indices of the turns are the whole rollout's
        self.copy_offset = copy_offset
        self.total_copies = len(envs) + copy_offset if total_copies is None else total_copies
        self._prefix_cache: dict[str, list[int]] = {}

    def env_seed(self, episode: int, group: int) -> int:
        """Seed of the env copies of one GRPO group (shared inside the group)."""
        return training_env_seed(self.config.seed, episode, group)

    async def play(
        self,
        episode: int,
        coop: float,
        comp: float,
        *,
        evaluation: bool = False,
        temperature: float | None = None,
    ) -> RolloutResult:
        """Play every env copy to the end. Training: GRPO groups share a seed. Evaluation:
        every copy gets its own seed from the evaluation range, and ``temperature=0`` decodes
        greedily."""
        cfg = self.config
        g = cfg.group_size if cfg.algorithm == "grpo" and not evaluation else 1
        offset = self.copy_offset
        if offset % g:
            raise ValueError(f"copy_offset={offset} splits a GRPO group of {g} copies")
        seeds = [
            EVAL_SEED_OFFSET + episode * self.total_copies + offset + c
            if evaluation
            else self.env_seed(episode, (offset + c) // g)
            for c in range(len(self.envs))
        ]
        temperature = cfg.temperature if temperature is None else temperature
        sampling = {
            "do_sample": temperature > 0,
            "temperature": temperature if temperature > 0 else 1.0,
        }
        observations = []
        episode_options = {"cooperation_level": coop, "competition_intensity": comp}
        for env, seed in zip(self.envs, seeds):
            obs, _ = env.reset(seed=seed, options=episode_options)  # staged: its stage's level
            observations.append(obs)
        played = [
            (int(env.curriculum.stage), bool(env.curriculum.warmup))
            for env in self.envs
            if env.curriculum is not None
        ]
        bot_seeds = [seed + 17 for seed in seeds]
        if cfg.bot_seeds == "copy" and not evaluation:  # each copy of a group its own draws
            bot_seeds = [s + 7_919 * ((offset + c) % g) for c, s in enumerate(bot_seeds)]
        for policy in self.policies.values():
            policy.reset(bot_seeds)
        E = len(self.envs)
        raw = [defaultdict(float) for _ in range(E)]
        rew = [defaultdict(float) for _ in range(E)]
        inval = [defaultdict(int) for _ in range(E)]
        counts = [defaultdict(int) for _ in range(E)]
        env_metrics: dict[str, list[float]] = defaultdict(list)
        turns: list[Turn] = []
        tokens, gen_seconds = 0, 0.0
        live = [bool(env.agents) for env in self.envs]
        round_idx = 0
        moves = [defaultdict(int) for _ in range(E)]  # answers per agent so far
        last_turn: dict[tuple[int, str], Turn] = {}  # the latest LLM turn of each agent
        while any(live):
            # --- who acts: engine requests grouped by base model; other policies answer theirs
            requests: dict[str, list[tuple[int, str, str | None, str | None]]] = defaultdict(list)
            own_requests: dict[str, list[tuple[int, str]]] = defaultdict(list)
            actions: list[dict[str, str]] = [{} for _ in range(E)]
            for copy in range(E):
                if not live[copy]:
                    continue
                env = self.envs[copy]  # a turn-based game: only its mover acts
                for agent in getattr(env, "acting_agents", env.agents):
                    policy = self.policies[self.policy_mapping[agent]]
                    if policy.engine is not None:  # the adapter, and the slot a turn trains
                        trained = policy.policy_id if policy.trainable else None
                        requests[policy.engine].append((copy, agent, policy.adapter, trained))
                    else:
                        own_requests[policy.policy_id].append((copy, agent))
            # --- one mixed-adapter generate call per base model
            t0 = time.time()
            gen_seed = (
                cfg.seed * 7_919
                + episode * 104_729
                + round_idx
                + 7 * evaluation
                + 15_485_863 * offset
            ) % (2**31 - 1)
            # Local generate calls run in a thread only while API models answer beside them:
            # torch's OpenMP threads are per calling thread, so generating in a worker thread
            # and training in the main one keeps two teams of threads busy-waiting on the same
            # cores (measured: the preset's rollout 1.7x and update 1.5x slower on 2 cores)
            overlap = any(self.policies[pid].waits_on_io for pid in own_requests)
            jobs = []
            for checkpoint, reqs in requests.items():
                pool = self.pools[checkpoint]
                prefix_ids = self._prefix_ids(pool)
                prompts = pool.format_prompts(
                    [observations[c][a] for c, a, _, _ in reqs],
                    self._system_prompt(),
                    max_new_tokens=cfg.max_new_tokens + len(prefix_ids),
                )
                prompts = [p + prefix_ids for p in prompts]  # the assistant prefill, if any
                generate = (
                    self.backends[checkpoint].generate
                    if checkpoint in self.backends
                    else pool.generate
                )
                call = functools.partial(
                    generate,
                    prompts,
                    [s for _, _, s, _ in reqs],
                    max_new_tokens=cfg.max_new_tokens,
                    top_p=cfg.top_p,
                    generator_seed=gen_seed,
                    stop=cfg.stop,
                    **sampling,
                )
                jobs.append(asyncio.to_thread(call) if overlap else _returning(call()))
            # bots and API policies answer concurrently with the local generate calls
            own_jobs = [
                self.policies[pid].act(
                    [(c, observations[c][a]) for c, a in reqs],
                    self._system_prompt(),
                    temperature=temperature,
                )
                for pid, reqs in own_requests.items()
            ]
            results = await asyncio.gather(*jobs, *own_jobs)
            results, own_results = results[: len(jobs)], results[len(jobs) :]
            gen_seconds += time.time() - t0
            for reqs, texts in zip(own_requests.values(), own_results):
                for (copy, agent), text in zip(reqs, texts):
                    actions[copy][agent] = text
            pending: dict[tuple[int, str], Turn] = {}
            for reqs, gens in zip(requests.values(), results):
                for (copy, agent, _, slot), gen in zip(reqs, gens):
                    text = self.response_prefix + gen.text
                    actions[copy][agent] = text
                    tokens += len(gen.completion_ids)
                    if slot is None:
                        continue
                    pending[(copy, agent)] = Turn(
                        slot=slot,
                        episode=episode,
                        copy=copy,
                        group=copy // g,
                        agent=agent,
                        round=moves[copy][agent],  # the agent's own turn index
                        prompt_ids=gen.prompt_ids,
                        completion_ids=gen.completion_ids,
                        gen_logprobs=gen.logprobs,
                        text=text,
                    )
            # --- step every live copy
            counterfactual = cfg.baseline == "counterfactual" and g > 1 and not evaluation
            prompts_seen = list(observations)  # this round's, before the step replaces them
            for copy in range(E):
                if not live[copy]:
                    continue
                env = self.envs[copy]
                trained_here = any((copy, agent) in pending for agent in actions[copy])
                before = deepcopy(env) if counterfactual and trained_here else None
                obs, rewards, terms, truncs, infos = env.step(actions[copy])
                for agent, r in rewards.items():
                    info = infos[agent]
                    raw[copy][agent] += info["raw_score"]
                    if not info.get("acted", True):
                        # a turn-based game pays an agent on another's move (the loser's -1
                        # on the winner's): it credits the agent's latest turn
                        rew[copy][agent] += r
                        earlier = last_turn.get((copy, agent))
                        if earlier is not None:
                            earlier.reward += r
                            earlier.done = earlier.done or bool(terms[agent] or truncs[agent])
                        continue
                    moves[copy][agent] += 1
                    inval[copy][agent] += int(info["invalid_action"])
                    counts[copy][agent] += 1
                    turn = pending.get((copy, agent))
                    if turn is not None:
                        turn.invalid = bool(info["invalid_action"])
                        turn.action_tokens = self._action_tokens(turn, info.get("action_span"))
                        turn.done = bool(terms[agent] or truncs[agent])
                        prompt = prompts_seen[copy][agent]
                        r = self._turn_reward(turn, prompt, r, info)
                        turn.reward = r
                        turns.append(turn)
                        last_turn[(copy, agent)] = turn
                        if before is not None and turn.done:
                            turn.baseline = self._counterfactual(
                                turn, before, actions, prompts_seen, pending, g
                            )
                    rew[copy][agent] += r
                for agent, info in infos.items():
                    pid = self.policy_mapping[agent]
                    for key in GAME_FIGURES.intersection(info):
                        env_metrics[key].append(float(info[key]))
                        env_metrics[f"{pid}/{key}"].append(float(info[key]))
                observations[copy] = obs
                live[copy] = bool(env.agents)
                if not live[copy] and "collapsed" in next(iter(infos.values()), {}):
                    env_metrics["survival_rate"].append(
                        float(not next(iter(infos.values()))["collapsed"])
                    )
            round_idx += 1
        for turn in turns:  # the whole rollout's indices (unchanged without an offset)
            turn.copy += offset
            turn.group += offset // g
        return RolloutResult(
            turns=turns,
            raw_totals=[dict(x) for x in raw],
            reward_totals=[dict(x) for x in rew],
            invalid_counts=[dict(x) for x in inval],
            turn_counts=[dict(x) for x in counts],
            env_metrics={k: float(np.mean(v)) for k, v in env_metrics.items()},
            env_metric_counts={k: len(v) for k, v in env_metrics.items()},
            tokens_generated=tokens,
            generation_seconds=gen_seconds,
            curriculum_stages=played,
        )

    def _counterfactual(
        self,
        turn: Turn,
        before: Any,
        actions: list[dict[str, Any]],
        prompts: list[dict[str, Any]],
        pending: dict[tuple[int, str], Turn],
        g: int,
    ) -> float:
        """The counterfactual baseline of a turn that ended its game: its agent's answers in
        the other copies of its GRPO group that saw the same prompt, replayed in its place
        on ``before`` (its env just before the step)."""
        prompt = prompts[turn.copy][turn.agent]
        mates = [
            actions[j][turn.agent]
            for j in range(turn.group * g, min((turn.group + 1) * g, len(actions)))
            if j != turn.copy and (j, turn.agent) in pending and prompts[j][turn.agent] == prompt
        ]
        return counterfactual_baseline(
            before,
            actions[turn.copy],
            turn.agent,
            mates,
            lambda text, reward, info: self._turn_reward(turn, prompt, reward, info, text=text),
        )

    def _turn_reward(
        self,
        turn: Turn,
        prompt: Any,
        env_reward: float,
        info: dict[str, Any],
        text: str | None = None,
    ) -> float:
        """The reward credited to an LLM turn: the env reward through the user's
        ``reward_function`` (with ``text`` in place of the turn's own, for a replay)."""
        context = {
            "agent": turn.agent,
            "policy_id": turn.slot,
            "round": turn.round,
            "observation": prompt,
            "action": info["action"],
            "invalid": bool(info["invalid_action"]),
            "env_reward": env_reward,
            "raw_score": info["raw_score"],
            "info": info,
        }
        return self.environment.custom_reward(
            turn.text if text is None else text, context, env_reward
        )

    def _action_tokens(self, turn: Turn, span: tuple[int, int] | None) -> tuple[int, int] | None:
        """The completion tokens that wrote ``span`` (characters of ``turn.text``, where the
        env's parser read the action); ``None`` without a span or when it lies in the
        prefilled response prefix."""
        if span is None:
            return None
        shift = len(self.response_prefix)  # turn.text is the prefix + the completion's text
        start, end = max(span[0] - shift, 0), span[1] - shift
        tokenizer = self.pools[self.policies[turn.slot].checkpoint].tokenizer
        return token_range(turn.completion_ids, tokenizer, start, end)

    def _prefix_ids(self, pool: ModelPool) -> list[int]:
        """Token ids of the response prefix (none without one): they end every prompt, so the
        completion continues the prefilled answer (see ``MultiModelConfig.response_prefix``)."""
        if pool.checkpoint not in self._prefix_cache:
            prefix = self.response_prefix
            ids = pool.tokenizer.encode(prefix, add_special_tokens=False) if prefix else []
            self._prefix_cache[pool.checkpoint] = ids
        return self._prefix_cache[pool.checkpoint]

    def _system_prompt(self) -> str:
        return (
            self.config.system_prompt
            if self.config.system_prompt is not None
            else DEFAULT_SYSTEM_PROMPT
        )


async def _returning(value: Any) -> Any:
    """An awaitable of a value computed already (a generate call made inline)."""
    return value
