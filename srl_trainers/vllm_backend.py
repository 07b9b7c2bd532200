"""vLLM generation backend (optional extra: ``pip install 'srl[vllm]'``, GPU machines).

:class:`VLLMGenerationBackend` runs a colocated ``vllm.LLM(..., enable_lora=True)`` and
generates with one ``LoRARequest`` per adapter, returning the same :class:`Generation` records
as :meth:`ModelPool.generate` (prompt ids in, completion ids with EOS, per-token log-probs,
text, finished). The HF :class:`ModelPool` keeps the trainable weights; after each update the
trainer saves the updated adapters and calls :meth:`VLLMGenerationBackend.update_adapter`
(or :meth:`VLLMGenerationBackend.push_from_pool`), which registers the new weights under a
fresh LoRA id, so vLLM never serves a stale cached copy.

Differences from ``ModelPool.generate`` worth knowing:

* log-probs are vLLM's: with ``logprobs_mode="processed_logprobs"`` (the default here, vLLM
  >= 0.10.2) they are taken after temperature and top-p, renormalised over the nucleus;
  ``ModelPool`` records log_softmax(logits / T) without the nucleus renormalisation. They agree
  at ``top_p=1``. Pass ``logprobs_mode=None`` for older vLLM versions (raw log-probs, before
  temperature).
* sampling is seeded per prompt (``generator_seed`` and the row index), so identical prompts
  in one batch still get different samples, as they do in one ``ModelPool`` batch.

Importing this module never needs vLLM; constructing the backend without it raises an
``ImportError`` that names the extra. For vLLM *servers* (one per GPU), see
:mod:`srl_trainers.lora_scheduler`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srl_trainers.models import Generation

__all__ = ["VLLM_INSTALL_HINT", "VLLMGenerationBackend"]

VLLM_INSTALL_HINT = (
    "the vLLM generation backend needs vLLM, which is not installed: pip install 'srl[vllm]' "
    "(Linux with an NVIDIA GPU); or use generation_backend='hf'"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(VLLM_INSTALL_HINT) from exc
    return vllm


class VLLMGenerationBackend:
    """A colocated vLLM engine over ``checkpoint`` with hot-swappable LoRA adapters."""

    def __init__(
        self,
        checkpoint: str,
        *,
        eos_token_ids: Sequence[int],
        dtype: str = "bfloat16",
        max_lora_rank: int = 16,
        max_loras: int = 8,
        gpu_memory_utilization: float = 0.5,
        seed: int = 0,
        logprobs_mode: str | None = "processed_logprobs",
        **llm_kwargs: Any,
    ) -> None:
        vllm = _import_vllm()
        from vllm.lora.request import LoRARequest

        self._LoRARequest = LoRARequest
        self._SamplingParams = vllm.SamplingParams
        kwargs: dict[str, Any] = {
            "model": checkpoint,
            "enable_lora": True,
            "max_lora_rank": max_lora_rank,
            "max_loras": max_loras,
            "dtype": dtype,
            "seed": seed,
            # the trainer's HF model shares the GPU: leave it room
            "gpu_memory_utilization": gpu_memory_utilization,
        }
        if logprobs_mode is not None:
            kwargs["logprobs_mode"] = logprobs_mode
        self.llm = vllm.LLM(**kwargs, **llm_kwargs)
        self.eos_token_ids = sorted(set(eos_token_ids))
        self._requests: dict[str, Any] = {}  # adapter name -> its current LoRARequest
        self._last_id = 0

    @classmethod
    def from_pool(cls, pool: Any, **kwargs: Any) -> VLLMGenerationBackend:
        """A backend over the same checkpoint, dtype and EOS tokens as a ``ModelPool``."""
        dtype = str(pool.dtype).removeprefix("torch.")
        return cls(pool.path, eos_token_ids=pool.eos_token_ids, dtype=dtype, **kwargs)

    def close(self) -> None:
        """Stop vLLM's engine (its engine-core process and the memory it reserved) now, not
        whenever the garbage collector gets to it."""
        import gc

        llm, self.llm = getattr(self, "llm", None), None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        gc.collect()

    # ------------------------------------------------------------------ adapters
    @property
    def adapter_names(self) -> list[str]:
        return list(self._requests)

    def update_adapter(self, name: str, directory: str | Path) -> None:
        """Serve the PEFT adapter in ``directory`` as ``name`` from now on (new or updated)."""
        self._last_id += 1
        old = self._requests.get(name)
        self._requests[name] = self._LoRARequest(name, self._last_id, str(directory))
        if old is not None:  # drop the stale weights from vLLM's LoRA cache
            self.llm.llm_engine.remove_lora(old.lora_int_id)

    def remove_adapter(self, name: str) -> None:
        """Stop serving adapter ``name`` (a self-play snapshot evicted from the league)."""
        old = self._requests.pop(name, None)
        if old is not None:
            self.llm.llm_engine.remove_lora(old.lora_int_id)

    def push_from_pool(self, pool: Any, names: Sequence[str], directory: str | Path) -> None:
        """Save adapters ``names`` of ``pool`` under ``directory/<name>`` and serve them."""
        for name in names:
            self.update_adapter(name, pool.save_adapter(name, Path(directory) / name))

    # ------------------------------------------------------------------ generation
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
        """Complete every prompt with its adapter (None: the base model): ``ModelPool.generate``'s
        contract, in one ``LLM.generate`` call."""
        if len(prompt_ids) != len(adapters):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(adapters)} adapters")
        if temperature <= 0:
            raise ValueError(
                f"temperature={temperature} must be > 0 (use do_sample=False for greedy)"
            )
        unknown = sorted({a for a in adapters if a is not None and a not in self._requests})
        if unknown:
            raise KeyError(f"no adapters {unknown} in this backend; adapters: {self.adapter_names}")
        if not prompt_ids:
            return []
        params = [
            self._SamplingParams(
                n=1,
                max_tokens=max_new_tokens,
                temperature=temperature if do_sample else 0.0,
                top_p=top_p if do_sample else 1.0,
                seed=None if generator_seed is None else generator_seed * 100_003 + i,
                logprobs=0,  # the sampled token's log-prob only
                stop_token_ids=self.eos_token_ids,
                # a stop string ends the row with the token that completed it, as in ModelPool
                stop=list(stop) if stop else None,
                include_stop_str_in_output=True,
                skip_special_tokens=True,
            )
            for i in range(len(prompt_ids))
        ]
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompt_ids],
            params,
            lora_request=[None if a is None else self._requests[a] for a in adapters],
            use_tqdm=False,
        )
        eos = set(self.eos_token_ids)
        gens = []
        for prompt, out in zip(prompt_ids, outputs):
            completion = out.outputs[0]
            ids = list(completion.token_ids)
            steps = completion.logprobs or []
            gens.append(
                Generation(
                    prompt_ids=list(prompt),
                    completion_ids=ids,
                    logprobs=[float(step[t].logprob) for step, t in zip(steps, ids)],
                    text=completion.text,
                    finished=bool(ids) and ids[-1] in eos,
                )
            )
        return gens
