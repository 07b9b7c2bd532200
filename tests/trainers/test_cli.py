"""``python -m srl_trainers.run``: help, config merging, bad input, a tiny run, resume, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srl_trainers.checkpoint import list_available_checkpoints
from srl_trainers.run import build_config, main, make_parser

ROOT = Path(__file__).resolve().parents[2]


def tiny_args(tiny_model_path, tmp_path, *extra: str) -> list[str]:
    return [
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
        (["--env", "chess"], "invalid choice: 'chess'"),
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
    ckpts = list_available_checkpoints(tmp_path / "ckpt")
    assert ckpts[-1] == "checkpoint_000002"
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.jsonl").is_file()

    assert main(tiny_args(tiny_model_path, tmp_path, "--resume", "--max-episodes", "3")) == 0
    out = capsys.readouterr().out
    assert "resumed from latest at episode 2" in out
    assert f"logs continue in {runs[0]}" in out
    assert list_available_checkpoints(tmp_path / "ckpt")[-1] == "checkpoint_000003"


def test_sigkill_mid_run_leaves_a_loadable_checkpoint(tiny_model_path, tmp_path):
    """Kill a training run with SIGKILL at several moments; the newest complete checkpoint
    always loads and training resumes from it."""
    argv = tiny_args(tiny_model_path, tmp_path, "--max-episodes", "50")
    code = f"import sys; from srl_trainers.run import main; sys.exit(main({argv!r}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.0, 0.7, 1.9):
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
