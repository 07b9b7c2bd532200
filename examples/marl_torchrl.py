"""Train MAPPO on an srl env in structured mode with TorchRL (no LLM involved).

Run from the repository root::

    python -m examples.marl_torchrl                                 # commons, 20 iterations
    python -m examples.marl_torchrl --env srl/team_battle-v0 --iterations 10

The env is built with ``action_mode="structured"`` (``Box`` observations,
``Discrete``/``MultiDiscrete`` actions) and wrapped by TorchRL's ``PettingZooWrapper``
as a parallel env. The wrapper groups agents by name (``player_0..`` -> group
``player``; ``red_*`` / ``blue_*`` -> groups ``red`` and ``blue``), so each group gets
one parameter-shared actor (decentralised, sees its own observation) and one centralised
critic (sees the whole group's observations): MAPPO. ``Discrete`` actions (the commons)
use a categorical distribution; ``MultiDiscrete`` actions (team battle, one troop count
per field) come out of the wrapper as a ``[fields]`` vector of categoricals and use a
product of independent categoricals. ``reset()`` of our envs returns empty infos, so the
wrapper builds no info specs (the structured-mode step infos are numbers only anyway).
The critics here read the group's observations; ``env.state()`` is the game's global
state for critics that want it.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import RewardSum, TransformedEnv
from torchrl.envs.libs.pettingzoo import PettingZooWrapper
from torchrl.modules import MultiAgentMLP, ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, ValueEstimators

import srl_envs


class IndependentCategorical(torch.distributions.Independent):
    """One categorical per field (the last-but-one dim), their log-probs summed."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__(torch.distributions.Categorical(logits=logits), 1)


@dataclass
class TrainResult:
    returns: list[float]  # mean episode return per iteration (over agents and episodes)
    policy: TensorDictSequential
    critics: dict[str, TensorDictModule]
    initial_parameters: dict[str, torch.Tensor]  # name -> value before training
    final_parameters: dict[str, torch.Tensor]  # name -> value after training

    def relative_change(self) -> float:
        """``||theta - theta_0|| / ||theta_0||`` over every actor and critic parameter."""
        diff = sum(
            (self.final_parameters[k] - v).pow(2).sum() for k, v in self.initial_parameters.items()
        )
        norm = sum(v.pow(2).sum() for v in self.initial_parameters.values())
        return float((diff / norm).sqrt())


def make_env(env_id: str, seed: int, **env_kwargs) -> TransformedEnv:
    env = srl_envs.make(env_id, action_mode="structured", **env_kwargs)
    wrapped = PettingZooWrapper(env=env, categorical_actions=True, seed=seed)
    groups = list(wrapped.group_map)
    return TransformedEnv(
        wrapped,
        RewardSum(
            in_keys=[(g, "reward") for g in groups],
            out_keys=[(g, "episode_reward") for g in groups],
        ),
    )


def make_group_modules(env: TransformedEnv, group: str, hidden: int):
    """The actor and the centralised critic of one agent group."""
    n_agents = len(env.group_map[group])
    obs_dim = env.observation_spec[group, "observation"].shape[-1]
    action_spec = env.full_action_spec[group, "action"]
    n_choices = action_spec.space.n
    fields = action_spec.shape[1:]  # () for Discrete, (K,) for MultiDiscrete
    head = MultiAgentMLP(
        n_agent_inputs=obs_dim,
        n_agent_outputs=n_choices * max(1, int(torch.Size(fields).numel())),
        n_agents=n_agents,
        centralized=False,
        share_params=True,
        depth=2,
        num_cells=hidden,
    )
    logits_net = nn.Sequential(head, nn.Unflatten(-1, (*fields, n_choices)))
    actor = ProbabilisticActor(
        TensorDictModule(
            logits_net, in_keys=[(group, "observation")], out_keys=[(group, "logits")]
        ),
        in_keys={"logits": (group, "logits")},
        out_keys=[(group, "action")],
        spec=env.full_action_spec[group, "action"],
        distribution_class=IndependentCategorical if fields else torch.distributions.Categorical,
        return_log_prob=True,
        log_prob_key=(group, "action_log_prob"),
    )
    critic_net = MultiAgentMLP(
        n_agent_inputs=obs_dim,
        n_agent_outputs=1,
        n_agents=n_agents,
        centralized=True,
        share_params=True,
        depth=2,
        num_cells=hidden,
    )
    critic = TensorDictModule(
        critic_net, in_keys=[(group, "observation")], out_keys=[(group, "state_value")]
    )
    return actor, critic


