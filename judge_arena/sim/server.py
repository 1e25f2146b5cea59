"""The simulator's HTTP server: OpenAI Chat Completions and Anthropic Messages, on loopback, no keys needed.

Routes: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic), `GET /v1/models` (OpenAI-style
list of the simulated models). Both chat routes serve every simulated model, streamed or not; errors come in
each provider's own error shape, so the real SDKs and litellm raise their usual exceptions.

Each request goes through the same steps: parse → `SimRequest` (with the `Reply` the model would give) →
optional hook → rendering in the request's API and mode. The hook is the seam for fault injection: it sees the
parsed request and the reply, and may return its own response (an error status with Retry-After, a delay, an
altered reply rendered with `render`, a stream that stops early…) or None to serve the reply unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import re
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from judge_arena.sim.models import (
    CANDIDATES,
    JUDGES,
    TOKENS_PER_WORD,
    ChatMessage,
    estimate_tokens,
    fingerprint,
    prompt_tokens,
    reply,
)

Api = Literal["openai", "anthropic"]
"""Which provider's wire format a request speaks."""

_CREATED = 1_700_000_000
"""The `created` timestamp of every OpenAI response: a fixed one keeps identical requests byte-identical."""

_PIECE = 6
"""Words and spaces per streamed chunk."""

_MAX_BODY_BYTES = 32 * 2**20

_SHUTDOWN_TIMEOUT_S = 1.0
"""How long stopping waits for requests in flight: a request hung by a hook must not hold it up."""


@dataclass(frozen=True)
class Reply:
    """What a simulated model answers to one request, before it is rendered in an API's format."""

    id: str
    text: str
    finish: Literal["stop", "length"]
    """'stop' when the answer is complete, 'length' when max_tokens cut it."""
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class SimRequest:
    """A parsed, valid chat request to a known simulated model, with the reply it will get."""

    api: Api
    http: web.Request
    model: str
    body: Mapping[str, Any]
    messages: tuple[ChatMessage, ...]
    """The conversation as text; an Anthropic top-level system prompt comes first with role 'system'."""
    stream: bool
    reply: Reply


Hook = Callable[[SimRequest], Awaitable[web.StreamResponse | None]]
"""Called on every valid chat request; returns a response to send instead of the reply, or None."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it."""

    path: str
    model: str
    """The requested model name; empty when the body could not be read."""
    status: int
    billed: bool
    """Whether the request would be paid for: a 200 answer of the simulated reply, served in full.

    A response a hook served instead (an error, a cut or malformed body, a dropped stream…) is a fault and never
    billed; a hook that only delays the reply returns None and the reply is billed as usual.
    """
    messages: tuple[ChatMessage, ...]
    """The conversation as text (empty when the body could not be read)."""
    stream: bool


