"""CheckpointManager: atomic saves, ordering, rotation, JSON-safe metadata, RNG, SIGKILL survival."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import math
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import srl_trainers.checkpoint as ckpt_module
from srl_trainers.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointManager,
    CheckpointNotFoundError,
    CheckpointVerificationError,
    capture_rng_state,
    checkpoint_id_for,
    list_available_checkpoints,
    load_checkpoint_metadata,
    load_rng_state,
    load_tensors,
    read_state,
    restore_rng_state,
    save_rng_state,
    to_jsonable,
    write_state,
)
from srl_trainers.config import ConfigError, MultiModelConfig, TrainingMode, WeightUpdateStrategy
from srl_trainers.testing import tiny_trainer_config
from srl_trainers.trainer import MultiModelTrainer
from tests.trainers.checkpoint_tools import (
    flip_bytes,
    make_format_1,
    plant_pickle,
    resign,
)


def _writer(payload: bytes = b"weights", name: str = "adapter.bin"):
    def write(d: Path) -> None:
        (d / name).write_bytes(payload)
        (d / "sub").mkdir()
        (d / "sub" / "optimizer.txt").write_text("state")

    return write


def _save(mgr: CheckpointManager, episode: int, payload: bytes = b"w", **meta) -> Path:
    return mgr.save(checkpoint_id_for(episode), _writer(payload), {"episode": episode, **meta})


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------- basics
def test_checkpoint_id_for():
    assert checkpoint_id_for(42) == "checkpoint_000042"
    assert checkpoint_id_for(np.int64(7)) == "checkpoint_000007"
    with pytest.raises(ValueError):
        checkpoint_id_for(-1)


def test_round_trip(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck")
    path = _save(mgr, 3, b"abc", note="hello")
    assert path == tmp_path / "ck" / "checkpoint_000003"
    assert (path / "adapter.bin").read_bytes() == b"abc"
    assert (path / "sub" / "optimizer.txt").read_text() == "state"
    meta = mgr.load_metadata("checkpoint_000003")
    assert meta["episode"] == 3 and meta["note"] == "hello"
    assert meta["checkpoint_id"] == "checkpoint_000003"
    assert meta["format"] == CHECKPOINT_FORMAT == 2
    assert meta["files"] == {
        "adapter.bin": {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()},
        "sub/optimizer.txt": {"size": 5, "sha256": hashlib.sha256(b"state").hexdigest()},
    }
    assert mgr.list() == ["checkpoint_000003"]
    assert mgr.resolve("latest") == path
    assert mgr.read_latest_pointer() == "checkpoint_000003"
    # No work directories left behind.
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["LATEST", "checkpoint_000003"]
    # Core SRL module functions.
    assert list_available_checkpoints(tmp_path / "ck") == ["checkpoint_000003"]
    assert load_checkpoint_metadata("checkpoint_000003", tmp_path / "ck")["note"] == "hello"
    assert load_checkpoint_metadata("latest", str(tmp_path / "ck"))["episode"] == 3
    assert list_available_checkpoints(tmp_path / "missing") == []


def test_write_fn_may_return_extra_metadata(tmp_path):
    mgr = CheckpointManager(tmp_path)

    def write(d: Path) -> dict:
        data = b"x" * 100
        (d / "a.bin").write_bytes(data)
        return {"sha256": hashlib.sha256(data).hexdigest()}

    mgr.save("ck", write, {"episode": 1})
    assert mgr.load_metadata("ck")["sha256"] == hashlib.sha256(b"x" * 100).hexdigest()


def test_order_is_by_episode_not_name_or_mtime(tmp_path):
    mgr = CheckpointManager(tmp_path, max_checkpoints=-1)
    mgr.save("zz_first", _writer(), {"episode": 1})
    mgr.save("aa_third", _writer(), {"episode": 3})
    mgr.save("mm_second", _writer(), {"episode": 2})  # saved last, newest mtime
    assert mgr.list() == ["zz_first", "mm_second", "aa_third"]
    assert mgr.resolve("latest").name == "aa_third"
    assert list_available_checkpoints(tmp_path)[-1] == "aa_third"


def test_rotation_keeps_newest_n(tmp_path):
    mgr = CheckpointManager(tmp_path, max_checkpoints=3)
    for ep in range(7):
        _save(mgr, ep)
    assert mgr.list() == [checkpoint_id_for(e) for e in (4, 5, 6)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_max_checkpoints_minus_one_keeps_all(tmp_path):
    # Core SRL deleted every checkpoint with -1.
    mgr = CheckpointManager(tmp_path, max_checkpoints=-1)
    for ep in range(12):
        _save(mgr, ep)
    assert mgr.list() == [checkpoint_id_for(e) for e in range(12)]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_max_checkpoints_validated(tmp_path, bad):
    with pytest.raises(ValueError, match="max_checkpoints"):
        CheckpointManager(tmp_path, max_checkpoints=bad)


def test_same_id_is_replaced(tmp_path):
    mgr = CheckpointManager(tmp_path)
    _save(mgr, 5, b"old")
    _save(mgr, 5, b"newer")
    assert (mgr.resolve("checkpoint_000005") / "adapter.bin").read_bytes() == b"newer"
    assert mgr.list() == ["checkpoint_000005"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_write_leaves_nothing(tmp_path):
    mgr = CheckpointManager(tmp_path)
    _save(mgr, 1)

    def boom(d: Path) -> None:
        (d / "partial.bin").write_bytes(b"x" * 1000)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        mgr.save(checkpoint_id_for(2), boom, {"episode": 2})
    assert mgr.list() == ["checkpoint_000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "checkpoint_000001"]


@pytest.mark.parametrize("bad_id", ["", "../up", "a/b", ".hidden", "-x", "latest", "LATEST"])
def test_invalid_ids_rejected(tmp_path, bad_id):
    with pytest.raises(ValueError):
        CheckpointManager(tmp_path).save(bad_id, _writer(), {"episode": 0})


def test_metadata_needs_integer_episode(tmp_path):
    mgr = CheckpointManager(tmp_path)
    with pytest.raises(ValueError, match="episode"):
        mgr.save("a", _writer(), {"step": 3})
    with pytest.raises(ValueError, match="episode"):
        mgr.save("a", _writer(), {"episode": "3"})
    assert not tmp_path.joinpath("a").exists()


# ---------------------------------------------------------------------- metadata serialisation
class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2


@dataclasses.dataclass
class SlotState:
    mode: TrainingMode
    rewards: np.ndarray
    path: Path


def test_metadata_serialises_enums_numpy_paths_dataclasses(tmp_path):
    # Core SRL failed to serialise its enums in checkpoint metadata.
    mgr = CheckpointManager(tmp_path)
    metadata = {
        "episode": np.int64(4),
        "training_mode": TrainingMode.MIXED,
        "strategy": WeightUpdateStrategy.FEDERATED,
        "color": Color.RED,
        "level": Level.HIGH,
        "by_mode": {TrainingMode.COOPERATIVE: 1.0, Color.RED: 2, 3: "three"},
        "avg_reward": np.float32(0.5),
        "flag": np.bool_(True),
        "rewards": np.arange(3, dtype=np.float64),
        "matrix": np.eye(2, dtype=np.int32),
        "tensor": torch.tensor([1.5, 2.5]),
        "path": Path("/tmp/x"),
        "slot": SlotState(TrainingMode.COMPETITIVE, np.array([1, 2]), Path("a/b")),
        "tags": {"b", "a"},
        "pair": (1, 2),
        "best": float("-inf"),
        "nan": float("nan"),
        "config": MultiModelConfig(),
    }
    mgr.save(checkpoint_id_for(4), _writer(), metadata)
    raw = (tmp_path / "checkpoint_000004" / "metadata.json").read_text()
    assert "NaN" not in raw and "Infinity" not in raw  # strict JSON
    meta = json.loads(raw)
    assert meta["episode"] == 4 and isinstance(meta["episode"], int)
    assert meta["training_mode"] == "mixed"
    assert meta["strategy"] == "federated"
    assert meta["color"] == "red"
    assert meta["level"] == 2
    assert meta["by_mode"] == {"cooperative": 1.0, "red": 2, "3": "three"}
    assert meta["avg_reward"] == 0.5 and meta["flag"] is True
    assert meta["rewards"] == [0.0, 1.0, 2.0]
    assert meta["matrix"] == [[1, 0], [0, 1]]
    assert meta["tensor"] == [1.5, 2.5]
    assert meta["path"] == "/tmp/x"
    assert meta["slot"] == {"mode": "competitive", "rewards": [1, 2], "path": "a/b"}
    assert meta["tags"] == ["a", "b"]
    assert meta["pair"] == [1, 2]
    assert meta["best"] is None and meta["nan"] is None
    assert meta["config"]["training_mode"] == "mixed"
    assert meta["config"]["weight_update_strategy"] == "asynchronous"
    assert mgr.list() == ["checkpoint_000004"]


def test_unserialisable_metadata_fails_before_writing(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck")
    called = []

    def write(d: Path) -> None:
        called.append(d)

    with pytest.raises(TypeError, match="object"):
        mgr.save("a", write, {"episode": 1, "thing": object()})
    assert called == []
    assert not (tmp_path / "ck" / "a").exists()


def test_json_encoder_class():
    text = json.dumps(
        {"m": TrainingMode.MIXED, Color.RED: np.float64(1.0), "x": float("nan")},
        cls=ckpt_module.CheckpointJSONEncoder,
    )
    assert json.loads(text) == {"m": "mixed", "red": 1.0, "x": None}
    assert to_jsonable(Path("p")) == "p"


# ---------------------------------------------------------------------- never trust a broken dir
def test_resolve_latest_skips_temp_and_broken_dirs(tmp_path):
    mgr = CheckpointManager(tmp_path)
    _save(mgr, 1)
    good = _save(mgr, 2)
    # A half-written save of a later episode (by a process that died).
    tmp = tmp_path / f".tmp-{checkpoint_id_for(9)}-{_dead_pid()}"
    tmp.mkdir()
    (tmp / "adapter.bin").write_bytes(b"half")
    (tmp / "metadata.json").write_text(json.dumps({"episode": 9, "files": {}}))
    # A checkpoint directory without metadata.
    (tmp_path / checkpoint_id_for(10)).mkdir()
    (tmp_path / checkpoint_id_for(10) / "adapter.bin").write_bytes(b"x")
    # A truncated metadata.json.
    (tmp_path / checkpoint_id_for(11)).mkdir()
    (tmp_path / checkpoint_id_for(11) / "metadata.json").write_text('{"episode": 11, "fi')
    # Valid metadata but a payload file cut short.
    bad = _save(mgr, 12, b"0123456789")
    (bad / "adapter.bin").write_bytes(b"01234")
    # LATEST points at a broken checkpoint: resolve does not trust it.
    (tmp_path / "LATEST").write_text(checkpoint_id_for(11) + "\n")

    assert mgr.list() == [checkpoint_id_for(1), checkpoint_id_for(2)]
    assert mgr.resolve("latest") == good
    assert mgr.load_metadata("latest")["episode"] == 2
    for broken in (10, 11):
        with pytest.raises(CheckpointNotFoundError, match="incomplete") as err:
            mgr.resolve(checkpoint_id_for(broken))
        assert "checkpoint_000001, checkpoint_000002" in str(err.value)
    with pytest.raises(CheckpointVerificationError, match=r"adapter\.bin has 5 bytes, not the 10"):
        mgr.resolve(checkpoint_id_for(12))
    with pytest.raises(CheckpointNotFoundError, match=r"not found.*available: checkpoint_000001"):
        mgr.resolve("checkpoint_000099")


def test_resolve_latest_on_empty_dir(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no complete checkpoint"):
        CheckpointManager(tmp_path / "none").resolve("latest")


def test_cleanup_temp(tmp_path):
    mgr = CheckpointManager(tmp_path)
    _save(mgr, 1)
    _save(mgr, 7)
    dead = _dead_pid()
    # A checkpoint moved aside for replacement whose replacement never landed: restored.
    os.replace(tmp_path / "checkpoint_000007", tmp_path / f".old-checkpoint_000007-{dead}")
    stale = tmp_path / f".tmp-checkpoint_000002-{dead}"
    stale.mkdir()
    (stale / "x").write_bytes(b"1")
    trash = tmp_path / f".del-checkpoint_000000-{dead}"
    trash.mkdir()
    mine = tmp_path / f".tmp-checkpoint_000003-{os.getpid()}"  # a live process's save
    mine.mkdir()
    assert mgr.list() == ["checkpoint_000001"]

    removed = mgr.cleanup_temp()
    assert set(removed) == {stale, trash}
    assert mine.exists() and not stale.exists() and not trash.exists()
    assert mgr.list() == ["checkpoint_000001", "checkpoint_000007"]


# ---------------------------------------------------------------------- RNG
def _draws() -> tuple:
    return (
        random.random(),
        float(np.random.rand()),
        float(np.random.randn()),  # exercises numpy's cached gaussian
        torch.rand(3).tolist(),
    )


def test_rng_capture_restore():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leave a cached gaussian in numpy's state
    state = capture_rng_state()
    first = _draws()
    _draws()
    restore_rng_state(state)
    assert _draws() == first


def test_rng_file_round_trip_in_checkpoint(tmp_path):
    mgr = CheckpointManager(tmp_path)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)

    def write(d: Path) -> None:
        save_rng_state(d)

    mgr.save("ck", write, {"episode": 0})
    expected = _draws()
    load_rng_state(mgr.resolve("latest"))  # weights_only load, then restore
    assert _draws() == expected
    state = load_rng_state(mgr.resolve("latest"), restore=False)
    assert set(state) == {"python", "numpy", "torch", "cuda"}


# ---------------------------------------------------------------------- SIGKILL survival
_CHILD = r"""
import hashlib, importlib.util, os, sys
spec = importlib.util.spec_from_file_location("ckpt_child", sys.argv[1])
ck = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ck)
mgr = ck.CheckpointManager(sys.argv[2], max_checkpoints=3)
ids = mgr.list()
episode = mgr.load_metadata(ids[-1])["episode"] + 1 if ids else 0

