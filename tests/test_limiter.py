"""Throttling before the provider refuses: budgets on a fake clock, header parsing, AIMD, and the client end to end.

Waits are never slept: a fake clock is advanced by a fake sleep, so the tests measure waits exactly.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web

from judge_arena.client import Client, Endpoint
from judge_arena.limiter import (
    AdaptiveConcurrency,
    Cost,
    Quota,
    RateLimiter,
    estimate_cost,
    parse_duration,
    parse_rate_limit_headers,
)
from judge_arena.records import Message
from judge_arena.sim.faults import Fault, FaultPlan
from judge_arena.sim.server import SimRequest, SimulatorServer, anthropic_events, openai_events, render
from judge_arena.tokens import input_tokens

Route = Literal["openai", "anthropic"]
MODEL = "sim-good-terse"


@dataclass
class FakeTime:
    """A clock that only moves when slept on; every wait is recorded."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def _limiter(fake: FakeTime, **limits: float) -> RateLimiter:
    return RateLimiter(clock=fake, sleep=fake.sleep, **limits)


# --- the budgets, on a fake clock -----------------------------------------------------------------------------


async def test_the_request_bucket_admits_a_burst_then_one_per_interval() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=10)
    admitted: list[float] = []

    async def one() -> None:
        await limiter.acquire(Cost(0, 0))
        admitted.append(fake.now - 1000.0)

    await asyncio.gather(*(one() for _ in range(25)))
    assert admitted == pytest.approx([0.0] * 10 + [6.0 * i for i in range(1, 16)])
    # In any minute, at most the burst plus one minute's refill.
    assert all(sum(start <= t < start + 60 for t in admitted) <= 20 for start in admitted)


async def test_admission_is_in_arrival_order() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, tokens_per_minute=600)
    order: list[str] = []

    async def one(name: str, tokens: int) -> None:
        await limiter.acquire(Cost(tokens, 0))
        order.append(name)

    # The big request waits for the bucket to refill; the small ones behind it do not overtake it.
    await asyncio.gather(one("first", 500), one("big", 500), one("small", 1), one("smaller", 1))
    assert order == ["first", "big", "small", "smaller"]
    assert fake.sleeps == pytest.approx([40.0, 0.1, 0.1])


async def test_a_request_larger_than_the_budget_waits_for_a_full_bucket() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, tokens_per_minute=100)
    await limiter.acquire(Cost(50, 0))
    await limiter.acquire(Cost(10_000, 0))
    assert fake.sleeps == pytest.approx([30.0])


def test_the_estimate_counts_messages_and_max_tokens() -> None:
    messages = (Message("system", "Be brief."), Message("user", "How does binary search work?"))
    cost = estimate_cost(messages, {"max_tokens": 300}, output_estimate=1024)
    assert cost.input_tokens == input_tokens(messages)  # the one estimate the budget uses too
    assert cost.output_tokens == 300
    assert estimate_cost(messages, {}, output_estimate=1024).output_tokens == 1024


async def test_the_estimate_is_corrected_by_usage() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, tokens_per_minute=1000)
    cost = Cost(input_tokens=100, output_tokens=500)
    reservation = await limiter.acquire(cost)
    assert limiter.wait_s(cost) == pytest.approx(12.0)  # 200 tokens missing, at 1000 a minute
    limiter.settle(reservation, input_tokens=100, output_tokens=20)  # 480 tokens refunded
    assert limiter.wait_s(cost) == 0.0
    # Usage above the estimate is a debt: 880 - 1600 leaves -720, and 100 more need 820.
    reservation = await limiter.acquire(cost)
    limiter.settle(reservation, input_tokens=100, output_tokens=1500)
    assert limiter.wait_s(Cost(100, 0)) == pytest.approx(49.2)


# --- the headers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5s", 0.5), ("soon", None), ("", None)],
)
def test_openai_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_openai_headers_are_parsed() -> None:
    headers = {
        "X-RateLimit-Limit-Requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-tokens": "6m0s",
        "content-type": "application/json",
    }
    assert parse_rate_limit_headers(headers) == {
        "requests": Quota(500, 499, 0.12),
        "tokens": Quota(30_000, 29_000, 360.0),
    }


def test_anthropic_headers_are_parsed_against_the_wall_clock() -> None:
    now = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    headers: dict[str, str] = {}
    for name, limit in {"requests": 50, "tokens": 90_000, "input-tokens": 80_000, "output-tokens": 16_000}.items():
        headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{name}-remaining"] = "0"
        headers[f"anthropic-ratelimit-{name}-reset"] = "2025-01-02T03:04:07Z"
    quotas = parse_rate_limit_headers(headers, wall_now=now.timestamp())
    assert quotas == {
        "requests": Quota(50, 0, 2.0),
        "tokens": Quota(90_000, 0, 2.0),
        "input_tokens": Quota(80_000, 0, 2.0),
        "output_tokens": Quota(16_000, 0, 2.0),
    }


