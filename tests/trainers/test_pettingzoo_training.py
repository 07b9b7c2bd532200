"""Training and evaluating on PettingZoo's games through the text bridge (tiny model): turn
order, rewards that arrive on another agent's move, seats, and the config fields."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from srl_trainers import ConfigError, MultiModelConfig, MultiModelTrainer
from srl_trainers.evaluate import evaluate
from srl_trainers.run import main as run_main
from srl_trainers.testing import tiny_trainer_config

PZ_IDS = [
    "srl/pz-tictactoe-v3",
    "srl/pz-connect_four-v3",
    "srl/pz-leduc_holdem-v4",
    "srl/pz-rps-v2",
]


def pz_config(tiny_model_path, tmp_path, env, **overrides) -> MultiModelConfig:
    fields = dict(
        env=env,
        num_models=1,
        episode_length=None,
        kv_cache_size=1024,  # the byte-level tokenizer: a board prompt is ~600 tokens
        opponent_policy="random",
    )
    fields.update(overrides)
    return tiny_trainer_config(tiny_model_path, tmp_path, **fields)


@pytest.mark.parametrize("env", PZ_IDS)
def test_a_short_training_run_on_every_named_game(tiny_model_path, tmp_path, env):
    trainer = MultiModelTrainer(pz_config(tiny_model_path, tmp_path, env, max_episodes=2))
    results = trainer.train_sync()
    assert results["total_episodes"] == 2
    slot = trainer.slots[0]
    state = results["final_model_states"][slot]
    assert state["update_count"] == 2 and state["invalid_rate"] >= 0.5  # a random model
    result = asyncio.run(trainer.rollout.play(5, 0.5, 0.0))
    assert result.turns and all(t.slot == slot for t in result.turns)


def test_turns_follow_the_turn_order_and_the_loser_gets_its_minus_one(tiny_model_path, tmp_path):
    cfg = pz_config(tiny_model_path, tmp_path, "srl/pz-tictactoe-v3")
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    result = asyncio.run(trainer.rollout.play(0, 0.5, 0.0))
    by_copy = defaultdict(list)
    for turn in result.turns:
        assert turn.agent == "player_1"  # the bot plays player_2: no LLM turn of its
        by_copy[turn.copy].append(turn)
    for copy, turns in by_copy.items():
        assert [t.round for t in turns] == list(range(len(turns)))  # the agent's own turns
        assert result.turn_counts[copy]["player_1"] == len(turns)
        assert turns[-1].done and not any(t.done for t in turns[:-1])
        # every reward of the game reaches a turn: the per-copy total is the turns' sum
        assert sum(t.reward for t in turns) == pytest.approx(result.reward_totals[copy]["player_1"])
        raw = result.raw_totals[copy]
        assert raw["player_1"] == -raw["player_2"] and raw["player_1"] in (-1.0, 0.0, 1.0)


def test_two_lora_slots_play_each_other_in_turn(tiny_model_path, tmp_path):
    trainer = MultiModelTrainer(
        pz_config(tiny_model_path, tmp_path, "srl/pz-connect_four-v3", num_models=2)
    )
    trainer.setup()
    result = asyncio.run(trainer.rollout.play(0, 0.5, 0.0))
    for copy in {t.copy for t in result.turns}:
        counts = defaultdict(int)
        for t in result.turns:
            if t.copy == copy:
                counts[t.agent] += 1
        assert counts["player_0"] - counts["player_1"] in (0, 1)  # player_0 moves first
    trainer.train_sync()


def test_evaluation_seats_the_policy_first_or_second(tiny_model_path, tmp_path):
    cfg = pz_config(
        tiny_model_path, tmp_path, "srl/pz-tictactoe-v3", env_kwargs={"seat_order": "random"}
    )
    slot = cfg.slot_ids()[0]
    second = {
        "policy_mapping": {"player_2": slot, "player_1": "bot:random"},
        "env_kwargs": {"seat_order": "fixed"},
    }
    report = evaluate(cfg, num_episodes=4, overrides=second)
    assert report.population.agents == ["player_2"]
    assert report.opponent == "random"
    vs_heuristic = evaluate(cfg, num_episodes=4, opponent="heuristic", overrides=second)
    assert vs_heuristic.opponent == "heuristic"
    with pytest.raises(ConfigError, match="no MultiModelConfig fields"):
        evaluate(cfg, num_episodes=4, overrides={"seat": "first"})


def test_episode_length_none_plays_the_whole_game_and_srl_games_keep_two(tiny_model_path, tmp_path):
    cfg = pz_config(tiny_model_path, tmp_path, "srl/pz-tictactoe-v3")
    assert cfg.resolved_episode_length() is None and cfg.episode_length_kwargs() == {}
    native = tiny_trainer_config(tiny_model_path, tmp_path, episode_length=None)
    assert native.resolved_episode_length() == 2
    capped = pz_config(tiny_model_path, tmp_path, "srl/pz-tictactoe-v3", episode_length=1)
    trainer = MultiModelTrainer(capped)
    trainer.setup()
    result = asyncio.run(trainer.rollout.play(0, 0.5, 0.0))
    assert all(t.round == 0 for t in result.turns)  # one answer each, then truncated


def test_a_bad_env_or_env_kwarg_names_the_field_and_what_is_allowed(tiny_model_path, tmp_path):
    with pytest.raises(ConfigError, match=r"MultiModelConfig.env='chess'.*srl/pz-tictactoe-v3"):
        pz_config(tiny_model_path, tmp_path, "chess")
    with pytest.raises(ConfigError, match="seat_order"):
        pz_config(tiny_model_path, tmp_path, "srl/pz-tictactoe-v3", env_kwargs={"seat_order": 2})
    with pytest.raises(ConfigError, match="opponent_policy"):
        pz_config(tiny_model_path, tmp_path, "srl/pz-rps-v2", opponent_policy="greedy")


def test_the_cli_takes_a_pettingzoo_id_and_exits_2_on_a_bad_one(capsys):
    with pytest.raises(SystemExit) as info:
        run_main(["--env", "srl/pz-nosuchgame-v1", "--max-episodes", "1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "env" in err and "srl/pz-tictactoe-v3" in err and "Traceback" not in err
