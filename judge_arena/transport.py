"""The HTTP transport under litellm's openai and anthropic routes: it keeps each answer the moment it arrives.

The network side runs on an I/O thread of its own; requests are handed to it, and answers back, in batches (one
wake-up of the other thread's loop for all those waiting when it comes round). The run's event loop is busy for long
stretches (litellm spends milliseconds parsing each answer, the stages render and screen prompts), and an answer
that arrives meanwhile would wait for its turn; the I/O thread reads it at once and hands it to the request's
`Exchange` before the answer goes back to the SDK and litellm to be parsed, so that a process killed in between has
it written down (a receipt). The same transport serves a kept receipt back through litellm to recover it, with no
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from judge_arena.store import Receipt


@dataclass
class Exchange:
    """One request's HTTP answer as the transport sees it."""

    on_receipt: Callable[[Receipt], None] | None = None
    """Called with a successful answer the moment it has arrived in full."""
    replay: Receipt | None = None
    """An answer received earlier, served instead of asking the provider."""
    received: Receipt | None = None
    """The successful answer, once it has arrived (or been replayed)."""

    def receive(self, receipt: Receipt) -> None:
        """Keep the answer that has just arrived, and hand it on."""
        self.received = receipt
        if self.on_receipt is not None:
            self.on_receipt(receipt)


_POOL_CONNECTIONS = 4
"""The most connections one httpcore pool holds (see `ReceivingTransport`)."""

_EXCHANGE: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("judge_arena_exchange", default=None)
"""The exchange of the request being made in this task (litellm gives no per-request hook at the HTTP level)."""


@contextlib.contextmanager
def exchanging(exchange: Exchange) -> Iterator[Exchange]:
    """Route the requests this task makes meanwhile through `exchange`."""
    token = _EXCHANGE.set(exchange)
    try:
        yield exchange
    finally:
        _EXCHANGE.reset(token)


