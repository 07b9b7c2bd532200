"""``srl_trainers.serve``: the OpenAI-compatible server, over HTTP on loopback (tiny model).

Every endpoint and error, adapter hot-swap (outputs follow the loaded weights), batching of
concurrent requests into mixed-adapter generate calls, the real ``openai`` client, and the
trust boundary and limits: the API key, where adapters may load from, max_tokens bounded by
the model's context, batches of at most ``max_batch_size`` rows, the request timeout, work
stopped when its client goes away, and SIGTERM (a real server process on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
import torch
from fastapi.testclient import TestClient

from srl_trainers import serve
from srl_trainers.lora import lora_parameters
from srl_trainers.models import ModelPool
from srl_trainers.serve import (
    BackgroundServer,
    checkpoint_adapters,
    create_app,
    main,
    make_parser,
    remove_adapter,
)
from srl_trainers.testing import build_tiny_model

LORA = {"alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
HI = [{"role": "user", "content": "hello there"}]


def make_pool(path, **kw) -> ModelPool:
    return ModelPool(str(path), dtype="float32", device="cpu", kv_cache_size=1024, **kw)


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_path, tmp_path_factory):
    """Saved adapters with random (non-zero) B weights: 'a' and 'b' (rank 4), 'wide' (rank 8)."""
    root = tmp_path_factory.mktemp("adapters")
    pool = make_pool(tiny_model_path)
    out = {}
    for name, seed, rank in (("a", 1, 4), ("b", 2, 4), ("wide", 3, 8)):
        slot = f"adapter_{name}"
        pool.add_adapter(slot, rank=rank, seed=seed, **LORA)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for key, p in lora_parameters(pool.model, slot).items():
                if "lora_B" in key:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        out[name] = pool.save_adapter(slot, root / name)
    return out


def expected_greedy(tiny_model_path, adapter_dir, messages, max_tokens=8):
    """What a local pool generates greedily for ``messages`` (alone in its batch)."""
    pool = make_pool(tiny_model_path)
    adapter = None
    if adapter_dir is not None:
        pool.load_adapter("x", adapter_dir)
        adapter = "x"
    text = pool.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = pool.tokenizer(text, add_special_tokens=False)["input_ids"]
    return pool.generate([ids], [adapter], max_new_tokens=max_tokens, do_sample=False)[0]


@pytest.fixture
def served(tiny_model_path, tmp_path_factory):
    """A server on loopback that may load adapters from anywhere under pytest's temp root."""
    pool = make_pool(tiny_model_path)
    app = create_app(pool, batch_wait_ms=30, adapter_dirs=[tmp_path_factory.getbasetemp()])
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        yield SimpleNamespace(url=server.url, pool=pool, app=app, http=http)


def chat(http, model="base", messages=HI, **params):
    return http.post("/v1/chat/completions", json={"model": model, "messages": messages, **params})


def load(http, name, path, **params):
    body = {"lora_name": name, "lora_path": str(path), **params}
    return http.post("/v1/load_lora_adapter", json=body)


def sse_events(http, path, body):
    """The ``data:`` payloads of a streamed response (the last one is ``[DONE]``)."""
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [line[6:] for line in r.iter_lines() if line.startswith("data: ")]


