"""Reward mixing shared by every game.

Each game reports a raw score per agent (``infos[agent]["raw_score"]``). This module turns
raw scores into rewards with one formula, so that cooperation means the same thing in
every environment and in the trainer's training modes.

Without teams, with ``m`` the mean raw score over agents, cooperation level ``c`` in
[0, 1] and competition intensity ``k >= 0``::

    r_i = c * m + (1 - c) * (1 + k) * (s_i - m)

* ``c = 1``: every agent gets the identical reward ``m`` (the group welfare per head).
* ``c = 0``: ``r_i = (1 + k) * (s_i - m)``, which sums to zero (zero-sum).
* in between: a linear interpolation of the two.

With teams, teammates always share one reward. With ``S_t`` the mean raw score of team
``t`` and ``M`` the mean of the team scores::

    r_i = c * S_t(i) + (1 - c) * (1 + k) * (S_t(i) - M)

so at ``c = 0`` the team rewards are zero-sum, at ``c = 1`` each team gets its own
score, and team games whose raw team scores are already zero-sum (team battle) stay
zero-sum at every ``c``. ``k`` only scales the competitive (zero-sum) part.
"""

from __future__ import annotations

from collections.abc import Mapping

from srl_envs.checks import check_float_range, check_unit_interval

__all__ = ["mix_rewards"]


def mix_rewards(
    scores: Mapping[str, float],
    cooperation_level: float,
    teams: Mapping[str, str] | None = None,
    competition_intensity: float = 0.0,
) -> dict[str, float]:
    """Mix raw per-agent scores into rewards (see the module docstring for the formula).

    Args:
        scores: raw score per agent.
        cooperation_level: ``c`` in [0, 1].
        teams: optional agent -> team id; teammates then share one reward.
        competition_intensity: ``k >= 0``, scales the zero-sum part.
    """
    c = check_unit_interval("cooperation_level", cooperation_level)
    k = check_float_range("competition_intensity", competition_intensity, 0.0)
    if not scores:
        return {}
    if teams is None:
        m = sum(scores.values()) / len(scores)
        return {a: c * m + (1.0 - c) * (1.0 + k) * (s - m) for a, s in scores.items()}
    members: dict[str, list[float]] = {}
    for agent, s in scores.items():
        members.setdefault(teams[agent], []).append(float(s))
    team_score = {t: sum(v) / len(v) for t, v in members.items()}
    big_m = sum(team_score.values()) / len(team_score)
    return {
        a: c * team_score[teams[a]] + (1.0 - c) * (1.0 + k) * (team_score[teams[a]] - big_m)
        for a in scores
    }
