"""``python -m srl_trainers.run``: help, config merging, bad input, a tiny run, resume, SIGKILL."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srl_trainers.checkpoint import list_available_checkpoints
from srl_trainers.monitor import read_metrics
from srl_trainers.run import build_config, main, make_parser
from tests.trainers.checkpoint_tools import flip_bytes, plant_pickle, resign

ROOT = Path(__file__).resolve().parents[2]


def tiny_args(tiny_model_path, tmp_path, *extra: str) -> list[str]:
    return [
        "--preset",
        "none",  # the MultiModelConfig defaults: the commons game (no --env)
        "--model",
        str(tiny_model_path),
        "--num-models",
        "2",
        "--max-episodes",
        "2",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "runs"),
        "--batch-size",
        "4",
        "--group-size",
        "2",
        "--episode-length",
        "2",
        "--max-new-tokens",
        "4",
        "--kv-cache-size",
        "200",
        "--system-prompt",
        "Play.",
        "--dtype",
        "float32",
        "--save-interval",
        "1",
        *extra,
    ]


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--config",
        "--env",
        "--mode",
        "--strategy",
        "--algorithm",
        "--num-models",
        "--model",
        "--max-episodes",
        "--seed",
        "--checkpoint-dir",
        "--log-dir",
        "--resume",
        "--learning-rate",
        "--group-size",
        "--lora-rank",
    ):
        assert flag in out, flag
    assert "default:" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--env", "chess"], "MultiModelConfig.env='chess' is not allowed"),
        (["--no-such-option"], "unrecognized arguments"),
        (["--num-models", "many"], "invalid int value"),
        (["--learning-rate", "-1"], "learning_rate=-1"),
        (["--cooperation-strength", "2"], "cooperation_strength=2"),
        (["--config", "/nonexistent.yaml"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def one_line_exit_2(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith("python -m srl_trainers")
    return err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--seed", "4294967296"], "seed=4294967296"),
        (["--lora-target-modules", "q_proj"], "lora_target_modules='q_proj'"),
        (["--lora-target-modules", "42"], "lora_target_modules=42"),
        (["--lora-target-modules", "[1,2]"], "lora_target_modules=[1, 2]"),
        (["--model-names", "[1]"], "model_names=[1]"),
        (["--env-kwargs", "{bogus: 1}"], "bogus"),
        (["--env-kwargs", "{action_mode: structured}"], "action_mode"),
        (["--policy-mapping", "{player_0: 5}"], "policy_mapping={'player_0': 5}"),
        (["--policy-mapping", "{player_0: 'bot:grandmaster'}"], "bot:grandmaster"),
        (["--env", "staged", "--opponent-policy", "grandmaster"], "grandmaster"),
        (["--competition-intensity", ".inf"], "competition_intensity=inf"),
        (["--kv-cache-size", "30"], "kv_cache_size=30"),
        (["--run-name", "../x"], "run_name='../x'"),
        (["--enable-monitoring", "maybe"], "enable_monitoring='maybe'"),
        (["--enable-monitoring", "5"], "enable_monitoring=5"),
        (["--scale-rewards", "maybe"], "scale_rewards='maybe'"),
        (["--learning-rate", "nan"], "learning_rate='nan'"),
        (["--env-kwargs", "{a: [1"], "--env-kwargs '{a: [1' is not a valid value"),
        (["--num-models", "0"], "num_models=0"),
    ],
)
def test_bad_field_values_are_one_line_and_exit_code_2(capsys, argv, needle):
    assert needle in one_line_exit_2(capsys, argv)


def test_device_and_backend_this_machine_lacks_are_one_line(capsys, monkeypatch, no_vllm):

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "device='cuda'" in one_line_exit_2(capsys, ["--device", "cuda"])
    err = one_line_exit_2(capsys, ["--generation-backend", "vllm"])
    assert "generation_backend='vllm'" in err and "pip install" in err


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x00\x01\x02\xff\xfe", "is not UTF-8 text"),
        (b"env: [unclosed\n", "is not valid YAML"),
        (b"- a\n", "must hold a mapping"),
        (b"checkpoint_dir: 123\n", "checkpoint_dir=123"),
        (b"log_dir: [a]\n", "log_dir=['a']"),
        (b"run_name: 5\n", "run_name=5"),
        (b"system_prompt: 5\n", "system_prompt=5"),
        (b"model_names: {custom: 5}\n", "model_names={'custom': 5}"),
        (b"scale_rewards: 5\n", "scale_rewards=5"),
    ],
)
def test_bad_yaml_files_are_one_line_and_exit_code_2(tmp_path, capsys, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert needle in one_line_exit_2(capsys, ["--config", str(path)])


def test_the_command_prints_one_line_and_no_traceback(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x00\x01\x02\xff\xfe")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["--config", str(path)], ["--seed", "4294967296"]):
        done = subprocess.run(
            [sys.executable, "-m", "srl_trainers.run", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("modules", ["[nope]", "[q_proj, nope]"])
def test_lora_target_modules_the_model_lacks_are_one_line(
    tiny_model_path, tmp_path, capsys, modules
):
    with pytest.raises(SystemExit) as exc:
        main(tiny_args(tiny_model_path, tmp_path, "--lora-target-modules", modules))
    assert exc.value.code == 2
    err = capsys.readouterr().err  # after transformers' weight-loading progress bar
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m srl_trainers.run: error: target_modules=")
    assert "lora_target_modules" in last and "'nope'" in last and "q_proj" in last


def test_yaml_config_merges_with_overrides(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(
        "env: team_battle\nnum_models: 4\nlearning_rate: 0.001\nenv_kwargs: {team_size: 2}\n"
        "weight_update_strategy: federated\n"
    )
    args = make_parser().parse_args(
        [
            "--config",
            str(cfg_file),
            "--num-models",
            "2",
            "--strategy",
            "selective",
            "--lora-target-modules",
            "[q_proj, v_proj]",
        ]
    )
    config = build_config(args)
    assert config.env == "team_battle" and config.learning_rate == 0.001
    assert config.num_models == 2  # command line wins over the file
    assert config.weight_update_strategy.value == "selective"
    assert config.env_kwargs == {"team_size": 2}
    assert config.lora_target_modules == ["q_proj", "v_proj"]


def test_unknown_yaml_field_names_the_closest(tmp_path, capsys):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text("num_model: 3\n")
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(cfg_file)])
    assert exc.value.code == 2
    assert "did you mean num_models" in capsys.readouterr().err


def test_tiny_run_then_resume(tiny_model_path, tmp_path, capsys):
    assert main(tiny_args(tiny_model_path, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "training completed: 2 episodes" in out and "checkpoint:" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("policy"))
    assert header.split()[-1] == "rating"  # openskill's mu - 3 sigma of each policy
    ckpts = list_available_checkpoints(tmp_path / "ckpt")
    assert ckpts[-1] == "checkpoint_000002"
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.jsonl").is_file()

    assert main(tiny_args(tiny_model_path, tmp_path, "--resume", "--max-episodes", "3")) == 0
    out = capsys.readouterr().out
    assert "resumed from checkpoint_000002 at episode 2" in out
    assert f"logs continue in {runs[0]}" in out
    assert list_available_checkpoints(tmp_path / "ckpt")[-1] == "checkpoint_000003"


def test_sigkill_mid_run_leaves_a_loadable_checkpoint(tiny_model_path, tmp_path):
    """Kill a training run with SIGKILL at several moments; the newest complete checkpoint
    always loads and training resumes from it."""
    argv = tiny_args(tiny_model_path, tmp_path, "--max-episodes", "50")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i, delay in enumerate((0.0, 0.7, 1.9)):
        # the first run starts the checkpoints, the later ones continue them
        run_argv = argv if i == 0 else [*argv, "--resume"]
        code = f"import sys; from srl_trainers.run import main; sys.exit(main({run_argv!r}))"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while time.time() < deadline and not list_available_checkpoints(tmp_path / "ckpt"):
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert list_available_checkpoints(tmp_path / "ckpt"), "no checkpoint was ever completed"
    from srl_trainers.trainer import MultiModelTrainer

    config = build_config(make_parser().parse_args(argv))
    trainer = MultiModelTrainer(config)
    assert trainer.load_checkpoint("latest")
    resumed_at = trainer.current_episode
    assert resumed_at >= 1
    trainer.config.max_episodes = resumed_at + 1
    results = trainer.train_sync()
    assert results["total_episodes"] == resumed_at + 1


def test_exponent_floats_parse_on_the_command_line_and_in_yaml(tmp_path):
    # YAML 1.1 (PyYAML) reads "1e-3" as a string; a float field must still get 0.001
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("learning_rate: 1e-3\n")
    config = build_config(make_parser().parse_args(["--config", str(cfg_file)]))
    assert config.learning_rate == pytest.approx(1e-3)
    args = make_parser().parse_args(["--learning-rate", "5e-4", "--response-prefix", "none"])
    config = build_config(args)
    assert config.learning_rate == pytest.approx(5e-4)
    assert config.response_prefix is None


# ---------------------------------------------------------------------- resume: trust and places
@pytest.fixture(scope="module")
def finished_run(tiny_model_path, tmp_path_factory):
    """A finished 2-episode CLI run: checkpoints 1 and 2 in ``<work>/ckpt``, logs in ``runs``."""
    work = tmp_path_factory.mktemp("finished")
    assert main(tiny_args(tiny_model_path, work)) == 0
    return work


def _copy_checkpoints(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run / "ckpt", tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _files(directory: Path) -> dict[Path, bytes]:
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def _fails(capsys, argv: list[str]) -> tuple[str, str]:
    """(the error line, stdout) of a run that must exit with code 2 and no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("python -m srl_trainers.run: error: "), captured.err
    return line, captured.out


