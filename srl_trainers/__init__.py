"""srl_trainers: train populations of LLM policies (LoRA adapters) on srl_envs.

>>> from srl_trainers import MultiModelTrainer, MultiModelConfig, TrainingMode
>>> trainer = MultiModelTrainer(MultiModelConfig(env="team_battle", max_episodes=10))
>>> results = trainer.train_sync()          # or: await trainer.train()
"""

from __future__ import annotations

from typing import Any

from srl_envs import (
    create_multi_model_coop_compete_env,
    create_multi_model_staged_env,
    create_multi_model_team_battle,
)
from srl_trainers.checkpoint import list_available_checkpoints, load_checkpoint_metadata
from srl_trainers.config import ConfigError, MultiModelConfig, TrainingMode, WeightUpdateStrategy
from srl_trainers.monitor import UnifiedMonitor, create_unified_monitor
from srl_trainers.trainer import MultiModelTrainer

__all__ = [
    "ConfigError",
    "MultiModelConfig",
    "MultiModelTrainer",
    "TrainingMode",
    "UnifiedMonitor",
    "WeightUpdateStrategy",
    "create_competitive_multimodel_trainer",
    "create_cooperative_multimodel_trainer",
    "create_multi_model_coop_compete_env",
    "create_multi_model_staged_env",
    "create_multi_model_team_battle",
    "create_multimodel_trainer",
    "create_unified_monitor",
    "list_available_checkpoints",
    "load_checkpoint_metadata",
    "quick_start_multimodel_training",
]


def create_multimodel_trainer(
    num_models: int = 4,
    training_mode: TrainingMode | str = TrainingMode.MIXED,
    model_types: list[str] | None = None,
    **config_fields: Any,
) -> MultiModelTrainer:
    """A trainer for ``num_models`` slots in ``training_mode`` (other fields as keywords)."""
    if model_types is not None:
        config_fields["model_types"] = model_types
    config = MultiModelConfig(num_models=num_models, training_mode=training_mode, **config_fields)
    return MultiModelTrainer(config)


def create_cooperative_multimodel_trainer(num_models: int = 4, **config_fields: Any) -> MultiModelTrainer:
    """Cooperative mode with SYNCHRONIZED updates (gradients averaged across the group)."""
    config_fields.setdefault("weight_update_strategy", WeightUpdateStrategy.SYNCHRONIZED)
    config_fields.setdefault("cooperation_strength", 0.8)
    return create_multimodel_trainer(num_models, TrainingMode.COOPERATIVE, **config_fields)


def create_competitive_multimodel_trainer(num_models: int = 4, **config_fields: Any) -> MultiModelTrainer:
    """Competitive mode with SELECTIVE updates (only the top performers step)."""
    config_fields.setdefault("weight_update_strategy", WeightUpdateStrategy.SELECTIVE)
    config_fields.setdefault("competition_intensity", 0.7)
    return create_multimodel_trainer(num_models, TrainingMode.COMPETITIVE, **config_fields)


async def quick_start_multimodel_training(
    num_models: int = 4, max_episodes: int = 100, **config_fields: Any
) -> dict[str, Any]:
    """Train a mixed-mode population with defaults and return the results."""
    trainer = create_multimodel_trainer(num_models, max_episodes=max_episodes, **config_fields)
    try:
        return await trainer.train()
    finally:
        await trainer.shutdown()
