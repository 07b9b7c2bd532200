"""Ray mode (srl_trainers.distributed) on a local Ray cluster this module starts: 2 CPUs and 2
logical GPUs (Ray lets a CPU machine declare them; the device stays cpu), the tiny model.

Ray mode with one rollout worker must give local mode's metrics for the same seed; two
workers compose the generate batches differently (each holds its own copies and seeds its
calls by its first copy), so they give other samples, and a seeded two-worker run must
reproduce itself. Faults: a killed worker or engine is rebuilt and the episode replayed
exactly; a dead learner stops the run with its checkpoint intact.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time

import pytest
import torch

from srl_trainers import ConfigError, MultiModelTrainer
from srl_trainers.checkpoint import CheckpointManager
from srl_trainers.distributed import LearnerDiedError, plan_gpus
from srl_trainers.testing import tiny_trainer_config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def _metrics(results_or_metrics) -> dict[str, float]:
    m = results_or_metrics.get("training_metrics", results_or_metrics)
    return {k: v for k, v in m.items() if not k.startswith("perf/")}


def _assert_same(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-6), key


def _weights(trainer: MultiModelTrainer) -> dict[str, dict[str, torch.Tensor]]:
    return {
        s: w for learner in trainer.learners.values() for s, w in learner.adapter_weights().items()
    }


def _run(cfg) -> tuple[dict[str, float], dict[str, dict[str, torch.Tensor]]]:
    trainer = MultiModelTrainer(cfg)
    results = trainer.train_sync()
    weights = _weights(trainer)
    asyncio.run(trainer.shutdown())
    perf = results["training_metrics"]
    # the update's time splits into the learners' own, the pushes and (Ray) the calls' cost
    assert perf["perf/learner_seconds"] > 0
    assert perf["perf/learner_seconds"] + perf["perf/push_seconds"] <= perf["perf/update_seconds"]
    return _metrics(results), weights


@pytest.mark.parametrize(
    "overrides",
    [
        dict(weight_update_strategy="synchronized"),
        dict(weight_update_strategy="asynchronous", colocate_engines=True),
        dict(weight_update_strategy="federated"),
        dict(weight_update_strategy="selective", colocate_engines=True),
        dict(algorithm="ppo", weight_update_strategy="synchronized"),
        dict(
            env="team_battle",
            env_kwargs={"team_size": 2},
            baseline="counterfactual",
            colocate_engines=True,
        ),
        dict(  # the opponents change per episode: the workers play the driver's mapping
            env="team_battle",
            env_kwargs={"team_size": 2},
            opponent_mix=["heuristic", "random"],
            max_episodes=4,
            eval_episodes=2,
            eval_interval=2,
            colocate_engines=True,
        ),
        dict(  # self-play: snapshots taken, served by the engine actor and evicted
            env="team_battle",
            env_kwargs={"team_size": 2},
            baseline="counterfactual",
            opponent_sampling="pfsp",
            snapshot_interval=1,
            max_snapshots=2,
            max_episodes=4,
        ),
        dict(  # self-play in a turn-based game, the learner generating
            env="srl/pz-tictactoe-v3",
            num_models=1,
            episode_length=None,
            kv_cache_size=1024,
            opponent_policy="random",
            opponent_sampling="latest",
            snapshot_interval=1,
            max_episodes=3,
            colocate_engines=True,
        ),
        dict(  # the curriculum of every copy advances in the workers, the driver keeps it
            env="staged",
            env_kwargs={"base": "coop_compete", "warmup_episodes": 1, "episodes_per_stage": 1},
            max_episodes=3,
            eval_episodes=2,
            eval_interval=2,
        ),
    ],
    ids=[
        "grpo-sync",
        "grpo-async",
        "grpo-federated",
        "grpo-selective",
        "ppo",
        "team-cf",
        "team-opponent-mix",
        "team-self-play",
        "tictactoe-self-play",
        "staged",
    ],
)
def test_one_worker_gives_local_modes_metrics_and_weights(
    cluster, tiny_model_path, tmp_path, overrides
):
    local = _run(tiny_trainer_config(tiny_model_path, tmp_path / "local", **overrides))
    remote = _run(
        tiny_trainer_config(
            tiny_model_path, tmp_path / "ray", distributed_backend="ray", **overrides
        )
    )
    _assert_same(local[0], remote[0])
    for slot in local[1]:
        for k in local[1][slot]:
            assert torch.equal(local[1][slot][k], remote[1][slot][k]), (slot, k)


def test_two_workers_play_whole_groups_and_reproduce_themselves(cluster, tiny_model_path, tmp_path):
    # batch_size 8 -> 4 copies = 2 GRPO groups of 2: one group per worker
    runs = []
    for i in range(2):
        cfg = tiny_trainer_config(
            tiny_model_path,
            tmp_path / str(i),
            distributed_backend="ray",
            num_rollout_workers=2,
            batch_size=8,
            colocate_engines=True,
        )
        trainer = MultiModelTrainer(cfg)
        trainer.setup()
        assert trainer.runtime._shares == [(0, 2), (2, 2)]
        rollout = asyncio.run(trainer.rollout.play(0, *trainer.modes.balance()))
        assert sorted({(t.copy, t.group) for t in rollout.turns}) == [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 1),
        ]
        assert len(rollout.raw_totals) == 4
        runs.append(_metrics(trainer.train_sync()))
        asyncio.run(trainer.shutdown())
    _assert_same(runs[0], runs[1])


def test_engine_replicas_serve_their_workers_and_a_dead_one_loses_nothing(
    cluster, tiny_model_path, tmp_path
):
    """engines_per_model=2: each of two workers generates on its own replica (on its own
    logical GPU); the calls are those one shared engine gets, so the run matches one engine's
    metrics and weights, with self-play snapshots served by both replicas, and with one
    replica killed mid-run (rebuilt with the current weights and snapshots)."""
    fields = dict(
        env="team_battle",
        env_kwargs={"team_size": 2},
        distributed_backend="ray",
        num_rollout_workers=2,
        batch_size=8,
        max_episodes=4,
        opponent_sampling="latest",
        snapshot_interval=1,
        max_snapshots=2,
    )
    one = MultiModelTrainer(tiny_trainer_config(tiny_model_path, tmp_path / "one", **fields))
    cfg = tiny_trainer_config(
        tiny_model_path, tmp_path / "two", engines_per_model=2, gpus_per_engine=1.0, **fields
    )
    two = MultiModelTrainer(cfg)
    one.setup()
    two.setup()
    runtime = two.runtime
    (replicas,) = runtime.engines.values()
    assert len(replicas) == 2 and runtime._engines_of(0) != runtime._engines_of(1)
    placement = runtime.placement()
    engine_gpus = sorted(tuple(v["gpus"]) for k, v in placement.items() if k.startswith("engine"))
    assert len(engine_gpus) == 2 and engine_gpus[0] != engine_gpus[1], placement
    for episode in range(4):
        if episode == 2:  # two snapshots are served by now
            ray.kill(replicas[1], no_restart=True)
        a = asyncio.run(one.train_multi_model_episode(episode))["metrics"]
        b = asyncio.run(two.train_multi_model_episode(episode))["metrics"]
        _assert_same(_metrics(a), _metrics(b))
    assert runtime.restarts["engines"] == 1
    weights = _weights(one), _weights(two)
    for slot in weights[0]:
        for k in weights[0][slot]:
            assert torch.equal(weights[0][slot][k], weights[1][slot][k]), (slot, k)
    kept = sorted(s for snap in two.league.snapshots for s in snap["policies"].values())
    for replica in runtime.engines[next(iter(runtime.engines))]:  # the rebuilt one too
        served = ray.get(replica.adapter_names.remote())
        assert sorted(n for n in served if n not in two.slots) == kept
    asyncio.run(one.shutdown())
    asyncio.run(two.shutdown())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(engines_per_model=2), r"engines_per_model=2 .*at most num_rollout_workers \(1\)"),
        (
            dict(engines_per_model=2, num_rollout_workers=2, colocate_engines=True),
            r"engines_per_model=2 .*1 with colocate_engines=True",
        ),
    ],
)
def test_engine_replicas_that_cannot_serve_are_refused(overrides, message):
    from srl_trainers import MultiModelConfig

    with pytest.raises(ConfigError, match=message):
        MultiModelConfig(distributed_backend="ray", **overrides).validate()


def test_more_workers_than_groups_is_refused_before_anything_starts(
    cluster, tiny_model_path, tmp_path
):
    cfg = tiny_trainer_config(
        tiny_model_path, tmp_path, distributed_backend="ray", num_rollout_workers=2
    )
    with pytest.raises(ConfigError, match=r"num_rollout_workers=2 .*at most 1"):
        MultiModelTrainer(cfg).setup()


def _four_groups(tiny_model_path, tmp_path, **overrides):
    """4 policy groups: the tiny model under 4 names (4 base checkpoints, one slot each)."""
    names = {}
    for t in "abcd":
        shutil.copytree(tiny_model_path, tmp_path / f"model_{t}")
        names[t] = str(tmp_path / f"model_{t}")
    return tiny_trainer_config(
        tiny_model_path,
        tmp_path,
        model_types=list("abcd"),
        model_names=names,
        num_models=4,
        env="team_battle",
        distributed_backend="ray",
        **overrides,
    )


def test_four_groups_at_half_a_gpu_land_two_per_gpu(cluster, tiny_model_path, tmp_path):
    cfg = _four_groups(tiny_model_path, tmp_path, gpus_per_learner=0.5, colocate_engines=True)
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    placement = trainer.runtime.placement()
    gpus = [tuple(p["gpus"]) for p in placement.values()]
    assert len(gpus) == 4 and all(len(g) == 1 for g in gpus)
    assert sorted(gpus.count(g) for g in set(gpus)) == [2, 2], placement
    trainer.train_sync()  # and the run trains on them
    asyncio.run(trainer.shutdown())


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(gpus_per_learner=1.0, colocate_engines=True), "gpus_per_learner=1"),
        (dict(gpus_per_learner=0.5, gpus_per_engine=0.6), "gpus_per_engine=0.6"),
    ],
)
def test_an_impossible_gpu_request_fails_at_start_up(
    cluster, tiny_model_path, tmp_path, overrides, field
):
    cfg = _four_groups(tiny_model_path, tmp_path, **overrides)
    deadline = time.time() + 60  # the actors of earlier tests release their GPUs
    while ray.available_resources().get("GPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.2)
    before = ray.available_resources().get("GPU", 0)
    with pytest.raises(ConfigError, match="cannot place its actors") as info:
        MultiModelTrainer(cfg).setup()
    assert field in str(info.value) and "2 GPU(s)" in str(info.value)
    assert ray.available_resources().get("GPU", 0) == before == 2  # nothing holds a GPU


def test_plan_gpus_packs_fractions_first_fit():
    assert plan_gpus([0.5] * 4, 2) == [0, 0, 1, 1]
    assert plan_gpus([0.6, 0.6, 0.6], 2) is None
    assert plan_gpus([1, 0.5, 0.5], 2) == [0, 1, 1]
    assert plan_gpus([2], 1) is None


def test_a_killed_worker_or_engine_is_rebuilt_and_nothing_is_lost(
    cluster, tiny_model_path, tmp_path
):
    local = MultiModelTrainer(tiny_trainer_config(tiny_model_path, tmp_path / "l", max_episodes=3))
    cfg = tiny_trainer_config(
        tiny_model_path, tmp_path / "r", max_episodes=3, distributed_backend="ray"
    )
    remote = MultiModelTrainer(cfg)
    remote.setup()
    faults = {
        1: lambda: ray.kill(remote.runtime.workers[0], no_restart=True),
        2: lambda: ray.kill(next(iter(remote.runtime.engines.values()))[0], no_restart=True),
    }
    for episode in range(3):
        if episode in faults:
            faults[episode]()
        a = asyncio.run(local.train_multi_model_episode(episode))["metrics"]
        b = asyncio.run(remote.train_multi_model_episode(episode))["metrics"]
        _assert_same(_metrics(a), _metrics(b))
    assert remote.runtime.restarts["engines"] == 1
    assert remote.runtime.restarts["rollout_workers"] >= 2
    asyncio.run(remote.shutdown())


def test_a_curriculum_advances_alike_over_two_workers_and_a_dead_one(
    cluster, tiny_model_path, tmp_path
):
    """The staged env's stages: the driver's copies hold the run's curricula (each copy its
    own), the workers play from them; a killed worker's episode replays from the same stages,
    and a Ray run's checkpoint continues locally."""

    def config(name, backend, **kw):
        fields = dict(
            env="staged",
            env_kwargs={"base": "coop_compete", "warmup_episodes": 1, "episodes_per_stage": 2},
            batch_size=8,
            max_episodes=4,
            save_interval=1,
            distributed_backend=backend,
        )
        return tiny_trainer_config(tiny_model_path, tmp_path / name, **{**fields, **kw})

    def counters(trainer):  # the returns' window differs: two workers sample differently
        keys = ("episode", "stage", "episodes_in_stage")
        return [{k: env.state_dict()["curriculum"][k] for k in keys} for env in trainer.envs]

    local = MultiModelTrainer(config("local", "local"))
    remote = MultiModelTrainer(config("ray", "ray", num_rollout_workers=2, colocate_engines=True))
    remote.setup()
    for episode in range(3):
        if episode == 2:
            ray.kill(remote.runtime.workers[1], no_restart=True)
        asyncio.run(local.train_multi_model_episode(episode))
        metrics = asyncio.run(remote.train_multi_model_episode(episode))["metrics"]
        assert metrics["curriculum/stage"] == 0.0
        assert counters(remote) == counters(local)  # the replayed episode counted once
    assert remote.runtime.restarts["rollout_workers"] >= 1
    remote.save_checkpoint()
    asyncio.run(remote.shutdown())
    last = MultiModelTrainer(config("ray", "local"))
    last.load_checkpoint("latest")
    assert counters(last) == counters(local)
    metrics = asyncio.run(last.train_multi_model_episode(3))["metrics"]
    assert metrics["curriculum/stage"] == 1.0  # warm-up, 2 episodes of stage 0, then stage 1


