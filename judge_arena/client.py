"""Model calls: litellm, throttling per endpoint, timeouts and the one retry layer. The only network code.

litellm's own retries and the SDKs' are switched off (each would retry 3 times under ours, multiplying requests and
spend); tenacity owns every retry, with exponential jitter that honours the provider's Retry-After.

On the openai and anthropic routes (which include every OpenAI-compatible server) litellm is handed SDK clients
whose HTTP transport is ours: on an I/O thread of its own, it sees each successful answer the moment its last byte
arrives, before any parsing, and hands it to the caller to keep (a receipt), so that a process killed while litellm
parses does not lose an answer it has paid for; the same transport serves a kept receipt back through litellm to
recover it.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import email.utils
import functools
import gc
import json
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from judge_arena.config import LOCAL_SERVER_PREFIX, SIMULATOR, ModelConfig
from judge_arena.limiter import AdaptiveConcurrency, Outcome, RateLimiter, Reservation, estimate_cost
from judge_arena.local_server import server_name
from judge_arena.records import Message
from judge_arena.store import Completion, Receipt

_PLACEHOLDER_KEY = "no-key"
"""Sent to endpoints that need no key (simulator, local servers): the SDKs refuse to send a request without one."""

_RECEIVING_ROUTES = ("openai", "anthropic")
"""The litellm routes whose HTTP goes through our transport (receipts, raw-body checks)."""

_TIMEOUT_MARGIN_S = 5.0
"""Beyond the request timeout, how long an attempt may last in all before it is cancelled."""


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
    def of(
        cls, config: ModelConfig, simulator_url: str | None, local_urls: Mapping[str, str] | None = None
    ) -> Endpoint:
        """The endpoint of a configured model; 'simulator' resolves to the running simulator's URL, 'local:<name>'
        to the URL of the run's local server `<name>` (in `local_urls`)."""
        api_base = config.api_base
        if api_base == SIMULATOR:
            if simulator_url is None:
                raise ValueError(f"model '{config.name}' uses the simulator, but none is running")
            # litellm appends /chat/completions to OpenAI-style bases and /v1/messages to Anthropic ones.
            api_base = simulator_url if config.model.startswith("anthropic/") else f"{simulator_url}/v1"
        elif api_base is not None and api_base.startswith(LOCAL_SERVER_PREFIX):
            local_url = (local_urls or {}).get(server_name(api_base))
            if local_url is None:
                raise ValueError(f"model '{config.name}' uses {api_base}, but no such server is running")
            api_base = f"{local_url}/v1"
        return cls(model=config.model, api_base=api_base, api_key_env=config.api_key_env)

    @property
    def limiter_key(self) -> str:
        """Requests to the same host or provider share one concurrency limit and one rate limiter."""
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
_CONTEXT_MARKERS = ("context window", "context_length_exceeded", "maximum context length")
_QUOTA_MARKERS = ("insufficient_quota", "exceeded your current quota")
_THROTTLED_KINDS = {"http_429", "http_529"}
"""Refusals that mean 'too much at once' (rate limited, overloaded): the endpoint's concurrency is halved."""

# Transport faults are recognised by the names of classes in an exception's MRO, so that httpx and httpx2 (the
# SDKs' fork), aiohttp, the SDKs and litellm are all covered without importing any of them here.
_TIMEOUT_CLASSES = {"TimeoutException", "APITimeoutError"}
_CONNECTION_CLASSES = {"TransportError", "APIConnectionError", "ClientConnectionError", "ClientPayloadError"}
_INCOMPLETE_STREAM_CLASS = "MidStreamFallbackError"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first.

    Suppressed contexts are followed too: litellm and the SDKs re-raise inside `except` blocks, often with
    `from None`, and the status of the real HTTP response or the transport error is only down there.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 16 and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _response_status(exc: BaseException) -> tuple[int, Mapping[str, str]] | None:
    """The status and headers of the HTTP response an exception carries, if it carries one."""
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return None
    headers = getattr(response, "headers", None)
    if not isinstance(headers, Mapping):
        headers = getattr(exc, "litellm_response_headers", None)
    return status, headers if isinstance(headers, Mapping) else {}


