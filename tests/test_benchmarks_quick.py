"""The learning benchmarks' --quick smoke runs (tiny random model): each one trains, evaluates,
prints its table and writes its JSON and PNG. Slow (about a minute each on 2 cores)."""

from __future__ import annotations

import importlib
import json
import shutil

import pytest

BENCHMARKS = [
    "learning_team_battle",
    "learning_commons",
    "compare_strategies",
    "staged_curriculum",
    "learning_pettingzoo",
    "learning_league",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_quick_run_writes_table_json_and_png(name, tmp_path, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"{name}:" in printed
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert data["command"].split()[:3] == ["python", "-m", f"benchmarks.{name}"]
    assert data["table"] in printed
    png = tmp_path / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_recorded_command_names_the_module_not_the_file(tmp_path):
    from benchmarks.common import write_json

    path = tmp_path / "learning_pettingzoo_tictactoe.json"
    write_json(path, ["--games", "tictactoe"], {}, name="learning_pettingzoo")
    command = json.loads(path.read_text())["command"]
    assert command == "python -m benchmarks.learning_pettingzoo --games tictactoe"
    write_json(path, [], {})  # by default, the file's name
    assert json.loads(path.read_text())["command"] == (
        "python -m benchmarks.learning_pettingzoo_tictactoe"
    )


def test_train_episodes_replaces_the_minutes_budget():
    from benchmarks.common import budget, make_parser

    parser = make_parser("x", minutes=5.0, episodes=8)
    fields = {"max_episodes": 100_000}
    assert budget(parser.parse_args([]), fields) == 5.0
    assert fields["max_episodes"] == 100_000
    assert budget(parser.parse_args(["--train-episodes", "12"]), fields) is None
    assert fields["max_episodes"] == 12
    with pytest.raises(SystemExit, match="--train-episodes must be a positive integer"):
        budget(parser.parse_args(["--train-episodes", "0"]), fields)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "extra", "check"),
    [
        (  # the defaults: a greedy fisher in the lake, the safe-harvest hint, a 0.5 penalty
            "learning_commons",
            [],
            lambda data: all(
                c["policy_mapping"]["player_2"] == "bot:greedy"
                and c["policy_mapping"]["player_3"] == "bot:heuristic"
                and c["env_kwargs"]["safe_hint"] is True
                and c["env_kwargs"]["format_penalty"] == 0.5
                for c in data["configs"].values()
            ),
        ),
        (
            "learning_commons",
            ["--opponents", "heuristic", "heuristic", "--no-safe-hint"],
            lambda data: all(
                not c["policy_mapping"] and c["env_kwargs"]["safe_hint"] is False
                for c in data["configs"].values()
            ),
        ),
        (
            "learning_team_battle",
            ["--format-penalty", "1.0"],
            lambda data: (
                data["config"]["env_kwargs"]["format_penalty"] == 1.0
                and len(data["curve"]["moving_average"]) == data["training"]["total_episodes"]
                and set(data["reports"]["after/heuristic/T0"]["first_game"]) == {"red_0", "red_1"}
                # 2 episodes, no evaluation during training: the best is the last checkpoint
                and data["training"]["best_checkpoint"]["episode"] == 2
                and data["reports"]["best/heuristic/T0"] == data["reports"]["after/heuristic/T0"]
            ),
        ),
        (
            "staged_curriculum",
            [],
            lambda data: (
                [(k, r["stage"], r["source"]) for k, r in data["per_stage_evaluation"].items()]
                == [(f"before/{k}", k, "untrained") for k in range(3)]
                + [(f"after/{k}", k, "trainer") for k in range(3)]
                and "untrained vs trained" in data["stage_table"]
            ),
        ),
    ],
)
def test_quick_run_with_setting_options(name, extra, check, tmp_path):
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.main(["--quick", "--out", str(tmp_path), *extra]) == 0
    assert check(json.loads((tmp_path / f"{name}.json").read_text()))