def test_resuming_a_copy_with_another_log_dir_leaves_the_original_logs_alone(
    finished_run, tiny_model_path, tmp_path, capsys
):
    _copy_checkpoints(finished_run, tmp_path)
    original = _files(finished_run / "runs")
    (run_dir,) = (finished_run / "runs").iterdir()
    argv = tiny_args(tiny_model_path, tmp_path, "--resume", "--max-episodes", "3")
    assert main(argv) == 0
    assert _files(finished_run / "runs") == original
    new_dir = tmp_path / "runs" / run_dir.name
    assert f"logs continue in {new_dir}" in capsys.readouterr().out
    # the checkpointed run's lines up to its checkpoint, then the resumed episode
    assert [r["step"] for r in read_metrics(new_dir)] == [1, 2, 3]


def test_an_empty_resume_is_an_error_not_a_new_run(finished_run, tiny_model_path, tmp_path, capsys):
    ckpt = _copy_checkpoints(finished_run, tmp_path)
    before = _files(ckpt)
    line, out = _fails(capsys, tiny_args(tiny_model_path, tmp_path, "--resume", ""))
    assert "--resume: invalid checkpoint id ''" in line
    assert "srl: env" not in out  # before any model loaded
    assert _files(ckpt) == before


def test_a_new_run_into_a_dir_of_checkpoints_is_refused(
    finished_run, tiny_model_path, tmp_path, capsys
):
    ckpt = _copy_checkpoints(finished_run, tmp_path)
    before = _files(ckpt)
    line, out = _fails(capsys, tiny_args(tiny_model_path, tmp_path))
    assert "checkpoint_000001, checkpoint_000002" in line
    assert "--resume latest" in line and "--checkpoint-dir" in line
    assert "srl: env" not in out
    assert _files(ckpt) == before


