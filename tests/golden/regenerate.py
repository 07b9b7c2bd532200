"""Regenerate the golden playthroughs (run from anywhere)::

    python tests/golden/regenerate.py

For every registered env (PettingZoo's games through the text bridge too: there only the
agent to move is prompted, the others wait) this plays one seeded game with the env's
scripted bots
(``srl_envs.make_bot``, one bot kind per agent in turn) and writes ``<name>.txt`` next to
this file: per round, every agent's prompt, its action text, the parsed action, the
invalid flag and reason, its reward and raw score. One action per game is replaced by
``INVALID_ACTION`` so that the invalid path is in every file. ``tests/envs/test_golden.py``
replays the games in memory and diffs them against the checked-in files: a change in
what an LLM agent sees or gets shows up as a text diff. Regenerate, read the diff, and
commit it together with the change (bumping the env version if rewards, observations or
termination changed).
"""

from __future__ import annotations

import sys
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent
_ROOT = GOLDEN_DIR.parents[1]
if str(_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(_ROOT))

import srl_envs  # noqa: E402
from srl_envs.staged import StagedEnv  # noqa: E402

SEED = 2024
INVALID_ACTION = "I would rather not answer in that format."
INVALID_ROUND = 1  # the last agent plays INVALID_ACTION in this round (every game has it)

# Small games keep the files readable; an env without a row plays with its defaults.
SETTINGS: dict[str, dict] = {
    "srl/coop_compete-v0": {"num_models": 3, "episode_length": 4},
    "srl/team_battle-v0": {"team_size": 2, "num_fields": 3, "episode_length": 3},
    "srl/staged-v0": {"num_models": 3, "warmup_episodes": 1, "episode_length": 3},
    "srl/pz-leduc_holdem-v4": {"fallback": "call"},  # the invalid answer calls: a longer hand
    "srl/pz-rps-v2": {"max_cycles": 3},
    # TextArena prompts hold the whole game so far: short games keep the files readable
    "srl/ta-prisoners_dilemma-v0": {"episode_length": 3},
    "srl/ta-tictactoe-v0": {"episode_length": 3},
}


def golden_path(env_id: str) -> Path:
    return GOLDEN_DIR / f"{srl_envs.spec(env_id).name}.txt"


def _block(title: str, text: str) -> list[str]:
    return [f"--- {title} ---", *str(text).split("\n")]


def playthrough(env_id: str) -> str:
    """The transcript of the seeded scripted game of ``env_id``."""
    settings = SETTINGS.get(env_id, {})
    env = srl_envs.make(env_id, **settings)
    bot_env = env.base_id if isinstance(env, StagedEnv) else env_id
    kinds = sorted(srl_envs.spec(bot_env).bots)
    bots = {
        agent: srl_envs.make_bot(bot_env, kinds[i % len(kinds)], seed=SEED + i)
        for i, agent in enumerate(env.possible_agents)
    }
    lines = [
        f"# Golden playthrough of {env_id}: regenerate with `python tests/golden/regenerate.py`",
        f"# settings: {settings}",
        f"# seed: {SEED}",
        "# bots: " + ", ".join(f"{a}={b.name}" for a, b in bots.items()),
        "",
    ]
    observations, _ = env.reset(seed=SEED)
    rnd = 0
    while env.agents:
        rnd += 1
        movers = list(env.acting_agents)  # a turn-based game: only the agent to move
        actions = {a: bots[a].act(observations[a]) for a in movers}
        if rnd == INVALID_ROUND:
            actions[movers[-1]] = INVALID_ACTION
        acting = list(env.agents)
        next_obs, rewards, terminations, truncations, infos = env.step(actions)
        for agent in acting:
            info = infos[agent]
            if agent not in actions:
                lines.append(f"=== round {rnd} / {agent} (waits) ===")
                lines.append(f"reward: {rewards[agent]:.6f}  raw: {info['raw_score']:.6f}")
                lines.append("")
                continue
            lines.append(f"=== round {rnd} / {agent} ===")
            lines += _block("observation", observations[agent])
            lines += _block("action", actions[agent])
            lines.append("--- result ---")
            lines.append(f"parsed: {info['action']!r}")
            reason = f" ({info['invalid_reason']})" if info["invalid_action"] else ""
            lines.append(f"invalid: {info['invalid_action']}{reason}")
            lines.append(f"reward: {rewards[agent]:.6f}  raw: {info['raw_score']:.6f}")
            if "stage" in info:
                lines.append(
                    f"stage: {info['stage']} {info['stage_name']}  warmup: {info['warmup']}"
                )
            lines.append("")
        ended = [a for a in acting if terminations[a] or truncations[a]]
        if ended:
            kind = "terminated" if terminations[ended[0]] else "truncated"
            lines.append(f"=== episode {kind} after round {rnd} ===")
            for agent in acting:
                lines.append(f"=== final observation / {agent} ===")
                lines += _block("observation", next_obs[agent])
            lines.append("")
        observations = next_obs
    return "\n".join(lines)


def main() -> None:
    for env_id in srl_envs.list_envs():
        path = golden_path(env_id)
        path.write_text(playthrough(env_id), encoding="utf-8", newline="\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