def test_self_play_resumes_in_ray_mode_and_survives_a_dead_engine(
    cluster, tiny_model_path, tmp_path
):
    """A local self-play run's checkpoint (its snapshots) continues in Ray mode, where a
    killed engine is rebuilt with the snapshots it served: the metrics of an uninterrupted
    local run."""

    def config(name, backend, episodes):
        return tiny_trainer_config(
            tiny_model_path,
            tmp_path / name,
            env="team_battle",
            env_kwargs={"team_size": 2},
            opponent_sampling="uniform",
            snapshot_interval=1,
            max_snapshots=3,
            save_interval=1,
            max_episodes=episodes,
            distributed_backend=backend,
        )

    reference = _metrics(MultiModelTrainer(config("ref", "local", 4)).train_sync())
    MultiModelTrainer(config("run", "local", 2)).train_sync()
    remote = MultiModelTrainer(config("run", "ray", 4))
    remote.load_checkpoint("latest")
    assert sorted(remote.runtime.snapshots) == sorted(
        p for p in remote.policies if "_ep" in p
    )  # the resumed snapshots are served
    asyncio.run(remote.train_multi_model_episode(2))
    ray.kill(next(iter(remote.runtime.engines.values()))[0], no_restart=True)
    results = remote.train_sync()
    assert remote.runtime.restarts["engines"] == 1
    asyncio.run(remote.shutdown())
    _assert_same(reference, _metrics(results))


