"""The distributed LoRA scheduler: LoRA adapters spread over OpenAI-compatible generation servers.

One generation server per GPU listens on ``base_port``, ``base_port + 1``, ...: vLLM
(``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve BASE --enable-lora --max-loras N
--max-lora-rank R --port P``) or ``python -m srl_trainers.serve --model BASE --port P``; both
offer the same endpoints (``/v1/models``, ``/v1/chat/completions``, ``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``).

* **Placement**: every adapter gets ``replicas`` home servers (default 1): the servers that
  hold the fewest adapters so far (ties: the lower port). With ``replicas=1`` the adapters are
  balanced by count and each push goes to one server; ``replicas=len(servers)`` replicates
  every adapter everywhere (pushes cost more, but every server can answer every adapter).
  Adapters already loaded on a server when :meth:`~DistributedLoRAScheduler.start` runs are
  adopted where they are.
* **Pushing**: :meth:`~DistributedLoRAScheduler.push_adapter` POSTs
  ``/v1/load_lora_adapter`` ``{"lora_name", "lora_path", "load_inplace": true}`` to each home
  server; a server that answers that the name is already loaded (vLLM without
  ``load_inplace``) gets an unload and a load. The path must be readable by the server (same
  machine, or a shared filesystem). After each update the trainer pushes the updated
  adapters (:meth:`~DistributedLoRAScheduler.sync_pool`).
* **Routing**: :meth:`~DistributedLoRAScheduler.generate` sends a chat completion to the home
  server of the adapter with the fewest requests in flight (ties: fewest served so far, then
  the lower port); the base model (``adapter=None``) may go to any server.

    scheduler = create_distributed_lora_scheduler(base_port=8001, num_gpus=4)
    await scheduler.start()
    await scheduler.push_adapter("model_0_qwen3", "/shared/ckpt/adapters/model_0_qwen3")
    out = await scheduler.generate("model_0_qwen3", [{"role": "user", "content": "hi"}])
    await scheduler.stop()
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "DistributedLoRAScheduler",
    "RemoteCompletion",
    "SchedulerError",
    "create_distributed_lora_scheduler",
]


class SchedulerError(RuntimeError):
    """A generation server is unreachable, or refused a request."""


@dataclass
class RemoteCompletion:
    """One chat completion from a generation server."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    server: str
    # with logprobs=True: the sampled token ids (EOS included) and their log-probs
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None


@dataclass
class _Server:
    url: str
    index: int
    base_model: str | None = None
    adapters: set[str] = field(default_factory=set)
    in_flight: int = 0
    served: int = 0
    failures: int = 0


