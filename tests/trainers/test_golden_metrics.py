"""The trainer's behaviour, pinned: seeded tiny runs reproduce ``tests/golden/trainer_metrics.json``.

The guard for restructuring the trainer (moving code must not change what it does). After an
intended change of behaviour, regenerate with ``python tests/golden/trainer_metrics.py`` and
commit the JSON diff with the change that explains it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
REGENERATE = "python tests/golden/trainer_metrics.py"
# float32 round-off: the runs are seeded and single-threaded, so a pure refactor reproduces the
# numbers on one machine to the last bits; the tolerance absorbs a different summation order and
# another CPU's kernels. Measured 2026-12-02 on a machine other than the one that wrote the file:
# GRPO runs identical, PPO runs off by up to 2.3e-5 relative (losses, explained variance, weight
# sums) and 2.1e-7 absolute (policy losses near 0). A change of behaviour moves them by far more,
# and the texts the agents wrote are compared exactly.
RTOL, ATOL = 1e-4, 1e-6


def _load_harness():
    spec = importlib.util.spec_from_file_location(
        "golden_trainer_metrics", GOLDEN_DIR / "trainer_metrics.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
GOLDEN = json.loads(harness.GOLDEN_FILE.read_text(encoding="utf-8"))


def test_the_golden_file_covers_every_run():
    assert sorted(GOLDEN) == sorted(harness.RUNS), f"run `{REGENERATE}`"
    for name, record in GOLDEN.items():
        assert record["config"] == harness.RUNS[name], f"{name}: run `{REGENERATE}`"


# The golden file is written by the plain path (every row runs its whole prompt; see the
# harness's main): every run reproduces it through the shared-prefix path (share_prefix on, the
# default), these through the plain one too.
PLAIN_RUNS = ["grpo-kl-entropy-numbers", "ppo-team_battle", "grpo-staged"]


@pytest.mark.parametrize(
    "name, share_prefix",
    [(name, True) for name in harness.RUNS] + [(name, False) for name in PLAIN_RUNS],
)
def test_seeded_run_reproduces_its_golden_metrics(name, share_prefix, tiny_model_path):
    want = GOLDEN[name]
    got = harness.run(name, tiny_model_path, share_prefix=share_prefix)
    assert len(got["episodes"]) == len(want["episodes"])
    for episode, (w, g) in enumerate(zip(want["episodes"], got["episodes"])):
        where = f"{name} episode {episode}"
        assert g["samples"] == w["samples"], f"{where}: the agents wrote something else"
        w, g = w["metrics"], g["metrics"]
        assert sorted(g) == sorted(w), f"{where}: the metric names changed"
        for key in w:
            assert g[key] == pytest.approx(w[key], rel=RTOL, abs=ATOL), (
                f"{where}: {key} is {g[key]!r}, golden {w[key]!r}"
            )
    assert sorted(got["weights"]) == sorted(want["weights"])
    for key, value in want["weights"].items():
        assert got["weights"][key] == pytest.approx(value, rel=RTOL, abs=ATOL), f"{name}: {key}"
