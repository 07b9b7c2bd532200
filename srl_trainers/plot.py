"""Learning curves from a run's ``metrics.jsonl`` as a PNG (matplotlib, no display needed).

    python -m srl_trainers.plot runs/my_run                      # -> runs/my_run/metrics.png
    python -m srl_trainers.plot runs/my_run --keys 'model/*/avg_reward' train/loss --smooth 5
    python -m srl_trainers.plot runs/a runs/b --labels sync async --out compare.png

One subplot per key; a key may be a glob (``model/*/avg_reward``): with one run, every
matching metric is a line of that subplot; with several runs, each run is one line (the mean
of its matching metrics at each step) and the legend names the runs.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srl_trainers.monitor import METRICS_FILE, read_metrics

__all__ = [
    "DEFAULT_KEYS",
    "main",
    "make_parser",
    "metric_curve",
    "moving_average",
    "plot_metrics",
    "plot_runs",
]

DEFAULT_KEYS = ("model/*/avg_reward", "model/*/win_rate", "env/invalid_rate", "train/loss")
LINE_STYLES = ("-", "--", ":", "-.")

PathLike = str | os.PathLike[str]


def _metrics_file(run_dir_or_jsonl: PathLike) -> Path:
    p = Path(run_dir_or_jsonl)
    if p.is_dir():
        p = p / METRICS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {str(run_dir_or_jsonl)!r}")
    return p


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one metric: finite values only, last value per step, step order."""
    by_step: dict[float, float] = {}
    for rec in records:
        value = rec.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            by_step[rec["step"]] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def _mean_series(records: list[dict[str, Any]], keys: list[str]) -> tuple[list[float], list[float]]:
    """Mean over ``keys`` at each step (of the keys that have a value there)."""
    sums: dict[float, list[float]] = {}
    for key in keys:
        for s, v in zip(*_series(records, key)):
            sums.setdefault(s, []).append(v)
    steps = sorted(sums)
    return steps, [sum(sums[s]) / len(sums[s]) for s in steps]


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def metric_curve(run_dir_or_jsonl: PathLike, pattern: str) -> tuple[list[float], list[float]]:
    """(steps, values) of a run's metric: at each step the mean over the keys that ``pattern``
    matches (a name, or a glob such as ``"model/model_*/win_rate"``: every LoRA slot's)."""
    records = read_metrics(_metrics_file(run_dir_or_jsonl))
    names = sorted({k for rec in records for k in rec})
    return _mean_series(records, _match(pattern, names))


def _match(pattern: str, names: Sequence[str]) -> list[str]:
    if any(ch in pattern for ch in "*?["):
        return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
    return [pattern] if pattern in names else []


def _label(pattern: str) -> str:
    """Readable axis title: ``model/*/avg_reward`` -> ``avg reward (per model)``."""
    parts = pattern.split("/")
    leaf = parts[-1].replace("_", " ")
    if len(parts) >= 3 and parts[1] == "*":
        return f"{leaf} (per {parts[0]})"
    if len(parts) >= 2:
        return f"{leaf} ({'/'.join(parts[:-1])})"
    return leaf


def _line_name(key: str, pattern: str) -> str:
    """The part of ``key`` the glob matched (the model id of ``model/*/avg_reward``)."""
    kp, pp = key.split("/"), pattern.split("/")
    if len(kp) == len(pp):
        varying = [k for k, p in zip(kp, pp) if k != p]
        if varying:
            return "/".join(varying)
    return key


