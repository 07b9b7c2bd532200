"""``python -m srl_trainers.serve``: an OpenAI-compatible HTTP server over a :class:`ModelPool`.

It serves a base model and any LoRA adapters saved by srl checkpoints, so people can play
against trained agents, evaluate them from other tools (anything that speaks the OpenAI API),
and the trainer can reach remote policies the same way it reaches vLLM servers.

    python -m srl_trainers.serve                                   # embedded SmolLM2, no adapter
    python -m srl_trainers.serve --checkpoint ./checkpoints/multimodel --port 8001
    python -m srl_trainers.serve --model /path/to/hf_model --adapter alice=ckpt/adapters/model_0_x
    curl localhost:8001/v1/chat/completions -H 'content-type: application/json' \\
        -d '{"model": "model_0_smollm2", "messages": [{"role": "user", "content": "hi"}]}'

Endpoints (request and response bodies as in OpenAI's API; the adapter endpoints as vLLM's):

* ``GET /v1/models``: the base (``--served-model-name``, default ``base``) and every adapter.
* ``POST /v1/chat/completions``, ``POST /v1/completions``: ``model`` names an adapter, or the
  base for no adapter. ``max_tokens``, ``temperature`` (0: greedy), ``top_p``, ``n``, ``seed``,
  ``stop`` (applied after generation), ``logprobs`` (sampled tokens only; vLLM's
  ``return_tokens_as_token_ids`` gives ``token_id:<id>`` tokens), ``stream`` (the finished
  completion in one chunk). Usage counts are in every response.
* ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}``: load a PEFT adapter
  directory (an srl checkpoint's ``adapters/<slot>``); an existing name gets the new weights.
* ``POST /v1/unload_lora_adapter`` ``{"lora_name"}``: remove an adapter.
* ``GET /health``.

Concurrent requests are batched: a background loop collects requests for up to
``batch_wait_ms`` (or ``max_batch_size`` prompts) and runs each group of requests with the
same sampling settings as ONE mixed-adapter ``ModelPool.generate`` call (requests with
different ``max_tokens`` share a call; each completion is cut to its own limit). A ``seed``
seeds its whole batch: a seeded request is reproducible when the same requests are batched
together (a single client sending one request at a time always is).

Errors are OpenAI-style JSON ``{"error": {"message", "type", "param", "code"}}``: 400 for a
malformed body or a bad parameter, 404 for an unknown model or adapter, 500 for an internal
error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from srl_trainers.models import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    Generation,
    ModelPool,
    cut_at_stop,
)

__all__ = [
    "BackgroundServer",
    "ServeError",
    "checkpoint_adapters",
    "create_app",
    "main",
    "make_parser",
    "remove_adapter",
]

logger = logging.getLogger(__name__)

MAX_N = 16  # completions per request


# ---------------------------------------------------------------------- errors
class ServeError(Exception):
    """An error answered as OpenAI-style JSON with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _ERROR_TYPES.get(status, "invalid_request_error")

    def response(self) -> JSONResponse:
        return _error_response(self.status, self.message, self.type, self.param, self.code)


_ERROR_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 500: "server_error"}


def _error_response(
    status: int, message: str, type: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


# ---------------------------------------------------------------------- request bodies
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use


class _Message(_Body):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ServeError(
                    400, "only text content parts are supported", param="messages.content"
                )
            parts.append(part["text"])
        return "".join(parts)


class _Sampling(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=MAX_N)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    return_tokens_as_token_ids: bool | None = False  # vLLM's extension


class ChatCompletionRequest(_Sampling):
    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=0)  # top alternatives are not computed


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=0)  # sampled tokens only: logprobs=0
    echo: bool | None = False


class LoadLoRAAdapterRequest(_Body):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)
    load_inplace: bool = False  # vLLM's flag; here a known name is always replaced


class UnloadLoRAAdapterRequest(_Body):
    lora_name: str = Field(min_length=1)


