"""The distributed LoRA scheduler against real ``srl_trainers.serve`` servers on loopback (the
endpoints vLLM offers), and the vLLM backend's import guard and glue (vLLM cannot run here)."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
import types
from types import SimpleNamespace

import httpx
import pytest
import torch

from srl_trainers.lora import lora_parameters
from srl_trainers.lora_scheduler import (
    DistributedLoRAScheduler,
    SchedulerError,
    create_distributed_lora_scheduler,
)
from srl_trainers.models import ModelPool
from srl_trainers.serve import BackgroundServer, create_app

LORA = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
HI = [{"role": "user", "content": "hello there"}]


def make_pool(path) -> ModelPool:
    return ModelPool(str(path), dtype="float32", device="cpu", kv_cache_size=1024)


def perturb(pool: ModelPool, name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in lora_parameters(pool.model, name).items():
            if "lora_B" in key:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.fixture(scope="module")
def trained(tiny_model_path, tmp_path_factory):
    """A pool with four adapters of distinct random weights, each also saved to a directory."""
    root = tmp_path_factory.mktemp("adapters")
    pool = make_pool(tiny_model_path)
    dirs = {}
    for i, name in enumerate(["model_0_x", "model_1_x", "model_2_x", "model_3_x"]):
        pool.add_adapter(name, seed=i, **LORA)
        perturb(pool, name, 10 + i)
        dirs[name] = pool.save_adapter(name, root / name)
    ids = pool.tokenizer(
        pool.tokenizer.apply_chat_template(HI, tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )["input_ids"]
    want = {
        name: pool.generate([ids], [name], max_new_tokens=6, do_sample=False)[0] for name in dirs
    }
    want[None] = pool.generate([ids], [None], max_new_tokens=6, do_sample=False)[0]
    assert len({g.text for g in want.values()}) == 5, "the adapters must change greedy outputs"
    return SimpleNamespace(pool=pool, dirs=dirs, want=want)


@pytest.fixture
def servers(tiny_model_path, tmp_path_factory):
    """Two srl serve instances (own pools) on consecutive free ports, like one per GPU; they
    may load adapters from anywhere under pytest's temp root."""
    allowed = [tmp_path_factory.getbasetemp()]
    for _ in range(50):
        base = random.randint(20_000, 60_000)
        started = []
        try:
            for i in range(2):
                app = create_app(make_pool(tiny_model_path), batch_wait_ms=20, adapter_dirs=allowed)
                started.append(BackgroundServer(app, port=base + i))
        except OSError:  # a port is taken: try another pair
            for s in started:
                s.stop()
            continue
        for s in started:
            s.start()
        yield SimpleNamespace(base_port=base, urls=[s.url for s in started])
        for s in started:
            s.stop()
        return
    pytest.fail("no two consecutive free ports")


def run(coro):
    return asyncio.run(coro)


def served_models(scheduler: DistributedLoRAScheduler, url: str) -> list[str]:
    async def get():
        r = await scheduler._client.get(f"{url}/v1/models")
        return [m["id"] for m in r.json()["data"]]

    return get()


# ---------------------------------------------------------------------- start / stop
def test_start_names_the_unreachable_servers(servers):
    dead = f"http://127.0.0.1:{servers.base_port + 2}"
    scheduler = DistributedLoRAScheduler([servers.urls[0], dead], connect_timeout=2)
    with pytest.raises(SchedulerError, match="1 of 2") as err:
        run(scheduler.start())
    assert dead in str(err.value) and servers.urls[0] + " " not in str(err.value)
    with pytest.raises(SchedulerError, match="not started"):
        run(scheduler.generate(None, HI))


def test_create_scheduler_over_consecutive_ports(servers):
    scheduler = create_distributed_lora_scheduler(base_port=servers.base_port, num_gpus=2)
    assert [s.url for s in scheduler.servers] == servers.urls

    async def go():
        async with scheduler:
            assert [s.base_model for s in scheduler.servers] == ["base", "base"]
            out = await scheduler.generate(None, HI, max_tokens=3)
            assert out.server in servers.urls and out.completion_tokens <= 3

    run(go())
    with pytest.raises(ValueError, match="num_gpus"):
        create_distributed_lora_scheduler(num_gpus=0)
    with pytest.raises(ValueError, match="replicas"):
        DistributedLoRAScheduler(servers.urls, replicas=3)