def _plot(
    runs: list[tuple[str, list[dict[str, Any]]]],
    patterns: Sequence[str],
    out_png: Path,
    smooth: int,
    title: str | None,
    per_run: bool,
) -> Path:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    from matplotlib.ticker import MaxNLocator

    if smooth < 0:
        raise ValueError(f"smooth must be >= 0 (a moving-average window), got {smooth}")
    run_names = [sorted({k for rec in recs for k in rec} - {"step", "time"}) for _, recs in runs]
    names = sorted({k for ns in run_names for k in ns})
    panels = []
    for pattern in patterns:
        matched = [(label, recs, _match(pattern, ns)) for (label, recs), ns in zip(runs, run_names)]
        if any(m for _, _, m in matched):
            panels.append((pattern, matched))
    if not panels:
        raise ValueError(
            f"none of the keys {list(patterns)} is in the metrics; available: "
            f"{', '.join(names) if names else 'none'}"
        )
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(6.4 * ncols, 3.4 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (pattern, matched) in zip(axes, panels):
        lines = []
        for label, recs, keys in matched:
            if not keys:
                continue
            if not per_run:
                for key in keys:
                    lines.append((_line_name(key, pattern), *_series(recs, key)))
            else:
                lines.append((label, *_mean_series(recs, keys)))
        for i, (name, steps, values) in enumerate(lines):
            # ten colours, then the same colours dashed, dotted, ...: every line its own style
            style = {"color": f"C{i % 10}", "linestyle": LINE_STYLES[i // 10 % len(LINE_STYLES)]}
            if smooth > 1 and len(values) > 1:
                ax.plot(steps, values, alpha=0.25, linewidth=1, **style)
                ax.plot(steps, moving_average(values, smooth), label=name, linewidth=1.8, **style)
            else:
                ax.plot(
                    steps,
                    values,
                    label=name,
                    linewidth=1.5,
                    marker="." if len(values) < 30 else None,
                    **style,
                )
        heading = _label(pattern)
        if per_run and any(len(k) > 1 for _, _, k in matched):
            heading = f"{pattern.split('/')[-1].replace('_', ' ')} (mean over {pattern})"
        ax.set_title(heading)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(pattern.split("/")[-1].replace("_", " "))
        ax.grid(True, alpha=0.3)
        if len(lines) > 1 or per_run:
            ax.legend(fontsize="small", loc="best")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    note = f"moving average of {smooth}" if smooth > 1 else ""
    if title or note:
        fig.suptitle(f"{title} ({note})" if title and note else title or note)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png


def plot_metrics(
    run_dir_or_jsonl: PathLike,
    out_png: PathLike | None = None,
    keys: Sequence[str] | None = None,
    smooth: int = 0,
) -> Path:
    """Plot one run's learning curves; return the PNG path.

    ``keys``: metric names or globs, one subplot each (default :data:`DEFAULT_KEYS`, those
    present); ``smooth``: moving-average window (0 or 1: raw); ``out_png``: default
    ``metrics.png`` next to the JSONL file.
    """
    path = _metrics_file(run_dir_or_jsonl)
    out = Path(out_png) if out_png is not None else path.parent / "metrics.png"
    records = read_metrics(path)
    name = path.parent.name
    return _plot([(name, records)], keys or DEFAULT_KEYS, out, smooth, name, per_run=False)


def plot_runs(
    run_dirs: Sequence[PathLike],
    labels: Sequence[str] | None = None,
    key: str | Sequence[str] = "model/*/avg_reward",
    out_png: PathLike = "runs_comparison.png",
    smooth: int = 0,
    title: str | None = None,
) -> Path:
    """Several runs on shared axes, one line per run (legend = ``labels``, default dir names).

    ``key``: a metric name or glob (or a list of them, one subplot each); a glob matching
    several metrics of a run plots their mean per step (e.g. the population's avg reward).
    """
    if not run_dirs:
        raise ValueError("plot_runs needs at least one run directory")
    if labels is None:
        labels = [Path(d).name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} runs: give one label per run")
    runs = [(str(lab), read_metrics(_metrics_file(d))) for lab, d in zip(labels, run_dirs)]
    patterns = [key] if isinstance(key, str) else list(key)
    return _plot(runs, patterns, Path(out_png), smooth, title, per_run=True)


# ---------------------------------------------------------------------- CLI
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m srl_trainers.plot",
        description="Plot learning curves from run directories (their metrics.jsonl) to a PNG.",
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directory (or metrics.jsonl); several: compare runs",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="PNG path (default: RUN_DIR/metrics.png, or runs_comparison.png)",
    )
    parser.add_argument(
        "--keys",
        nargs="+",
        default=None,
        help=f"metric names or globs, one subplot each (default: {' '.join(DEFAULT_KEYS)})",
    )
    parser.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="legend label per run (several runs; default: directory names)",
    )
    parser.add_argument(
        "--smooth", type=int, default=0, help="moving-average window (0: raw curves)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        if len(args.run_dirs) == 1:
            out = plot_metrics(args.run_dirs[0], args.out, args.keys, smooth=args.smooth)
        else:
            out = plot_runs(
                args.run_dirs,
                args.labels,
                args.keys or list(DEFAULT_KEYS),
                args.out or "runs_comparison.png",
                smooth=args.smooth,
            )
    except (FileNotFoundError, ValueError) as exc:
        print(f"srl_trainers.plot: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