# ---------------------------------------------------------------------- adapters
def remove_adapter(pool: ModelPool, name: str) -> None:
    """Delete adapter ``name`` from ``pool`` (see :meth:`ModelPool.remove_adapter`)."""
    pool.remove_adapter(name)


def _check_adapter_dir(path: str) -> Path:
    src = Path(path).expanduser()
    if not (src / ADAPTER_WEIGHTS).is_file() or not (src / ADAPTER_CONFIG).is_file():
        raise ServeError(
            400,
            f"lora_path {path!r} is not a PEFT adapter directory (needs {ADAPTER_WEIGHTS} and "
            f"{ADAPTER_CONFIG}, as in an srl checkpoint's adapters/<slot>)",
            param="lora_path",
        )
    return src


def _load_adapter(pool: ModelPool, name: str, path: Path) -> None:
    """Load ``path`` as adapter ``name``; a known name gets the new weights (in place when the
    LoRA shapes match, else the old adapter is replaced)."""
    if name in pool.adapter_names:
        try:
            pool.load_adapter(name, path)
            return
        except ValueError:  # another rank / alpha / target modules: replace it
            remove_adapter(pool, name)
    pool.load_adapter(name, path)


# ---------------------------------------------------------------------- batching
@dataclass
class _Job:
    prompts: list[list[int]]
    adapter: str | None
    max_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    seed: int | None
    future: asyncio.Future = field(repr=False)

    def key(self) -> tuple:
        return (self.do_sample, self.temperature, self.top_p, self.seed)


class _Batcher:
    """Collects jobs for up to ``wait`` seconds or ``max_rows`` prompts, then runs each group
    of jobs with equal sampling settings as one ``pool.generate`` call in a worker thread."""

    def __init__(self, pool: ModelPool, max_rows: int, wait: float) -> None:
        self.pool = pool
        self.max_rows = max_rows
        self.wait = wait
        self.generate_calls = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self.lock: asyncio.Lock | None = None  # held while the model runs or changes

    def ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        self._loop = loop
        self._queue = asyncio.Queue()
        self.lock = asyncio.Lock()
        self._task = loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def submit(self, job: _Job) -> list[Generation]:
        self.ensure_started()
        await self._queue.put(job)
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            rows = len(jobs[0].prompts)
            deadline = loop.time() + self.wait
            while rows < self.max_rows:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                jobs.append(job)
                rows += len(job.prompts)
            groups: dict[tuple, list[_Job]] = defaultdict(list)
            for job in jobs:
                if not job.future.done():  # a cancelled request (client went away)
                    groups[job.key()].append(job)
            for group in groups.values():
                for chunk in self._chunks(group):
                    await self._generate(chunk)

    def _chunks(self, group: list[_Job]) -> Iterator[list[_Job]]:
        chunk, rows = [], 0
        for job in group:
            if chunk and rows + len(job.prompts) > self.max_rows:
                yield chunk
                chunk, rows = [], 0
            chunk.append(job)
            rows += len(job.prompts)
        if chunk:
            yield chunk

    async def _generate(self, jobs: list[_Job]) -> None:
        async with self.lock:
            runnable = []
            for job in jobs:  # an adapter may have been unloaded since the request came in
                if job.adapter is None or job.adapter in self.pool.adapter_names:
                    runnable.append(job)
                else:
                    _resolve(job, error=_unknown_model(job.adapter))
            if not runnable:
                return
            first = runnable[0]
            prompts = [p for job in runnable for p in job.prompts]
            adapters = [job.adapter for job in runnable for _ in job.prompts]
            self.generate_calls += 1
            try:
                gens = await asyncio.to_thread(
                    self.pool.generate,
                    prompts,
                    adapters,
                    max_new_tokens=max(job.max_tokens for job in runnable),
                    temperature=first.temperature,
                    top_p=first.top_p,
                    do_sample=first.do_sample,
                    generator_seed=first.seed,
                )
            except Exception as exc:
                logger.exception("generate failed")
                error = ServeError(500, f"generation failed: {type(exc).__name__}: {exc}")
                for job in runnable:
                    _resolve(job, error=error)
                return
        i = 0
        for job in runnable:
            _resolve(job, result=gens[i : i + len(job.prompts)])
            i += len(job.prompts)


