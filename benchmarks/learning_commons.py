"""Learning benchmark 2: the commons game (coop_compete) at two cooperation levels.

    python -m benchmarks.learning_commons                    # full: 10 min per level
    python -m benchmarks.learning_commons --minutes 5 --levels 0.9 0.0
    python -m benchmarks.learning_commons --train-episodes 16 --episodes 16  # RESULTS.md's run
    python -m benchmarks.learning_commons --opponents heuristic heuristic --no-safe-hint \
        --set 'env_kwargs={num_models: 4}'     # the earlier default: two heuristic bots
    python -m benchmarks.learning_commons --quick            # smoke run, tiny random model

Four fishers share a lake (capacity 100, the stock doubles each round, max 25 per head).
``player_0`` and ``player_1`` are two SmolLM2 LoRA slots (GRPO, ASYNCHRONOUS updates: two
independent policies); ``player_2`` is the scripted ``greedy`` bot, which takes the maximum
every round, and ``player_3`` the ``heuristic`` bot, which takes its share of the safe total
(``--opponents``). Beside a greedy fisher the untrained LoRA fishers kill the stock, so
whether training makes them hold back can show; beside two heuristic bots the untrained
ones already keep the lake alive (RESULTS.md section 2). The LoRA agents' prompt states the
rules, the stock, the last rounds and the safe total with its per-head share (the env's
``safe_hint``; ``--no-safe-hint`` leaves it out, and a sustainable harvest then has to be
found from the rewards alone), and an invalid answer costs 0.5 (the env's own penalty is
0.1, at which one fisher learned to abstain in invalid text). The same population trains once per
cooperation level: with high cooperation (0.9) every agent's reward is nearly the group's,
with 0 it is zero-sum (own harvest against the others' mean). Before and after training it
is evaluated on the same evaluation seeds, greedy and sampled at temperature 0.7 (greedy
decoding of an untrained model is one fixed answer; sampling shows how reliably a policy
keeps the lake alive). Reported: stock survival rate (Wilson interval), group welfare (the
summed raw score of the four agents per episode: 1.0 per agent and round is the sustainable
pace), and the LoRA agents' share of the group's harvest (0.5 = as much as the two bots).
Goals: at 0.9 the trained population keeps the stock alive more often than the untrained
one; at 0.0 the LoRA agents' share rises. The defaults are the settings with which both
were met (RESULTS.md section 2).
"""

from __future__ import annotations

import argparse
import sys

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
from srl_envs.coop_compete.bots import BOTS

NAME = "learning_commons"
CONFIG = dict(
    env="coop_compete",
    num_models=2,
    env_kwargs={"num_models": 4, "format_penalty": 0.5},
    opponent_policy="heuristic",
    training_mode="cooperative",
    weight_update_strategy="asynchronous",
    episode_length=5,
    batch_size=16,
    group_size=4,
    learning_rate=1e-3,
    beta=0.0,
    scale_rewards=False,  # as in learning_team_battle: small groups, no std blow-up
    temperature=1.0,
    max_new_tokens=8,
    response_prefix="HARVEST:",
    max_episodes=100_000,  # the --minutes budget stops each run
    save_interval=10,  # a run stopped early can still be evaluated from its last checkpoint
)
QUICK = dict(batch_size=4, group_size=2, episode_length=2, max_episodes=2, learning_rate=1e-2)
TEMPERATURES = (0.0, 0.7)
OPPONENTS = ("greedy", "heuristic")  # player_2, player_3 (--opponents)


def opponent_mapping(config, opponents: list[str]) -> dict[str, str] | None:
    """The policy mapping for ``--opponents``: the LoRA slots play player_0 and player_1, the
    two bots the others; None (the config's default mapping) when both are its opponent."""
    if all(name == config.opponent_policy for name in opponents):
        return None
    slots = config.slot_ids()
    bots = {f"player_{2 + i}": f"bot:{name}" for i, name in enumerate(opponents)}
    return {"player_0": slots[0], "player_1": slots[1], **bots}


