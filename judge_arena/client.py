"""Model calls: endpoints, throttling per endpoint, timeouts and the one retry loop. The only network code.

litellm's own retries and the SDKs' are switched off (each would retry 3 times under ours, multiplying requests and
spend); tenacity owns every retry, with exponential jitter that honours the provider's Retry-After. Whether a
failed attempt is retried is decided in `errors`; answers are kept on arrival by the transport in `transport`;
what the client relies on inside litellm is in `_litellm`.

An endpoint that fails the same way on several calls in a row (a bad key, an unknown model, no server) is stopped:
it is said once, and its remaining calls fail at once with that reason instead of each paying for the discovery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from judge_arena import _litellm
from judge_arena.config import LOCAL_SERVER_PREFIX, SIMULATOR, ModelConfig, ModelRunnerConfig
from judge_arena.errors import STOPPED, Diagnosis, EndpointStopped, Redactor, UnusableReply, diagnose, error_headers
from judge_arena.limiter import AdaptiveConcurrency, Outcome, RateLimiter, Reservation, estimate_cost
from judge_arena.local_server import server_name
from judge_arena.records import Message
from judge_arena.store import Completion, Receipt
from judge_arena.transport import Exchange, ReceivingTransport, exchanging

_PLACEHOLDER_KEY = "no-key"
"""Sent to endpoints that need no key (simulator, local servers): the SDKs refuse to send a request without one."""

_TIMEOUT_MARGIN_S = 5.0
"""Beyond the request timeout, how long an attempt may last in all before it is cancelled."""

_MESSAGE_CHARS = 300
"""How much of what a failure says is kept."""

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """Where and how one configured model is reached."""

    model: str
    """litellm model string."""
    api_base: str | None
    """Resolved endpoint URL, or None for the provider's default."""
    api_key_env: str | None
    """Environment variable holding the key; read at call time, never stored."""
    name: str | None = None
    """The configured model's name, to say which model a failure is about."""
    settings: ModelRunnerConfig = field(default_factory=ModelRunnerConfig)
    """The model's own retry settings and output estimate, each in place of the client's when set."""

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
        return cls(
            model=config.model,
            api_base=api_base,
            api_key_env=config.api_key_env,
            name=config.name,
            settings=config.runner,
        )

    @property
    def limiter_key(self) -> str:
        """Requests to the same host or provider share one concurrency limit and one rate limiter."""
        return self.api_base or self.model.split("/", 1)[0]

    def api_key(self) -> str | None:
        """The key from the environment; a placeholder for keyless custom endpoints; None lets litellm decide."""
        if self.api_key_env is not None:
            return os.environ[self.api_key_env]
        return _PLACEHOLDER_KEY if self.api_base is not None else None

    def describe(self) -> str:
        """The model and where it is reached, for a person: `name (model at URL)`."""
        where = f"{self.model} at {self.api_base or 'the provider default URL'}"
        return f"{self.name} ({where})" if self.name else where


class CallFailed(Exception):
    """A call that did not produce a usable answer after all its attempts (none, when its endpoint was stopped)."""

    def __init__(self, kind: str, message: str, attempts: int) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.attempts = attempts


class ModelClient(Protocol):
    """What the runner needs of a client: make a call, recover a kept answer, reach an endpoint's gate, close."""

    async def complete(
        self,
        endpoint: Endpoint,
        messages: tuple[Message, ...],
        params: Mapping[str, Any],
        on_receipt: Callable[[Receipt], None] | None = None,
        on_billed: Callable[[int, int], None] | None = None,
    ) -> Completion:
        """One chat completion; raises CallFailed when no usable answer came."""
        ...

    async def recover(
        self, endpoint: Endpoint, messages: tuple[Message, ...], params: Mapping[str, Any], receipt: Receipt
    ) -> Completion | None:
        """The completion in an answer kept earlier, with no request; None if it must be asked for again."""
        ...

    def gate(self, endpoint: Endpoint) -> Gate:
        """What admits requests to the endpoint (closed when a run stops)."""
        ...

    async def aclose(self) -> None:
        """Close the connections the client holds."""
        ...


@dataclass(frozen=True)
class _CallSettings:
    """The retry settings and output estimate a call is made with."""

    max_attempts: int
    max_wait_s: float
    max_total_s: float | None
    output_estimate: int

    def of(self, endpoint: Endpoint) -> _CallSettings:
        """These settings, with the endpoint's model's own (`ModelConfig.runner`) in their place."""
        return dataclasses.replace(self, **endpoint.settings.model_dump(exclude_none=True))


@dataclass(frozen=True)
class Gate:
    """What admits requests to one endpoint: its adaptive concurrency, then its request and token budgets."""

    concurrency: AdaptiveConcurrency
    rate: RateLimiter