@contextlib.contextmanager
def slow_steps(pool, seconds):
    """Every forward pass of ``pool``'s model sleeps ``seconds`` first (a stand-in for a big
    model); yields the list of the passes' start times."""
    starts = []

    def hook(module, inputs):
        starts.append(time.monotonic())
        time.sleep(seconds)

    handle = pool.model.register_forward_pre_hook(hook)
    try:
        yield starts
    finally:
        handle.remove()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_error(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    if param is not None:
        assert err["param"] == param, err
    return err


# ---------------------------------------------------------------------- endpoints
def test_health_models_and_unknown_route(served):
    assert served.http.get("/health").json() == {"status": "ok"}
    models = served.http.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["base"]
    assert models["data"][0]["parent"] is None and models["data"][0]["object"] == "model"
    assert_error(served.http.get("/v1/nothing"), 404)
    assert_error(served.http.get("/v1/chat/completions"), 405)


def test_chat_completion_matches_the_pool(served, tiny_model_path):
    r = chat(served.http, max_tokens=8, temperature=0)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "base"
    (choice,) = body["choices"]
    want = expected_greedy(tiny_model_path, None, HI)
    assert choice["message"] == {"role": "assistant", "content": want.text}
    assert choice["finish_reason"] == ("stop" if want.finished else "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(want.prompt_ids)
    assert usage["completion_tokens"] == len(want.completion_ids) <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_logprobs_and_token_ids_match_the_pool(served, tiny_model_path):
    r = chat(
        served.http, max_tokens=6, temperature=0, logprobs=True, return_tokens_as_token_ids=True
    )
    content = r.json()["choices"][0]["logprobs"]["content"]
    want = expected_greedy(tiny_model_path, None, HI, max_tokens=6)
    assert [int(t["token"].removeprefix("token_id:")) for t in content] == want.completion_ids
    assert [t["logprob"] for t in content] == pytest.approx(want.logprobs, abs=1e-4)
    plain = chat(served.http, max_tokens=2, temperature=0, logprobs=True).json()
    assert "token_id:" not in plain["choices"][0]["logprobs"]["content"][0]["token"]


def test_completions_batch_prompts_n_and_token_ids(served):
    r = served.http.post(
        "/v1/completions",
        json={"model": "base", "prompt": ["ab", "cd"], "max_tokens": 3, "n": 2, "logprobs": 0},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["usage"]["prompt_tokens"] == 4  # byte tokenizer: two 2-token prompts
    lp = body["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) <= 3
    r = served.http.post("/v1/completions", json={"model": "base", "prompt": [104, 105]})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 2
    assert r.json()["usage"]["completion_tokens"] <= 16  # OpenAI's default max_tokens


def test_seed_reproducible_and_stop_strings(served):
    a = chat(served.http, max_tokens=8, seed=5).json()["choices"][0]["message"]["content"]
    b = chat(served.http, max_tokens=8, seed=5).json()["choices"][0]["message"]["content"]
    assert a == b
    full = chat(served.http, max_tokens=8, temperature=0).json()
    text = full["choices"][0]["message"]["content"]
    stop = text[3:5]
    cut = chat(served.http, max_tokens=8, temperature=0, stop=[stop, "never-there"]).json()
    assert cut["choices"][0]["message"]["content"] == text[: text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] < full["usage"]["completion_tokens"]


def test_stream_returns_the_completion_as_events(served):
    with served.http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "base", "messages": HI, "max_tokens": 4, "temperature": 0, "stream": True},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    want = chat(served.http, max_tokens=4, temperature=0).json()["choices"][0]["message"]
    assert text == want["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "base", "messages": HI, "temperature": 3}, "temperature"),
        ({"model": "base", "messages": HI, "temperature": -0.5}, "temperature"),
        ({"model": "base", "messages": HI, "top_p": 0}, "top_p"),
        ({"model": "base", "messages": HI, "n": 0}, "n"),
        ({"model": "base", "messages": HI, "n": 99}, "n"),
        ({"model": "base", "messages": HI, "max_tokens": 0}, "max_tokens"),
        ({"model": "base", "messages": HI, "max_tokens": 5000}, "max_tokens"),
        ({"model": "base", "messages": HI, "top_logprobs": 3}, "top_logprobs"),
        ({"model": "base", "messages": HI, "stream": True, "n": 2}, "n"),
        ({"model": "base", "messages": []}, "messages"),
        ({"model": "base", "messages": "hello"}, "messages"),
        ({"model": "base"}, "messages"),
        ({"messages": HI}, "model"),
        ({"model": "base", "messages": [{"content": "no role"}]}, "messages.0.role"),
        (
            {"model": "base", "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            "messages.content",
        ),
    ],
)
def test_bad_chat_requests_are_400(served, body, param):
    assert_error(served.http.post("/v1/chat/completions", json=body), 400, param)


def test_malformed_bodies_and_bad_completions_are_400(served):
    r = served.http.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert "JSON" in assert_error(r, 400)["message"]
    for body, param in [
        ({"model": "base"}, "prompt"),
        ({"model": "base", "prompt": ""}, "prompt"),
        ({"model": "base", "prompt": [[]]}, "prompt"),
        ({"model": "base", "prompt": [1, 10**9]}, "prompt"),
        ({"model": "base", "prompt": "x", "echo": True}, "echo"),
        ({"model": "base", "prompt": "x", "logprobs": 5}, "logprobs"),
    ]:
        assert_error(served.http.post("/v1/completions", json=body), 400, param)


def test_unknown_models_and_adapters_are_404(served, tmp_path):
    for path in ("/v1/chat/completions", "/v1/completions"):
        err = assert_error(
            served.http.post(path, json={"model": "ghost", "messages": HI, "prompt": "x"}),
            404,
            "model",
        )
        assert "ghost" in err["message"] and err["code"] == "model_not_found"
    assert_error(served.http.post("/v1/unload_lora_adapter", json={"lora_name": "ghost"}), 404)
    r = load(served.http, "x", tmp_path)
    assert "PEFT adapter" in assert_error(r, 400, "lora_path")["message"]
    assert_error(
        served.http.post("/v1/load_lora_adapter", json={"lora_name": "x"}), 400, "lora_path"
    )
    # the server still answers after all of that
    assert chat(served.http, max_tokens=2).status_code == 200


def test_bad_adapter_names_are_400(served, adapter_dirs):
    for name in ("base", "bad.name"):
        r = served.http.post(
            "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(adapter_dirs["a"])}
        )
        assert_error(r, 400, "lora_name")
    assert [m["id"] for m in served.http.get("/v1/models").json()["data"]] == ["base"]


# ---------------------------------------------------------------------- adapter hot-swap
def test_hot_swap_changes_outputs(served, adapter_dirs, tiny_model_path):
    def greedy(model):
        r = chat(served.http, model=model, max_tokens=8, temperature=0)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    base = greedy("base")
    want = {k: expected_greedy(tiny_model_path, d, HI).text for k, d in adapter_dirs.items()}
    assert len({base, *want.values()}) == 4, "the test adapters must change the greedy output"

    load = {"lora_name": "alice", "lora_path": str(adapter_dirs["a"])}
    r = served.http.post("/v1/load_lora_adapter", json=load)
    assert r.status_code == 200 and "alice" in r.text
    models = {m["id"]: m for m in served.http.get("/v1/models").json()["data"]}
    assert models["alice"]["parent"] == "base" and models["alice"]["root"] == "alice"
    assert greedy("alice") == want["a"]
    assert greedy("base") == base

    # same name, new weights of the same shape: replaced in place (load_inplace, as vLLM's)
    inplace = {**load, "load_inplace": True}
    r = served.http.post(
        "/v1/load_lora_adapter", json={**inplace, "lora_path": str(adapter_dirs["b"])}
    )
    assert r.status_code == 200, r.text
    assert greedy("alice") == want["b"]
    # same name, another rank: the adapter is replaced
    served.http.post(
        "/v1/load_lora_adapter", json={**inplace, "lora_path": str(adapter_dirs["wide"])}
    )
    assert greedy("alice") == want["wide"]
    served.http.post(
        "/v1/load_lora_adapter", json={"lora_name": "bob", "lora_path": str(adapter_dirs["a"])}
    )
    assert greedy("bob") == want["a"] and greedy("alice") == want["wide"]

    assert (
        served.http.post("/v1/unload_lora_adapter", json={"lora_name": "alice"}).status_code == 200
    )
    assert_error(chat(served.http, model="alice"), 404, "model")
    assert greedy("bob") == want["a"]
    served.http.post("/v1/unload_lora_adapter", json={"lora_name": "bob"})
    assert served.pool.adapter_names == [] and not hasattr(served.pool.model, "peft_config")
    assert greedy("base") == base
    assert [m["id"] for m in served.http.get("/v1/models").json()["data"]] == ["base"]


def test_remove_adapter_keeps_the_pool_consistent(tiny_model_path, adapter_dirs):
    pool = make_pool(tiny_model_path)
    pool.load_adapter("first", adapter_dirs["a"])
    pool.load_adapter("second", adapter_dirs["b"])
    remove_adapter(pool, "first")
    assert pool.adapter_names == ["second"]
    assert all(p.requires_grad for p in pool.trainable_parameters("second"))
    with pytest.raises(KeyError):
        remove_adapter(pool, "first")
    pool.add_adapter("third", rank=4, seed=0, **LORA)  # the pool still grows after a removal
    assert pool.adapter_names == ["second", "third"]


# ---------------------------------------------------------------------- batching
def test_concurrent_requests_are_batched_into_mixed_adapter_calls(served, adapter_dirs):
    served.http.post(
        "/v1/load_lora_adapter", json={"lora_name": "alice", "lora_path": str(adapter_dirs["a"])}
    )
    calls = []
    generate = served.pool.generate

    def counting(prompts, adapters, **kw):
        calls.append(list(adapters))
        return generate(prompts, adapters, **kw)

    served.pool.generate = counting

    async def many():
        client = openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="none", max_retries=0)
        async with client:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="alice" if i % 2 else "base",
                        messages=[{"role": "user", "content": f"request {i}"}],
                        max_tokens=3 + i % 3,  # different lengths share a call
                        temperature=0,
                    )
                    for i in range(8)
                )
            )

    answers = asyncio.run(many())
    assert len(answers) == 8 and all(a.usage.completion_tokens <= 5 for a in answers)
    assert sum(len(c) for c in calls) == 8
    assert len(calls) < 8, f"8 concurrent requests took {len(calls)} generate calls"
    assert any(None in c and "alice" in c for c in calls), calls


