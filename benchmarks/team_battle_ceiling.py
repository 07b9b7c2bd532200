"""What one fixed team answer can win against each scripted team in 4v4 team battle.

    python -m benchmarks.team_battle_ceiling             # 4,000 games per scripted team
    python -m benchmarks.team_battle_ceiling --games 500 --seed 1

Greedy decoding of the preset's one-round game is one fixed answer per agent: the round-1
prompt does not depend on the seed, so a greedy team puts the same team totals on the five
fields in every game. Against the equal split (8 a field) that wins or draws every game;
against the ``concentrate`` and ``random`` teams, which draw their allocations anew each
game, it wins a share that no training can raise above the best fixed totals' share. This
script measures that ceiling with the env's own bots on the env's own prompt: every team
total of 40 troops (sorted: the bots treat the fields alike), against the same sampled blue
teams, by the env's rule (more troops take a field, a tie takes nobody, more fields win).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from srl_envs.team_battle import TeamBattleEnv
from srl_envs.team_battle.bots import BOTS, read_game

# the untrained team's greedy answer: four times the prompt's example 3,3,2,1,1
UNTRAINED = (12, 12, 8, 4, 4)
# the roles a team of separate slots learns against the equal split (benchmarks/RESULTS.md,
# section 1): three times 3,3,2,1,1 and once 3,3,4,1,1, scaled down to 3,2,3,1,1
ROLES = (12, 11, 9, 4, 4)


def blue_totals(bot: str, games: int, seed: int) -> np.ndarray:
    """[games, fields] team totals of four ``bot`` players on the preset's round-1 prompt."""
    env = TeamBattleEnv(message_max_chars=0)
    obs, _ = env.reset(seed=seed)
    prompt = obs["blue_0"]
    _, fields = read_game(prompt)
    players = [BOTS[bot](seed=seed * 4 + i) for i in range(4)]
    totals = np.zeros((games, fields), dtype=np.int64)
    for g in range(games):
        for p in players:
            troops = p.act(prompt).split(":", 1)[1]
            totals[g] += np.array([int(t) for t in troops.split(",")])
    return totals


def team_totals(troops: int, fields: int) -> np.ndarray:
    """Every way to put ``troops`` on ``fields`` fields, largest first (non-increasing)."""
    out: list[tuple[int, ...]] = []

    def fill(prefix: tuple[int, ...], left: int, cap: int) -> None:
        if len(prefix) == fields - 1:
            if left <= cap:
                out.append((*prefix, left))
            return
        for t in range(min(left, cap), -1, -1):
            fill((*prefix, t), left - t, t)

    fill((), troops, troops)
    return np.array(out, dtype=np.int64)


def win_rates(red: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """Per red total [R, fields], its win rate over the blue games [G, fields]."""
    r, b = red[:, None, :], blue[None, :, :]
    won, lost = (r > b).sum(-1), (r < b).sum(-1)
    return (won > lost).mean(-1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.team_battle_ceiling")
    parser.add_argument("--games", type=int, default=4000, help="games per scripted team")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.games < 1:
        parser.error(f"--games {args.games}: use a whole number >= 1")
    red = team_totals(40, 5)
    rates = {bot: win_rates(red, blue_totals(bot, args.games, args.seed)) for bot in BOTS}
    untrained = int(np.flatnonzero((red == UNTRAINED).all(1))[0])
    roles = int(np.flatnonzero((red == sorted(ROLES, reverse=True)).all(1))[0])
    print(
        f"team battle: win rate of a fixed red team total (40 troops) against each scripted "
        f"team (untrained greedy {UNTRAINED}, learned roles {ROLES}), {args.games} games each, seed {args.seed}; {len(red)} totals tried"
    )
    print(
        f"  {'blue team':<12} {'untrained greedy':>17} {'learned roles':>14} {'best fixed':>11}"
        "  best totals"
    )
    for bot, rate in rates.items():
        best = int(rate.argmax())
        print(
            f"  {bot:<12} {rate[untrained]:>17.3f} {rate[roles]:>14.3f} {rate[best]:>11.3f}  "
            f"{tuple(red[best].tolist())}"
        )
    both = rates["concentrate"] + rates["random"]
    best = int(both.argmax())
    print(
        f"  best against concentrate and random together: {tuple(red[best].tolist())}: "
        + ", ".join(f"{bot} {rates[bot][best]:.3f}" for bot in BOTS)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
