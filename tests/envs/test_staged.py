"""The staged (curriculum) env and its Curriculum: stages, gates, spaces, checkpoints, args."""

from __future__ import annotations

import numpy as np
import pytest

import srl_envs
from srl_envs.staged import DEFAULT_STAGES, Curriculum, Stage, StagedEnv


def play_episode(env: StagedEnv, bots: dict, seed: int | None = None) -> list[dict]:
    """One episode with scripted bots; returns the infos of every step."""
    obs, infos = env.reset(seed=seed)
    assert all(i == {} for i in infos.values())  # reset infos stay the base's (empty)
    steps = []
    while env.agents:
        obs, _, _, _, infos = env.step({a: bots[a].act(obs[a]) for a in env.agents})
        steps.append(infos)
    return steps


def make_bots(env: StagedEnv, name: str = "heuristic") -> dict:
    return {
        a: srl_envs.make_bot(env.base_id, name, seed=i) for i, a in enumerate(env.possible_agents)
    }


# ----------------------------------------------------------------- Curriculum
def test_curriculum_counts_warmup_then_stages():
    cur = Curriculum(num_stages=3, warmup_episodes=2, episodes_per_stage=3)
    seen = []
    for _ in range(12):
        seen.append((cur.episode, cur.warmup, cur.stage))
        cur.on_episode_end(0.0)
    assert [w for _, w, _ in seen] == [True, True] + [False] * 10
    assert [s for *_, s in seen] == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert [e for e, *_ in seen] == list(range(12))


def test_curriculum_performance_gate():
    cur = Curriculum(
        num_stages=2, warmup_episodes=1, advance="performance", gate_threshold=1.0, gate_window=3
    )
    assert not cur.on_episode_end(100.0)  # warm-up episodes never enter the window
    for ret in (0.0, 2.0):
        assert not cur.on_episode_end(ret)  # window not full yet
    assert not cur.on_episode_end(0.5)  # mean(0, 2, 0.5) < 1
    assert cur.stage == 0
    assert cur.on_episode_end(1.5)  # mean(2, 0.5, 1.5) >= 1
    assert cur.stage == 1 and cur.metrics()["curriculum/window_mean_return"] == 0.0
    for _ in range(5):
        assert not cur.on_episode_end(10.0)  # the last stage never ends
    assert cur.stage == 1


def test_curriculum_state_dict_round_trip():
    cur = Curriculum(num_stages=3, advance="performance", gate_threshold=5.0, gate_window=4)
    for ret in (1.0, 2.0, 3.0):
        cur.on_episode_end(ret)
    other = Curriculum(num_stages=3, advance="performance", gate_threshold=5.0, gate_window=4)
    other.load_state_dict(cur.state_dict())
    assert other.state_dict() == cur.state_dict()
    assert other.metrics() == cur.metrics()
    assert other.on_episode_end(14.0) == cur.on_episode_end(14.0) is True
    with pytest.raises(ValueError, match="stage"):
        other.load_state_dict({**cur.state_dict(), "stage": 3})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_stages": 0}, "num_stages"),
        ({"num_stages": 2, "warmup_episodes": -1}, "warmup_episodes"),
        ({"num_stages": 2, "advance": "sometimes"}, "advance"),
        ({"num_stages": 2, "episodes_per_stage": 0}, "episodes_per_stage"),
        ({"num_stages": 2, "gate_window": 0}, "gate_window"),
        ({"num_stages": 2, "advance": "performance"}, "gate_threshold"),
        ({"num_stages": 2, "advance": "performance", "gate_threshold": "x"}, "gate_threshold"),
        ({"num_stages": 2, "advance": "performance", "gate_threshold": np.nan}, "gate_threshold"),
    ],
)
def test_curriculum_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Curriculum(**kwargs)


def test_stage_validation():
    with pytest.raises(ValueError, match="cooperation_level"):
        Stage("x", {}, cooperation_level=1.5)
    with pytest.raises(ValueError, match="cooperation_level"):
        Stage("x", {"cooperation_level": 0.5})
    with pytest.raises(ValueError, match="name"):
        Stage("", {})
    with pytest.raises(ValueError, match="env_kwargs"):
        Stage("x", ["regen_rate", 1.0])