def test_the_workers_api_usage_is_counted_in_the_drivers_metrics_and_checkpoints(
    cluster, tiny_model_path, tmp_path
):
    """API policies answer in the rollout workers; their usage counters reach the driver
    after every episode: the same api/* metrics as local mode, kept in the checkpoint."""
    from srl_trainers.checkpoint import read_state
    from srl_trainers.serve import BackgroundServer
    from srl_trainers.trainer import TRAINER_STATE_FILE
    from tests.golden.trainer_metrics import fake_api_app

    with BackgroundServer(fake_api_app()) as server:

        def config(name, backend):
            return tiny_trainer_config(
                tiny_model_path,
                tmp_path / name,
                model_types=["tiny", "api"],
                model_names={"tiny": str(tiny_model_path), "api": "base"},
                api_base_url=server.url + "/v1",
                api_backoff=0.01,
                max_episodes=3,
                save_interval=1,
                distributed_backend=backend,
            )

        def usage(results):  # the counters, not the wall-clock latency
            m = results["training_metrics"]
            return {k: v for k, v in m.items() if k.startswith("api/") and "latency" not in k}

        local = usage(MultiModelTrainer(config("local", "local")).train_sync())
        remote_trainer = MultiModelTrainer(config("ray", "ray"))
        remote = usage(remote_trainer.train_sync())
        asyncio.run(remote_trainer.shutdown())
    assert local and remote == local
    assert any(k.endswith("/requests") and v > 0 for k, v in remote.items())
    path, _ = CheckpointManager(tmp_path / "ray" / "ckpt").verify("latest")
    state = read_state(path / TRAINER_STATE_FILE)
    (counters,) = state["api"].values()
    pid = next(k for k in remote if k.endswith("/requests")).split("/")[1]
    assert counters["requests"] == remote[f"api/{pid}/requests"]


