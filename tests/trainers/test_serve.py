"""``srl_trainers.serve``: the OpenAI-compatible server, over HTTP on loopback (tiny model).

Every endpoint and error, adapter hot-swap (outputs follow the loaded weights), batching of
concurrent requests into mixed-adapter generate calls, and the real ``openai`` client.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import openai
import pytest
import torch

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
def served(tiny_model_path):
    pool = make_pool(tiny_model_path)
    app = create_app(pool, batch_wait_ms=30)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        yield SimpleNamespace(url=server.url, pool=pool, app=app, http=http)


def chat(http, model="base", messages=HI, **params):
    return http.post("/v1/chat/completions", json={"model": model, "messages": messages, **params})


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
    r = served.http.post(
        "/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": str(tmp_path)}
    )
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
    assert models["alice"]["parent"] == "base" and models["alice"]["root"] == str(adapter_dirs["a"])
    assert greedy("alice") == want["a"]
    assert greedy("base") == base

    # same name, new weights of the same shape: replaced in place
    served.http.post("/v1/load_lora_adapter", json={**load, "lora_path": str(adapter_dirs["b"])})
    assert greedy("alice") == want["b"]
    # same name, another rank: the adapter is replaced
    served.http.post("/v1/load_lora_adapter", json={**load, "lora_path": str(adapter_dirs["wide"])})
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
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ghost", messages=HI)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="base", messages=HI, temperature=7)


# ---------------------------------------------------------------------- CLI
def test_cli_parser_and_checkpoint_discovery(tmp_path, adapter_dirs):
    args = make_parser().parse_args(
        ["--adapter", "x=/a", "--adapter", "y=/b", "--port", "9000", "--dtype", "float32"]
    )
    assert args.adapter == ["x=/a", "y=/b"] and args.port == 9000 and args.model is None
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
        main(["--adapter", "no-equals-sign"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(tmp_path / "empty")])
    assert exc.value.code == 2