class _RequestError(Exception):
    """A request the simulator refuses; rendered in the provider's error shape."""

    def __init__(self, status: int, kind: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.code = code


def _text_of(content: Any, where: str) -> str:
    """The text of a message content: a string, or a list of text blocks (other block types are ignored)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        texts = []
        for block in content:
            if not isinstance(block, dict):
                raise _RequestError(400, "invalid_request_error", f"{where}: content blocks must be objects")
            if block.get("type") == "text":
                if not isinstance(block.get("text"), str):
                    raise _RequestError(400, "invalid_request_error", f"{where}: a text block needs 'text'")
                texts.append(block["text"])
        return "\n".join(texts)
    raise _RequestError(400, "invalid_request_error", f"{where}: content must be a string or a list of blocks")


def _messages(raw: Any) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise _RequestError(400, "invalid_request_error", "messages: must be a non-empty list")
    messages = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise _RequestError(400, "invalid_request_error", f"messages.{i}: must be an object with a 'role'")
        role = "system" if item["role"] == "developer" else item["role"]
        messages.append(ChatMessage(role, _text_of(item.get("content"), f"messages.{i}")))
    return messages


def _optional_int(body: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or (name != "seed" and value < 1):
            raise _RequestError(400, "invalid_request_error", f"{name}: must be a positive integer")
        return value
    return None


def _truncated(text: str, max_tokens: int | None) -> tuple[str, Literal["stop", "length"]]:
    if max_tokens is None or estimate_tokens(text) <= max_tokens:
        return text, "stop"
    keep = max(1, int(max_tokens / TOKENS_PER_WORD))
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    return text[: ends[keep - 1]], "length"


def _reply(api: Api, model: str, messages: tuple[ChatMessage, ...], seed: int | None, max_tokens: int | None) -> Reply:
    text, finish = _truncated(reply(model, messages, seed), max_tokens)
    key = json.dumps([api, model, [[m.role, m.content] for m in messages], seed, max_tokens])
    digest = hashlib.sha256(key.encode()).hexdigest()
    prefix = "chatcmpl-" if api == "openai" else "msg_"
    return Reply(
        id=prefix + digest[:24],
        text=text,
        finish=finish,
        input_tokens=prompt_tokens(messages),
        output_tokens=estimate_tokens(text),
    )


async def _read_body(http: web.Request) -> dict[str, Any]:
    try:
        body = await http.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _RequestError(400, "invalid_request_error", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _RequestError(400, "invalid_request_error", "the request body must be a JSON object")
    return body


def _model_of(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _RequestError(400, "invalid_request_error", "model: required")
    return model


def _check_known(api: Api, model: str) -> None:
    if model in CANDIDATES or model in JUDGES:
        return
    if api == "openai":
        message = f"The model `{model}` does not exist or you do not have access to it."
        raise _RequestError(404, "invalid_request_error", message, code="model_not_found")
    raise _RequestError(404, "not_found_error", f"model: {model}")


def _conversation(api: Api, body: Mapping[str, Any]) -> tuple[ChatMessage, ...]:
    messages = _messages(body.get("messages"))
    system = body.get("system") if api == "anthropic" else None
    if system is not None:
        messages.insert(0, ChatMessage("system", _text_of(system, "system")))
    return tuple(messages)


def _request(api: Api, http: web.Request, body: Mapping[str, Any], messages: tuple[ChatMessage, ...]) -> SimRequest:
    model = _model_of(body)
    if api == "openai":
        max_tokens = _optional_int(body, "max_completion_tokens", "max_tokens")
    else:
        max_tokens = _optional_int(body, "max_tokens")
        if max_tokens is None:
            raise _RequestError(400, "invalid_request_error", "max_tokens: Field required")
    _check_known(api, model)
    seed = _optional_int(body, "seed")
    return SimRequest(
        api=api,
        http=http,
        model=model,
        body=body,
        messages=messages,
        stream=body.get("stream") is True,
        reply=_reply(api, model, messages, seed, max_tokens),
    )


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type="application/json")


def error_response(api: Api, status: int, kind: str, message: str, code: str | None = None) -> web.Response:
    """An error in the provider's own shape (for hooks that inject faults as well as for refused requests)."""
    if api == "openai":
        return _json({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)
    return _json({"type": "error", "error": {"type": kind, "message": message}}, status)


def _pieces(text: str) -> Iterator[str]:
    """The text in small chunks that join back to it exactly."""
    tokens = re.findall(r"\S+|\s+", text)
    for i in range(0, len(tokens), _PIECE):
        yield "".join(tokens[i : i + _PIECE])


def _openai_usage(reply_: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply_.input_tokens,
        "completion_tokens": reply_.output_tokens,
        "total_tokens": reply_.input_tokens + reply_.output_tokens,
    }


def _openai_body(model: str, reply_: Reply) -> dict[str, Any]:
    return {
        "id": reply_.id,
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "system_fingerprint": fingerprint(model),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply_.text, "refusal": None},
                "logprobs": None,
                "finish_reason": reply_.finish,
            }
        ],
        "usage": _openai_usage(reply_),
    }


def openai_events(request: SimRequest, reply_: Reply) -> Iterator[bytes]:
    """The SSE events of a streamed OpenAI answer, ending with `data: [DONE]`.

    Usage comes in a last chunk with no choices when the client asked for it (stream_options.include_usage),
    as OpenAI does; otherwise on the chunk carrying the finish reason, as many compatible servers do.
    """
    options = request.body.get("stream_options")
    separate_usage = isinstance(options, dict) and options.get("include_usage") is True

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        payload = {
            "id": reply_.id,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": request.model,
            "system_fingerprint": fingerprint(request.model),
            "choices": choices,
            "usage": usage,
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    yield chunk([choice({"role": "assistant", "content": ""})])
    for piece in _pieces(reply_.text):
        yield chunk([choice({"content": piece})])
    usage = _openai_usage(reply_)
    yield chunk([choice({}, reply_.finish)], None if separate_usage else usage)
    if separate_usage:
        yield chunk([], usage)
    yield b"data: [DONE]\n\n"


_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def _anthropic_message(model: str, reply_: Reply, *, streaming: bool) -> dict[str, Any]:
    return {
        "id": reply_.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [] if streaming else [{"type": "text", "text": reply_.text}],
        "stop_reason": None if streaming else _STOP_REASONS[reply_.finish],
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply_.input_tokens,
            "output_tokens": 1 if streaming else reply_.output_tokens,
        },
    }