# ---------------------------------------------------------------------- the openai client
def test_openai_client_end_to_end(served, adapter_dirs):
    load = {"lora_name": "alice", "lora_path": str(adapter_dirs["a"])}
    assert served.http.post("/v1/load_lora_adapter", json=load).status_code == 200
    client = openai.OpenAI(base_url=served.url + "/v1", api_key="none", max_retries=0)
    assert [m.id for m in client.models.list()] == ["base", "alice"]
    out = client.chat.completions.create(model="alice", messages=HI, max_tokens=4, temperature=0)
    assert out.choices[0].message.role == "assistant" and out.usage.completion_tokens <= 4
    text = client.completions.create(model="base", prompt="hi", max_tokens=3).choices[0].text
    assert isinstance(text, str)
    stream = client.chat.completions.create(model="base", messages=HI, max_tokens=3, stream=True)
    assert any(chunk.choices[0].finish_reason for chunk in stream)
    *_, last = client.chat.completions.create(
        model="base",
        messages=HI,
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert last.choices == [] and last.usage.completion_tokens <= 3
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ghost", messages=HI)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="base", messages=HI, temperature=7)


# ---------------------------------------------------------------------- CLI
def test_cli_parser_and_checkpoint_discovery(tmp_path, adapter_dirs):
    args = make_parser().parse_args(
        ["--adapter", "x=/a", "--adapter", "y=/b", "--port", "9000", "--dtype", "float32"]
    )
    assert args.adapter == [("x", Path("/a")), ("y", Path("/b"))] and args.port == 9000
    assert args.model is None and args.api_key is None and args.adapter_dir == []
    # a checkpoint dir: adapters/<slot> + metadata.json naming the base of every slot
    ckpt = tmp_path / "checkpoint_000002"
    for slot in ("model_0_tiny", "model_1_tiny"):
        (ckpt / "adapters").mkdir(parents=True, exist_ok=True)
        (ckpt / "adapters" / slot).symlink_to(adapter_dirs["a"])
    config = {"num_models": 2, "model_types": ["tiny"], "model_names": {"tiny": "/m"}}
    (ckpt / "metadata.json").write_text(json.dumps({"config": config}))
    path, found, base = checkpoint_adapters(ckpt)
    assert path == ckpt and list(found) == ["model_0_tiny", "model_1_tiny"] and base == "/m"
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(tmp_path / "empty")])
    assert exc.value.code == 2


