"""srl_trainers.evaluate: interval math, evaluation from a trainer, a config and a checkpoint
(tiny random model), and the CLI's errors."""

from __future__ import annotations

import json
import math

import pytest

from srl_trainers import MultiModelConfig, MultiModelTrainer
from srl_trainers.config import ConfigError
from srl_trainers.evaluate import (
    EvaluationReport,
    _outcomes,
    evaluate,
    main,
    mean_interval,
    wilson_interval,
)
from srl_trainers.testing import tiny_trainer_config
from srl_trainers.trainer import EVAL_SEED_OFFSET
from tests.trainers.checkpoint_tools import flip_bytes, make_format_1, plant_pickle, resign


# ---------------------------------------------------------------------- interval math
@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),  # the classic "0 of 10" upper bound
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (1, 2, 0.0945, 0.9055),
        (81, 263, 0.2553, 0.3662),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_interval_known_values(successes, n, low, high):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=5e-4)
    assert hi == pytest.approx(high, abs=5e-4)


def test_wilson_interval_edges_and_errors():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(3, 7)
    assert 0.0 <= lo < 3 / 7 < hi <= 1.0
    narrow = wilson_interval(300, 700)
    assert narrow[1] - narrow[0] < hi - lo  # more trials, narrower interval
    for bad in [(-1, 5), (6, 5), (1, -1)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)


def test_mean_interval():
    mean, lo, hi = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 1.959964 * math.sqrt(5 / 3) / 2  # sd (ddof=1) = sqrt(5/3), n = 4
    assert mean == 2.5
    assert (lo, hi) == pytest.approx((2.5 - half, 2.5 + half), abs=1e-5)
    assert mean_interval([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(x) for x in mean_interval([]))


def test_outcomes_match_the_trainer_definition():
    teams = {"red_0": "red", "red_1": "red", "blue_0": "blue", "blue_1": "blue"}
    raw = {"red_0": 1.0, "red_1": 1.0, "blue_0": -1.0, "blue_1": -1.0}
    assert _outcomes(raw, teams) == {"red_0": 1, "red_1": 1, "blue_0": -1, "blue_1": -1}
    assert set(_outcomes(dict.fromkeys(raw, 0.0), teams).values()) == {0}
    # no teams: each agent against the mean of the others
    assert _outcomes({"a": 3.0, "b": 1.0, "c": 2.0}, None) == {"a": 1, "b": -1, "c": 0}


# ---------------------------------------------------------------------- evaluation on the tiny model
def tiny_config(tiny_model_path, tmp_path, **overrides) -> MultiModelConfig:
    fields = dict(env="team_battle", env_kwargs={"team_size": 2}, max_episodes=1, save_interval=1)
    return tiny_trainer_config(tiny_model_path, tmp_path, **{**fields, **overrides})


def test_untrained_config_report(tiny_model_path, tmp_path):
    cfg = tiny_config(tiny_model_path, tmp_path)
    report = evaluate(cfg, num_episodes=3)
    assert isinstance(report, EvaluationReport)
    assert report.source == "untrained" and report.training_episode == 0
    copies = 2  # batch 4 / (2 turns per copy) rounded to a group of 2
    assert report.num_episodes == 2 * copies  # 3 rounded up to whole batches
    assert report.seeds == (EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + report.num_episodes - 1)
    assert set(report.models) == {"model_0_tiny", "model_1_tiny", "bot_heuristic"}
    assert set(report.teams) == {"red", "blue"}
    red, blue = report.teams["red"], report.teams["blue"]
    assert red.trainable and not blue.trainable
    # zero-sum teams: red's wins are blue's losses
    assert red.win_rate == pytest.approx(blue.loss_rate)
    assert red.episodes == report.num_episodes
    assert red.turns == report.num_episodes * 2 * 2  # episodes x rounds x agents
    assert 0.0 <= red.invalid_rate <= 1.0 and red.win_ci[0] <= red.win_rate <= red.win_ci[1]
    assert "fields_won_per_round" in red.figures
    assert blue.invalid_rate == 0.0  # the scripted bot always answers validly
    assert report.population.agents == ["red_0", "red_1"]
    # what the LLM agents wrote in the first game: one text per round, the bots not listed
    assert sorted(report.first_game) == ["red_0", "red_1"]
    assert all(len(texts) == 2 for texts in report.first_game.values())  # 2 rounds
    assert all(t.startswith("ALLOCATE:") for texts in report.first_game.values() for t in texts)
    table = report.table()
    assert "model_0_tiny" in table and "team" in table and "welfare" in table
    assert "first game: red_0: " in table
    json.dumps(report.to_dict())


def test_evaluating_a_config_or_checkpoint_builds_no_trainer(
    tiny_model_path, tmp_path, monkeypatch
):
    """evaluate() plays through Population + Rollout: no trainer, no optimizer, no value head,
    no checkpoint directory; and what it measures is what the trainer's own rollout plays."""
    import torch

    cfg = tiny_config(tiny_model_path, tmp_path, algorithm="ppo", group_size=1)
    trainer = MultiModelTrainer(cfg)
    trainer.train_sync()  # one episode and its checkpoint
    through_trainer = evaluate(trainer, num_episodes=2)
    ckpt = tmp_path / "ckpt" / trainer.checkpoints_saved[-1]

    def refuse(*args, **kwargs):
        raise AssertionError("evaluate built training machinery")

    monkeypatch.setattr(MultiModelTrainer, "setup", refuse)
    monkeypatch.setattr(torch.optim.AdamW, "__init__", refuse)
    fresh = tiny_config(tiny_model_path, tmp_path / "other", algorithm="ppo", group_size=1)
    untrained = evaluate(fresh, num_episodes=2)
    from_checkpoint = evaluate(ckpt, num_episodes=2)
    assert not (tmp_path / "other" / "ckpt").exists()
    models = lambda r: r.to_dict()["models"]  # noqa: E731
    assert models(from_checkpoint) == models(through_trainer)
    assert untrained.source == "untrained" and untrained.num_episodes == 2


def test_evaluation_leaves_training_untouched_and_is_repeatable(tiny_model_path, tmp_path):
    import torch

    trainer = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path))
    trainer.setup()
    state = torch.get_rng_state()
    first = evaluate(trainer, num_episodes=2, temperature=1.0)
    assert torch.equal(state, torch.get_rng_state())
    assert (
        trainer.current_episode == 0
        and trainer._history["model_0_tiny"] == type(trainer._history["model_0_tiny"])()
    )
    second = evaluate(trainer, num_episodes=2, temperature=1.0)
    assert first.to_dict()["models"] == second.to_dict()["models"]


