"""Shared command-line options and table printing of the learning benchmarks.

Every learning benchmark takes the same options: ``--quick`` (a smoke run on the tiny random
model, seconds), ``--minutes`` (the training budget of each run in full mode), ``--episodes``
(evaluation episodes), ``--seed``, ``--model`` and ``--out`` (where the JSON results and the
PNGs go). The benchmarks themselves only build configs and call the library
(``MultiModelTrainer``, ``srl_trainers.evaluate``, ``srl_trainers.plot``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def make_parser(description: str, *, minutes: float, episodes: int) -> argparse.ArgumentParser:
    """The options every learning benchmark shares (defaults: the full mode's)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: the tiny random model, a few episodes, results to a temp dir",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=minutes,
        help=f"wall-clock training budget per run (default {minutes:g})",
    )
    parser.add_argument(
        "--train-episodes",
        type=int,
        default=None,
        metavar="N",
        help="a fixed budget of N training episodes per run instead of --minutes: the result "
        "then does not depend on the machine's speed or load (wall time is still reported)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a MultiModelConfig field of the benchmark's preset (repeatable; lists "
        "and mappings as YAML, e.g. --set group_size=8 --set "
        "weight_update_strategy=synchronized). The script's own options (--safe-hint, "
        "--opponents, --format-penalty, ...) apply on top of it. The JSON records the command",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=episodes,
        help=f"evaluation episodes before and after training (default {episodes})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    parser.add_argument(
        "--model",
        default="smollm2",
        help="model type or local checkpoint directory of every slot (default smollm2, the "
        "embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"directory for the JSON results and PNGs (default {RESULTS_DIR}; a temp dir "
        "with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice, one per core); two benchmarks run "
        "side by side on a 2-core machine each take 1",
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="directory for the runs' logs and checkpoints (default ./runs/benchmarks; the "
        "--out dir with --quick)",
    )
    return parser


def model_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields that pick the model: ``--model``, or the tiny random model with --quick
    (built once into the output directory by ``srl_trainers.testing``)."""
    if args.quick:
        from srl_trainers.testing import build_tiny_model

        path = build_tiny_model(Path(args.work_dir) / "tiny_model")
        return dict(
            model_types=["tiny"],
            model_names={"tiny": str(path)},
            dtype="float32",
            kv_cache_size=200,
            system_prompt="Play.",
            max_new_tokens=4,
        )
    from srl_trainers.config import DEFAULT_MODEL_NAMES

    if args.model in DEFAULT_MODEL_NAMES:
        return dict(model_types=[args.model])
    return dict(model_types=["custom"], model_names={"custom": args.model})


def output_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """``(results, work)``: where JSON and PNGs go (``--out``: benchmarks/results, or a temp
    dir with --quick) and where logs and checkpoints go (``--work-dir``)."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="srl-bench-") if args.quick else str(RESULTS_DIR)
    if args.work_dir is None:
        args.work_dir = args.out if args.quick else "runs/benchmarks"
    out, work = Path(args.out), Path(args.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return out, work


def checkpoint_dir(work: Path, name: str) -> str:
    """``<work>/checkpoints/<name>``, or ``<name>-2``, ``-3``, ... when a rerun finds the
    earlier ones holding checkpoints: the trainer refuses a new run into a directory of
    checkpoints, and a rerun must not overwrite the run it repeats."""
    from srl_trainers.checkpoint import list_available_checkpoints

    base = work / "checkpoints" / name
    path, n = base, 2
    while list_available_checkpoints(path):
        path, n = base.with_name(f"{name}-{n}"), n + 1
    return str(path)


def budget(args: argparse.Namespace, fields: dict[str, Any]) -> float | None:
    """Apply ``--set`` and ``--train-episodes`` (sets ``max_episodes``) to ``fields`` and return
    the wall-clock budget in minutes for :func:`train_for` (None when the episode budget
    rules)."""
    fields.update(overrides(args.set))
    if args.train_episodes is None:
        return args.minutes
    if args.train_episodes < 1:
        raise SystemExit(f"--train-episodes must be a positive integer, got {args.train_episodes}")
    fields["max_episodes"] = args.train_episodes
    return None


def overrides(assignments: Sequence[str]) -> dict[str, Any]:
    """``["group_size=8", ...]`` -> ``{"group_size": 8}``, values read as on the CLI of
    ``srl_trainers.run``; a malformed item or an unknown field exits with the fix."""
    from srl_trainers.config import ConfigError, MultiModelConfig
    from srl_trainers.run import coerce_field

    result = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise SystemExit(f"--set {item!r}: use FIELD=VALUE, e.g. --set group_size=8")
        try:
            MultiModelConfig.check_field_names([name])
            result[name] = coerce_field(name, raw)
        except ConfigError as exc:
            raise SystemExit(f"--set {item!r}: {exc}") from None
    return result


def train_for(trainer, minutes: float | None) -> dict[str, Any]:
    """``trainer.train_sync()``, asking it to stop (after the running episode, with a
    checkpoint) once ``minutes`` of wall-clock time have passed."""
    timer = None
    if minutes is not None:
        timer = threading.Timer(minutes * 60.0, trainer.request_stop)
        timer.daemon = True
        timer.start()
    try:
        return trainer.train_sync()
    finally:
        if timer is not None:
            timer.cancel()


def curve_stability(values: Sequence[float], *, window: int = 10, level: float = 0.5) -> dict:
    """How a training curve went (one value per episode, e.g. the training win rate): its
    ``window``-episode moving average, the episode where that average first passed ``level``
    (None: never), and the largest fall of the average below its running peak after that
    (the collapse a learning benchmark's goal bounds)."""
    from srl_trainers.plot import moving_average

    avg = moving_average(values, window)
    first = next((i for i, v in enumerate(avg) if v > level), None)
    drop, peak = 0.0, float("-inf")
    if first is not None:
        for v in avg[first:]:
            peak = max(peak, v)
            drop = max(drop, peak - v)
    return {
        "window": window,
        "level": level,
        "first_above": None if first is None else first + 1,
        "max_drop": drop,
        "final": avg[-1] if avg else None,
        "moving_average": avg,
    }


def machine() -> str:
    import os

    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{platform.system()} {platform.release()}"
    )


def write_json(
    path: Path, argv: Sequence[str] | None, data: dict[str, Any], *, name: str | None = None
) -> None:
    """``data`` as JSON, with the exact command (``argv``: the benchmark's arguments, None for
    ``sys.argv``; ``name``: the benchmark's module, by default the file's name), the date and
    the machine."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = f"python -m benchmarks.{name or path.stem} {shlex.join(args)}".strip()
    data = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")
    print(f"results: {path}")


# ---------------------------------------------------------------------- tables
def ci(interval: Sequence[float], digits: int = 2) -> str:
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (column widths from the content); printed and returned."""
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title]
    for j, row in enumerate(cells):
        lines.append(
            "  "
            + "  ".join(
                c.rjust(w) if j and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
