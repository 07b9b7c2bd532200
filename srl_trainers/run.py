"""``python -m srl_trainers.run``: train a population of LoRA policies on an srl env.

With no arguments it trains the ``team_battle`` preset (:mod:`srl_trainers.presets`): four
LoRA slots of the embedded SmolLM2-135M model as a team against the scripted equal-split team,
on a CPU, for 40 episodes, with the team evaluated on 32 held-out games before and after.
``--preset NAME`` starts from a preset (``none``: the bare ``MultiModelConfig`` defaults,
Core SRL's; the default when ``--config`` or ``--env`` is given). ``--config FILE.yaml``
loads any ``MultiModelConfig`` fields (and ``preset:``); the named options and
``--<field-name> VALUE`` for every other field override it.

    python -m srl_trainers.run
    python -m srl_trainers.run --max-episodes 60 --seed 1
    python -m srl_trainers.run --env team_battle --strategy federated --max-episodes 20
    python -m srl_trainers.run --config examples/configs/cooperative.yaml --seed 3
    python -m srl_trainers.run --resume latest --checkpoint-dir ./checkpoints/multimodel
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from srl_trainers.cli import ArgumentParser
from srl_trainers.config import (
    DEFAULT_MODEL_NAMES,
    FIELD_TYPES,
    ConfigError,
    MultiModelConfig,
    load_yaml,
)
from srl_trainers.presets import PRESETS

__all__ = ["DEFAULT_PRESET", "build_config", "main", "make_parser"]

# what `python -m srl_trainers.run` trains with no --config and no --env
DEFAULT_PRESET = "team_battle"

# Named options: flag, config field (their choices come from the field's type)
NAMED = {
    "env": ("--env", "env"),
    "mode": ("--mode", "training_mode"),
    "strategy": ("--strategy", "weight_update_strategy"),
    "algorithm": ("--algorithm", "algorithm"),
}
RENAMED_FIELDS = {"num_models", "max_episodes", "seed", "checkpoint_dir", "log_dir"}


def _field_help(f: dataclasses.Field) -> str:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, enum.Enum):
        default = default.value
    return f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")


def _choices(tp: Any) -> list[str] | None:
    """The values of a Literal or enum field type (None for a free string: the config's
    validation names what is allowed, e.g. every registered env id)."""
    if tp is str:
        return None
    if typing.get_origin(tp) is Literal:
        return list(typing.get_args(tp))
    return [m.value for m in tp]


def _takes_text(tp: Any) -> bool:
    """Whether a command-line string is itself a value of ``tp`` (a string, a choice)."""
    return (
        tp is str
        or typing.get_origin(tp) is Literal
        or (isinstance(tp, type) and issubclass(tp, enum.Enum))
    )


def make_parser() -> argparse.ArgumentParser:
    fields = {f.name: f for f in dataclasses.fields(MultiModelConfig)}
    parser = ArgumentParser(
        prog="python -m srl_trainers.run",
        description="Train a population of LLM policies (LoRA adapters) on an srl environment.",
    )
    parser.add_argument(
        "--config", metavar="FILE.yaml", help="YAML file of MultiModelConfig fields"
    )
    parser.add_argument(
        "--preset",
        choices=[*PRESETS, "none"],
        default=None,
        help="start from a named configuration (srl_trainers.presets; the command-line "
        "options override it); none: the MultiModelConfig defaults (default: team_battle "
        "when neither --config nor --env is given, else none)",
    )
    for key, (flag, name) in NAMED.items():
        parser.add_argument(
            flag,
            dest=key,
            choices=_choices(FIELD_TYPES[name]),
            default=None,
            help=_field_help(fields[name]),
        )
    parser.add_argument(
        "--num-models", type=int, metavar="N", help=_field_help(fields["num_models"])
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help=f"one model for every slot: a model type ({', '.join(DEFAULT_MODEL_NAMES)}) or a "
        "local HF checkpoint directory (default: smollm2, the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--max-episodes", type=int, metavar="N", help=_field_help(fields["max_episodes"])
    )
    parser.add_argument("--seed", type=int, metavar="N", help=_field_help(fields["seed"]))
    parser.add_argument(
        "--checkpoint-dir", metavar="DIR", help=_field_help(fields["checkpoint_dir"])
    )
    parser.add_argument("--log-dir", metavar="DIR", help=_field_help(fields["log_dir"]))
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="CHECKPOINT_ID|latest",
        help="continue from a checkpoint in --checkpoint-dir (no value: the latest)",
    )
    other = parser.add_argument_group(
        "other config fields (--field-name VALUE; lists and "
        "mappings as YAML, e.g. --env-kwargs '{team_size: 2}')"
    )
    taken = {v[1] for v in NAMED.values()} | RENAMED_FIELDS
    for name, f in fields.items():
        if name in taken:
            continue
        other.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"field__{name}",
            metavar="VALUE",
            help=_field_help(f),
        )
    return parser


def coerce_field(name: str, raw: str) -> Any:
    """A command-line string -> a value for config field ``name``, by the field's type: the
    string itself where the field takes text (a string, a choice; ``none``/``null`` is None
    where the field is optional), else the string read as YAML (numbers, booleans, lists,
    mappings). The config then checks the value like any other."""
    hint = FIELD_TYPES[name]
    members = typing.get_args(hint) if typing.get_origin(hint) is types.UnionType else (hint,)
    if any(_takes_text(t) for t in members):
        return None if type(None) in members and raw.lower() in ("none", "null") else raw
    try:
        return load_yaml(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--{name.replace('_', '-')} {raw!r} is not a valid value: {exc}"
        ) from None


def build_config(args: argparse.Namespace) -> MultiModelConfig:
    """YAML file (if any) + command-line overrides -> a validated config."""
    overrides: dict[str, Any] = {}
    for key, (_, name) in NAMED.items():
        if getattr(args, key) is not None:
            overrides[name] = getattr(args, key)
    for name in RENAMED_FIELDS:
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    for key, value in vars(args).items():
        if key.startswith("field__") and value is not None:
            overrides[key[7:]] = coerce_field(key[7:], value)
    if args.model is not None:
        if args.model in DEFAULT_MODEL_NAMES:
            overrides["model_types"] = [args.model]
        else:
            overrides["model_types"] = ["custom"]
            overrides["model_names"] = {**overrides.get("model_names", {}), "custom": args.model}
    name = args.preset
    if name is None and not args.config and args.env is None:
        name = DEFAULT_PRESET
    if name is not None:
        overrides["preset"] = name
    if args.config:
        return MultiModelConfig.from_yaml(args.config, **overrides)
    return MultiModelConfig.from_dict(overrides)


def _print_summary(trainer, results: dict[str, Any]) -> None:
    from srl_trainers.evaluate import decoding_label, format_evaluation

    rows = []
    for pid, s in results["final_model_states"].items():
        # openskill's conservative rating (mu - 3 sigma) from the training games
        rating = f"{s['rating_ordinal']:>7.2f}" if "rating_ordinal" in s else f"{'-':>7}"
        rows.append(
            f"  {pid:<22} {s['model_type']:<9} {'yes' if s['trainable'] else 'no':<6} "
            f"{s['avg_reward']:>+8.3f} {s['win_rate']:>6.2f} {s['invalid_rate']:>8.2f} "
            f"{s['update_count']:>7d} {rating}"
        )
    header = (
        f"  {'policy':<22} {'type':<9} {'train':<6} {'reward':>8} {'win':>6} {'invalid':>8} "
        f"{'updates':>7} {'rating':>7}"
    )
    status = "completed" if results["training_completed"] else "stopped early"
    print(
        f"\nsrl: training {status}: {results['total_episodes']} episodes in "
        f"{results['training_time']:.0f} s (recent-window averages)\n{header}\n" + "\n".join(rows)
    )
    evaluation = results.get("evaluation") or {}
    if evaluation:
        first = next(iter(evaluation.values()))
        how = decoding_label(first["temperature"]) + (" and greedy" if "greedy" in first else "")
        from srl_trainers.rollout import VALIDATION_SEED_OFFSET

        games = (
            "validation"
            if first.get("seeds", [0])[0] >= VALIDATION_SEED_OFFSET  # eval_seeds="validation"
            else "held-out"
        )
        print(
            f"\nevaluation: the trained population on {first['games']} {games} games against "
            f"{first['opponent']}, {how} (95% intervals)"
        )
        for when, e in evaluation.items():
            label = when if when in ("before", "after") else "during"
            print(f"  {label:<7} (episode {e['episode']:>4}): {format_evaluation(e)}")
    if results.get("log_dir"):
        print(
            f"logs:        {results['log_dir']}  (tensorboard --logdir {Path(results['log_dir']).parent})"
        )
    last = results["checkpoints_saved"][-1] if results["checkpoints_saved"] else None
    if last:
        print(f"checkpoint:  {Path(results['checkpoint_dir']) / last}")
    best = results.get("best_checkpoint")
    if best:
        print(
            f"best:        {Path(results['checkpoint_dir']) / best['checkpoint_id']}  (episode "
            f"{best['episode']}: win rate {best['win_rate']:.2f} "
            f"{decoding_label(best['temperature'])}"
            + (
                f" averaged over {', '.join(best['opponents'])}"
                if len(best.get("opponents", [])) > 1
                else ""
            )
            + ", the highest of the evaluations)"
        )


def _resume_command(argv: list[str]) -> str:
    """This command line with ``--resume latest`` in place of any ``--resume``."""
    import shlex

    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        if not arg.startswith("--resume="):
            kept.append(arg)
    return shlex.join(["python", "-m", "srl_trainers.run", *kept, "--resume", "latest"])


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        config = build_config(args)
    except ConfigError as exc:
        parser.fail(exc)
    from srl_trainers.checkpoint import CheckpointError, check_checkpoint_id
    from srl_trainers.models import ModelUnavailableError
    from srl_trainers.trainer import MultiModelTrainer, install_sigint_handler

    trainer = MultiModelTrainer(config)
    try:
        if args.resume is not None:  # '' too: never a silent new run
            try:
                check_checkpoint_id(args.resume)
            except CheckpointError as exc:
                raise CheckpointError(f"--resume: {exc}") from None
        trainer.check_output_dirs(new_run=args.resume is None)  # before any model loads
        if args.resume is None:
            trainer.setup()
        else:
            trainer.load_checkpoint(args.resume)
            print(
                f"srl: resumed from {trainer.resumed_from} at episode {trainer.current_episode}",
                flush=True,
            )
            if trainer.monitor is not None:  # the checkpointed run's curves, not a new run
                print(f"srl: logs continue in {trainer.monitor.run_dir}", flush=True)
    except (ConfigError, CheckpointError, ModelUnavailableError, FileNotFoundError) as exc:
        parser.fail(exc)
    install_sigint_handler(trainer)
    trainer.resume_command = _resume_command(sys.argv[1:] if argv is None else argv)
    from srl_trainers.distributed import LearnerDiedError

    try:
        results = trainer.train_sync()
    except KeyboardInterrupt:
        print("\nsrl: aborted; the last complete checkpoint is in " + str(config.checkpoint_dir))
        return 130
    except LearnerDiedError as exc:  # Ray mode: a learner actor's state is gone
        print(f"srl: stopped: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if trainer.runtime is not None:
            trainer.runtime.shutdown()
    _print_summary(trainer, results)
    if trainer.monitor is not None:
        trainer.monitor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
