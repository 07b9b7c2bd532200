"""An offline league: rate any set of players head to head, with openskill.

    python -m srl_trainers.league --env srl/pz-tictactoe-v3 \\
        --players bot:random bot:heuristic base runs/ckpt/checkpoint_000130 --games 32
    python -m srl_trainers.league --checkpoint-dir ./checkpoints/multimodel \\
        --players latest checkpoint_000040 bot:heuristic --json league.json --png league.png

**Players**: ``bot:<name>`` (a scripted bot of the game), ``base`` (the frozen base model),
and trained LoRA policies: a checkpoint directory or an id in ``--checkpoint-dir``
(``latest``, ``checkpoint_000040``), optionally ``#<slot>`` to pick one of its slots (default:
its first) or one of the self-play snapshots it keeps (``#model_0_smollm2_ep40``); and
models served by an OpenAI-compatible endpoint: ``api:<model>@<url>``, or ``api:<model>``
with ``--api-base-url`` (``--api-key-env VAR`` names the key's environment variable; a
failing endpoint is retried, then its answer counts as invalid). Checkpoint players must
come from runs of the same game; each becomes one adapter on its base model, and every LoRA
player of one base model generates in one mixed-adapter batch.

**Matches**: every pair of players plays ``--games`` seeded evaluation games on each side
(the env's two teams, or the two halves of its agents: the two players of a two-player
game), through the evaluator's :class:`~srl_trainers.rollout.Rollout` on evaluation seeds
(disjoint from training seeds; every pair plays the same seeds). A game's winner is the side
with the higher summed raw score; equal scores are a draw.

**Ratings**: :class:`Ratings` keeps an openskill Plackett-Luce rating per player (``mu``,
``sigma`` and the conservative ``ordinal = mu - 3 sigma``); every game updates both sides.
The report holds the ratings table, the cross-play payoff matrix (row's score against the
column: win = 1, draw = 0.5, over both sides) and the command; ``--png`` draws the matrix as
a heatmap.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srl_trainers.cli import ArgumentParser
from srl_trainers.config import ConfigError, MultiModelConfig

__all__ = [
    "LeagueReport",
    "PlayerSpec",
    "Ratings",
    "SnapshotLeague",
    "main",
    "parse_player",
    "pfsp_weights",
    "run_league",
]


# ------------------------------------------------------------------------------ ratings
class Ratings:
    """openskill Plackett-Luce ratings of named players (teams of players, too).

    ``rate([["a"], ["b"]], scores=[1, 0])``: ``a`` beat ``b``; equal scores are a draw; a
    team game passes each team's players. Unknown names start at openskill's prior
    (``mu`` 25, ``sigma`` 25/3)."""

    def __init__(self) -> None:
        from openskill.models import PlackettLuce

        self.model = PlackettLuce()
        self._ratings: dict[str, Any] = {}
        self.games: dict[str, int] = defaultdict(int)

    def rating(self, name: str):
        if name not in self._ratings:
            self._ratings[name] = self.model.rating(name=name)
        return self._ratings[name]

    def _copy(self, name: str):
        r = self.rating(name)
        return self.model.rating(mu=r.mu, sigma=r.sigma, name=name)

    def rate(self, teams: Sequence[Sequence[str]], scores: Sequence[float]) -> None:
        """Update every player of ``teams`` from one game's ``scores`` (higher is better).

        A name may stand in a team more than once: a policy that plays k seats counts k times
        in its team's strength (openskill sums the members' mu), so a scripted bot playing all
        four seats of one team meets four LoRA slots on equal terms. Its copies get the same
        update, written once; a game counts once per player."""
        if len(teams) != len(scores) or len(teams) < 2:
            raise ValueError(
                f"rate() needs a score per team and two teams or more: {teams}, {scores}"
            )
        rated = self.model.rate(  # copies: openskill adds tau to its inputs' sigma in place
            [[self._copy(n) for n in team] for team in teams],
            scores=[float(s) for s in scores],
        )
        for team, new in zip(teams, rated):
            for name, r in dict(zip(team, new)).items():  # a name's copies are equal
                self._ratings[name] = r
                self.games[name] += 1

    def table(self) -> list[dict[str, Any]]:
        """Every rated player, best conservative rating first."""
        rows = [
            {
                "player": name,
                "mu": float(r.mu),
                "sigma": float(r.sigma),
                "ordinal": float(r.ordinal()),
                "games": int(self.games[name]),
            }
            for name, r in self._ratings.items()
        ]
        return sorted(rows, key=lambda row: -row["ordinal"])

    def state_dict(self) -> dict[str, Any]:
        return {
            name: {"mu": float(r.mu), "sigma": float(r.sigma), "games": int(self.games[name])}
            for name, r in self._ratings.items()
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._ratings = {
            name: self.model.rating(mu=float(v["mu"]), sigma=float(v["sigma"]), name=name)
            for name, v in state.items()
        }
        self.games = defaultdict(int, {name: int(v.get("games", 0)) for name, v in state.items()})


# ------------------------------------------------------------------------------ self-play
def pfsp_weights(win_rates: Sequence[float]) -> list[float]:
    """Prioritized fictitious self-play: sampling weights of opponents from the learners' win
    rate ``p`` against each, ``p (1 - p)`` (opponents beaten about half the time first), with
    a floor so that no opponent is never played; normalised to sum to 1."""
    raw = [max(p * (1.0 - p), 0.02) for p in win_rates]
    total = sum(raw)
    return [w / total for w in raw]


class SnapshotLeague:
    """Frozen snapshots of the trained slots, and which of them plays the opponents.

    A snapshot freezes every trained slot's adapter at once (ids ``<slot>_ep<episode>``, on
    the same base model, so they generate in the same mixed-adapter batch). The opponent
    agents (those ``opponent_policy`` plays with ``opponent_sampling="fixed"``) are played,
    for a whole training episode, by one snapshot drawn by ``sampling``: the i-th opponent
    agent by the snapshot of the i-th slot (cycled), so a red LoRA team meets a blue team of
    its own earlier selves. The learners' results against each snapshot (wins, games) drive
    ``pfsp``; the draw's generator is seeded and kept in the checkpoint.
    """

    def __init__(
        self,
        sampling: str,
        slots: list[str],
        opponents: list[str],
        *,
        max_snapshots: int,
        seed: int,
    ) -> None:
        if not opponents:
            raise ConfigError(
                f"MultiModelConfig.opponent_sampling={sampling!r} needs agents that no slot "
                "plays (the opponents the snapshots play): lower num_models or leave agents out "
                "of policy_mapping"
            )
        self.sampling = sampling
        self.slots = list(slots)
        self.opponents = list(opponents)
        self.max_snapshots = max_snapshots
        self.snapshots: list[dict[str, Any]] = []  # {"name", "episode", "policies": {slot: id}}
        self.results: dict[str, list[int]] = {}  # snapshot name -> [learner wins, games]
        self.rng = np.random.default_rng(seed)
        self.current: str | None = None
        self.mark = 0  # the slots' update count at the latest snapshot

    def policy_ids(self, episode: int) -> dict[str, str]:
        return {slot: f"{slot}_ep{episode}" for slot in self.slots}

    def add(self, episode: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """Register the snapshot of ``episode``; returns its slot -> policy id map and the
        snapshots evicted to stay within ``max_snapshots``."""
        snap = {"name": f"ep{episode}", "episode": episode, "policies": self.policy_ids(episode)}
        self.snapshots.append(snap)
        self.results.setdefault(snap["name"], [0, 0])
        evicted = []
        while len(self.snapshots) > self.max_snapshots:
            old = self.snapshots.pop(0)
            self.results.pop(old["name"], None)
            evicted.append(old)
        return snap["policies"], evicted

    def draw(self) -> dict[str, Any] | None:
        """The snapshot that plays this episode's opponents (None before the first)."""
        if not self.snapshots:
            self.current = None
            return None
        if self.sampling == "latest":
            snap = self.snapshots[-1]
        elif self.sampling == "uniform":
            snap = self.snapshots[int(self.rng.integers(len(self.snapshots)))]
        else:
            rates = [self.win_rate(s["name"]) for s in self.snapshots]
            weights = pfsp_weights(rates)
            snap = self.snapshots[int(self.rng.choice(len(self.snapshots), p=weights))]
        self.current = snap["name"]
        return snap

    def mapping(self, base: dict[str, str], snap: dict[str, Any] | None) -> dict[str, str]:
        """The policy mapping of an episode against ``snap`` (``base`` without one)."""
        if snap is None:
            return dict(base)
        out = dict(base)
        for i, agent in enumerate(self.opponents):
            out[agent] = snap["policies"][self.slots[i % len(self.slots)]]
        return out

    def record(self, wins: Sequence[float]) -> None:
        """The learners' results (1 win, 0.5 draw, 0 loss per game) against the current one."""
        if self.current is None:
            return
        acc = self.results.setdefault(self.current, [0, 0])
        acc[0] += float(sum(wins))
        acc[1] += len(wins)

    def win_rate(self, name: str) -> float:
        wins, games = self.results.get(name, [0, 0])
        return wins / games if games else 0.5

    def state_dict(self) -> dict[str, Any]:
        return {
            "snapshots": [dict(s, policies=dict(s["policies"])) for s in self.snapshots],
            "results": {k: list(v) for k, v in self.results.items()},
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.snapshots = [dict(s, policies=dict(s["policies"])) for s in state["snapshots"]]
        self.results = {k: list(v) for k, v in state["results"].items()}
        self.rng.bit_generator.state = state["rng"]


# ------------------------------------------------------------------------------ players
@dataclass(frozen=True)
class PlayerSpec:
    """One league player: ``kind`` is ``bot``, ``base``, ``checkpoint`` or ``api``."""

    label: str
    kind: str
    bot: str | None = None
    model: str | None = None  # api: the model name the endpoint serves
    base_url: str | None = None  # api: its OpenAI-compatible endpoint (None: --api-base-url)
    path: Path | None = None
    slot: str | None = None  # the trained slot (a snapshot's: the slot it froze)
    adapter_dir: Path | None = None
    meta: dict[str, Any] | None = field(default=None, compare=False, hash=False)


def parse_player(text: str, checkpoint_dir: str | None) -> PlayerSpec:
    """A ``--players`` entry -> its :class:`PlayerSpec` (a ValueError names what is wrong)."""
    from srl_trainers.evaluate import _resolve_checkpoint

    text = text.strip()
    if not text:
        raise ValueError("an empty player: use bot:<name>, base, or a checkpoint")
    if text.startswith("bot:"):
        name = text[4:]
        if not name:
            raise ValueError(f"player {text!r}: name the bot, e.g. bot:heuristic")
        return PlayerSpec(label=text, kind="bot", bot=name)
    if text == "base":
        return PlayerSpec(label="base", kind="base")
    if text.startswith("api:"):
        model, _, url = text[4:].partition("@")
        if not model:
            raise ValueError(
                f"player {text!r}: name the model, e.g. api:gpt-4o-mini@https://api.openai.com/v1"
            )
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"player {text!r}: the endpoint {url!r} is no http(s) URL")
        return PlayerSpec(label=text, kind="api", model=model, base_url=url or None)
    where, _, slot = text.partition("#")
    try:
        path, meta = _resolve_checkpoint(where, checkpoint_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(
            f"player {text!r} is no bot:<name>, no 'base', no api:<model>[@<url>] and no "
            f"checkpoint ({exc})"
        ) from None
    slots = list(meta["slots"])
    snapshots = sorted(p.name for p in (path / "snapshots").glob("*")) if slot else []
    if slot and slot not in slots and slot not in snapshots:
        raise ValueError(
            f"player {text!r}: checkpoint {path} has no slot {slot!r}; it has {slots}"
            + (f" and the self-play snapshots {snapshots}" if snapshots else "")
        )
    slot = slot or slots[0]
    where = "adapters" if slot in slots else "snapshots"
    source = slot if slot in slots else slot.rsplit("_ep", 1)[0]  # a snapshot's own slot
    return PlayerSpec(
        label=text,
        kind="checkpoint",
        path=path,
        slot=source,
        adapter_dir=path / where / slot,
        meta=meta,
    )


# ------------------------------------------------------------------------------ report
@dataclass
class LeagueReport:
    env: str
    players: list[str]
    games_per_side: int
    temperature: float
    ratings: list[dict[str, Any]]
    payoff: dict[str, dict[str, float]]  # row's score against column (win 1, draw 0.5)
    results: dict[str, dict[str, dict[str, int]]]  # row -> column -> wins/draws/losses
    seeds: tuple[int, int]
    command: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def table(self) -> str:
        lines = [
            f"league on {self.env}: {len(self.players)} players, {self.games_per_side} games per "
            f"side per pair, T={self.temperature:g}",
            f"  {'player':<40} {'ordinal':>8} {'mu':>7} {'sigma':>6} {'games':>6}",
        ]
        for row in self.ratings:
            lines.append(
                f"  {row['player']:<40} {row['ordinal']:>8.2f} {row['mu']:>7.2f} "
                f"{row['sigma']:>6.2f} {row['games']:>6}"
            )
        lines.append("  payoff (row's score against column: win 1, draw 0.5)")
        width = max(len(p) for p in self.players)
        lines.append("  " + " " * width + "".join(f" {i:>6}" for i in range(len(self.players))))
        for i, row in enumerate(self.players):
            cells = "".join(
                f" {self.payoff[row][col]:>6.2f}" if col != row else f" {'-':>6}"
                for col in self.players
            )
            lines.append(f"  {row:<{width}}{cells}   ({i})")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ the league
def _sides(env) -> tuple[list[str], list[str]]:
    agents = list(env.possible_agents)
    teams = env.teams
    if teams:
        names = list(dict.fromkeys(teams[a] for a in agents))
        if len(names) != 2:
            raise ValueError(f"a league needs a two-sided game; {names} are {len(names)} teams")
        return [a for a in agents if teams[a] == names[0]], [
            a for a in agents if teams[a] == names[1]
        ]
    if len(agents) < 2 or len(agents) % 2:
        raise ValueError(
            f"a league needs a two-sided game: two teams, or an even number of agents "
            f"(the env has {len(agents)})"
        )
    half = len(agents) // 2
    return agents[:half], agents[half:]


def _base_config(specs: list[PlayerSpec], env: str | None, model: str | None) -> MultiModelConfig:
    """The config the league plays under: the first checkpoint's (every checkpoint must be of
    the same game), or a fresh one for ``env`` and ``model``."""
    ckpts = [s for s in specs if s.kind == "checkpoint"]
    if ckpts:
        data = dict(ckpts[0].meta["config"])
        for s in ckpts[1:]:
            other = s.meta["config"]["env"]
            if other != data["env"]:
                raise ConfigError(
                    f"player {s.label!r} was trained on {other!r}, player {ckpts[0].label!r} on "
                    f"{data['env']!r}: a league plays one game"
                )
        if env is not None and env != data["env"]:
            raise ConfigError(f"--env {env!r}: the checkpoints were trained on {data['env']!r}")
    else:
        data = {"env": env or "coop_compete", "num_models": 1}
        if model is not None:
            from srl_trainers.config import DEFAULT_MODEL_NAMES

            data.update(
                {"model_types": [model]}
                if model in DEFAULT_MODEL_NAMES
                else {"model_types": ["custom"], "model_names": {"custom": model}}
            )
    data.update(enable_monitoring=False, policy_mapping=None)
    return MultiModelConfig.from_dict(data)


async def arun_league(
    players: Sequence[str],
    *,
    env: str | None = None,
    model: str | None = None,
    checkpoint_dir: str | None = None,
    games: int = 16,
    temperature: float = 0.0,
    copies: int = 8,
    api_base_url: str | None = None,
    api_key_env: str | None = None,
) -> LeagueReport:
    """:func:`run_league` for callers already inside an event loop. ``api_base_url`` and
    ``api_key_env``: the endpoint and the key's environment variable of the ``api:<model>``
    players that name no endpoint of their own (no key variable: a local server's ``EMPTY``).
    An API player answers with the league's temperature; a failing endpoint is retried, then
    its answer counts as invalid (the game's fallback action), never fatal."""
    import srl_envs
    from srl_trainers.api import APIPolicy
    from srl_trainers.models import ModelPool, resolve_checkpoint
    from srl_trainers.policies import BotPolicy, LoRAPolicy
    from srl_trainers.population import response_prefix_of
    from srl_trainers.rollout import EVAL_SEED_OFFSET, Rollout, TrainingEnvironment
    from srl_trainers.trainer import ModeController

    if isinstance(games, bool) or not isinstance(games, int) or games < 1:
        raise ValueError(f"games={games!r}: use a whole number >= 1")
    if len(players) < 2:
        raise ValueError(f"a league needs two players or more, got {list(players)}")
    specs = [parse_player(p, checkpoint_dir) for p in players]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"players {labels} name one player twice")
    config = _base_config(specs, env, model)
    environment = TrainingEnvironment(config)
    probe = environment.make()
    side_a, side_b = _sides(probe)
    bot_game = srl_envs.spec(probe.base_id)
    n_copies = max(1, min(copies, games))
    envs = [probe] + [environment.make() for _ in range(n_copies - 1)]
    # the players as policies: bots, the frozen base, one adapter per checkpoint player
    base_checkpoint = resolve_checkpoint(config.resolved_model_names()[config.model_types[0]])
    policies: dict[str, Any] = {}
    pools: dict[str, ModelPool] = {}

    def pool_for(checkpoint: str) -> ModelPool:
        if checkpoint not in pools:
            pools[checkpoint] = ModelPool(
                checkpoint,
                dtype=config.dtype,
                device=config.device,
                kv_cache_size=config.kv_cache_size,
                share_prefix=config.share_prefix,
            )
        return pools[checkpoint]

    for i, spec in enumerate(specs):
        pid = f"league_{i}"
        if spec.kind == "bot":
            if spec.bot not in bot_game.bots:
                raise ValueError(
                    f"player {spec.label!r}: {bot_game.id} has no bot {spec.bot!r}; use one of "
                    f"{sorted(bot_game.bots)}"
                )
            policy = BotPolicy(pid, "scripted", spec.bot)
            policy.bots = [
                srl_envs.make_bot(bot_game.id, spec.bot, seed=c) for c in range(n_copies)
            ]
        elif spec.kind == "api":
            url = spec.base_url or api_base_url
            if url is None:
                raise ValueError(
                    f"player {spec.label!r}: name its endpoint, {spec.label}@http://host:port/v1, "
                    "or give --api-base-url"
                )
            policy = APIPolicy.from_config(pid, "api", spec.model, config, [])
            policy.base_url, policy.api_key_env = url, api_key_env
            policy.temperature = temperature  # the league's, 0 included (greedy)
            policy.validate()
        elif spec.kind == "base":
            policy = LoRAPolicy(
                pid, "base", "frozen base", checkpoint=base_checkpoint, trainable=False
            )
            pool_for(base_checkpoint)
        else:
            cfg = MultiModelConfig.from_dict({**spec.meta["config"], "enable_monitoring": False})
            slot_type = cfg.slot_model_types()[cfg.slot_ids().index(spec.slot)]
            checkpoint = resolve_checkpoint(cfg.resolved_model_names()[slot_type])
            pool = pool_for(checkpoint)
            pool.add_adapter(
                pid,
                rank=cfg.lora_rank,
                alpha=cfg.lora_alpha,
                dropout=cfg.lora_dropout,
                target_modules=cfg.lora_target_modules,
                seed=0,
            )
            pool.load_adapter(pid, spec.adapter_dir)
            policy = LoRAPolicy(pid, slot_type, spec.label, checkpoint=checkpoint)
        policies[pid] = policy
    ids = list(policies)
    ratings = Ratings()
    results: dict[str, dict[str, dict[str, int]]] = {
        a: {b: {"wins": 0, "draws": 0, "losses": 0} for b in labels if b != a} for a in labels
    }
    batches = math.ceil(games / n_copies)
    prefix = response_prefix_of(config, probe)
    coop, comp = ModeController(config).balance()  # the evaluator's reward mixing
    for i, j in itertools.combinations(range(len(ids)), 2):
        for first, second in ((i, j), (j, i)):
            mapping = {a: ids[first] for a in side_a} | {a: ids[second] for a in side_b}
            rollout = Rollout(
                config, environment, envs, policies, mapping, pools=pools, response_prefix=prefix
            )
            played = 0
            for batch in range(batches):  # every pair plays the same evaluation seeds
                result = await rollout.play(
                    batch, coop, comp, evaluation=True, temperature=temperature
                )
                for c in range(n_copies):
                    if played >= games:
                        break
                    played += 1
                    raw = result.raw_totals[c]
                    score_a = sum(raw.get(a, 0.0) for a in side_a)
                    score_b = sum(raw.get(a, 0.0) for a in side_b)
                    la, lb = labels[first], labels[second]
                    ratings.rate([[la], [lb]], [score_a, score_b])
                    if score_a > score_b:
                        results[la][lb]["wins"] += 1
                        results[lb][la]["losses"] += 1
                    elif score_b > score_a:
                        results[lb][la]["wins"] += 1
                        results[la][lb]["losses"] += 1
                    else:
                        results[la][lb]["draws"] += 1
                        results[lb][la]["draws"] += 1
    for policy in policies.values():
        await policy.aclose()
    payoff = {
        a: {b: (r["wins"] + 0.5 * r["draws"]) / max(1, sum(r.values())) for b, r in row.items()}
        for a, row in results.items()
    }
    for a in labels:
        payoff[a][a] = 0.5
    first_seed = EVAL_SEED_OFFSET
    return LeagueReport(
        env=srl_envs.spec(config.env).id,
        players=labels,
        games_per_side=games,
        temperature=float(temperature),
        ratings=ratings.table(),
        payoff=payoff,
        results=results,
        seeds=(first_seed, first_seed + batches * n_copies - 1),
    )