def row(label: str, report) -> list:
    game, lora = report.game, report.population
    return [
        label,
        report.num_episodes,
        game["survival_rate"],
        ci(game["survival_ci"]),
        game["welfare"],
        ci(game["welfare_ci"]),
        lora.figures.get("welfare_share", float("nan")),
        lora.figures.get("harvest_per_round", float("nan")),
        lora.invalid_rate,
        lora.mean_return,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], minutes=10.0, episodes=32)
    parser.add_argument(
        "--levels",
        type=float,
        nargs="+",
        default=[0.9, 0.0],
        help="cooperation levels to train at (default 0.9 0.0)",
    )
    parser.add_argument(
        "--safe-hint",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="state the safe total and its per-head share in the prompt (default; the env's "
        "original prompt, whose share the untrained model copies). --no-safe-hint leaves it out",
    )
    parser.add_argument(
        "--opponents",
        nargs=2,
        default=list(OPPONENTS),
        choices=sorted(BOTS),
        metavar="BOT",
        help="the scripted fishers player_2 and player_3 (default: greedy heuristic, one that "
        "always takes the maximum beside one that takes the safe share, so the LoRA fishers "
        "must hold back for the stock to last; beside 'heuristic heuristic' the untrained "
        "fishers already keep the lake alive)",
    )
    args = parser.parse_args(argv)
    out, work = output_dirs(args)
    from srl_trainers import MultiModelConfig, MultiModelTrainer
    from srl_trainers.evaluate import evaluate
    from srl_trainers.plot import plot_runs

    fields = {**CONFIG, **model_fields(args), **(QUICK if args.quick else {})}
    if args.quick:
        args.episodes, args.minutes = 2, None
    minutes = budget(args, fields)  # after --set, so the slot ids below are the final ones
    # With the hint the prompt's example is the safe share and the untrained model copies it
    # (RESULTS.md section 2); --no-safe-hint leaves it to be learned from the rewards.
    fields["env_kwargs"] = {**fields["env_kwargs"], "safe_hint": args.safe_hint}
    mapping = opponent_mapping(MultiModelConfig(**fields), args.opponents)
    if mapping is not None:
        fields["policy_mapping"] = mapping
    rows, reports, training, run_dirs, configs = [], {}, {}, [], {}
    for level in args.levels:
        tag = f"c{level:g}"
        config = MultiModelConfig(
            **fields,
            cooperation_strength=level,
            seed=args.seed,
            run_name=f"{NAME}_{tag}_s{args.seed}",
            log_dir=str(work / "runs"),
            checkpoint_dir=checkpoint_dir(work, f"{NAME}_{tag}_s{args.seed}"),
        )
        configs[tag] = config.to_dict()
        for t in TEMPERATURES:
            report = evaluate(config, num_episodes=args.episodes, temperature=t)
            reports[f"{tag}/before/T{t:g}"] = report
            rows.append(row(f"c={level:g} before, T={t:g}", report))
        trainer = MultiModelTrainer(config)
        results = train_for(trainer, minutes)
        training[tag] = {k: results[k] for k in ("total_episodes", "training_time")}
        run_dirs.append(results["log_dir"])
        for t in TEMPERATURES:
            report = evaluate(trainer, num_episodes=args.episodes, temperature=t)
            reports[f"{tag}/after/T{t:g}"] = report
            rows.append(row(f"c={level:g} after {results['total_episodes']} ep, T={t:g}", report))
        print(reports[f"{tag}/after/T0"].table(), flush=True)
    table = print_table(
        f"\n{NAME}: 2 SmolLM2 LoRA fishers + bots {' + '.join(args.opponents)}, 4 agents, "
        f"{fields['episode_length']} rounds; share = LoRA agents' share of the group harvest",
        [
            "evaluation",
            "episodes",
            "survival",
            "95% CI",
            "welfare",
            "95% CI",
            "LoRA share",
            "LoRA harvest/round",
            "invalid",
            "LoRA return",
        ],
        rows,
    )
    png = plot_runs(
        run_dirs,
        labels=[f"cooperation {lvl:g}" for lvl in args.levels],
        key=[
            "model/model_*/reward",
            "env/survival_rate",
            "model/model_*/harvest",
            "env/invalid_rate",
        ],
        out_png=out / f"{NAME}.png",
        smooth=5,
        title=f"{NAME}: training curves (LoRA agents)",
    )
    print(f"learning curves: {png}")
    write_json(
        out / f"{NAME}.json",
        argv,
        {
            "levels": args.levels,
            "configs": configs,
            "training": training,
            "table": table,
            "reports": {k: r.to_dict() for k, r in reports.items()},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
