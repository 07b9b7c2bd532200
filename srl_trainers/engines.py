"""The generation-engine protocol: what the rollout asks of whatever generates for a base model.

An engine completes a batch of prompt ids, each row with its own LoRA adapter (``None``: the
bare base model), in one call, and takes new adapter weights after an update:

* :class:`~srl_trainers.models.ModelPool`: the HF engine; in local mode the learner's own pool;
* :class:`~srl_trainers.vllm_backend.VLLMGenerationBackend`: a colocated vLLM engine (it loads
  adapters from directories: ``push_from_pool`` writes them);
* :class:`~srl_trainers.distributed.EngineHost`: a Ray actor holding either of them, reached
  from a rollout worker through :class:`~srl_trainers.distributed.RemoteEngine`.

Policies without an engine (scripted bots, models behind an OpenAI-compatible API) answer
through ``Policy.act`` instead (:mod:`srl_trainers.policies`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from srl_trainers.models import Generation

__all__ = ["GenerationEngine", "PromptFormatter"]


@runtime_checkable
class PromptFormatter(Protocol):
    """Chat-template prompt ids of a checkpoint (``ModelPool`` and ``RemoteEngine`` share
    :class:`~srl_trainers.models.ChatPrompts`)."""

    checkpoint: str
    tokenizer: Any

    def format_prompts(
        self, observations: list[str], system_prompt: str | None, *, max_new_tokens: int = 0
    ) -> list[list[int]]: ...


@runtime_checkable
class GenerationEngine(Protocol):
    """What the rollout calls, once per base model and round."""

    def generate(
        self,
        prompt_ids: list[list[int]],
        adapters: list[str | None],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        do_sample: bool = True,
        generator_seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        """One completion per row: prompt ids, completion ids (with EOS when finished), the
        sampled tokens' log-probs under log_softmax(logits / temperature), the text."""
        ...

    def set_adapter_weights(self, weights: dict[str, dict[str, Any]]) -> None:
        """New tensors for the named adapters (``ModelPool.adapter_state``'s names)."""
        ...