class ReceivingTransport(httpx.AsyncBaseTransport):
    """Sends requests from the I/O thread and keeps each successful answer as it arrives (or replays one).

    Bodies are asked for uncompressed, so that what is kept is exactly what is parsed; they are read whole,
    streamed ones too (the client only ever uses a stream once it has ended).

    At most `connections` are open at once, all kept alive between requests (httpx's defaults, 100 and 20, would
    cap a larger concurrency silently and reconnect for most requests past 20). They are shared out among pools of
    at most `_POOL_CONNECTIONS`, each request sent through the pool with the fewest in flight: httpcore's pool
    looks at every connection, and for each idle one at every connection again (each look a system call or two),
    whenever a request comes or goes: 128 connections in one pool cost more CPU than the rest of a call, and pools
    of 16 still cost about 40 such calls per request, pools of 4 fewer than 3.
    """

    def __init__(self, connections: int) -> None:
        pools = -(-connections // _POOL_CONNECTIONS)
        self._sizes = [connections // pools + (i < connections % pools) for i in range(pools)]
        self._pools: list[httpx.AsyncHTTPTransport] = []
        self._in_flight = [0] * pools

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The answer to a request: replayed from the exchange's receipt, else fetched on the I/O thread."""
        exchange = _EXCHANGE.get()
        if exchange is not None and exchange.replay is not None:
            replayed = exchange.replay
            exchange.received = replayed
            return httpx.Response(200, headers={"content-type": replayed.content_type}, content=replayed.body)
        request.headers["accept-encoding"] = "identity"
        loop = asyncio.get_running_loop()
        fetch = _Fetch(self._fetch(request, exchange), loop.create_future(), _mailbox(loop))
        io = _io_thread()
        io.post(fetch.start)
        try:
            status, headers, body, extensions = await fetch.answer
        except asyncio.CancelledError:
            io.post(fetch.cancel)  # a timeout: the exchange on the I/O thread is cancelled too
            raise
        return httpx.Response(status, headers=headers, content=body, extensions=extensions)

    async def _fetch(
        self, request: httpx.Request, exchange: Exchange | None
    ) -> tuple[int, httpx.Headers, bytes, dict[str, Any]]:
        """On the I/O thread: the request sent, its answer read to the end and, if successful, kept."""
        if not self._pools:
            # One TLS context for all the pools, as one client's connections share one: each pool building its own
            # (reading the CA bundle) would take ~30 ms of CPU on this thread per pool.
            tls = httpx.create_ssl_context()
            self._pools = [
                httpx.AsyncHTTPTransport(
                    verify=tls, limits=httpx.Limits(max_connections=n, max_keepalive_connections=n)
                )
                for n in self._sizes
            ]
        pool = min(range(len(self._pools)), key=self._in_flight.__getitem__)
        self._in_flight[pool] += 1
        started = time.perf_counter()
        try:
            response = await self._pools[pool].handle_async_request(request)
            try:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        finally:
            self._in_flight[pool] -= 1
        if exchange is not None and response.status_code == 200:
            content_type = response.headers.get("content-type", "")
            exchange.receive(Receipt(content_type, body, time.perf_counter() - started))
        passed_on = {k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")}
        return response.status_code, response.headers, body, passed_on

    async def aclose(self) -> None:
        """Close the connections held on the I/O thread."""
        pools, self._pools = self._pools, []
        for pool in pools:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(pool.aclose(), _io_thread().loop))


_Answer = tuple[int, httpx.Headers, bytes, dict[str, Any]]


class _Mailbox:
    """Callbacks posted to an event loop from another thread, run in batches: the loop is woken once for all those
    posted before it comes round to them, not once each (each wake-up is a write to the loop's socket, and a chance
    for the thread that made it to lose the GIL)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._posted: list[Callable[[], None]] = []

    def post(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop soon (dropped if the loop is closed by then)."""
        with self._lock:
            self._posted.append(callback)
            if len(self._posted) > 1:
                return  # the loop is woken already, and runs this one with the others
        with contextlib.suppress(RuntimeError):  # the loop is closed: no one is waiting for its callbacks
            self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        with self._lock:
            posted, self._posted = self._posted, []
        for callback in posted:
            callback()


class _Fetch:
    """One request sent from the I/O thread for a task of another loop, its answer handed back to that loop."""

    def __init__(
        self, fetch: Coroutine[Any, Any, _Answer], answer: asyncio.Future[_Answer], reply_to: _Mailbox
    ) -> None:
        self._fetch = fetch
        self.answer = answer
        """Set on the caller's loop."""
        self._reply_to = reply_to
        self._task: asyncio.Task[_Answer] | None = None

    def start(self) -> None:
        """On the I/O thread: send the request."""
        self._task = asyncio.get_running_loop().create_task(self._fetch)
        self._task.add_done_callback(self._done)

    def cancel(self) -> None:
        """On the I/O thread (posted after `start`, so run after it): the caller has stopped waiting."""
        if self._task is not None:
            self._task.cancel()

    def _done(self, task: asyncio.Task[_Answer]) -> None:
        self._reply_to.post(functools.partial(self._hand_back, task))

    def _hand_back(self, task: asyncio.Task[_Answer]) -> None:
        """On the caller's loop, once the task on the I/O thread is done: its answer, or what went wrong."""
        if task.cancelled():
            self.answer.cancel()
        elif (error := task.exception()) is not None:
            if not self.answer.done():
                self.answer.set_exception(error)
        elif not self.answer.done():
            self.answer.set_result(task.result())


_MAILBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    """The mailbox of an event loop (called on that loop's thread)."""
    mailbox = _MAILBOXES.get(loop)
    if mailbox is None:
        mailbox = _MAILBOXES[loop] = _Mailbox(loop)
    return mailbox


@functools.cache
def _io_thread() -> _Mailbox:
    """The mailbox of the process's HTTP I/O thread's event loop, started on first use (a daemon: it ends with the
    process)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="judge-arena-http", daemon=True).start()
    return _Mailbox(loop)
