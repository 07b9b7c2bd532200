"""Ray mode's overhead: the team battle preset in local mode and in Ray mode with 1 and 2
rollout workers, the same episodes, side by side in one process.

Run from the repository root::

    python -m benchmarks.scale_out                    # the embedded SmolLM2, 6 timed episodes
    python -m benchmarks.scale_out --quick            # the tiny random model, seconds
    python -m benchmarks.scale_out --two-groups       # GPU machine: two learner groups sharing
                                                      # each GPU (gpus_per_learner 0.5)

Every mode trains the preset (``srl_trainers.presets.TEAM_BATTLE``: 4 LoRA slots, 8 copies, one
GRPO group, the counterfactual baseline) from the same seed for ``--warmup`` + ``--episodes``
episodes; the warm-up episodes (and the start-up: model loading, Ray actors) are not timed.
The modes run one after the other, ``--repeats`` times in alternating order, on a local Ray
cluster started here (``ray.init(num_cpus=<cores>)``); the figure is the median seconds per
timed episode, as episodes per minute, with Ray's overhead against local mode:
(ray - local) / local. The update's seconds are split: ``learner`` is the update timed inside
the learner's own process (its actor's, in Ray mode), ``push`` the weight pushes to the engines;
the rest of ``update`` is the cost of the Ray calls themselves (arguments, results). The
trained weights are compared too: Ray mode with one worker must end where local mode ends (the
same seeds and batches). A worker plays whole GRPO groups and the
preset has one (8 copies), so the two-worker pair runs ``batch_size=16`` (two groups, 16
copies) in both modes: ``local x2`` beside ``ray, 2 workers x2``.

Ray mode's actors here: a learner (the 4 slots' adapters, AdamW, the strategy), an engine (an
HF ModelPool with copies of the adapters, fed the new weights through Ray's object store after
every update) and the rollout workers (env copies, the scripted team; prompts formatted with the
tokenizer, generate calls to the engine). ``--colocate`` lets the learner generate instead;
``--engine-replicas`` adds the two-worker pair with two engine replicas
(``engines_per_model=2``), each worker generating on its own.

Results: a table on stdout and ``benchmarks/results/scale_out.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from srl_trainers import MultiModelConfig, MultiModelTrainer
from srl_trainers.presets import preset

RESULTS = Path(__file__).resolve().parent / "results" / "scale_out.json"


def _config(args, work: Path, **overrides: Any) -> MultiModelConfig:
    fields = preset("team_battle")
    fields.update(
        max_episodes=args.warmup + args.episodes,
        eval_episodes=0,  # nothing but training is timed: no evaluations, no best checkpoint
        eval_interval=0,
        keep_best_checkpoint=False,
        enable_monitoring=False,
        save_interval=10_000,
        checkpoint_dir=str(work / "ckpt"),
        log_dir=str(work / "runs"),
        seed=args.seed,
    )
    if args.quick:
        from srl_trainers.testing import build_tiny_model

        model = build_tiny_model(work.parent / "tiny_model")
        fields.update(
            model_types=["tiny"],
            model_names={"tiny": str(model)},
            max_new_tokens=4,
            kv_cache_size=400,
            system_prompt="Play.",
            dtype="float32",
        )
    if args.two_groups:  # the same base under two names: two learner groups of 2 slots
        base = fields.get("model_names", {}).get("tiny", "embedded:smollm2")
        fields.update(
            model_types=["first", "second"],
            model_names={"first": base, "second": base},
            gpus_per_learner=0.5,
            gpus_per_engine=0.5,
        )
    fields.update(overrides)
    return MultiModelConfig(**fields)


def _time_mode(args, name: str, work: Path, **overrides: Any) -> dict[str, Any]:
    cfg = _config(args, work, **overrides)
    t0 = time.perf_counter()
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    startup = time.perf_counter() - t0
    seconds, rollout, update, learner, push = [], [], [], [], []
    for episode in range(args.warmup + args.episodes):
        t = time.perf_counter()
        metrics = asyncio.run(trainer.train_multi_model_episode(episode))["metrics"]
        if episode >= args.warmup:
            seconds.append(time.perf_counter() - t)
            rollout.append(metrics["perf/rollout_seconds"])
            update.append(metrics["perf/update_seconds"])
            learner.append(metrics["perf/learner_seconds"])
            push.append(metrics["perf/push_seconds"])
    weights = {s: w for x in trainer.learners.values() for s, w in x.adapter_weights().items()}
    asyncio.run(trainer.shutdown())
    print(
        f"  {name:<28} start-up {startup:6.1f} s, episodes "
        + " ".join(f"{s:.2f}" for s in seconds),
        flush=True,
    )
    return {
        "startup_s": startup,
        "episode_s": seconds,
        "rollout_s": rollout,
        "update_s": update,
        "learner_s": learner,
        "push_s": push,
        "weights": weights,
    }


def _same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[s][k], b[s][k]) for s in a for k in a[s])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny random model")
    parser.add_argument("--episodes", type=int, default=6, help="timed episodes per mode")
    parser.add_argument("--warmup", type=int, default=1, help="untimed episodes first")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the modes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: as is)")
    parser.add_argument("--colocate", action="store_true", help="colocate_engines=True")
    parser.add_argument(
        "--two-groups",
        action="store_true",
        help="two learner groups at gpus_per_learner 0.5 (needs GPUs in the Ray cluster)",
    )
    parser.add_argument(
        "--one-worker", action="store_true", help="only local and Ray with one worker"
    )
    parser.add_argument(
        "--engine-replicas",
        action="store_true",
        help="also 'ray, 2 workers, 2 engines x2': engines_per_model=2, each worker "
        "generating on its own engine replica (not with --colocate)",
    )
    parser.add_argument(
        "--actor-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the Ray actors (ray.init's runtime_env), repeatable: "
        "e.g. OMP_WAIT_POLICY=PASSIVE, to test what the actors' processes do differently",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"JSON (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import ray

    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    actor_env = dict(kv.split("=", 1) for kv in args.actor_env)
    ray.init(
        num_cpus=cores,
        include_dashboard=False,
        configure_logging=False,
        runtime_env={"env_vars": actor_env} if actor_env else None,
    )
    ray_kw: dict[str, Any] = {"distributed_backend": "ray", "colocate_engines": args.colocate}
    modes = [
        ("local", {}),
        ("ray, 1 worker", ray_kw),
        ("local x2", {"batch_size": 16}),
        ("ray, 2 workers x2", {**ray_kw, "batch_size": 16, "num_rollout_workers": 2}),
    ]
    if args.one_worker:
        modes = modes[:2]
    elif args.engine_replicas:
        if args.colocate:
            parser.error("--engine-replicas needs engine actors: drop --colocate")
        two = {**ray_kw, "batch_size": 16, "num_rollout_workers": 2, "engines_per_model": 2}
        modes.append(("ray, 2 workers, 2 engines x2", two))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in modes}
    print(
        f"scale_out: team battle preset, {'tiny model' if args.quick else 'embedded SmolLM2'}, "
        f"{args.warmup} warm-up + {args.episodes} timed episodes per mode, "
        f"{torch.get_num_threads()} torch threads, {cores} cores, {gpus} GPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="srl-scale-out-") as tmp:
        for r in range(args.repeats):
            order = modes if r % 2 == 0 else modes[::-1]
            for name, overrides in order:
                work = Path(tmp) / f"{name.replace(' ', '_').replace(',', '')}_{r}"
                runs[name].append(_time_mode(args, name, work, **overrides))
    ray.shutdown()
    table = {}
    for name, results in runs.items():
        per_episode = statistics.median(s for x in results for s in x["episode_s"])
        table[name] = {
            "seconds_per_episode": per_episode,
            "rollout_seconds": statistics.median(s for x in results for s in x["rollout_s"]),
            "update_seconds": statistics.median(s for x in results for s in x["update_s"]),
            # the update timed inside the learner's process, and the weight pushes: the rest
            # of update_seconds is the Ray calls' transport
            "learner_seconds": statistics.median(s for x in results for s in x["learner_s"]),
            "push_seconds": statistics.median(s for x in results for s in x["push_s"]),
            "episodes_per_minute": 60.0 / per_episode,
            "startup_s": statistics.median(x["startup_s"] for x in results),
        }
    pairs = [
        (a, b)
        for a, b in [
            ("ray, 1 worker", "local"),
            ("ray, 2 workers x2", "local x2"),
            ("ray, 2 workers, 2 engines x2", "local x2"),
        ]
        if a in table
    ]
    print(
        f"\n  {'mode':<28} {'s/episode':>10} {'rollout':>8} {'update':>7} {'learner':>8} "
        f"{'push':>5} {'episodes/min':>13} {'start-up s':>11} vs local"
    )
    for name, row in table.items():
        ref = dict((a, b) for a, b in pairs).get(name)
        vs = ""
        if ref is not None:
            overhead = row["seconds_per_episode"] / table[ref]["seconds_per_episode"] - 1
            row["overhead_vs_" + ref.replace(" ", "_")] = overhead
            vs = f"{overhead:+.1%} time per episode against {ref}"
        print(
            f"  {name:<28} {row['seconds_per_episode']:>10.2f} {row['rollout_seconds']:>8.2f} "
            f"{row['update_seconds']:>7.2f} {row['learner_seconds']:>8.2f} "
            f"{row['push_seconds']:>5.2f} {row['episodes_per_minute']:>13.1f} "
            f"{row['startup_s']:>11.1f} {vs}"
        )
    same = _same_weights(runs["local"][0]["weights"], runs["ray, 1 worker"][0]["weights"])
    print(f"\n  ray, 1 worker ends with local mode's adapter weights: {same}")
    out = {
        "command": "python -m benchmarks.scale_out "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {cores} cores, {gpus} GPUs",
        "torch_threads": torch.get_num_threads(),
        "model": "tiny" if args.quick else "embedded:smollm2",
        "episodes": args.episodes,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "colocate_engines": args.colocate,
        "two_groups": args.two_groups,
        "actor_env": actor_env,
        "modes": table,
        "episode_seconds": {n: [x["episode_s"] for x in r] for n, r in runs.items()},
        "ray_one_worker_same_weights_as_local": same,
    }
    path = args.out or (Path(tempfile.gettempdir()) / "scale_out.json" if args.quick else RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"  results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
