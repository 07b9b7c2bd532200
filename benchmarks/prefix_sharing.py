"""What prefix sharing shares in each env: the prompt tokens of a GRPO group, round by round.

    python -m benchmarks.prefix_sharing                  # the embedded SmolLM2 tokenizer
    python -m benchmarks.prefix_sharing --copies 8 --rounds 3

For each env, ``--copies`` copies are reset with ONE seed (a GRPO group) and played for
``--rounds`` rounds by the env's ``random`` bot, each copy's bot seeded apart (so the copies'
histories diverge from round 2 on, as sampled LLM answers do). Every acting agent's prompt is
``ModelPool.format_prompts`` of its observation with the embedded model, what the trainer
gives it (before the response prefix's few tokens).
The rows of a round (copies x agents, each agent its own adapter, as with one slot per agent)
go through :func:`srl_trainers.prefix.plan_prefixes`, the plan generation and training use.

Printed per env and round: rows, prompt tokens (mean), the padded prompt tokens the plain
layout puts through the model, those the shared layout puts through (its prefixes once, then
every row's own part padded to the longest), and the share saved. No model forward runs.
"""

from __future__ import annotations

import argparse
import statistics

import srl_envs
from srl_trainers.prefix import plan_prefixes

ENVS = {
    "srl/team_battle-v0": {"message_max_chars": 0},  # the preset's: one round, no chat
    "srl/team_battle-v0 (chat)": {},
    "srl/coop_compete-v0": {},
    "srl/staged-v0": {"base": "coop_compete"},
    "srl/pz-tictactoe-v3": {},
    "srl/pz-connect_four-v3": {},
}


def rows_of_round(name: str, kwargs: dict, copies: int, rounds: int, seed: int, pool):
    """Per round: (prompts, keys) of every acting agent of every copy."""
    env_id = name.split(" ")[0]
    envs = [srl_envs.make(env_id, **kwargs) for _ in range(copies)]
    bots = [srl_envs.make_bot(env_id, "random", seed=seed * 1000 + c) for c in range(copies)]
    observations = [env.reset(seed=seed)[0] for env in envs]
    out = []
    for _ in range(rounds):
        prompts, keys = [], []
        actions = []
        for env, obs, bot in zip(envs, observations, bots):
            acting = [a for a in env.acting_agents if a in obs]
            prompts += pool.format_prompts([obs[a] for a in acting], None)
            keys += acting
            actions.append({agent: bot.act(obs[agent]) for agent in acting})
        if not prompts:
            break
        out.append((prompts, keys))
        observations = []
        for env, act in zip(envs, actions):
            if not env.agents:
                observations.append({})
                continue
            obs, *_ = env.step(act)
            observations.append(obs)
        if not any(env.agents for env in envs):
            break
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="env copies of one group (8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per env (3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from srl_trainers.models import ModelPool

    pool = ModelPool("embedded:smollm2", device="cpu")  # its prompts; no forward runs
    header = ("env", "round", "rows", "prompt", "plain", "shared", "saved")
    widths = (27, 6, 5, 7, 7, 7, 6)
    print(
        "".join(f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in enumerate(zip(header, widths)))
    )
    rows = []
    for name, kwargs in ENVS.items():
        for r, (prompts, keys) in enumerate(
            rows_of_round(name, kwargs, args.copies, args.rounds, args.seed, pool), start=1
        ):
            lengths = [len(p) for p in prompts]
            plain = len(prompts) * max(lengths)
            plan = plan_prefixes(prompts, keys)
            shared = plain if plan is None else plan.tokens(lengths)[1]
            row = {
                "env": name,
                "round": r,
                "rows": len(prompts),
                "prompt_tokens": statistics.mean(lengths),
                "plain": plain,
                "shared": shared,
                "saved": 1 - shared / plain,
            }
            rows.append(row)
            cells = (
                name,
                r,
                row["rows"],
                f"{row['prompt_tokens']:.0f}",
                plain,
                shared,
                f"{row['saved']:.0%}",
            )
            print(
                "".join(
                    f"{c!s:>{w}}" if i else f"{c!s:<{w}}"
                    for i, (c, w) in enumerate(zip(cells, widths))
                )
            )
    return rows


if __name__ == "__main__":
    main()
