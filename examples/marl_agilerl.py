"""Train MADDPG on the commons with AgileRL (centralised critics, decentralised actors).

AgileRL's MADDPG gives each group of agents (``player_0 .. player_3`` are one group, so
they share an actor and a critic) a critic that sees every agent's observation and
action, trained from a replay buffer; ``train_multi_agent_off_policy`` is AgileRL's own
training loop, run here with a population of one and no hyperparameter evolution. The env
runs in structured mode; AgileRL's batched actions arrive as 1-element arrays, which the
env casts (``srl_envs.structured.cast_action``). AgileRL's MADDPG acts in ``Discrete`` and
``Box`` spaces only, so this example plays the commons (``Discrete`` harvests), not team
battle's ``MultiDiscrete`` troops. Install the libraries with ``pip install -e .[marl]``
and then ``pip install --no-deps agilerl==2.58.0`` (AgileRL pins older pettingzoo and
tensordict releases than torchrl's, yet runs with them; see setup.cfg).

Run from the repository root::

    python -m examples.marl_agilerl                              # commons, cooperation 1.0
    python -m examples.marl_agilerl --cooperation-level 0.6      # the env's default level

It prints the trained actors' score against random play (see ``examples/marl_common``:
the agents' summed raw score per episode, over 20 seeded evaluation episodes; 1.0 per
round is the sustainable pace, so 10 is a sustainable 10-round game).

Measured on this project's 2-core CPU machine (default 20,000 steps, seed 0, 69 and 79 s
of training, one thread):

* ``python -m examples.marl_agilerl``: trained 8.81, random 4.76;
* ``python -m examples.marl_agilerl --cooperation-level 0.6``: trained 8.76, random 4.76.

Unlike shared-policy PPO (``examples/marl_sb3.py``: 1.92 at cooperation 0.6), MADDPG's
centralised critics keep the lake alive at the env's default cooperation level too.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from agilerl.algorithms import MADDPG
from agilerl.components.replay_buffer import ReplayBuffer
from agilerl.training.train_multi_agent_off_policy import train_multi_agent_off_policy

import srl_envs
from examples.marl_common import make_parser as common_parser
from examples.marl_common import score
from srl_trainers.cli import ArgumentParser


@dataclass
class TrainResult:
    agent: MADDPG
    trained: float  # the trained actors' evaluation score
    random: float  # random play's score on the same seeds
    initial_parameters: dict[str, torch.Tensor]
    seconds: float  # training time

    def parameters(self) -> dict[str, torch.Tensor]:
        nets = {"actors": self.agent.actors, "critics": self.agent.critics}
        return {f"{n}.{k}": v for n, m in nets.items() for k, v in m.state_dict().items()}

    def changed(self) -> list[str]:
        """The names of the actor and critic parameters that training moved."""
        now = self.parameters()
        return [k for k, v in self.initial_parameters.items() if not torch.equal(v, now[k])]


def train(
    env_id: str = "srl/coop_compete-v0",
    steps: int = 20_000,
    seed: int = 0,
    eval_episodes: int = 20,
    log: bool = True,
    **env_kwargs,
) -> TrainResult:
    """MADDPG for ``steps`` env steps (every agent acts in each)."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # AgileRL samples its replay batches with numpy

    def make():
        return srl_envs.make(env_id, action_mode="structured", **env_kwargs)

    env = make()
    agents = env.possible_agents
    agent = MADDPG(
        observation_spaces=[env.observation_space(a) for a in agents],
        action_spaces=[env.action_space(a) for a in agents],
        agent_ids=agents,
        batch_size=128,
        lr_actor=1e-3,
        lr_critic=1e-3,
        learn_step=20,
        gamma=0.95,
        tau=0.01,
        net_config={"encoder_config": {"hidden_size": [64, 64]}},
    )
    result = TrainResult(agent, float("nan"), float("nan"), {}, 0.0)
    result.initial_parameters = {k: v.clone() for k, v in result.parameters().items()}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="agilerl")
        population, _ = train_multi_agent_off_policy(
            env,
            env_id,
            "MADDPG",
            [agent],
            ReplayBuffer(max_size=100_000),
            max_steps=steps,
            evo_steps=max(1, steps // 10),
            verbose=False,
        )
    result.seconds = time.perf_counter() - start
    result.agent = population[0]
    result.agent.set_training_mode(False)  # no exploration noise

    def policy(observations):
        actions, _ = result.agent.get_action(observations)
        return actions

    result.trained = score(make(), policy, eval_episodes, seed)
    result.random = score(make(), None, eval_episodes, seed)
    if log:
        print(
            f"{env_id} {env_kwargs}: {steps} steps in {result.seconds:.0f} s; score over "
            f"{eval_episodes} episodes: trained {result.trained:.2f}, random {result.random:.2f}"
        )
    return result


def make_parser() -> ArgumentParser:
    parser = common_parser("python -m examples.marl_agilerl", "MADDPG (AgileRL)")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps of training")
    return parser


def main(argv: list[str] | None = None) -> TrainResult:
    parser = make_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny networks: one thread is fastest
    try:
        srl_envs.make("srl/coop_compete-v0", cooperation_level=args.cooperation_level)
    except ValueError as exc:  # a bad value: one line and exit code 2
        parser.error(str(exc))
    return train(
        steps=args.steps,
        seed=args.seed,
        eval_episodes=args.eval_episodes,
        cooperation_level=args.cooperation_level,
    )


if __name__ == "__main__":
    main()
