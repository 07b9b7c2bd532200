"""Env throughput: agent-steps per second of every registered env, in both action modes,
side by side with PettingZoo's rock-paper-scissors (``rps_v2``, parallel) as a reference.

Run from the repository root (one process, one core)::

    python -m benchmarks.env_throughput              # 2 s per row
    python -m benchmarks.env_throughput --quick      # 0.3 s per row
    python -m benchmarks.env_throughput --seconds 5

An agent-step is one agent's action going through ``env.step``. Text mode measures the
whole text path: the scripted bots' action strings are recorded from seeded games
*before* timing, and the timed loop replays them (``reset(seed)`` then ``step``), so it
includes parsing, the game rules, reward mixing and rendering every agent's next prompt.
Structured mode replays actions sampled from the action spaces beforehand. Each env runs
with its default arguments. The reference needs ``pettingzoo[classic]`` (pygame). The issue's target is >= 10,000 agent-steps/s in text mode.
"""

from __future__ import annotations

import argparse
import os
import time
from itertools import cycle

import srl_envs
from srl_envs.staged import StagedEnv

NUM_RECORDED_EPISODES = 4
TARGET_TEXT_STEPS_PER_S = 10_000


def record_text_episodes(env_id: str) -> list[tuple[int, list[dict[str, str]]]]:
    """``(seed, per-round actions)`` of a few seeded games played by the scripted bots."""
    env = srl_envs.make(env_id)
    bot_env = env.base_id if isinstance(env, StagedEnv) else env_id
    kinds = sorted(srl_envs.spec(bot_env).bots)
    episodes = []
    for seed in range(NUM_RECORDED_EPISODES):
        bots = {
            a: srl_envs.make_bot(bot_env, kinds[(i + seed) % len(kinds)], seed=seed * 100 + i)
            for i, a in enumerate(env.possible_agents)
        }
        observations, _ = env.reset(seed=seed)
        rounds = []
        while env.agents:
            actions = {a: bots[a].act(observations[a]) for a in env.agents}
            rounds.append(actions)
            observations, *_ = env.step(actions)
        episodes.append((seed, rounds))
    return episodes


def sampled_episodes(env, num_rounds: int = 64) -> list[tuple[int, list[dict]]]:
    """Pre-sampled structured actions, ``num_rounds`` rounds per recorded episode."""
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(i)
    return [
        (
            seed,
            [
                {a: env.action_space(a).sample() for a in env.possible_agents}
                for _ in range(num_rounds)
            ],
        )
        for seed in range(NUM_RECORDED_EPISODES)
    ]


def measure(env, episodes: list[tuple[int, list[dict]]], seconds: float) -> float:
    """Agent-steps per second replaying ``episodes`` on ``env`` for about ``seconds``."""
    agent_steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    for seed, rounds in cycle(episodes):
        env.reset(seed=seed)
        t = 0
        while env.agents:
            actions = rounds[t % len(rounds)]
            agent_steps += len(env.agents)
            env.step({a: actions[a] for a in env.agents})
            t += 1
        if time.perf_counter() >= deadline:
            break
    return agent_steps / (time.perf_counter() - start)


def reference_env():
    """PettingZoo's rock-paper-scissors, parallel version (its module needs pygame)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        from pettingzoo.classic import rps_v2
    except ModuleNotFoundError as exc:
        raise SystemExit(
            f"the reference env needs {exc.name}: pip install 'pettingzoo[classic]'"
        ) from exc
    return rps_v2.parallel_env()


def rows(seconds: float) -> list[tuple[str, str, float]]:
    reference = reference_env()
    table = [
        (
            "pettingzoo rps_v2",
            "structured",
            measure(reference, sampled_episodes(reference), seconds),
        )
    ]
    for env_id in srl_envs.list_envs():
        text_env = srl_envs.make(env_id)
        table.append((env_id, "text", measure(text_env, record_text_episodes(env_id), seconds)))
        structured = srl_envs.make(env_id, action_mode="structured")
        table.append(
            (env_id, "structured", measure(structured, sampled_episodes(structured), seconds))
        )
    return table


def format_table(table: list[tuple[str, str, float]]) -> str:
    reference = table[0][2]
    lines = [f"{'env':<24} {'mode':<11} {'agent-steps/s':>14} {'vs rps_v2':>10}"]
    for name, mode, rate in table:
        lines.append(f"{name:<24} {mode:<11} {rate:>14,.0f} {rate / reference:>9.2f}x")
    text_rates = [rate for name, mode, rate in table[1:] if mode == "text"]
    verdict = "met" if min(text_rates) >= TARGET_TEXT_STEPS_PER_S else "NOT met"
    lines.append(f"target >= {TARGET_TEXT_STEPS_PER_S:,} agent-steps/s in text mode: {verdict}")
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per row")
    parser.add_argument("--quick", action="store_true", help="0.3 s per row (smoke run)")
    return parser


def main(argv: list[str] | None = None) -> str:
    args = make_parser().parse_args(argv)
    if args.seconds <= 0:
        raise SystemExit(f"--seconds must be > 0, got {args.seconds}")
    table = format_table(rows(0.3 if args.quick else args.seconds))
    print(table)
    return table


if __name__ == "__main__":
    main()