def _resolve(job: _Job, *, result: Any = None, error: Exception | None = None) -> None:
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result)


def _unknown_model(name: str) -> ServeError:
    return ServeError(
        404, f"The model '{name}' does not exist", param="model", code="model_not_found"
    )


# ---------------------------------------------------------------------- outputs
@dataclass
class _Choice:
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str


def _finish(pool: ModelPool, gen: Generation, max_tokens: int, stop: list[str]) -> _Choice:
    """Cut a completion to ``max_tokens`` and at the first ``stop`` string (the text ends
    before it, as OpenAI's does; the tokens end with the one that completed it)."""
    if len(gen.completion_ids) > max_tokens:
        ids = gen.completion_ids[:max_tokens]
        gen = dataclasses.replace(
            gen,
            completion_ids=ids,
            logprobs=gen.logprobs[:max_tokens],
            text=_decode(pool, ids),
            finished=False,
        )
    stops = [s for s in stop if s]
    cut = cut_at_stop(gen, pool.tokenizer, stops)
    if cut is gen:
        reason = "stop" if gen.finished else "length"
        return _Choice(gen.text, gen.completion_ids, gen.logprobs, reason)
    text = gen.text[: min(gen.text.find(s) for s in stops if s in gen.text)]
    return _Choice(text, cut.completion_ids, cut.logprobs, "stop")


def _decode(pool: ModelPool, ids: list[int]) -> str:
    return pool.tokenizer.decode(ids, skip_special_tokens=True)


def _token_strings(pool: ModelPool, ids: list[int], as_ids: bool) -> list[str]:
    if as_ids:
        return [f"token_id:{t}" for t in ids]
    return [pool.tokenizer.decode([t]) for t in ids]


