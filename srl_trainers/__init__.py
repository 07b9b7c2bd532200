"""srl_trainers: train populations of LLM policies (LoRA adapters) on srl_envs."""

from srl_trainers.config import ConfigError, MultiModelConfig, TrainingMode, WeightUpdateStrategy

__all__ = ["ConfigError", "MultiModelConfig", "TrainingMode", "WeightUpdateStrategy"]