def test_stream_options_include_usage_ends_with_a_usage_chunk(served):
    common = {"model": "base", "max_tokens": 4, "temperature": 0, "stream": True}
    for path, body in (("/v1/chat/completions", {"messages": HI}), ("/v1/completions", {})):
        body = {**common, "prompt": "ab", **body, "stream_options": {"include_usage": True}}
        events = sse_events(served.http, path, body)
        assert events[-1] == "[DONE]"
        *content, last = [json.loads(e) for e in events[:-1]]
        assert last["choices"] == [] and all(c["usage"] is None for c in content)
        plain = served.http.post(path, json={**body, "stream": False, "stream_options": None})
        assert last["usage"] == plain.json()["usage"]
        # without include_usage, no usage chunk
        events = sse_events(served.http, path, {**body, "stream_options": {"include_usage": False}})
        assert all(json.loads(e)["choices"] for e in events[:-1])
    r = chat(served.http, max_tokens=2, stream_options={"include_usage": True})
    assert_error(r, 400, "stream_options")


# ---------------------------------------------------------------------- bad input details
@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a\ud800"}]}, None),
        ("/v1/chat/completions", {"messages": HI, "stop": ["\udfff"]}, "stop"),
        ("/v1/completions", {"prompt": "\ud800"}, "prompt"),
        ("/v1/completions", {"prompt": ["ok", "\ud800"]}, "prompt"),
    ],
)
def test_lone_surrogates_are_400_and_keep_the_connection(served, path, body, param):
    raw = json.dumps({"model": "base", "max_tokens": 2, **body})  # escapes them as \\udxxx
    r = served.http.post(path, content=raw, headers={"content-type": "application/json"})
    err = assert_error(r, 400)
    assert "surrogate" in err["message"] and err["param"].startswith(param or "messages")
    assert r.headers.get("connection") != "close"
    assert chat(served.http, max_tokens=2).status_code == 200


