"""The learning benchmarks' --quick smoke runs (tiny random model): each one trains, evaluates,
prints its table and writes its JSON and PNG. Slow (about a minute each on 2 cores)."""

from __future__ import annotations

import importlib
import json

import pytest

BENCHMARKS = ["learning_team_battle", "learning_commons", "compare_strategies", "staged_curriculum"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_quick_run_writes_table_json_and_png(name, tmp_path, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"{name}:" in printed
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert data["command"].startswith(f"python -m benchmarks.{name}")
    assert data["table"] in printed
    png = tmp_path / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_episodes_replaces_the_minutes_budget():
    from benchmarks.common import budget, make_parser

    parser = make_parser("x", minutes=5.0, episodes=8)
    fields = {"max_episodes": 100_000}
    assert budget(parser.parse_args([]), fields) == 5.0
    assert fields["max_episodes"] == 100_000
    assert budget(parser.parse_args(["--train-episodes", "12"]), fields) is None
    assert fields["max_episodes"] == 12
    with pytest.raises(SystemExit, match="--train-episodes must be a positive integer"):
        budget(parser.parse_args(["--train-episodes", "0"]), fields)