def test_litellm_prefixed_headers_win_and_anthropic_names_beat_litellms_copies() -> None:
    headers = {
        # What litellm hands back on an Anthropic answer: the raw headers prefixed, and an OpenAI-style copy.
        "x-ratelimit-remaining-requests": "7",
        "llm_provider-x-ratelimit-remaining-requests": "3",
        "llm_provider-anthropic-ratelimit-requests-remaining": "2",
        "llm_provider-anthropic-ratelimit-requests-reset": "2025-01-02T03:04:06.5Z",
    }
    wall_now = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp()
    assert parse_rate_limit_headers(headers, wall_now=wall_now) == {"requests": Quota(None, 2, 1.5)}
    assert parse_rate_limit_headers({"x-ratelimit-remaining-requests": "nope", "x-other": "1"}) == {}
    assert parse_rate_limit_headers({"content-type": "application/json", "x-request-id": "1"}) == {}


async def test_an_exhausted_budget_holds_every_request_until_its_reset() -> None:
    fake = FakeTime()
    limiter = _limiter(fake)
    hold = limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2.5s"})
    assert hold == pytest.approx(1002.5)
    assert limiter.wait_s(Cost(1, 1)) == pytest.approx(2.5)
    # A call that already waited this hold (as its Retry-After) does not wait it again; any other does.
    await limiter.acquire(Cost(1, 1), waive_until=hold)
    assert fake.sleeps == []
    await limiter.acquire(Cost(1, 1))
    assert fake.sleeps == pytest.approx([2.5])


async def test_the_announced_limit_and_remaining_bound_the_bucket() -> None:
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=1000)
    limiter.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "2"})
    for _ in range(3):
        await limiter.acquire(Cost(0, 0))
    # Two left, then one a second: the provider's 60 a minute, not the configured 1000.
    assert fake.sleeps == pytest.approx([1.0])


# --- AIMD concurrency -----------------------------------------------------------------------------------------


async def test_concurrency_halves_once_per_burst_of_refusals_and_grows_back() -> None:
    concurrency = AdaptiveConcurrency(8, increase_after=2)
    tickets = [await concurrency.acquire() for _ in range(8)]
    for ticket in tickets:  # the whole burst is refused: one halving, not eight
        concurrency.release(ticket, "throttled")
    assert concurrency.limit == 4
    ticket = await concurrency.acquire()
    concurrency.release(ticket, "throttled")  # a refusal admitted after the halving halves again
    assert concurrency.limit == 2
    for _ in range(3):
        ticket = await concurrency.acquire()
        concurrency.release(ticket, "throttled")
    assert concurrency.limit == 1
    for _ in range(20):
        ticket = await concurrency.acquire()
        concurrency.release(ticket, "ok")
    assert concurrency.limit == 8  # +1 every 2 successes, never above the configured maximum
    ticket = await concurrency.acquire()
    concurrency.release(ticket, "other")  # other failures neither shrink nor grow it
    assert concurrency.limit == 8


async def test_no_more_requests_in_flight_than_the_limit_and_in_order() -> None:
    concurrency = AdaptiveConcurrency(4)
    first = [await concurrency.acquire() for _ in range(4)]
    concurrency.release(first.pop(), "throttled")  # limit 2, three still in flight
    started: list[int] = []

    async def waiter(i: int) -> None:
        ticket = await concurrency.acquire()
        started.append(i)
        await asyncio.sleep(0)
        concurrency.release(ticket, "other")

    tasks = [asyncio.create_task(waiter(i)) for i in range(4)]
    await asyncio.sleep(0.01)
    assert started == []
    assert concurrency.in_flight == 3
    concurrency.release(first.pop(), "other")
    await asyncio.sleep(0.01)
    assert started == []  # two in flight: at the limit
    concurrency.release(first.pop(), "other")
    await asyncio.gather(*tasks)
    assert started == [0, 1, 2, 3]
    assert concurrency.in_flight == 1