def test_curve_stability_finds_the_rise_and_the_fall_after_it():
    from benchmarks.common import curve_stability

    # 4-episode means: 0.0, rising past 0.5 at episode 6, peak 1.0 (episodes 7-8), then 0.0
    values = [0.0] * 3 + [1.0] * 5 + [0.0] * 2 + [1.0] * 2 + [0.0] * 5
    c = curve_stability(values, window=4)
    assert c["moving_average"][:4] == [0.0, 0.0, 0.0, 0.25]
    assert c["first_above"] == 6  # (1 + 1 + 1 + 0) / 4 after episode 6 (1-based)
    assert c["max_drop"] == pytest.approx(1.0)
    assert c["final"] == 0.0
    never = curve_stability([0.1, 0.2, 0.3], window=2)
    assert never["first_above"] is None and never["max_drop"] == 0.0


def test_commons_opponents_put_the_two_bots_on_player_2_and_3():
    from benchmarks.learning_commons import CONFIG, opponent_mapping
    from srl_trainers import MultiModelConfig

    config = MultiModelConfig(**CONFIG, model_types=["smollm2"])
    assert opponent_mapping(config, ["heuristic", "heuristic"]) is None
    mapping = opponent_mapping(config, ["greedy", "heuristic"])
    assert mapping == {
        "player_0": "model_0_smollm2",
        "player_1": "model_1_smollm2",
        "player_2": "bot:greedy",
        "player_3": "bot:heuristic",
    }
    assert MultiModelConfig(**CONFIG, model_types=["smollm2"], policy_mapping=mapping)


def test_commons_opponents_reject_an_unknown_bot(capsys):
    from benchmarks.learning_commons import main

    with pytest.raises(SystemExit):
        main(["--quick", "--opponents", "greedy", "nobody"])
    assert "invalid choice: 'nobody'" in capsys.readouterr().err


def test_set_overrides_preset_fields_and_names_a_bad_one():
    from benchmarks.common import budget, make_parser

    parser = make_parser("x", minutes=5.0, episodes=8)
    fields = {"group_size": 4, "env_kwargs": {"num_models": 4}}
    args = parser.parse_args(
        ["--set", "group_size=8", "--set", "env_kwargs={num_models: 3}", "--set", "beta=0.04"]
    )
    assert budget(args, fields) == 5.0
    assert fields == {"group_size": 8, "env_kwargs": {"num_models": 3}, "beta": 0.04}
    with pytest.raises(SystemExit, match=r"unknown config field 'group_sise'.*group_size"):
        budget(parser.parse_args(["--set", "group_sise=8"]), {})
    with pytest.raises(SystemExit, match="use FIELD=VALUE"):
        budget(parser.parse_args(["--set", "group_size"]), {})
    with pytest.raises(SystemExit, match="not a valid value"):
        budget(parser.parse_args(["--set", "env_kwargs={a: [1"]), {})


def test_compare_strategies_reuses_runs_trained_with_the_same_setup(tmp_path):
    from benchmarks.compare_strategies import reusable_runs

    setup = {"config": {"group_size": 8, "env_kwargs": {"team_size": 4}}, "minutes": None}
    run = {"seed": 1, "wins": 3, "eval_episodes": 32}
    path = tmp_path / "compare_strategies.json"
    path.write_text(json.dumps({**setup, "runs": {"federated": [run]}, "complete": False}))
    assert reusable_runs([str(path)], setup, 32) == {("federated", 1): run}
    assert reusable_runs([], setup, 32) == {}

    other = {**setup, "config": {"group_size": 16, "env_kwargs": {"team_size": 4}}}
    with pytest.raises(SystemExit, match=r"other settings \(config.group_size differ\)"):
        reusable_runs([str(path)], other, 32)
    # a field the file leaves out is the config's default: setting it to that still matches
    at_default = {**setup, "config": {**setup["config"], "beta": 0.0, "baseline": "group"}}
    at_default["config"]["save_interval"] = 7  # checkpointing does not change the training
    assert reusable_runs([str(path)], at_default, 32) == {("federated", 1): run}
    off_default = {**setup, "config": {**setup["config"], "beta": 0.04}}
    with pytest.raises(SystemExit, match=r"other settings \(config.beta differ\)"):
        reusable_runs([str(path)], off_default, 32)
    with pytest.raises(SystemExit, match=r"other settings \(minutes differ\)"):
        reusable_runs([str(path)], {**setup, "minutes": 5.0}, 32)
    with pytest.raises(
        SystemExit, match=r"federated seed 1 was evaluated on 32 episodes.*--episodes 32"
    ):
        reusable_runs([str(path)], setup, 64)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"not a compare_strategies\.json"):
        reusable_runs([str(tmp_path / "bad.json"), str(path)], setup, 32)
    with pytest.raises(SystemExit, match=r"not a compare_strategies\.json"):
        reusable_runs([str(tmp_path / "missing.json")], setup, 32)


