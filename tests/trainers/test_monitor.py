"""UnifiedMonitor (TensorBoard + JSONL + console), read_metrics, and the plot module."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from srl_trainers import plot
from srl_trainers.monitor import (
    UnifiedMonitor,
    create_unified_monitor,
    format_table,
    format_value,
    read_metrics,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def _scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _monitor(tmp_path, **kw) -> UnifiedMonitor:
    kw.setdefault("console", False)
    return UnifiedMonitor(tmp_path / "runs", run_name="r1", **kw)


# ---------------------------------------------------------------------- metrics
def test_log_writes_jsonl_and_tensorboard(tmp_path):
    with _monitor(tmp_path) as mon:
        for step in range(3):
            mon.log(
                {
                    "train/loss": 1.0 / (step + 1),
                    "model/model_0_smollm2/avg_reward": np.float32(step),
                    "env/invalid_rate": float("nan") if step == 1 else 0.25,
                    "train/kl": torch.tensor(0.5),
                    "train/stepped": True,
                },
                step=step,
            )
        # Flushed per line: readable while the run is still going.
        records = read_metrics(mon.run_dir)
        assert [r["step"] for r in records] == [0, 1, 2]
    assert mon.run_dir == tmp_path / "runs" / "r1"
    lines = (mon.run_dir / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    assert set(rec) == {
        "step",
        "time",
        "train/loss",
        "model/model_0_smollm2/avg_reward",
        "env/invalid_rate",
        "train/kl",
        "train/stepped",
    }
    assert rec["env/invalid_rate"] is None  # non-finite -> null
    assert "NaN" not in "".join(lines)
    assert rec["model/model_0_smollm2/avg_reward"] == 1.0 and rec["train/stepped"] == 1.0
    assert rec["time"] > 1e9

    acc = _events(mon.run_dir)
    assert "model/model_0_smollm2/avg_reward" in acc.Tags()["scalars"]
    assert _scalars(acc, "train/loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    # The NaN of step 1 was skipped, not written.
    assert _scalars(acc, "env/invalid_rate") == [(0, 0.25), (2, 0.25)]


def test_log_text_goes_to_tensorboard_and_samples_jsonl(tmp_path):
    with _monitor(tmp_path) as mon:
        mon.log_text("samples/model_0", "HARVEST 3\n  say: hi <b>", step=4)
    sample = json.loads((mon.run_dir / "samples.jsonl").read_text())
    assert sample["step"] == 4 and sample["tag"] == "samples/model_0"
    assert sample["text"] == "HARVEST 3\n  say: hi <b>"
    acc = _events(mon.run_dir)
    assert "samples/model_0/text_summary" in acc.Tags()["tensors"]
    event = acc.Tensors("samples/model_0/text_summary")[0]
    assert event.step == 4
    assert b"HARVEST 3" in event.tensor_proto.string_val[0]


def test_outputs_can_be_switched_off(tmp_path):
    with _monitor(tmp_path, tensorboard=False) as mon:
        mon.log({"a/b": 1.0}, 0)
    assert [p.name for p in mon.run_dir.iterdir() if p.name.startswith("events")] == []
    assert read_metrics(mon.run_dir)[0]["a/b"] == 1.0
    with _monitor(tmp_path / "x", jsonl=False) as mon:
        mon.log({"a/b": 1.0}, 0)
    assert not (mon.run_dir / "metrics.jsonl").exists()
    assert _scalars(_events(mon.run_dir), "a/b") == [(0, 1.0)]


def test_log_rejects_bad_input(tmp_path):
    mon = _monitor(tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        mon.log({"a": 1.0}, 0)
    with mon:
        with pytest.raises(TypeError, match="'a' must be a number"):
            mon.log({"a": "high"}, 0)
        with pytest.raises(ValueError, match="reserved"):
            mon.log({"step": 1.0}, 0)
        with pytest.raises(ValueError, match="step"):
            mon.log({"a": 1.0}, -1)
        with pytest.raises(TypeError, match="step"):
            mon.log({"a": 1.0}, "one")


def test_start_stop_idempotent_and_real(tmp_path):
    mon = create_unified_monitor(tmp_path / "logs", run_name="core", console=False)
    assert isinstance(mon, UnifiedMonitor)
    assert not mon.is_started and not mon.run_dir.exists()
    mon.stop()  # stop before start: nothing to do
    mon.start()
    mon.start()
    assert mon.is_started
    assert (mon.run_dir / "metrics.jsonl").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in mon.run_dir.iterdir())
    mon.log({"x/y": 2.0}, 0)
    mon.stop()
    mon.stop()
    assert not mon.is_started
    with pytest.raises(RuntimeError):
        mon.log({"x/y": 1.0}, 1)
    # Default run names are unique-ish and plain; log_dir defaults to ./runs.
    default = UnifiedMonitor(console=False)
    assert default.log_dir.as_posix() == "runs" and default.run_name.startswith("run_")
    with pytest.raises(ValueError, match="run_name"):
        UnifiedMonitor(tmp_path, run_name="a/b")


# ---------------------------------------------------------------------- read_metrics
def test_read_metrics_skips_truncated_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "a": 1}\n{"step": 1, "a": 2}\n{"step": 2, "a"')
    assert read_metrics(path) == [{"step": 0, "a": 1}, {"step": 1, "a": 2}]
    assert read_metrics(tmp_path) == read_metrics(path)  # a run dir works too
    path.write_text('{"step": 0}\n{"step": 1, "a"\n{"step": 2}\n')
    with pytest.raises(ValueError, match=":2:"):
        read_metrics(path)
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "nothing")


# ---------------------------------------------------------------------- resume
def test_resume_appends_same_files_and_continues_steps(tmp_path):
    first = _monitor(tmp_path)
    first.start()
    for step in range(6):
        first.log({"train/loss": float(step)}, step)
    first.log_text("samples/m", "at five", 5)
    saved = json.loads(json.dumps(first.state_dict()))  # goes into checkpoint metadata
    assert saved["step"] == 5 and saved["run_name"] == "r1"
    # The run goes on past its checkpoint, then is killed mid-line.
    for step in range(6, 9):
        first.log({"train/loss": 100.0 + step}, step)
    first.log_text("samples/m", "after the checkpoint", 7)
    first.stop()
    with open(first.metrics_path, "a") as f:
        f.write('{"step": 9, "train/lo')

    resumed = UnifiedMonitor(tmp_path / "runs", console=False)
    resumed.load_state_dict(saved)
    assert resumed.run_dir == first.run_dir and resumed.step == 5
    with resumed:
        for step in range(saved["step"] + 1, 10):
            resumed.log({"train/loss": float(step)}, step)
    records = read_metrics(resumed.run_dir)
    assert [r["step"] for r in records] == list(range(10))
    assert [r["train/loss"] for r in records] == [float(s) for s in range(10)]
    samples = [json.loads(x) for x in resumed.samples_path.read_text().splitlines()]
    assert [s["text"] for s in samples] == ["at five"]
    # TensorBoard: the steps logged after the checkpoint were purged.
    assert _scalars(_events(resumed.run_dir), "train/loss") == [(s, float(s)) for s in range(10)]
    # A later stop/start of the same monitor keeps what it logged since.
    resumed.start()
    resumed.stop()
    assert len(read_metrics(resumed.run_dir)) == 10


def test_resume_into_another_log_dir_copies_up_to_the_step_and_changes_nothing_there(tmp_path):
    first = _monitor(tmp_path)
    with first:
        for step in range(6):
            first.log({"train/loss": float(step)}, step)
        saved = json.loads(json.dumps(first.state_dict()))
        for step in range(6, 9):  # logged after the checkpoint
            first.log({"train/loss": 100.0 + step}, step)
    original = {p.name: p.read_bytes() for p in first.run_dir.iterdir()}

    resumed = UnifiedMonitor(tmp_path / "elsewhere", console=False)
    resumed.load_state_dict(saved)
    assert resumed.run_dir == tmp_path / "elsewhere" / "r1" and resumed.step == 5
    with resumed:
        for step in range(6, 8):
            resumed.log({"train/loss": float(step)}, step)
    assert [r["train/loss"] for r in read_metrics(resumed.run_dir)] == [float(s) for s in range(8)]
    assert {p.name: p.read_bytes() for p in first.run_dir.iterdir()} == original
    # the original's directory gone (a checkpoint copied to another machine): a fresh start
    again = UnifiedMonitor(tmp_path / "third", console=False)
    again.load_state_dict({**saved, "run_dir": str(tmp_path / "gone" / "r1")})
    with again:
        again.log({"train/loss": 6.0}, 6)
    assert [r["step"] for r in read_metrics(again.run_dir)] == [6]


# ---------------------------------------------------------------------- console
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_plain_lines_when_not_a_tty(tmp_path):
    out = io.StringIO()
    mon = UnifiedMonitor(tmp_path, run_name="r", stream=out)
    mon.progress(total=10, initial=2)
    mon.update_progress(3, {"m0 r": 0.53123, "m0 win": 0.5, "inv": 0.0})
    mon.update_progress(4, {"m0 r": 0.61, "stage": "warmup"})
    mon.close_progress()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("episode 3/10  30% [")
    assert lines[0].endswith("m0 r=0.531 m0 win=0.500 inv=0")
    assert lines[1].endswith("m0 r=0.610 stage=warmup")
    assert "<00:" in lines[1]  # an ETA once the rate is known


def test_progress_bar_on_a_tty(tmp_path):
    out = _Tty()
    mon = UnifiedMonitor(tmp_path, run_name="bar", stream=out)
    mon.progress(total=5)
    for ep in range(1, 6):
        mon.update_progress(ep, {"avg_r": 0.25 * ep})
    mon.close_progress()
    text = out.getvalue()
    assert "\r" in text  # tqdm redraws in place
    assert "5/5" in text and "avg_r=1.250" in text and "bar" in text


def test_console_off_prints_nothing(tmp_path):
    out = io.StringIO()
    mon = UnifiedMonitor(tmp_path, stream=out, console=False)
    mon.progress(3)
    mon.update_progress(1, {"a": 1.0})
    table = mon.print_table([{"a": 1}], "T")
    assert out.getvalue() == "" and table.startswith("T")


def test_print_table_aligned(tmp_path):
    out = io.StringIO()
    mon = UnifiedMonitor(tmp_path, stream=out)
    rows = [
        {"model": "model_0_smollm2", "avg_reward": 0.5, "win_rate": 1.0, "updates": 12},
        {"model": "m1", "avg_reward": -12.25, "updates": 3},
    ]
    mon.print_table(rows, "Model performance")
    assert out.getvalue() == (
        "Model performance\n"
        "model            avg_reward  win_rate  updates\n"
        "---------------  ----------  --------  -------\n"
        "model_0_smollm2       0.500     1.000       12\n"
        "m1                  -12.250         -        3\n"
    )
    assert format_table([], "empty") == "empty\n(no rows)"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.53123, "0.531"),
        (1.0, "1.000"),
        (12, "12"),
        (np.int64(7), "7"),
        (123.456, "123.5"),
        (0.0, "0"),
        (1234567.0, "1.23e+06"),
        (0.00012, "1.20e-04"),
        (float("nan"), "nan"),
        (None, "-"),
        ("3/4", "3/4"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


# ---------------------------------------------------------------------- plots
def _fake_run(root, name: str, n: int = 12, offset: float = 0.0):
    with UnifiedMonitor(root, run_name=name, console=False, tensorboard=False) as mon:
        for s in range(n):
            mon.log(
                {
                    "model/model_0_smollm2/avg_reward": math.sin(s / 3) + offset,
                    "model/model_1_smollm2/avg_reward": s / n + offset,
                    "model/model_0_smollm2/win_rate": 0.5,
                    "env/invalid_rate": float("nan") if s == 3 else 0.1,
                    "train/loss": 1.0 / (s + 1),
                },
                s,
            )
    return mon.run_dir


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def test_plot_metrics_default_keys(tmp_path):
    run = _fake_run(tmp_path, "a")
    out = plot.plot_metrics(run)
    assert out == run / "metrics.png" and _is_png(out)
    out2 = plot.plot_metrics(run / "metrics.jsonl", tmp_path / "x" / "s.png", smooth=4)
    assert _is_png(out2)
    out3 = plot.plot_metrics(run, tmp_path / "k.png", keys=["train/loss", "model/*/avg_reward"])
    assert _is_png(out3)
    with pytest.raises(ValueError, match=r"none of the keys.*available: env/invalid_rate"):
        plot.plot_metrics(run, tmp_path / "n.png", keys=["nope/*"])


def test_plot_helpers(tmp_path):
    assert plot.moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    # a run's metric averaged over the keys a glob matches, step by step (NaN steps left out)
    run = _fake_run(tmp_path, "c", n=4)
    steps, values = plot.metric_curve(run, "model/model_*/avg_reward")
    assert steps == [0, 1, 2, 3]
    assert values == pytest.approx([(math.sin(s / 3) + s / 4) / 2 for s in range(4)])
    assert plot.metric_curve(run / "metrics.jsonl", "env/invalid_rate") == ([0, 1, 2], [0.1] * 3)
    recs = [{"step": 0, "a": 1.0}, {"step": 1, "a": None}, {"step": 2, "a": 3.0}]
    assert plot._series(recs, "a") == ([0, 2], [1.0, 3.0])
    assert plot._label("model/*/avg_reward") == "avg reward (per model)"
    assert plot._line_name("model/m0/avg_reward", "model/*/avg_reward") == "m0"


def test_plot_runs_shared_axes(tmp_path):
    runs = [_fake_run(tmp_path, "sync"), _fake_run(tmp_path, "async", offset=0.3)]
    out = plot.plot_runs(
        runs, ["synchronized", "asynchronous"], "model/*/avg_reward", tmp_path / "cmp.png"
    )
    assert _is_png(out)
    with pytest.raises(ValueError, match="labels"):
        plot.plot_runs(runs, ["one"], "train/loss", tmp_path / "bad.png")


def test_plot_runs_gives_more_than_ten_runs_distinct_line_styles(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    runs = [_fake_run(tmp_path, f"r{i}", offset=i / 10) for i in range(12)]
    plot.plot_runs(runs, [f"run {i}" for i in range(12)], "train/loss", tmp_path / "many.png")
    labelled = [line for line in drawn[0].axes[0].get_lines() if line.get_label().startswith("run")]
    styles = {(line.get_color(), line.get_linestyle()) for line in labelled}
    assert len(labelled) == 12 and len(styles) == 12


def test_plot_cli(tmp_path, capsys):
    run = _fake_run(tmp_path, "cli")
    assert plot.main([str(run), "--out", str(tmp_path / "o.png"), "--keys", "train/loss"]) == 0
    assert _is_png(tmp_path / "o.png")
    other = _fake_run(tmp_path, "cli2")
    assert plot.main([str(run), str(other), "--out", str(tmp_path / "c.png")]) == 0
    assert _is_png(tmp_path / "c.png")
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert plot.main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no metrics.jsonl" in err
    with pytest.raises(SystemExit) as exc:
        plot.make_parser().parse_args([])
    assert exc.value.code == 2


def test_a_fresh_run_never_appends_to_another_runs_files(tmp_path, caplog):
    first = UnifiedMonitor(tmp_path, run_name="same", console=False)
    with first:
        first.log({"a": 1.0}, 0)
    first.start()  # the same monitor again: continues its own files
    first.log({"a": 2.0}, 1)
    first.stop()
    assert [r["a"] for r in read_metrics(first.run_dir)] == [1.0, 2.0]
    with caplog.at_level("WARNING"):
        second = UnifiedMonitor(tmp_path, run_name="same", console=False)
        with second:
            second.log({"a": 9.0}, 0)
    assert second.run_name == "same-2" and "already holds" in caplog.text
    assert [r["a"] for r in read_metrics(first.run_dir)] == [1.0, 2.0]
    assert [r["a"] for r in read_metrics(second.run_dir)] == [9.0]
    third = UnifiedMonitor(tmp_path, run_name="same", console=False)
    third.start()
    third.stop()
    assert third.run_name == "same-3"