def test_seed_outside_64_bits_is_400(served):
    for seed in (2**63, -(2**63) - 1, 10**30):
        assert_error(chat(served.http, max_tokens=2, seed=seed), 400, "seed")
    for seed in (2**63 - 1, -(2**63), -5):
        assert chat(served.http, max_tokens=2, seed=seed).status_code == 200


@pytest.fixture(scope="module")
def foreign_adapters(tmp_path_factory):
    """Adapters saved from tiny models of other shapes: hidden 32, and 3 layers."""
    root = tmp_path_factory.mktemp("foreign")
    out = {}
    for name, shape in (("narrow", {"hidden_size": 32}), ("deep", {"num_layers": 3})):
        pool = make_pool(build_tiny_model(root / f"model_{name}", **shape))
        pool.add_adapter("x", rank=4, seed=0, **LORA)
        out[name] = pool.save_adapter("x", root / name)
    return out


def test_an_adapter_of_another_shape_is_400_and_changes_nothing(
    served, adapter_dirs, foreign_adapters, tiny_model_path
):
    def greedy(model):
        r = chat(served.http, model=model, max_tokens=8, temperature=0)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    base = greedy("base")
    for name, path in foreign_adapters.items():  # into a pool with no adapter yet
        err = assert_error(load(served.http, name, path), 400, "lora_path")
        assert "does not fit" in err["message"] and str(path) in err["message"], err
    assert served.pool.adapter_names == [] and not hasattr(served.pool.model, "peft_config")
    assert greedy("base") == base
    assert load(served.http, "alice", adapter_dirs["a"]).status_code == 200
    alice = greedy("alice")
    for name, path in foreign_adapters.items():  # beside one, and over it
        assert_error(load(served.http, name, path), 400, "lora_path")
        assert_error(load(served.http, "alice", path, load_inplace=True), 400, "lora_path")
    assert served.pool.adapter_names == ["alice"]
    assert greedy("alice") == alice and greedy("base") == base


