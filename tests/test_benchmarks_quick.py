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
