"""The transport's hand-offs between the run's event loop and the HTTP I/O thread, batched each way."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from judge_arena.sim.server import SimRequest, SimulatorServer
from judge_arena.transport import Exchange, ReceivingTransport, _Mailbox, exchanging

AT_ONCE = 64
"""Requests sent together: more than one pool's connections, so that they are spread over several."""


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _request(question: str) -> dict[str, object]:
    return {"model": "sim-good-terse", "messages": [{"role": "user", "content": question}], "max_tokens": 8}


async def _echo(request: SimRequest) -> web.StreamResponse:
    return web.Response(text=request.messages[-1].content)


class _CountingLoop(asyncio.SelectorEventLoop):
    """Counts its wake-ups from other threads."""

    wake_ups = 0

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:  # type: ignore[override]
        self.wake_ups += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def test_callbacks_posted_before_the_loop_comes_round_run_after_one_wake_up() -> None:
    loop = _CountingLoop()
    mailbox = _Mailbox(loop)
    ran: list[int] = []

    def post(*numbers: int) -> None:
        for n in numbers:
            mailbox.post(functools.partial(ran.append, n))

    try:
        poster = threading.Thread(target=post, args=range(5))
        poster.start()
        poster.join()
        loop.run_until_complete(asyncio.sleep(0))
        assert (ran, loop.wake_ups) == ([0, 1, 2, 3, 4], 1)
        post(5)  # the loop has come round: the next post wakes it again
        loop.run_until_complete(asyncio.sleep(0))
        assert (ran, loop.wake_ups) == ([0, 1, 2, 3, 4, 5], 2)
    finally:
        loop.close()


async def test_requests_handed_over_together_each_get_their_own_answer(sim: SimulatorServer) -> None:
    sim.hook = _echo
    transport = ReceivingTransport(AT_ONCE // 2)

    async def ask(client: httpx.AsyncClient, question: str) -> tuple[str, bytes | None]:
        with exchanging(Exchange()) as exchange:
            answer = await client.post(f"{sim.url}/v1/chat/completions", json=_request(question))
        return answer.text, None if exchange.received is None else exchange.received.body

    try:
        async with httpx.AsyncClient(transport=transport) as client:
            questions = [f"question {n}" for n in range(AT_ONCE)]
            answers = await asyncio.gather(*(ask(client, question) for question in questions))
    finally:
        await transport.aclose()
    assert answers == [(question, question.encode()) for question in questions]


async def test_a_request_no_longer_waited_for_is_cancelled_on_the_io_thread(sim: SimulatorServer) -> None:
    """A timeout on the run's loop hangs up the request the I/O thread sent: the server sees it go."""
    hung_up = threading.Event()

    async def hold(request: SimRequest) -> None:
        while not hung_up.is_set():
            transport = request.http.transport
            if transport is None or transport.is_closing():
                hung_up.set()
            await asyncio.sleep(0.01)

    sim.hook = hold
    transport = ReceivingTransport(1)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=300) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):  # the server never answers: this always fires
                    await client.post(f"{sim.url}/v1/chat/completions", json=_request("held"))
            assert await asyncio.to_thread(hung_up.wait, 30)
    finally:
        hung_up.set()
        await transport.aclose()
