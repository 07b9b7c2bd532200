"""Golden metrics of short seeded training runs: the behaviour a restructure of the trainer
must keep. Regenerate (run from anywhere, only when a change of behaviour is intended)::

    python tests/golden/trainer_metrics.py

Every run of ``RUNS`` trains the tiny random model (``srl_trainers.testing``) for
``EPISODES`` episodes from a fixed seed, on one thread, and records every episode's metrics
(less the wall-clock ones: ``perf/``, API latency), what each slot wrote (the trainer's
``samples``) and, at the end, the sum and the sum of squares of every trainable slot's LoRA
weights. The grid covers GRPO and PPO under each weight-update strategy,
each env, a frozen-base opponent and an API-served slot (a deterministic fake endpoint on
loopback). ``tests/trainers/test_golden_metrics.py`` replays the runs and compares them with
``trainer_metrics.json``: a refactor that moves code without changing what the trainer does
reproduces it to float32 round-off.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).resolve().parent
_ROOT = GOLDEN_DIR.parents[1]
if str(_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(_ROOT))

GOLDEN_FILE = GOLDEN_DIR / "trainer_metrics.json"
EPISODES = 2
SEED = 11

# name -> MultiModelConfig overrides of srl_trainers.testing.tiny_trainer_config
RUNS: dict[str, dict[str, Any]] = {
    **{
        f"grpo-{strategy}-coop_compete": {"weight_update_strategy": strategy}
        for strategy in ("synchronized", "asynchronous", "federated", "selective")
    },
    **{
        f"ppo-{strategy}-coop_compete": {"algorithm": "ppo", "weight_update_strategy": strategy}
        for strategy in ("synchronized", "asynchronous", "federated", "selective")
    },
    "grpo-team_battle-counterfactual": {
        "env": "team_battle",
        "env_kwargs": {"team_size": 2, "num_fields": 3},
        "baseline": "counterfactual",
    },
    "ppo-team_battle": {
        "algorithm": "ppo",
        "env": "team_battle",
        "env_kwargs": {"team_size": 2, "num_fields": 3},
    },
    "grpo-staged": {"env": "staged", "env_kwargs": {"base": "coop_compete"}},
    "ppo-staged": {"algorithm": "ppo", "env": "staged", "env_kwargs": {"base": "coop_compete"}},
    "grpo-kl-entropy-numbers": {
        "beta": 0.05,
        "entropy_coef": 0.01,
        "entropy_scope": "numbers",
        "number_kl_coef": 0.03,
    },
    "grpo-frozen-base-opponent": {
        "policy_mapping": {"player_0": "model_0_tiny", "player_1": "base"},
        "num_models": 1,
    },
    "grpo-api-slot": {"model_types": ["tiny", "api"], "api": True},
}


def fake_api_app():
    """An OpenAI chat-completions endpoint whose answer is a pure function of the prompt."""
    import hashlib

    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        number = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 20
        return {
            "id": "golden",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "base"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": f"HARVEST: {number}"},
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }

    return app


@contextmanager
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _wall_clock(key: str) -> bool:
    return key.startswith("perf/") or key.endswith("/mean_latency")


async def _train(trainer) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every episode's metrics (less the wall-clock ones) and what the slots wrote, and the
    trained LoRA weights' sums."""
    from srl_trainers.lora import lora_parameters

    episodes = []
    try:
        for episode in range(EPISODES):
            out = await trainer.train_multi_model_episode(episode)
            metrics = {k: float(v) for k, v in out["metrics"].items() if not _wall_clock(k)}
            episodes.append({"metrics": metrics, "samples": out["samples"]})
        pool = next(iter(trainer.pools.values()))
        weights = {}
        for slot in trainer.slots:
            params = [p.detach().double() for p in lora_parameters(pool.model, slot).values()]
            weights[f"{slot}/sum"] = float(sum(p.sum() for p in params))
            weights[f"{slot}/sumsq"] = float(sum(p.square().sum() for p in params))
    finally:
        await trainer.shutdown()
    return episodes, weights


def run(name: str, model_path: str | Path, **extra: Any) -> dict[str, Any]:
    """Train run ``name`` of ``RUNS`` and return its record (episode metrics, weight sums);
    ``extra``: config fields on top of the run's own (e.g. ``share_prefix=False``)."""
    from srl_trainers import MultiModelTrainer
    from srl_trainers.serve import BackgroundServer
    from srl_trainers.testing import tiny_trainer_config

    overrides = {**RUNS[name], **extra}
    api = overrides.pop("api", False)
    with tempfile.TemporaryDirectory(prefix="srl_golden_") as work, _one_thread():
        server = BackgroundServer(fake_api_app()).start() if api else None
        if server is not None:
            overrides.update(
                model_names={"tiny": str(model_path), "api": "base"},
                api_base_url=server.url + "/v1",
                api_backoff=0.01,
            )
        try:
            cfg = tiny_trainer_config(
                model_path, work, seed=SEED, max_episodes=EPISODES, **overrides
            )
            episodes, weights = asyncio.run(_train(MultiModelTrainer(cfg)))
        finally:
            if server is not None:
                server.stop()
    return {"config": RUNS[name], "episodes": episodes, "weights": weights}


def main() -> None:
    from srl_trainers.testing import build_tiny_model

    model = build_tiny_model()
    # the plain path (every row its whole prompt) writes the record; the tests hold both paths
    # to it (tests/trainers/test_golden_metrics.py)
    golden = {name: run(name, model, share_prefix=False) for name in RUNS}
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN_FILE} ({len(golden)} runs)")


if __name__ == "__main__":
    main()
