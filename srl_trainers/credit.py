"""Credit assignment: from the rewards of a rollout's turns to the advantages of an update.

The rule (see :mod:`srl_trainers.trainer`): every LLM turn is one sample, credited with the
return of its agent from that turn to the end of its env episode.

* :func:`compute_returns`: reward-to-go per (copy, agent), undiscounted.
* :func:`grpo_advantages`: a turn's return relative to the same agent's turns at the same round
  in its GRPO group (copies sharing one env seed), or relative to its counterfactual baseline.
* :func:`ppo_advantages`: GAE over each agent's turns, from a value head's values.
* :func:`counterfactual_baseline`: what the agent would have got with its groupmates' answers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from copy import deepcopy
from typing import TYPE_CHECKING, Any

import torch

from srl_trainers.algorithms import compute_gae, group_advantages

if TYPE_CHECKING:
    from srl_trainers.rollout import Turn

__all__ = ["compute_returns", "counterfactual_baseline", "grpo_advantages", "ppo_advantages"]


def compute_returns(turns: list[Turn]) -> None:
    """Set every turn's ``ret``: the reward-to-go of its (copy, agent), undiscounted."""
    by_traj: dict[tuple[int, str], list[Turn]] = defaultdict(list)
    for t in turns:
        by_traj[(t.copy, t.agent)].append(t)
    for traj in by_traj.values():
        running = 0.0
        for t in sorted(traj, key=lambda t: t.round, reverse=True):
            running += t.reward
            t.ret = running


def grpo_advantages(
    samples: list[Turn], *, counterfactual: bool = False, scale_by_std: bool = True
) -> torch.Tensor:
    """GRPO advantages of ``samples``: each return relative to its group of (episode, GRPO
    group, agent, round), or with ``counterfactual`` to each turn's ``baseline`` where it has
    one (``group_advantages``)."""
    keys: dict[tuple[int, int, str, int], int] = {}
    ids = [keys.setdefault((t.episode, t.group, t.agent, t.round), len(keys)) for t in samples]
    returns = torch.tensor([t.ret for t in samples], dtype=torch.float32)
    baselines = None
    if counterfactual:
        baselines = torch.tensor([t.baseline for t in samples], dtype=torch.float32)
    return group_advantages(
        returns,
        torch.tensor(ids, dtype=torch.long),
        scale_by_std=scale_by_std,
        baselines=baselines,
    )


def ppo_advantages(
    samples: list[Turn], values: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) of ``samples`` by GAE over each (episode, copy, agent)'s turns in
    round order, with ``values`` the value head's estimate per sample."""
    adv = torch.zeros(len(samples))
    ret = torch.zeros(len(samples))
    by_traj: dict[tuple[int, int, str], list[int]] = defaultdict(list)
    for i, t in enumerate(samples):
        by_traj[(t.episode, t.copy, t.agent)].append(i)
    for idx in by_traj.values():
        idx.sort(key=lambda i: samples[i].round)
        a, r = compute_gae(
            [samples[i].reward for i in idx],
            [float(values[i]) for i in idx],
            gamma=gamma,
            lam=lam,
        )
        adv[idx] = torch.as_tensor(a, dtype=torch.float32)
        ret[idx] = torch.as_tensor(r, dtype=torch.float32)
    return adv, ret


def counterfactual_baseline(
    env_before: Any,
    joint_action: dict[str, Any],
    agent: str,
    alternatives: list[Any],
    reward_of: Callable[[Any, float, dict[str, Any]], float],
) -> float:
    """The mean reward ``agent`` would have got playing each of ``alternatives`` instead of
    its own action, the other agents' actions in ``joint_action`` unchanged: each distinct
    alternative is replayed once on a deep copy of ``env_before`` (the env just before the
    step). ``reward_of(action, env_reward, info)`` turns a replay's env reward into the
    credited reward. NaN without alternatives.

    With the alternatives drawn from the agent's policy for the same prompt (its answers in
    the other copies of a GRPO group), ``reward - baseline`` credits the agent for what its
    own answer changed, not for what its teammates did: the sampled form of COMA's
    counterfactual baseline. It is exact for a step that ends the game; later rounds would
    need more than one step replayed, so the trainer uses it for such steps only.
    """
    if not alternatives:
        return math.nan
    replayed: dict[str, float] = {}
    total = 0.0
    shared = _fixed_parts(env_before)
    for action in alternatives:
        key = repr(action)
        if key not in replayed:
            env = deepcopy(env_before, dict(shared))
            _, rewards, _, _, infos = env.step({**joint_action, agent: action})
            replayed[key] = reward_of(action, rewards[agent], infos[agent])
        total += replayed[key]
    return total / len(alternatives)


def _fixed_parts(env: Any) -> dict[int, Any]:
    """A deepcopy memo that makes a replay's copy of ``env`` share its spaces: the attributes
    that hold gymnasium spaces (a space, or a dict of them per agent), which a step never
    changes. They were 88% of the time of a team battle copy (1.7 ms each, 232 per preset
    rollout); the replays only step their copy."""
    from gymnasium import spaces

    memo: dict[int, Any] = {}
    for value in vars(env).values():
        if isinstance(value, spaces.Space) or (
            isinstance(value, dict)
            and value
            and all(isinstance(v, spaces.Space) for v in value.values())
        ):
            memo[id(value)] = value
    return memo