def _http_error(chain: list[BaseException]) -> tuple[int, Mapping[str, str]] | None:
    """The error status the server really answered with: from the innermost HTTPStatusError in the chain.

    litellm's own exceptions carry a status of their own choosing: 500 for a connection reset, 408 for a timeout,
    500 again for Anthropic's 529 'overloaded'. Only an HTTP library's status error proves a response came.
    """
    for exc in reversed(chain):
        if "HTTPStatusError" in _class_names(exc):
            return _response_status(exc)
    return None


def _error_headers(exc: BaseException) -> Mapping[str, str]:
    """The headers of the error response a failed attempt got; empty when no response came."""
    chain = _chain(exc)
    answered = _http_error(chain)
    if answered is not None and answered[1]:
        return answered[1]
    for link in chain:
        headers = getattr(link, "litellm_response_headers", None)
        if isinstance(headers, Mapping) and headers:
            return headers
    return {}


def _success_headers(response: Any) -> Mapping[str, str]:
    """The response headers litellm keeps on an answer (whole or streamed), names prefixed `llm_provider-`."""
    hidden = getattr(response, "_hidden_params", None)
    headers = hidden.get("additional_headers") if isinstance(hidden, Mapping) else None
    return headers if isinstance(headers, Mapping) else {}


def _transport_fault(exc: BaseException) -> str | None:
    """The kind of fault an exception is when no HTTP error response came: timeout, connection, malformed…"""
    names = _class_names(exc)
    if isinstance(exc, json.JSONDecodeError):
        return "malformed"
    if _INCOMPLETE_STREAM_CLASS in names and "finish_reason" in str(exc):
        return "incomplete"
    if isinstance(exc, TimeoutError) or names & _TIMEOUT_CLASSES:
        return "timeout"
    if isinstance(exc, ConnectionError) or names & _CONNECTION_CLASSES:
        return "connection"
    return None


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return max(0.0, number) if number is not None and math.isfinite(number) else None


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date."""
    lowered = {key.lower(): value for key, value in headers.items()}
    milliseconds = _number(lowered.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = lowered.get("retry-after")
    seconds = _number(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - time.time())


def _by_status(status: int, text: str, headers: Mapping[str, str]) -> _Diagnosis:
    if status == 429 and any(marker in text for marker in _QUOTA_MARKERS):
        return _Diagnosis("quota_exhausted", False, None)
    if status in _RETRYABLE_STATUS:
        return _Diagnosis(f"http_{status}", True, _retry_after_s(headers))
    return _Diagnosis(_FATAL_STATUS_KINDS.get(status, f"http_{status}"), False, None)


def _diagnose(exc: BaseException) -> _Diagnosis:
    """Classify a failed attempt by the status the server answered and by the cause, never by class name alone.

    Through litellm every error is an `openai.APIError`, but its class and status often say little: a 529 arrives
    as a plain APIError, or as an InternalServerError with status 500; a reset connection as an
    InternalServerError too. So the real HTTP status is looked for first, then the transport fault at the root of
    the chain (timeout, reset or dropped connection, malformed body, stream cut before its finish reason).
    """
    if isinstance(exc, _Unusable):
        return _Diagnosis(exc.kind, True, None)
    chain = _chain(exc)
    text = " ".join(str(link) for link in chain).lower()
    if any(marker in text for marker in _CONTEXT_MARKERS):
        return _Diagnosis("context_length", False, None)
    answered = _http_error(chain)
    if answered is not None:
        return _by_status(answered[0], text, answered[1])
    for link in reversed(chain):
        fault = _transport_fault(link)
        if fault is not None:
            return _Diagnosis(fault, True, None)
    for link in reversed(chain):
        status = _response_status(link)
        if status is not None:
            return _by_status(status[0], text, status[1])
    return _Diagnosis(type(exc).__name__, False, None)


@dataclass(frozen=True)
class _Reply:
    text: str | None
    finish_reason: str | None
    input_tokens: int
    output_tokens: int


def _lacks_finish_reason(received: Receipt | None) -> bool:
    """Whether an answer's body is an OpenAI or Anthropic answer with no finish/stop reason; False if unknown.

    litellm fills in `finish_reason="stop"` when a non-streamed response has none (OpenAI `finish_reason: null`,
    Anthropic `stop_reason: null`), so a body cut short by a proxy would pass for a complete answer. The body as it
    arrived still says the truth.
    """
    try:
        body = json.loads(received.body) if received is not None else None
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0].get("finish_reason") is None
    if body.get("type") == "message":
        return body.get("stop_reason") is None
    return False


@dataclass
class _Exchange:
    """One request's HTTP answer as the transport sees it, shared with it through `_EXCHANGE`."""

    on_receipt: Callable[[Receipt], None] | None = None
    """Called with a successful answer the moment it has arrived in full."""
    replay: Receipt | None = None
    """An answer received earlier, served instead of asking the provider."""
    received: Receipt | None = None
    """The successful answer, once it has arrived (or been replayed)."""

    def receive(self, receipt: Receipt) -> None:
        self.received = receipt
        if self.on_receipt is not None:
            self.on_receipt(receipt)