# ---------------------------------------------------------------------- placement, push, routing
def test_push_balances_adapters_and_generation_uses_the_pushed_weights(servers, trained):
    scheduler = DistributedLoRAScheduler(servers.urls)

    async def go():
        async with scheduler:
            for name, path in trained.dirs.items():
                homes = await scheduler.push_adapter(name, path)
                assert len(homes) == 1
            placed = scheduler.assignments
            per_server = {
                url: sorted(n for n, h in placed.items() if url in h) for url in servers.urls
            }
            assert [len(v) for v in per_server.values()] == [2, 2]  # balanced by count
            for url, names in per_server.items():
                assert await served_models(scheduler, url) == ["base", *names]
            for name in trained.dirs:
                out = await scheduler.generate(name, HI, max_tokens=6, temperature=0, logprobs=True)
                want = trained.want[name]
                assert out.server == placed[name][0]
                assert out.text == want.text and out.token_ids == want.completion_ids
                assert out.logprobs == pytest.approx(want.logprobs, abs=1e-4)
            # an update: new weights under the same name, pushed to the same home
            name = "model_0_x"
            await scheduler.push_adapter(name, trained.dirs["model_3_x"])
            assert scheduler.assignments[name] == placed[name]
            out = await scheduler.generate(name, HI, max_tokens=6, temperature=0)
            assert out.text == trained.want["model_3_x"].text
            metrics = scheduler.metrics()
            assert sum(v for k, v in metrics.items() if k.endswith("/served")) == 5

    run(go())


def test_replicated_adapter_requests_go_to_the_least_busy_server(servers, trained):
    scheduler = DistributedLoRAScheduler(servers.urls, replicas=2)

    async def go():
        async with scheduler:
            name = "model_1_x"
            assert sorted(await scheduler.push_adapter(name, trained.dirs[name])) == servers.urls
            outs = await scheduler.generate_batch(
                [name] * 8,
                [[{"role": "user", "content": f"hi {i}"}] for i in range(8)],
                max_tokens=3,
            )
            assert sorted(o.server for o in outs) == sorted(servers.urls * 4)
            assert [s.in_flight for s in scheduler.servers] == [0, 0]

    run(go())


def test_remove_adopt_and_unknown_adapters(servers, trained):
    async def go():
        # an adapter already on server 1 before the scheduler starts is adopted there
        async with httpx.AsyncClient() as http:
            body = {"lora_name": "model_2_x", "lora_path": str(trained.dirs["model_2_x"])}
            r = await http.post(f"{servers.urls[1]}/v1/load_lora_adapter", json=body)
            assert r.status_code == 200
        scheduler = DistributedLoRAScheduler(servers.urls)
        async with scheduler:
            assert scheduler.assignments == {"model_2_x": [servers.urls[1]]}
            out = await scheduler.generate("model_2_x", HI, max_tokens=6, temperature=0)
            assert out.text == trained.want["model_2_x"].text and out.server == servers.urls[1]
            # the next adapter goes to the emptier server 0
            assert await scheduler.push_adapter("model_0_x", trained.dirs["model_0_x"]) == [
                servers.urls[0]
            ]
            await scheduler.remove_adapter("model_2_x")
            assert await served_models(scheduler, servers.urls[1]) == ["base"]
            with pytest.raises(SchedulerError, match="push it first"):
                await scheduler.generate("model_2_x", HI)
            with pytest.raises(SchedulerError, match="load adapter 'bad'"):
                await scheduler.push_adapter("bad", "/no/such/adapter")

    run(go())


def test_sync_pool_pushes_the_trainers_adapters(servers, trained, tmp_path):
    async def go():
        async with DistributedLoRAScheduler(servers.urls) as scheduler:
            await scheduler.sync_pool(trained.pool, ["model_0_x", "model_1_x"], tmp_path)
            assert (tmp_path / "model_0_x" / "adapter_model.safetensors").is_file()
            for name in ("model_0_x", "model_1_x"):
                out = await scheduler.generate(name, HI, max_tokens=6, temperature=0)
                assert out.text == trained.want[name].text

    run(go())


