"""Named configurations: settings measured by a benchmark, in one place.

A preset is a mapping of :class:`~srl_trainers.config.MultiModelConfig` fields. It is the one
source of the benchmark that measured it (``benchmarks/learning_team_battle.py`` starts from
``TEAM_BATTLE``), of the YAML examples (``preset: team_battle`` in a config file, further keys
override it), and of the command line's default run (``python -m srl_trainers.run`` with no
``--config`` and no ``--env`` trains ``team_battle``; ``--preset NAME`` picks one,
``--preset none`` starts from the bare ``MultiModelConfig`` defaults, Core SRL's).

What each one learns on a CPU is in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

__all__ = ["PRESETS", "TEAM_BATTLE", "preset"]

# 4v4 team battle: four SmolLM2 LoRA slots (red) against the scripted equal-split team.
# One round per game (clean credit, short prompts), the action keyword prefilled, sampling at
# T=1 for exploration, a high LoRA learning rate, one GRPO group of 8 copies per update.
# - Each slot learns on its own agent's turns (asynchronous, distinct inits), not as one
#   shared policy (synchronized): the four prompts differ only in the agent's name, so a
#   shared policy learns one mixed strategy (the example 3,3,2,1,1 or a variant with more on
#   field 3, about half each: four independent draws rarely all agree, and any mix wins) and
#   greedy decoding, one answer for all four, draws every game. Separate slots settle into
#   roles (one writes the variant, three the example), which wins greedily too.
# - Advantages are NOT divided by the group's std (scale_rewards=False, as in Dr. GRPO): with
#   the std, a group whose games all end alike turns the format penalty into unit-size
#   advantages for the prompt's example answer, and the policy locks onto it.
# - A turn is compared with the mean reward its player would have got with its groupmates'
#   answers, the other players' kept (baseline="counterfactual"), not with the group's mean
#   return: four players share one team reward, and this credits each one's own answer.
# - The untrained model writes the prompt's example digits with probability 0.54-0.93; a
#   policy that learns the format by copying them locks onto a sure draw. Three terms keep
#   the answer's numbers spread: the entropy among them held near 0.4 nats by an adaptive
#   bonus, a forward KL from the base at those numbers (number_kl_coef), and a small KL to
#   the base (beta).
# - A 0.5 format penalty pays for the format directly; it is learned within about 10 updates.
# - The untrained and the trained team play 32 held-out games at T = 0.7 and greedily
#   (eval_episodes, eval_temperature, eval_greedy), and so does the team every 10 episodes
#   (eval_interval); the checkpoint of the best greedy evaluation is kept
#   (keep_best_checkpoint): a slot's greedy answer sits near a tie between two numbers and
#   can flip within ten updates (one seed won every greedy game at episodes 30 and 40 and
#   drew them all at 50).
TEAM_BATTLE: dict[str, Any] = dict(
    env="team_battle",
    # one round per game: no teammate messages to read, so the prompt ends with the answer line
    env_kwargs={"message_max_chars": 0, "format_penalty": 0.5},
    num_models=4,
    opponent_policy="heuristic",
    training_mode="cooperative",
    cooperation_strength=1.0,
    weight_update_strategy="asynchronous",
    episode_length=1,
    batch_size=8,
    group_size=8,
    learning_rate=1e-3,
    beta=0.04,
    scale_rewards=False,
    baseline="counterfactual",
    entropy_scope="numbers",
    entropy_target=0.4,
    entropy_coef_step=0.005,
    number_kl_coef=0.03,
    temperature=1.0,
    max_new_tokens=12,
    response_prefix="ALLOCATE:",
    max_episodes=40,
    save_interval=10,
    log_metrics_interval=1,
    eval_episodes=32,
    eval_temperature=0.7,
    eval_greedy=True,
    eval_interval=10,
    keep_best_checkpoint=True,
)

PRESETS: dict[str, dict[str, Any]] = {"team_battle": TEAM_BATTLE}


def preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s fields; a ConfigError names the presets that exist."""
    from srl_trainers.config import ConfigError

    if name not in PRESETS:
        raise ConfigError(
            f"preset={name!r} does not exist; presets: {', '.join(sorted(PRESETS))} "
            "(or none: the MultiModelConfig defaults)"
        )
    return deepcopy(PRESETS[name])