def test_validation_seeds_are_another_range_and_the_trainer_chooses_on_them(
    tiny_model_path, tmp_path, monkeypatch
):
    """seeds="validation" plays games of its own range (the env seeds the copies are reset
    with), disjoint from the held-out games; a trainer with eval_seeds="validation" plays them
    in its evaluations and says so in its summary."""
    import srl_envs
    from srl_trainers.rollout import VALIDATION_SEED_OFFSET

    played: list[int] = []
    make = srl_envs.make

    def spy(env_id, **kwargs):
        env = make(env_id, **kwargs)
        reset = env.reset

        def recording(seed=None, options=None):
            played.append(seed)
            return reset(seed=seed, options=options)

        env.reset = recording
        return env

    monkeypatch.setattr(srl_envs, "make", spy)
    cfg = tiny_config(tiny_model_path, tmp_path)
    held_out = evaluate(cfg, num_episodes=4)
    seen_held_out, played[:] = list(played), []
    validation = evaluate(cfg, num_episodes=4, seeds="validation")
    assert validation.num_episodes == held_out.num_episodes == 4
    lo, hi = validation.seeds
    assert VALIDATION_SEED_OFFSET <= lo < VALIDATION_SEED_OFFSET + 2 and hi == lo + 3
    assert sorted(played) == list(range(lo, hi + 1))  # what the report names is what was played
    assert sorted(seen_held_out) == list(range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 4))
    with pytest.raises(ValueError, match=r"seeds='test'.*\['held_out', 'validation'\]"):
        evaluate(cfg, num_episodes=4, seeds="test")

    played[:] = []
    trainer = MultiModelTrainer(
        tiny_config(tiny_model_path, tmp_path, eval_episodes=4, eval_seeds="validation")
    )
    trainer.train_sync()
    before, after = trainer.evaluations["before"], trainer.evaluations["after"]
    assert before["seeds"] == after["seeds"] == [lo, hi]
    assert set(played) >= set(range(lo, hi + 1))
    assert not set(played) & set(range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 4))
    with pytest.raises(ConfigError, match=r"eval_seeds"):
        MultiModelConfig(eval_seeds="test").validate()