_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar("judge_arena_exchange", default=None)
"""The exchange of the request being made in this task (litellm gives no per-request hook at the HTTP level)."""


class _ReceivingTransport(httpx.AsyncBaseTransport):
    """The HTTP transport under litellm's openai and anthropic routes: sees each successful answer as it arrives.

    The network side runs on a thread of its own (`_io_loop`). The run's event loop is busy for long stretches
    (litellm spends milliseconds parsing each answer, the stages render and screen prompts), and an answer that
    arrives meanwhile would wait for its turn; the I/O thread reads it at once and hands it to `on_receipt` before
    the answer goes back to the SDK and litellm to be parsed, so that a process killed in between has it written
    down. Bodies are asked for uncompressed, so that what is kept is exactly what is parsed; they are read whole,
    streamed ones too (the client only ever uses a stream once it has ended).
    """

    def __init__(self) -> None:
        self._network: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _EXCHANGE.get()
        if exchange is not None and exchange.replay is not None:
            replayed = exchange.replay
            exchange.received = replayed
            return httpx.Response(200, headers={"content-type": replayed.content_type}, content=replayed.body)
        request.headers["accept-encoding"] = "identity"
        # Cancelling the wait (a timeout) cancels the exchange on the I/O thread too.
        status, headers, body, extensions = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._fetch(request, exchange), _io_loop())
        )
        return httpx.Response(status, headers=headers, content=body, extensions=extensions)

    async def _fetch(
        self, request: httpx.Request, exchange: _Exchange | None
    ) -> tuple[int, httpx.Headers, bytes, dict[str, Any]]:
        """On the I/O thread: the request sent, its answer read to the end and, if successful, kept."""
        if self._network is None:
            self._network = httpx.AsyncHTTPTransport()
        started = time.perf_counter()
        response = await self._network.handle_async_request(request)
        try:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        if exchange is not None and response.status_code == 200:
            content_type = response.headers.get("content-type", "")
            exchange.receive(Receipt(content_type, body, time.perf_counter() - started))
        passed_on = {k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")}
        return response.status_code, response.headers, body, passed_on

    async def aclose(self) -> None:
        network, self._network = self._network, None
        if network is not None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(network.aclose(), _io_loop()))