def test_a_served_adapter_is_replaced_only_with_load_inplace(served, adapter_dirs, tiny_model_path):
    assert load(served.http, "alice", adapter_dirs["a"]).status_code == 200
    err = assert_error(load(served.http, "alice", adapter_dirs["b"]), 400, "lora_name")
    assert "already" in err["message"] and "load_inplace" in err["message"]
    want = {k: expected_greedy(tiny_model_path, adapter_dirs[k], HI).text for k in ("a", "b")}
    out = chat(served.http, model="alice", max_tokens=8, temperature=0).json()
    assert out["choices"][0]["message"]["content"] == want["a"]
    r = load(served.http, "alice", adapter_dirs["b"], load_inplace=True)
    assert r.status_code == 200, r.text
    out = chat(served.http, model="alice", max_tokens=8, temperature=0).json()
    assert out["choices"][0]["message"]["content"] == want["b"]


# ---------------------------------------------------------------------- trust boundary
def test_api_key_is_required_on_every_route(tiny_model_path, adapter_dirs):
    app = create_app(
        make_pool(tiny_model_path), api_key="s3cret", adapter_dirs=[adapter_dirs["a"].parent]
    )
    routes = [
        ("GET", "/health", None, 200),
        ("GET", "/v1/models", None, 200),
        ("POST", "/v1/chat/completions", {"model": "base", "messages": HI, "max_tokens": 2}, 200),
        ("POST", "/v1/completions", {"model": "base", "prompt": "ab", "max_tokens": 2}, 200),
        ("POST", "/v1/load_lora_adapter", {"lora_name": "alice", "lora_path": "a"}, 200),
        ("POST", "/v1/unload_lora_adapter", {"lora_name": "alice"}, 200),
        ("GET", "/v1/nothing", None, 404),
    ]
    refused = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cre"},
               {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}]  # fmt: skip
    with TestClient(app) as http:
        for method, path, body, _ in routes:
            for headers in refused:
                r = http.request(method, path, json=body, headers=headers)
                err = assert_error(r, 401)
                assert err["code"] == "invalid_api_key" and "s3cret" not in r.text
                assert r.headers["www-authenticate"] == "Bearer"
        assert app.state.pool.adapter_names == []  # the refused load did nothing
        for method, path, body, status in routes:
            r = http.request(method, path, json=body, headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == status, (path, r.text)


def test_openai_client_sends_the_api_key(tiny_model_path):
    with BackgroundServer(create_app(make_pool(tiny_model_path), api_key="s3cret")) as server:
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        assert [m.id for m in good.models.list()] == ["base"]
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="API key"):
            bad.chat.completions.create(model="base", messages=HI, max_tokens=2)


def test_adapters_load_only_from_the_allowed_directories(tiny_model_path, adapter_dirs, tmp_path):
    allowed = tmp_path / "allowed"
    shutil.copytree(adapter_dirs["a"], allowed / "alice")
    outside = shutil.copytree(adapter_dirs["a"], tmp_path / "outside")
    (allowed / "escape").symlink_to(outside)
    (allowed / "sub").mkdir()
    pool = make_pool(tiny_model_path)
    with TestClient(create_app(pool)) as http:  # no adapter_dirs: loading is off
        err = assert_error(load(http, "x", allowed / "alice"), 403, "lora_path")
        assert "--adapter-dir" in err["message"] and str(tmp_path) not in err["message"]
    with TestClient(create_app(pool, adapter_dirs=[allowed])) as http:
        for path in (
            outside,
            allowed / ".." / "outside",
            "../outside",
            "sub/../../outside",
            "escape",  # a symlink inside that leads outside
            allowed / "escape",
            "/etc",
        ):
            r = load(http, "x", path)
            assert_error(r, 403, "lora_path")
            assert str(tmp_path) not in r.text.replace(str(path), "")
        for path in ("~", "~/alice", "sub", "missing"):  # "~" is not expanded
            r = load(http, "x", path)
            assert_error(r, 400, "lora_path")
            assert str(allowed) not in r.text
        assert pool.adapter_names == []
        assert load(http, "x", "alice").status_code == 200  # relative to the allowed dir
        assert load(http, "y", allowed / "sub" / ".." / "alice").status_code == 200
        models = http.get("/v1/models")
        assert [m["id"] for m in models.json()["data"]] == ["base", "x", "y"]
        assert str(tmp_path) not in models.text and str(tiny_model_path) not in models.text


