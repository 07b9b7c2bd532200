"""``srl_trainers.api``: API-served policies through the real ``openai`` client on loopback.

Against ``srl_trainers.serve`` (the answers are the tiny model's), against a server of our
own that fails on purpose (500s, 429s with Retry-After, hangs past the timeout, 400/401),
and, once the trainer integration is in, inside a training run.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import srl_envs
from srl_trainers.api import APIPolicy, APIResult
from srl_trainers.config import ConfigError, MultiModelConfig
from srl_trainers.models import ModelPool
from srl_trainers.serve import BackgroundServer, create_app
from srl_trainers.testing import tiny_trainer_config

HANG = 3.0  # seconds a "hang" step sleeps: far past the clients' timeouts


def act(
    policy: APIPolicy, observations: list[str], system_prompt: str | None = None, *, close=True
):
    """``policy.act_batch`` in its own event loop (then the HTTP client is closed)."""

    async def go():
        try:
            return await policy.act_batch(observations, system_prompt)
        finally:
            if close:
                await policy.aclose()

    return asyncio.run(go())


def api_policy(url: str, **kw) -> APIPolicy:
    kw.setdefault("max_tokens", 4)
    policy = APIPolicy("model_1_api", "api", kw.pop("model", "base"), base_url=url + "/v1", **kw)
    policy.validate()
    return policy


# ---------------------------------------------------------------------- servers
@pytest.fixture(scope="module")
def serve_url(tiny_model_path):
    pool = ModelPool(str(tiny_model_path), dtype="float32", device="cpu", kv_cache_size=4096)
    app = create_app(pool, batch_wait_ms=20)
    with BackgroundServer(app) as server:
        server.app = app
        server.pool = pool
        yield server


def fault_app(scripts: dict[str, list], cycle: list | None = None) -> FastAPI:
    """A chat-completions endpoint that misbehaves on purpose.

    The user message picks a script (a list of steps, one per attempt, the last one
    repeating); unknown messages walk through ``cycle`` (one global step per request). Steps:
    "ok", "slow" (0.1 s then ok), "hang" (sleeps past any timeout), or an HTTP status
    (429 comes with ``retry-after-ms: 80``). ``app.state.log[message]`` holds the arrival
    times of its attempts; ``app.state.peak`` the most requests in flight at once;
    ``app.state.temperatures`` the sampling temperature of every request, ``app.state.stops``
    its stop strings.
    """
    app = FastAPI()
    app.state.log = defaultdict(list)
    app.state.temperatures = []
    app.state.stops = []
    app.state.peak = 0
    state = {"in_flight": 0, "count": 0}

    def ok(key: str) -> JSONResponse:
        return JSONResponse(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "scripted",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": f"HARVEST: 7 ({key})"},
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
            }
        )

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        key = body["messages"][-1]["content"]
        app.state.temperatures.append(body.get("temperature"))
        app.state.stops.append(body.get("stop"))
        attempts = app.state.log[key]
        attempts.append(time.monotonic())
        if key in scripts:
            step = scripts[key][min(len(attempts), len(scripts[key])) - 1]
        else:
            step = (cycle or ["ok"])[state["count"] % len(cycle or ["ok"])]
        state["count"] += 1
        state["in_flight"] += 1
        app.state.peak = max(app.state.peak, state["in_flight"])
        try:
            if step == "hang":
                await asyncio.sleep(HANG)
            if step == "slow":
                await asyncio.sleep(0.1)
            if step in ("ok", "slow", "hang"):
                return ok(key)
            headers = {"retry-after-ms": "80"} if step == 429 else {}
            body = {"error": {"message": f"scripted {step}", "type": "scripted", "code": None}}
            return JSONResponse(body, status_code=step, headers=headers)
        finally:
            state["in_flight"] -= 1

    return app


# ---------------------------------------------------------------------- start-up checks
@pytest.mark.parametrize(
    ("model_type", "kwargs", "named"),
    [
        ("openai", {}, "OPENAI_API_KEY"),
        ("claude", {}, "ANTHROPIC_API_KEY"),
        ("api", {"api_key_env": "SRL_TEST_KEY", "base_url": "http://h/v1"}, "SRL_TEST_KEY"),
        ("api", {}, "api_base_url"),
        ("api", {"base_url": "localhost:8001"}, "http"),
    ],
)
def test_missing_settings_fail_at_validate_naming_the_variable(
    monkeypatch, model_type, kwargs, named
):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SRL_TEST_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    policy = APIPolicy("model_1_x", model_type, "m", **kwargs)
    with pytest.raises(ConfigError, match=named):
        policy.validate()


def test_settings_come_from_config_then_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.local/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-test")
    openai_policy = APIPolicy("p", "openai", "gpt-4o-mini")
    openai_policy.validate()
    assert openai_policy.base_url == "http://proxy.local/v1" and openai_policy._api_key == "sk-test"
    assert APIPolicy("p", "openai", "m", base_url="http://x/v1").base_url == "http://x/v1"
    claude = APIPolicy("p", "claude", "claude-3-5-sonnet-20241022")
    claude.validate()
    assert claude.base_url.startswith("https://api.anthropic.com/") and claude._api_key == "ak-test"
    local = APIPolicy("p", "api", "base", base_url="http://127.0.0.1:1/v1")
    local.validate()  # a local server needs no key
    assert not local.trainable and "frozen API" in local.describe()
    with pytest.raises(ConfigError, match="not an API type"):
        APIPolicy("p", "smollm2", "m")


# ---------------------------------------------------------------------- against srl serve
def test_api_policy_plays_through_serve(serve_url, tiny_model_path):
    policy = api_policy(serve_url.url, temperature=0.0, concurrency=1)
    env = srl_envs.make("coop_compete", num_models=2, episode_length=2)
    obs, _ = env.reset(seed=0)
    agents = list(env.agents)
    results = act(policy, [obs[a] for a in agents], "Play.", close=False)
    assert all(isinstance(r, APIResult) and r.ok and r.error is None for r in results)
    # greedy answers are exactly the tiny model's (one request at a time: batches of one)
    pool = ModelPool(str(tiny_model_path), dtype="float32", device="cpu", kv_cache_size=4096)
    for agent, result in zip(agents, results):
        (want,) = pool.generate(
            pool.format_prompts([obs[agent]], "Play."), [None], max_new_tokens=4, do_sample=False
        )
        assert result.text == want.text
        assert result.prompt_tokens == len(want.prompt_ids)
        assert result.completion_tokens == len(want.completion_ids)
    _, _, _, _, infos = env.step({a: r.text for a, r in zip(agents, results)})
    assert set(infos) == set(agents)  # the env took the API's actions (valid or not)
    # a second event loop (the trainer may run each episode in its own asyncio.run)
    again = act(policy, [obs[agents[0]]], "Play.")
    assert again[0].text == results[0].text
    usage = policy.usage()
    assert usage["api_requests"] == 3 and usage["api_failures"] == 0
    assert usage["prompt_tokens"] == sum(r.prompt_tokens for r in results) + again[0].prompt_tokens
    assert policy.metrics()["api/model_1_api/failures"] == 0.0


def test_unknown_served_model_fails_without_retry(serve_url):
    policy = api_policy(serve_url.url, model="ghost", max_retries=3, backoff=0.01)
    (result,) = act(policy, ["hi"])
    assert not result.ok and result.text == "" and result.attempts == 1
    assert "404" in result.error and "ghost" in result.error
    assert policy.usage()["api_failures"] == 1 and policy.usage()["api_retries"] == 0


# ---------------------------------------------------------------------- faults
def test_faults_are_retried_with_backoff_then_counted():
    scripts = {
        "flaky": [500, "ok"],
        "rate-limited": [429, "ok"],
        "hangs": ["hang", "ok"],
        "down": [503],  # every attempt
        "bad-request": [400],
        "unauthorized": [401],
        "fine": ["ok"],
    }
    app = fault_app(scripts)
    backoff, retries = 0.04, 3
    with BackgroundServer(app) as server:
        policy = api_policy(server.url, timeout=0.3, max_retries=retries, backoff=backoff)
        start = time.monotonic()
        results = act(policy, list(scripts), "system")
        elapsed = time.monotonic() - start
    by_key = dict(zip(scripts, results))
    log = app.state.log
    for key in ("flaky", "rate-limited", "hangs", "fine"):
        assert by_key[key].ok and by_key[key].text == f"HARVEST: 7 ({key})", by_key[key]
        assert len(log[key]) == by_key[key].attempts == (1 if key == "fine" else 2)
    assert by_key["fine"].prompt_tokens == 11 and by_key["fine"].completion_tokens == 3
    # the hang was cut at the client's timeout and retried long before the server let go
    # (gaps are measured on the server side, so only orderings are checked, never timings)
    assert log["hangs"][1] - log["hangs"][0] < HANG
    # 5xx forever: every retry, with exponentially growing (jittered) gaps, then a failure
    down = by_key["down"]
    assert not down.ok and down.text == "" and "503" in down.error
    assert len(log["down"]) == down.attempts == retries + 1
    gaps = [b - a for a, b in zip(log["down"], log["down"][1:])]
    assert gaps[-1] > gaps[0]  # exponential: the last wait is 2-8x the first
    # client errors are not retried
    for key, code in (("bad-request", "400"), ("unauthorized", "401")):
        assert not by_key[key].ok and code in by_key[key].error and len(log[key]) == 1
    usage = policy.usage()
    assert usage["api_requests"] == len(scripts) and usage["api_failures"] == 3
    assert usage["api_retries"] == 3 + retries  # flaky, rate-limited, hangs once; down 3 times
    assert usage["prompt_tokens"] == 4 * 11 and usage["completion_tokens"] == 4 * 3
    assert policy.metrics()["api/model_1_api/failures"] == 3.0
    assert elapsed < HANG  # all concurrent; the hang did not hold anything up


def test_connection_errors_are_retried_and_counted():
    with BackgroundServer(FastAPI()) as server:  # take a free port, then free it
        url = server.url
    policy = api_policy(url, max_retries=2, backoff=0.01, timeout=2.0)
    results = act(policy, ["a", "b"])
    assert all(not r.ok and r.text == "" and r.attempts == 3 for r in results)
    assert all("connection error" in r.error for r in results)
    assert policy.usage()["api_failures"] == 2 and policy.usage()["api_retries"] == 4


def test_concurrency_limit_holds():
    app = fault_app({}, cycle=["slow"])
    with BackgroundServer(app) as server:
        policy = api_policy(server.url, concurrency=2)
        results = act(policy, [f"obs {i}" for i in range(6)])
    assert all(r.ok for r in results)
    assert app.state.peak == 2


def test_state_dict_round_trip():
    policy = APIPolicy("p", "api", "m", base_url="http://127.0.0.1:1/v1")
    policy.counters.update(requests=5, failures=2, prompt_tokens=40)
    other = APIPolicy("p", "api", "m", base_url="http://127.0.0.1:1/v1")
    other.load_state_dict(policy.state_dict())
    assert other.usage() == policy.usage() and other.usage()["api_failures"] == 2


# ---------------------------------------------------------------------- in the trainer
def trainer_config(tiny_model_path, tmp_path, url, **overrides) -> MultiModelConfig:
    fields = dict(
        model_types=["tiny", "api"],
        model_names={"tiny": str(tiny_model_path), "api": "base"},
        api_base_url=url + "/v1",
        api_backoff=0.01,
    )
    return tiny_trainer_config(tiny_model_path, tmp_path, **{**fields, **overrides})


def test_trainer_population_with_an_api_slot(serve_url, tiny_model_path, tmp_path):
    from srl_trainers import MultiModelTrainer

    calls = serve_url.app.state.batcher.generate_calls
    trainer = MultiModelTrainer(trainer_config(tiny_model_path, tmp_path, serve_url.url))
    results = trainer.train_sync()
    assert results["training_completed"] and results["total_episodes"] == 2
    assert trainer.slots == ["model_0_tiny"]
    summary = results["final_model_states"]
    api = summary["model_1_api"]
    assert api["trainable"] is False and api["update_count"] == 0
    assert api["api_requests"] > 0 and api["api_failures"] == 0
    assert api["prompt_tokens"] > 0 and api["completion_tokens"] > 0
    assert summary["model_0_tiny"]["update_count"] == 2
    assert results["training_metrics"]["api/model_1_api/failures"] == 0
    assert serve_url.app.state.batcher.generate_calls > calls  # the server did the work
    asyncio.run(trainer.shutdown())


def test_trainer_run_finishes_with_api_failures_counted(tiny_model_path, tmp_path):
    from srl_trainers import MultiModelTrainer

    app = fault_app({}, cycle=[500, 429, "hang"])  # every attempt of every request fails
    with BackgroundServer(app) as server:
        cfg = trainer_config(
            tiny_model_path, tmp_path, server.url, api_timeout=0.3, api_max_retries=2
        )
        trainer = MultiModelTrainer(cfg)
        results = trainer.train_sync()
    assert results["training_completed"] and results["total_episodes"] == 2
    api = results["final_model_states"]["model_1_api"]
    assert api["api_requests"] > 0 and api["api_failures"] == api["api_requests"]
    assert api["api_retries"] == 2 * api["api_requests"]
    assert api["invalid_rate"] == 1.0  # a failed request is an empty, invalid action
    assert results["training_metrics"]["api/model_1_api/failures"] == api["api_requests"]
    assert results["final_model_states"]["model_0_tiny"]["update_count"] == 2


def test_trainer_missing_key_fails_at_setup(tiny_model_path, tmp_path, monkeypatch):
    from srl_trainers import MultiModelTrainer

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = trainer_config(
        tiny_model_path, tmp_path, "http://127.0.0.1:1", model_types=["tiny", "openai"]
    )
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        MultiModelTrainer(cfg).setup()


def test_evaluation_temperature_reaches_the_api():
    app = fault_app({})
    with BackgroundServer(app) as server:
        policy = api_policy(server.url, temperature=0.9)

        async def go():
            try:
                await policy.act_batch(["a"], None)
                await policy.act_batch(["b"], None, temperature=0.0)  # greedy evaluation
            finally:
                await policy.aclose()

        asyncio.run(go())
    assert app.state.temperatures == [0.9, 0.0]
    assert app.state.stops == [None, None]


def test_stop_strings_reach_the_api(tiny_model_path, tmp_path):
    cfg = trainer_config(tiny_model_path, tmp_path, "http://127.0.0.1:1", stop=["\n", "###"])
    app = fault_app({})
    with BackgroundServer(app) as server:
        policy = APIPolicy.from_config("model_1_api", "api", "base", cfg, ["player_1"])
        policy.base_url = server.url + "/v1"
        policy.validate()

        async def go():
            try:
                await policy.act_batch(["a"], None)
            finally:
                await policy.aclose()

        asyncio.run(go())
    assert app.state.stops == [["\n", "###"]]
