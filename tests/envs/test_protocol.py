"""What the trainer and the evaluator may rely on from every registered env, staged or not:
``base_id`` (the game whose bots play it), ``curriculum`` (None for a plain game) and the
per-episode settings through ``reset(options=...)``, PettingZoo's way."""

from __future__ import annotations

import pytest

import srl_envs

ENV_IDS = srl_envs.list_envs()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_env_names_the_game_whose_bots_play_it(env_id):
    env = srl_envs.make(env_id)
    game = srl_envs.spec(env.base_id)
    assert game.bots, f"{env_id}: {env.base_id} has no bots"
    if env_id == "srl/staged-v0":
        assert env.base_id == "srl/coop_compete-v0" and env.curriculum is not None
    else:
        assert env.base_id == env_id and env.curriculum is None
    bot = srl_envs.make_bot(env.base_id, game.default_bot, seed=0)
    observations, _ = env.reset(seed=0)
    agent = env.acting_agents[0]  # every live agent in srl's games; the mover in a turn-based one
    assert bot.act(observations[agent]).strip()


@pytest.mark.parametrize("env_id", ["srl/coop_compete-v0", "srl/team_battle-v0"])
def test_reset_options_set_the_episodes_reward_mixing(env_id):
    env = srl_envs.make(env_id, cooperation_level=0.2, competition_intensity=0.0)
    env.reset(seed=1, options={"cooperation_level": 0.9, "competition_intensity": 0.5})
    assert (env.cooperation_level, env.competition_intensity) == (0.9, 0.5)
    env.reset(seed=1)  # kept until changed again
    assert (env.cooperation_level, env.competition_intensity) == (0.9, 0.5)
    env.reset(seed=1, options={"something_else": 1})  # ignored, as PettingZoo envs do
    assert env.cooperation_level == 0.9


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"cooperation_level": 1.5}, "cooperation_level"),
        ({"cooperation_level": "0.5"}, "cooperation_level"),
        ({"competition_intensity": -1.0}, "competition_intensity"),
    ],
)
def test_bad_reset_options_name_the_option(options, needle):
    env = srl_envs.make("srl/coop_compete-v0")
    with pytest.raises(ValueError, match=needle):
        env.reset(seed=0, options=options)


def test_the_staged_env_keeps_its_stages_cooperation_level():
    env = srl_envs.make("srl/staged-v0", warmup_episodes=0)
    env.reset(seed=0, options={"cooperation_level": 0.0, "competition_intensity": 2.0})
    stage = env.stages[env.curriculum.stage]
    assert env.env.cooperation_level == stage.cooperation_level
    assert env.env.competition_intensity != 2.0