@pytest.mark.slow
def test_compare_strategies_quick_run_again_with_reuse_trains_nothing(tmp_path, capsys):
    from benchmarks.compare_strategies import main

    first = tmp_path / "first"
    assert main(["--quick", "--strategies", "federated", "--out", str(first)]) == 0
    capsys.readouterr()
    again = ["--quick", "--strategies", "federated", "--out", str(first), "--work-dir", str(first)]
    assert main([*again, "--reuse", str(first / "compare_strategies.json")]) == 0
    assert "compare_strategies_federated_s0: reused" in capsys.readouterr().out
    data = json.loads((first / "compare_strategies.json").read_text())
    assert data["complete"] and len(data["runs"]["federated"]) == 1
    # the reused runs' logs gone (an earlier session's temp dir): the table still comes out
    shutil.rmtree(first / "runs")
    elsewhere = ["--quick", "--strategies", "federated", "--out", str(tmp_path / "elsewhere")]
    reuse = ["--work-dir", str(first), "--reuse", str(first / "compare_strategies.json")]
    assert main([*elsewhere, *reuse]) == 0
    assert "learning curves: none" in capsys.readouterr().out
    assert json.loads((tmp_path / "elsewhere" / "compare_strategies.json").read_text())["complete"]


@pytest.mark.parametrize("name", ["learning_team_battle", "compare_strategies"])
def test_plot_keys_average_the_lora_slots_not_the_scripted_team(name):
    """The curves are labelled as the LoRA team's; the scripted team's metrics (its win rate
    0, its reward minus red's) must not be averaged into them."""
    from srl_trainers.plot import _match

    module = importlib.import_module(f"benchmarks.{name}")
    leaves = ("win_rate", "reward", "fields_won")
    ids = ("model_0_smollm2", "model_1_smollm2", "bot_heuristic")
    names = [f"model/{i}/{leaf}" for i in ids for leaf in leaves]
    per_model = [p for p in module.PLOT_KEYS if p.startswith("model/")]
    assert per_model
    for pattern in per_model:
        matched = _match(pattern, names)
        assert len(matched) == 2 and not any("bot_" in m for m in matched), (pattern, matched)


def test_a_rerun_checkpoints_beside_the_run_it_repeats(tmp_path):
    from benchmarks.common import checkpoint_dir
    from srl_trainers.checkpoint import CheckpointManager

    first = checkpoint_dir(tmp_path, "bench_s0")
    assert first == str(tmp_path / "checkpoints" / "bench_s0")
    assert checkpoint_dir(tmp_path, "bench_s0") == first  # nothing saved there yet
    CheckpointManager(first).save("checkpoint_000001", lambda d: None, {"episode": 1})
    second = checkpoint_dir(tmp_path, "bench_s0")
    assert second == str(tmp_path / "checkpoints" / "bench_s0-2")
    CheckpointManager(second).save("checkpoint_000001", lambda d: None, {"episode": 1})
    assert checkpoint_dir(tmp_path, "bench_s0") == str(tmp_path / "checkpoints" / "bench_s0-3")


