"""Ray mode (``distributed_backend="ray"``): the run's pieces as Ray actors.

The trainer (the Ray *driver*) keeps the loop, credit assignment, stats, ratings and
checkpoints; the heavy pieces run as actors, on one machine or a cluster:

* one :class:`LearnerHost` per policy group (the slots of one base model), asking for
  ``gpus_per_learner`` GPUs (a fraction shares a GPU: 0.5 puts two groups on one);
* ``engines_per_model`` :class:`EngineHost` replicas per base model (rollout worker i calls
  replica i mod engines_per_model), each asking for ``gpus_per_engine``: an HF
  :class:`~srl_trainers.models.ModelPool` holding copies of the group's adapters, fed the new
  weights after every update through Ray's object store (learner -> engine, never through the
  driver or a filesystem); with ``colocate_engines`` the learner actor generates itself
  (its HF pool, or a vLLM engine in its process);
* ``num_rollout_workers`` :class:`RolloutWorker` actors, each with its share of the env copies
  (whole GRPO groups), its scripted bots and API clients; they format prompts with the
  checkpoint's tokenizer (:class:`~srl_trainers.models.ChatPrompts`) and call the engines.

:class:`RayRuntime` builds and places them, pushes weights, and handles faults: a rollout
worker or an engine that dies is restarted (an engine gets the learners' current weights) and
the episode's rollout is played again from its seeds, so nothing is lost; a learner that dies
holds state that exists nowhere else, so the run stops with :class:`LearnerDiedError`, whose
message names the last checkpoint and the command that resumes from it.

Opponents that change per episode (an ``opponent_mix``, self-play's snapshots) are the
driver's draw: every ``play`` sends the episode's policy mapping to the workers. A snapshot is
frozen inside its learner actor (:meth:`Learner.snapshot`); :meth:`RayRuntime.add_snapshots`
sends its adapter to the engine and its policy to the workers, and a rebuilt engine or worker
gets every snapshot back. A curriculum (the staged env) is the driver's too: its env copies
hold each copy's curriculum state, which every ``play`` sends to the workers' copies and takes
back after the episode.

What differs from local mode: with one rollout worker nothing (the same seeds, the same
generate batches, the same metrics); with several, each worker's generate calls hold only
its copies and are seeded by its first copy's index, so the samples (and the metrics) differ
from local mode's, while a seeded run still reproduces itself.

This module imports Ray when a runtime is built, never at import time: local mode needs no Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from srl_trainers.config import ConfigError, MultiModelConfig
from srl_trainers.learner import Learner, load_adapter_files
from srl_trainers.models import ChatPrompts, Generation
from srl_trainers.policies import SnapshotPolicy
from srl_trainers.rollout import (
    Rollout,
    RolloutResult,
    TrainingEnvironment,
    sum_counters,
    training_env_seed,
)

__all__ = [
    "RAY_INSTALL_HINT",
    "EngineHost",
    "LearnerDiedError",
    "LearnerHost",
    "RayRuntime",
    "RemoteEngine",
    "RemoteLearner",
    "RolloutWorker",
    "plan_gpus",
]

RAY_INSTALL_HINT = "Ray mode needs Ray: pip install 'srl[ray]', or use distributed_backend='local'"
# times a rollout is replayed after workers or engines died, before the run gives up
MAX_ROLLOUT_RESTARTS = 3
# seconds to wait for the actors to start (their models load; a vLLM engine takes a minute or
# two on a CPU) before failing instead of hanging; the GPUs asked are checked before that
PLACEMENT_TIMEOUT_S = 900.0


class LearnerDiedError(RuntimeError):
    """A learner actor died: its weights and optimizer state since the last checkpoint are
    gone. The message names the last checkpoint and the command that resumes from it."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"distributed_backend='ray': {RAY_INSTALL_HINT}") from exc
    return ray


