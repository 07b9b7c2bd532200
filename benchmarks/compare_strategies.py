"""Learning benchmark 3: the four weight-update strategies on the same env, seeds and budget.

    python -m benchmarks.compare_strategies                          # full: 2 seeds x 5 min each
    python -m benchmarks.compare_strategies --seeds 0 1 2 --minutes 8
    python -m benchmarks.compare_strategies --train-episodes 32      # RESULTS.md's run
    python -m benchmarks.compare_strategies --strategies synchronized federated --minutes 3
    python -m benchmarks.compare_strategies --quick                  # smoke run, tiny model

The setting of ``learning_team_battle`` (four SmolLM2 LoRA slots as team red against the
scripted ``heuristic`` team, GRPO, the same settings), trained once per strategy and seed
with the same budget:

* ``synchronized``: gradients averaged over the four slots before each step (one shared
  policy, four agents' data per step);
* ``asynchronous``: every slot steps on its own turns (four independent learners);
* ``federated``: independent steps, then a performance-weighted exact average of the
  group's LoRA updates mixed back with strength 0.5;
* ``selective``: only the top half by recent reward steps.

Reported per strategy (seeds pooled): the team's win rate against the trained-against team after
training, sampled at temperature 0.7 on the evaluation seeds, with a 95% Wilson interval
over all evaluation episodes; the mean training reward over the last ``reward_window``
episodes with a 95% interval over seeds; optimizer steps (summed over the slots);
training episodes and wall time; and the divergence between the group's adapters at the
end (mean pairwise relative distance of their LoRA updates, 0 = identical). Output: a
table, ``compare_strategies.json`` and ``compare_strategies.png`` (the learning curves).
"""

from __future__ import annotations

import sys

from benchmarks.common import (
    budget,
    ci,
    make_parser,
    model_fields,
    output_dirs,
    print_table,
    train_for,
    write_json,
)
from benchmarks.learning_team_battle import CONFIG, QUICK

NAME = "compare_strategies"
STRATEGIES = ("synchronized", "asynchronous", "federated", "selective")
EVAL_TEMPERATURE = 0.7


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], minutes=5.0, episodes=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (default 0 1)")
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        choices=STRATEGIES,
        help="strategies to compare (default: all four)",
    )
    args = parser.parse_args(argv)
    out, work = output_dirs(args)
    import numpy as np

    from srl_trainers import MultiModelConfig, MultiModelTrainer
    from srl_trainers.evaluate import evaluate, mean_interval, wilson_interval
    from srl_trainers.lora import adapter_divergence
    from srl_trainers.plot import plot_runs

    fields = {**CONFIG, **model_fields(args), **(QUICK if args.quick else {})}
    if args.quick:
        args.episodes, args.minutes, args.seeds = 2, None, args.seeds[:1]
    minutes = budget(args, fields)
    runs: dict[str, list[dict]] = {s: [] for s in args.strategies}
    run_dirs, labels = [], []
    for seed in args.seeds:
        for strategy in args.strategies:
            name = f"{NAME}_{strategy}_s{seed}"
            config = MultiModelConfig(
                **{**fields, "weight_update_strategy": strategy},
                seed=seed,
                run_name=name,
                log_dir=str(work / "runs"),
                checkpoint_dir=str(work / "checkpoints" / name),
            )
            trainer = MultiModelTrainer(config)
            results = train_for(trainer, minutes)
            report = evaluate(trainer, num_episodes=args.episodes, temperature=EVAL_TEMPERATURE)
            summary = results["final_model_states"]
            pool = next(iter(trainer.pools.values()))
            runs[strategy].append(
                {
                    "seed": seed,
                    "episodes": results["total_episodes"],
                    "minutes": results["training_time"] / 60,
                    "wins": report.teams["red"].wins,
                    "eval_episodes": report.teams["red"].episodes,
                    "invalid_rate": report.teams["red"].invalid_rate,
                    "recent_reward": float(
                        np.mean([summary[s]["avg_reward"] for s in trainer.slots])
                    ),
                    "updates": int(sum(summary[s]["update_count"] for s in trainer.slots)),
                    "divergence": adapter_divergence(pool.model, trainer.slots),
                    "report": report.to_dict(),
                }
            )
            run_dirs.append(results["log_dir"])
            labels.append(f"{strategy} s{seed}")
            print(
                f"{name}: win {report.teams['red'].win_rate:.2f}, {results['total_episodes']} episodes",
                flush=True,
            )
    per_run = (
        f"{fields['max_episodes']} episodes per run"
        if minutes is None
        else f"{minutes:g} min per run"
    )
    rows = []
    for strategy, rs in runs.items():
        wins, n = sum(r["wins"] for r in rs), sum(r["eval_episodes"] for r in rs)
        reward, lo, hi = mean_interval([r["recent_reward"] for r in rs])
        rows.append(
            [
                strategy,
                len(rs),
                wins / n,
                ci(wilson_interval(wins, n)),
                reward,
                ci((lo, hi), 3),
                float(np.mean([r["invalid_rate"] for r in rs])),
                float(np.mean([r["updates"] for r in rs])),
                float(np.mean([r["episodes"] for r in rs])),
                float(np.mean([r["minutes"] for r in rs])),
                float(np.mean([r["divergence"] for r in rs])),
            ]
        )
    table = print_table(
        f"\n{NAME}: team battle, 4 SmolLM2 LoRA slots vs {CONFIG['opponent_policy']}, "
        f"{per_run}, "
        f"seeds {args.seeds}; win rate at T={EVAL_TEMPERATURE} over {args.episodes} evaluation "
        f"episodes per seed",
        [
            "strategy",
            "seeds",
            "win",
            "95% CI",
            "recent reward",
            "95% CI (seeds)",
            "invalid",
            "updates",
            "episodes",
            "minutes",
            "divergence",
        ],
        rows,
    )
    png = plot_runs(
        run_dirs,
        labels=labels,
        key=["model/*/reward", "env/invalid_rate", "strategy/divergence"],
        out_png=out / f"{NAME}.png",
        smooth=5,
        title=f"{NAME}: training curves",
    )
    print(f"learning curves: {png}")
    write_json(
        out / f"{NAME}.json",
        argv,
        {
            "config": fields,
            "seeds": args.seeds,
            "minutes": minutes,
            "train_episodes": args.train_episodes,
            "table": table,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