# ----------------------------------------------------------------- the env
def test_factory_defaults_and_legacy_signature():
    env = srl_envs.create_multi_model_staged_env()
    assert env.base_id == "srl/coop_compete-v0"
    assert len(env.possible_agents) == 8
    assert env.curriculum.warmup_episodes == 50
    assert env.stages == DEFAULT_STAGES["coop_compete"]
    assert env.teams is None and env.team_of("player_0") is None
    assert srl_envs.spec("srl/staged-v0").bots == srl_envs.spec("srl/coop_compete-v0").bots


def test_team_battle_base_maps_num_models_to_teams():
    env = srl_envs.create_multi_model_staged_env(num_models=6, base="srl/team_battle-v0")
    assert env.base_id == "srl/team_battle-v0"
    assert env.possible_agents == ["red_0", "red_1", "red_2", "blue_0", "blue_1", "blue_2"]
    assert env.team_of("blue_2") == "blue"
    assert env.teams == {a: a.split("_")[0] for a in env.possible_agents}


@pytest.mark.parametrize("base,num_models", [("coop_compete", 3), ("team_battle", 4)])
def test_stages_advance_by_episode_count(base, num_models):
    env = srl_envs.make(
        "srl/staged-v0",
        base=base,
        num_models=num_models,
        warmup_episodes=2,
        episodes_per_stage=2,
        episode_length=2,
    )
    bots = make_bots(env)
    space = {a: env.observation_space(a) for a in env.possible_agents}
    expected = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    for episode, stage_index in enumerate(expected):
        steps = play_episode(env, bots, seed=episode)
        stage = env.stages[stage_index]
        assert (env.episode, env.stage, env.stage_name) == (episode, stage_index, stage.name)
        assert env.env.cooperation_level == stage.cooperation_level
        for key, value in stage.env_kwargs.items():
            assert getattr(env.env.params, key) == value
        assert env.env.params.episode_length == 2  # base kwargs reach every stage
        for infos in steps:
            for info in infos.values():
                assert (info["stage"], info["stage_name"]) == (stage_index, stage.name)
                assert info["warmup"] == (episode < 2)
                assert not info["invalid_action"]
        for a in env.possible_agents:
            assert env.observation_space(a) is space[a]  # cached, constant across stages


def test_performance_gate_advances_only_good_play():
    def run(bot_name):
        env = srl_envs.make(
            "srl/staged-v0",
            num_models=3,
            warmup_episodes=1,
            advance="performance",
            gate_threshold=3.6,  # 90% of the sustainable yield over 4 rounds
            gate_window=2,
            episode_length=4,
        )
        bots = make_bots(env, bot_name)
        stages = []
        for episode in range(6):
            play_episode(env, bots, seed=episode)
            stages.append(env.stage)
        return stages, env.curriculum.stage

    # Warm-up, then two good episodes per stage.
    assert run("heuristic") == ([0, 0, 0, 1, 1, 2], 2)
    assert run("greedy") == ([0] * 6, 0)  # the commons collapses: no progress


def test_state_dict_resumes_the_curriculum():
    kw = {"num_models": 2, "warmup_episodes": 1, "episodes_per_stage": 1, "episode_length": 2}
    env = srl_envs.make("srl/staged-v0", **kw)
    bots = make_bots(env)
    for episode in range(3):
        play_episode(env, bots, seed=episode)
    resumed = srl_envs.make("srl/staged-v0", **kw)
    resumed.load_state_dict(env.state_dict())
    assert resumed.state_dict() == env.state_dict()
    assert resumed.metrics() == env.metrics()
    assert resumed.reset() == env.reset()  # same generator state: same next episode
    assert (resumed.episode, resumed.stage) == (env.episode, env.stage) == (3, 2)


def test_same_seed_same_transcript_across_stages():
    def transcript():
        env = srl_envs.make("srl/staged-v0", num_models=3, warmup_episodes=1, episodes_per_stage=1)
        bots = make_bots(env, "random")
        out = []
        obs, _ = env.reset(seed=7)
        for _ in range(4):
            while env.agents:
                actions = {a: bots[a].act(obs[a]) for a in env.agents}
                obs, rewards, *_ = env.step(actions)
                out.append((sorted(obs.items()), sorted(rewards.items())))
            obs, _ = env.reset()
        return out

    assert transcript() == transcript()