# ---------------------------------------------------------------------- vLLM backend
def test_vllm_backend_imports_without_vllm_and_names_the_extra():
    from srl_trainers import vllm_backend

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(ImportError, match=r"pip install 'srl\[vllm\]'"):
        vllm_backend.VLLMGenerationBackend("some/model", eos_token_ids=[2])


@pytest.fixture
def fake_vllm(monkeypatch):
    """Just enough of vLLM's API (LLM, SamplingParams, LoRARequest) to check our glue."""
    calls = SimpleNamespace(init=None, generate=[], removed=[])

    class LLM:
        def __init__(self, **kwargs):
            calls.init = kwargs
            self.llm_engine = SimpleNamespace(remove_lora=calls.removed.append)

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            calls.generate.append((prompts, params, lora_request))
            outs = []
            for i, _ in enumerate(prompts):
                ids = [7, 8] if i % 2 else [7, 8, 2]  # odd rows hit max_tokens, even rows EOS
                steps = [
                    {t: SimpleNamespace(logprob=-0.5 * (j + 1)), 99: None}
                    for j, t in enumerate(ids)
                ]
                outs.append(
                    SimpleNamespace(
                        outputs=[SimpleNamespace(token_ids=ids, logprobs=steps, text="hi")]
                    )
                )
            return outs

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM
    vllm.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, int_id, path: SimpleNamespace(
        lora_name=name, lora_int_id=int_id, lora_path=path
    )
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    return calls


def test_vllm_backend_glue(fake_vllm, tmp_path):
    from srl_trainers.vllm_backend import VLLMGenerationBackend

    backend = VLLMGenerationBackend("ckpt", eos_token_ids=[2], max_lora_rank=8)
    assert fake_vllm.init["enable_lora"] and fake_vllm.init["max_lora_rank"] == 8
    assert fake_vllm.init["logprobs_mode"] == "processed_logprobs"
    backend.update_adapter("a", tmp_path / "a1")
    backend.update_adapter("b", tmp_path / "b1")
    backend.update_adapter("a", tmp_path / "a2")  # an update: a fresh LoRA id, the old one dropped
    assert fake_vllm.removed == [1]
    with pytest.raises(KeyError, match="ghost"):
        backend.generate([[1]], ["ghost"], max_new_tokens=3)

    gens = backend.generate(
        [[1, 2], [3], [4]], ["a", None, "b"], max_new_tokens=3, generator_seed=5
    )
    prompts, params, loras = fake_vllm.generate[-1]
    assert prompts == [
        {"prompt_token_ids": [1, 2]},
        {"prompt_token_ids": [3]},
        {"prompt_token_ids": [4]},
    ]
    assert [r and (r.lora_name, r.lora_int_id, r.lora_path) for r in loras] == [
        ("a", 3, str(tmp_path / "a2")),
        None,
        ("b", 2, str(tmp_path / "b1")),
    ]
    assert len({p.seed for p in params}) == 3  # one seed per row: identical prompts differ
    assert all(p.logprobs == 0 and p.stop_token_ids == [2] and p.max_tokens == 3 for p in params)
    assert all(p.stop is None for p in params)
    assert gens[0].prompt_ids == [1, 2] and gens[0].completion_ids == [7, 8, 2]
    assert gens[0].logprobs == [-0.5, -1.0, -1.5] and gens[0].finished and gens[0].text == "hi"
    assert gens[1].completion_ids == [7, 8] and not gens[1].finished

    backend.generate([[1]], [None], max_new_tokens=2, stop=["\n"])
    (stopped,) = fake_vllm.generate[-1][1]
    assert stopped.stop == ["\n"] and stopped.include_stop_str_in_output
    backend.generate([[1]], [None], max_new_tokens=2, do_sample=False, top_p=0.5)
    (greedy,) = fake_vllm.generate[-1][1]
    assert greedy.temperature == 0.0 and greedy.top_p == 1.0 and greedy.seed is None
