"""The RL algorithms as pure tensor functions: GRPO (TRL 1.16's loss) and turn-level PPO."""

from srl_trainers.algorithms.grpo import (
    GRPO_LOSS_TYPES,
    completion_logps,
    group_advantages,
    grpo_loss,
)
from srl_trainers.algorithms.ppo import ValueHead, compute_gae, ppo_loss

__all__ = [
    "GRPO_LOSS_TYPES",
    "ValueHead",
    "completion_logps",
    "compute_gae",
    "group_advantages",
    "grpo_loss",
    "ppo_loss",
]
