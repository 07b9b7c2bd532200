"""Presets (srl_trainers.presets): one source for the benchmark, the YAML example and the default
command-line run; the held-out evaluation before and after training that the preset turns on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from srl_trainers.config import ConfigError, MultiModelConfig
from srl_trainers.presets import PRESETS, TEAM_BATTLE, preset
from srl_trainers.run import DEFAULT_PRESET, build_config, main, make_parser

ROOT = Path(__file__).resolve().parents[2]


def _config(argv: list[str]) -> MultiModelConfig:
    return build_config(make_parser().parse_args(argv))


def test_the_default_run_is_the_team_battle_preset():
    assert DEFAULT_PRESET == "team_battle"
    assert _config([]) == MultiModelConfig.from_dict(TEAM_BATTLE)
    cfg = _config(["--seed", "3", "--max-episodes", "50"])
    assert (cfg.env, cfg.baseline, cfg.seed, cfg.max_episodes) == (
        "team_battle",
        "counterfactual",
        3,
        50,
    )


def test_an_env_or_a_config_file_starts_from_the_bare_defaults():
    defaults = MultiModelConfig()
    cfg = _config(["--env", "coop_compete"])
    assert cfg == dataclasses.replace(defaults, env="coop_compete")
    assert _config(["--preset", "none"]) == defaults
    assert (
        _config(["--config", str(ROOT / "examples/configs/coop_compete.yaml")]).eval_episodes == 0
    )
    # ...unless the preset is named
    assert _config(["--env", "team_battle", "--preset", "team_battle"]).baseline == (
        "counterfactual"
    )


def test_the_yaml_example_and_the_benchmark_start_from_the_preset():
    from benchmarks.learning_team_battle import CONFIG

    yaml = MultiModelConfig.from_yaml(ROOT / "examples/configs/team_battle.yaml")
    assert yaml == MultiModelConfig.from_dict({**TEAM_BATTLE, "max_episodes": 60})
    assert {k: v for k, v in CONFIG.items() if k not in ("max_episodes", "eval_episodes")} == {
        k: v for k, v in TEAM_BATTLE.items() if k not in ("max_episodes", "eval_episodes")
    }
    assert CONFIG["eval_episodes"] == 8  # its own evaluations play --episodes games


def test_a_preset_is_a_copy_and_a_bad_name_is_named():
    fields = preset("team_battle")
    fields["env_kwargs"]["format_penalty"] = 9.0
    assert TEAM_BATTLE["env_kwargs"]["format_penalty"] == 0.5
    with pytest.raises(ConfigError, match=r"preset='nope' does not exist; presets: team_battle"):
        MultiModelConfig.from_dict({"preset": "nope"})
    assert MultiModelConfig.from_dict({"preset": None}) == MultiModelConfig()
    assert sorted(PRESETS) == ["team_battle"]


def test_a_bad_preset_on_the_command_line_exits_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "nope"])
    assert exc.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: nope\n")
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "preset='nope' does not exist" in err and "\n" not in err


def _tiny_preset_args(tiny_model_path, tmp_path, *extra: str) -> list[str]:
    """The default preset on the tiny model, scaled down to seconds."""
    return [
        "--model",
        str(tiny_model_path),
        "--num-models",
        "2",
        "--env-kwargs",
        "{team_size: 2, message_max_chars: 0, format_penalty: 0.5}",
        "--batch-size",
        "2",
        "--group-size",
        "2",
        "--max-new-tokens",
        "4",
        "--kv-cache-size",
        "200",
        "--system-prompt",
        "Play.",
        "--dtype",
        "float32",
        "--eval-episodes",
        "4",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "runs"),
        *extra,
    ]


def test_the_default_run_evaluates_before_and_after_and_a_resume_keeps_before(
    tiny_model_path, tmp_path, capsys, one_thread
):
    argv = _tiny_preset_args(tiny_model_path, tmp_path, "--max-episodes", "2")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "srl: evaluating before training: 4 held-out games against heuristic, T = 0.7" in out
    assert "srl: evaluating after training" in out
    assert "evaluation: the trained population on 4 held-out games against heuristic" in out
    assert "before  (episode    0): win rate" in out and "after   (episode    2): win rate" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    evals = [r for r in rows if "eval/win_rate" in r]
    assert [r["step"] for r in evals] == [0, 2]
    assert all(
        0 <= r["eval/win_ci_low"] <= r["eval/win_rate"] <= r["eval/win_ci_high"] for r in evals
    )
    state = json.loads((tmp_path / "ckpt/checkpoint_000002/trainer_state.json").read_text())
    assert state["evaluations"]["before"]["episode"] == 0

    # resumed to 3 episodes: the "before" figures are the first run's, not re-measured
    assert (
        main([*_tiny_preset_args(tiny_model_path, tmp_path, "--max-episodes", "3"), "--resume"])
        == 0
    )
    out = capsys.readouterr().out
    assert "evaluating before training" not in out
    assert "before  (episode    0)" in out and "after   (episode    3)" in out


def _train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    return [
        {k: v for k, v in r.items() if not k.startswith(("eval/", "perf/")) and k != "time"}
        for r in rows
        if "eval/win_rate" not in r
    ]


def test_evaluations_during_training_log_a_greedy_curve_and_change_no_training(
    tiny_model_path, tmp_path, capsys, one_thread
):
    base = tmp_path / "plain"
    args = _tiny_preset_args(tiny_model_path, base, "--max-episodes", "4", "--save-interval", "2")
    assert main(args) == 0
    out = tmp_path / "evals"
    argv = [
        *_tiny_preset_args(tiny_model_path, out, "--max-episodes", "4", "--save-interval", "2"),
        "--eval-interval",
        "2",
        "--eval-greedy",
        "true",
    ]
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert (
        "srl: evaluating at episode 2: 4 held-out games against heuristic, T = 0.7 and greedy"
        in (text)
    )
    assert "srl: at episode 2: win rate" in text and "; greedy: win rate" in text
    # the summary: before, the one during training (the last one is "after"), after
    lines = [line for line in text.splitlines() if line.startswith("  ") and "(episode " in line]
    assert [line.split()[0] for line in lines] == ["before", "during", "after"]
    assert all("; greedy: win rate" in line for line in lines)
    (run_dir,) = (out / "runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    greedy = [r for r in rows if "eval/greedy_win_rate" in r]
    assert [r["step"] for r in greedy] == [0, 2, 4]
    assert all(
        0
        <= r["eval/greedy_win_ci_low"]
        <= r["eval/greedy_win_rate"]
        <= r["eval/greedy_win_ci_high"]
        for r in greedy
    )
    # the checkpoint of episode 2 holds the evaluation of episode 2 (made before it was saved)
    state = json.loads((out / "ckpt/checkpoint_000002/trainer_state.json").read_text())
    assert sorted(state["evaluations"]) == ["before", "episode 2"]
    assert state["evaluations"]["episode 2"]["greedy"]["temperature"] == 0.0
    # evaluating restores every RNG and plays its own seeds: training is the same, step by step
    (plain_dir,) = (base / "runs").iterdir()
    assert _train_rows(run_dir) == _train_rows(plain_dir)


def test_an_evaluation_interval_without_evaluation_games_is_named():
    with pytest.raises(ConfigError, match=r"eval_interval=5 is not allowed.*eval_episodes > 0"):
        MultiModelConfig(eval_interval=5, eval_episodes=0).validate()


def test_the_best_evaluation_keeps_its_checkpoint_out_of_rotation(
    tiny_model_path, tmp_path, capsys, one_thread
):
    argv = [
        *_tiny_preset_args(tiny_model_path, tmp_path, "--max-episodes", "4"),
        *("--eval-interval", "2", "--eval-greedy", "true", "--keep-best-checkpoint", "true"),
        *("--save-interval", "10", "--max-checkpoints", "1"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    state = json.loads((tmp_path / "ckpt/checkpoint_000004/trainer_state.json").read_text())
    # the first evaluation during training is the first best, chosen by its greedy win rate
    greedy = state["evaluations"]["episode 2"]["greedy"]
    sampled = state["evaluations"]["episode 2"]["win_rate"]
    assert state["best_checkpoint"] == {
        "checkpoint_id": "checkpoint_000002",
        "episode": 2,
        "win_rate": greedy["win_rate"],
        "temperature": 0.0,
        "opponents": ["heuristic"],
        "score": [greedy["win_rate"], sampled],
    }
    # saved when it was found (save_interval 10 would not have), kept beside the newest one
    # although max_checkpoints is 1
    kept = sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("check"))
    assert kept == ["checkpoint_000002", "checkpoint_000004"]
    # the evaluation after training competes too (the last checkpoint is its weights)
    assert "best:        " + str(tmp_path / "ckpt" / "checkpoint_00000") in out


def test_best_is_the_strictly_higher_score_greedy_first(tmp_path):
    from srl_trainers import MultiModelTrainer

    cfg = MultiModelConfig(
        eval_episodes=4,
        eval_interval=2,
        keep_best_checkpoint=True,
        checkpoint_dir=str(tmp_path / "c"),
        log_dir=str(tmp_path / "r"),
    )
    trainer = MultiModelTrainer(cfg)

    def summary(episode, win, greedy=None):
        s = {"episode": episode, "win_rate": win, "temperature": 0.7}
        if greedy is not None:
            s["greedy"] = {"win_rate": greedy, "temperature": 0.0}
        return s

    assert trainer._is_best(summary(2, 0.5))
    assert not trainer._is_best(summary(4, 0.5))  # a tie keeps the earlier one
    assert trainer._is_best(summary(6, 0.75))
    assert trainer.best == {
        "checkpoint_id": "checkpoint_000006",
        "episode": 6,
        "win_rate": 0.75,
        "temperature": 0.7,
        "opponents": ["heuristic"],
        "score": [0.75, 0.75],
    }
    trainer.best = None
    assert trainer._is_best(summary(2, 0.9, greedy=0.5))
    assert not trainer._is_best(summary(4, 1.0, greedy=0.25))  # the greedy score decides
    assert trainer._is_best(summary(6, 0.95, greedy=0.5))  # a greedy tie: the sampled one
    assert not trainer._is_best(summary(8, 0.95, greedy=0.5))  # a full tie keeps episode 6
    assert (trainer.best["episode"], trainer.best["temperature"]) == (6, 0.0)
    # resumed against a mix: a best scored on the heuristic alone is not compared with
    mixed = summary(8, 0.1, greedy=0.0)
    mixed["opponents"] = {"random": {**summary(8, 0.2, greedy=0.1), "opponent": "random"}}
    assert trainer._is_best(mixed)
    assert trainer.best["opponents"] == ["heuristic", "random"]
    assert trainer.best["score"] == [pytest.approx(0.05), pytest.approx(0.15)]
    assert not trainer._is_best({**mixed, "episode": 10})  # from here on, compared as before


def test_keep_best_checkpoint_without_an_interval_is_named():
    with pytest.raises(
        ConfigError, match=r"keep_best_checkpoint=True is not allowed.*eval_interval"
    ):
        MultiModelConfig(keep_best_checkpoint=True).validate()


# ---------------------------------------------------------------------- opponent_mix
def test_a_bad_opponent_mix_is_named():
    with pytest.raises(ConfigError, match=r"opponent_mix=\['heuristic', 'nope'\].*one of"):
        MultiModelConfig(env="team_battle", opponent_mix=["heuristic", "nope"]).validate()
    with pytest.raises(ConfigError, match=r"opponent_mix=.*without repeats"):
        MultiModelConfig(env="team_battle", opponent_mix=["random", "random"]).validate()
    with pytest.raises(ConfigError, match=r"opponent_mix=.*opponent_sampling='fixed'"):
        MultiModelConfig(
            env="team_battle", opponent_mix=["random"], opponent_sampling="latest"
        ).validate()


def test_the_mix_draws_per_episode_from_the_seed_and_replaces_only_opponent_agents(
    tiny_model_path,
):
    from srl_envs import make
    from srl_trainers.population import Population

    cfg = MultiModelConfig(
        env="team_battle",
        model_names={"smollm2": str(tiny_model_path)},
        num_models=2,
        env_kwargs={"team_size": 2},
        opponent_mix=["heuristic", "concentrate", "random", "base"],
        policy_mapping={
            "red_0": "model_0_smollm2",
            "red_1": "model_1_smollm2",
            "blue_0": "bot:heuristic",
        },
    )
    pop = Population(cfg, make("team_battle", team_size=2))
    assert pop.opponent_mix == {
        "heuristic": "bot_heuristic",
        "concentrate": "bot_concentrate",
        "random": "bot_random",
        "base": "frozen_base",
    }
    # blue_0 is named by policy_mapping: it stays the heuristic's; blue_1 is opponent_policy's
    assert pop.opponent_agents() == {"blue_1"}
    draws = [pop.mix_mapping(e) for e in range(40)]
    assert all(d["blue_0"] == "bot_heuristic" for d in draws)
    assert all(d[a] == pop.policy_mapping[a] for d in draws for a in ("red_0", "red_1"))
    assert {d["blue_1"] for d in draws} == set(pop.opponent_mix.values())  # each one is drawn
    again = Population(cfg, make("team_battle", team_size=2))
    assert [again.mix_mapping(e) for e in range(40)] == draws  # seed and episode: a resume
    other = Population(dataclasses.replace(cfg, seed=1), make("team_battle", team_size=2))
    assert [other.mix_mapping(e) for e in range(40)] != draws


def test_training_against_a_mix_plays_each_and_evaluates_each(
    tiny_model_path, tmp_path, capsys, one_thread
):
    argv = [
        *_tiny_preset_args(tiny_model_path, tmp_path, "--max-episodes", "6"),
        *("--opponent-mix", "[heuristic, concentrate, random]", "--eval-interval", "3"),
        *("--eval-greedy", "true", "--keep-best-checkpoint", "true"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 held-out games against heuristic, concentrate, random, T = 0.7 and greedy" in out
    assert "| against concentrate: win rate" in out and "| against random: win rate" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    train = [r for r in rows if "eval/win_rate" not in r]
    drawn = [[k for k in r if k.startswith("mix/")] for r in train]
    assert all(len(d) == 1 for d in drawn)  # one opponent an episode...
    names = [d[0].split("/")[1] for d in drawn]
    assert len(set(names)) > 1  # ...not always the same one
    # the bot that played is the one whose games were counted: its model/* win rate is set
    for r, name in zip(train, names, strict=True):
        assert f"model/bot_{name}/win_rate" in r
    evals = [r for r in rows if "eval/win_rate" in r]
    assert all(f"eval/{b}/greedy_win_rate" in r for r in evals for b in ("concentrate", "random"))
    state = json.loads((tmp_path / "ckpt/checkpoint_000006/trainer_state.json").read_text())
    ev = state["evaluations"]["episode 3"]
    assert sorted(ev["opponents"]) == ["concentrate", "random"]
    best = state["best_checkpoint"]
    assert best["opponents"] == ["heuristic", "concentrate", "random"]
    if best["episode"] == 3:  # the score is the mean over the three opponents
        greedy = [ev["greedy"]["win_rate"]] + [
            e["greedy"]["win_rate"] for e in ev["opponents"].values()
        ]
        assert best["score"][0] == pytest.approx(sum(greedy) / 3)
    assert "averaged over heuristic, concentrate, random" in out


def test_a_mix_added_on_resume_trains_on(tiny_model_path, tmp_path, capsys, one_thread):
    # A run trained against one bot, resumed against a mix: the checkpoint has no
    # statistics of the mix's other bots, and the resumed run starts them fresh.
    first = _tiny_preset_args(tiny_model_path, tmp_path, "--max-episodes", "2")
    assert main(first) == 0
    resumed = [
        *_tiny_preset_args(tiny_model_path, tmp_path, "--max-episodes", "6"),
        *("--opponent-mix", "[heuristic, concentrate, random]", "--resume", "latest"),
    ]
    assert main(resumed) == 0
    assert "resumed from checkpoint_000002 at episode 2" in capsys.readouterr().out
    state = json.loads((tmp_path / "ckpt/checkpoint_000006/trainer_state.json").read_text())
    played = {
        f"bot_{name}"
        for name in ("heuristic", "concentrate", "random")
        if state["totals"][f"bot_{name}"]["episodes"] > 0
    }
    assert len(played) > 1 and state["totals"]["bot_heuristic"]["episodes"] >= 2
