"""Policies behind one interface: trainable LoRA slots, scripted bots and API models.

A policy maps an agent's text observation to a text action. LoRA policies are generated in
batches by the trainer (all slots of one base model in one ``generate`` call), so they only
carry identity here; scripted and API policies act on their own and never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from srl_envs.policies import ScriptedPolicy

__all__ = ["BotPolicy", "LoRAPolicy", "Policy"]


@dataclass
class Policy:
    """What every policy has: an id, its model type and name, and whether it trains."""

    policy_id: str
    model_type: str
    model_name: str
    trainable: bool = False
    agents: list[str] = field(default_factory=list)

    def describe(self) -> str:
        kind = "trainable LoRA" if self.trainable else "frozen"
        return f"{self.policy_id} ({kind}, {self.model_type}: {self.model_name})"


@dataclass
class LoRAPolicy(Policy):
    """A LoRA adapter named ``policy_id`` on the shared base model ``checkpoint``."""

    checkpoint: str = ""
    trainable: bool = True


@dataclass
class BotPolicy(Policy):
    """A scripted bot from ``srl_envs``; one instance per env copy (bots may keep state)."""

    bots: list[ScriptedPolicy] = field(default_factory=list)

    def act(self, copy_index: int, observation: str) -> str:
        return self.bots[copy_index].act(observation)

    def reset(self, seeds: list[int]) -> None:
        for bot, seed in zip(self.bots, seeds):
            bot.reset(seed)
