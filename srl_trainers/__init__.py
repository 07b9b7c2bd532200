"""srl_trainers: train populations of LLM policies (LoRA adapters) on srl_envs.

>>> from srl_trainers import MultiModelTrainer, MultiModelConfig, TrainingMode
>>> trainer = MultiModelTrainer(MultiModelConfig(env="team_battle", max_episodes=10))
>>> results = trainer.train_sync()          # or: await trainer.train()
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# The tokenizers library's thread pool, once used by a batched call, leaves threads that slow
# every later generate call down (up to 20x measured on 2 cores). Users can still opt in.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from srl_trainers.config import ConfigError, MultiModelConfig, TrainingMode, WeightUpdateStrategy
from srl_trainers.lora_scheduler import create_distributed_lora_scheduler

if TYPE_CHECKING:
    from srl_trainers.trainer import MultiModelTrainer

# Heavy modules (torch, transformers) load on first use, so `python -m srl_trainers.run
# --help` and `import srl_trainers.config` stay fast.
_LAZY = {
    "MultiModelTrainer": "srl_trainers.trainer",
    "UnifiedMonitor": "srl_trainers.monitor",
    "create_unified_monitor": "srl_trainers.monitor",
    "list_available_checkpoints": "srl_trainers.checkpoint",
    "load_checkpoint_metadata": "srl_trainers.checkpoint",
    "create_multi_model_coop_compete_env": "srl_envs",
    "create_multi_model_staged_env": "srl_envs",
    "create_multi_model_team_battle": "srl_envs",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'srl_trainers' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "MultiModelConfig",
    "MultiModelTrainer",
    "TrainingMode",
    "UnifiedMonitor",
    "WeightUpdateStrategy",
    "create_competitive_multimodel_trainer",
    "create_cooperative_multimodel_trainer",
    "create_distributed_lora_scheduler",
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
    from srl_trainers.trainer import MultiModelTrainer

    return MultiModelTrainer(config)


def create_cooperative_multimodel_trainer(
    num_models: int = 4, **config_fields: Any
) -> MultiModelTrainer:
    """Cooperative mode with SYNCHRONIZED updates (gradients averaged across the group)."""
    config_fields.setdefault("weight_update_strategy", WeightUpdateStrategy.SYNCHRONIZED)
    config_fields.setdefault("cooperation_strength", 0.8)
    return create_multimodel_trainer(num_models, TrainingMode.COOPERATIVE, **config_fields)


def create_competitive_multimodel_trainer(
    num_models: int = 4, **config_fields: Any
) -> MultiModelTrainer:
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
