"""Learning benchmark 4: the staged curriculum env, stage advancement and reward per stage.

    python -m benchmarks.staged_curriculum                   # full: 15 min of training
    python -m benchmarks.staged_curriculum --minutes 30 --episodes-per-stage 10
    python -m benchmarks.staged_curriculum --quick           # smoke run, tiny model

``srl/staged-v0`` over the commons game with its default stages (abundant: regrowth x2,
cooperation 0.9; scarce: x1.5, 0.6; harsh: x1.25, 0.3). Four fishers: two SmolLM2 LoRA
slots (GRPO, asynchronous) and two scripted ``heuristic`` bots. The first
``--warmup`` training episodes are the warm-up (everyone gets the mean reward), then every
stage lasts ``--episodes-per-stage`` training episodes. Reported: the stage of every
training episode (a PNG of stage, reward and survival over training) and, per stage, the
training episodes spent there, the LoRA agents' mean reward and raw score, the survival
rate and the invalid-action rate; then a greedy evaluation of the trained population at
its final stage (``srl_trainers.evaluate`` restores the curriculum state it plays in).

Rewards in the training log are not comparable across stages (each has its own regrowth and
cooperation level), and a stage's few training episodes are too noisy to show a trend. So
the untrained and the trained population are also evaluated greedily at every stage, on
the same evaluation seeds (``evaluate(..., stage=k)``): the LoRA fishers' return, share of
the catch, the survival rate and the invalid rate per stage, before and after.
"""

from __future__ import annotations

import sys
from collections import defaultdict
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
from benchmarks.learning_commons import CONFIG as COMMONS

