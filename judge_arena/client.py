"""Model calls: litellm, bounded concurrency per endpoint, timeouts and the one retry layer. The only network code.

litellm's own retries and the SDKs' are switched off (each would retry 3 times under ours, multiplying requests and
spend); tenacity owns every retry, with exponential jitter that honours the provider's Retry-After.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from judge_arena.config import SIMULATOR, ModelConfig
from judge_arena.records import Message
from judge_arena.store import Completion

_PLACEHOLDER_KEY = "no-key"
"""Sent to endpoints that need no key (simulator, local servers): the SDKs refuse to send a request without one."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how one configured model is reached."""

    model: str
    """litellm model string."""
    api_base: str | None
    """Resolved endpoint URL, or None for the provider's default."""
    api_key_env: str | None
    """Environment variable holding the key; read at call time, never stored."""

    @classmethod
    def of(cls, config: ModelConfig, simulator_url: str | None) -> Endpoint:
        """The endpoint of a configured model; 'simulator' resolves to the running simulator's URL."""
        api_base = config.api_base
        if api_base == SIMULATOR:
            if simulator_url is None:
                raise ValueError(f"model '{config.name}' uses the simulator, but none is running")
            # litellm appends /chat/completions to OpenAI-style bases and /v1/messages to Anthropic ones.
            api_base = simulator_url if config.model.startswith("anthropic/") else f"{simulator_url}/v1"
        return cls(model=config.model, api_base=api_base, api_key_env=config.api_key_env)

    @property
    def limiter_key(self) -> str:
        """Requests to the same host or provider share one concurrency limit."""
        return self.api_base or self.model.split("/", 1)[0]

    def api_key(self) -> str | None:
        """The key from the environment; a placeholder for keyless custom endpoints; None lets litellm decide."""
        if self.api_key_env is not None:
            return os.environ[self.api_key_env]
        return _PLACEHOLDER_KEY if self.api_base is not None else None


class CallFailed(Exception):
    """A call that did not produce a usable answer after all its attempts."""

    def __init__(self, kind: str, message: str, attempts: int) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.attempts = attempts


class _Unusable(Exception):
    """A reply that arrived but cannot be used as an answer (empty, or cut off with no finish reason)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class _Diagnosis:
    kind: str
    retryable: bool
    retry_after_s: float | None


_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
_FATAL_STATUS_KINDS = {
    400: "bad_request",
    401: "auth",
    403: "forbidden",
    404: "not_found",
    422: "bad_request",
}


def _status_of(exc: BaseException) -> int | None:
    for candidate in (exc, exc.__cause__, exc.__context__):
        if candidate is None:
            continue
        status = getattr(candidate, "status_code", None)
        if isinstance(status, int):
            return status
        response = getattr(candidate, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def _retry_after_s(exc: BaseException) -> float | None:
    headers = {k.lower(): v for k, v in _headers_of(exc).items()}
    if "retry-after-ms" in headers:
        try:
            return float(headers["retry-after-ms"]) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def _diagnose(exc: BaseException) -> _Diagnosis:
    """Classify by status code and cause, not class name: litellm wraps most faults in one APIError class."""
    if isinstance(exc, _Unusable):
        return _Diagnosis(exc.kind, True, None)
    if isinstance(exc, json.JSONDecodeError | asyncio.TimeoutError | TimeoutError | ConnectionError):
        return _Diagnosis(type(exc).__name__, True, None)
    text = str(exc).lower()
    if "context window" in text or "context_length_exceeded" in text or "maximum context length" in text:
        return _Diagnosis("context_length", False, None)
    status = _status_of(exc)
    if status == 429 and ("insufficient_quota" in text or "exceeded your current quota" in text):
        return _Diagnosis("quota_exhausted", False, None)
    if status in _RETRYABLE_STATUS:
        return _Diagnosis(f"http_{status}", True, _retry_after_s(exc))
    if status is not None:
        return _Diagnosis(_FATAL_STATUS_KINDS.get(status, f"http_{status}"), False, None)
    name = type(exc).__name__
    if any(word in name for word in ("Timeout", "Connection", "Protocol", "Network")) or "timed out" in text:
        return _Diagnosis(name, True, None)
    return _Diagnosis(name, False, None)


class Client:
    """Calls models through litellm, at most `concurrency` requests in flight per endpoint, with retries."""

    def __init__(
        self,
        *,
        concurrency: int,
        timeout_s: float,
        max_attempts: int,
        max_wait_s: float,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s
        self._on_retry = on_retry
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._backoff = wait_random_exponential(multiplier=0.5, max=max_wait_s)

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = _diagnose(exc).retry_after_s if exc is not None else None
        if retry_after is not None:
            return min(retry_after, self._max_wait_s)
        return float(self._backoff(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        if self._on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            self._on_retry(_diagnose(exc).kind if exc is not None else "unknown")

    async def complete(
        self, endpoint: Endpoint, messages: tuple[Message, ...], params: Mapping[str, Any]
    ) -> Completion:
        """One chat completion, retried on transient faults; raises CallFailed when no usable answer came."""
        limit = self._limits.setdefault(endpoint.limiter_key, asyncio.Semaphore(self._concurrency))
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: _diagnose(e).retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    async with limit:
                        return await self._attempt(endpoint, messages, params)
        except Exception as exc:
            diagnosis = _diagnose(exc)
            raise CallFailed(diagnosis.kind, _redacted(_short(exc), endpoint.api_key()), attempts) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _attempt(
        self, endpoint: Endpoint, messages: tuple[Message, ...], params: Mapping[str, Any]
    ) -> Completion:
        litellm = _litellm()
        started = time.perf_counter()
        async with asyncio.timeout(self._timeout_s + 5.0):
            response = await litellm.acompletion(
                model=endpoint.model,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                api_base=endpoint.api_base,
                api_key=endpoint.api_key(),
                timeout=self._timeout_s,
                num_retries=0,
                max_retries=0,
                **params,
            )
        latency = time.perf_counter() - started
        choice = response.choices[0]
        text = choice.message.content
        if not text:
            raise _Unusable("empty", "the model returned an empty answer")
        if not choice.finish_reason:
            raise _Unusable("incomplete", "the answer has no finish reason (cut off)")
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            finish_reason=str(choice.finish_reason),
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
        )


@functools.cache
def _litellm() -> Any:
    """litellm, imported on first use (the import takes seconds) and kept quiet: failures are ours to report."""
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.num_retries = 0
    return litellm


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _redacted(text: str, secret: str | None) -> str:
    """Providers echo parts of a rejected key in error messages; failures are stored and printed, keys never."""
    if not secret or secret == _PLACEHOLDER_KEY:
        return text
    text = text.replace(secret, "[redacted]")
    # A masked echo such as 'sk-abc***xyz' still leaks the key's ends.
    return re.sub(r"\b(sk|sk-ant|key)-[A-Za-z0-9_*.-]{6,}", "[redacted]", text)
