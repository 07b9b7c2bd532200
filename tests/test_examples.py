"""The Core SRL guide examples in ``examples/`` run end to end: each one's training entry point,
called as its ``__main__`` block calls it, on the tiny random model standing in for the
embedded SmolLM2 (the real model runs them in the slow-marked variant)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GUIDE = {  # file -> its training coroutine function
    "cooperative_training.py": "main",
    "competitive_training.py": "main",
    "mixed_training.py": "main",
    "full_training_session.py": "full_training_example",
}


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)  # the examples write ./checkpoints and ./runs
    results = asyncio.run(getattr(load(name), GUIDE[name])(max_episodes=1))
    assert results["training_completed"] and results["total_episodes"] == 1
    assert list(tmp_path.rglob("metadata.json")), "no checkpoint was written"
    return results


@pytest.mark.parametrize("name", sorted(GUIDE))
def test_guide_example_runs(name, tiny_model_path, tmp_path, monkeypatch, capsys):
    import srl_trainers.embedded

    monkeypatch.setattr(srl_trainers.embedded, "embedded_model_path", lambda *a: tiny_model_path)
    results = run_example(name, tmp_path, monkeypatch)
    states = results["final_model_states"]
    assert len([s for s in states.values() if s["trainable"]]) == 4
    assert all(s["update_count"] >= 0 for s in states.values())
    assert capsys.readouterr().out  # each example prints what it trained


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GUIDE))
def test_guide_example_runs_on_the_embedded_model(name, tmp_path, monkeypatch):
    run_example(name, tmp_path, monkeypatch)


@pytest.mark.parametrize("preset", sorted(p.name for p in (EXAMPLES / "configs").glob("*.yaml")))
def test_preset_is_a_valid_config(preset):
    from srl_trainers import MultiModelConfig

    config = MultiModelConfig.from_yaml(EXAMPLES / "configs" / preset)
    assert config.env in ("coop_compete", "team_battle", "staged")


def test_every_mode_and_env_has_a_preset():
    names = {p.stem for p in (EXAMPLES / "configs").glob("*.yaml")}
    assert {"cooperative", "competitive", "mixed", "coop_compete", "team_battle", "staged"} <= names
