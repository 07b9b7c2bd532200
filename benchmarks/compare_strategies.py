"""Learning benchmark 3: the four weight-update strategies on the same env, seeds and budget.

    python -m benchmarks.compare_strategies                          # full: 2 seeds x 5 min each
    python -m benchmarks.compare_strategies --seeds 0 1 2 --minutes 8
    python -m benchmarks.compare_strategies --train-episodes 32      # RESULTS.md's run
    python -m benchmarks.compare_strategies --strategies synchronized federated --minutes 3
    python -m benchmarks.compare_strategies --train-episodes 32 --seeds 0 1 2 \
        --reuse benchmarks/results/compare_strategies.json   # add seed 2, keep seeds 0-1
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

A comparison takes hours on a CPU, so the JSON is rewritten after every run, and
``--reuse`` takes the runs of an earlier JSON (of the asked strategies and seeds) instead of
training them again, provided they were trained with the same settings and budget: that
adds seeds to a finished comparison, or goes on with one that was stopped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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
from benchmarks.learning_team_battle import CONFIG, QUICK

NAME = "compare_strategies"
STRATEGIES = ("synchronized", "asynchronous", "federated", "selective")
EVAL_TEMPERATURE = 0.7
# the LoRA slots only (model_<i>_<type>): "model/*" would average the scripted team in
PLOT_KEYS = ["model/model_*/reward", "env/invalid_rate", "strategy/divergence"]

# when a run checkpoints and logs: it does not change what is trained
UNTRAINED_FIELDS = ("save_interval", "log_metrics_interval")


def reusable_runs(
    paths: list[str], setup: dict[str, Any], episodes: int
) -> dict[tuple[str, int], dict]:
    """``{(strategy, seed): run}`` from earlier ``compare_strategies.json`` files, each checked
    to have been trained with ``setup`` (the preset's fields and the budget) and evaluated
    on ``episodes`` games; a file that differs exits, naming what differs. A config field
    that one side leaves out counts as its MultiModelConfig default, so a file written
    before the preset set a field still matches a command that sets it to the default; the
    checkpoint and logging intervals (``UNTRAINED_FIELDS``) are not compared."""
    from srl_trainers.config import MultiModelConfig

    defaults = MultiModelConfig().to_dict()
    setup = json.loads(json.dumps(setup, default=float))  # as the JSON stores it
    found: dict[tuple[str, int], dict] = {}
    for path in paths:
        try:
            saved = json.loads(Path(path).read_text())
            old = {key: saved[key] for key in setup}
            runs = saved["runs"]
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(
                f"--reuse {path}: not a compare_strategies.json ({type(exc).__name__}: {exc})"
            ) from None
        differ = [
            f"config.{k}"
            for k in sorted(setup["config"].keys() | old["config"].keys())
            if k not in UNTRAINED_FIELDS
            and setup["config"].get(k, defaults.get(k)) != old["config"].get(k, defaults.get(k))
        ]
        differ += [k for k in setup if k != "config" and setup[k] != old[k]]
        if differ:
            raise SystemExit(
                f"--reuse {path}: its runs were trained with other settings ({', '.join(differ)} "
                "differ); pass the same options as its command, or leave it out to train anew"
            )
        asked = saved.get("episodes")  # absent in older files: each run's count then
        for strategy, strategy_runs in runs.items():
            for run in strategy_runs:
                played = run["eval_episodes"] if asked is None else asked
                if played != episodes:
                    raise SystemExit(
                        f"--reuse {path}: {strategy} seed {run['seed']} was evaluated on "
                        f"{played} episodes, this comparison on {episodes}; pass "
                        f"--episodes {played}"
                    )
                found[(strategy, run["seed"])] = run
    return found


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
    parser.add_argument(
        "--reuse",
        nargs="+",
        default=[],
        metavar="JSON",
        help="earlier compare_strategies.json files whose runs (of the asked strategies and "
        "seeds) are taken instead of trained again; they must have been trained with the same "
        "settings and budget, else the script exits naming what differs",
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
    setup = {"config": fields, "minutes": minutes}
    earlier = reusable_runs(args.reuse, setup, args.episodes)
    runs: dict[str, list[dict]] = {s: [] for s in args.strategies}
    run_dirs, labels = [], []

    def save(**extra: Any) -> None:
        """The JSON of every run so far (``--reuse`` reads it back)."""
        info = {
            "seeds": args.seeds,
            "episodes": args.episodes,
            "train_episodes": args.train_episodes,
        }
        write_json(out / f"{NAME}.json", argv, {**setup, **info, **extra, "runs": runs})

    for seed in args.seeds:
        for strategy in args.strategies:
            name = f"{NAME}_{strategy}_s{seed}"
            if (strategy, seed) in earlier:
                run = earlier[(strategy, seed)]
                runs[strategy].append(run)
                log_dir = Path(run.get("log_dir", work / "runs" / name))
                if log_dir.is_dir():  # curves of a reused run: where it logged, if still there
                    run_dirs.append(str(log_dir))
                    labels.append(f"{strategy} s{seed}")
                else:
                    print(f"{name}: no logs at {log_dir}, left out of the PNG", flush=True)
                print(f"{name}: reused, {run['wins']}/{run['eval_episodes']} wins", flush=True)
                continue
            config = MultiModelConfig(
                **{**fields, "weight_update_strategy": strategy},
                seed=seed,
                run_name=name,
                log_dir=str(work / "runs"),
                checkpoint_dir=checkpoint_dir(work, name),
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
                    "log_dir": str(results["log_dir"]),
                    "report": report.to_dict(),
                }
            )
            run_dirs.append(results["log_dir"])
            labels.append(f"{strategy} s{seed}")
            print(
                f"{name}: win {report.teams['red'].win_rate:.2f}, {results['total_episodes']} episodes",
                flush=True,
            )
            save(complete=False)  # so far, for --reuse if the comparison is stopped
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
    if run_dirs:
        png = plot_runs(
            run_dirs,
            labels=labels,
            key=PLOT_KEYS,
            out_png=out / f"{NAME}.png",
            smooth=5,
            title=f"{NAME}: training curves",
        )
        print(f"learning curves: {png}")
    else:  # every run reused, and none of their logs is here any more
        print("learning curves: none, no run's logs are here", flush=True)
    save(complete=True, table=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