def anthropic_events(request: SimRequest, reply_: Reply) -> Iterator[bytes]:
    """The SSE events of a streamed Anthropic answer, from message_start to message_stop."""

    def event(name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()

    yield event("message_start", {"message": _anthropic_message(request.model, reply_, streaming=True)})
    yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    yield event("ping", {})
    for piece in _pieces(reply_.text):
        yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
    yield event("content_block_stop", {"index": 0})
    yield event(
        "message_delta",
        {
            "delta": {"stop_reason": _STOP_REASONS[reply_.finish], "stop_sequence": None},
            "usage": {"output_tokens": reply_.output_tokens},
        },
    )
    yield event("message_stop", {})


async def stream(request: SimRequest, events: Iterator[bytes]) -> web.StreamResponse:
    """Send SSE events as a 200 event stream (a hook can pass a shortened or altered sequence)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request.http)
    for data in events:
        await response.write(data)
    await response.write_eof()
    return response


async def render(request: SimRequest, reply_: Reply) -> web.StreamResponse:
    """A reply rendered as the request asked: its API's format, streamed or not."""
    if request.stream:
        events = openai_events if request.api == "openai" else anthropic_events
        return await stream(request, events(request, reply_))
    return _json(answer_body(request, reply_))


def answer_body(request: SimRequest, reply_: Reply) -> dict[str, Any]:
    """The JSON body of a non-streamed answer in the request's API (a hook can alter it before sending it)."""
    if request.api == "openai":
        return _openai_body(request.model, reply_)
    return _anthropic_message(request.model, reply_, streaming=False)


class _Service:
    """The aiohttp application's state and handlers: the request log and the hook."""

    def __init__(self, hook: Hook | None, keep_log: bool) -> None:
        self.hook = hook
        self._keep_log = keep_log
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()

    def app(self) -> web.Application:
        # Judge prompts of long multi-turn answers can pass aiohttp's default 1 MiB body limit.
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _openai(self, http: web.Request) -> web.StreamResponse:
        return await self._chat("openai", http)

    async def _anthropic(self, http: web.Request) -> web.StreamResponse:
        return await self._chat("anthropic", http)

    async def _models(self, _http: web.Request) -> web.Response:
        names = [*CANDIDATES, *JUDGES]
        data = [{"id": n, "object": "model", "created": _CREATED, "owned_by": "judge-arena-sim"} for n in names]
        return _json({"object": "list", "data": data})

    async def _chat(self, api: Api, http: web.Request) -> web.StreamResponse:
        model, messages, streamed, hooked = "", tuple[ChatMessage, ...](), False, False
        response: web.StreamResponse | None = None
        try:
            try:
                body = await _read_body(http)
                model, streamed = str(body.get("model", "")), body.get("stream") is True
                messages = _conversation(api, body)
                request = _request(api, http, body, messages)
                if self.hook is not None:
                    response = await self.hook(request)
                    hooked = response is not None
                if response is None:
                    response = await render(request, request.reply)
            except _RequestError as exc:
                response = error_response(api, exc.status, exc.kind, exc.message, exc.code)
            return response
        finally:
            if self._keep_log:
                # No response means the handler (or a hook) raised: aiohttp answers 500, if anything.
                status = response.status if response is not None else 500
                record = RequestRecord(http.path, model, status, status == 200 and not hooked, messages, streamed)
                with self._lock:
                    self._records.append(record)


class SimulatorServer:
    """The simulator on loopback, served from a background thread with its own event loop.

    Use as a context manager (`with SimulatorServer() as sim: sim.url`) or with `start()` and `stop()`.
    The default port 0 picks a free one.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, hook: Hook | None = None) -> None:
        self._host = host
        self._port = port
        self._service = _Service(hook, keep_log=True)
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """`http://HOST:PORT`, without a trailing slash; the OpenAI base URL is this plus `/v1`."""
        if self._url is None:
            raise RuntimeError("the simulator is not running")
        return self._url

    @property
    def hook(self) -> Hook | None:
        """The hook called on every valid chat request (fault injection); may be changed while running."""
        return self._service.hook

    @hook.setter
    def hook(self, hook: Hook | None) -> None:
        self._service.hook = hook

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        return self._service.records()

    def reset_log(self) -> None:
        """Forget the logged requests."""
        self._service.reset()

    def start(self) -> Self:
        """Bind the port and serve in a background thread; returns once requests are accepted."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        thread = threading.Thread(target=self._run, args=(loop, started), name="judge-arena-sim", daemon=True)
        thread.start()
        try:
            self._url = started.result()
        except BaseException:
            thread.join()
            raise
        self._loop, self._thread = loop, thread
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[str]) -> None:
        asyncio.set_event_loop(loop)
        try:
            runner = loop.run_until_complete(_start(self._service.app(), self._host, self._port))
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(_url(runner))
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def stop(self) -> None:
        """Stop serving and wait for the thread to end; does nothing when not running."""
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop, self._thread, self._url = None, None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def _url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _serve_until_signalled(host: str, port: int) -> None:
    runner = await _start(_Service(None, keep_log=False).app(), host, port)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The loop's own signal handling: a signal delivered to another thread of the process (aiohttp resolves the
    # host on a worker thread) still wakes the loop, where a Python handler would wait for the loop's next event,
    # and with no timer pending that never came.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stopped.set)
    try:
        await stopped.wait()
    finally:
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(stop_signal)
        await runner.cleanup()


def serve(host: str, port: int) -> None:
    """Serve the simulator in the foreground until Ctrl-C or SIGTERM (`judge-arena sim`); no request log is kept."""
    asyncio.run(_serve_until_signalled(host, port))