def _set_threads(threads: int) -> None:
    """Ray gives actors with no CPUs asked OMP_NUM_THREADS=1: keep the driver's torch threads."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ actors
class _Generates:
    """What an actor that generates does: its HF ``pool`` answers, or, with
    ``generation_backend="vllm"``, a vLLM engine in the same process that serves the pool's
    adapters from directories on this node's own disk (no shared filesystem)."""

    pool: Any
    backend: Any = None

    def _start_vllm(self, names: list[str]) -> None:
        from srl_trainers.vllm_backend import VLLMGenerationBackend

        self._adapter_dir = Path(tempfile.mkdtemp(prefix="srl-engine-adapters-"))
        self.backend = VLLMGenerationBackend.from_pool(self.pool)
        self.serve_adapters(names)

    def serve_adapters(self, names: list[str]) -> None:
        """The pool's current weights of adapters ``names`` to the vLLM engine (if any)."""
        if self.backend is not None and names:
            self.backend.push_from_pool(self.pool, list(names), self._adapter_dir)

    def generate(self, prompt_ids, adapters, **kwargs) -> list[Generation]:
        return (self.backend or self.pool).generate(prompt_ids, adapters, **kwargs)

    def adapter_names(self) -> list[str]:
        """The adapters this actor serves (its vLLM engine's, else its HF pool's)."""
        return (self.backend or self.pool).adapter_names

    def _stop_serving(self, names: list[str]) -> None:
        if self.backend is not None:
            for name in names:
                self.backend.remove_adapter(name)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()

    def place(self) -> dict[str, Any]:
        return _placement()


class LearnerHost(_Generates, Learner):
    """A :class:`~srl_trainers.learner.Learner` as a Ray actor; it also serves as its group's
    generation engine with ``colocate_engines`` (its HF pool, or with
    ``generation_backend="vllm"`` a vLLM engine in the same process, as local mode runs it:
    the runtime has it serve the new weights after every update)."""

    def __init__(self, config: dict[str, Any], checkpoint: str, slots: list[str], threads: int):
        _set_threads(threads)
        super().__init__(MultiModelConfig.from_dict(config), checkpoint, slots)
        if self.config.colocate_engines and self.config.generation_backend == "vllm":
            self._start_vllm(self.slots)

    def packed_adapter_weights(self, slots: list[str]) -> dict[str, Any]:
        return pack_weights(self.adapter_weights(slots))

    def load_snapshot_files(self, files: dict[str, dict[str, bytes]]) -> None:
        super().load_snapshot_files(files)  # Learner.snapshot comes here too
        self.serve_adapters(list(files))

    def remove_adapters(self, names: list[str]) -> None:
        super().remove_adapters(names)
        self._stop_serving(names)