def run_league(players: Sequence[str], **options: Any) -> LeagueReport:
    """Rate ``players`` head to head (see the module docstring); options as
    :func:`arun_league`."""
    return asyncio.run(arun_league(players, **options))


def plot_payoff(report: LeagueReport, out_png: str | Path) -> Path:
    """The payoff matrix as a heatmap PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.players)
    grid = [[report.payoff[r][c] for c in report.players] for r in report.players]
    fig, ax = plt.subplots(figsize=(2 + 0.9 * n, 1.5 + 0.8 * n))
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="RdBu")
    ax.set_xticks(range(n), [str(i) for i in range(n)])
    ax.set_yticks(range(n), [f"{p} ({i})" for i, p in enumerate(report.players)])
    for r in range(n):
        for c in range(n):
            ax.text(c, r, f"{grid[r][c]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"{report.env}: row's score against column")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------ CLI
def make_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m srl_trainers.league",
        description="Rate players head to head (openskill): checkpoints, bots, the base model.",
    )
    parser.add_argument(
        "--players",
        nargs="+",
        required=True,
        metavar="PLAYER",
        help="bot:<name>, base, api:<model>[@<url>], a checkpoint directory or id "
        "(optionally #<slot>)",
    )
    parser.add_argument("--env", default=None, help="the game (default: the checkpoints' game)")
    parser.add_argument(
        "--model", default=None, help="base model of 'base' without checkpoints (default smollm2)"
    )
    parser.add_argument("--checkpoint-dir", default=None, help="where checkpoint ids are looked up")
    parser.add_argument("--games", type=int, default=16, help="games per side per pair (16)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily")
    parser.add_argument(
        "--api-base-url",
        default=None,
        metavar="URL",
        help="OpenAI-compatible endpoint of the api:<model> players that name none",
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding their API key (default: none, a local server)",
    )
    parser.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON")
    parser.add_argument("--png", default=None, metavar="OUT", help="draw the payoff heatmap")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.games < 1:
        parser.error(f"--games {args.games}: use a whole number >= 1")
    if not 0.0 <= args.temperature <= 10.0:
        parser.error(f"--temperature {args.temperature}: use a number in [0, 10] (0: greedy)")
    from srl_trainers.models import ModelUnavailableError

    try:
        report = run_league(
            args.players,
            env=args.env,
            model=args.model,
            checkpoint_dir=args.checkpoint_dir,
            games=args.games,
            temperature=args.temperature,
            api_base_url=args.api_base_url,
            api_key_env=args.api_key_env,
        )
    except (ConfigError, ModelUnavailableError, FileNotFoundError, ValueError) as exc:
        parser.fail(exc)
    report.command = ["python", "-m", "srl_trainers.league", *(argv or sys.argv[1:])]
    print(report.table())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"report: {args.json}")
    if args.png:
        print(f"payoff heatmap: {plot_payoff(report, args.png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