NAME = "staged_curriculum"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], minutes=15.0, episodes=32)
    parser.add_argument("--warmup", type=int, default=3, help="warm-up episodes (default 3)")
    parser.add_argument(
        "--episodes-per-stage", type=int, default=5, help="training episodes per stage (default 5)"
    )
    args = parser.parse_args(argv)
    out, work = output_dirs(args)
    import numpy as np

    from srl_trainers import MultiModelConfig, MultiModelTrainer
    from srl_trainers.evaluate import evaluate
    from srl_trainers.monitor import read_metrics
    from srl_trainers.plot import plot_runs

    fields = {**COMMONS, **model_fields(args)}
    fields.update(
        env="staged",
        training_mode="mixed",
        env_kwargs={"base": "coop_compete", "num_models": 4, "advance": "episodes"},
    )
    schedule = {"warmup_episodes": args.warmup, "episodes_per_stage": args.episodes_per_stage}
    if args.quick:
        fields.update(batch_size=4, group_size=2, episode_length=2, learning_rate=1e-2)
        schedule = {"warmup_episodes": 1, "episodes_per_stage": 1}
        fields["max_episodes"], args.episodes, args.minutes = 4, 2, None
    minutes = budget(args, fields)
    fields["env_kwargs"] = {**fields["env_kwargs"], **schedule}  # the options win over --set
    config = MultiModelConfig(
        **fields,
        seed=args.seed,
        run_name=f"{NAME}_s{args.seed}",
        log_dir=str(work / "runs"),
        checkpoint_dir=checkpoint_dir(work, f"{NAME}_s{args.seed}"),
    )
    import srl_envs

    stages = [st.name for st in srl_envs.make("srl/staged-v0", **config.env_kwargs).stages]
    per_stage_eval = {}
    for k in range(len(stages)):
        per_stage_eval[f"before/{k}"] = evaluate(config, num_episodes=args.episodes, stage=k)
    trainer = MultiModelTrainer(config)
    results = train_for(trainer, minutes)
    report = evaluate(trainer, num_episodes=args.episodes)
    print(report.table(), flush=True)
    for k in range(len(stages)):
        per_stage_eval[f"after/{k}"] = evaluate(trainer, num_episodes=args.episodes, stage=k)

    records = read_metrics(Path(results["log_dir"]) / "metrics.jsonl")
    per_stage: dict[float, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        stage = per_stage[rec["curriculum/stage"]]
        stage["episode"].append(rec["step"])
        stage["warmup"].append(rec["curriculum/warmup"])
        stage["reward"].append(np.mean([rec[f"model/{s}/reward"] for s in trainer.slots]))
        stage["harvest"].append(np.mean([rec[f"model/{s}/harvest"] for s in trainer.slots]))
        stage["survival"].append(rec.get("env/survival_rate", float("nan")))
        stage["invalid"].append(rec["env/invalid_rate"])
    names = [s.name for s in trainer.envs[0].stages]
    rows = [
        [
            f"{int(stage)} {names[int(stage)]}"
            if stage == int(stage)
            else f"{stage:.2f} (copies differ)",
            f"{int(min(s['episode']))}-{int(max(s['episode']))}",
            len(s["episode"]),
            int(sum(s["warmup"])),
            float(np.mean(s["reward"])),
            float(np.mean(s["harvest"])),
            float(np.nanmean(s["survival"])),
            float(np.mean(s["invalid"])),
        ]
        for stage, s in sorted(per_stage.items())
    ]
    lora = report.population
    table = print_table(
        f"\n{NAME}: staged commons (2 SmolLM2 LoRA fishers + 2 heuristic bots), warm-up "
        f"{fields['env_kwargs']['warmup_episodes']}, {fields['env_kwargs']['episodes_per_stage']} "
        f"episodes per stage, {results['total_episodes']} training episodes in "
        f"{results['training_time'] / 60:.1f} min; final greedy evaluation at stage "
        f"{trainer.envs[0].stage}: survival {report.game['survival_rate']:.2f} "
        f"{ci(report.game['survival_ci'])}, LoRA share {lora.figures.get('welfare_share', 0):.2f}, "
        f"invalid {lora.invalid_rate:.2f}",
        [
            "stage",
            "episodes",
            "count",
            "warm-up",
            "LoRA reward",
            "LoRA harvest/round",
            "survival",
            "invalid",
        ],
        rows,
    )

    def lora(when: str, k: int):
        return per_stage_eval[f"{when}/{k}"].population

    def survival(when: str, k: int) -> str:
        game = per_stage_eval[f"{when}/{k}"].game
        return f"{game['survival_rate']:.2f} {ci(game['survival_ci'])}"

    stage_table = print_table(
        f"\n{NAME}: every stage, untrained vs trained population, greedy, {args.episodes} "
        "evaluation episodes each (the same seeds)",
        [
            "stage",
            "LoRA return before",
            "95% CI",
            "after",
            "95% CI",
            "share before",
            "after",
            "survival before",
            "after",
            "invalid before",
            "after",
        ],
        [
            [
                f"{k} {name}",
                lora("before", k).mean_return,
                ci(lora("before", k).return_ci),
                lora("after", k).mean_return,
                ci(lora("after", k).return_ci),
                lora("before", k).figures.get("welfare_share", float("nan")),
                lora("after", k).figures.get("welfare_share", float("nan")),
                survival("before", k),
                survival("after", k),
                lora("before", k).invalid_rate,
                lora("after", k).invalid_rate,
            ]
            for k, name in enumerate(stages)
        ],
    )
    png = plot_runs(
        [results["log_dir"]],
        labels=["LoRA fishers"],
        key=[
            "curriculum/stage",
            "model/model_*/reward",
            "env/survival_rate",
            "model/model_*/harvest",
        ],
        out_png=out / f"{NAME}.png",
        smooth=0,
        title=f"{NAME}: stage and reward over training",
    )
    print(f"learning curves: {png}")
    write_json(
        out / f"{NAME}.json",
        argv,
        {
            "config": config.to_dict(),
            "table": table,
            "stage_table": stage_table,
            "final_evaluation": report.to_dict(),
            "per_stage_evaluation": {k: r.to_dict() for k, r in per_stage_eval.items()},
            "training": {k: results[k] for k in ("total_episodes", "training_time")},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
