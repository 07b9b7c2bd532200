"""Tiny, locally built models for tests: no hub access, built in well under a second.

:func:`build_tiny_model` writes a random ``LlamaForCausalLM`` (hidden 64, 2 layers by default)
and a byte-level tokenizer with ChatML special tokens as an ordinary HF checkpoint directory, so
the code under test loads it exactly as it loads a real model (``ModelPool(path)``).

The tokenizer has the 256 byte tokens and no merges: every string tokenizes (one token per
UTF-8 byte) and decodes back losslessly. Special tokens: ``<|endoftext|>`` (pad),
``<|im_start|>`` and ``<|im_end|>`` (eos, the end of a chat turn).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

__all__ = ["CHATML_TEMPLATE", "build_tiny_model", "build_tiny_tokenizer", "tiny_trainer_config"]

# ChatML without a default system message (SmolLM2's template adds one; tests want none).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_MARKER = "srl_tiny_model.json"
_PROCESS_CACHE: dict[tuple, Path] = {}


def build_tiny_tokenizer():
    """A byte-level ``PreTrainedTokenizerFast``: 256 byte tokens, then the ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 printable stand-ins for bytes
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    directory: str | Path | None = None,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 4096,
    tie_word_embeddings: bool = False,
) -> Path:
    """Write a tiny random Llama checkpoint (model + tokenizer) and return its directory.

    ``directory=None`` builds once per process and argument set into a temporary directory
    (removed at exit) and returns that same path on every later call. An explicit
    ``directory`` that already holds a build with the same arguments is reused as is.
    """
    args = {
        "seed": seed,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_position_embeddings,
        "tie_word_embeddings": tie_word_embeddings,
    }
    if directory is None:
        key = tuple(sorted(args.items()))
        cached = _PROCESS_CACHE.get(key)
        if cached is not None and (cached / _MARKER).is_file():
            return cached
        tmp = Path(tempfile.mkdtemp(prefix="srl_tiny_model_"))
        atexit.register(shutil.rmtree, tmp, True)
        _PROCESS_CACHE[key] = _write_tiny_model(tmp, args)
        return _PROCESS_CACHE[key]
    out = Path(directory)
    marker = out / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == args:
                return out
        except (OSError, ValueError):
            pass
    return _write_tiny_model(out, args)


def _write_tiny_model(out: Path, args: dict) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args["hidden_size"],
        intermediate_size=args["intermediate_size"],
        num_hidden_layers=args["num_layers"],
        num_attention_heads=args["num_heads"],
        num_key_value_heads=args["num_kv_heads"],
        max_position_embeddings=args["max_position_embeddings"],
        tie_word_embeddings=args["tie_word_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args["seed"])
        model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / _MARKER).write_text(json.dumps(args, sort_keys=True))
    return out


def tiny_trainer_config(model_path: str | Path, work_dir: str | Path, **overrides):
    """A ``MultiModelConfig`` that trains 2 slots of the tiny model in about a second per
    episode: short prompts (the byte-level tokenizer makes long ones), 4 new tokens, float32,
    logs and checkpoints under ``work_dir``. ``overrides`` replace any field."""
    from srl_trainers.config import MultiModelConfig

    work_dir = Path(work_dir)
    fields = dict(
        model_types=["tiny"],
        model_names={"tiny": str(model_path)},
        num_models=2,
        max_episodes=2,
        batch_size=4,
        group_size=2,
        episode_length=2,
        max_new_tokens=4,
        kv_cache_size=200,
        system_prompt="Play.",
        dtype="float32",
        learning_rate=1e-2,
        checkpoint_dir=str(work_dir / "ckpt"),
        log_dir=str(work_dir / "runs"),
        run_name="test",
        enable_monitoring=False,
        save_interval=100,
    )
    fields.update(overrides)
    return MultiModelConfig(**fields)
