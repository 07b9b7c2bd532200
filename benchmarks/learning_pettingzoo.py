"""Learning benchmark: PettingZoo's classic games through the text bridge.

    python -m benchmarks.learning_pettingzoo                      # full: 20 min per game
    python -m benchmarks.learning_pettingzoo --games tictactoe --minutes 10
    python -m benchmarks.learning_pettingzoo --train-episodes 40  # a fixed episode budget
    python -m benchmarks.learning_pettingzoo --quick              # smoke run, tiny random model

One SmolLM2 LoRA policy (GRPO) learns tic-tac-toe and connect four (``srl/pz-tictactoe-v3``,
``srl/pz-connect_four-v3``) against PettingZoo's random legal player. It trains with
``seat_order="random"``: every game deals it the first or the second seat, so one policy
learns both. Before and after training it is evaluated greedily on the same evaluation seeds,
moving first and moving second (``seat_order="fixed"`` and a policy mapping that seats it),
against the random legal player (the goal) and against the heuristic (win, else block).
An invalid answer (unparseable, or an illegal move such as a taken cell) is replaced by a
random legal move and costs ``--format-penalty``. Reported per cell: win, draw and loss rates
with 95% Wilson intervals, and the invalid-answer rate (illegal or unparseable moves among
the LoRA policy's turns). With ``--keep-best`` the trainer also plays 32 greedy games on
validation seeds every 10 episodes (``eval_seeds="validation"``, disjoint from the held-out
games of the table) and keeps the checkpoint of the best one (``keep_best_checkpoint``);
when that is not the last, the ``best`` rows evaluate it like the last one. Goal: the win
rate against the random player rises by more than the 95% intervals, with fewer than 5%
invalid answers. The JSON keeps every report and what the trained policy writes in a few
evaluation games.
"""

from __future__ import annotations

import argparse
import asyncio
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

NAME = "learning_pettingzoo"
GAMES = {
    "tictactoe": ("srl/pz-tictactoe-v3", ("player_1", "player_2")),
    "connect_four": ("srl/pz-connect_four-v3", ("player_0", "player_1")),
}
CONFIG = dict(
    num_models=1,
    opponent_policy="random",
    training_mode="competitive",
    batch_size=16,
    group_size=4,
    learning_rate=5e-4,
    beta=0.0,
    scale_rewards=False,
    # an adaptive entropy bonus among the move's digits: without it the policy collapsed onto
    # its untrained mode within 10 episodes (action entropy 1.0 -> 0.01 nats) and greedy play
    # never changed (RESULTS.md section 5)
    entropy_scope="numbers",
    entropy_target=0.5,
    entropy_coef_step=0.005,
    temperature=1.0,
    max_new_tokens=6,
    response_prefix="auto",  # "MOVE:" prefilled, the model writes the move
    max_episodes=100_000,  # the --minutes budget stops each run
    save_interval=10,
    log_metrics_interval=1,
)
# --keep-best: greedy evaluations during training on validation seeds (disjoint from the
# held-out games reported here) keep the best checkpoint, against the digits' entropy swings
# (RESULTS.md section 5); their time counts in the --minutes budget (32 games every 10
# episodes: about 30% of it in tic-tac-toe on a 2-core CPU)
KEEP_BEST = dict(
    eval_episodes=32,
    eval_temperature=0.0,
    eval_interval=10,
    eval_seeds="validation",
    keep_best_checkpoint=True,
)
QUICK = dict(batch_size=4, group_size=2, max_episodes=2, learning_rate=1e-2, kv_cache_size=1024)
QUICK_KEEP_BEST = dict(eval_episodes=2, eval_interval=1)
OPPONENTS = ("random", "heuristic")
SEATS = ("first", "second")


def seat_overrides(config, seats: tuple[str, str], seat: str, env_kwargs: dict) -> dict:
    """Evaluation overrides that put the LoRA slot in ``seat`` with fixed seats."""
    slot = config.slot_ids()[0]
    mine, theirs = seats if seat == "first" else seats[::-1]
    return {
        "policy_mapping": {mine: slot, theirs: f"bot:{config.opponent_policy}"},
        "env_kwargs": {**env_kwargs, "seat_order": "fixed"},
    }


def row(label: str, report) -> list:
    lora = report.population
    return [
        label,
        report.num_episodes,
        lora.win_rate,
        ci(lora.win_ci),
        lora.draw_rate,
        lora.loss_rate,
        lora.invalid_rate,
        ci(lora.invalid_ci),
    ]