def _usage(prompt_tokens: int, choices: list[_Choice]) -> dict[str, int]:
    completion = sum(len(c.token_ids) for c in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def _sse(head: dict[str, Any], first: dict[str, Any], last: dict[str, Any]) -> StreamingResponse:
    """A finished completion as server-sent events: the content chunk, the finish chunk,
    ``[DONE]`` (generation is batched, so tokens are not streamed as they come)."""

    async def events() -> AsyncIterator[str]:
        for choice in (first, last):
            yield f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


# ---------------------------------------------------------------------- the app
def create_app(
    pool: ModelPool,
    *,
    served_model_name: str = "base",
    max_batch_size: int = 32,
    batch_wait_ms: float = 10,
    default_max_tokens: int = 256,
    adapter_paths: dict[str, str] | None = None,
) -> FastAPI:
    """An OpenAI-compatible FastAPI app over ``pool`` (see the module docstring).

    ``served_model_name`` is the ``model`` that means "no adapter"; every adapter of the pool
    is served under its own name (``adapter_paths``: where the pool's adapters came from, for
    ``/v1/models``). ``app.state.batcher.generate_calls`` counts the batched ``generate``
    calls made so far.
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size={max_batch_size} must be >= 1")
    if batch_wait_ms < 0:
        raise ValueError(f"batch_wait_ms={batch_wait_ms} must be >= 0")
    if served_model_name in pool.adapter_names:
        raise ValueError(f"served_model_name {served_model_name!r} is also an adapter name")
    batcher = _Batcher(pool, max_batch_size, batch_wait_ms / 1000)
    adapter_paths = {name: (adapter_paths or {}).get(name) for name in pool.adapter_names}
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.stop()

    app = FastAPI(title="srl serve", lifespan=lifespan)
    app.state.pool = pool
    app.state.batcher = batcher
    app.state.served_model_name = served_model_name

    # ------------------------------------------------------------------ error handlers
    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request body"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        if first.get("type") == "json_invalid":
            message, param = "the request body is not valid JSON", None
        return _error_response(400, message, "invalid_request_error", param)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error on %s", request.url.path, exc_info=exc)
        return _error_response(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return _error_response(exc.status_code, str(exc.detail), kind)

    # ------------------------------------------------------------------ helpers
    def adapter_for(model: str) -> str | None:
        if model == served_model_name:
            return None
        if model in pool.adapter_names:
            return model
        raise _unknown_model(model)

    def sampling(req: _Sampling, max_tokens: int | None, prompt_lens: list[int]) -> dict:
        if req.stream and (req.n or 1) > 1:
            raise ServeError(400, "stream=true supports n=1 only", param="n")
        temperature = 1.0 if req.temperature is None else req.temperature
        limit = max_tokens if max_tokens is not None else default_max_tokens
        longest = max(prompt_lens)
        if longest + limit > pool.kv_cache_size:
            raise ServeError(
                400,
                f"This model's maximum context length is {pool.kv_cache_size} tokens. However, "
                f"you requested {longest + limit} tokens ({longest} in the prompt, {limit} for "
                "the completion). Please reduce the prompt or max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        greedy = temperature == 0
        return {
            "max_tokens": limit,
            "do_sample": not greedy,
            "temperature": 1.0 if greedy else temperature,
            "top_p": 1.0 if greedy or req.top_p is None else req.top_p,
            "seed": req.seed,
        }

    async def run(
        req: _Sampling, prompts: list[list[int]], adapter: str | None, params: dict
    ) -> list[list[_Choice]]:
        """Complete each prompt ``n`` times; choices per prompt."""
        n = req.n or 1
        job = _Job(
            prompts=[p for p in prompts for _ in range(n)],
            adapter=adapter,
            future=asyncio.get_running_loop().create_future(),
            **params,
        )
        gens = await batcher.submit(job)
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        choices = [_finish(pool, g, params["max_tokens"], stop) for g in gens]
        return [choices[i * n : (i + 1) * n] for i in range(len(prompts))]

    def encode(text: str) -> list[int]:
        ids = pool.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ServeError(400, "the prompt is empty", param="prompt")
        return list(ids)

    # ------------------------------------------------------------------ endpoints
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [
            {
                "id": served_model_name,
                "object": "model",
                "created": created,
                "owned_by": "srl",
                "root": pool.checkpoint,
                "parent": None,
                "max_model_len": pool.kv_cache_size,
            }
        ]
        for name in pool.adapter_names:
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "srl",
                    "root": adapter_paths.get(name),
                    "parent": served_model_name,
                    "max_model_len": pool.kv_cache_size,
                }
            )
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest):
        adapter = adapter_for(req.model)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            text = pool.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # a template that rejects the roles or their order
            raise ServeError(
                400, f"the chat template rejected the messages: {exc}", param="messages"
            ) from None
        prompt = encode(text)
        max_tokens = req.max_completion_tokens or req.max_tokens
        params = sampling(req, max_tokens, [len(prompt)])
        (choices,) = await run(req, [prompt], adapter, params)
        as_ids = bool(req.return_tokens_as_token_ids)

        def logprobs(c: _Choice) -> dict[str, Any] | None:
            if not req.logprobs:
                return None
            tokens = _token_strings(pool, c.token_ids, as_ids)
            return {
                "content": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
                    for t, lp in zip(tokens, c.logprobs)
                ]
            }

        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            c = choices[0]
            head = {"id": rid, "object": "chat.completion.chunk", "created": now}
            delta = {"role": "assistant", "content": c.text}
            return _sse(
                {**head, "model": req.model},
                {"index": 0, "delta": delta, "logprobs": logprobs(c), "finish_reason": None},
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": c.finish_reason},
            )
        return {
            "id": rid,
            "object": "chat.completion",
            "created": now,
            "model": req.model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": logprobs(c),
                    "finish_reason": c.finish_reason,
                }
                for i, c in enumerate(choices)
            ],
            "usage": _usage(len(prompt), choices),
        }

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        adapter = adapter_for(req.model)
        if req.echo:
            raise ServeError(400, "echo=true is not supported", param="echo")
        raw = req.prompt
        if isinstance(raw, str):
            prompts = [encode(raw)]
        elif raw and all(isinstance(p, int) for p in raw):
            prompts = [list(raw)]
        elif raw and all(isinstance(p, str) for p in raw):
            prompts = [encode(p) for p in raw]
        else:
            prompts = [list(p) for p in raw]
        if not prompts or any(not p for p in prompts):
            raise ServeError(400, "every prompt needs at least one token", param="prompt")
        vocab = len(pool.tokenizer)
        if any(t < 0 or t >= vocab for p in prompts for t in p):
            raise ServeError(400, f"token ids must be in [0, {vocab})", param="prompt")
        params = sampling(req, req.max_tokens or 16, [len(p) for p in prompts])
        per_prompt = await run(req, prompts, adapter, params)
        choices = [c for cs in per_prompt for c in cs]
        as_ids = bool(req.return_tokens_as_token_ids)

        def logprobs(c: _Choice) -> dict[str, Any] | None:
            if req.logprobs is None:
                return None
            tokens = _token_strings(pool, c.token_ids, as_ids)
            offsets = [0]
            for t in tokens[:-1]:
                offsets.append(offsets[-1] + len(t))
            return {
                "tokens": tokens,
                "token_logprobs": c.logprobs,
                "top_logprobs": None,
                "text_offset": offsets[: len(tokens)],
            }

        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        body_choices = [
            {"index": i, "text": c.text, "logprobs": logprobs(c), "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)
        ]
        if req.stream:
            head = {"id": rid, "object": "text_completion", "created": now, "model": req.model}
            reason = choices[0].finish_reason
            end = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
            return _sse(head, {**body_choices[0], "finish_reason": None}, end)
        usage = _usage(sum(len(p) for p in prompts), choices)
        return {
            "id": rid,
            "object": "text_completion",
            "created": now,
            "model": req.model,
            "choices": body_choices,
            "usage": usage,
        }

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(req: LoadLoRAAdapterRequest) -> PlainTextResponse:
        name = req.lora_name
        if name == served_model_name:
            raise ServeError(400, f"lora_name {name!r} is the base model's name", param="lora_name")
        path = _check_adapter_dir(req.lora_path)
        batcher.ensure_started()
        async with batcher.lock:
            try:
                await asyncio.to_thread(_load_adapter, pool, name, path)
            except ValueError as exc:  # a bad name, or an adapter that does not fit the base
                raise ServeError(
                    400, f"cannot load adapter {name!r}: {exc}", param="lora_name"
                ) from None
            except Exception as exc:
                logger.exception("loading adapter %s from %s failed", name, path)
                raise ServeError(
                    500, f"loading adapter {name!r} failed: {type(exc).__name__}: {exc}"
                ) from None
        adapter_paths[name] = str(path)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(req: UnloadLoRAAdapterRequest) -> PlainTextResponse:
        name = req.lora_name
        batcher.ensure_started()
        async with batcher.lock:
            if name not in pool.adapter_names:
                raise ServeError(
                    404,
                    f"The lora adapter '{name}' cannot be found.",
                    param="lora_name",
                    code="model_not_found",
                )
            await asyncio.to_thread(remove_adapter, pool, name)
        adapter_paths.pop(name, None)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    return app


# ---------------------------------------------------------------------- in-process server
class BackgroundServer:
    """Run an ASGI app with uvicorn in a background thread (notebooks, tests, examples).

    >>> with BackgroundServer(create_app(pool)) as server:
    ...     client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")

    ``port=0`` picks a free port; ``url`` is ``http://host:port``.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = host, self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name=f"srl-serve-{self.port}",
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- CLI
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m srl_trainers.serve",
        description="Serve a base model and srl LoRA adapters over an OpenAI-compatible API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        default=None,
        help="base model: 'smollm2' (the embedded SmolLM2-135M-Instruct), a model type from "
        "srl's defaults, a local HF checkpoint directory or a cached hub id (default: the base "
        "recorded in --checkpoint, else smollm2)",
    )
    parser.add_argument(
        "--adapter",
        metavar="NAME=DIR",
        action="append",
        default=[],
        help="load a PEFT adapter directory (e.g. <checkpoint>/adapters/<slot>) as NAME; "
        "repeatable",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="DIR",
        default=None,
        help="load every adapter of an srl checkpoint (a checkpoint directory, or a "
        "checkpoint_dir: its latest checkpoint), each under its slot id",
    )
    parser.add_argument(
        "--served-model-name",
        default="base",
        help="the model name that means the base model (no adapter)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float32", "float16"],
        help="model dtype",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device")
    parser.add_argument(
        "--kv-cache-size",
        type=int,
        default=10000,
        help="context length in tokens (prompt + completion)",
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=32, help="prompts per batched generate call"
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=10,
        help="how long to collect concurrent requests into one batch",
    )
    parser.add_argument(
        "--default-max-tokens",
        type=int,
        default=256,
        help="completion tokens when a request gives no max_tokens",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def checkpoint_adapters(directory: str | Path) -> tuple[Path, dict[str, Path], str | None]:
    """(checkpoint dir, slot -> adapter dir, the base model the slots were trained on).

    ``directory`` is a checkpoint (it has ``adapters/``) or a checkpoint_dir (its latest
    complete checkpoint is used). The base model is read from the checkpoint's metadata; it
    is None when the slots use several base models or the metadata says nothing.
    """
    from srl_trainers.checkpoint import CheckpointManager

    path = Path(directory).expanduser()
    if not (path / "adapters").is_dir():
        path = CheckpointManager(path).resolve("latest")  # raises with a clear message
    adapters = {
        d.name: d for d in sorted((path / "adapters").iterdir()) if (d / ADAPTER_WEIGHTS).is_file()
    }
    if not adapters:
        raise FileNotFoundError(f"checkpoint {path} holds no adapters in {path / 'adapters'}")
    base = None
    meta_file = path / "metadata.json"
    if meta_file.is_file():
        from srl_trainers.config import DEFAULT_MODEL_NAMES

        config = json.loads(meta_file.read_text()).get("config", {})
        types, n = config.get("model_types") or [], config.get("num_models") or 0
        names = {**DEFAULT_MODEL_NAMES, **(config.get("model_names") or {})}
        bases = {names.get(types[i % len(types)]) for i in range(n)} if types else set()
        bases.discard(None)
        if len(bases) == 1:
            base = bases.pop()
    return path, adapters, base


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    adapters: dict[str, Path] = {}
    model = args.model
    try:
        if args.checkpoint:
            ckpt, found, base = checkpoint_adapters(args.checkpoint)
            adapters.update(found)
            print(f"srl serve: checkpoint {ckpt}: adapters {', '.join(found)}", flush=True)
            if model is None and base is not None:
                model = base
        for spec in args.adapter:
            name, sep, directory = spec.partition("=")
            if not sep or not name or not directory:
                parser.error(f"--adapter {spec!r}: use NAME=DIR")
            adapters[name] = Path(directory)
    except FileNotFoundError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    from srl_trainers.config import DEFAULT_MODEL_NAMES
    from srl_trainers.models import ModelUnavailableError

    model = model or "smollm2"
    model = DEFAULT_MODEL_NAMES.get(model, model)
    try:
        pool = ModelPool(
            model, dtype=args.dtype, device=args.device, kv_cache_size=args.kv_cache_size
        )
        for name, directory in adapters.items():
            _load_adapter(pool, name, _check_adapter_dir(str(directory)))
        app = create_app(
            pool,
            served_model_name=args.served_model_name,
            max_batch_size=args.max_batch_size,
            batch_wait_ms=args.batch_wait_ms,
            default_max_tokens=args.default_max_tokens,
            adapter_paths={name: str(path) for name, path in adapters.items()},
        )
    except (ModelUnavailableError, FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except ServeError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc.message}\n")
    names = [args.served_model_name, *pool.adapter_names]
    print(
        f"srl serve: {model} on http://{args.host}:{args.port}/v1, models: {', '.join(names)}",
        flush=True,
    )
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
