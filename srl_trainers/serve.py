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
  base for no adapter. ``max_tokens``, ``temperature`` (0: greedy), ``top_p``, ``n``, ``seed``
  (64-bit), ``stop`` (applied after generation), ``logprobs`` (sampled tokens only; vLLM's
  ``return_tokens_as_token_ids`` gives ``token_id:<id>`` tokens), ``stream`` (the finished
  completion in one chunk; ``stream_options.include_usage`` adds OpenAI's final chunk with the
  usage and no choices). Usage counts are in every response.
* ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path", "load_inplace"}``: load a PEFT
  adapter directory (an srl checkpoint's ``adapters/<slot>``). Only from under the
  directories the operator allows (``--adapter-dir``; none: loading is off); a name already
  served is refused unless ``load_inplace`` is true (vLLM's flag), which replaces its weights.
* ``POST /v1/unload_lora_adapter`` ``{"lora_name"}``: remove an adapter.
* ``GET /health``.

Security: with ``--api-key`` (or ``SRL_API_KEY``) every route needs ``Authorization: Bearer
<key>`` (what OpenAI clients send), else 401. The server binds 127.0.0.1 unless told
otherwise and warns when it listens elsewhere without a key. Responses name no server paths.

Limits: ``max_tokens`` plus the prompt must fit the model's context (its
``max_position_embeddings``, or ``--kv-cache-size`` when smaller; ``/v1/models`` gives it as
``max_model_len``). A request that has not finished after ``--request-timeout`` seconds is
answered 504, and its generation stops, as it does when its client goes away. SIGTERM stops
the server within a few seconds (in-flight requests get ``SHUTDOWN_GRACE_S``).

Concurrent requests are batched: a background loop collects requests for up to
``batch_wait_ms`` (or ``max_batch_size`` rows, a row being one completion of one prompt) and
runs the rows of requests with the same sampling settings as mixed-adapter
``ModelPool.generate`` calls of at most ``max_batch_size`` rows (requests with different
``max_tokens`` share a call; each completion is cut to its own limit; a large request takes
several calls, in order). A ``seed`` seeds its call (the calls after the first of a request
with ``seed + row offset``): a seeded request is reproducible when the same requests are
batched together (a single client sending one request at a time always is).

Errors are OpenAI-style JSON ``{"error": {"message", "type", "param", "code"}}``: 400 for a
malformed body or a bad parameter, 401 for a missing or wrong API key, 403 for an adapter
path the server does not allow, 404 for an unknown model or adapter, 504 for a request past
its timeout, 500 for an internal error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from srl_trainers.cli import ArgumentParser
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
SHUTDOWN_GRACE_S = 3  # on SIGTERM, how long in-flight requests may still run
SEED_RANGE = (-(2**63), 2**63 - 1)  # 64-bit, as vLLM's


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
        self.type = type or _error_type(status)

    def response(self) -> JSONResponse:
        return _error_response(self.status, self.message, self.type, self.param, self.code)


def _error_type(status: int) -> str:
    return "server_error" if status >= 500 else "invalid_request_error"


def _error_response(
    status: int, message: str, type: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


# ---------------------------------------------------------------------- request bodies
def _check_text(value: Any, path: str) -> None:
    """400 for a string with a lone UTF-16 surrogate (JSON allows ``"\\ud800"``; it is no
    Unicode text, and the tokenizer cannot encode it), anywhere in a request body."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ServeError(
                400,
                f"{path or 'the body'} holds a lone surrogate ({value[exc.start]!r} at "
                f"character {exc.start}), which is not valid Unicode text",
                param=path or None,
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, f"{path}.{i}" if path else str(i))


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        # A ServeError is no ValueError: it passes through pydantic to the app's handler.
        _check_text(data, "")
        return data


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


class _StreamOptions(_Body):
    include_usage: bool | None = False


class _Sampling(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=MAX_N)
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
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
    load_inplace: bool = False  # vLLM's flag: replace the weights of a name already served


class UnloadLoRAAdapterRequest(_Body):
    lora_name: str = Field(min_length=1)


# ---------------------------------------------------------------------- adapters
def remove_adapter(pool: ModelPool, name: str) -> None:
    """Delete adapter ``name`` from ``pool`` (see :meth:`ModelPool.remove_adapter`)."""
    pool.remove_adapter(name)


def _is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_WEIGHTS).is_file() and (path / ADAPTER_CONFIG).is_file()


def _not_an_adapter(lora_path: str) -> ServeError:
    return ServeError(
        400,
        f"lora_path {lora_path!r} is not a PEFT adapter directory (needs {ADAPTER_WEIGHTS} and "
        f"{ADAPTER_CONFIG}, as in an srl checkpoint's adapters/<slot>)",
        param="lora_path",
    )


def _allowed_adapter_dir(lora_path: str, roots: Sequence[Path]) -> Path:
    """The adapter directory a client's ``lora_path`` names, if it lies under one of ``roots``
    (resolved directories) once symlinks and ``..`` are resolved: 403 otherwise, and when
    ``roots`` is empty (loading over HTTP is off). A relative ``lora_path`` is looked up
    under each root in turn; ``~`` is not expanded. No error names a server path."""
    if not roots:
        raise ServeError(
            403,
            "loading adapters over HTTP is off on this server: its operator can allow the "
            "adapter directories under DIR with --adapter-dir DIR",
            param="lora_path",
            code="adapter_loading_disabled",
        )
    given = Path(lora_path)
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    try:
        found = [c.resolve() for c in candidates]
    except (OSError, ValueError):  # a NUL byte, a symlink loop
        raise _not_an_adapter(lora_path) from None
    inside = [p for p in found if any(p.is_relative_to(r) for r in roots)]
    if not inside:
        raise ServeError(
            403,
            f"lora_path {lora_path!r} is outside the adapter directories this server allows "
            "(symlinks and '..' are resolved first)",
            param="lora_path",
            code="adapter_path_forbidden",
        )
    for path in inside:
        if _is_adapter_dir(path):
            return path
    raise _not_an_adapter(lora_path)


def _load_adapter(pool: ModelPool, name: str, path: Path) -> None:
    """Load ``path`` as adapter ``name``; a known name gets the new weights (in place when the
    LoRA shapes match, else the old adapter is replaced). An adapter that does not fit the
    base is refused (ValueError) before anything changes."""
    pool.check_adapter_fits(path)
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
    """One request's rows (a prompt per completion) and how to sample them. Its ``future`` is
    done once it is answered, or given up (a timeout, its client gone): then no more of its
    rows run."""

    prompts: list[list[int]]
    adapter: str | None
    max_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    seed: int | None
    future: asyncio.Future = field(repr=False)
    results: list[Generation] = field(default_factory=list, repr=False)  # rows done so far

    def key(self) -> tuple:
        return (self.do_sample, self.temperature, self.top_p, self.seed)

    @property
    def rows_left(self) -> int:
        return len(self.prompts) - len(self.results)


class _Batcher:
    """Runs jobs as ``pool.generate`` calls of at most ``max_rows`` rows, in a worker thread.

    It collects jobs for up to ``wait`` seconds (or until ``max_rows`` rows wait), then takes
    the next rows of the oldest job and of the other waiting jobs with the same sampling
    settings, in order, up to ``max_rows``; a large job thus runs as several calls, and jobs
    given up in between are dropped. A call ends early (``cancel``) once every job in it is
    given up, or the server is stopping.
    """

    def __init__(self, pool: ModelPool, max_rows: int, wait: float) -> None:
        self.pool = pool
        self.max_rows = max_rows
        self.wait = wait
        self.generate_calls = 0
        self.closing = False  # read by the worker thread: stop generating
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
        self.closing = False
        self._task = loop.create_task(self._run())

    async def stop(self) -> None:
        self.closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def submit(self, job: _Job) -> None:
        self.ensure_started()
        self._queue.put_nowait(job)

    async def _run(self) -> None:
        pending: list[_Job] = []
        while True:
            if not pending:
                pending.append(await self._queue.get())
            await self._collect(pending)
            pending = [job for job in pending if not job.future.done()]
            if pending:
                await self._generate(self._next_call(pending))

    async def _collect(self, pending: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while sum(job.rows_left for job in pending) < self.max_rows:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                pending.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())

    def _next_call(self, pending: list[_Job]) -> list[tuple[_Job, int]]:
        """(job, rows to run) for the next call: the oldest job's settings, up to max_rows."""
        key, call, rows = pending[0].key(), [], 0
        for job in pending:
            if job.key() == key and rows < self.max_rows:
                take = min(job.rows_left, self.max_rows - rows)
                call.append((job, take))
                rows += take
        return call

    async def _generate(self, call: list[tuple[_Job, int]]) -> None:
        async with self.lock:
            runnable = []
            for job, take in call:  # an adapter may have been unloaded since the request came in
                if job.adapter is None or job.adapter in self.pool.adapter_names:
                    runnable.append((job, take))
                else:
                    _resolve(job, error=_unknown_model(job.adapter))
            if not runnable:
                return
            first = runnable[0][0]
            prompts, adapters = [], []
            for job, take in runnable:
                done = len(job.results)
                prompts += job.prompts[done : done + take]
                adapters += [job.adapter] * take
            seed = first.seed
            if seed is not None:  # a request's later calls must not repeat its first one
                seed = (seed + len(first.results)) % 2**64

            def cancel() -> bool:  # in the worker thread; futures are only read
                return self.closing or all(job.future.done() for job, _ in runnable)

            self.generate_calls += 1
            try:
                gens = await asyncio.to_thread(
                    self.pool.generate,
                    prompts,
                    adapters,
                    max_new_tokens=max(job.max_tokens for job, _ in runnable),
                    temperature=first.temperature,
                    top_p=first.top_p,
                    do_sample=first.do_sample,
                    generator_seed=seed,
                    cancel=cancel,
                )
            except Exception as exc:
                logger.exception("generate failed")
                error = ServeError(500, f"generation failed: {type(exc).__name__}: {exc}")
                for job, _ in runnable:
                    _resolve(job, error=error)
                return
        i = 0
        for job, take in runnable:
            if self.closing:  # the call may have been cut short
                _resolve(job, error=ServeError(503, "the server is shutting down"))
                continue
            job.results += gens[i : i + take]
            i += take
            if not job.rows_left:
                _resolve(job, result=job.results)


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


def _sse(
    head: dict[str, Any],
    first: dict[str, Any],
    last: dict[str, Any],
    usage: dict[str, int] | None,
) -> StreamingResponse:
    """A finished completion as server-sent events: the content chunk, the finish chunk,
    with ``usage`` (``stream_options.include_usage``) a last chunk with the usage and no
    choices as OpenAI's (the others then carry ``"usage": null``), and ``[DONE]``
    (generation is batched, so tokens are not streamed as they come)."""
    chunks = [{**head, "choices": [first]}, {**head, "choices": [last]}]
    if usage is not None:
        chunks = [{**c, "usage": None} for c in chunks] + [{**head, "choices": [], "usage": usage}]

    async def events() -> AsyncIterator[str]:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


# ---------------------------------------------------------------------- the API key
class _RequireAPIKey:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <key>`` (compared in
    constant time), else a 401 with an OpenAI-style body."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                message = (
                    "Incorrect API key provided."
                    if given
                    else "You didn't provide an API key: send 'Authorization: Bearer <key>'."
                )
                response = _error_response(
                    401, message, "invalid_request_error", code="invalid_api_key"
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the body is already read, so ``receive`` waits)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# ---------------------------------------------------------------------- the app
def create_app(
    pool: ModelPool,
    *,
    served_model_name: str = "base",
    max_batch_size: int = 32,
    batch_wait_ms: float = 10,
    default_max_tokens: int = 256,
    request_timeout: float = 300.0,
    api_key: str | None = None,
    adapter_dirs: Sequence[str | Path] = (),
) -> FastAPI:
    """An OpenAI-compatible FastAPI app over ``pool`` (see the module docstring).

    ``served_model_name`` is the ``model`` that means "no adapter"; every adapter of the pool
    is served under its own name. ``max_batch_size``: rows per generate call.
    ``request_timeout``: seconds before a request is answered 504 and its work stopped.
    ``api_key``: required on every route when given. ``adapter_dirs``: the directories
    ``/v1/load_lora_adapter`` may load from (anywhere under them; none: loading is off).
    ``app.state.batcher.generate_calls`` counts the batched ``generate`` calls made so far.
    """
    context = min(pool.kv_cache_size, pool.model.config.get_text_config().max_position_embeddings)
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size={max_batch_size} must be >= 1")
    if not batch_wait_ms >= 0 or not math.isfinite(batch_wait_ms):
        raise ValueError(f"batch_wait_ms={batch_wait_ms} must be a number >= 0")
    if not 1 <= default_max_tokens < context:
        raise ValueError(
            f"default_max_tokens={default_max_tokens} must be in [1, {context}): the model's "
            f"context is {context} tokens (kv_cache_size {pool.kv_cache_size}, the model's "
            "max_position_embeddings)"
        )
    if not request_timeout > 0 or not math.isfinite(request_timeout):
        raise ValueError(f"request_timeout={request_timeout} must be a number of seconds > 0")
    if api_key is not None and not api_key:
        raise ValueError("api_key must not be empty (None: no key)")
    if served_model_name in pool.adapter_names:
        raise ValueError(f"served_model_name {served_model_name!r} is also an adapter name")
    roots = [Path(d).expanduser().resolve() for d in adapter_dirs]
    for root in roots:
        if not root.is_dir():
            raise ValueError(f"adapter directory {root} does not exist or is not a directory")
    batcher = _Batcher(pool, max_batch_size, batch_wait_ms / 1000)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.stop()

    app = FastAPI(title="srl serve", lifespan=lifespan)
    app.state.pool = pool
    app.state.batcher = batcher
    app.state.served_model_name = served_model_name
    app.state.context = context  # tokens: prompt + completion
    if api_key is not None:
        app.add_middleware(_RequireAPIKey, key=api_key)

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
        message = f"internal error ({type(exc).__name__}; the server log has the details)"
        return _error_response(500, message, "server_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, str(exc.detail), _error_type(exc.status_code))

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
        if req.stream_options is not None and not req.stream:
            raise ServeError(
                400, "stream_options is only allowed with stream=true", param="stream_options"
            )
        temperature = 1.0 if req.temperature is None else req.temperature
        limit = max_tokens if max_tokens is not None else default_max_tokens
        longest = max(prompt_lens)
        if longest + limit > context:
            raise ServeError(
                400,
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {longest + limit} tokens ({longest} in the prompt, {limit} for "
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

    async def outcome(request: Request, job: _Job) -> list[Generation]:
        """The job's completions; 504 past ``request_timeout``. A job whose client goes away,
        times out or whose handler is cancelled (shutdown) is given up: its future is
        cancelled, so the batcher skips its rows or stops the call running them."""
        batcher.submit(job)
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait(
                {job.future, gone}, timeout=request_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
            job.future.cancel()  # nothing when it has its result
        if job.future in done:
            return job.future.result()
        if gone in done:
            logger.info("%s: the client went away; its generation was stopped", request.url.path)
            raise ServeError(499, "the client closed the connection", code="client_closed")
        raise ServeError(
            504,
            f"the request did not finish within the server's request_timeout of "
            f"{request_timeout:g} s; ask for fewer tokens (max_tokens, n, prompts) or ask the "
            "operator to raise --request-timeout",
            code="timeout",
        )

    async def run(
        request: Request,
        req: _Sampling,
        prompts: list[list[int]],
        adapter: str | None,
        params: dict,
    ) -> list[list[_Choice]]:
        """Complete each prompt ``n`` times; choices per prompt."""
        n = req.n or 1
        job = _Job(
            prompts=[p for p in prompts for _ in range(n)],
            adapter=adapter,
            future=asyncio.get_running_loop().create_future(),
            **params,
        )
        gens = await outcome(request, job)
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        choices = [_finish(pool, g, params["max_tokens"], stop) for g in gens]
        return [choices[i * n : (i + 1) * n] for i in range(len(prompts))]

    def include_usage(req: _Sampling) -> bool:
        return bool(req.stream_options and req.stream_options.include_usage)

    def encode(text: str) -> list[int]:
        ids = pool.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ServeError(400, "the prompt is empty", param="prompt")
        return list(ids)

    def model_card(name: str, parent: str | None) -> dict[str, Any]:
        # "root" is the model's own name: a path would tell clients about the server's disk
        return {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "srl",
            "root": name,
            "parent": parent,
            "max_model_len": context,
        }

    # ------------------------------------------------------------------ endpoints
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [model_card(served_model_name, None)]
        data += [model_card(name, served_model_name) for name in pool.adapter_names]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request):
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
        (choices,) = await run(request, req, [prompt], adapter, params)
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
        usage = _usage(len(prompt), choices)
        if req.stream:
            c = choices[0]
            head = {"id": rid, "object": "chat.completion.chunk", "created": now}
            delta = {"role": "assistant", "content": c.text}
            return _sse(
                {**head, "model": req.model},
                {"index": 0, "delta": delta, "logprobs": logprobs(c), "finish_reason": None},
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": c.finish_reason},
                usage if include_usage(req) else None,
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
            "usage": usage,
        }

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
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
        per_prompt = await run(request, req, prompts, adapter, params)
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
        usage = _usage(sum(len(p) for p in prompts), choices)
        if req.stream:
            head = {"id": rid, "object": "text_completion", "created": now, "model": req.model}
            reason = choices[0].finish_reason
            end = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
            return _sse(
                head,
                {**body_choices[0], "finish_reason": None},
                end,
                usage if include_usage(req) else None,
            )
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
        path = _allowed_adapter_dir(req.lora_path, roots)

        def client_view(exc: Exception) -> str:  # the client's lora_path, not the server's path
            return str(exc).replace(str(path), req.lora_path)

        batcher.ensure_started()
        async with batcher.lock:
            if name in pool.adapter_names and not req.load_inplace:
                raise ServeError(
                    400,
                    f"The lora adapter '{name}' has already been loaded; to replace its "
                    "weights, send load_inplace=true",
                    param="lora_name",
                    code="adapter_exists",
                )
            try:
                pool.check_adapter_fits(path)
            except ValueError as exc:
                raise ServeError(
                    400,
                    f"lora_path {req.lora_path!r} does not fit this server's base model: "
                    f"{client_view(exc)}",
                    param="lora_path",
                ) from None
            try:
                await asyncio.to_thread(_load_adapter, pool, name, path)
            except ValueError as exc:  # a bad name, or an adapter PEFT refuses
                raise ServeError(
                    400, f"cannot load adapter {name!r}: {client_view(exc)}", param="lora_name"
                ) from None
            except Exception as exc:
                logger.exception("loading adapter %s from %s failed", name, path)
                raise ServeError(
                    500,
                    f"loading adapter {name!r} failed ({type(exc).__name__}; the server log "
                    "has the details)",
                ) from None
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

        self._socket = _bind(host, port)
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
def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn listens on it); OSError when it cannot be."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_warning(host: str, api_key: str | None) -> str | None:
    """The warning for listening on a non-loopback address without an API key, else None."""
    if api_key or host == "localhost":
        return None
    with contextlib.suppress(ValueError):  # a host name: it may be reachable from anywhere
        if ipaddress.ip_address(host).is_loopback:
            return None
    return (
        f"srl serve: WARNING: listening on {host} without an API key: anyone who can reach this "
        "port can generate and unload adapters (and load them from --adapter-dir); pass "
        "--api-key KEY or set SRL_API_KEY"
    )


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    allowed = (
        f"a whole number in [{low}, {high}]" if high is not None else f"a whole number >= {low}"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: use {allowed}")
        return value

    return parse


def _seconds(low: float, *, above: bool) -> Callable[[str], float]:
    allowed = f"a finite number {'>' if above else '>='} {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text!r}: use {allowed}")
        return value

    return parse


def _text(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _named_dir(spec: str) -> tuple[str, Path]:
    name, sep, directory = spec.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"{spec!r}: use NAME=DIR")
    return name, Path(directory)


def _existing_dir(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return path


def make_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
        type=_named_dir,
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
        type=_text,
        default="base",
        help="the model name that means the base model (no adapter)",
    )
    parser.add_argument("--host", type=_text, default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=_int_in(1, 65535), default=8001, help="port to listen on")
    parser.add_argument(
        "--api-key",
        type=_text,
        default=None,
        help="require 'Authorization: Bearer KEY' on every route (default: $SRL_API_KEY if "
        "set, else no key)",
    )
    parser.add_argument(
        "--adapter-dir",
        metavar="DIR",
        type=_existing_dir,
        action="append",
        default=[],
        help="let clients load adapters (POST /v1/load_lora_adapter) from anywhere under DIR; "
        "repeatable (default: loading over HTTP is off)",
    )
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float32", "float16"],
        help="model dtype",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device")
    parser.add_argument(
        "--kv-cache-size",
        type=_int_in(1),
        default=10000,
        help="context length in tokens (prompt + completion); the model's own "
        "max_position_embeddings caps it",
    )
    parser.add_argument(
        "--max-batch-size",
        type=_int_in(1),
        default=32,
        help="rows (completions) per batched generate call; larger requests take several",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=_seconds(0, above=False),
        default=10,
        help="how long to collect concurrent requests into one batch",
    )
    parser.add_argument(
        "--default-max-tokens",
        type=_int_in(1),
        default=256,
        help="completion tokens when a request gives no max_tokens",
    )
    parser.add_argument(
        "--request-timeout",
        metavar="SECONDS",
        type=_seconds(0, above=True),
        default=300.0,
        help="answer a request 504 and stop its generation when it has not finished by then",
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
    api_key = args.api_key if args.api_key is not None else os.environ.get("SRL_API_KEY") or None
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is available here (use cpu or auto)")
    adapters: dict[str, Path] = {}
    model = args.model
    try:
        if args.checkpoint:
            ckpt, found, base = checkpoint_adapters(args.checkpoint)
            adapters.update(found)
            print(f"srl serve: checkpoint {ckpt}: adapters {', '.join(found)}", flush=True)
            if model is None and base is not None:
                model = base
    except FileNotFoundError as exc:
        parser.error(f"--checkpoint: {exc}")
    adapters.update(args.adapter)
    for name, directory in adapters.items():
        if not _is_adapter_dir(directory):
            parser.error(
                f"adapter {name}={directory} is not a PEFT adapter directory (needs "
                f"{ADAPTER_WEIGHTS} and {ADAPTER_CONFIG})"
            )
    try:  # before the model loads: a taken port fails at once
        sock = _bind(args.host, args.port)
    except OSError as exc:
        parser.error(f"--host {args.host} --port {args.port}: cannot listen there: {exc}")
    from srl_trainers.config import DEFAULT_MODEL_NAMES
    from srl_trainers.models import ModelUnavailableError

    model = model or "smollm2"
    model = DEFAULT_MODEL_NAMES.get(model, model)
    try:
        pool = ModelPool(
            model, dtype=args.dtype, device=args.device, kv_cache_size=args.kv_cache_size
        )
        for name, directory in adapters.items():
            try:
                _load_adapter(pool, name, directory)
            except ValueError as exc:
                raise ValueError(f"adapter {name}={directory}: {exc}") from None
        app = create_app(
            pool,
            served_model_name=args.served_model_name,
            max_batch_size=args.max_batch_size,
            batch_wait_ms=args.batch_wait_ms,
            default_max_tokens=args.default_max_tokens,
            request_timeout=args.request_timeout,
            api_key=api_key,
            adapter_dirs=args.adapter_dir,
        )
    except (ModelUnavailableError, FileNotFoundError, ValueError) as exc:
        sock.close()
        parser.fail(exc)
    names = ", ".join([args.served_model_name, *pool.adapter_names])
    loading = "from " + ", ".join(map(str, args.adapter_dir)) if args.adapter_dir else "off"
    print(
        f"srl serve: {model} on http://{args.host}:{args.port}/v1, models: {names}; context "
        f"{app.state.context} tokens; API key {'required' if api_key else 'off'}; adapter "
        f"loading {loading}",
        flush=True,
    )
    warning = _bind_warning(args.host, api_key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    import uvicorn

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