def test_bind_warning_only_off_loopback_without_a_key():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert serve._bind_warning(host, None) is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        warning = serve._bind_warning(host, None)
        assert host in warning and "--api-key" in warning
        assert serve._bind_warning(host, "s3cret") is None


# ---------------------------------------------------------------------- limits
def test_max_tokens_is_bounded_by_the_models_real_context(tiny_model_path):
    # kv_cache_size above the model's 4096 positions: the model's own limit wins
    pool = ModelPool(str(tiny_model_path), dtype="float32", device="cpu", kv_cache_size=10000)
    with TestClient(create_app(pool)) as http:
        (model,) = http.get("/v1/models").json()["data"]
        assert model["max_model_len"] == 4096
        for max_tokens in (4090, 9999):
            err = assert_error(chat(http, max_tokens=max_tokens), 400, "max_tokens")
            assert "4096" in err["message"] and err["code"] == "context_length_exceeded"
        r = http.post("/v1/completions", json={"model": "base", "prompt": [5] * 4096})
        assert_error(r, 400, "max_tokens")
        ok = http.post(
            "/v1/completions", json={"model": "base", "prompt": [5] * 4000, "max_tokens": 96}
        )
        assert ok.status_code == 200, ok.text


def test_one_request_is_cut_into_batches_of_max_batch_size(tiny_model_path):
    pool = make_pool(tiny_model_path)
    calls = []
    generate = pool.generate

    def counting(prompts, adapters, **kw):
        calls.append(len(prompts))
        return generate(prompts, adapters, **kw)

    pool.generate = counting
    with TestClient(create_app(pool, max_batch_size=4)) as http:
        body = {"model": "base", "prompt": ["ab", "cd", "ef"], "n": 3, "max_tokens": 3}
        r = http.post("/v1/completions", json={**body, "temperature": 0})
        assert r.status_code == 200, r.text
        assert len(r.json()["choices"]) == 9 and calls == [4, 4, 1]
        greedy = [c["text"] for c in r.json()["choices"]]
        assert greedy[0] == greedy[1] == greedy[2] and greedy[3] == greedy[5]
        # n=8 of one prompt over two seeded batches: the second is not a copy of the first
        calls.clear()
        body = {"model": "base", "prompt": "ab", "n": 8, "max_tokens": 6, "seed": 1}
        texts = [c["text"] for c in http.post("/v1/completions", json=body).json()["choices"]]
        assert calls == [4, 4] and len(set(texts)) > 4
        again = [c["text"] for c in http.post("/v1/completions", json=body).json()["choices"]]
        assert again == texts


def test_a_request_past_its_timeout_is_504_and_its_generation_stops(tiny_model_path):
    pool = make_pool(tiny_model_path)
    with TestClient(create_app(pool, request_timeout=0.6)) as http, slow_steps(pool, 0.2):
        start = time.monotonic()
        r = chat(http, max_tokens=60, temperature=0)  # 60 steps: 12 s
        err = assert_error(r, 504)
        assert "request_timeout" in err["message"] and err["code"] == "timeout"
        assert time.monotonic() - start < 2
        start = time.monotonic()  # the timed-out generation stopped: the next one runs at once
        assert chat(http, max_tokens=1, temperature=0).status_code == 200
        assert time.monotonic() - start < 2