def test_checkpoint_round_trip_and_other_opponent(tiny_model_path, tmp_path):
    cfg = tiny_config(tiny_model_path, tmp_path)
    trainer = MultiModelTrainer(cfg)
    trainer.train_sync()  # one episode, checkpoint saved at the end
    from_trainer = evaluate(trainer, num_episodes=2)
    ckpt = tmp_path / "ckpt" / trainer.checkpoints_saved[-1]
    from_dir = evaluate(ckpt, num_episodes=2)
    from_id = evaluate("latest", num_episodes=2, checkpoint_dir=tmp_path / "ckpt")
    assert from_dir.source == str(ckpt) and from_dir.training_episode == 1
    strip = lambda r: {k: v for k, v in r.to_dict()["models"].items()}  # noqa: E731
    assert strip(from_dir) == strip(from_trainer) == strip(from_id)
    # the trained adapters differ from fresh ones: the untrained report is not the trained one
    random_opp = evaluate(ckpt, num_episodes=2, opponent="random")
    assert "bot_random" in random_opp.models and "bot_heuristic" not in random_opp.models
    assert random_opp.opponent == "random"
    base_opp = evaluate(trainer, num_episodes=2, opponent="base")
    assert "frozen_base" in base_opp.models
    assert base_opp.models["frozen_base"].agents == ["blue_0", "blue_1"]


def test_stage_plays_that_curriculum_stage_and_leaves_the_curriculum_alone(
    tiny_model_path, tmp_path
):
    """The staged commons beside two greedy bots: the harsh stage regrows a quarter of what
    the abundant one does, so the same untrained population leaves a smaller stock there."""
    cfg = tiny_config(
        tiny_model_path,
        tmp_path,
        env="staged",
        env_kwargs={"base": "coop_compete", "num_models": 4, "warmup_episodes": 2},
        opponent_policy="greedy",
    )
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    before = [env.state_dict() for env in trainer.envs]
    default = evaluate(trainer, num_episodes=2)
    abundant = evaluate(trainer, num_episodes=2, stage=0)
    harsh = evaluate(trainer, num_episodes=2, stage=2)
    assert [env.state_dict() for env in trainer.envs] == before
    assert (default.stage, abundant.stage, harsh.stage) == (0, 0, 2)
    assert "curriculum stage 2" in harsh.table()
    assert harsh.game["stock_per_round"] < abundant.game["stock_per_round"]
    # the default plays where the curriculum is, the warm-up, where every agent gets the
    # mean reward; past it the greedy bots out-earn the tiny model's (mostly invalid) answers
    assert len({round(m.mean_return, 6) for m in default.models.values()}) == 1
    assert len({round(m.mean_return, 6) for m in abundant.models.values()}) == 2
    with pytest.raises(ValueError, match=r"stage=3: use a stage index in \[0, 2\].*harsh"):
        evaluate(trainer, num_episodes=2, stage=3)
    with pytest.raises(ValueError, match=r"env 'team_battle' has no curriculum"):
        evaluate(tiny_config(tiny_model_path, tmp_path / "tb"), num_episodes=2, stage=1)


