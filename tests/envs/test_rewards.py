"""Reward invariants: the shared mixing formula, and every env's rewards against it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import srl_envs
from srl_envs import mix_rewards
from srl_envs.staged import Stage, StagedEnv
from tests.envs.test_conformance import NATIVE_ENVS

COOPERATION = (0.0, 0.25, 0.6, 1.0)
INTENSITY = (0.0, 0.7)
FORMAT_PENALTY = 0.1  # every game's default


def random_scores(rng: np.random.Generator, n: int) -> dict[str, float]:
    return {f"a{i}": float(rng.normal(scale=3.0)) for i in range(n)}


def random_teams(rng: np.random.Generator, agents: list[str]) -> dict[str, str]:
    """Two or three teams of possibly unequal sizes, every team non-empty."""
    num_teams = int(rng.integers(2, min(3, len(agents)) + 1))
    labels = [f"t{i % num_teams}" for i in range(len(agents))]
    return dict(zip(agents, rng.permutation(labels).tolist()))


# ----------------------------------------------------------------- the formula
@pytest.mark.parametrize("seed", range(20))
def test_mix_rewards_invariants(seed):
    rng = np.random.default_rng(seed)
    scores = random_scores(rng, int(rng.integers(2, 9)))
    teams = random_teams(rng, list(scores)) if seed % 2 else None
    group = {}  # agent -> the quantity every agent (teammate) shares at c = 1
    if teams is None:
        m = sum(scores.values()) / len(scores)
        group = dict.fromkeys(scores, m)
    else:
        for t in set(teams.values()):
            members = [a for a in scores if teams[a] == t]
            mean = sum(scores[a] for a in members) / len(members)
            group.update(dict.fromkeys(members, mean))
    for k in INTENSITY:
        full = mix_rewards(scores, 1.0, teams, k)
        zero = mix_rewards(scores, 0.0, teams, k)
        # c = 1: identical for everyone (for teammates in team games).
        assert full == pytest.approx(group)
        if teams is not None:
            for a, b in zip(scores, scores):
                if teams[a] == teams[b]:
                    assert full[a] == full[b]
        # c = 0: zero-sum (between teams in team games: one reward per team).
        if teams is None:
            assert sum(zero.values()) == pytest.approx(0.0, abs=1e-9)
        else:
            per_team = {teams[a]: r for a, r in zero.items()}
            assert sum(per_team.values()) == pytest.approx(0.0, abs=1e-9)
        # Linear in c in between.
        for c in COOPERATION:
            mixed = mix_rewards(scores, c, teams, k)
            for a in scores:
                assert mixed[a] == pytest.approx((1 - c) * zero[a] + c * full[a], abs=1e-9)
        # k scales only the zero-sum part.
        for c in COOPERATION:
            plain = mix_rewards(scores, c, teams, 0.0)
            mixed = mix_rewards(scores, c, teams, k)
            for a in scores:
                assert mixed[a] - c * group[a] == pytest.approx(
                    (1 + k) * (plain[a] - c * group[a]), abs=1e-9
                )


def test_mix_rewards_rejects_bad_arguments():
    with pytest.raises(ValueError, match="cooperation_level"):
        mix_rewards({"a": 1.0}, 1.5)
    with pytest.raises(ValueError, match="cooperation_level"):
        mix_rewards({"a": 1.0}, float("nan"))
    with pytest.raises(ValueError, match="competition_intensity"):
        mix_rewards({"a": 1.0}, 0.5, competition_intensity=-0.1)
    assert mix_rewards({}, 0.5) == {}


# ----------------------------------------------------------------- every env
def mixed_env_cases() -> list[tuple[str, dict[str, Any]]]:
    """``(env_id, small kwargs)`` for every registered env, the staged env over each base."""
    cases = []
    for env_id in NATIVE_ENVS:
        if srl_envs.spec(env_id).name == "staged":
            cases.append((env_id, {"base": "coop_compete", "num_models": 3}))
            cases.append((env_id, {"base": "team_battle", "num_models": 4}))
        else:
            cases.append((env_id, {}))
    return cases


def make_mixed(env_id: str, kw: dict[str, Any], c: float, k: float):
    """The env at cooperation level ``c`` and competition intensity ``k`` (text mode: only
    there can an action be invalid and cost the format penalty)."""
    if srl_envs.spec(env_id).name == "staged":
        stages = (Stage("only", {}, cooperation_level=c),)
        kw = {**kw, "warmup_episodes": 0, "stages": stages}
    else:
        kw = {**kw, "cooperation_level": c}
    return srl_envs.make(env_id, competition_intensity=k, **kw)


def play(env_id: str, env, seed: int = 0) -> list[tuple[dict, dict]]:
    """One episode with seeded random bots (every 5th action missing, hence invalid)."""
    observations, _ = env.reset(seed=seed)
    bot_env = env.base_id if isinstance(env, StagedEnv) else env_id
    bots = {
        a: srl_envs.make_bot(bot_env, "random", seed=seed + i)
        for i, a in enumerate(env.possible_agents)
    }
    steps, t = [], 0
    while env.agents:
        actions = {}
        for j, agent in enumerate(env.agents):
            if (t + j) % 5:
                actions[agent] = bots[agent].act(observations[agent])
        observations, rewards, _, _, infos = env.step(actions)
        steps.append((rewards, infos))
        t += 1
    return steps


@pytest.mark.parametrize("case", mixed_env_cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def test_env_rewards_follow_the_mix(case):
    env_id, kw = case
    for k in INTENSITY:
        runs = {c: play(env_id, make_mixed(env_id, kw, c, k)) for c in COOPERATION}
        env = make_mixed(env_id, kw, 0.0, k)
        teams = env.teams
        for c, steps in runs.items():
            assert len(steps) == len(runs[0.0])
            for rewards, infos in steps:
                raw = _raw(infos)
                expected = mix_rewards(raw, c, teams, k)
                for a, r in rewards.items():
                    penalty = FORMAT_PENALTY if infos[a]["invalid_action"] else 0.0
                    assert infos[a]["reward_components"]["format_penalty"] == -penalty
                    assert r == pytest.approx(expected[a] - penalty, abs=1e-9)
                    assert infos[a]["reward_components"]["mixed"] == pytest.approx(expected[a])
                    assert np.isfinite(r)
                mixed = {a: i["reward_components"]["mixed"] for a, i in infos.items()}
                if c == 1.0:
                    groups = teams or dict.fromkeys(mixed, "all")
                    for a in mixed:
                        for b in mixed:
                            if groups[a] == groups[b]:
                                assert mixed[a] == pytest.approx(mixed[b], abs=1e-12)
                if c == 0.0:
                    if teams is None:
                        assert sum(mixed.values()) == pytest.approx(0.0, abs=1e-9)
                    else:
                        per_team = {teams[a]: r for a, r in mixed.items()}
                        assert sum(per_team.values()) == pytest.approx(0.0, abs=1e-9)


def _raw(infos: dict) -> dict[str, float]:
    return {a: i["raw_score"] for a, i in infos.items()}


@pytest.mark.parametrize("case", mixed_env_cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def test_env_rewards_interpolate_linearly_in_c(case):
    env_id, kw = case
    for k in INTENSITY:
        runs = {c: play(env_id, make_mixed(env_id, kw, c, k)) for c in COOPERATION}
        for c, steps in runs.items():
            for t, (rewards, infos) in enumerate(steps):
                zero_r, zero_i = runs[0.0][t]
                full_r, full_i = runs[1.0][t]
                assert _raw(infos) == _raw(zero_i) == _raw(full_i)  # same trajectory
                for a, r in rewards.items():
                    assert r == pytest.approx((1 - c) * zero_r[a] + c * full_r[a], abs=1e-9)


@pytest.mark.parametrize("c", COOPERATION)
@pytest.mark.parametrize("k", INTENSITY)
def test_team_battle_teammates_identical_and_teams_zero_sum(c, k):
    env = srl_envs.make("srl/team_battle-v0", cooperation_level=c, competition_intensity=k)
    bots = {
        a: srl_envs.make_bot("srl/team_battle-v0", "random", seed=i)
        for i, a in enumerate(env.possible_agents)
    }
    obs, _ = env.reset(seed=3)
    while env.agents:
        obs, rewards, _, _, infos = env.step({a: bots[a].act(obs[a]) for a in env.agents})
        assert not any(i["invalid_action"] for i in infos.values())
        per_team: dict[str, set[float]] = {}
        for a, r in rewards.items():
            per_team.setdefault(env.team_of(a), set()).add(r)
        assert all(len(v) == 1 for v in per_team.values()), per_team
        assert sum(v.pop() for v in per_team.values()) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------- staged warm-up
@pytest.mark.parametrize("base,num_models", [("coop_compete", 3), ("team_battle", 4)])
@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_staged_warmup_rewards_equal_for_exactly_the_first_w_episodes(base, num_models, warmup):
    env = srl_envs.make(
        "srl/staged-v0",
        base=base,
        num_models=num_models,
        warmup_episodes=warmup,
        episodes_per_stage=100,
        episode_length=4,
    )
    bots = {
        a: srl_envs.make_bot(env.base_id, "random", seed=i)
        for i, a in enumerate(env.possible_agents)
    }
    for episode in range(warmup + 2):  # the last warm-up episode, then episodes W and W+1
        obs, _ = env.reset(seed=episode)
        assert env.episode == episode
        assert env.warmup == (episode < warmup)
        unequal = False
        while env.agents:
            actions = {a: bots[a].act(obs[a]) for a in env.agents}
            actions[env.agents[0]] = "garbage" if episode % 2 else actions[env.agents[0]]
            obs, rewards, _, _, infos = env.step(actions)
            assert all(i["warmup"] == (episode < warmup) for i in infos.values())
            inner = {
                a: i["reward_components"]["mixed"] + i["reward_components"]["format_penalty"]
                for a, i in infos.items()
            }
            if episode < warmup:
                assert len(set(rewards.values())) == 1
                assert rewards[env.possible_agents[0]] == pytest.approx(
                    sum(inner.values()) / len(inner)
                )
                for a, i in infos.items():
                    assert sum(i["reward_components"].values()) == pytest.approx(rewards[a])
            else:
                assert rewards == pytest.approx(inner)
                unequal |= len(set(rewards.values())) > 1
        if episode >= warmup:
            assert unequal, f"episode {episode} after the warm-up should pay unequal rewards"
