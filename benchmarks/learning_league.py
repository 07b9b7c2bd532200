"""Learning benchmark: team battle self-play against frozen snapshots, with ratings.

    python -m benchmarks.learning_league                   # full: 20 min per run
    python -m benchmarks.learning_league --train-episodes 40
    python -m benchmarks.learning_league --quick           # smoke run, tiny random model

Two runs of the team battle preset (``learning_team_battle``'s, four SmolLM2 LoRA slots on
red): one in self-play (``opponent_sampling`` pfsp by default: blue is played by frozen
snapshots of red's own slots, a new one every ``--snapshot-interval`` updates), one against
the heuristic team alone (the preset as it is). Reported:

* the self-play team's conservative rating (openskill mu - 3 sigma, from its training games)
  at the first and the last episode;
* the offline league (``srl_trainers.league``) of the final self-play checkpoint against the
  snapshots it keeps: its win rate against each with a 95% Wilson interval (goal: above 0.5,
  the interval clear of 0.5), and every player's rating;
* both trained teams and the untrained one against the three scripted teams (heuristic,
  concentrate, random) at T = 0.7 and greedy, on the same evaluation seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import (
    budget,
    checkpoint_dir,
    ci,
    make_parser,
    model_fields,
    output_dirs,
    print_table,
    train_for,
    write_json,
)
from benchmarks.learning_team_battle import BOTS, CONFIG, QUICK

NAME = "learning_league"
TEMPERATURES = (0.7, 0.0)


def team_row(label: str, report) -> list:
    red = report.teams["red"]
    return [
        label,
        report.num_episodes,
        red.win_rate,
        ci(red.win_ci),
        red.draw_rate,
        red.invalid_rate,
    ]


def rating_curve(log_dir: str, slot: str) -> tuple[float, float]:
    """The slot's conservative rating after the first and the last training episode."""
    rows = [json.loads(line) for line in (Path(log_dir) / "metrics.jsonl").open()]
    key = f"rating/{slot}/ordinal"
    values = [r[key] for r in rows if key in r]
    return (values[0], values[-1]) if values else (float("nan"), float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], minutes=20.0, episodes=64)
    parser.add_argument(
        "--sampling",
        choices=("latest", "uniform", "pfsp"),
        default="pfsp",
        help="how the self-play run draws its blue team from the snapshots (default pfsp)",
    )
    parser.add_argument(
        "--snapshot-interval", type=int, default=5, help="updates between snapshots (5)"
    )
    parser.add_argument(
        "--league-games", type=int, default=32, help="league games per side per pair (32)"
    )
    args: argparse.Namespace = parser.parse_args(argv)
    out, work = output_dirs(args)
    from srl_trainers import MultiModelConfig, MultiModelTrainer
    from srl_trainers.evaluate import evaluate, wilson_interval
    from srl_trainers.league import plot_payoff, run_league

    base = {**CONFIG, **model_fields(args), **(QUICK if args.quick else {})}
    if args.quick:
        args.episodes, args.minutes, args.league_games = 2, None, 1
        args.snapshot_interval = 1
    minutes = budget(args, base)
    runs = {
        "self-play": dict(
            opponent_sampling=args.sampling,
            snapshot_interval=args.snapshot_interval,
            max_snapshots=8,
        ),
        "vs heuristic": dict(opponent_policy="heuristic"),
    }
    rows, reports, training, configs, trainers = [], {}, {}, {}, {}
    untrained = MultiModelConfig(**base, seed=args.seed, enable_monitoring=False)
    for bot in BOTS:
        for t in TEMPERATURES:
            r = evaluate(untrained, num_episodes=args.episodes, opponent=bot, temperature=t)
            reports[f"untrained/{bot}/T{t:g}"] = r
            rows.append(team_row(f"untrained vs {bot}, T={t:g}", r))
    for name, extra in runs.items():
        tag = name.replace(" ", "_")
        config = MultiModelConfig(
            **{**base, **extra},
            seed=args.seed,
            run_name=f"{NAME}_{tag}_s{args.seed}",
            log_dir=str(work / "runs"),
            checkpoint_dir=checkpoint_dir(work, f"{NAME}_{tag}_s{args.seed}"),
        )
        configs[name] = config.to_dict()
        trainer = MultiModelTrainer(config)
        results = train_for(trainer, minutes)
        trainers[name] = (trainer, results)
        training[name] = {k: results[k] for k in ("total_episodes", "training_time")}
        for bot in BOTS:
            for t in TEMPERATURES:
                r = evaluate(trainer, num_episodes=args.episodes, opponent=bot, temperature=t)
                reports[f"{tag}/{bot}/T{t:g}"] = r
                rows.append(
                    team_row(f"{name} ({results['total_episodes']} ep) vs {bot}, T={t:g}", r)
                )
    # the self-play run: its rating over training, and the league of its last checkpoint
    trainer, results = trainers["self-play"]
    slot = trainer.slots[0]
    first, last = rating_curve(results["log_dir"], slot) if results["log_dir"] else (0, 0)
    ckpt = results["checkpoint_dir"]
    snaps = sorted(
        (p.name for p in (Path(ckpt) / results["checkpoints_saved"][-1] / "snapshots").glob("*")
         if p.name.startswith(slot)),
        key=lambda n: int(n.rsplit("_ep", 1)[1]),
    )  # fmt: skip
    players = ["latest", *(f"latest#{s}" for s in snaps)]
    league = run_league(players, checkpoint_dir=ckpt, games=args.league_games, temperature=0.7)
    versus = []
    for s in snaps:
        r = league.results["latest"][f"latest#{s}"]
        n = sum(r.values())
        wins = r["wins"] + 0.5 * r["draws"]
        versus.append([f"latest vs {s}", n, wins / n, ci(wilson_interval(wins, n))])
    print(league.table())
    table = print_table(
        f"\n{NAME}: team battle, red = 4 SmolLM2 LoRA slots; self-play ({args.sampling}) "
        f"vs the heuristic-trained team; rating of {slot}: {first:.2f} -> {last:.2f}",
        ["evaluation", "episodes", "win", "95% CI", "draw", "invalid"],
        rows,
    )
    table += "\n" + print_table(
        "\nself-play: the last checkpoint against its snapshots (T = 0.7, draws count 0.5)",
        ["match", "games", "score", "95% CI"],
        versus,
    )
    print(f"payoff heatmap: {plot_payoff(league, out / f'{NAME}.png')}")
    write_json(
        out / f"{NAME}.json",
        argv,
        {
            "configs": configs,
            "training": training,
            "rating": {"slot": slot, "first": first, "last": last},
            "league": league.to_dict(),
            "table": table,
            "reports": {k: r.to_dict() for k, r in reports.items()},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
