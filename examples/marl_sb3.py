"""Train one shared PPO policy on an srl env with Stable-Baselines3 and SuperSuit.

This is PettingZoo's documented parameter-sharing path: SuperSuit turns the parallel env
into a vector env with one slot per agent (``pettingzoo_env_to_vec_env_v1``), stacks
copies of it (``concat_vec_envs_v1``) and SB3's PPO trains a single ``MlpPolicy`` on all
the slots. The env runs in structured mode (``Box`` observations, ``Discrete`` /
``MultiDiscrete`` actions). Install the libraries with ``pip install -e .[marl]``.

Run from the repository root::

    python -m examples.marl_sb3                                  # commons, cooperation 1.0
    python -m examples.marl_sb3 --cooperation-level 0.6          # the env's default level
    python -m examples.marl_sb3 --env srl/team_battle-v0 --eval-episodes 100

It prints the trained policy's score against random play (see ``examples/marl_common``:
the learners' summed raw score per episode, over 20 seeded evaluation episodes; in the
commons 1.0 per round is the sustainable pace, so 10 is a sustainable 10-round game).

Measured on this project's 2-core CPU machine (default 200,000 agent-steps, seed 0, 33 to
46 s of training each, one thread):

* ``python -m examples.marl_sb3``: trained 10.32, random 4.76;
* ``python -m examples.marl_sb3 --cooperation-level 0.6``: trained 1.92, random 4.76;
* ``python -m examples.marl_sb3 --env srl/team_battle-v0 --eval-episodes 100``: trained
  0.07, random 0.30 (red's score against a random blue team; 0 is an even match).

At the commons' default ``cooperation_level=0.6`` each agent keeps part of what its own
extra harvest brings, and the shared policy learns to take (nearly) the maximum: the lake
collapses in round 1 and the score falls below random play's. Paid the group's mean
(``cooperation_level=1.0``) it learns the sustainable harvest. In team battle the one
policy plays both teams against each other and, in this budget, does not learn to beat a
random team.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import supersuit as ss
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.utils import set_random_seed

import srl_envs
from examples.marl_common import make_parser as common_parser
from examples.marl_common import score
from srl_trainers.cli import ArgumentParser


@dataclass
class TrainResult:
    model: PPO
    trained: float  # the trained policy's evaluation score
    random: float  # random play's score on the same seeds
    initial_parameters: dict[str, torch.Tensor]
    seconds: float  # training time

    def changed(self) -> list[str]:
        """The names of the policy parameters that training moved."""
        now = self.model.policy.state_dict()
        return [k for k, v in self.initial_parameters.items() if not torch.equal(v, now[k])]


def train(
    env_id: str = "srl/coop_compete-v0",
    timesteps: int = 200_000,
    copies: int = 8,
    seed: int = 0,
    eval_episodes: int = 20,
    log: bool = True,
    **env_kwargs,
) -> TrainResult:
    """PPO with one policy shared by every agent for ``timesteps`` agent-steps."""
    set_random_seed(seed)  # SuperSuit's vector env takes no seed; the games have no chance

    def make():
        return srl_envs.make(env_id, action_mode="structured", **env_kwargs)

    vec = ss.pettingzoo_env_to_vec_env_v1(make())
    vec = ss.concat_vec_envs_v1(vec, copies, num_cpus=0, base_class="stable_baselines3")
    model = PPO(
        "MlpPolicy",
        vec,
        n_steps=128,
        batch_size=256,
        n_epochs=4,
        learning_rate=3e-4,
        ent_coef=0.01,
        policy_kwargs={"net_arch": [64, 64]},
        verbose=0,
    )
    initial = {k: v.clone() for k, v in model.policy.state_dict().items()}
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    seconds = time.perf_counter() - start
    vec.close()

    def policy(observations):
        agents = list(observations)
        actions, _ = model.predict(np.stack([observations[a] for a in agents]), deterministic=True)
        return dict(zip(agents, actions))

    result = TrainResult(
        model=model,
        trained=score(make(), policy, eval_episodes, seed),
        random=score(make(), None, eval_episodes, seed),
        initial_parameters=initial,
        seconds=seconds,
    )
    if log:
        print(
            f"{env_id} {env_kwargs}: {timesteps} agent-steps in {seconds:.0f} s; score over "
            f"{eval_episodes} episodes: trained {result.trained:.2f}, random {result.random:.2f}"
        )
    return result


def make_parser() -> ArgumentParser:
    parser = common_parser(
        "python -m examples.marl_sb3", "shared-policy PPO (SB3 + SuperSuit) on an srl env"
    )
    parser.add_argument("--env", default="srl/coop_compete-v0", help="registered env id")
    parser.add_argument("--timesteps", type=int, default=200_000, help="agent-steps of training")
    return parser


def main(argv: list[str] | None = None) -> TrainResult:
    parser = make_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny networks: one thread is fastest
    try:
        srl_envs.make(args.env, cooperation_level=args.cooperation_level)  # bad values: exit 2
    except ValueError as exc:
        parser.error(str(exc))
    return train(
        args.env,
        timesteps=args.timesteps,
        seed=args.seed,
        eval_episodes=args.eval_episodes,
        cooperation_level=args.cooperation_level,
    )


if __name__ == "__main__":
    main()