def train(
    env_id: str = "srl/coop_compete-v0",
    iterations: int = 20,
    frames_per_batch: int = 400,
    epochs: int = 4,
    minibatch_size: int = 100,
    lr: float = 3e-4,
    hidden: int = 64,
    seed: int = 0,
    log: bool = True,
    **env_kwargs,
) -> TrainResult:
    """MAPPO for ``iterations`` collect-and-update rounds; returns the per-iteration returns."""
    torch.manual_seed(seed)
    env = make_env(env_id, seed, **env_kwargs)
    groups = list(env.group_map)
    actors, critics, losses = {}, {}, {}
    for group in groups:
        actors[group], critics[group] = make_group_modules(env, group, hidden)
        loss = ClipPPOLoss(
            actor_network=actors[group],
            critic_network=critics[group],
            clip_epsilon=0.2,
            entropy_coeff=0.01,
            normalize_advantage=True,
            normalize_advantage_exclude_dims=(-2,),  # the agent dim: normalize per agent
        )
        loss.set_keys(
            reward=(group, "reward"),
            action=(group, "action"),
            sample_log_prob=(group, "action_log_prob"),
            value=(group, "state_value"),
            advantage=(group, "advantage"),
            value_target=(group, "value_target"),
            done=(group, "done"),
            terminated=(group, "terminated"),
        )
        loss.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
        losses[group] = loss
    policy = TensorDictSequential(*actors.values())
    named = {
        f"{group}.{name}": p
        for group, loss in losses.items()
        for name, p in loss.named_parameters()
    }
    params = list(named.values())
    initial = {k: p.detach().clone() for k, p in named.items()}
    optimizer = torch.optim.Adam(params, lr=lr)
    collector = Collector(
        env,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=frames_per_batch * iterations,
        auto_register_policy_transforms=False,  # the policy is stateless
    )
    returns = []
    for iteration, batch in enumerate(collector):
        for loss in losses.values():
            with torch.no_grad():
                loss.value_estimator(
                    batch,
                    params=loss.critic_network_params,
                    target_params=loss.target_critic_network_params,
                )
        flat = batch.reshape(-1)
        for _ in range(epochs):
            for idx in torch.randperm(flat.shape[0]).split(minibatch_size):
                minibatch = flat[idx]
                total = 0.0
                for loss in losses.values():
                    out = loss(minibatch)
                    total = total + out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optimizer.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
        collector.update_policy_weights_()
        done = batch["next", "done"].squeeze(-1)
        episode_returns = torch.cat(
            [batch["next", g, "episode_reward"][done].flatten() for g in groups]
        )
        mean_return = episode_returns.mean().item() if episode_returns.numel() else float("nan")
        returns.append(mean_return)
        if log:
            print(
                f"iteration {iteration:3d}  episodes {int(done.sum()):4d}  "
                f"mean episode return {mean_return:8.3f}"
            )
    collector.shutdown()
    result = TrainResult(
        returns=returns,
        policy=policy,
        critics=critics,
        initial_parameters=initial,
        final_parameters={k: p.detach().clone() for k, p in named.items()},
    )
    if log:
        print(f"relative parameter change: {result.relative_change():.4f}")
    return result


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="MAPPO with TorchRL on an srl env")
    parser.add_argument("--env", default="srl/coop_compete-v0", help="registered env id")
    parser.add_argument("--iterations", type=int, default=20, help="collect/update rounds")
    parser.add_argument("--frames-per-batch", type=int, default=400, help="env steps per round")
    parser.add_argument("--seed", type=int, default=0, help="torch and env seed")
    return parser


def main(argv: list[str] | None = None) -> TrainResult:
    args = make_parser().parse_args(argv)
    torch.set_num_threads(1)  # tiny networks: one thread is fastest (no oversubscription)
    # The wrapper warns that it is tested against PettingZoo 1.24.3 only; 1.27 works here.
    warnings.filterwarnings("ignore", message="PettingZoo in TorchRL is tested")
    return train(
        args.env, iterations=args.iterations, frames_per_batch=args.frames_per_batch, seed=args.seed
    )


if __name__ == "__main__":
    main()
