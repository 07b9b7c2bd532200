"""Access to one LoRA adapter's parameters inside a PEFT multi-adapter model.

PEFT names an adapter's tensors ``...<module>.lora_A.<adapter>.weight``. The helpers here
return them keyed by the name with the adapter part replaced by ``{adapter}``, so the same
key addresses the same tensor in every adapter of one base model (what the weight-update
strategies need to average gradients or weights across adapters).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["adapter_key", "lora_modules", "lora_parameters"]


def adapter_key(param_name: str, adapter: str) -> str | None:
    """``'x.lora_A.slot0.weight'`` -> ``'x.lora_A.{adapter}.weight'`` (None if not this adapter)."""
    for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
        token = f".{part}.{adapter}."
        if token in param_name:
            return param_name.replace(token, f".{part}.{{adapter}}.")
        if param_name.endswith(f".{part}.{adapter}"):
            return param_name[: -len(adapter)] + "{adapter}"
    return None


def lora_parameters(model: nn.Module, adapter: str) -> dict[str, nn.Parameter]:
    """All LoRA parameters of ``adapter``, keyed adapter-independently (see module doc)."""
    out = {}
    for name, param in model.named_parameters():
        key = adapter_key(name, adapter)
        if key is not None:
            out[key] = param
    if not out:
        raise KeyError(f"adapter {adapter!r} has no LoRA parameters in this model")
    return out


def lora_modules(model: nn.Module, adapter: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Per LoRA layer: ``(A, B, scaling)`` of ``adapter``, so that delta W = scaling * B @ A."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            out[name] = (
                module.lora_A[adapter].weight,
                module.lora_B[adapter].weight,
                float(module.scaling[adapter]),
            )
    if not out:
        raise KeyError(f"adapter {adapter!r} has no LoRA layers in this model")
    return out