def test_resume_with_a_path_is_one_line(finished_run, tiny_model_path, tmp_path, capsys):
    _copy_checkpoints(finished_run, tmp_path)
    line, _ = _fails(capsys, tiny_args(tiny_model_path, tmp_path, "--resume", "../x"))
    assert "--resume: invalid checkpoint id '../x'" in line and "not a path" in line


@pytest.mark.parametrize("flag", ["--checkpoint-dir", "--log-dir"])
def test_an_unusable_output_dir_fails_at_start_up(tiny_model_path, tmp_path, capsys, flag):
    (tmp_path / "a_file").write_text("x")
    bad = str(tmp_path / "a_file" / "sub")
    line, out = _fails(capsys, [*tiny_args(tiny_model_path, tmp_path), flag, bad])
    field = flag[2:].replace("-", "_")
    assert f"{field}={bad!r} is under the file" in line
    assert "srl: env" not in out  # no model loaded, no episode played


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_log_dir_fails_at_start_up(tiny_model_path, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    argv = [*tiny_args(tiny_model_path, tmp_path), "--log-dir", str(locked / "runs")]
    line, out = _fails(capsys, argv)
    assert "log_dir=" in line and "is not writable" in line and "srl: env" not in out


@pytest.mark.parametrize(
    "extra, saved, given",
    [
        (["--lora-rank", "4"], "lora_rank=8", "lora_rank=4"),
        (["--algorithm", "ppo"], "algorithm='grpo'", "algorithm='ppo'"),
    ],
)
def test_resuming_with_another_lora_rank_or_algorithm_names_the_field(
    finished_run, tiny_model_path, tmp_path, capsys, extra, saved, given
):
    _copy_checkpoints(finished_run, tmp_path)
    argv = tiny_args(tiny_model_path, tmp_path, "--resume", *extra)
    line, out = _fails(capsys, argv)
    assert f"made with {saved}, but this run has {given}" in line
    assert "srl: env" not in out


def test_resume_never_runs_a_pickle_from_the_checkpoint(
    finished_run, tiny_model_path, tmp_path, capsys
):
    ckpt = _copy_checkpoints(finished_run, tmp_path)
    marker = tmp_path / "marker"
    plant_pickle(ckpt / "checkpoint_000002" / "optimizers.pt", marker)
    resign(ckpt / "checkpoint_000002")
    line, _ = _fails(capsys, tiny_args(tiny_model_path, tmp_path, "--resume", "latest"))
    assert "optimizers.pt is not a file of plain tensors" in line
    assert not marker.exists()


def test_a_corrupted_checkpoint_is_named_or_skipped(
    finished_run, tiny_model_path, tmp_path, capsys, caplog
):
    ckpt = _copy_checkpoints(finished_run, tmp_path)
    adapter = "adapters/model_0_custom/adapter_model.safetensors"
    flip_bytes(ckpt / "checkpoint_000002" / adapter)
    argv = tiny_args(tiny_model_path, tmp_path, "--max-episodes", "3", "--resume")
    line, _ = _fails(capsys, [*argv, "checkpoint_000002"])
    assert f"'checkpoint_000002' in {str(ckpt)!r} fails verification: {adapter}" in line
    with caplog.at_level(logging.WARNING, logger="srl_trainers.checkpoint"):
        assert main([*argv, "latest"]) == 0
    assert "resumed from checkpoint_000001 at episode 1" in capsys.readouterr().out
    assert f"checkpoint_000002 in {ckpt} skipped: {adapter} does not match" in caplog.text
