"""Learning benchmark 1: a team of four SmolLM2 LoRA slots against a scripted team in 4v4
team battle. Does the team's win rate rise within a CPU budget?

    python -m benchmarks.learning_team_battle                # full: 20 min of training
    python -m benchmarks.learning_team_battle --opponent concentrate --minutes 10
    python -m benchmarks.learning_team_battle --quick        # smoke run, tiny random model

Red (``red_0..red_3``) is played by four LoRA adapters on one SmolLM2-135M base, trained
with GRPO, each slot on its own agent's turns (ASYNCHRONOUS updates; the preset says why not
one shared policy); blue is a scripted team, by default the
``heuristic`` equal split (2 troops per field: 8 per field for the team), with
``--opponent`` the ``concentrate`` bot (each player piles its troops on a random 3 of the 5
fields) or ``random``. Rewards are the team's (cooperation 1.0). The untrained population is
evaluated first (fresh adapters equal the base model), then the population trains for
``--minutes``, then it is evaluated again on the same evaluation seeds: against the
trained-against team sampled at temperature 0.7 and greedy, and greedy against the other
two bots. Against the heuristic the game is deterministic, so greedy decoding replays one
game there. The trainer evaluates on 8 games every 10 episodes (the preset's eval_interval)
and keeps the checkpoint of the best greedy evaluation; it is evaluated like the last one
(the ``best/*`` rows). Output: a table, the training curve's stability (its 10-episode mean: where it
first passed 0.5 and its largest fall after that), the four greedy answers after training,
``learning_team_battle.json`` (every report) and ``learning_team_battle.png`` (learning
curves) in ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.common import (
    budget,
    checkpoint_dir,
    ci,
    curve_stability,
    make_parser,
    model_fields,
    output_dirs,
    print_table,
    train_for,
    write_json,
)
from srl_trainers.presets import TEAM_BATTLE

NAME = "learning_team_battle"
# The preset (srl_trainers.presets.TEAM_BATTLE, where its settings are explained): the same
# settings as `python -m srl_trainers.run` and examples/configs/team_battle.yaml, trained for
# --minutes or --train-episodes. This script evaluates before and after training itself, on
# --episodes games; the trainer's own evaluations (every eval_interval episodes, which choose
# the best checkpoint) play 8 games each, and the best checkpoint is then evaluated here too.
CONFIG = {**TEAM_BATTLE, "max_episodes": 100_000, "eval_episodes": 8}
QUICK = dict(
    num_models=2,
    env_kwargs={**CONFIG["env_kwargs"], "team_size": 2},
    batch_size=4,
    group_size=2,
    max_episodes=2,
    learning_rate=1e-2,
)
BOTS = ("heuristic", "concentrate", "random")
# the LoRA slots only (model_<i>_<type>): "model/*" would average the scripted team in
PLOT_KEYS = [
    "model/model_*/win_rate",
    "env/invalid_rate",
    "model/model_*/reward",
    "model/model_*/fields_won",
]


def evaluations(opponent: str) -> list[tuple[str, float]]:
    """(opponent, temperature) of the evaluations before and after training: the trained-against
    team sampled at T=0.7 and greedy, then the other bots greedy."""
    return [(opponent, 0.7), (opponent, 0.0)] + [(b, 0.0) for b in BOTS if b != opponent]


def row(label: str, report) -> list:
    red = report.teams["red"]
    return [
        label,
        report.num_episodes,
        red.win_rate,
        ci(red.win_ci),
        red.draw_rate,
        red.invalid_rate,
        ci(red.invalid_ci),
        red.figures.get("fields_won_per_round", float("nan")),
        red.mean_return,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], minutes=20.0, episodes=64)
    parser.add_argument(
        "--opponent",
        default="heuristic",
        choices=BOTS,
        help="the scripted team trained against (default heuristic)",
    )
    parser.add_argument(
        "--format-penalty",
        type=float,
        default=None,
        metavar="P",
        help="reward lost per invalid answer (default 0.5, the preset's; the env's own is 0.1). "
        "An invalid answer plays the equal split, which draws against the heuristic team: "
        "with a penalty below a loss's cost, invalid answers can out-score valid ones",
    )
    args = parser.parse_args(argv)
    out, work = output_dirs(args)
    from srl_trainers import MultiModelConfig, MultiModelTrainer
    from srl_trainers.evaluate import evaluate
    from srl_trainers.plot import metric_curve, plot_runs

    fields = {**CONFIG, **model_fields(args), **(QUICK if args.quick else {})}
    if args.quick:
        args.episodes, args.minutes = 2, None
    minutes = budget(args, fields)
    fields["opponent_policy"] = args.opponent
    if args.format_penalty is not None:
        fields["env_kwargs"] = {**fields["env_kwargs"], "format_penalty": args.format_penalty}
    config = MultiModelConfig(
        **fields,
        seed=args.seed,
        run_name=f"{NAME}_s{args.seed}",
        log_dir=str(work / "runs"),
        checkpoint_dir=checkpoint_dir(work, f"{NAME}_s{args.seed}"),
    )
    reports = {}
    evals = evaluations(args.opponent)
    for opponent, t in evals:
        reports[f"before/{opponent}/T{t:g}"] = evaluate(
            config, num_episodes=args.episodes, opponent=opponent, temperature=t
        )
    print(reports[f"before/{args.opponent}/T0.7"].table(), flush=True)

    trainer = MultiModelTrainer(config)
    results = train_for(trainer, minutes)
    for opponent, t in evals:
        reports[f"after/{opponent}/T{t:g}"] = evaluate(
            trainer, num_episodes=args.episodes, opponent=opponent, temperature=t
        )
    print(reports[f"after/{args.opponent}/T0.7"].table(), flush=True)
    # the checkpoint of the best greedy evaluation during training (keep_best_checkpoint)
    best = results.get("best_checkpoint")
    if best is not None:
        if best["episode"] == trainer.current_episode:  # the last one: the after figures
            for opponent, t in evals:
                reports[f"best/{opponent}/T{t:g}"] = reports[f"after/{opponent}/T{t:g}"]
        else:
            path = str(Path(results["checkpoint_dir"]) / best["checkpoint_id"])
            for opponent, t in evals:
                reports[f"best/{opponent}/T{t:g}"] = evaluate(
                    path, num_episodes=args.episodes, opponent=opponent, temperature=t
                )

    episodes, minutes = results["total_episodes"], results["training_time"] / 60
    strategy = config.weight_update_strategy
    table = print_table(
        f"\n{NAME}: team red ({config.num_models} SmolLM2 LoRA slots, GRPO, {strategy}) vs scripted teams "
        f"(T = evaluation temperature, 0 = greedy); training: {episodes} episodes in {minutes:.1f} min vs {args.opponent}",
        [
            "evaluation",
            "episodes",
            "win",
            "95% CI",
            "draw",
            "invalid",
            "95% CI",
            "fields won",
            "return",
        ],
        [row(label, r) for label, r in reports.items()],
    )
    png = plot_runs(
        [results["log_dir"]],
        labels=["team red (mean of the 4 slots)"],
        key=PLOT_KEYS,
        out_png=out / f"{NAME}.png",
        smooth=5,
        title=f"{NAME}: training curves vs {args.opponent}",
    )
    print(f"learning curves: {png}")
    # the training curve (T = 1 sampling, the trained-against team): did it hold once it rose?
    _, win_rates = metric_curve(results["log_dir"], "model/model_*/win_rate")
    curve = curve_stability(win_rates)
    print(
        f"training win rate ({curve['window']}-episode mean): first above {curve['level']} at "
        f"episode {curve['first_above']}, then at most {curve['max_drop']:.2f} below its peak; "
        f"final {curve['final']:.2f}"
    )
    if best is not None:
        print(
            f"best checkpoint: episode {best['episode']} (greedy win rate {best['win_rate']:.2f} "
            f"on {config.eval_episodes} games during training): the best/* rows"
        )
    greedy = reports.get(f"after/{args.opponent}/T0")
    if greedy is not None:  # the one answer per agent that greedy decoding plays
        answers = ", ".join(f"{a}: {t[0]!r}" for a, t in greedy.first_game.items() if t)
        print(f"greedy answers after training (first game): {answers}")
    write_json(
        out / f"{NAME}.json",
        argv,
        {
            "config": config.to_dict(),
            "training": {
                k: results[k] for k in ("total_episodes", "training_time", "best_checkpoint")
            },
            "curve": curve,
            "table": table,
            "reports": {k: r.to_dict() for k, r in reports.items()},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
