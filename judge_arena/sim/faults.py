"""Fault injection for the simulator: a seeded plan of provider faults, served through the server's hook seam.

A `FaultPlan` lists `Fault`s, each limited to an endpoint (path) and a model or not, and firing either on the first
N requests of each key or with a probability. A key is one distinct request: path, model and conversation. Whether
the n-th request of a key is faulted depends only on the seed, the key and n — never on timing or on the order in
which concurrent requests arrive — so a run against a plan is reproducible request for request.

    plan = FaultPlan([Fault("overloaded", first=2), Fault("reset", rate=0.1, model="sim-judge")], seed=3)
    with SimulatorServer(hook=plan.hook()) as sim: ...

Faults are served in the shape each provider uses (OpenAI or Anthropic), so the SDKs and litellm meet what they
would meet in production: error statuses with their headers, hung requests, connection resets, malformed bodies,
streams cut short or dropped, empty answers, and an error that echoes the caller's key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import hashlib
import json
import math
import socket
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aiohttp import web

from judge_arena.sim.server import (
    Reply,
    SimRequest,
    answer_body,
    anthropic_events,
    error_response,
    openai_events,
    render,
    stream,
)

FaultKind = Literal[
    "rate_limit",
    "rate_limit_date",
    "rate_limit_ms",
    "quota",
    "server_error",
    "unavailable",
    "overloaded",
    "hang",
    "reset",
    "malformed",
    "cut",
    "drop",
    "empty_text",
    "no_content",
    "echo_key",
    "echo_masked_key",
]
"""What a faulted request gets instead of its answer:

- `rate_limit`: 429 with `Retry-After` in seconds and the provider's rate-limit headers.
- `rate_limit_date`: the same with `Retry-After` as an HTTP date.
- `rate_limit_ms`: the same with `retry-after-ms` (OpenAI's precise form) besides `Retry-After` in seconds.
- `quota`: 429 `insufficient_quota` — the account is out of credit; waiting does not help.
- `server_error`: 500. `unavailable`: 503. `overloaded`: 529 (Anthropic's `overloaded_error`).
- `hang`: no answer until the client gives up (or `hang_s` passes): a read timeout.
- `reset`: the connection is reset (TCP RST) before any response.
- `malformed`: a 200 whose JSON body (or, streamed, one event) is cut in the middle.
- `cut`: the answer ends early, cleanly, with no finish/stop reason (a stream without its last events).
- `drop`: half the answer is sent, then the connection is closed mid-response.
- `empty_text`: a complete answer whose text is `""`.
- `no_content`: a complete answer with no text at all (OpenAI `content: null`, Anthropic no content block).
- `echo_key`: 401 whose message quotes the key the request carried, as some servers do.
- `echo_masked_key`: 401 quoting the key masked, as Google does: its first 10 to 14 characters (it varies with the
  prompt), `...` and its last 4.
"""

FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
"""Every fault kind, in declaration order."""

_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
_AUTH_ERROR = {"openai": "invalid_request_error", "anthropic": "authentication_error"}

_POLL_S = 0.02
"""How often a hung request looks whether its client has gone."""


@dataclass(frozen=True)
class Fault:
    """One fault of a plan, and which requests it hits."""

    kind: FaultKind
    rate: float = 1.0
    """Probability that a matching request gets this fault (ignored when `first` is set)."""
    first: int | None = None
    """Fault exactly the first N requests of each key instead, then let the rest through."""
    path: str | None = None
    """Only requests to this endpoint (`/v1/chat/completions`, `/v1/messages`); None: every endpoint."""
    model: str | None = None
    """Only requests for this model; None: every model."""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {self.rate}")
        if self.first is not None and self.first < 0:
            raise ValueError(f"first must be ≥ 0, got {self.first}")
        if self.path is not None and self.path not in _PATHS.values():
            raise ValueError(f"path must be one of {sorted(_PATHS.values())}, got {self.path!r}")

    def matches(self, request: SimRequest) -> bool:
        """Whether this fault applies to the request's endpoint and model at all."""
        return (self.path is None or self.path == request.http.path) and (
            self.model is None or self.model == request.model
        )


@dataclass(frozen=True)
class Injection:
    """One request the plan faulted."""

    key: str
    """The request's key: a digest of its path, model and conversation."""
    n: int
    """How many requests of this key came before it."""
    kind: FaultKind


@dataclass(frozen=True)
class FaultPlan:
    """Which requests get which fault, reproducibly; `hook()` makes the simulator hook that serves it.

    Faults are tried in order and the first that fires wins. Scheduled faults (`first`) fire on their first N
    requests per key; probabilistic ones share a single uniform draw per request, each taking the next `rate` wide
    band of it, so rates of faults matching the same requests add up (keep their sum ≤ 1).
    """

    faults: Sequence[Fault]
    """Kept as a tuple, whatever sequence was given."""
    seed: int = 0
    retry_after_s: float = 1.0
    """The wait rate-limit faults ask for."""
    hang_s: float = 30.0
    """How long a hung request waits for its client to give up before answering 504 (keep it above the timeout)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(self.faults))
        if self.retry_after_s < 0 or self.hang_s < 0:
            raise ValueError("retry_after_s and hang_s must be ≥ 0")

    def choose(self, request: SimRequest, n: int) -> FaultKind | None:
        """The fault the n-th request of this request's key gets (n counts from 0), or None."""
        draw = _uniform(self.seed, _key(request), n)
        band = 0.0
        for fault in self.faults:
            if not fault.matches(request):
                continue
            if fault.first is not None:
                if n < fault.first:
                    return fault.kind
                continue
            if band <= draw < band + fault.rate:
                return fault.kind
            band += fault.rate
        return None

    def hook(self) -> FaultInjector:
        """A fresh simulator hook serving this plan, with its own request counts and injection log."""
        return FaultInjector(self)


class FaultInjector:
    """The simulator hook of a plan: counts requests per key and serves the chosen faults.

    It runs on the simulator's event loop thread; the log can be read from any thread.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._log: list[Injection] = []

    @property
    def injections(self) -> list[Injection]:
        """A snapshot of the faults served so far, oldest first."""
        with self._lock:
            return list(self._log)

    async def __call__(self, request: SimRequest) -> web.StreamResponse | None:
        """Serve the request's fault if the plan gives it one; None lets the simulator answer as usual."""
        key = _key(request)
        with self._lock:
            n = self._seen.get(key, 0)
            self._seen[key] = n + 1
            kind = self.plan.choose(request, n)
            if kind is not None:
                self._log.append(Injection(key, n, kind))
        if kind is None:
            return None
        return await _serve(kind, request, self.plan)


def _key(request: SimRequest) -> str:
    conversation = [[m.role, m.content] for m in request.messages]
    return hashlib.sha256(json.dumps([request.http.path, request.model, conversation]).encode()).hexdigest()


def _uniform(seed: int, key: str, n: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}:{n}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


async def _serve(kind: FaultKind, request: SimRequest, plan: FaultPlan) -> web.StreamResponse:
    api = request.api
    match kind:
        case "rate_limit" | "rate_limit_date" | "rate_limit_ms":
            return _rate_limited(kind, request, plan.retry_after_s)
        case "quota":
            message = "You exceeded your current quota, please check your plan and billing details."
            kind_name = "insufficient_quota" if api == "openai" else "rate_limit_error"
            return error_response(api, 429, kind_name, f"{message} (insufficient_quota)", code="insufficient_quota")
        case "server_error":
            return error_response(api, 500, "server_error" if api == "openai" else "api_error", "Internal error")
        case "unavailable":
            return error_response(api, 503, "service_unavailable", "The service is temporarily unavailable.")
        case "overloaded":
            return error_response(api, 529, "overloaded_error", "Overloaded")
        case "hang":
            return await _hang(request, plan.hang_s)
        case "reset":
            _reset(request)
            return _closed()
        case "malformed":
            return await _malformed(request)
        case "cut":
            return await _cut(request)
        case "drop":
            return await _drop(request)
        case "empty_text":
            return await render(request, _emptied(request.reply))
        case "no_content":
            return await _no_content(request)
        case "echo_key":
            return error_response(api, 401, _AUTH_ERROR[api], f"Incorrect API key provided: {_key_sent(request)}.")
        case "echo_masked_key":
            sent = _key_sent(request)
            shown = 10 + len(request.messages[-1].content) % 5 if request.messages else 12
            message = f"API key not valid. Please pass a valid API key. (key: {sent[:shown]}...{sent[-4:]})"
            return error_response(api, 401, _AUTH_ERROR[api], message)


def _key_sent(request: SimRequest) -> str:
    headers = request.http.headers
    return headers.get("x-api-key") or headers.get("Authorization", "").removeprefix("Bearer ")


def _rate_limited(kind: FaultKind, request: SimRequest, wait_s: float) -> web.Response:
    response = error_response(
        request.api,
        429,
        "rate_limit_exceeded" if request.api == "openai" else "rate_limit_error",
        f"Rate limit reached for requests. Please try again in {wait_s:g}s.",
        code="rate_limit_exceeded",
    )
    now = datetime.datetime.now(datetime.UTC)
    reset_at = now + datetime.timedelta(seconds=wait_s)
    if kind == "rate_limit_date":
        # HTTP dates have whole seconds: round up so the wait is never shorter than asked.
        response.headers["Retry-After"] = email.utils.format_datetime(
            reset_at.replace(microsecond=0) + datetime.timedelta(seconds=1 if reset_at.microsecond else 0),
            usegmt=True,
        )
    else:
        response.headers["Retry-After"] = str(math.ceil(wait_s))
    if kind == "rate_limit_ms":
        response.headers["retry-after-ms"] = str(round(wait_s * 1000))
    response.headers.update(_rate_limit_headers(request, wait_s, reset_at))
    return response


def _rate_limit_headers(request: SimRequest, wait_s: float, reset_at: datetime.datetime) -> dict[str, str]:
    # Generous announced limits, like a paid tier's: the client's limiter obeys them, so a small token budget here
    # would throttle a whole test run to a few requests a minute.
    limits = {"requests": 10_000, "tokens": 50_000_000}
    if request.api == "openai":
        headers = {}
        for unit, limit in limits.items():
            headers[f"x-ratelimit-limit-{unit}"] = str(limit)
            headers[f"x-ratelimit-remaining-{unit}"] = "0"
            headers[f"x-ratelimit-reset-{unit}"] = f"{wait_s:g}s"
        return headers
    limits |= {"input-tokens": 40_000_000, "output-tokens": 10_000_000}
    stamp = reset_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    headers = {}
    for unit, limit in limits.items():
        headers[f"anthropic-ratelimit-{unit}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{unit}-remaining"] = "0"
        headers[f"anthropic-ratelimit-{unit}-reset"] = stamp
    return headers


def _client_gone(request: SimRequest) -> bool:
    transport = request.http.transport
    return transport is None or transport.is_closing()


async def _hang(request: SimRequest, hang_s: float) -> web.StreamResponse:
    # Waiting out hang_s after the client left would hold up the server's shutdown for nothing.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hang_s
    while loop.time() < deadline and not _client_gone(request):
        await asyncio.sleep(_POLL_S)
    if _client_gone(request):
        return _closed()
    return error_response(request.api, 504, "timeout", "The request hung and was given up.")


def _closed() -> web.Response:
    """What a hook returns for a request whose connection is already gone: logged as 499, sent to nobody."""
    return web.Response(status=499, reason="Connection Closed")


def _reset(request: SimRequest) -> None:
    transport = request.http.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # A zero linger time makes close() send RST rather than FIN: the client sees "connection reset by peer".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _events(request: SimRequest) -> list[bytes]:
    events = openai_events if request.api == "openai" else anthropic_events
    return list(events(request, request.reply))


def _carries_text(request: SimRequest, event: bytes) -> bool:
    if request.api == "anthropic":
        return event.startswith(b"event: content_block_delta")
    choices = (_payload(event) or {}).get("choices")
    return isinstance(choices, list) and bool(choices) and bool(choices[0].get("delta", {}).get("content"))


def _payload(event: bytes) -> dict[str, Any] | None:
    for line in event.decode().splitlines():
        if line.startswith("data: {"):
            payload = json.loads(line.removeprefix("data: "))
            return payload if isinstance(payload, dict) else None
    return None


def _first_half(request: SimRequest) -> Iterator[bytes]:
    """The stream's events up to the middle of its text, without any of the closing events."""
    events = _events(request)
    texts = [i for i, event in enumerate(events) if _carries_text(request, event)]
    # At least one text event goes out, so the client has a partial answer it could mistake for a whole one.
    end = texts[max(1, len(texts) // 2) - 1] + 1 if texts else 1
    return iter(events[:end])


def _half_text(request: SimRequest) -> str:
    words = request.reply.text.split(" ")
    return " ".join(words[: max(1, len(words) // 2)])


async def _cut(request: SimRequest) -> web.StreamResponse:
    if request.stream:
        return await stream(request, _first_half(request))
    body = answer_body(request, dataclasses.replace(request.reply, text=_half_text(request)))
    if request.api == "openai":
        body["choices"][0]["finish_reason"] = None
    else:
        body["stop_reason"] = None
    return _json_response(body)


async def _malformed(request: SimRequest) -> web.StreamResponse:
    if request.stream:
        events = list(_first_half(request))
        broken = events[-1].rstrip(b"\n")
        return await stream(request, iter([*events[:-1], broken[: len(broken) // 2] + b"\n\n"]))
    raw = json.dumps(answer_body(request, request.reply)).encode()
    return web.Response(body=raw[: len(raw) // 2], content_type="application/json")


async def _drop(request: SimRequest) -> web.StreamResponse:
    if request.stream:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request.http)
        for event in _first_half(request):
            await response.write(event)
    else:
        raw = json.dumps(answer_body(request, request.reply)).encode()
        # The full length is announced, so the client knows the body it got is short.
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(len(raw))})
        await response.prepare(request.http)
        await response.write(raw[: len(raw) // 2])
    # close() flushes what was written, then ends the connection mid-response (FIN, no RST).
    if request.http.transport is not None:
        request.http.transport.close()
    return response


def _emptied(reply_: Reply) -> Reply:
    """The reply with nothing in it, yet complete: it stopped of its own accord (never cut by max_tokens)."""
    return dataclasses.replace(reply_, text="", finish="stop", output_tokens=0)


async def _no_content(request: SimRequest) -> web.StreamResponse:
    reply_ = _emptied(request.reply)
    if request.stream:
        if request.api == "openai":
            return await stream(request, openai_events(request, reply_))
        events = (e for e in anthropic_events(request, reply_) if not e.startswith(b"event: content_block"))
        return await stream(request, events)
    body = answer_body(request, reply_)
    if request.api == "openai":
        body["choices"][0]["message"]["content"] = None
    else:
        body["content"] = []
    return _json_response(body)


def _json_response(body: Mapping[str, Any]) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")