@functools.cache
def _io_loop() -> asyncio.AbstractEventLoop:
    """The event loop of the process's HTTP I/O thread, started on first use (a daemon: it ends with the process)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="judge-arena-http", daemon=True).start()
    return loop


def _tokens(usage: Any, name: str) -> int:
    return int(getattr(usage, name, 0) or 0)


def _whole(response: Any, received: Receipt | None) -> _Reply:
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    return _Reply(
        text=choice.message.content,
        finish_reason=None if _lacks_finish_reason(received) else choice.finish_reason,
        input_tokens=_tokens(usage, "prompt_tokens"),
        output_tokens=_tokens(usage, "completion_tokens"),
    )


async def _assembled(stream: Any) -> _Reply:
    """A streamed answer joined from its chunks; its finish reason is the last one any chunk carried."""
    parts: list[str] = []
    finish_reason: str | None = None
    usage: Any = None
    try:
        async for chunk in stream:
            usage = getattr(chunk, "usage", None) or usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if choice.delta.content:
                parts.append(choice.delta.content)
            finish_reason = choice.finish_reason or finish_reason
    finally:
        # A stream left behind (timed out, failed) would hold its connection until garbage-collected.
        await stream.aclose()
    return _Reply(
        text="".join(parts),
        finish_reason=finish_reason,
        input_tokens=_tokens(usage, "prompt_tokens"),
        output_tokens=_tokens(usage, "completion_tokens"),
    )


@dataclass(frozen=True)
class Gate:
    """What admits requests to one endpoint: its adaptive concurrency, then its request and token budgets."""

    concurrency: AdaptiveConcurrency
    rate: RateLimiter


class Client:
    """Calls models through litellm, throttled per endpoint, with retries.

    Per endpoint (`Endpoint.limiter_key`), at most `concurrency` requests are in flight; the limit is halved when
    the provider refuses for load (429, 529) and grows back by one after `increase_after` successes. Requests then
    wait, in turn, for the endpoint's budgets: `requests_per_minute` and `tokens_per_minute` when set, and whatever
    the provider's rate-limit headers announce (limits, what remains, when an exhausted budget comes back). A
    request's tokens are estimated before it is sent (its messages, plus `max_tokens` or `output_estimate`) and
    corrected by the usage of its response.

    A call is attempted up to `max_attempts` times, waiting between attempts what the server asks (Retry-After),
    else an exponential backoff with jitter, never more than `max_wait_s`. `max_total_s`, when set, caps the time
    one call may spend on its attempts and the waits between them together; time queued for the endpoint (its
    concurrency and budgets) does not count. `sleep` is how waits are waited and `clock` how the budgets tell time
    (tests pass fakes).
    """

    def __init__(
        self,
        *,
        concurrency: int,
        timeout_s: float,
        max_attempts: int,
        max_wait_s: float,
        max_total_s: float | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        output_estimate: int = 1024,
        increase_after: int = 8,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s
        self._max_total_s = max_total_s
        self._requests_per_minute = requests_per_minute
        self._tokens_per_minute = tokens_per_minute
        self._output_estimate = output_estimate
        self._increase_after = increase_after
        self._on_retry = on_retry
        self._sleep = sleep
        self._clock = clock
        self._gates: dict[str, Gate] = {}
        self._transport: _ReceivingTransport | None = None
        self._sdk_clients: dict[tuple[str, str | None, str | None], Any] = {}
        self._backoff = wait_random_exponential(multiplier=0.5, max=max_wait_s)

    def gate(self, endpoint: Endpoint) -> Gate:
        """The concurrency limit and rate limiter the endpoint shares with the others of its `limiter_key`."""
        gate = self._gates.get(endpoint.limiter_key)
        if gate is None:
            gate = self._gates[endpoint.limiter_key] = Gate(
                AdaptiveConcurrency(self._concurrency, increase_after=self._increase_after),
                RateLimiter(
                    requests_per_minute=self._requests_per_minute,
                    tokens_per_minute=self._tokens_per_minute,
                    clock=self._clock,
                    sleep=self._sleep,
                ),
            )
        return gate

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
        self,
        endpoint: Endpoint,
        messages: tuple[Message, ...],
        params: Mapping[str, Any],
        on_receipt: Callable[[Receipt], None] | None = None,
        on_billed: Callable[[int, int], None] | None = None,
    ) -> Completion:
        """One chat completion, retried on transient faults; raises CallFailed when no usable answer came.

        `on_receipt` is given each successful answer the moment it has arrived, before it is parsed (on the openai
        and anthropic routes), to be kept until the completion itself is stored. `on_billed` is given the input and
        output tokens of every answer that arrived, usable or not (zeros when the provider reported no usage).
        """
        gate = self.gate(endpoint)
        cost = estimate_cost(messages, params, self._output_estimate)
        api_key = endpoint.api_key()
        attempts = 0
        busy_s = 0.0  # time spent in attempts; with the waits (tenacity's idle_for), what max_total_s caps
        waived: float | None = None  # the hold a refusal set, once this call has waited its Retry-After
        out_of_attempts = stop_after_attempt(self._max_attempts)

        def stop(state: RetryCallState) -> bool:
            # Like tenacity's stop_before_delay, but on attempts and waits only: a call queued for the endpoint
            # has not started, and must not find its budget spent when its turn comes.
            total = self._max_total_s
            out_of_time = total is not None and busy_s + state.idle_for + state.upcoming_sleep >= total
            return out_of_attempts(state) or out_of_time

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception(lambda e: _diagnose(e).retryable),
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    ticket = await gate.concurrency.acquire()
                    outcome: Outcome = "other"
                    try:
                        reservation = await gate.rate.acquire(cost, waived)
                        started = time.perf_counter()
                        try:
                            time_left = self._time_left(busy_s + attempt.retry_state.idle_for)
                            completion = await self._attempt(
                                endpoint,
                                api_key,
                                messages,
                                params,
                                time_left,
                                gate.rate,
                                reservation,
                                on_receipt,
                                on_billed,
                            )
                        except Exception as exc:
                            diagnosis = _diagnose(exc)
                            hold = gate.rate.observe(_error_headers(exc))
                            # The Retry-After this call will wait is the same wait as the refusal's hold.
                            waived = hold if diagnosis.retry_after_s is not None else None
                            outcome = "throttled" if diagnosis.kind in _THROTTLED_KINDS else "other"
                            raise
                        finally:
                            busy_s += time.perf_counter() - started
                        outcome = "ok"
                        return completion
                    finally:
                        gate.concurrency.release(ticket, outcome)
        except Exception as exc:
            kind, message = _diagnose(exc).kind, _short(exc, api_key)
        else:
            raise AssertionError("unreachable: tenacity either returns or raises")
        # Raised outside the except block, so the failure keeps no link to the exception (nor its key echoes).
        raise CallFailed(kind, message, attempts)

    def _time_left(self, spent_s: float) -> float:
        """How long the next attempt may take: the request timeout, with a margin, within the call's budget."""
        # litellm's timeout bounds each read, not the whole exchange (a slow trickle of chunks could last forever).
        limit = self._timeout_s + _TIMEOUT_MARGIN_S
        return limit if self._max_total_s is None else min(limit, self._max_total_s - spent_s)

    async def _attempt(
        self,
        endpoint: Endpoint,
        api_key: str | None,
        messages: tuple[Message, ...],
        params: Mapping[str, Any],
        time_left: float,
        rate: RateLimiter,
        reservation: Reservation,
        on_receipt: Callable[[Receipt], None] | None,
        on_billed: Callable[[int, int], None] | None,
    ) -> Completion:
        started = time.perf_counter()
        async with asyncio.timeout(time_left):
            reply, headers = await self._exchange(endpoint, api_key, messages, params, _Exchange(on_receipt))
        if on_billed is not None:
            on_billed(reply.input_tokens, reply.output_tokens)
        rate.observe(headers)
        if reply.input_tokens or reply.output_tokens:
            # Billed even when the answer is unusable: the provider counted these tokens.
            rate.settle(reservation, reply.input_tokens, reply.output_tokens)
        return _usable(reply, time.perf_counter() - started)

    async def recover(
        self, endpoint: Endpoint, messages: tuple[Message, ...], params: Mapping[str, Any], receipt: Receipt
    ) -> Completion | None:
        """The completion in an answer received earlier (by a process that died before storing it), parsed through
        litellm exactly as on arrival, with no request; None if it is unusable, and the call must be made again."""
        if _route(endpoint.model) not in _RECEIVING_ROUTES:
            return None  # litellm's own HTTP stack would send the request instead of replaying the receipt
        try:
            reply, _ = await self._exchange(endpoint, endpoint.api_key(), messages, params, _Exchange(replay=receipt))
            return _usable(reply, receipt.latency_s)
        except Exception:
            return None

    async def _exchange(
        self,
        endpoint: Endpoint,
        api_key: str | None,
        messages: tuple[Message, ...],
        params: Mapping[str, Any],
        exchange: _Exchange,
    ) -> tuple[_Reply, Mapping[str, str]]:
        """One request through litellm, its answer read to the end; the answer's response headers."""
        litellm = _litellm()
        streamed = params.get("stream") is True
        # Streamed usage comes only when asked for (OpenAI's stream_options; litellm maps it for other providers).
        extra: dict[str, Any] = (
            {"stream_options": {"include_usage": True}} if streamed and "stream_options" not in params else {}
        )
        sdk_client = self._sdk_client(endpoint, api_key)
        if sdk_client is not None:
            extra["client"] = sdk_client
        token = _EXCHANGE.set(exchange)
        try:
            response = await litellm.acompletion(
                model=endpoint.model,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                api_base=endpoint.api_base,
                api_key=api_key,
                timeout=self._timeout_s,
                num_retries=0,
                max_retries=0,
                **extra,
                **params,
            )
            reply = await _assembled(response) if streamed else _whole(response, exchange.received)
        finally:
            _EXCHANGE.reset(token)
        return reply, _success_headers(response)

    def _sdk_client(self, endpoint: Endpoint, api_key: str | None) -> Any:
        """The client litellm is to send this endpoint's requests with (ours, on our transport); None on routes
        other than openai and anthropic, which litellm serves with its own (no receipts, no raw-body checks)."""
        route = _route(endpoint.model)
        if route not in _RECEIVING_ROUTES:
            return None
        key = (route, endpoint.api_base, api_key)
        client = self._sdk_clients.get(key)
        if client is None:
            if self._transport is None:
                self._transport = _ReceivingTransport()
            if route == "openai":
                import openai

                # openai 3.x is typed for httpx2 clients and accepts httpx ones too, as litellm's own handler uses.
                http: Any = httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s)
                client = openai.AsyncOpenAI(
                    api_key=api_key, base_url=endpoint.api_base, http_client=http, max_retries=0
                )
            else:
                from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

                client = AsyncHTTPHandler(timeout=self._timeout_s, transport=self._transport)
            self._sdk_clients[key] = client
        return client

    async def aclose(self) -> None:
        """Close the connections this client holds (call before its event loop ends)."""
        if self._transport is not None:
            await self._transport.aclose()
        self._transport = None
        self._sdk_clients.clear()