def test_prefix_sharing_reports_what_each_env_shares(capsys):
    """The table of benchmarks.prefix_sharing (the embedded tokenizer, no model forward): in
    round 1 a group's copies share all of every prompt but its last token; later rounds, whose
    copies diverge, share less but never more than the plain layout costs."""
    from benchmarks import prefix_sharing

    rows = prefix_sharing.main(["--copies", "4", "--rounds", "2"])
    assert {r["env"] for r in rows} == set(prefix_sharing.ENVS)
    for r in rows:
        assert 0 <= r["saved"] < 1 and r["shared"] <= r["plain"]
        if r["round"] == 1:  # 4 copies of one prompt: the prefix once + 1 token per row
            assert r["saved"] > 0.6
    assert "saved" in capsys.readouterr().out


def test_team_battle_ceiling_uses_the_envs_bots_and_rule(capsys):
    import numpy as np

    from benchmarks.team_battle_ceiling import UNTRAINED, blue_totals, main, team_totals, win_rates

    red = team_totals(40, 5)
    assert (red.sum(1) == 40).all() and (np.diff(red, axis=1) <= 0).all()
    assert len({tuple(r) for r in red.tolist()}) == len(red)
    # the equal split is 8 on every field: four times the prompt's example draws (2 won, 2
    # lost), 3,3,3,1,0 four times (12, 12, 12, 4, 0) takes three fields and wins
    equal = blue_totals("heuristic", 5, seed=0)
    assert (equal == 8).all()
    rates = win_rates(np.array([UNTRAINED, (12, 12, 12, 4, 0)]), equal)
    assert rates.tolist() == [0.0, 1.0]
    assert (blue_totals("concentrate", 20, seed=0).sum(1) == 40).all()
    # the vectorised rule is the env's: four copies of one answer against four bot answers
    from srl_envs.team_battle import TeamBattleEnv
    from srl_envs.team_battle.bots import BOTS

    rng = np.random.default_rng(3)
    for _ in range(20):
        mine = np.bincount(rng.integers(0, 5, size=10), minlength=5)  # 10 troops
        env = TeamBattleEnv(message_max_chars=0)
        obs, _ = env.reset(seed=0)
        bots = [BOTS["random"](seed=int(rng.integers(1000))) for _ in range(4)]
        answers = {f"blue_{i}": b.act(obs["blue_0"]) for i, b in enumerate(bots)}
        blue = sum(np.array([int(t) for t in a.split(":")[1].split(",")]) for a in answers.values())
        answers.update({f"red_{i}": "ALLOCATE: " + ",".join(map(str, mine)) for i in range(4)})
        _, _, _, _, infos = env.step(answers)
        won = infos["red_0"]["fields_won"] > infos["blue_0"]["fields_won"]
        assert win_rates((4 * mine)[None, :], blue[None, :])[0] == won
    assert main(["--games", "50"]) == 0
    assert "best against concentrate and random together" in capsys.readouterr().out


@pytest.mark.parametrize("two_groups", [False, True])
def test_scale_out_builds_a_valid_config_for_every_mode(tmp_path, two_groups):
    """scale_out.py times the team battle preset: a preset field it must turn off (such as
    the evaluations during training) fails here, not after a benchmark has started."""
    import argparse

    from benchmarks import scale_out

    args = argparse.Namespace(warmup=1, episodes=5, seed=0, quick=False, two_groups=two_groups)
    ray = {"distributed_backend": "ray"}
    two = {**ray, "batch_size": 16, "num_rollout_workers": 2}
    for overrides in ({}, ray, {"batch_size": 16}, two, {**two, "engines_per_model": 2}):
        cfg = scale_out._config(args, tmp_path, **overrides)
        assert cfg.eval_episodes == 0 and cfg.max_episodes == 6


@pytest.mark.slow
def test_scale_out_quick_run_times_both_modes(tmp_path, capsys):
    from benchmarks import scale_out

    out = tmp_path / "scale_out.json"
    argv = ["--quick", "--episodes", "1", "--one-worker", "--out", str(out)]
    assert scale_out.main(argv) == 0
    data = json.loads(out.read_text())
    assert set(data["modes"]) == {"local", "ray, 1 worker"}
    for row in data["modes"].values():
        assert 0 < row["learner_seconds"] <= row["update_seconds"]
    assert data["ray_one_worker_same_weights_as_local"] is True
