"""Training monitor: TensorBoard events, a JSONL metrics file, and a console progress view.

One :class:`UnifiedMonitor` per run writes under ``<log_dir>/<run_name>/``:

* TensorBoard event files (scalars, and text for sample completions);
* ``metrics.jsonl``: one line ``{"step": ..., "time": ..., **metrics}`` per :meth:`log` call,
  flushed at once so a killed run keeps every logged step (non-finite values are ``null``);
* ``samples.jsonl``: one line per :meth:`UnifiedMonitor.log_text` call.

Metric names are namespaced: ``train/loss``, ``model/<model_id>/avg_reward``,
``env/invalid_rate``. The console view is a tqdm bar with ETA and a compact postfix on a
terminal, and one plain line per update otherwise (CI logs, files).

A resumed run restores :meth:`UnifiedMonitor.state_dict` before :meth:`UnifiedMonitor.start`:
it continues the checkpointed run's name and step numbering under its own ``log_dir`` (the
one it was asked to write to, never the checkpointed run's, when the two differ). There it
drops metrics logged after the checkpoint's step (from the JSONL files and TensorBoard, via
``purge_step``); in a new ``log_dir`` it starts the JSONL files with the checkpointed run's
lines up to that step, when that run's directory is still there to copy them from.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DEFAULT_LOG_DIR",
    "UnifiedMonitor",
    "create_unified_monitor",
    "format_table",
    "format_value",
    "read_metrics",
]

logger = logging.getLogger(__name__)

DEFAULT_LOG_DIR = "./runs"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
_RESERVED = ("step", "time")


class UnifiedMonitor:
    """TensorBoard + JSONL + console monitor of one run (see the module docstring).

    ``log_dir``: parent of the run directory (default ``./runs``); ``run_name``: the run
    directory's name (default ``run_<YYYYmmdd-HHMMSS>``); ``tensorboard`` / ``jsonl`` /
    ``console`` switch the three outputs; ``stream``: where the console view writes
    (default ``sys.stdout``).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        run_name: str | None = None,
        tensorboard: bool = True,
        jsonl: bool = True,
        console: bool = True,
        stream: IO[str] | None = None,
    ) -> None:
        self.log_dir = Path(log_dir if log_dir is not None else DEFAULT_LOG_DIR)
        self.run_name = _check_run_name(run_name or time.strftime("run_%Y%m%d-%H%M%S"))
        self.tensorboard = tensorboard
        self.jsonl = jsonl
        self.console = console
        self.stream = stream
        self.step: int | None = None  # last logged step
        self._resume_step: int | None = None
        self._resume_source: Path | None = None  # the checkpointed run's directory
        self._owns_run_dir = False
        self._started = False
        self._writer: Any = None
        self._metrics_f: IO[str] | None = None
        self._samples_f: IO[str] | None = None
        self._bar: Any = None
        self._plain: _PlainProgress | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def run_dir(self) -> Path:
        """``<log_dir>/<run_name>``: where every file of this run goes."""
        return self.log_dir / self.run_name

    def _holds_a_run(self, run_name: str | None = None) -> bool:
        """Whether the run directory (of ``run_name``, default this run's) has logged metrics
        or TensorBoard events: a fresh run never appends to another run's files."""
        d = self.log_dir / (run_name or self.run_name)
        if (d / METRICS_FILE).is_file() and (d / METRICS_FILE).stat().st_size > 0:
            return True
        return d.is_dir() and any(d.glob("events.out.tfevents.*"))

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    @property
    def samples_path(self) -> Path:
        return self.run_dir / SAMPLES_FILE

    @property
    def is_started(self) -> bool:
        return self._started

    def start(self) -> UnifiedMonitor:
        """Create the run directory and open the outputs (no-op when already started)."""
        if self._started:
            return self
        if self._resume_step is None and not self._owns_run_dir and self._holds_a_run():
            taken = self.run_dir
            n = 2
            while self._holds_a_run(f"{self.run_name}-{n}"):
                n += 1
            self.run_name = f"{self.run_name}-{n}"
            logger.warning(
                "%s already holds the metrics of another run; this run logs to %s (resume a run "
                "to continue its logs)",
                taken,
                self.run_dir,
            )
        self._owns_run_dir = True  # a later stop/start continues these files
        if self.tensorboard or self.jsonl:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.jsonl:
            for path in (self.metrics_path, self.samples_path):
                source = None if self._resume_source is None else self._resume_source / path.name
                if source is not None and source.is_file() and not path.exists():
                    shutil.copyfile(source, path)  # then cut to the checkpoint's step
                _repair_jsonl(path, self._resume_step)
            self._metrics_f = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
            self._samples_f = open(self.samples_path, "a", encoding="utf-8")  # noqa: SIM115
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = self._resume_step + 1 if self._resume_step is not None else None
            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge, flush_secs=10)
        self._resume_step = self._resume_source = None  # once: a restart keeps new lines
        self._started = True
        return self

    def stop(self) -> None:
        """Close the progress view, flush and close every output (no-op when stopped)."""
        self.close_progress()
        if not self._started:
            return
        self._started = False
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        for f in (self._metrics_f, self._samples_f):
            if f is not None:
                f.flush()
                f.close()
        self._metrics_f = self._samples_f = None

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        for f in (self._metrics_f, self._samples_f):
            if f is not None:
                f.flush()

    def __enter__(self) -> UnifiedMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _require_started(self, what: str) -> None:
        if not self._started:
            raise RuntimeError(
                f"UnifiedMonitor.{what}() before start(): call monitor.start() or use "
                "`with monitor:`"
            )

    # ------------------------------------------------------------------ metrics
    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log scalar metrics at ``step`` to TensorBoard and one line of ``metrics.jsonl``.

        Values are anything ``float()`` accepts (python/numpy numbers, 0-d tensors, bools).
        Non-finite values are ``null`` in the JSONL and not sent to TensorBoard.
        """
        self._require_started("log")
        step = _check_step(step)
        clean: dict[str, float | None] = {}
        for key, value in metrics.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"metric names must be non-empty strings, got {key!r}")
            if key in _RESERVED:
                raise ValueError(f"metric name {key!r} is reserved in metrics.jsonl")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"metric {key!r} must be a number, got {type(value).__name__}: {value!r:.60}"
                ) from None
            clean[key] = number if math.isfinite(number) else None
        now = time.time()
        if self._writer is not None:
            for key, number in clean.items():
                if number is not None:
                    self._writer.add_scalar(key, number, global_step=step, walltime=now)
        if self._metrics_f is not None:
            record = {"step": step, "time": round(now, 3), **clean}
            self._metrics_f.write(json.dumps(record, allow_nan=False) + "\n")
            self._metrics_f.flush()
        self.step = step if self.step is None else max(self.step, step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        """Log a text sample (e.g. a completion) to TensorBoard and ``samples.jsonl``."""
        self._require_started("log_text")
        step = _check_step(step)
        text = str(text)
        now = time.time()
        if self._writer is not None:
            # Indented = preformatted in TensorBoard's markdown: whitespace and symbols survive.
            shown = "\n".join("    " + line for line in text.split("\n"))
            self._writer.add_text(tag, shown, global_step=step, walltime=now)
        if self._samples_f is not None:
            record = {"step": step, "time": round(now, 3), "tag": tag, "text": text}
            self._samples_f.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._samples_f.flush()

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to resume this monitor: run name and directory, last step."""
        return {
            "run_name": self.run_name,
            "run_dir": str(self.run_dir.absolute()),
            "step": self.step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the run of ``state``: its name under this monitor's ``log_dir``, steps
        after ``state['step']``.

        Call before :meth:`start` (a started monitor is restarted on the restored directory).
        At start, lines logged after ``state['step']`` (by the run that was interrupted after
        its checkpoint) are dropped from the JSONL files and purged from TensorBoard. A
        ``log_dir`` other than the checkpointed run's gets that run's JSONL lines up to the
        step (copied, never changed in place) when its directory ``state['run_dir']`` exists.
        """
        was_started = self._started
        if was_started:
            self.stop()
        self.run_name = _check_run_name(str(state["run_name"]))
        source = Path(state["run_dir"])
        self._resume_source = None if _same_path(source, self.run_dir) else source
        step = state.get("step")
        self.step = None if step is None else int(step)
        self._resume_step = self.step if self.step is not None else -1
        if was_started:
            self.start()

    # ------------------------------------------------------------------ console
    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def progress(self, total: int, initial: int = 0) -> None:
        """Start the console progress view over ``total`` episodes, ``initial`` already done."""
        self.close_progress()
        if not self.console:
            return
        out = self._out()
        if _isatty(out):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=self.run_name,
                unit="ep",
                file=out,
                dynamic_ncols=True,
                leave=True,
            )
        else:
            self._plain = _PlainProgress(total=total, initial=initial, out=out)

    def update_progress(
        self, episode: int, summary: Mapping[str, str | float] | None = None
    ) -> None:
        """Move the view to ``episode`` episodes done and show ``summary`` (compact ``k=v``)."""
        postfix = format_summary(summary or {})
        if self._bar is not None:
            self._bar.set_postfix_str(postfix, refresh=False)
            delta = episode - self._bar.n
            if delta > 0:
                self._bar.update(delta)
            else:
                self._bar.n = episode
                self._bar.refresh()
        elif self._plain is not None:
            self._plain.update(episode, postfix)

    def close_progress(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._plain = None

    def note(self, line: str) -> None:
        """Print one line above the progress view (plain print without one)."""
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(line, file=self._out())
        else:
            out = self._out()
            out.write(line + "\n")
            out.flush()

    def print_table(self, rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
        """Print ``rows`` as an aligned plain-text table (when console output is on); return it."""
        table = format_table(rows, title)
        if self.console:
            self.note(table)
        return table

    def __repr__(self) -> str:
        return f"UnifiedMonitor(run_dir={str(self.run_dir)!r}, started={self._started})"


def create_unified_monitor(
    log_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> UnifiedMonitor:
    """Core SRL's factory: a :class:`UnifiedMonitor` (not started: call ``start()``)."""
    return UnifiedMonitor(log_dir, **kwargs)


# ---------------------------------------------------------------------- reading
def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` (or of the run directory holding one).

    A truncated last line (a run killed mid-write) is skipped; a bad line elsewhere raises
    ``ValueError`` with its line number.
    """
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} at {str(p)!r}")
    text = p.read_text(encoding="utf-8")
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:  # no newline after it: cut off by a kill
                break
            raise ValueError(f"{p}:{i + 1}: not a JSON line: {line[:80]!r}") from None
        if not isinstance(rec, dict) or "step" not in rec:
            raise ValueError(f"{p}:{i + 1}: not a metrics record: {line[:80]!r}")
        records.append(rec)
    return records


def _repair_jsonl(path: Path, resume_step: int | None) -> None:
    """Drop a truncated last line and, on resume, the lines logged after ``resume_step``."""
    if not path.is_file():
        return
    data = path.read_bytes()
    keep = data
    if data and not data.endswith(b"\n"):
        keep = data[: data.rfind(b"\n") + 1]
    if resume_step is not None:
        kept_lines = []
        for line in keep.split(b"\n"):
            if not line.strip():
                continue
            try:
                step = json.loads(line).get("step")
            except (ValueError, AttributeError):
                step = None
            if isinstance(step, int) and step > resume_step:
                continue
            kept_lines.append(line + b"\n")
        keep = b"".join(kept_lines)
    if keep != data:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(keep)
        os.replace(tmp, path)


def _check_run_name(name: str) -> str:
    if Path(name).name != name or name in (".", ".."):
        raise ValueError(f"run_name must be a plain directory name, got {name!r}")
    return name


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_step(step: Any) -> int:
    try:
        as_int = int(step)
    except (TypeError, ValueError):
        raise TypeError(f"step must be an integer, got {step!r}") from None
    if as_int != step or as_int < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    return as_int


# ---------------------------------------------------------------------- console formatting
def format_value(value: Any) -> str:
    """Compact text of a metric value: ``0.534``, ``12.3``, ``1234``, ``nan``, strings as-is."""
    if isinstance(value, str):
        return value
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return str(number)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if number == 0:
        return "0"
    if abs(number) >= 1e5 or abs(number) < 1e-3:
        return f"{number:.2e}"
    if abs(number) >= 100:
        return f"{number:.1f}"
    return f"{number:.3f}"


def format_summary(summary: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={format_value(value)}" for key, value in summary.items())


def format_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """Rows of dicts as an aligned plain-text table; numbers right-aligned, text left."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    cells = [[format_value(row.get(col)) for col in columns] for row in rows]
    numeric = [
        all(row.get(col) is None or (not isinstance(row.get(col), str)) for row in rows)
        for col in columns
    ]
    widths = [max([len(col)] + [len(r[j]) for r in cells]) for j, col in enumerate(columns)]

    def fmt(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    lines = []
    if title:
        lines.append(title)
    if not columns:
        lines.append("(no rows)")
        return "\n".join(lines)
    header = fmt(columns)
    rule = "  ".join("-" * w for w in widths)
    lines += [header, rule] + [fmt(r) for r in cells]
    return "\n".join(lines)


def _isatty(out: IO[str]) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


class _PlainProgress:
    """One line per update for non-terminals: ``[run] 12/40 30% 0:12<0:28 | k=v ...``."""

    def __init__(self, total: int, initial: int, out: IO[str]) -> None:
        self.total = total
        self.initial = initial
        self.out = out
        self.t0 = time.monotonic()

    def update(self, episode: int, postfix: str) -> None:
        from tqdm import tqdm

        elapsed = time.monotonic() - self.t0
        done = episode - self.initial
        pct = f"{100.0 * episode / self.total:3.0f}%" if self.total else "  ?%"
        if done > 0 and self.total:
            eta = tqdm.format_interval(elapsed / done * max(self.total - episode, 0))
        else:
            eta = "?"
        line = f"episode {episode}/{self.total} {pct} [{tqdm.format_interval(elapsed)}<{eta}]"
        if postfix:
            line += f" {postfix}"
        self.out.write(line + "\n")
        self.out.flush()