def write(d):
    sums = {}
    for j in range(3):
        data = os.urandom(1 << 20) * 2  # 2 MB per file, 6 MB per checkpoint
        (d / f"part{j}.bin").write_bytes(data)
        sums[f"part{j}.bin"] = hashlib.sha256(data).hexdigest()
    return {"sha256": sums}

while True:
    mgr.save(ck.checkpoint_id_for(episode), write, {"episode": episode})
    print(episode, flush=True)
    episode += 1
"""


def _verify(path: Path) -> dict:
    meta = json.loads((path / "metadata.json").read_text())
    assert set(meta["sha256"]) == {"part0.bin", "part1.bin", "part2.bin"}
    for name, digest in meta["sha256"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest, (path, name)
    return meta


def test_sigkill_always_leaves_last_complete_checkpoint(tmp_path):
    ck_dir = tmp_path / "ck"
    rng = random.Random(20240611)
    delays = [0.0, 0.01, 0.03] + [rng.uniform(0.0, 0.35) for _ in range(7)]
    acked = -1
    for trial, delay in enumerate(delays):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, ckpt_module.__file__, str(ck_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "child saved nothing in 30 s"
            first = proc.stdout.readline()
            assert first, f"child died: {proc.stderr.read().decode()}"
            acked = int(first)
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()
        lines = out.split()
        if lines:
            acked = int(lines[-1])

        mgr = CheckpointManager(ck_dir, max_checkpoints=3)
        latest = mgr.resolve("latest")
        meta = _verify(latest)
        # Every save the child reported finished is durable: the newest is at least that one.
        assert meta["episode"] >= acked, (trial, delay, meta["episode"], acked)
        ids = mgr.list()
        episodes = [mgr.load_metadata(i)["episode"] for i in ids]
        assert episodes == sorted(episodes) and ids[-1] == latest.name
        assert len(ids) <= 4  # 3 kept, +1 if killed between the rename and rotation
        for cid in ids:
            _verify(mgr.resolve(cid))
        # Work dirs can only belong to the process just killed (each save cleans older ones).
        for p in ck_dir.iterdir():
            if p.name.startswith((".tmp-", ".del-", ".old-", ".LATEST")):
                assert p.name.endswith(f"-{proc.pid}"), p.name
        acked = meta["episode"]
    CheckpointManager(ck_dir).cleanup_temp()
    assert not [p for p in ck_dir.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------- checksums
def test_same_size_corruption_is_caught_and_latest_falls_back(tmp_path, caplog):
    mgr = CheckpointManager(tmp_path)
    good = _save(mgr, 1, b"a" * 256)
    bad = _save(mgr, 2, b"b" * 256)
    flip_bytes(bad / "adapter.bin")
    assert (bad / "adapter.bin").stat().st_size == 256
    assert mgr.list() == ["checkpoint_000001", "checkpoint_000002"]  # sizes alone look fine

    with caplog.at_level(logging.WARNING, logger="srl_trainers.checkpoint"):
        assert mgr.resolve("latest") == good
    assert "checkpoint_000002" in caplog.text
    assert "adapter.bin does not match its sha256" in caplog.text
    # An id asked for by name fails, naming the file; it never falls back.
    with pytest.raises(
        CheckpointVerificationError,
        match=r"'checkpoint_000002' .* fails verification: adapter\.bin does not match its sha256",
    ):
        mgr.resolve("checkpoint_000002")
    # Nothing verifies: the error gives every checkpoint's reason.
    flip_bytes(good / "sub" / "optimizer.txt", n=2)
    with pytest.raises(CheckpointVerificationError) as err:
        mgr.resolve("latest")
    assert "no checkpoint" in str(err.value) and "passes verification" in str(err.value)
    assert "checkpoint_000002: adapter.bin" in str(err.value)
    assert "checkpoint_000001: sub/optimizer.txt" in str(err.value)


def test_checkpoints_without_checksums_are_refused(tmp_path, caplog):
    mgr = CheckpointManager(tmp_path)
    old = _save(mgr, 1)
    make_format_1(old)
    assert mgr.list() == ["checkpoint_000001"]  # still a checkpoint: nothing overwrites it
    with pytest.raises(CheckpointVerificationError, match=r"checkpoint format 1.*older srl"):
        mgr.resolve("checkpoint_000001")
    with pytest.raises(CheckpointVerificationError, match="checkpoint_000001: it is of checkpoint"):
        mgr.resolve("latest")
    new = _save(mgr, 2)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="srl_trainers.checkpoint"):
        assert mgr.resolve("latest") == new
    assert caplog.text == ""  # the newest verifies: nothing was skipped


@pytest.mark.parametrize("rel", ["../outside.bin", "/dev/zero"])
def test_metadata_naming_files_outside_the_checkpoint_fails(tmp_path, rel):
    mgr = CheckpointManager(tmp_path / "ck")
    path = _save(mgr, 1)
    meta = json.loads((path / "metadata.json").read_text())
    meta["files"][rel] = {"size": 0, "sha256": hashlib.sha256(b"").hexdigest()}
    (path / "metadata.json").write_text(json.dumps(meta))
    (tmp_path / "ck" / "outside.bin").write_bytes(b"")
    with pytest.raises(CheckpointVerificationError, match="outside the checkpoint"):
        mgr.resolve("checkpoint_000001")


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "-x"])
def test_a_bad_id_to_load_is_a_checkpoint_error(tmp_path, bad):
    with pytest.raises(CheckpointError, match="invalid checkpoint id"):
        CheckpointManager(tmp_path).resolve(bad)


# ---------------------------------------------------------------------- data, never code
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch on random bytes
def test_load_tensors_refuses_a_pickle_that_runs_code(tmp_path):
    probe = tmp_path / "probe"
    plant_pickle(tmp_path / "probe.pt", probe)
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert probe.is_dir()  # the payload does run when unpickled

    marker = tmp_path / "marker"
    plant_pickle(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match=r"evil\.pt is not a file of plain tensors.*mkdir"):
        load_tensors(tmp_path / "evil.pt")
    assert not marker.exists()
    rng = random.Random(0)
    for _ in range(20):  # garbage of any kind is the same clear error
        (tmp_path / "junk.pt").write_bytes(rng.randbytes(rng.randrange(1, 400)))
        with pytest.raises(CheckpointError, match=r"junk\.pt is not a file of plain tensors"):
            load_tensors(tmp_path / "junk.pt")
    state = {"w": torch.arange(3.0), "betas": (0.9, 0.99), "step": 3}
    torch.save(state, tmp_path / "ok.pt")
    loaded = load_tensors(tmp_path / "ok.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["betas"] == (0.9, 0.99)


def test_state_json_round_trips_exactly(tmp_path):
    state = {
        "floats": [0.1, 1 / 3, -0.0, 1e-308, float("inf"), float("-inf")],
        "nan": float("nan"),
        "big": 2**127 + 12345,  # a PCG64 state
        "flags": [True, False, None],
        "numpy": [np.float32(0.5), np.int64(7), np.bool_(True)],
        "nested": {"a": [{"b": "text"}]},
        "pair": (1, 2),
    }
    write_state(state, tmp_path / "s.json")
    back = read_state(tmp_path / "s.json")
    assert back["floats"] == state["floats"]
    assert [math.copysign(1, x) for x in back["floats"]] == [
        math.copysign(1, x) for x in state["floats"]
    ]
    assert math.isnan(back["nan"]) and back["big"] == 2**127 + 12345
    assert back["flags"] == [True, False, None]
    assert back["numpy"] == [0.5, 7, True] and type(back["numpy"][1]) is int
    assert back["nested"] == {"a": [{"b": "text"}]} and back["pair"] == [1, 2]
    with pytest.raises(TypeError, match="Tensor is not plain JSON data"):
        write_state({"t": torch.zeros(2)}, tmp_path / "t.json")
    (tmp_path / "bad.json").write_text('{"a": ')
    with pytest.raises(CheckpointError, match=r"bad\.json is not valid JSON"):
        read_state(tmp_path / "bad.json")


# ---------------------------------------------------------------------- the trainer's checkpoints
def _rich_config(tiny_model_path, work: Path, **overrides) -> MultiModelConfig:
    """PPO (value heads) on the staged env (curricula) with FEDERATED (strategy state) and an
    update every 2 episodes (sample buffers held across a checkpoint)."""
    fields = dict(
        algorithm="ppo",
        env="staged",
        weight_update_strategy="federated",
        update_frequency=2,
        save_interval=1,
    )
    return tiny_trainer_config(tiny_model_path, work, **{**fields, **overrides})


@pytest.fixture(scope="module")
def rich_run(tiny_model_path, tmp_path_factory):
    """A finished 2-episode run of :func:`_rich_config`: checkpoints 1 and 2 in ``<work>/ckpt``."""
    work = tmp_path_factory.mktemp("rich")
    MultiModelTrainer(_rich_config(tiny_model_path, work, max_episodes=2)).train_sync()
    return work


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src / "ckpt", dst / "ckpt")
    return dst / "ckpt"


def _episode_metrics(trainer: MultiModelTrainer, episode: int) -> dict[str, float]:
    import asyncio

    metrics = asyncio.run(trainer.train_multi_model_episode(episode))["metrics"]
    return {k: v for k, v in metrics.items() if not k.startswith("perf/")}


def test_every_part_of_the_training_state_round_trips(tiny_model_path, tmp_path):
    full = MultiModelTrainer(_rich_config(tiny_model_path, tmp_path / "full", max_episodes=3))
    want = [_episode_metrics(full, e) for e in range(3)]

    first = MultiModelTrainer(_rich_config(tiny_model_path, tmp_path / "part", max_episodes=1))
    first.train_sync()  # checkpoint_000001: between two updates, the buffers hold samples
    saved = read_state(tmp_path / "part" / "ckpt" / "checkpoint_000001" / "trainer_state.json")
    assert all(saved["buffers"].values()) and saved["curricula"] and saved["strategies"]
    # The file holds the state as it was (training_time moves on after the save) ...
    expected = {**first.training_state(), "training_time": saved["training_time"]}
    assert json.dumps(saved) == json.dumps(expected)  # as text: NaN, -0.0 and int/float compare
    resumed = MultiModelTrainer(_rich_config(tiny_model_path, tmp_path / "part", max_episodes=3))
    assert resumed.load_checkpoint("latest") and resumed.resumed_from == "checkpoint_000001"
    # ... and a resumed trainer holds exactly that state.
    assert json.dumps(resumed.training_state()) == json.dumps(saved)
    got = [_episode_metrics(resumed, e) for e in (1, 2)]
    for w, g in zip(want[1:], got):
        assert g.keys() == w.keys()
        for key in w:
            assert g[key] == pytest.approx(w[key], abs=1e-5, nan_ok=True), key


@pytest.mark.parametrize("name", ["optimizers.pt", "value_heads.pt", "rng.pt"])
def test_resume_never_runs_a_pickle_from_the_checkpoint(rich_run, tiny_model_path, tmp_path, name):
    ckpt = _copy_run(rich_run, tmp_path)
    marker = tmp_path / "marker"
    plant_pickle(ckpt / "checkpoint_000002" / name, marker)
    resign(ckpt / "checkpoint_000002")  # the checksums vouch for the planted file
    trainer = MultiModelTrainer(_rich_config(tiny_model_path, tmp_path, max_episodes=3))
    with pytest.raises(CheckpointError, match=rf"{name} is not a file of plain tensors.*mkdir"):
        trainer.load_checkpoint("latest")
    assert not marker.exists()
    assert trainer.current_episode == 0 and trainer.resumed_from is None  # nothing applied


def test_a_pickled_trainer_state_of_format_1_is_refused(rich_run, tiny_model_path, tmp_path):
    # What srl wrote before: trainer_state.pt, read with weights_only=False.
    ckpt = _copy_run(rich_run, tmp_path)
    marker = tmp_path / "marker"
    for cid in ("checkpoint_000001", "checkpoint_000002"):
        (ckpt / cid / "trainer_state.json").unlink()
        plant_pickle(ckpt / cid / "trainer_state.pt", marker)
        make_format_1(ckpt / cid)
    trainer = MultiModelTrainer(_rich_config(tiny_model_path, tmp_path, max_episodes=3))
    with pytest.raises(CheckpointVerificationError, match="checkpoint format 1") as err:
        trainer.load_checkpoint("latest")
    assert "checkpoint_000002" in str(err.value) and "checkpoint_000001" in str(err.value)
    with pytest.raises(CheckpointVerificationError, match=r"'checkpoint_000002'.*format 1"):
        trainer.load_checkpoint("checkpoint_000002")
    assert not marker.exists()


def test_a_corrupted_adapter_falls_back_to_the_newest_good_checkpoint(
    rich_run, tiny_model_path, tmp_path, caplog
):
    ckpt = _copy_run(rich_run, tmp_path)
    adapter = "adapters/model_0_tiny/adapter_model.safetensors"
    flip_bytes(ckpt / "checkpoint_000002" / adapter)  # loaded silently before, NaN later
    trainer = MultiModelTrainer(_rich_config(tiny_model_path, tmp_path, max_episodes=3))
    with pytest.raises(CheckpointVerificationError, match=rf"'checkpoint_000002'.*{adapter}"):
        trainer.load_checkpoint("checkpoint_000002")
    with caplog.at_level(logging.WARNING, logger="srl_trainers.checkpoint"):
        assert trainer.load_checkpoint("latest")
    assert trainer.resumed_from == "checkpoint_000001" and trainer.current_episode == 1
    assert f"checkpoint_000002 in {ckpt} skipped: {adapter} does not match its sha256" in (
        caplog.text
    )


def test_a_new_run_never_overwrites_another_runs_checkpoints(rich_run, tiny_model_path, tmp_path):
    ckpt = _copy_run(rich_run, tmp_path)
    before = {p: p.read_bytes() for p in ckpt.rglob("*") if p.is_file()}
    trainer = MultiModelTrainer(_rich_config(tiny_model_path, tmp_path, max_episodes=1))
    with pytest.raises(ConfigError, match=r"already holds checkpoints.*--resume latest") as err:
        trainer.train_sync()
    assert "checkpoint_000001, checkpoint_000002" in str(err.value)
    assert "--checkpoint-dir" in str(err.value)
    assert {p: p.read_bytes() for p in ckpt.rglob("*") if p.is_file()} == before


def test_resuming_with_other_lora_rank_or_algorithm_names_the_field(
    rich_run, tiny_model_path, tmp_path
):
    _copy_run(rich_run, tmp_path)
    for field, value, saved in (("lora_rank", 4, 8), ("algorithm", "grpo", "ppo")):
        trainer = MultiModelTrainer(
            _rich_config(tiny_model_path, tmp_path, max_episodes=3, **{field: value})
        )
        with pytest.raises(ConfigError, match=rf"{field}={saved!r}, but this run has {field}="):
            trainer.load_checkpoint("latest")
        assert not trainer._built  # refused before any model loaded


@pytest.mark.parametrize("field", ["checkpoint_dir", "log_dir"])
def test_unusable_output_dirs_fail_before_training(tiny_model_path, tmp_path, field):
    (tmp_path / "a_file").write_text("x")
    config = _rich_config(
        tiny_model_path, tmp_path, enable_monitoring=True, **{field: str(tmp_path / "a_file" / "d")}
    )
    trainer = MultiModelTrainer(config)
    with pytest.raises(ConfigError, match=rf"{field}=.* is under the file"):
        trainer.check_output_dirs(new_run=True)
    with pytest.raises(ConfigError, match=rf"{field}=.* is under the file"):
        trainer.train_sync()
    assert trainer.current_episode == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_checkpoint_dir_fails_before_training(tiny_model_path, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    trainer = MultiModelTrainer(
        _rich_config(tiny_model_path, tmp_path, checkpoint_dir=str(locked / "ck"))
    )
    with pytest.raises(ConfigError, match=r"checkpoint_dir=.* is not writable"):
        trainer.check_output_dirs(new_run=True)