class DistributedLoRAScheduler:
    """Places LoRA adapters on generation servers, pushes updates, routes requests.

    ``urls`` are the servers' base URLs (``http://host:port``, without ``/v1``).
    """

    def __init__(
        self,
        urls: list[str],
        *,
        replicas: int = 1,
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
        api_key: str | None = None,
    ) -> None:
        if not urls:
            raise ValueError("the scheduler needs at least one server URL")
        if not 1 <= replicas <= len(urls):
            raise ValueError(f"replicas={replicas} must be in [1, {len(urls)}] (the server count)")
        self.servers = [_Server(url.rstrip("/"), i) for i, url in enumerate(urls)]
        self.replicas = replicas
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None
        self._homes: dict[str, list[_Server]] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Check that every server answers ``GET /v1/models``; learn its base model and the
        adapters it already holds. Raises :class:`SchedulerError` naming the unreachable ones."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, headers=self._headers)
        answers = await asyncio.gather(
            *(self._client.get(f"{s.url}/v1/models") for s in self.servers),
            return_exceptions=True,
        )
        down = []
        for server, answer in zip(self.servers, answers):
            if isinstance(answer, BaseException):
                down.append(f"{server.url} ({type(answer).__name__}: {answer})")
            elif answer.status_code != 200:
                down.append(f"{server.url} (GET /v1/models answered {answer.status_code})")
            else:
                self._learn(server, answer.json().get("data", []))
        if down:
            await self.stop()
            raise SchedulerError(
                f"{len(down)} of {len(self.servers)} generation servers are unreachable: "
                f"{'; '.join(down)}. Start one per GPU on consecutive ports, e.g. "
                "`python -m srl_trainers.serve --port 8001` or `VLLM_ALLOW_RUNTIME_LORA_UPDATING"
                "=True vllm serve <model> --enable-lora --port 8001`."
            )

    def _learn(self, server: _Server, models: list[dict[str, Any]]) -> None:
        bases = [m["id"] for m in models if not m.get("parent")]
        server.base_model = bases[0] if bases else None
        server.adapters = {m["id"] for m in models if m.get("parent")}
        for name in server.adapters:
            homes = self._homes.setdefault(name, [])
            if server not in homes:
                homes.append(server)

    async def stop(self) -> None:
        """Close the HTTP connections (the servers keep running)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> DistributedLoRAScheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ placement
    def assign(self, name: str) -> list[str]:
        """The home servers of adapter ``name`` (placed now if it has none)."""
        homes = self._homes.get(name)
        if not homes:
            ranked = sorted(self.servers, key=lambda s: (self._load_count(s), s.index))
            homes = self._homes[name] = ranked[: self.replicas]
        return [s.url for s in homes]

    def _load_count(self, server: _Server) -> int:
        return sum(server in homes for homes in self._homes.values())

    @property
    def assignments(self) -> dict[str, list[str]]:
        """Adapter -> URLs of its home servers."""
        return {name: [s.url for s in homes] for name, homes in self._homes.items()}

    # ------------------------------------------------------------------ pushing adapters
    async def push_adapter(self, name: str, path: str | Path) -> list[str]:
        """Load (or reload) the adapter directory ``path`` as ``name`` on its home servers;
        returns their URLs."""
        self._require_started()
        self.assign(name)
        homes = self._homes[name]
        await asyncio.gather(*(self._load(s, name, str(path)) for s in homes))
        return [s.url for s in homes]

    async def _load(self, server: _Server, name: str, path: str) -> None:
        body = {"lora_name": name, "lora_path": path, "load_inplace": True}
        r = await self._client.post(f"{server.url}/v1/load_lora_adapter", json=body)
        if r.status_code == 400 and "already" in r.text.lower():  # vLLM without load_inplace
            await self._unload(server, name)
            r = await self._client.post(f"{server.url}/v1/load_lora_adapter", json=body)
        if r.status_code != 200:
            raise SchedulerError(
                f"{server.url} refused to load adapter {name!r} from {path}: "
                f"{r.status_code} {_error_text(r)}"
            )
        server.adapters.add(name)

    async def _unload(self, server: _Server, name: str) -> None:
        r = await self._client.post(
            f"{server.url}/v1/unload_lora_adapter", json={"lora_name": name}
        )
        if r.status_code not in (200, 404):
            raise SchedulerError(
                f"{server.url} refused to unload adapter {name!r}: {r.status_code} {_error_text(r)}"
            )
        server.adapters.discard(name)

    async def remove_adapter(self, name: str) -> None:
        """Unload ``name`` from its home servers and forget its placement."""
        self._require_started()
        homes = self._homes.pop(name, [])
        await asyncio.gather(*(self._unload(s, name) for s in homes))

    async def sync_pool(self, pool: Any, names: list[str], directory: str | Path) -> None:
        """Save adapters ``names`` of a :class:`~srl_trainers.models.ModelPool` under
        ``directory/<name>`` and push them (what the trainer does after each update)."""
        paths = {name: pool.save_adapter(name, Path(directory) / name) for name in names}
        await asyncio.gather(*(self.push_adapter(n, p.resolve()) for n, p in paths.items()))

    # ------------------------------------------------------------------ generation
    async def generate(
        self,
        adapter: str | None,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 32,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
        logprobs: bool = False,
    ) -> RemoteCompletion:
        """One chat completion with ``adapter`` (None: the base model), routed to the least
        busy server that holds it. ``logprobs=True`` also returns the sampled token ids and
        their log-probs (vLLM's ``return_tokens_as_token_ids``)."""
        self._require_started()
        server = self._route(adapter)
        model = adapter if adapter is not None else server.base_model
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
        }
        if seed is not None:
            body["seed"] = seed
        if stop:
            body["stop"] = stop
        if logprobs:
            body.update(logprobs=True, return_tokens_as_token_ids=True)
        server.in_flight += 1
        try:
            r = await self._client.post(f"{server.url}/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            server.failures += 1
            raise SchedulerError(f"{server.url}: {type(exc).__name__}: {exc}") from exc
        finally:
            server.in_flight -= 1
        server.served += 1
        if r.status_code != 200:
            server.failures += 1
            raise SchedulerError(
                f"{server.url} answered {r.status_code} for model {model!r}: {_error_text(r)}"
            )
        return _completion(r.json(), server.url, logprobs)

    async def generate_batch(
        self, adapters: list[str | None], conversations: list[list[dict[str, Any]]], **sampling
    ) -> list[RemoteCompletion]:
        """:meth:`generate` for many conversations at once (the servers batch them)."""
        if len(adapters) != len(conversations):
            raise ValueError(f"{len(adapters)} adapters but {len(conversations)} conversations")
        return list(
            await asyncio.gather(
                *(self.generate(a, m, **sampling) for a, m in zip(adapters, conversations))
            )
        )

    def _route(self, adapter: str | None) -> _Server:
        if adapter is None:
            candidates = self.servers
        else:
            candidates = self._homes.get(adapter, [])
            if not candidates:
                raise SchedulerError(
                    f"adapter {adapter!r} is on no server; push it first "
                    f"(known: {sorted(self._homes)})"
                )
        return min(candidates, key=lambda s: (s.in_flight, s.served, s.index))

    def _require_started(self) -> None:
        if self._client is None:
            raise SchedulerError("the scheduler is not started: call `await scheduler.start()`")

    def metrics(self) -> dict[str, float]:
        """``scheduler/<port>/...``: adapters held, requests served, failures, in flight."""
        out: dict[str, float] = {}
        for s in self.servers:
            key = f"scheduler/{s.url.rsplit(':', 1)[-1]}"
            out[f"{key}/adapters"] = float(self._load_count(s))
            out[f"{key}/served"] = float(s.served)
            out[f"{key}/failures"] = float(s.failures)
            out[f"{key}/in_flight"] = float(s.in_flight)
        return out


def create_distributed_lora_scheduler(
    base_port: int = 8001, num_gpus: int = 4, host: str = "127.0.0.1", **kwargs: Any
) -> DistributedLoRAScheduler:
    """A scheduler over ``num_gpus`` servers on ``http://host:base_port``, ``base_port + 1``,
    ... (``kwargs``: :class:`DistributedLoRAScheduler` options, e.g. ``replicas``)."""
    if num_gpus < 1:
        raise ValueError(f"num_gpus={num_gpus}: the scheduler needs at least one server")
    return DistributedLoRAScheduler(
        [f"http://{host}:{base_port + i}" for i in range(num_gpus)], **kwargs
    )


def _error_text(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:500]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return str(body.get("message", body) if isinstance(body, dict) else body)[:500]


def _completion(body: dict[str, Any], url: str, logprobs: bool) -> RemoteCompletion:
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    out = RemoteCompletion(
        text=choice["message"].get("content") or "",
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        server=url,
    )
    if logprobs:
        content = (choice.get("logprobs") or {}).get("content") or []
        out.token_ids = [int(t["token"].removeprefix("token_id:")) for t in content]
        out.logprobs = [float(t["logprob"]) for t in content]
    return out