@dataclass
class _Streak:
    """An endpoint's last calls in a row that failed the same persistent way."""

    kind: str = ""
    count: int = 0


@dataclass(frozen=True)
class Ping:
    """What one tiny call to a model found."""

    endpoint: Endpoint
    """The model called, and where (`Endpoint.describe`)."""
    latency_s: float | None
    """How long the answer took; None if the call failed."""
    failure: CallFailed | None
    """Why the call failed; None if the model answered."""


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
    concurrency and budgets) does not count. After `stop_after` calls in a row to one endpoint fail the same
    persistent way (`Diagnosis.persistent`; None: never), the endpoint is stopped: logged once, as a warning, and
    its remaining calls fail at once with kind `stopped` and that reason. `sleep` is how waits are waited and
    `clock` how the budgets (`max_total_s`, the rate limits) tell time (tests pass fakes).

    What failures say is stripped of every key the client has read, and of anything shaped like a key.
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
        stop_after: int | None = 3,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._settings = _CallSettings(max_attempts, max_wait_s, max_total_s, output_estimate)
        self._call_settings: dict[ModelRunnerConfig, _CallSettings] = {}
        """The settings of each model's calls (`_CallSettings.of`), worked out once."""
        self._requests_per_minute = requests_per_minute
        self._tokens_per_minute = tokens_per_minute
        self._increase_after = increase_after
        self._stop_after = stop_after
        self._on_retry = on_retry
        self._sleep = sleep
        self._clock = clock
        self._gates: dict[str, Gate] = {}
        self._streaks: dict[Endpoint, _Streak] = {}
        self._stopped: dict[Endpoint, str] = {}
        self._redact = Redactor()
        self._transports: dict[str, ReceivingTransport] = {}
        self._sdk_clients: dict[tuple[str, str | None, str | None], Any] = {}

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

    def stopped(self, endpoint: Endpoint) -> str | None:
        """Why the endpoint was stopped; None while its calls are made."""
        return self._stopped.get(endpoint)

    @staticmethod
    def _wait(max_wait_s: float, state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = diagnose(exc).retry_after_s if exc is not None else None
        if retry_after is not None:
            return min(retry_after, max_wait_s)
        return float(wait_random_exponential(multiplier=0.5, max=max_wait_s)(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        if self._on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            self._on_retry(diagnose(exc).kind if exc is not None else "unknown")

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
        stopped = self._stopped.get(endpoint)
        if stopped is not None:
            raise CallFailed(STOPPED, stopped, 0)
        gate = self.gate(endpoint)
        settings = self._call_settings.get(endpoint.settings)
        if settings is None:
            settings = self._call_settings[endpoint.settings] = self._settings.of(endpoint)
        cost = estimate_cost(messages, params, settings.output_estimate)
        api_key = self._api_key(endpoint)
        attempts = 0
        busy_s = 0.0  # time spent in attempts; with the waits (tenacity's idle_for), what max_total_s caps
        waived: float | None = None  # the hold a refusal set, once this call has waited its Retry-After
        out_of_attempts = stop_after_attempt(settings.max_attempts)

        def stop(state: RetryCallState) -> bool:
            # Like tenacity's stop_before_delay, but on attempts and waits only: a call queued for the endpoint
            # has not started, and must not find its budget spent when its turn comes.
            total = settings.max_total_s
            out_of_time = total is not None and busy_s + state.idle_for + state.upcoming_sleep >= total
            return out_of_attempts(state) or out_of_time

        retrying = AsyncRetrying(
            stop=stop,
            wait=functools.partial(self._wait, settings.max_wait_s),
            retry=retry_if_exception(lambda e: diagnose(e).retryable),
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    ticket = await gate.concurrency.acquire()
                    outcome: Outcome = "other"
                    try:
                        if endpoint in self._stopped:  # while this call waited its turn
                            raise EndpointStopped(self._stopped[endpoint])
                        reservation = await gate.rate.acquire(cost, waived)
                        attempts += 1
                        started = self._clock()
                        try:
                            time_left = self._time_left(busy_s + attempt.retry_state.idle_for, settings.max_total_s)
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
                            diagnosis = diagnose(exc)
                            hold = gate.rate.observe(error_headers(exc))
                            # The Retry-After this call will wait is the same wait as the refusal's hold.
                            waived = hold if diagnosis.retry_after_s is not None else None
                            outcome = "throttled" if diagnosis.throttled else "other"
                            raise
                        finally:
                            busy_s += self._clock() - started
                        outcome = "ok"
                        self._streaks.pop(endpoint, None)
                        return completion
                    finally:
                        gate.concurrency.release(ticket, outcome)
        except Exception as exc:
            diagnosis, message = diagnose(exc), self._said(exc)
        else:
            raise AssertionError("unreachable: tenacity either returns or raises")
        self._tally(endpoint, diagnosis, message)
        # Raised outside the except block, so the failure keeps no link to the exception (nor its key echoes).
        raise CallFailed(diagnosis.kind, message, attempts)

    def _tally(self, endpoint: Endpoint, diagnosis: Diagnosis, message: str) -> None:
        """Count a failed call towards its endpoint's streak; stop the endpoint when the streak is long enough."""
        if diagnosis.kind == STOPPED:
            return
        if not diagnosis.persistent:
            self._streaks.pop(endpoint, None)
            return
        streak = self._streaks.setdefault(endpoint, _Streak())
        streak.count = streak.count + 1 if streak.kind == diagnosis.kind else 1
        streak.kind = diagnosis.kind
        if self._stop_after is not None and streak.count >= self._stop_after and endpoint not in self._stopped:
            reason = (
                f"{endpoint.describe()} stopped after {streak.count} calls in a row failed with {diagnosis.kind}; "
                f"its remaining calls are not made. The server said: {message}"
            )
            self._stopped[endpoint] = reason
            _logger.warning("%s", reason)

    def _api_key(self, endpoint: Endpoint) -> str | None:
        """The endpoint's key, from now on redacted from whatever a failure says."""
        key = endpoint.api_key()
        if key is not None and endpoint.api_key_env is not None:
            self._redact.add(key)
        return key

    def _said(self, exc: BaseException) -> str:
        """What a failure says, in one line for the failures table, keys redacted before cutting (a cut key would
        escape)."""
        if isinstance(exc, EndpointStopped):
            return str(exc)
        text = self._redact(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        return text[:_MESSAGE_CHARS]

    def _time_left(self, spent_s: float, max_total_s: float | None) -> float:
        """How long the next attempt may take: the request timeout, with a margin, within the call's budget."""
        # litellm's timeout bounds each read, not the whole exchange (a slow trickle of chunks could last forever).
        limit = self._timeout_s + _TIMEOUT_MARGIN_S
        return limit if max_total_s is None else min(limit, max_total_s - spent_s)

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
            reply, headers = await self._exchange(endpoint, api_key, messages, params, Exchange(on_receipt))
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
        if _litellm.route(endpoint.model) not in _litellm.RECEIVING_ROUTES:
            return None  # litellm's own HTTP stack would send the request instead of replaying the receipt
        try:
            api_key = self._api_key(endpoint)
            reply, _ = await self._exchange(endpoint, api_key, messages, params, Exchange(replay=receipt))
            return _usable(reply, receipt.latency_s)
        except Exception:
            return None

    async def ping(self, endpoint: Endpoint, params: Mapping[str, Any]) -> Ping:
        """One tiny request to the endpoint (one output token), not retried; any answer counts, even an empty one.

        Its latency is the HTTP exchange's where our transport carries it (litellm's set-up on a first call, and
        other pings sharing the event loop, are not the endpoint's latency), else the whole call's.
        """
        started = time.perf_counter()
        exchange = Exchange()
        try:
            api_key = self._api_key(endpoint)
            async with asyncio.timeout(self._time_left(0.0, None)):
                await self._exchange(
                    endpoint, api_key, (Message("user", "ping"),), {**params, "max_tokens": 1}, exchange
                )
        except Exception as exc:
            return Ping(endpoint, None, CallFailed(diagnose(exc).kind, self._said(exc), 1))
        latency_s = exchange.received.latency_s if exchange.received else time.perf_counter() - started
        return Ping(endpoint, latency_s, None)

    async def _exchange(
        self,
        endpoint: Endpoint,
        api_key: str | None,
        messages: tuple[Message, ...],
        params: Mapping[str, Any],
        exchange: Exchange,
    ) -> tuple[_Reply, Mapping[str, str]]:
        """One request, its answer read to the end; the answer's response headers.

        OpenAI-compatible servers named by URL (`api_base` set on the openai route: the simulator, local servers,
        vLLM and the like) are called with the openai SDK directly: litellm's per-call machinery (its logging, its
        cost calculator, a worker thread per call) cost twice the SDK's own CPU per call, and those servers need
        none of its translations. Every other model goes through litellm.
        """
        streamed = params.get("stream") is True
        # Streamed usage comes only when asked for (OpenAI's stream_options; litellm maps it for other providers).
        extra: dict[str, Any] = (
            {"stream_options": {"include_usage": True}} if streamed and "stream_options" not in params else {}
        )
        sdk_client = self._sdk_client(endpoint, api_key)
        if sdk_client is not None and endpoint.api_base is not None and _litellm.route(endpoint.model) == "openai":
            # What the SDK takes no argument for (vLLM's top_k, min_p…) goes in the body as it is, as litellm sends it.
            taken = _openai_arguments()
            body = {name: value for name, value in params.items() if name not in taken}
            arguments = {name: value for name, value in params.items() if name in taken}
            if body:
                arguments["extra_body"] = {**arguments.get("extra_body", {}), **body}
            with exchanging(exchange):
                raw = await sdk_client.chat.completions.with_raw_response.create(
                    model=endpoint.model.removeprefix("openai/"),
                    messages=[{"role": m.role, "content": m.content} for m in messages],
                    timeout=self._timeout_s,
                    **extra,
                    **arguments,
                )
                response = raw.parse()
                reply = await _assembled(response) if streamed else _whole(response, None)
            return reply, raw.headers
        litellm = _litellm.litellm()
        if sdk_client is not None:
            extra["client"] = sdk_client
        with exchanging(exchange):
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
        return reply, _litellm.success_headers(response)

    def _sdk_client(self, endpoint: Endpoint, api_key: str | None) -> Any:
        """The client litellm is to send this endpoint's requests with (ours, on our transport); None on routes
        other than openai and anthropic, which litellm serves with its own (no receipts, no raw-body checks).

        Endpoints that share a gate share a transport, with as many connections as the gate admits requests.
        """
        route = _litellm.route(endpoint.model)
        if route not in _litellm.RECEIVING_ROUTES:
            return None
        key = (route, endpoint.api_base, api_key)
        client = self._sdk_clients.get(key)
        if client is None:
            transport = self._transports.get(endpoint.limiter_key)
            if transport is None:
                transport = self._transports[endpoint.limiter_key] = ReceivingTransport(self._concurrency)
            client = _litellm.sdk_client(route, endpoint.api_base, api_key, transport, self._timeout_s)
            self._sdk_clients[key] = client
        return client

    async def aclose(self) -> None:
        """Close the connections this client holds (call before its event loop ends)."""
        transports = list(self._transports.values())
        self._transports.clear()
        self._sdk_clients.clear()
        for transport in transports:
            await transport.aclose()


async def ping_models(
    models: Sequence[ModelConfig],
    simulator_url: str | None,
    local_urls: Mapping[str, str] | None = None,
    *,
    timeout_s: float,
) -> list[Ping]:
    """One tiny call to each model, all at once, in the models' order: does each answer, and how fast."""
    client = Client(concurrency=len(models), timeout_s=timeout_s, max_attempts=1, max_wait_s=0.0)
    try:
        return list(
            await asyncio.gather(
                *(client.ping(Endpoint.of(model, simulator_url, local_urls), model.params) for model in models)
            )
        )
    finally:
        await client.aclose()


@functools.cache
def _openai_arguments() -> frozenset[str]:
    """The keyword arguments the openai SDK's chat completion takes."""
    from openai.resources.chat.completions import AsyncCompletions

    return frozenset(inspect.signature(AsyncCompletions.create).parameters)


@dataclass(frozen=True)
class _Reply:
    text: str | None
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    served_model: str | None = None
    system_fingerprint: str | None = None


def _usable(reply: _Reply, latency_s: float) -> Completion:
    """The completion in a reply, or UnusableReply if the reply is empty or cut off."""
    if not reply.text:
        raise UnusableReply("empty", "the model returned an empty answer")
    if not reply.finish_reason:
        raise UnusableReply("incomplete", "the answer has no finish reason (cut off)")
    return Completion(
        text=reply.text,
        finish_reason=str(reply.finish_reason),
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        latency_s=latency_s,
        served_model=reply.served_model,
        system_fingerprint=reply.system_fingerprint,
    )


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


def _tokens(usage: Any, name: str) -> int:
    return int(getattr(usage, name, 0) or 0)


def _said(response: Any, name: str) -> str | None:
    """A text the response (or a chunk) carries under `name` (`model`, `system_fingerprint`); None if none."""
    value = getattr(response, name, None)
    return value if isinstance(value, str) and value else None


def _whole(response: Any, received: Receipt | None) -> _Reply:
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    return _Reply(
        text=choice.message.content,
        finish_reason=None if _lacks_finish_reason(received) else choice.finish_reason,
        input_tokens=_tokens(usage, "prompt_tokens"),
        output_tokens=_tokens(usage, "completion_tokens"),
        served_model=_said(response, "model"),
        system_fingerprint=_said(response, "system_fingerprint"),
    )


async def _assembled(stream: Any) -> _Reply:
    """A streamed answer joined from its chunks; its finish reason is the last one any chunk carried."""
    parts: list[str] = []
    finish_reason: str | None = None
    usage: Any = None
    served_model: str | None = None
    fingerprint: str | None = None
    try:
        async for chunk in stream:
            usage = getattr(chunk, "usage", None) or usage
            served_model = _said(chunk, "model") or served_model
            fingerprint = _said(chunk, "system_fingerprint") or fingerprint
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
        served_model=served_model,
        system_fingerprint=fingerprint,
    )
