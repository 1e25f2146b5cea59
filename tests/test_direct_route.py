"""OpenAI-compatible servers named by URL are called with the openai SDK directly, not through litellm: an answer,
streamed or whole, its usage and its rate-limit headers arrive as through litellm, at a fraction of the CPU."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import pytest
from aiohttp import web

from judge_arena import _litellm
from judge_arena.client import Client, Endpoint
from judge_arena.limiter import Cost
from judge_arena.records import Message
from judge_arena.sim.server import SimRequest, SimulatorServer, render

EXHAUSTED = {
    "x-ratelimit-limit-requests": "10",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "30s",
}


async def _exhausted(request: SimRequest) -> web.StreamResponse:
    response = await render(request, request.reply)
    response.headers.update(EXHAUSTED)
    return response


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def no_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> NoReturn:
        raise AssertionError("litellm was used")

    monkeypatch.setattr(_litellm, "litellm", refuse)


@pytest.mark.usefixtures("no_litellm")
@pytest.mark.parametrize("params", [{"max_tokens": 32}, {"max_tokens": 32, "stream": True}], ids=["whole", "streamed"])
async def test_an_openai_compatible_server_is_called_without_litellm(
    sim: SimulatorServer, params: dict[str, Any]
) -> None:
    client = Client(concurrency=2, timeout_s=30.0, max_attempts=1, max_wait_s=0.0)
    endpoint = Endpoint("openai/sim-good-terse", f"{sim.url}/v1", None)
    try:
        completion = await client.complete(endpoint, (Message("user", "How do hash maps work?"),), params)
    finally:
        await client.aclose()
    assert completion.text
    assert completion.finish_reason in {"stop", "length"}
    assert completion.input_tokens > 0
    assert completion.output_tokens > 0
    (request,) = sim.requests
    assert request.model == "sim-good-terse"  # the provider prefix is litellm's, not the server's


@pytest.mark.usefixtures("no_litellm")
async def test_the_answers_rate_limit_headers_reach_the_limiter(sim: SimulatorServer) -> None:
    sim.hook = _exhausted
    client = Client(concurrency=2, timeout_s=30.0, max_attempts=1, max_wait_s=0.0)
    endpoint = Endpoint("openai/sim-good-terse", f"{sim.url}/v1", None)
    try:
        await client.complete(endpoint, (Message("user", "How do hash maps work?"),), {"max_tokens": 8})
    finally:
        await client.aclose()
    assert client.gate(endpoint).rate.wait_s(Cost(1, 1)) > 20.0


@pytest.mark.usefixtures("no_litellm")
async def test_parameters_the_sdk_does_not_know_reach_the_server(sim: SimulatorServer) -> None:
    client = Client(concurrency=2, timeout_s=30.0, max_attempts=1, max_wait_s=0.0)
    endpoint = Endpoint("openai/sim-good-terse", f"{sim.url}/v1", None)
    bodies: list[Mapping[str, Any]] = []

    async def keep(request: SimRequest) -> None:
        bodies.append(request.body)

    sim.hook = keep
    try:
        params = {"max_tokens": 8, "top_k": 5, "min_p": 0.1, "temperature": 0}
        await client.complete(endpoint, (Message("user", "How do hash maps work?"),), params)
    finally:
        await client.aclose()
    (body,) = bodies
    assert {name: body[name] for name in ("max_tokens", "top_k", "min_p", "temperature")} == params