async def test_a_cancelled_waiter_gives_its_place_on() -> None:
    concurrency = AdaptiveConcurrency(1)
    ticket = await concurrency.acquire()
    cancelled = asyncio.create_task(concurrency.acquire())
    behind = asyncio.create_task(concurrency.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    concurrency.release(ticket, "ok")
    await asyncio.wait_for(behind, 1.0)
    assert cancelled.cancelled()
    assert concurrency.in_flight == 1


# --- the client, end to end against the simulator -------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _endpoint(sim: SimulatorServer, route: Route) -> Endpoint:
    return Endpoint(f"{route}/{MODEL}", f"{sim.url}/v1" if route == "openai" else sim.url, api_key_env=None)


def _client(fake: FakeTime, concurrency: int = 4, **options: Any) -> Client:
    return Client(
        concurrency=concurrency,
        timeout_s=30,
        max_attempts=3,
        max_wait_s=10,
        sleep=fake.sleep,
        clock=fake,
        **options,
    )


def _exhausted_headers(api: str, reset_s: float) -> dict[str, str]:
    if api == "openai":
        return {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": f"{reset_s:g}s"}
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=reset_s)
    return {"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": at.isoformat()}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("route", ["openai", "anthropic"])
async def test_an_answer_announcing_an_exhausted_budget_holds_the_next_request(
    sim: SimulatorServer, route: Route, stream: bool
) -> None:
    fake = FakeTime()
    arrivals: list[float] = []

    async def announce(request: SimRequest) -> web.StreamResponse:
        arrivals.append(fake.now)
        headers = _exhausted_headers(request.api, 3.0)
        if not request.stream:
            response = await render(request, request.reply)
            response.headers.update(headers)
            return response
        # A stream's headers go out with its first bytes: they are set before it is prepared.
        streamed = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await streamed.prepare(request.http)
        for event in (openai_events if request.api == "openai" else anthropic_events)(request, request.reply):
            await streamed.write(event)
        await streamed.write_eof()
        return streamed

    sim.hook = announce
    client = _client(fake)
    params = {"max_tokens": 32, "stream": stream}
    try:
        for i in range(2):
            await client.complete(_endpoint(sim, route), (Message("user", f"hold {route} {stream} {i}"),), params)
    finally:
        sim.hook = None
    # No request left while the limiter said no: the second one arrived only once the announced reset had passed.
    # Anthropic's reset is a wall-clock time: on a loaded machine some of the 3 s pass before it is read.
    assert len(fake.sleeps) == 1
    assert 0.0 < fake.sleeps[0] <= 3.0
    assert arrivals[1] - arrivals[0] == pytest.approx(fake.sleeps[0])


async def test_usage_corrects_the_token_estimate_end_to_end(sim: SimulatorServer) -> None:
    fake = FakeTime()
    client = _client(fake, tokens_per_minute=10_000, output_estimate=4000)
    endpoint = _endpoint(sim, "openai")
    completion = await client.complete(endpoint, (Message("user", "usage end to end"),), {"max_tokens": 4000})
    limiter = client.gate(endpoint).rate
    # The reservation was about 4000 tokens; what is left reflects the far smaller usage instead.
    spent = completion.input_tokens + completion.output_tokens
    assert 0 < spent < 1000
    assert limiter.wait_s(Cost(10_000 - spent - 1, 0)) == 0.0


async def test_refusals_halve_the_concurrency_and_successes_grow_it_back(sim: SimulatorServer) -> None:
    sim.hook = FaultPlan([Fault("rate_limit", first=1)], retry_after_s=0.5).hook()
    fake = FakeTime()
    client = _client(fake, concurrency=8, increase_after=4)
    endpoint = _endpoint(sim, "anthropic")
    try:
        calls = (client.complete(endpoint, (Message("user", f"aimd {i}"),), {"max_tokens": 16}) for i in range(8))
        answers = await asyncio.gather(*calls)
    finally:
        sim.hook = None
    assert all(a.text for a in answers)
    gate = client.gate(endpoint)
    # Eight refusals of one burst: halved once, to 4; then eight successes at +1 per 4: back to 6.
    assert gate.concurrency.limit == 6
    assert gate.concurrency.in_flight == 0
    # The refused calls waited their Retry-After, not the hold their refusal set on top of it.
    assert all(s <= 1.0 for s in fake.sleeps)


async def test_the_wait_for_the_endpoint_is_not_real_time(sim: SimulatorServer) -> None:
    fake = FakeTime()
    client = _client(fake, requests_per_minute=2)
    endpoint = _endpoint(sim, "openai")
    started = time.monotonic()
    for i in range(3):
        await client.complete(endpoint, (Message("user", f"rpm {i}"),), {"max_tokens": 8})
    assert fake.sleeps == pytest.approx([30.0], abs=0.01)
    assert time.monotonic() - started < 30.0  # the wait slept for real would take this long alone


async def test_closed_concurrency_admits_nothing_more_and_lets_the_requests_in_flight_finish() -> None:
    concurrency = AdaptiveConcurrency(1)
    ticket = await concurrency.acquire()
    waiting = asyncio.create_task(concurrency.acquire())
    await asyncio.sleep(0)  # queued behind the request in flight
    concurrency.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(asyncio.CancelledError):
        await concurrency.acquire()
    concurrency.release(ticket, "ok")
    assert concurrency.in_flight == 0
