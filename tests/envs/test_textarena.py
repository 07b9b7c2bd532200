"""TextArena's games through srl_envs.bridge.textarena: turn order, TextArena's own invalid-move
rules flagged, rewards at the end, seeding that leaves Python's ``random`` alone, and a
training run on the tiny model."""

from __future__ import annotations

import random

import pytest
from pettingzoo.test import parallel_api_test

import srl_envs
from srl_envs.bridge import BracketedRandom, textarena_env


def play(env, seed, bot_seed=0):
    obs, _ = env.reset(seed=seed)
    bot = BracketedRandom(seed=bot_seed)
    log = []
    while env.agents:
        actions = {a: bot.act(obs[a]) for a in env.acting_agents}
        obs, rewards, terms, _truncs, _infos = env.step(actions)
        log.append((sorted(actions.items()), sorted(rewards.items())))
    return log, rewards, terms


def test_tictactoe_is_turn_based_and_pays_at_the_end():
    env = srl_envs.make("srl/ta-tictactoe-v0")
    obs, infos = env.reset(seed=0)
    (mover,) = env.acting_agents
    assert infos[mover]["to_move"] and "Available Moves" in obs[mover]
    other = next(a for a in env.agents if a != mover)
    assert "wait" in obs[other]
    log, rewards, terms = play(env, seed=0)
    assert all(terms.values()) and sorted(rewards.values()) in ([-1.0, 1.0], [0.0, 0.0])
    assert all(r == 0.0 for _, rs in log[:-1] for _, r in rs)  # nothing before the end


def test_an_invalid_move_is_flagged_with_the_games_reason_and_answered_again():
    env = srl_envs.make("srl/ta-tictactoe-v0")
    env.reset(seed=1)
    (mover,) = env.acting_agents
    _, rewards, _, _, infos = env.step({mover: "I pass"})
    assert infos[mover]["invalid_action"] and infos[mover]["invalid_reason"]
    assert rewards[mover] == pytest.approx(-0.1)
    assert env.acting_agents == [mover]  # TextArena's rule: the same player answers again
    _, rewards, terms, _, infos = env.step({mover: "still no"})  # error allowance spent
    assert infos[mover]["invalid_action"] and all(terms.values())
    assert rewards[mover] == pytest.approx(-1.1)


def test_no_answer_and_a_crashing_game_are_flagged_never_raised(monkeypatch):
    env = srl_envs.make("srl/ta-kuhn_poker-v0")
    env.reset(seed=0)
    (mover,) = env.acting_agents
    _, _, _, _, infos = env.step({})
    assert infos[mover]["invalid_action"] and "no action given" in infos[mover]["invalid_reason"]

    def boom(action):
        raise RuntimeError("inner failure")

    monkeypatch.setattr(env.env, "step", boom)
    (mover,) = env.acting_agents
    _, _, _, truncs, infos = env.step({mover: "[bet]"})
    assert infos[mover]["invalid_action"] and "inner failure" in infos[mover]["invalid_reason"]
    assert all(truncs.values()) and env.agents == []


def test_seeded_games_replay_and_leave_pythons_random_alone():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    env = srl_envs.make("srl/ta-kuhn_poker-v0")
    first = play(env, seed=7)
    assert random.random() == expected  # TextArena's random.seed calls stayed inside
    assert play(env, seed=7) == first
    assert any(play(env, seed=s) != first for s in range(8, 12))


def test_episode_length_truncates_and_the_api_test_passes():
    env = srl_envs.make("srl/ta-prisoners_dilemma-v0", episode_length=2)
    _, _, terms = play(env, seed=0)
    assert not any(terms.values())
    parallel_api_test(srl_envs.make("srl/ta-tictactoe-v0"), num_cycles=50)


def test_any_textarena_game_by_its_id_and_a_clear_error_for_an_unknown_one():
    env = textarena_env("Nim-v0")
    obs, _ = env.reset(seed=0)
    assert env.acting_agents and obs[env.acting_agents[0]]
    with pytest.raises(ValueError, match="TextArena cannot make 'NoSuchGame-v0'"):
        textarena_env("NoSuchGame-v0")


def test_a_short_training_run_on_textarena_tictactoe(tiny_model_path, tmp_path):
    from srl_trainers import MultiModelTrainer
    from srl_trainers.testing import tiny_trainer_config

    cfg = tiny_trainer_config(
        tiny_model_path,
        tmp_path,
        env="srl/ta-tictactoe-v0",
        num_models=1,
        episode_length=3,
        kv_cache_size=1024,
        opponent_policy="random",
        max_episodes=1,
    )
    results = MultiModelTrainer(cfg).train_sync()
    assert results["total_episodes"] == 1