def _usable(reply: _Reply, latency_s: float) -> Completion:
    """The completion in a reply, or _Unusable if the reply is empty or cut off."""
    if not reply.text:
        raise _Unusable("empty", "the model returned an empty answer")
    if not reply.finish_reason:
        raise _Unusable("incomplete", "the answer has no finish reason (cut off)")
    return Completion(
        text=reply.text,
        finish_reason=str(reply.finish_reason),
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        latency_s=latency_s,
    )


@functools.cache
def _route(model: str) -> str:
    """The provider litellm routes a model string to ('openai' for 'gpt-4o' as for 'openai/...')."""
    try:
        return str(_litellm().get_llm_provider(model=model)[1])
    except Exception:
        return model.split("/", 1)[0]


@functools.cache
def _litellm() -> Any:
    """litellm, imported on first use (the import takes seconds) and kept quiet: failures are ours to report."""
    # The import makes millions of long-lived objects: collecting garbage while it runs costs more than half a
    # second, and every later full collection would walk them all again (0.1-0.2 s holding the GIL, which stalls
    # the I/O thread that writes answers down). Collect none during the import, then set them aside for good.
    gc.disable()
    try:
        import litellm
    finally:
        gc.freeze()
        gc.enable()
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.num_retries = 0
    return litellm


def _short(exc: BaseException, secret: str | None) -> str:
    """The failure in one line for the failures table, the key redacted before cutting (a cut key would escape)."""
    text = _redacted(" ".join(str(exc).split()), secret)
    return f"{type(exc).__name__}: {text[:300]}"


def _redacted(text: str, secret: str | None) -> str:
    """Providers echo parts of a rejected key in error messages; failures are stored and printed, keys never."""
    if secret and secret != _PLACEHOLDER_KEY:
        text = text.replace(secret, "[redacted]")
    # A masked echo such as 'sk-abc***xyz' still leaks the key's ends.
    return re.sub(r"\b(sk|sk-ant|key)-[A-Za-z0-9_*.-]{6,}", "[redacted]", text)
