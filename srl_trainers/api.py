"""API-served frozen policies: OpenAI-compatible chat endpoints as members of the population.

An :class:`APIPolicy` plays its agents through the official ``openai`` async client; it never
trains. Model types (``srl_trainers.config.API_MODEL_TYPES``) and where their settings come
from (config fields first, then environment variables, then the default):

============  =====================================  ==============================================
type          API key                                base URL
============  =====================================  ==============================================
``openai``    ``$OPENAI_API_KEY``                    ``api_base_url``, ``$OPENAI_BASE_URL``,
                                                     ``https://api.openai.com/v1``
``claude``    ``$ANTHROPIC_API_KEY``                 ``api_base_url``, Anthropic's OpenAI-compatible
                                                     ``https://api.anthropic.com/v1/``
``api``       none (``$<api_key_env>`` if set)       ``api_base_url`` (required): vLLM,
                                                     ``python -m srl_trainers.serve``, ...
============  =====================================  ==============================================

``api_key_env`` names another variable for the key. The served model is ``model_names[type]``.
Missing settings raise a :class:`ConfigError` naming the field or variable in
:meth:`APIPolicy.validate`, which the trainer calls when it builds its policies: a run never
stops half-way for a missing key.

Each request runs under a concurrency limit (``api_concurrency``) and a per-request timeout
(``api_timeout``). A 429, 408, 409 or 5xx answer, a timeout or a connection error is retried
up to ``api_max_retries`` times after ``api_backoff * 2**attempt`` seconds, scaled by a random
factor in [0.5, 1] (jitter), or after the server's ``Retry-After`` when it is longer (at most
``backoff_max``). Other errors (400, 401, 404, ...) are not retried. A request that still
fails gives an :class:`APIResult` with ``ok=False`` and an empty text (which the envs flag as
an invalid action), is counted in ``api/<policy>/failures``, and the run goes on: nothing
raises.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from srl_trainers.config import ConfigError
from srl_trainers.policies import Policy

__all__ = ["API_DEFAULTS", "APIPolicy", "APIResult"]

# model type -> (API key variable, base URL variable, default base URL)
API_DEFAULTS: dict[str, tuple[str | None, str | None, str | None]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1"),
    "claude": ("ANTHROPIC_API_KEY", None, "https://api.anthropic.com/v1/"),
    "api": (None, None, None),
}
RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx
NO_KEY = "EMPTY"  # what OpenAI-compatible local servers accept when they need no key


@dataclass
class APIResult:
    """One API answer: the action text ("" on failure) and what it cost."""

    text: str
    ok: bool
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0  # seconds, from the first attempt to the answer (retries included)
    attempts: int = 1


@dataclass
class APIPolicy(Policy):
    """A frozen policy served by an OpenAI-compatible chat-completions endpoint."""

    base_url: str | None = None  # None: from the model type's variable or default (see above)
    api_key_env: str | None = None  # None: the model type's variable
    concurrency: int = 8
    timeout: float = 30.0
    max_retries: int = 4
    backoff: float = 0.5
    backoff_max: float = 30.0
    max_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None  # stop strings, sent as the request's stop=
    seed: int | None = None  # sent to the API when set; also seeds the retry jitter
    trainable: bool = False
    # usage counters, cumulative over the run (state_dict / load_state_dict)
    counters: dict[str, float] = field(default_factory=dict, init=False)
    _api_key: str | None = field(default=None, init=False, repr=False)
    _client: Any = field(default=None, init=False, repr=False)
    _semaphore: asyncio.Semaphore | None = field(default=None, init=False, repr=False)
    _loop: Any = field(default=None, init=False, repr=False)
    _rng: random.Random = field(default_factory=random.Random, init=False, repr=False)

    COUNTERS = ("requests", "failures", "retries", "prompt_tokens", "completion_tokens", "latency")

    @property
    def waits_on_io(self) -> bool:
        return True

    def __post_init__(self) -> None:
        if self.model_type not in API_DEFAULTS:
            raise ConfigError(
                f"APIPolicy {self.policy_id}: model type {self.model_type!r} is not an API type; "
                f"use one of {sorted(API_DEFAULTS)}"
            )
        key_var, url_var, url_default = API_DEFAULTS[self.model_type]
        if self.api_key_env is None:
            self.api_key_env = key_var
        if self.base_url is None:
            self.base_url = (os.environ.get(url_var) if url_var else None) or url_default
        for name in self.COUNTERS:
            self.counters.setdefault(name, 0)
        self._rng.seed(self.seed)

    @classmethod
    def from_config(
        cls, policy_id: str, model_type: str, model_name: str, config: Any, agents: list[str]
    ) -> APIPolicy:
        """The API policy of one slot from a ``MultiModelConfig``'s ``api_*`` and sampling
        fields (``max_new_tokens``, ``temperature``, ``top_p``, ``stop``)."""
        return cls(
            policy_id,
            model_type,
            model_name,
            agents=list(agents),
            base_url=config.api_base_url,
            api_key_env=config.api_key_env,
            concurrency=config.api_concurrency,
            timeout=config.api_timeout,
            max_retries=config.api_max_retries,
            backoff=config.api_backoff,
            max_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            stop=None if config.stop is None else list(config.stop),
        )

    # ------------------------------------------------------------------ start-up
    def validate(self) -> None:
        """Check the settings and read the API key now; raise a :class:`ConfigError` naming
        the missing config field or environment variable."""
        where = f"model type {self.model_type!r} (slot {self.policy_id})"
        if not self.base_url:
            raise ConfigError(
                f"{where} needs MultiModelConfig.api_base_url: the URL of an OpenAI-compatible "
                "server, e.g. 'http://127.0.0.1:8001/v1' (python -m srl_trainers.serve, or vLLM)"
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}: api_base_url={self.base_url!r} is not an http(s) URL, e.g. "
                "'http://127.0.0.1:8001/v1'"
            )
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "").strip()
            if not key:
                raise ConfigError(
                    f"{where} needs an API key in the environment variable {self.api_key_env}, "
                    f"which is not set: export {self.api_key_env}=... (or set "
                    "MultiModelConfig.api_key_env to the variable that holds the key)"
                )
            self._api_key = key
        else:
            self._api_key = NO_KEY
        for name, low in (("concurrency", 1), ("max_retries", 0), ("max_tokens", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"APIPolicy {self.policy_id}: {name} must be >= {low}")
        if self.timeout <= 0 or self.backoff < 0:
            raise ConfigError(f"APIPolicy {self.policy_id}: timeout must be > 0, backoff >= 0")

    def describe(self) -> str:
        return (
            f"{self.policy_id} (frozen API, {self.model_type}: {self.model_name} @ {self.base_url})"
        )

    # ------------------------------------------------------------------ acting
    async def act_batch(
        self,
        observations: list[str],
        system_prompt: str | None,
        *,
        temperature: float | None = None,
    ) -> list[APIResult]:
        """One chat completion per observation, concurrently (at most ``concurrency`` in
        flight); never raises for an API failure. ``temperature`` overrides the policy's own
        for these requests (evaluation: 0 is greedy)."""
        if self._api_key is None:
            self.validate()
        self._bind_loop()
        t = self.temperature if temperature is None else temperature
        return list(
            await asyncio.gather(*(self._request(obs, system_prompt, t) for obs in observations))
        )

    async def act(
        self, requests: list[tuple[int, Any]], system_prompt: str | None, *, temperature: float
    ) -> list[str]:
        """:meth:`act_batch`'s texts: a failed request (counted) is ``""``, an invalid action."""
        results = await self.act_batch(
            [obs for _, obs in requests], system_prompt, temperature=temperature
        )
        return [r.text for r in results]

    async def _request(
        self, observation: str, system_prompt: str | None, temperature: float
    ) -> APIResult:
        messages = [{"role": "user", "content": observation}]
        if system_prompt is not None:
            messages.insert(0, {"role": "system", "content": system_prompt})
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "messages": messages,
            "temperature": temperature,
            "top_p": self.top_p,
            # OpenAI's own API prefers max_completion_tokens; others know max_tokens
            ("max_completion_tokens" if self.model_type == "openai" else "max_tokens"): (
                self.max_tokens
            ),
        }
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.stop:
            kwargs["stop"] = list(self.stop)
        start = time.monotonic()
        self.counters["requests"] += 1
        error = "no attempt made"
        attempt = 0
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                async with self._semaphore:
                    response = await asyncio.wait_for(
                        self._client.chat.completions.create(**kwargs, timeout=self.timeout),
                        self.timeout,
                    )
                return self._success(response, start, attempt + 1)
            except openai.APIStatusError as exc:
                error = f"HTTP {exc.status_code}: {_message(exc)}"
                if not (exc.status_code in RETRY_STATUS or exc.status_code >= 500):
                    break
                retry_after = _retry_after(exc)
            except (TimeoutError, openai.APITimeoutError):
                error = f"timeout after {self.timeout:g} s"
            except openai.APIConnectionError as exc:
                error = f"connection error: {exc}"
            except Exception as exc:  # a malformed answer: no retry, and never a crash
                error = f"{type(exc).__name__}: {exc}"
                break
            if attempt < self.max_retries:
                self.counters["retries"] += 1
                await asyncio.sleep(self._delay(attempt, retry_after))
        self.counters["failures"] += 1
        latency = time.monotonic() - start
        self.counters["latency"] += latency
        return APIResult(text="", ok=False, error=error, latency=latency, attempts=attempt + 1)

    def _success(self, response: Any, start: float, attempts: int) -> APIResult:
        latency = time.monotonic() - start
        usage = response.usage
        prompt = int(usage.prompt_tokens or 0) if usage is not None else 0
        completion = int(usage.completion_tokens or 0) if usage is not None else 0
        self.counters["prompt_tokens"] += prompt
        self.counters["completion_tokens"] += completion
        self.counters["latency"] += latency
        text = response.choices[0].message.content if response.choices else None
        return APIResult(
            text=text or "",
            ok=True,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency=latency,
            attempts=attempts,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; a longer Retry-After wins (capped)."""
        delay = min(self.backoff_max, self.backoff * 2**attempt) * self._rng.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _bind_loop(self) -> None:
        """An async client and semaphore for the running event loop (``asyncio.run`` per
        episode gives a new loop each time; a client cannot outlive its loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self.timeout
        )
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._loop = loop

    async def aclose(self) -> None:
        """Close the HTTP client (if it belongs to the running loop)."""
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = self._semaphore = self._loop = None

    # ------------------------------------------------------------------ accounting
    def usage(self) -> dict[str, float]:
        """Totals for the performance summary."""
        c = self.counters
        return {
            "api_requests": int(c["requests"]),
            "api_failures": int(c["failures"]),
            "api_retries": int(c["retries"]),
            "prompt_tokens": int(c["prompt_tokens"]),
            "completion_tokens": int(c["completion_tokens"]),
            "mean_latency": c["latency"] / max(c["requests"], 1),
        }

    def metrics(self) -> dict[str, float]:
        """``api/<policy>/{requests,failures,retries,prompt_tokens,completion_tokens,
        mean_latency}`` (cumulative over the run)."""
        return {
            f"api/{self.policy_id}/{k.removeprefix('api_')}": float(v)
            for k, v in self.usage().items()
        }

    def state_dict(self) -> dict[str, float]:
        return dict(self.counters)

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.counters.update(state)


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(exc.message)


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (numeric form only)."""
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None
