"""What the MARL-library examples share: how a trained policy is scored against random play.

The *learners* are every agent of a game without teams (the commons) and the first team
in a team game (red in team battle); the others play uniformly random actions. A score
is the learners' summed ``raw_score`` over an episode (the game's own scale, the same at
every cooperation level: in the commons 1.0 per round is the sustainable pace, so 10 is
a fully sustainable 10-round game), averaged over the learners and over seeded episodes.
The same seeds score the random baseline, where the learners play at random too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pettingzoo import ParallelEnv

from srl_trainers.cli import ArgumentParser

#: Maps the learners' observations (agent -> observation) to their actions.
Policy = Callable[[dict[str, Any]], dict[str, Any]]


def learners(env: ParallelEnv) -> list[str]:
    """Every agent, or the first agent's team in a team game."""
    teams = env.teams
    first = env.possible_agents[0]
    return [a for a in env.possible_agents if teams is None or teams[a] == teams[first]]


def score(env: ParallelEnv, policy: Policy | None, episodes: int = 20, seed: int = 0) -> float:
    """The learners' mean episode score when ``policy`` plays them (``None``: at random)
    and the other agents play at random; episode ``e`` is seeded ``seed + e``."""
    mine = learners(env)
    total = 0.0
    for episode in range(episodes):
        observations, _ = env.reset(seed=seed + episode)
        for i, agent in enumerate(env.possible_agents):
            env.action_space(agent).seed(seed + 1000 * episode + i)
        while env.agents:
            actions = {a: env.action_space(a).sample() for a in env.agents}
            if policy is not None:
                actions.update(policy({a: observations[a] for a in mine if a in env.agents}))
            observations, _, _, _, infos = env.step(actions)
            total += sum(infos[a]["raw_score"] for a in mine)
    return total / (episodes * len(mine))


def make_parser(prog: str, description: str) -> ArgumentParser:
    """The examples' shared options (their errors one line and exit code 2, as srl's CLIs)."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--cooperation-level", type=float, default=1.0, help="the env's cooperation_level"
    )
    parser.add_argument("--seed", type=int, default=0, help="torch, numpy and evaluation seed")
    parser.add_argument("--eval-episodes", type=int, default=20, help="seeded evaluation episodes")
    return parser
