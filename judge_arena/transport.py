"""The HTTP transport under litellm's openai and anthropic routes: it keeps each answer the moment it arrives.

The network side runs on an I/O thread of its own. The run's event loop is busy for long stretches (litellm spends
milliseconds parsing each answer, the stages render and screen prompts), and an answer that arrives meanwhile would
wait for its turn; the I/O thread reads it at once and hands it to the request's `Exchange` before the answer goes
back to the SDK and litellm to be parsed, so that a process killed in between has it written down (a receipt). The
same transport serves a kept receipt back through litellm to recover it, with no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import time
from collections.abc import Callable, Iterator
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


_POOL_CONNECTIONS = 16
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
    looks at every connection, and for each idle one at every connection again, whenever a request comes or goes,
    which made 128 connections in one pool cost more CPU than the rest of a call.
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
        # Cancelling the wait (a timeout) cancels the exchange on the I/O thread too.
        status, headers, body, extensions = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._fetch(request, exchange), _io_loop())
        )
        return httpx.Response(status, headers=headers, content=body, extensions=extensions)

    async def _fetch(
        self, request: httpx.Request, exchange: Exchange | None
    ) -> tuple[int, httpx.Headers, bytes, dict[str, Any]]:
        """On the I/O thread: the request sent, its answer read to the end and, if successful, kept."""
        if not self._pools:
            self._pools = [
                httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
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
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(pool.aclose(), _io_loop()))


@functools.cache
def _io_loop() -> asyncio.AbstractEventLoop:
    """The event loop of the process's HTTP I/O thread, started on first use (a daemon: it ends with the process)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="judge-arena-http", daemon=True).start()
    return loop