def test_a_dead_learner_stops_the_run_and_its_checkpoint_resumes_locally(
    cluster, tiny_model_path, tmp_path
):
    def config(backend, **kw):
        fields = {"distributed_backend": backend, "save_interval": 1, "max_episodes": 3, **kw}
        return tiny_trainer_config(tiny_model_path, tmp_path / "run", **fields)

    reference = _metrics(
        MultiModelTrainer(
            tiny_trainer_config(tiny_model_path, tmp_path / "ref", max_episodes=3)
        ).train_sync()
    )
    # a local run's checkpoint continues in Ray mode...
    first = MultiModelTrainer(config("local", max_episodes=1))
    first.train_sync()
    remote = MultiModelTrainer(config("ray"))
    remote.load_checkpoint("latest")
    assert remote.current_episode == 1
    remote.resume_command = "python -m srl_trainers.run --resume latest"
    asyncio.run(remote.train_multi_model_episode(1))
    remote.save_checkpoint()
    # ... its learner dies: the run stops, naming the intact checkpoint and the command
    ray.kill(next(iter(remote.runtime.learners.values())).actor, no_restart=True)
    with pytest.raises(LearnerDiedError) as info:
        remote.train_sync()
    message = str(info.value)
    assert "checkpoint_000002" in message and "--resume latest" in message
    asyncio.run(remote.shutdown())
    _, meta = CheckpointManager(tmp_path / "run" / "ckpt").verify("latest")
    assert meta["episode"] == 2
    # ... and the Ray run's checkpoint continues in local mode, as if nothing had happened
    last = MultiModelTrainer(config("local"))
    last.load_checkpoint("latest")
    _assert_same(reference, _metrics(last.train_sync()))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "srl_trainers.run", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--distributed-backend", "spark"], "distributed_backend='spark'"),
        (
            ["--distributed-backend", "ray", "--ray-address", "127.0.0.1:9"],
            "ray_address='127.0.0.1:9' does not answer",
        ),
        (["--distributed-backend", "ray", "--gpus-per-learner", "1.5"], "gpus_per_learner=1.5"),
    ],
)
def test_bad_ray_settings_on_the_command_line_exit_2(tiny_model_path, tmp_path, args, message):
    base = [
        "--preset",
        "none",
        "--model",
        str(tiny_model_path),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "runs"),
        "--max-episodes",
        "1",
        "--dtype",
        "float32",
    ]
    result = _cli(*base, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