def samples(trainer, n: int = 2) -> list[dict]:
    """What the trained policy writes: the turns of ``n`` evaluation games (greedy)."""
    rollout = trainer.rollout
    result = asyncio.run(rollout.play(0, 0.0, 0.0, evaluation=True, temperature=0.0))
    copies = sorted({t.copy for t in result.turns})[:n]
    return [
        {"copy": t.copy, "agent": t.agent, "turn": t.round, "text": t.text, "invalid": t.invalid}
        for t in result.turns
        if t.copy in copies
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], minutes=20.0, episodes=64)
    parser.add_argument(
        "--games", nargs="+", choices=sorted(GAMES), default=list(GAMES), help="games to train"
    )
    parser.add_argument(
        "--format-penalty",
        type=float,
        default=0.5,
        help="reward cost of an invalid answer (default 0.5; the bridge's own default is 0.1)",
    )
    parser.add_argument(
        "--move-order",
        choices=("fixed", "random"),
        default="fixed",
        help="how the prompt lists the legal moves: fixed (default: lowest first; the "
        "untrained model's likeliest answer is then the first one, a fixed opening) or in a "
        "seeded random order each turn (the bridge's move_order), in training and evaluation",
    )
    parser.add_argument(
        "--temperatures",
        nargs="+",
        type=float,
        default=[0.0, 0.7],
        help="evaluation temperatures (default 0 0.7; 0 decodes greedily)",
    )
    parser.add_argument(
        "--eval-checkpoint",
        default=None,
        metavar="DIR",
        help="evaluate this checkpoint of an earlier run (one game in --games) instead of "
        "training: its 'before' rows are the untrained model's, as in a full run",
    )
    parser.add_argument(
        "--opponents",
        nargs="+",
        choices=OPPONENTS,
        default=list(OPPONENTS),
        help="opponents evaluated against (training is always against random)",
    )
    parser.add_argument(
        "--keep-best",
        action="store_true",
        help="evaluate greedily on 32 validation games every 10 episodes during training and "
        "also report the best checkpoint (the 'best' rows); the evaluations use the budget",
    )
    args: argparse.Namespace = parser.parse_args(argv)
    if args.eval_checkpoint is not None and len(args.games) != 1:
        parser.error("--eval-checkpoint evaluates one run: name its game, e.g. --games tictactoe")
    out, work = output_dirs(args)
    from srl_trainers import MultiModelConfig, MultiModelTrainer
    from srl_trainers.evaluate import evaluate
    from srl_trainers.plot import plot_runs

    keep_best = KEEP_BEST if args.keep_best else {}
    quick = {**QUICK, **(QUICK_KEEP_BEST if args.keep_best else {})} if args.quick else {}
    base = {**CONFIG, **keep_best, **model_fields(args), **quick}
    if args.quick:
        args.episodes, args.minutes = 4, None
    minutes = budget(args, base)
    rows, reports, training, configs, written, run_dirs = [], {}, {}, {}, {}, []
    for game in args.games:
        env_id, seats = GAMES[game]
        env_kwargs = {
            "seat_order": "random",
            "format_penalty": args.format_penalty,
            "move_order": args.move_order,
        }
        config = MultiModelConfig(
            **base,
            env=env_id,
            env_kwargs=env_kwargs,
            seed=args.seed,
            run_name=f"{NAME}_{game}_s{args.seed}",
            log_dir=str(work / "runs"),
            checkpoint_dir=checkpoint_dir(work, f"{NAME}_{game}_s{args.seed}"),
        )
        configs[game] = config.to_dict()

        def measure(
            target, when: str, config=config, seats=seats, game=game, env_kwargs=env_kwargs
        ) -> None:
            for t in args.temperatures:
                for opponent in args.opponents:
                    for seat in SEATS:
                        report = evaluate(
                            target,
                            num_episodes=args.episodes,
                            opponent=opponent,
                            temperature=t,
                            overrides=seat_overrides(config, seats, seat, env_kwargs),
                        )
                        reports[f"{game}/{when}/T{t:g}/{opponent}/{seat}"] = report
                        rows.append(row(f"{game} {when} T={t:g} vs {opponent}, {seat}", report))
                        print(rows[-1], flush=True)

        measure(config, "before")
        if args.eval_checkpoint is not None:
            meta = json.loads((Path(args.eval_checkpoint) / "metadata.json").read_text())
            measure(args.eval_checkpoint, f"after {meta['episode']} ep")
            training[game] = {"checkpoint": str(args.eval_checkpoint), "episode": meta["episode"]}
            continue
        trainer = MultiModelTrainer(config)
        results = train_for(trainer, minutes)
        training[game] = {k: results[k] for k in ("total_episodes", "training_time")}
        run_dirs.append(results["log_dir"])
        measure(trainer, f"after {results['total_episodes']} ep")
        written[game] = samples(trainer)
        best = results.get("best_checkpoint")
        training[game]["best_checkpoint"] = best
        if best is not None and best["episode"] != trainer.current_episode:
            path = Path(results["checkpoint_dir"]) / best["checkpoint_id"]
            measure(str(path), f"best, ep {best['episode']}")
    table = print_table(
        f"\n{NAME}: one SmolLM2 LoRA policy trained against the random legal player "
        f"(random seats), evaluated greedily with fixed seats",
        ["evaluation", "episodes", "win", "95% CI", "draw", "loss", "invalid", "95% CI"],
        rows,
    )
    suffix = "" if set(args.games) == set(GAMES) else "_" + "_".join(args.games)
    png = (
        None
        if not run_dirs
        else plot_runs(
            run_dirs,
            labels=list(args.games),
            key=["model/model_*/win_rate", "env/invalid_rate", "model/model_*/number_entropy"],
            out_png=out / f"{NAME}{suffix}.png",
            smooth=5,
            title=f"{NAME}: training curves against the random legal player",
        )
    )
    print(f"learning curves: {png}")
    write_json(
        out / f"{NAME}{suffix}.json",
        argv,
        {
            "games": args.games,
            "configs": configs,
            "training": training,
            "table": table,
            "written": written,
            "reports": {k: r.to_dict() for k, r in reports.items()},
        },
        name=NAME,  # the file is named by its games too
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