def pack_weights(weights: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each adapter's tensors as one flat tensor (per dtype) with their names and shapes: Ray
    serialises one buffer instead of a thousand small tensors (SmolLM2's 4 adapters: 1,680)."""
    import torch

    out = {}
    for name, state in weights.items():
        keys = sorted(state)
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(str(state[k].dtype), []).append(k)
        out[name] = [
            (ks, [tuple(state[k].shape) for k in ks], torch.cat([state[k].reshape(-1) for k in ks]))
            for ks in groups.values()
        ]
    return out


def unpack_weights(packed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tensors of :func:`pack_weights`, by adapter and name (views of the flat ones)."""
    import math

    out: dict[str, dict[str, Any]] = {}
    for name, groups in packed.items():
        state = out.setdefault(name, {})
        for keys, shapes, flat in groups:
            at = 0
            for k, shape in zip(keys, shapes):
                n = math.prod(shape)
                state[k] = flat[at : at + n].view(shape)
                at += n
    return out


class EngineHost(_Generates):
    """A generation engine actor: the HF pool of one base model with copies of its group's
    adapters (the same seeded initialisation as the learner's), frozen. With
    ``generation_backend="vllm"`` a colocated vLLM engine generates instead; the HF copy then
    stays on the CPU, where it turns pushed tensors into adapter directories on this node's
    own disk for vLLM to load (no shared filesystem)."""

    def __init__(self, config: dict[str, Any], checkpoint: str, slots: list[str], threads: int):
        _set_threads(threads)
        from srl_trainers.population import build_pool
        from srl_trainers.strategies import make_strategy

        cfg = MultiModelConfig.from_dict(config)
        vllm = cfg.generation_backend == "vllm"
        if vllm:
            cfg = dataclasses.replace(cfg, device="cpu")
        strategy = make_strategy(cfg, slots)
        self.pool = build_pool(
            cfg, checkpoint, slots, init_seed=lambda i: strategy.lora_init_seed(i, cfg.seed)
        )
        self.pool.model.requires_grad_(False)
        if vllm:
            self._start_vllm(slots)

    def set_packed_adapter_weights(self, packed: dict[str, Any]) -> None:
        self.set_adapter_weights(unpack_weights(packed))

    def set_adapter_weights(self, weights: dict[str, dict[str, Any]]) -> None:
        self.pool.set_adapter_weights(weights)
        self.serve_adapters(list(weights))

    def load_snapshot_files(self, files: dict[str, dict[str, bytes]]) -> None:
        """Serve self-play snapshots, given as :meth:`Learner.adapter_files` (new adapters)."""
        load_adapter_files(self.pool, files, frozen=True)
        self.serve_adapters(list(files))

    def remove_adapters(self, names: list[str]) -> None:
        for name in names:
            self.pool.remove_adapter(name)
        self._stop_serving(names)


def _placement() -> dict[str, Any]:
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "gpus": ray.get_gpu_ids()}


class RemoteEngine(ChatPrompts):
    """What a rollout worker holds of an engine actor: the checkpoint's tokenizer (prompts
    are formatted here, as the engine's pool would) and ``generate`` through the actor."""

    def __init__(self, checkpoint: str, actor: Any, kv_cache_size: int) -> None:
        prompts = ChatPrompts.of(checkpoint, kv_cache_size=kv_cache_size)
        self.checkpoint = checkpoint
        self.tokenizer = prompts.tokenizer
        self.kv_cache_size = kv_cache_size
        self.actor = actor

    def generate(self, prompt_ids, adapters, **kwargs) -> list[Generation]:
        import ray

        return ray.get(self.actor.generate.remote(prompt_ids, adapters, **kwargs))

    def set_adapter_weights(self, weights: dict[str, dict[str, Any]]) -> None:
        import ray

        ray.get(self.actor.set_adapter_weights.remote(weights))


class RolloutWorker:
    """A Ray actor playing env copies ``first .. first + count - 1`` of ``total``: its own env
    copies, population (scripted bots, API clients) and a :class:`RemoteEngine` per base model."""

    def __init__(
        self,
        config: dict[str, Any],
        first: int,
        count: int,
        total: int,
        engines: dict[str, Any],
        reward_function: Callable[[str, dict[str, Any]], float] | None,
        reward_function_mode: str,
        threads: int,
    ) -> None:
        _set_threads(threads)
        from srl_trainers.population import Population, response_prefix_of

        cfg = MultiModelConfig.from_dict(config)
        environment = TrainingEnvironment(cfg)
        environment.reward_function = reward_function
        environment.reward_function_mode = reward_function_mode
        probe = environment.make()
        population = Population(cfg, probe)
        envs = [probe] + [environment.make() for _ in range(count - 1)]
        population.make_bots(count)
        clients = {c: RemoteEngine(c, actor, cfg.kv_cache_size) for c, actor in engines.items()}
        self.rollout = Rollout(
            cfg,
            environment,
            envs,
            population.policies,
            population.policy_mapping,
            pools=clients,
            response_prefix=response_prefix_of(cfg, probe),
            copy_offset=first,
            total_copies=total,
        )

    def play(
        self,
        episode: int,
        coop: float,
        comp: float,
        policy_mapping: dict[str, str] | None = None,
        curriculum_states: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> RolloutResult:
        """Play this worker's copies; ``policy_mapping``: who plays whom this episode (the
        driver's, when it changes per episode: an opponent mix, self-play), else the
        config's. ``curriculum_states``: the driver's curriculum state of each of these copies
        (the staged env), loaded before playing; the result returns them after the episode."""
        rollout = self.rollout
        fixed = rollout.policy_mapping
        staged = [env for env in rollout.envs if env.curriculum is not None]
        if curriculum_states is not None:
            if len(curriculum_states) != len(staged):
                raise ValueError(
                    f"{len(curriculum_states)} curriculum states for {len(staged)} staged copies"
                )
            for env, state in zip(staged, curriculum_states):
                env.load_state_dict(state)
        if policy_mapping is not None:
            unknown = set(policy_mapping.values()) - set(rollout.policies)
            if unknown:
                raise ValueError(f"policy_mapping names policies this worker lacks: {unknown}")
            rollout.policy_mapping = policy_mapping
        try:
            result = asyncio.run(rollout.play(episode, coop, comp, **kwargs))
        finally:
            rollout.policy_mapping = fixed
        result.curriculum_states = [env.state_dict() for env in staged]
        # the policies' counters (API usage) since the last play: the driver keeps the run's
        # totals, so a rebuilt worker starting from zero loses none
        for pid, policy in rollout.policies.items():
            counters = policy.state_dict()
            if counters:
                result.counter_increments[pid] = dict(counters)
                policy.load_state_dict(dict.fromkeys(counters, 0))
        return result

    def add_snapshots(self, snapshots: list[tuple[str, str, int]]) -> None:
        """Policies for self-play snapshots, (id, source slot, episode) each: generated by the
        engine with their own adapter (which the engine holds by then)."""
        policies = self.rollout.policies
        for pid, slot, episode in snapshots:
            policies[pid] = SnapshotPolicy.of(pid, policies[slot], episode)

    def remove_policies(self, pids: list[str]) -> None:
        for pid in pids:
            self.rollout.policies.pop(pid, None)

    def ping(self) -> int:
        return os.getpid()


# ------------------------------------------------------------------------------ driver side
class RemoteLearner:
    """The driver's handle on a :class:`LearnerHost`: the :class:`Learner` methods the trainer
    calls, each a blocking Ray call; a dead actor raises :class:`LearnerDiedError`."""

    def __init__(self, runtime: RayRuntime, checkpoint: str, slots: list[str], actor: Any):
        self.runtime = runtime
        self.checkpoint = checkpoint
        self.slots = list(slots)
        self.actor = actor

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        try:
            return ray.get(getattr(self.actor, method).remote(*args))
        except ray.exceptions.RayActorError as exc:
            raise self.runtime.learner_died(self.checkpoint, exc) from exc

    def update(self, buffers, episode, recent_rewards):
        return self._call("update", buffers, episode, recent_rewards)

    def adapter_weights(self, slots=None):
        return self._call("adapter_weights", slots)

    def adapter_files(self, names=None):
        return self._call("adapter_files", names)

    def load_adapter_files(self, files):
        return self._call("load_adapter_files", files)

    def state_dict(self):
        return self._call("state_dict")

    def load_state_dict(self, state):
        return self._call("load_state_dict", state)

    def update_counts(self):
        return self._call("update_counts")

    def snapshot(self, copies):
        return self._call("snapshot", copies)

    def load_snapshot_files(self, files):
        return self._call("load_snapshot_files", files)

    def remove_adapters(self, names):
        return self._call("remove_adapters", names)

    def serve_adapters(self, names):
        return self._call("serve_adapters", names)

    def place(self) -> dict[str, Any]:
        return self._call("place")


def plan_gpus(requests: list[float], gpus: int) -> list[int] | None:
    """First-fit of fractional GPU requests onto ``gpus`` GPUs of capacity 1, largest first
    (how Ray packs fractional GPU resources on a node): the GPU index of each request, or
    None when they do not fit. Whole-number requests take that many GPUs of their own."""
    free = [1.0] * gpus
    out: list[int] = [0] * len(requests)
    for i in sorted(range(len(requests)), key=lambda i: -requests[i]):
        need = requests[i]
        if need == 0:
            continue
        if need >= 1:
            whole = [g for g, f in enumerate(free) if f >= 1.0 - 1e-9][: int(need)]
            if len(whole) < int(need):
                return None
            for g in whole:
                free[g] = 0.0
            out[i] = whole[0]
            continue
        fit = next((g for g, f in enumerate(free) if f >= need - 1e-9), None)
        if fit is None:
            return None
        free[fit] -= need
        out[i] = fit
    return out


class RayRuntime:
    """Builds, places and supervises the actors of a Ray-mode run (see the module docstring)."""

    def __init__(
        self,
        config: MultiModelConfig,
        groups: dict[str, list[str]],
        environment: TrainingEnvironment,
        num_copies: int,
        *,
        resume_hint: Callable[[], str],
    ) -> None:
        self.ray = _import_ray()
        self.config = config
        self.groups = groups
        self.environment = environment
        self.num_copies = num_copies
        self.resume_hint = resume_hint
        self.restarts = {"rollout_workers": 0, "engines": 0}
        # self-play snapshots served by the engines and workers: id -> (checkpoint, slot, episode)
        self.snapshots: dict[str, tuple[str, str, int]] = {}
        self._threads = _torch_threads()
        self._shares = self._split_copies()  # checked before anything starts
        self._replicas = 1 if config.colocate_engines else config.engines_per_model
        self._started_ray = self._connect()
        try:
            self._check_resources()
            self._cfg = config.to_dict()
            self.learners = {c: self._new_learner(c, s) for c, s in groups.items()}
            # checkpoint -> its engine replicas (the learner's actor with colocate_engines)
            self.engines = {c: [self._new_engine(c) for _ in range(self._replicas)] for c in groups}
            self.workers = [self._new_worker(i) for i in range(len(self._shares))]
            self._wait_ready()
            for checkpoint in groups:  # the engines start from the learners' weights
                self.push_weights(checkpoint, groups[checkpoint])
        except BaseException:
            self.shutdown()
            raise

    # ---------------------------------------------------------------- start-up
    def _connect(self) -> bool:
        ray, cfg = self.ray, self.config
        if ray.is_initialized():  # a cluster the caller (a script, a test) started
            return False
        address = cfg.ray_address
        if address is not None and address != "auto":
            hostport = address.removeprefix("ray://")
            host, _, port = hostport.rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError as exc:
                raise ConfigError(
                    f"MultiModelConfig.ray_address={address!r} does not answer ({exc}): start "
                    "the head node there (ray start --head --port PORT), give its address, or "
                    "leave ray_address unset to start a local Ray"
                ) from None
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=True,
                configure_logging=False,
            )
        except ConnectionError as exc:
            raise ConfigError(
                f"MultiModelConfig.ray_address={address!r}: {exc} Start one with "
                "`ray start --head`, or leave ray_address unset to start a local Ray"
            ) from None
        return True

    def _requests(self) -> list[tuple[str, float]]:
        cfg = self.config
        out = [("gpus_per_learner", cfg.gpus_per_learner) for _ in self.groups]
        if not cfg.colocate_engines:
            n = len(self.groups) * self._replicas
            out += [("gpus_per_engine", cfg.gpus_per_engine) for _ in range(n)]
        return out

    def _check_resources(self) -> None:
        """Fail now, naming the fields, when the actors cannot all be placed (Ray would
        otherwise wait for resources forever)."""
        cfg = self.config
        requests = self._requests()
        if not any(g for _, g in requests):
            return
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        per_node = [int(n["Resources"].get("GPU", 0)) for n in nodes]
        # each node packs its own GPUs; try the requests node by node, first fit
        remaining = [g for _, g in requests if g > 0]
        for gpus in per_node:
            placed: list[float] = []
            for g in list(remaining):
                if plan_gpus([*placed, g], gpus) is not None:
                    placed.append(g)
                    remaining.remove(g)
        if remaining:
            total = sum(per_node)
            engines = (
                ""
                if cfg.colocate_engines
                else f" + {len(self.groups) * self._replicas} engines x "
                + (f"gpus_per_engine={cfg.gpus_per_engine:g}")
            )
            raise ConfigError(
                f"Ray mode cannot place its actors: {len(self.groups)} learners x "
                f"gpus_per_learner={cfg.gpus_per_learner:g}{engines} do not fit on the "
                f"cluster's {total} GPU(s) ({', '.join(map(str, per_node))} per node): lower "
                "gpus_per_learner / gpus_per_engine (fractions share a GPU) or "
                "engines_per_model, set colocate_engines=True, or add GPUs"
            )

    def _options(self, gpus: float) -> dict[str, Any]:
        # num_cpus=0: the actors mostly wait on each other; asking a CPU each would deadlock
        # a laptop's 2-core Ray with more actors than cores
        return {"num_cpus": 0, "num_gpus": gpus, "max_restarts": 0, "max_concurrency": 1}

    def _new_learner(self, checkpoint: str, slots: list[str]) -> RemoteLearner:
        actor = (
            self.ray.remote(LearnerHost)
            .options(**self._options(self.config.gpus_per_learner))
            .remote(self._cfg, checkpoint, slots, self._threads)
        )
        return RemoteLearner(self, checkpoint, slots, actor)

    def _new_engine(self, checkpoint: str) -> Any:
        if self.config.colocate_engines:
            return self.learners[checkpoint].actor
        return (
            self.ray.remote(EngineHost)
            .options(**self._options(self.config.gpus_per_engine))
            .remote(self._cfg, checkpoint, self.groups[checkpoint], self._threads)
        )

    def _split_copies(self) -> list[tuple[int, int]]:
        """(first copy, count) per worker: whole GRPO groups, as even as they come."""
        cfg = self.config
        g = cfg.group_size if cfg.algorithm == "grpo" else 1
        groups = self.num_copies // g
        n = cfg.num_rollout_workers
        if n > groups:
            raise ConfigError(
                f"MultiModelConfig.num_rollout_workers={n} is not allowed: expected at most "
                f"{groups}, the {'GRPO groups' if g > 1 else 'env copies'} of an episode "
                f"({self.num_copies} copies / group_size {g}); a worker plays whole groups"
            )
        base, extra = divmod(groups, n)
        shares, first = [], 0
        for i in range(n):
            count = (base + (i < extra)) * g
            shares.append((first, count))
            first += count
        return shares

    def _engines_of(self, index: int) -> dict[str, Any]:
        """The engine each base model's generate calls of rollout worker ``index`` go to."""
        return {c: replicas[index % len(replicas)] for c, replicas in self.engines.items()}

    def _all_engines(self) -> list[tuple[str, Any]]:
        return [(c, e) for c, replicas in self.engines.items() for e in replicas]

    def _new_worker(self, index: int) -> Any:
        first, count = self._shares[index]
        return (
            self.ray.remote(RolloutWorker)
            .options(num_cpus=0, max_restarts=0)
            .remote(
                self._cfg,
                first,
                count,
                self.num_copies,
                self._engines_of(index),
                self.environment.reward_function,
                self.environment.reward_function_mode,
                self._threads,
            )
        )

    def _wait_ready(self) -> None:
        """Every actor built (its model loaded), or a clear error instead of a hang."""
        ray = self.ray
        pings = [x.actor.place.remote() for x in self.learners.values()]
        if not self.config.colocate_engines:
            pings += [e.place.remote() for _, e in self._all_engines()]
        pings += [w.ping.remote() for w in self.workers]
        start = time.time()
        ready, pending = ray.wait(pings, num_returns=len(pings), timeout=30)
        while pending and time.time() - start < PLACEMENT_TIMEOUT_S:
            print(
                f"srl: waiting for {len(pending)} of {len(pings)} Ray actors to start "
                f"({time.time() - start:.0f} s: models loading)",
                flush=True,
            )
            more, pending = ray.wait(pending, num_returns=len(pending), timeout=30)
            ready += more
        if pending:
            raise ConfigError(
                f"Ray mode: {len(pending)} of {len(pings)} actors were not placed within "
                f"{PLACEMENT_TIMEOUT_S:g} s (the cluster lacks the GPUs or memory asked: "
                "gpus_per_learner, gpus_per_engine, num_rollout_workers)"
            )
        ray.get(ready)  # raises the error of an actor that failed to build

    # ---------------------------------------------------------------- running
    def placement(self) -> dict[str, dict[str, Any]]:
        """Where each actor landed: ``learner/<checkpoint>`` and ``engine/<checkpoint>``
        (``engine/<checkpoint>/<r>`` for replica r of several) -> node id and GPU ids."""
        out = {f"learner/{c}": x.place() for c, x in self.learners.items()}
        if not self.config.colocate_engines:
            for c, replicas in self.engines.items():
                for r, e in enumerate(replicas):
                    key = f"engine/{c}" if len(replicas) == 1 else f"engine/{c}/{r}"
                    out[key] = self.ray.get(e.place.remote())
        return out

    def push_weights(
        self, checkpoint: str, slots: list[str], replicas: list[Any] | None = None
    ) -> None:
        """The learner's new adapter weights of ``slots`` to the engines of its base model
        (or to ``replicas`` of them), learner -> object store -> engine: the object store
        holds one copy, whichever number of replicas reads it. A learner that generates
        itself (colocate_engines) has them already; its vLLM engine, if it runs one, loads
        them from its own disk."""
        if not slots:
            return
        if self.config.colocate_engines:
            if self.config.generation_backend == "vllm":
                self.learners[checkpoint].serve_adapters(slots)
            return
        learner = self.learners[checkpoint]
        weights = learner.actor.packed_adapter_weights.remote(slots)  # in the object store
        self._on_replicas(checkpoint, "set_packed_adapter_weights", weights, replicas)

    def _on_replicas(
        self, checkpoint: str, method: str, arg: Any, replicas: list[Any] | None = None
    ) -> None:
        """Call ``method(arg)`` on the engine replicas of ``checkpoint`` (all, or
        ``replicas``); a learner that died making ``arg`` (an object ref) stops the run. A dead
        replica is skipped: the next rollout finds it dead and rebuilds it with the current
        weights and snapshots."""
        ray = self.ray
        targets = self.engines[checkpoint] if replicas is None else replicas
        calls = [getattr(e, method).remote(arg) for e in targets]
        for call in calls:
            try:
                ray.get(call)
            except ray.exceptions.RayActorError:
                pass
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, ray.exceptions.RayActorError):
                    raise self.learner_died(checkpoint, exc.cause) from exc
                raise

    def add_snapshots(self, checkpoint: str, copies: dict[str, str], episode: int) -> None:
        """Serve snapshots that the learner of ``checkpoint`` holds (``{id: slot}``, taken or
        loaded there): the engine loads their adapters (learner -> object store -> engine) and
        every rollout worker gets their policies."""
        self.snapshots.update({pid: (checkpoint, slot, episode) for pid, slot in copies.items()})
        self._serve_snapshots(checkpoint, list(copies), self.workers)

    def _serve_snapshots(
        self,
        checkpoint: str,
        pids: list[str],
        workers: list[Any],
        replicas: list[Any] | None = None,
    ) -> None:
        if not pids:
            return
        if not self.config.colocate_engines:  # a learner that generates holds them already
            files = self.learners[checkpoint].actor.adapter_files.remote(pids)
            self._on_replicas(checkpoint, "load_snapshot_files", files, replicas)
        self.ray.get([w.add_snapshots.remote(self._specs(pids)) for w in workers])

    def remove_snapshots(self, pids: list[str]) -> None:
        """Stop serving evicted snapshots (the learner removes its own copies)."""
        ray = self.ray
        gone = [pid for pid in pids if pid in self.snapshots]
        if not gone:
            return
        if not self.config.colocate_engines:
            for checkpoint in self.engines:
                mine = [pid for pid in gone if self.snapshots[pid][0] == checkpoint]
                if mine:
                    self._on_replicas(checkpoint, "remove_adapters", mine)
        ray.get([w.remove_policies.remote(gone) for w in self.workers])
        for pid in gone:
            del self.snapshots[pid]

    def _snapshots_of(self, checkpoint: str) -> list[str]:
        return [pid for pid, (c, _, _) in self.snapshots.items() if c == checkpoint]

    def _specs(self, pids: list[str]) -> list[tuple[str, str, int]]:
        """(id, source slot, episode) of snapshots, what a worker builds their policies from."""
        return [(pid, *self.snapshots[pid][1:]) for pid in pids]

    def play(
        self,
        episode: int,
        coop: float,
        comp: float,
        *,
        curriculum_states: list[dict[str, Any] | None] | None = None,
        **kwargs: Any,
    ) -> RolloutResult:
        """Every worker plays its copies; a worker or engine that dies is rebuilt and the
        episode played again from its seeds (up to MAX_ROLLOUT_RESTARTS times).
        ``curriculum_states``: per env copy, the driver's curriculum state (None for a copy
        without one); each worker gets its copies' states, so a replayed episode starts from
        the same stages."""
        ray = self.ray

        def share(first: int, count: int) -> list[dict[str, Any]] | None:
            if curriculum_states is None:
                return None
            return [s for s in curriculum_states[first : first + count] if s is not None]

        counted: list[dict[str, dict[str, float]]] = []  # by workers of failed attempts
        for attempt in range(MAX_ROLLOUT_RESTARTS + 1):
            refs = [
                w.play.remote(episode, coop, comp, curriculum_states=share(*part), **kwargs)
                for w, part in zip(self.workers, self._shares)
            ]
            try:
                result = RolloutResult.merge(ray.get(refs))
                result.counter_increments = sum_counters([*counted, result.counter_increments])
                return result
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                # the requests the surviving workers made in this attempt still count
                for ref in refs:
                    with contextlib.suppress(Exception):
                        counted.append(ray.get(ref).counter_increments)
                if isinstance(exc, ray.exceptions.RayTaskError) and not isinstance(
                    exc.cause, ray.exceptions.RayActorError
                ):
                    raise  # a bug or bad input in the rollout itself: not a fault to retry
                if attempt == MAX_ROLLOUT_RESTARTS:
                    raise RuntimeError(
                        f"Ray mode: the rollout of episode {episode} failed "
                        f"{MAX_ROLLOUT_RESTARTS + 1} times (actors kept dying): {exc}"
                    ) from exc
                self._recover()
        raise AssertionError("unreachable")

    def _alive(self, actor: Any, method: str) -> bool:
        ray = self.ray
        try:
            ray.get(getattr(actor, method).remote(), timeout=PLACEMENT_TIMEOUT_S)
            return True
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return False

    def _recover(self) -> None:
        """Rebuild the dead engines (with the learners' current weights) and workers."""
        ray = self.ray
        engine_restarted = False
        if self.config.colocate_engines:
            for checkpoint, learner in self.learners.items():
                if not self._alive(learner.actor, "place"):
                    raise self.learner_died(checkpoint, None)
        else:
            for checkpoint, replicas in self.engines.items():
                for r, engine in enumerate(replicas):
                    if self._alive(engine, "place"):
                        continue
                    which = f" (replica {r})" if len(replicas) > 1 else ""
                    print(
                        f"srl: the engine actor of {checkpoint}{which} died; restarting it",
                        flush=True,
                    )
                    self.restarts["engines"] += 1
                    engine_restarted = True
                    replicas[r] = new = self._new_engine(checkpoint)
                    ray.get(new.place.remote())
                    self.push_weights(checkpoint, self.groups[checkpoint], [new])
                    self._serve_snapshots(checkpoint, self._snapshots_of(checkpoint), [], [new])
        for i, worker in enumerate(self.workers):
            # workers hold handles of the engines they were built with: rebuild every worker
            # after an engine restart, else only the dead ones
            if not engine_restarted and self._alive(worker, "ping"):
                continue
            self.ray.kill(worker, no_restart=True)
            print(f"srl: rollout worker {i} died or lost its engine; restarting it", flush=True)
            self.restarts["rollout_workers"] += 1
            self.workers[i] = self._new_worker(i)
            if self.snapshots:  # the engines serve them already
                ray.get(self.workers[i].add_snapshots.remote(self._specs(list(self.snapshots))))
        ray.get([w.ping.remote() for w in self.workers])

    def learner_died(self, checkpoint: str, exc: BaseException | None) -> LearnerDiedError:
        return LearnerDiedError(
            f"the learner actor of {checkpoint} (slots {', '.join(self.groups[checkpoint])}) "
            f"died{f' ({type(exc).__name__})' if exc is not None else ''}; its updates since the "
            f"last checkpoint are lost. {self.resume_hint()}"
        )

    def shutdown(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            return
        # vLLM's engine process goes with the actor that runs it (an engine, or a learner
        # that generates itself)
        engines = [e for _, e in self._all_engines()] if hasattr(self, "engines") else []
        closing = [e.close.remote() for e in engines]
        with contextlib.suppress(Exception):
            ray.wait(closing, num_returns=len(closing), timeout=60)
        for actor in [
            *(x.actor for x in getattr(self, "learners", {}).values()),
            *engines,
            *getattr(self, "workers", []),
        ]:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor, no_restart=True)
        if self._started_ray:
            ray.shutdown()


class DistributedRollout:
    """The trainer's rollout in Ray mode: :meth:`play` as :class:`Rollout`'s, over the workers."""

    def __init__(
        self,
        runtime: RayRuntime,
        policy_mapping: dict[str, str],
        envs: list[Any],
        policies: dict[str, Any],
    ) -> None:
        self.runtime = runtime
        self.policy_mapping = policy_mapping
        self.config = runtime.config
        # the driver's policies: their counters (API usage) are the run's, the workers'
        # increments added after every episode (what metrics and checkpoints read)
        self.policies = policies
        # the driver's env copies: their curricula (the staged env) are the run's, which the
        # workers' copies play from and hand back after every episode
        self.envs = envs

    def env_seed(self, episode: int, group: int) -> int:
        return training_env_seed(self.config.seed, episode, group)

    async def play(
        self,
        episode: int,
        coop: float,
        comp: float,
        *,
        evaluation: bool = False,
        temperature: float | None = None,
    ) -> RolloutResult:
        t0 = time.time()
        staged = [env for env in self.envs if env.curriculum is not None]
        result = await asyncio.to_thread(
            self.runtime.play,
            episode,
            coop,
            comp,
            policy_mapping=dict(self.policy_mapping),  # the workers play the driver's
            curriculum_states=(
                [env.state_dict() if env.curriculum is not None else None for env in self.envs]
                if staged
                else None
            ),
            evaluation=evaluation,
            temperature=temperature,
        )
        for env, state in zip(staged, result.curriculum_states):
            env.load_state_dict(state)
        for pid, grown in result.counter_increments.items():
            policy = self.policies[pid]
            totals = policy.state_dict() or {}
            policy.load_state_dict({k: totals.get(k, 0) + v for k, v in grown.items()})
        result.generation_seconds = min(result.generation_seconds, time.time() - t0)
        return result


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