# ---------------------------------------------------------------------- CLI
def test_cli_checkpoint_and_json(tiny_model_path, tmp_path, capsys):
    trainer = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path))
    trainer.train_sync()
    out = tmp_path / "report.json"
    code = main(
        [
            "--checkpoint",
            "latest",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--episodes",
            "2",
            "--opponent",
            "random",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "srl evaluation" in printed and "bot_random" in printed
    data = json.loads(out.read_text())
    assert data["num_episodes"] == 2 and data["opponent"] == "random"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of the arguments --checkpoint --config is required"),
        (["--checkpoint", "nope", "--checkpoint-dir", "{tmp}"], "not found"),
        (["--checkpoint", "latest", "--checkpoint-dir", "{tmp}"], "no complete checkpoint"),
        (["--checkpoint", "{tmp}/nowhere/checkpoint_000001"], "is not a checkpoint directory"),
        (["--checkpoint", "{tmp}"], "is not a checkpoint directory"),
        (["--config", "{tmp}/missing.yaml"], "does not exist"),
        (["--config", "x.yaml", "--episodes", "0"], "--episodes 0"),
        (["--config", "x.yaml", "--temperature", "-1"], "--temperature -1"),
        (["--config", "x.yaml", "--checkpoint", "latest"], "not allowed with argument"),
        (["--config", "{tmp}/binary.yaml"], "is not UTF-8 text"),
        (["--config", "{tmp}/bad_field.yaml"], "run_name=5"),
        (["--config", "{tmp}/good.yaml", "--json", "{tmp}"], "is a directory"),
        (["--config", "{tmp}/good.yaml", "--temperature", "nan"], "--temperature nan"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys, argv, message):
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\x02\xff\xfe")
    (tmp_path / "bad_field.yaml").write_text("run_name: 5\n")
    (tmp_path / "good.yaml").write_text("env: team_battle\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--opponent", "grandmaster"], ["grandmaster", "heuristic"]),
        (["--stage", "1"], ["--stage 1", "'team_battle' has no curriculum"]),
    ],
)
def test_cli_option_that_does_not_fit_the_env(tmp_path, capsys, extra, words):
    config = tmp_path / "c.yaml"
    config.write_text("env: team_battle\n")
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------- a checkpoint is data
def _staged_checkpoint(tiny_model_path, tmp_path):
    """A 1-episode checkpoint of the staged env: evaluation reads its curriculum state."""
    cfg = tiny_config(
        tiny_model_path,
        tmp_path,
        env="staged",
        env_kwargs={"base": "coop_compete", "num_models": 4, "warmup_episodes": 2},
        opponent_policy="greedy",
    )
    MultiModelTrainer(cfg).train_sync()
    return tmp_path / "ckpt" / "checkpoint_000001"


def test_evaluating_a_checkpoint_never_runs_a_pickle_from_it(tiny_model_path, tmp_path):
    ckpt = _staged_checkpoint(tiny_model_path, tmp_path)
    clean = evaluate(ckpt, num_episodes=2)
    marker = tmp_path / "marker"
    # every torch file, and the pickled trainer state that srl used to read, run the payload
    for name in ("optimizers.pt", "rng.pt", "trainer_state.pt"):
        plant_pickle(ckpt / name, marker)
    resign(ckpt)
    doctored = evaluate(ckpt, num_episodes=2)
    assert not marker.exists()
    assert doctored.to_dict()["models"] == clean.to_dict()["models"]


def test_cli_refuses_a_checkpoint_of_format_1_without_running_it(tiny_model_path, tmp_path, capsys):
    ckpt = _staged_checkpoint(tiny_model_path, tmp_path)
    marker = tmp_path / "marker"
    (ckpt / "trainer_state.json").unlink()
    plant_pickle(ckpt / "trainer_state.pt", marker)
    make_format_1(ckpt)
    capsys.readouterr()  # what training printed
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(ckpt), "--episodes", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint format 1" in err
    assert not marker.exists()


def test_cli_names_the_corrupted_file_of_a_checkpoint(tiny_model_path, tmp_path, capsys):
    ckpt = _staged_checkpoint(tiny_model_path, tmp_path)
    flip_bytes(ckpt / "trainer_state.json", n=8)
    capsys.readouterr()  # what training printed
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(ckpt), "--episodes", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "fails verification: trainer_state.json does not match its sha256" in err