def test_generation_stops_when_the_client_goes_away(tiny_model_path):
    pool = make_pool(tiny_model_path)
    with BackgroundServer(create_app(pool)) as server, slow_steps(pool, 0.1) as steps:
        body = {"model": "base", "messages": HI, "max_tokens": 100, "temperature": 0}  # 10 s
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/v1/chat/completions", json=body, timeout=0.6)
        gone = time.monotonic()
        assert steps, "the request never reached the model"
        time.sleep(1.0)
        assert [t for t in steps if t > gone + 0.5] == [], "generation went on without a client"
        start = time.monotonic()
        r = httpx.post(server.url + "/v1/chat/completions", json={**body, "max_tokens": 1})
        assert r.status_code == 200 and time.monotonic() - start < 2


SLOW_SERVE = """
import sys, time
from srl_trainers import models, serve
init = models.ModelPool.__init__
def slow(self, *args, **kwargs):  # 0.1 s per forward pass, a stand-in for a big model
    init(self, *args, **kwargs)
    self.model.register_forward_pre_hook(lambda module, inputs: time.sleep(0.1))
models.ModelPool.__init__ = slow
sys.exit(serve.main(sys.argv[1:]))
"""


def test_sigterm_stops_a_busy_server_within_seconds(tiny_model_path):
    """A real server process on 127.0.0.1 (key from SRL_API_KEY), busy with a 30 s request."""
    port = free_port()
    argv = ["--model", str(tiny_model_path), "--dtype", "float32", "--device", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVE, *argv, "--port", str(port)],
        env={**os.environ, "SRL_API_KEY": "s3cret"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url, key = f"http://127.0.0.1:{port}", {"Authorization": "Bearer s3cret"}
    answers = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", headers=key, timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        assert httpx.get(url + "/health", timeout=1).status_code == 401

        def busy():
            body = {"model": "base", "messages": HI, "max_tokens": 300, "temperature": 0}
            with contextlib.suppress(httpx.HTTPError):
                answers.append(
                    httpx.post(url + "/v1/chat/completions", json=body, headers=key, timeout=60)
                )

        client = threading.Thread(target=busy)
        client.start()
        time.sleep(1.0)  # the request is generating
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert time.monotonic() - start < 6, "SIGTERM took too long"
        client.join(10)
        assert not client.is_alive() and all(a.status_code != 200 for a in answers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------- CLI options
@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--port", "99999"], "--port"),
        (["--port", "-1"], "--port"),
        (["--port", "0"], "--port"),
        (["--port", "eighty"], "--port"),
        (["--kv-cache-size", "0"], "--kv-cache-size"),
        (["--kv-cache-size", "-5"], "--kv-cache-size"),
        (["--max-batch-size", "0"], "--max-batch-size"),
        (["--batch-wait-ms", "-1"], "--batch-wait-ms"),
        (["--batch-wait-ms", "nan"], "--batch-wait-ms"),
        (["--default-max-tokens", "0"], "--default-max-tokens"),
        (["--request-timeout", "0"], "--request-timeout"),
        (["--request-timeout", "inf"], "--request-timeout"),
        (["--api-key", ""], "--api-key"),
        (["--adapter-dir", "/no/such/dir"], "--adapter-dir"),
        (["--served-model-name", ""], "--served-model-name"),
        (["--adapter", "no-equals-sign"], "--adapter"),
        (["--adapter", "=dir"], "--adapter"),
        (["--dtype", "int8"], "--dtype"),
        (["--device", "tpu"], "--device"),
        (["--log-level", "loud"], "--log-level"),
        (["--host", ""], "--host"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option in err and "Traceback" not in err, err


def test_a_taken_port_is_one_line_and_exit_2(tiny_model_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        with pytest.raises(SystemExit) as exc:
            main(["--model", str(tiny_model_path), "--device", "cpu", "--port", port])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and port in err and "--port" in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line(tiny_model_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--model", str(tiny_model_path), "--device", "cuda", "--port", str(free_port())])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device" in err, err
