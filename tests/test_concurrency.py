"""The configured concurrency is reached: with `concurrency: N`, N calls to one endpoint are in flight at once.

The simulator holds every request until N are in flight together (counted on the server side), then answers them
all; a hidden cap below N (an HTTP connection pool's, say) would leave it waiting until its deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from judge_arena.client import Client, Endpoint
from judge_arena.records import Message
from judge_arena.sim.server import SimRequest, SimulatorServer

IN_FLIGHT = 150
"""More than httpx's default pool of 100 connections."""
DEADLINE_S = 60.0
"""Only against a cap: how long the server holds requests waiting for the others, never a timing relied on."""


class Gathering:
    """A hook that holds each request until `expected` are in flight at once (or its deadline passes), then answers
    them all; it records the most it saw in flight together."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.most = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._all_in = asyncio.Event()

    async def __call__(self, request: SimRequest) -> web.StreamResponse | None:
        with self._lock:
            self._in_flight += 1
            self.most = max(self.most, self._in_flight)
            if self._in_flight >= self.expected:
                self._all_in.set()
        try:
            await asyncio.wait_for(self._all_in.wait(), DEADLINE_S)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._in_flight -= 1
        return None


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.mark.parametrize("route", ["openai", "anthropic"])
async def test_the_configured_concurrency_is_in_flight_at_once(sim: SimulatorServer, route: str) -> None:
    gathering = Gathering(IN_FLIGHT)
    sim.hook = gathering
    api_base = f"{sim.url}/v1" if route == "openai" else sim.url
    endpoint = Endpoint(model=f"{route}/sim-good-terse", api_base=api_base, api_key_env=None)
    client = Client(concurrency=IN_FLIGHT, timeout_s=2 * DEADLINE_S, max_attempts=1, max_wait_s=0.0)
    try:
        completions = await asyncio.gather(
            *(
                client.complete(endpoint, (Message("user", f"question {n}"),), {"max_tokens": 8})
                for n in range(IN_FLIGHT)
            )
        )
    finally:
        await client.aclose()
    assert len(completions) == IN_FLIGHT
    assert gathering.most == IN_FLIGHT
