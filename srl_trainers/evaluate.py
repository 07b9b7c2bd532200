"""Evaluate LoRA policies against fixed opponents: win rates with intervals, no training.

``evaluate`` plays ``num_episodes`` seeded evaluation episodes through
:class:`srl_trainers.rollout.Rollout` over the population's players
(:func:`srl_trainers.population.build_players`: no trainer, optimizer or value head is built;
``evaluation=True``: every env copy gets its own seed from the evaluation range,
which never overlaps the training seeds) with greedy (``temperature=0``) or low-temperature
decoding, and reports per policy, per team and for the trainable population:

* win rate with a 95% Wilson score interval (a win: the agent's, or its team's, summed raw
  score over the episode is strictly above the others' mean, the definition of
  ``MultiModelTrainer.get_model_performance_summary``), and the draw and loss rates;
* mean episode return (the env reward at the config's initial cooperation balance) with a
  95% normal-approximation interval, and the mean raw score;
* the invalid-action rate (share of turns whose text did not parse), with a Wilson interval
  over turns;
* game figures: team battle, fields won and lost per round; commons, stock survival rate
  (with a Wilson interval), group welfare (the summed raw score of all agents per episode,
  1.0 per agent and round is the sustainable pace) and each group's share of it.

What it evaluates: a trainer (as it is now, trained or not), a ``MultiModelConfig`` (a fresh
population: new adapters have B = 0, so they play exactly the base model, which gives the
"before" numbers), or a checkpoint (a directory, or an id in ``checkpoint_dir``). The
opponent (agents without a trainable slot) can be swapped for any scripted bot of the game
or ``"base"``, the frozen base model. Evaluation restores the RNG state and the curriculum
state of the envs it used, so evaluating in the middle of a run changes nothing in it.

    python -m srl_trainers.evaluate --checkpoint latest --checkpoint-dir ./checkpoints/multimodel
    python -m srl_trainers.evaluate --checkpoint ./ckpt/checkpoint_000040 --episodes 64 --opponent random
    python -m srl_trainers.evaluate --config examples/configs/team_battle.yaml --json before.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from srl_trainers.cli import ArgumentParser
from srl_trainers.config import ConfigError, MultiModelConfig

if TYPE_CHECKING:
    from srl_trainers.population import Players
    from srl_trainers.trainer import MultiModelTrainer

__all__ = [
    "EvaluationReport",
    "GroupStats",
    "aevaluate",
    "decoding_label",
    "evaluate",
    "format_evaluation",
    "format_report",
    "main",
    "make_parser",
    "mean_interval",
    "wilson_interval",
]

Z_95 = 1.959963984540054  # two-sided 95% normal quantile
# Per-round game figures reported when the game puts them in infos (see trainer.GAME_FIGURES).
ROUND_FIGURES = ("fields_won", "fields_lost", "margin", "harvest")


# ---------------------------------------------------------------------- interval math
def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (95% for the default ``z``).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 and n
    successes (0 of 10: [0, 0.278]). ``n = 0`` gives the uninformative [0, 1].
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], z: float = Z_95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean with a normal-approximation interval
    (``z * sd / sqrt(n)``, sample sd); fewer than 2 values give ``low = high = mean``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, mean, mean
    half = z * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return mean, mean - half, mean + half


# ---------------------------------------------------------------------- the report
@dataclass
class GroupStats:
    """Evaluation figures of a group of agents: one policy, one team, or the population."""

    name: str
    agents: list[str]
    description: str = ""
    trainable: bool = False
    episodes: int = 0
    wins: float = 0.0  # summed per-episode share of the group's agents that won
    win_rate: float = 0.0
    win_ci: tuple[float, float] = (0.0, 1.0)
    draw_rate: float = 0.0
    loss_rate: float = 0.0
    mean_return: float = 0.0
    return_ci: tuple[float, float] = (0.0, 0.0)
    mean_raw_score: float = 0.0
    turns: int = 0
    invalid: int = 0
    invalid_rate: float = 0.0
    invalid_ci: tuple[float, float] = (0.0, 1.0)
    # fields_won / fields_lost / margin / harvest per round, share of group welfare, ...
    figures: dict[str, float] = field(default_factory=dict)


@dataclass
class EvaluationReport:
    """What :func:`evaluate` measured (``to_dict()`` for JSON, ``table()`` to print)."""

    env: str
    source: str  # "untrained", "trainer", or the checkpoint directory
    training_episode: int  # training episodes behind the evaluated weights
    num_episodes: int  # evaluation episodes played
    temperature: float
    opponent: str
    cooperation_level: float
    competition_intensity: float
    seeds: tuple[int, int]  # first and last env seed (inclusive)
    seconds: float
    models: dict[str, GroupStats]  # per policy id (trainable slots, bots, frozen base)
    teams: dict[str, GroupStats]  # per team (team games only)
    population: GroupStats | None  # every agent of a trainable slot, pooled
    game: dict[str, float]  # survival_rate (+ ci), welfare (+ ci), ... (per game)
    stage: int | None = None  # the curriculum stage played (staged env), None: not staged
    # what each LLM agent wrote in the first evaluation game, one text per turn: a figure
    # says how often a team won, this says what it answers (greedy: every game's first round)
    first_game: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=float))

    def table(self) -> str:
        return format_report(self)


def _outcomes(raw: dict[str, float], teams: dict[str, str] | None) -> dict[str, int]:
    """+1 win / 0 draw / -1 loss per agent: its (team's mean) summed raw score against the
    mean of the others (the other teams'); the trainer's win definition."""
    if teams is None:
        groups = {a: [a] for a in raw}
        key = {a: a for a in raw}
    else:
        groups = defaultdict(list)
        for a in raw:
            groups[teams[a]].append(a)
        key = {a: teams[a] for a in raw}
    means = {g: float(np.mean([raw[a] for a in members])) for g, members in groups.items()}
    out = {}
    for a in raw:
        others = [m for g, m in means.items() if g != key[a]]
        if not others:
            out[a] = 0
            continue
        diff = means[key[a]] - float(np.mean(others))
        out[a] = 1 if diff > 1e-9 else -1 if diff < -1e-9 else 0
    return out


class _Accumulator:
    """Per-episode figures of one group of agents, turned into a :class:`GroupStats`."""

    def __init__(self, name: str, agents: list[str], description: str, trainable: bool) -> None:
        self.stats = GroupStats(name, list(agents), description, trainable)
        self.win: list[float] = []
        self.draw: list[float] = []
        self.ret: list[float] = []
        self.raw: list[float] = []
        self.share: list[float] = []
        self.invalid = 0
        self.turns = 0
        self.figures: dict[str, list[float]] = defaultdict(list)

    def add_episode(self, copy_agents, outcomes, raw, rew, inval, counts, welfare) -> None:
        present = [a for a in self.stats.agents if a in raw]
        if not present:
            return
        self.win.append(float(np.mean([outcomes[a] == 1 for a in present])))
        self.draw.append(float(np.mean([outcomes[a] == 0 for a in present])))
        self.ret.append(float(np.mean([rew[a] for a in present])))
        self.raw.append(float(np.mean([raw[a] for a in present])))
        if welfare > 1e-9:
            self.share.append(sum(raw[a] for a in present) / welfare)
        self.invalid += sum(inval.get(a, 0) for a in present)
        self.turns += sum(counts.get(a, 0) for a in present)

    def finish(self) -> GroupStats:
        s = self.stats
        n = len(self.win)
        s.episodes = n
        s.wins = float(sum(self.win))
        s.win_rate = s.wins / n if n else 0.0
        s.win_ci = wilson_interval(s.wins, n)
        s.draw_rate = float(np.mean(self.draw)) if n else 0.0
        s.loss_rate = max(0.0, 1.0 - s.win_rate - s.draw_rate) if n else 0.0
        s.mean_return, lo, hi = mean_interval(self.ret)
        s.return_ci = (lo, hi)
        s.mean_raw_score = float(np.mean(self.raw)) if n else math.nan
        s.turns, s.invalid = self.turns, self.invalid
        s.invalid_rate = self.invalid / self.turns if self.turns else 0.0
        s.invalid_ci = wilson_interval(self.invalid, self.turns)
        for key, values in self.figures.items():
            s.figures[f"{key}_per_round"] = float(np.mean(values))
        if self.share:
            s.figures["welfare_share"] = float(np.mean(self.share))
        return s


# ---------------------------------------------------------------------- evaluation
def evaluate(
    target: MultiModelTrainer | MultiModelConfig | str | os.PathLike[str],
    *,
    num_episodes: int = 32,
    opponent: str | None = None,
    temperature: float = 0.0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    stage: int | None = None,
    overrides: dict[str, Any] | None = None,
    seeds: str = "held_out",
) -> EvaluationReport:
    """Play ``num_episodes`` evaluation episodes and measure every policy (see the module
    docstring).

    ``target``: a trainer (evaluated as it is), a config (an untrained population), or a
    checkpoint: a checkpoint directory, or an id (``"latest"``, ``"checkpoint_000040"``) in
    ``checkpoint_dir``. ``opponent``: a scripted bot of the game or ``"base"`` for the agents
    that no trainable slot plays (default: the config's ``opponent_policy``).
    ``temperature``: 0 decodes greedily. Episodes come in batches of the trainer's env copies;
    ``num_episodes`` is rounded up to whole batches (the report says how many were played).
    ``stage`` (staged env only): play every episode at this curriculum stage, past the
    warm-up, instead of the stage the target is at; the curriculum itself is left as it was.
    It compares one population across stages, or two populations at one stage.
    ``overrides``: ``MultiModelConfig`` fields to evaluate under instead of the target's (the
    same slots): another ``policy_mapping`` puts a trained slot in another seat,
    ``env_kwargs`` another game setting (``{"seat_order": "fixed"}`` for a PettingZoo game).
    ``seeds``: which evaluation seed range the games come from, ``"held_out"`` (default,
    from ``EVAL_SEED_OFFSET``) or ``"validation"`` (from ``VALIDATION_SEED_OFFSET``, the
    range a trainer with ``eval_seeds="validation"`` chooses its best checkpoint on); both are
    disjoint from the training seeds and from each other. The report's ``seeds`` names them.
    """
    return asyncio.run(
        aevaluate(
            target,
            num_episodes=num_episodes,
            opponent=opponent,
            temperature=temperature,
            checkpoint_dir=checkpoint_dir,
            stage=stage,
            overrides=overrides,
            seeds=seeds,
        )
    )


async def aevaluate(
    target: MultiModelTrainer | MultiModelConfig | str | os.PathLike[str],
    *,
    num_episodes: int = 32,
    opponent: str | None = None,
    temperature: float = 0.0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    stage: int | None = None,
    overrides: dict[str, Any] | None = None,
    seeds: str = "held_out",
) -> EvaluationReport:
    """:func:`evaluate` for callers already inside an event loop."""
    from srl_trainers.population import build_players
    from srl_trainers.rollout import SEED_RANGES
    from srl_trainers.trainer import MultiModelTrainer

    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes={num_episodes!r}: use a whole number >= 1")
    if not isinstance(temperature, int | float) or not 0.0 <= temperature <= 10.0:
        raise ValueError(f"temperature={temperature!r}: use a number in [0, 10] (0: greedy)")
    if seeds not in SEED_RANGES:
        raise ValueError(f"seeds={seeds!r}: use one of {sorted(SEED_RANGES)}")
    if isinstance(target, MultiModelTrainer):
        players, source = _players_of(target, opponent, overrides), "trainer"
        episode = target.current_episode
    elif isinstance(target, MultiModelConfig):
        players = build_players(_eval_config(target, opponent, overrides))
        source, episode = "untrained", 0
    elif isinstance(target, str | os.PathLike):
        path, meta = _resolve_checkpoint(target, checkpoint_dir)
        config = MultiModelConfig.from_dict(meta["config"])
        players = build_players(_eval_config(config, opponent, overrides))
        _load_weights(players, path, meta)
        source, episode = str(path), int(meta["episode"])
    else:
        raise TypeError(
            f"evaluate() takes a MultiModelTrainer, a MultiModelConfig or a checkpoint "
            f"path/id, not {type(target).__name__}"
        )
    return await _play(players, num_episodes, temperature, source, episode, stage, seeds)


def _eval_config(
    config: MultiModelConfig, opponent: str | None, overrides: dict[str, Any] | None = None
) -> MultiModelConfig:
    """A copy of ``config`` for evaluation: no monitor, the ``overrides`` fields, and the
    opponent (if given) in place of every bot or frozen-base agent."""
    data = config.to_dict()
    if overrides:
        unknown = sorted(set(overrides) - set(data))
        if unknown:
            raise ConfigError(
                f"evaluate(overrides=...): {unknown} are no MultiModelConfig fields; use fields "
                f"such as policy_mapping, env_kwargs, temperature"
            )
        if "num_models" in overrides or "model_types" in overrides:
            raise ConfigError(
                "evaluate(overrides=...) keeps the target's slots: num_models and model_types "
                "cannot change"
            )
        data.update(json.loads(json.dumps(overrides, default=str)))
    data.update(enable_monitoring=False)
    if opponent is not None:
        data["opponent_policy"] = opponent
        if data["policy_mapping"] is not None:
            target = "base" if opponent == "base" else f"bot:{opponent}"
            data["policy_mapping"] = {
                agent: target if t == "base" or t.startswith("bot:") else t
                for agent, t in data["policy_mapping"].items()
            }
    return MultiModelConfig.from_dict(data)


def _same_opponent(config: MultiModelConfig, opponent: str | None) -> bool:
    return opponent is None or (
        opponent == config.opponent_policy and config.policy_mapping is None
    )


def _players_of(
    trainer: MultiModelTrainer,
    opponent: str | None,
    overrides: dict[str, Any] | None = None,
) -> MultiModelTrainer | Players:
    """The trainer itself (it holds what plays), or, for another opponent, new
    :class:`~srl_trainers.population.Players` with the trainer's adapter weights and
    curriculum state."""
    trainer.setup()
    if _same_opponent(trainer.config, opponent) and not overrides:
        return trainer
    from srl_trainers.learner import load_adapter_files
    from srl_trainers.population import build_players

    # the new players are local (in Ray mode too: the evaluation runs in the driver); the
    # adapters come from the learners, which in Ray mode are actors holding the only copy
    players = build_players(
        _eval_config(
            trainer.config, opponent, {"distributed_backend": "local", **(overrides or {})}
        )
    )
    for checkpoint, learner in trainer.learners.items():
        load_adapter_files(players.pools[checkpoint], learner.adapter_files())
    for env, src in zip(players.envs, trainer.envs):
        if env.curriculum is not None:
            env.load_state_dict(src.state_dict())
    return players


def _resolve_checkpoint(
    target: str | os.PathLike[str], checkpoint_dir: str | os.PathLike[str] | None
) -> tuple[Path, dict[str, Any]]:
    """A checkpoint directory (with ``metadata.json``) or an id in ``checkpoint_dir``, verified
    (every file against its sha256) and its metadata."""
    from srl_trainers.checkpoint import METADATA_FILE, CheckpointManager, CheckpointNotFoundError

    path = Path(target)
    if (path / METADATA_FILE).is_file():
        manager, cid = CheckpointManager(path.parent), path.name
    elif path.exists() or len(path.parts) > 1:  # a path, not an id
        raise CheckpointNotFoundError(
            f"{str(target)!r} is not a checkpoint directory (no {METADATA_FILE})"
        )
    else:
        if checkpoint_dir is None:
            checkpoint_dir = MultiModelConfig.__dataclass_fields__["checkpoint_dir"].default
        manager, cid = CheckpointManager(checkpoint_dir), str(target)
    return manager.verify(cid)  # CheckpointError (a ValueError) if absent or corrupt


def _load_weights(players: Players, path: Path, meta: dict[str, Any]) -> None:
    """The checkpoint's adapters and curriculum state (not its optimizers or counters)."""
    from srl_trainers.checkpoint import read_state
    from srl_trainers.trainer import TRAINER_STATE_FILE

    if meta["slots"] != players.slots:
        raise ConfigError(
            f"checkpoint {path} holds slots {meta['slots']}, its config gives {players.slots}"
        )
    for slot in players.slots:
        pool = players.pools[players.policies[slot].checkpoint]
        pool.load_adapter(slot, path / "adapters" / slot)
    curricula = [env for env in players.envs if env.curriculum is not None]
    if curricula:
        state = read_state(path / TRAINER_STATE_FILE)
        for env, sd in zip(curricula, state["curricula"]):
            env.load_state_dict(sd)


def _at_stage(
    players: Players, curricula: list[tuple[Any, dict]], stage: int | None
) -> list[tuple[Any, dict]]:
    """(env, curriculum state to play) for every staged env copy: ``curricula``'s own
    states, or with ``stage`` that stage, past the warm-up."""
    if stage is None:
        return curricula
    if not curricula:
        raise ValueError(
            f"stage={stage!r}: env {players.config.env!r} has no curriculum; stage is for "
            "env='staged'"
        )
    names = [st.name for st in curricula[0][0].stages]
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < len(names):
        raise ValueError(
            f"stage={stage!r}: use a stage index in [0, {len(names) - 1}] (stages: {names})"
        )
    out = []
    for env, state in curricula:
        c = dict(state["curriculum"])
        warmup = env.curriculum.warmup_episodes
        c.update(stage=stage, episode=max(c["episode"], warmup), episodes_in_stage=0, window=[])
        out.append((env, {**state, "curriculum": c}))
    return out


async def _play(
    players: Players,
    num_episodes: int,
    temperature: float,
    source: str,
    episode: int,
    stage: int | None = None,
    seeds: str = "held_out",
) -> EvaluationReport:
    from srl_trainers.checkpoint import capture_rng_state, restore_rng_state
    from srl_trainers.rollout import EVAL_SEED_OFFSET, SEED_RANGES
    from srl_trainers.trainer import ModeController

    coop, comp = ModeController(players.config).balance()
    copies = players.num_copies
    batches = math.ceil(num_episodes / copies)
    # batch b plays seeds EVAL_SEED_OFFSET + b * copies + c: the range's first whole batch
    first_batch = -(-(SEED_RANGES[seeds] - EVAL_SEED_OFFSET) // copies)
    teams = players.teams
    groups = _groups(players)
    curricula = [(env, env.state_dict()) for env in players.envs if env.curriculum is not None]
    played_states = _at_stage(players, curricula, stage)
    rng = capture_rng_state()
    start = time.time()
    survived: list[float] = []
    welfare: list[float] = []
    env_figures: dict[str, list[float]] = defaultdict(list)
    first_game: dict[str, list[str]] = {}
    try:
        for batch in range(batches):
            for env, state in played_states:  # every batch plays the same curriculum stage
                env.load_state_dict(state)
            result = await players.rollout.play(
                first_batch + batch, coop, comp, evaluation=True, temperature=temperature
            )
            if batch == 0:
                for turn in result.turns:
                    if turn.copy == 0:
                        first_game.setdefault(turn.agent, []).append(turn.text)
            for c in range(copies):
                raw = result.raw_totals[c]
                outcomes = _outcomes(raw, teams)
                total = float(sum(raw.values()))
                welfare.append(total)
                for acc in groups.values():
                    acc.add_episode(
                        c,
                        outcomes,
                        raw,
                        result.reward_totals[c],
                        result.invalid_counts[c],
                        result.turn_counts[c],
                        total,
                    )
            for acc in groups.values():
                for key in ROUND_FIGURES:
                    values = [
                        (result.env_metrics[f"{pid}/{key}"], len(agents))
                        for pid, agents in _policies_of(players, acc.stats.agents).items()
                        if f"{pid}/{key}" in result.env_metrics
                    ]
                    if values:
                        acc.figures[key].append(
                            sum(v * w for v, w in values) / sum(w for _, w in values)
                        )
            if "survival_rate" in result.env_metrics:
                survived.append(result.env_metrics["survival_rate"] * copies)
            for key in (*ROUND_FIGURES, "group_harvest", "stock"):
                if key in result.env_metrics:
                    env_figures[key].append(result.env_metrics[key])
    finally:
        for env, state in curricula:
            env.load_state_dict(state)
        restore_rng_state(rng)
    played = batches * copies
    game: dict[str, Any] = {}
    mean, lo, hi = mean_interval(welfare)
    game.update(welfare=mean, welfare_ci=(lo, hi))
    if survived:
        alive = float(round(sum(survived)))
        game.update(survival_rate=alive / played, survival_ci=wilson_interval(alive, played))
    for key in ("group_harvest", "stock"):
        if env_figures.get(key):
            game[f"{key}_per_round"] = float(np.mean(env_figures[key]))
    finished = {name: acc.finish() for name, acc in groups.items()}
    playing = {players.policy_mapping[a] for a in players.agents}  # not a league's snapshots
    opp = sorted(
        {p.model_name for pid, p in players.policies.items() if not p.trainable and pid in playing}
    )
    first = EVAL_SEED_OFFSET + first_batch * copies
    return EvaluationReport(
        env=players.environment.env_id,
        source=source,
        training_episode=episode,
        num_episodes=played,
        temperature=float(temperature),
        opponent=", ".join(opp) if opp else "none",
        cooperation_level=float(coop),
        competition_intensity=float(comp),
        seeds=(first, first + played - 1),
        seconds=time.time() - start,
        models={k[7:]: v for k, v in finished.items() if k.startswith("policy:")},
        teams={k[5:]: v for k, v in finished.items() if k.startswith("team:")},
        population=finished.get("population"),
        game=game,
        stage=_stage_of(played_states),
        first_game=first_game,
    )


def _stage_of(curricula: list[tuple[Any, dict]]) -> int | None:
    return int(curricula[0][1]["curriculum"]["stage"]) if curricula else None


def _policies_of(players: Players, agents: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for agent in agents:
        out[players.policy_mapping[agent]].append(agent)
    return out


def _groups(players: Players) -> dict[str, _Accumulator]:
    """Accumulators per policy, per team, and for the trainable population."""
    groups = {}
    for pid, policy in players.policies.items():
        agents = [a for a in players.agents if players.policy_mapping[a] == pid]
        if not agents:  # a league's snapshot that plays nothing here
            continue
        groups[f"policy:{pid}"] = _Accumulator(pid, agents, policy.describe(), policy.trainable)
    if players.teams is not None:
        for team in dict.fromkeys(players.teams[a] for a in players.agents):
            agents = [a for a in players.agents if players.teams[a] == team]
            trainable = all(players.policies[players.policy_mapping[a]].trainable for a in agents)
            groups[f"team:{team}"] = _Accumulator(team, agents, f"team {team}", trainable)
    trained = [a for a in players.agents if players.policies[players.policy_mapping[a]].trainable]
    if trained:
        groups["population"] = _Accumulator("population", trained, "all trainable slots", True)
    return groups


# ---------------------------------------------------------------------- printing
def _ci(ci: Sequence[float], digits: int = 2) -> str:
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def decoding_label(temperature: float) -> str:
    """``"greedy"`` for temperature 0, else ``"T = 0.7"``: how a summary names its decoding."""
    return "greedy" if temperature == 0 else f"T = {temperature:g}"


def format_evaluation(summary: dict[str, Any]) -> str:
    """One line of a trainer's evaluation summary (``MultiModelTrainer.evaluations``): the
    population's win rate with its 95% interval, draws and invalid answers, then the greedy
    figures when the evaluation also played greedily (``eval_greedy``); then the same for each
    other opponent of ``opponent_mix``."""

    def figures(e: dict[str, Any]) -> str:
        low, high = e["win_ci"]
        return (
            f"win rate {e['win_rate']:.2f} [{low:.2f}, {high:.2f}], draws {e['draw_rate']:.2f}, "
            f"invalid {e['invalid_rate']:.2f}"
        )

    def both(e: dict[str, Any]) -> str:
        return figures(e) + (f"; greedy: {figures(e['greedy'])}" if "greedy" in e else "")

    line = both(summary)
    for name, e in summary.get("opponents", {}).items():  # opponent_mix's other opponents
        line += f" | against {name}: {both(e)}"
    return line


def format_report(report: EvaluationReport) -> str:
    """The report as a plain-text table (one row per policy, team and the population)."""
    decoding = "greedy" if report.temperature == 0 else f"temperature {report.temperature:g}"
    lines = [
        f"srl evaluation: {report.env}, {report.num_episodes} episodes, {decoding}, "
        f"opponent {report.opponent}, weights: {report.source} (training episode "
        f"{report.training_episode}), "
        + ("" if report.stage is None else f"curriculum stage {report.stage}, ")
        + f"{report.seconds:.0f} s",
    ]
    rows = [("policy", s) for s in report.models.values()]
    rows += [("team", s) for s in report.teams.values()]
    if report.population is not None and len(report.models) > 2:
        rows.append(("all", report.population))
    keys = sorted({k for _, s in rows for k in s.figures})
    header = (
        f"  {'':<6} {'name':<20} {'win':>5} {'95% CI':>14} {'draw':>5} {'return':>8} "
        f"{'95% CI':>17} {'invalid':>7} {'95% CI':>14}"
        + "".join(f" {k.replace('_per_round', '/round'):>16}" for k in keys)
    )
    lines.append(header)
    for kind, s in rows:
        lines.append(
            f"  {kind:<6} {s.name[:20]:<20} {s.win_rate:>5.2f} {_ci(s.win_ci):>14} "
            f"{s.draw_rate:>5.2f} {s.mean_return:>+8.3f} {_ci(s.return_ci, 3):>17} "
            f"{s.invalid_rate:>7.2f} {_ci(s.invalid_ci):>14}"
            + "".join(f" {s.figures[k]:>16.3f}" if k in s.figures else f" {'-':>16}" for k in keys)
        )
    game = report.game
    parts = []
    if "survival_rate" in game:
        parts.append(f"survival {game['survival_rate']:.2f} {_ci(game['survival_ci'])}")
    parts.append(f"welfare {game['welfare']:+.3f} {_ci(game['welfare_ci'], 3)}")
    for key in ("group_harvest_per_round", "stock_per_round"):
        if key in game:
            parts.append(f"{key.replace('_per_round', '/round').replace('_', ' ')} {game[key]:.2f}")
    lines.append("  game: " + ", ".join(parts))
    if report.first_game:
        lines.append(
            "  first game: "
            + "; ".join(
                f"{agent}: " + " | ".join(repr(t[:60]) for t in texts)
                for agent, texts in report.first_game.items()
            )
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- CLI
def make_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m srl_trainers.evaluate",
        description="Evaluate trained LoRA policies (a checkpoint) or an untrained population "
        "(a config) against fixed opponents on seeded evaluation episodes, without training.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--checkpoint",
        metavar="DIR_OR_ID",
        help="a checkpoint directory, or an id in --checkpoint-dir ('latest', 'checkpoint_000040')",
    )
    what.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="evaluate the UNTRAINED population of this config (the 'before' numbers)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        default=None,
        help="where checkpoint ids are looked up (default: ./checkpoints/multimodel)",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=32,
        metavar="N",
        help="evaluation episodes (rounded up to whole batches of env copies; default 32)",
    )
    parser.add_argument(
        "--opponent",
        default=None,
        metavar="NAME",
        help="who plays the agents without a trainable slot: a scripted bot of the game "
        "(heuristic, random, ...) or 'base' (the frozen base model); default: the config's",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        metavar="T",
        help="sampling temperature; 0 decodes greedily (default 0)",
    )
    parser.add_argument(
        "--stage",
        type=int,
        default=None,
        metavar="K",
        help="staged env: play at curriculum stage K (0 = the first), past the warm-up; "
        "default: the stage the checkpoint reached (an untrained config: stage 0)",
    )
    parser.add_argument(
        "--seeds",
        choices=("held_out", "validation"),
        default="held_out",
        help="evaluation seed range: held_out (default; what benchmarks report) or validation "
        "(the games a run with eval_seeds=validation chose its best checkpoint on)",
    )
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the report as JSON")
    return parser


def _check_stage(env: str, stage: int | None) -> None:
    import srl_envs

    if stage is not None and srl_envs.spec(env).name != "staged":
        raise ConfigError(
            f"--stage {stage}: env {env!r} has no curriculum; --stage is for 'staged'"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes {args.episodes}: use a whole number >= 1")
    if not 0.0 <= args.temperature <= 10.0:
        parser.error(f"--temperature {args.temperature}: use a number in [0, 10] (0: greedy)")
    if args.json is not None and Path(args.json).is_dir():
        parser.error(f"--json {args.json} is a directory: give a file, e.g. {args.json}/eval.json")
    from srl_trainers.models import ModelUnavailableError

    try:  # the config checks --opponent (MultiModelConfig.opponent_policy) before models load
        if args.config is not None:
            target: Any = MultiModelConfig.from_yaml(args.config)
            _check_stage(target.env, args.stage)
        else:
            path, meta = _resolve_checkpoint(args.checkpoint, args.checkpoint_dir)
            _check_stage(meta["config"]["env"], args.stage)
            target = path
        report = evaluate(
            target,
            num_episodes=args.episodes,
            opponent=args.opponent,
            temperature=args.temperature,
            stage=args.stage,
            seeds=args.seeds,
        )
    except (ConfigError, ModelUnavailableError, FileNotFoundError, ValueError) as exc:
        parser.fail(exc)
    print(report.table())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