def test_text_observations_lie_in_the_cached_space():
    env = srl_envs.make(
        "srl/staged-v0", base="team_battle", num_models=2, warmup_episodes=0, episodes_per_stage=1
    )
    bots = make_bots(env, "random")
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        while env.agents:
            assert all(env.observation_space(a).contains(o) for a, o in obs.items())
            obs, *_ = env.step({a: bots[a].act(obs[a]) for a in env.agents})


def test_structured_mode_merges_boxes_and_keeps_spaces():
    env = srl_envs.make(
        "srl/staged-v0",
        num_models=4,
        warmup_episodes=0,
        episodes_per_stage=1,
        action_mode="structured",
    )
    spaces = [(env.observation_space(a), env.action_space(a)) for a in env.possible_agents]
    for episode in range(4):
        obs, _ = env.reset(seed=episode)
        while env.agents:
            assert all(env.observation_space(a).contains(o) for a, o in obs.items())
            obs, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})
    assert spaces == [(env.observation_space(a), env.action_space(a)) for a in env.possible_agents]


def test_render_delegates_to_the_current_stage():
    env = srl_envs.make("srl/staged-v0", num_models=2, render_mode="ansi")
    env.reset(seed=0)
    assert isinstance(env.render(), str) and env.render()
    assert srl_envs.make("srl/staged-v0", num_models=2).render() is None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"base": "nope"}, "unknown env"),
        ({"base": "staged"}, "base"),
        ({"base": "srl/staged-v0"}, "base"),
        ({"num_models": 1}, "num_models"),
        ({"num_models": 9}, "num_models"),
        ({"num_models": 2.5}, "num_models"),
        ({"num_models": None}, "num_models"),
        ({"base": "team_battle", "num_models": 5}, "num_models must be even"),
        ({"base": "team_battle", "num_models": 18}, "num_models"),
        ({"base": "team_battle", "num_models": 0}, "num_models"),
        ({"warmup_episodes": -1}, "warmup_episodes"),
        ({"warmup_episodes": 1.5}, "warmup_episodes"),
        ({"episodes_per_stage": 0}, "episodes_per_stage"),
        ({"advance": "never"}, "advance"),
        ({"advance": "performance"}, "gate_threshold"),
        ({"advance": "performance", "gate_threshold": 1.0, "gate_window": 0}, "gate_window"),
        ({"stages": ()}, "stages"),
        ({"stages": ["easy"]}, "stages"),
        ({"action_mode": "json"}, "action_mode"),
        ({"cooperation_level": 0.5}, "cooperation_level"),
        ({"regen_rate": 0.5}, "regen_rate"),  # set by the default coop_compete stages
        ({"base": "team_battle", "num_models": 4, "num_fields": 3}, "num_fields"),
        ({"base": "team_battle", "num_models": 4, "team_size": 2}, "team_size"),
        ({"capacity": 1}, "capacity"),  # the base's own validation
        ({"stages": [Stage("bad", {"regen_rate": -1.0})]}, "regen_rate"),
        ({"stages": [Stage("a", {}), Stage("b", {"num_models": 3})]}, "num_models"),
        (  # Discrete(26) and Discrete(13): no one space for both
            {"stages": [Stage("a", {}), Stage("b", {"capacity": 50})], "action_mode": "structured"},
            "action_mode='text'",
        ),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        srl_envs.make("srl/staged-v0", **kwargs)


def test_structured_stages_share_padded_spaces_or_are_rejected():
    keep = (
        Stage("lean", {"budget": 4}, 1.0),
        Stage("valued", {"budget": 4, "field_values": (1, 2, 3, 2, 1)}, 0.5),
    )
    env = StagedEnv(base="team_battle", num_models=2, stages=keep, action_mode="structured")
    assert env.action_space("red_0").shape == (5,)
    longer = (Stage("short", {}), Stage("long", {"episode_length": 5}))
    env = StagedEnv(base="team_battle", num_models=2, stages=longer, action_mode="structured")
    assert env.observation_space("red_0").shape == env._envs[1].observation_space("red_0").shape
    budgets = (Stage("small", {"budget": 5}), Stage("big", {}))  # MultiDiscrete([6]*5), [11]*5
    with pytest.raises(ValueError, match="one action space"):
        StagedEnv(base="team_battle", num_models=2, stages=budgets, action_mode="structured")
    StagedEnv(base="team_battle", num_models=2, stages=budgets)  # text mode: fine
