"""Golden playthroughs: replay every env's scripted game and diff it with the checked-in file."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

import pytest

import srl_envs

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
REGENERATE = "python tests/golden/regenerate.py"


def _load_regenerate():
    spec = importlib.util.spec_from_file_location("golden_regenerate", GOLDEN_DIR / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regenerate = _load_regenerate()


@pytest.mark.parametrize("env_id", srl_envs.list_envs())
def test_playthrough_matches_golden_file(env_id):
    path = regenerate.golden_path(env_id)
    assert path.exists(), f"no golden file {path.name} for {env_id}: run `{REGENERATE}`"
    expected = path.read_text(encoding="utf-8")
    actual = regenerate.playthrough(env_id)
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"tests/golden/{path.name} (checked in)",
                tofile=f"{env_id} (played now)",
                n=2,
            )
        )
        pytest.fail(
            f"{env_id} no longer plays like its golden file. If the change is intended, run "
            f"`{REGENERATE}`, review the diff and commit it (bump the env version if rewards, "
            f"observations or termination changed).\n{diff[:20000]}",
            pytrace=False,
        )


@pytest.mark.parametrize("env_id", srl_envs.list_envs())
def test_playthrough_covers_valid_and_invalid_actions(env_id):
    text = regenerate.playthrough(env_id)
    if env_id != "srl/ta-prisoners_dilemma-v0":  # its chat turns take any text
        assert "invalid: True" in text
    assert "invalid: False" in text
    assert regenerate.playthrough(env_id) == text  # seeded: the same game every time


def test_no_stale_golden_files():
    expected = {regenerate.golden_path(env_id).name for env_id in srl_envs.list_envs()}
    present = {p.name for p in GOLDEN_DIR.glob("*.txt")}
    assert present == expected, f"stale or missing golden files: run `{REGENERATE}`"
