"""Throttling per endpoint before the provider refuses: request and token budgets, and a concurrency that adapts.

`RateLimiter` keeps one token bucket per unit (requests, tokens, and Anthropic's input and output tokens), filled at
the configured rate per minute and corrected by what the provider says in its rate-limit headers: the limit, what
remains, and when an exhausted budget is replenished. A call reserves its estimated cost before it is sent and is
charged its real usage after. `AdaptiveConcurrency` caps the requests in flight, halving the cap when the provider
pushes back and growing it by one after a run of successes (AIMD).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from judge_arena.records import Message
from judge_arena.tokens import input_tokens, output_cap

Unit = Literal["requests", "tokens", "input_tokens", "output_tokens"]
Outcome = Literal["ok", "throttled", "other"]

_HEADER_PREFIX = "llm_provider-"
"""litellm passes the provider's raw response headers on with this prefix (next to some of its own, unprefixed)."""

_NEGLIGIBLE_S = 1e-6
"""A wait this short is floating-point noise: a clock far from zero cannot even advance by it."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class Quota:
    """One unit's budget as a response announced it; any part may be missing."""

    limit: float | None
    remaining: float | None
    reset_s: float | None
    """Seconds until the budget is fully replenished."""


@dataclass(frozen=True)
class Cost:
    """What one request spends: itself, and the tokens it reads and may write."""

    input_tokens: int
    output_tokens: int

    def of(self, unit: Unit) -> float:
        """The amount of a unit this request takes."""
        match unit:
            case "requests":
                return 1.0
            case "tokens":
                return float(self.input_tokens + self.output_tokens)
            case "input_tokens":
                return float(self.input_tokens)
            case "output_tokens":
                return float(self.output_tokens)


def estimate_cost(messages: Iterable[Message], params: Mapping[str, Any], output_estimate: int) -> Cost:
    """The cost of a request before it is sent: its input as `tokens.input_tokens` estimates it, and its output.

    Providers count `max_tokens` against the budget when a request arrives, so it is the output estimate when set.
    """
    cap = output_cap(params)
    return Cost(input_tokens=input_tokens(messages), output_tokens=output_estimate if cap is None else cap)


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations ('1s', '6m0s', '20ms', '1h2m3.5s') in seconds; None when unreadable."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def _seconds_until(stamp: str | None, wall_now: float) -> float | None:
    if stamp is None:
        return None
    try:
        when = datetime.datetime.fromisoformat(stamp.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - wall_now)


def _reset_s(value: str | None) -> float | None:
    if value is None:
        return None
    seconds = parse_duration(value)
    return seconds if seconds is not None else _number(value)


def parse_rate_limit_headers(headers: Mapping[str, str], wall_now: float | None = None) -> dict[Unit, Quota]:
    """The budgets announced in OpenAI `x-ratelimit-*` or Anthropic `anthropic-ratelimit-*` headers, by unit.

    Header names are matched case-insensitively, with or without litellm's `llm_provider-` prefix (the prefixed,
    raw value wins). Anthropic's resets are RFC 3339 times, read against `wall_now` (default: now).
    """
    named = [(key.lower(), value) for key, value in headers.items() if "ratelimit" in key.lower()]
    if not named:
        return {}  # most answers of servers without limits: nothing more to look at
    wall_now = time.time() if wall_now is None else wall_now
    lowered: dict[str, str] = {}
    for key, value in sorted(named, key=lambda item: item[0].startswith(_HEADER_PREFIX)):
        lowered[key.removeprefix(_HEADER_PREFIX)] = value
    quotas: dict[Unit, Quota] = {}
    for unit in ("requests", "tokens"):
        quota = Quota(
            limit=_number(lowered.get(f"x-ratelimit-limit-{unit}")),
            remaining=_number(lowered.get(f"x-ratelimit-remaining-{unit}")),
            reset_s=_reset_s(lowered.get(f"x-ratelimit-reset-{unit}")),
        )
        if quota != Quota(None, None, None):
            quotas[unit] = quota
    # litellm adds OpenAI-style names to Anthropic responses, without the resets: Anthropic's own names win.
    anthropic_units: dict[str, Unit] = {
        "requests": "requests",
        "tokens": "tokens",
        "input-tokens": "input_tokens",
        "output-tokens": "output_tokens",
    }
    for name, unit in anthropic_units.items():
        quota = Quota(
            limit=_number(lowered.get(f"anthropic-ratelimit-{name}-limit")),
            remaining=_number(lowered.get(f"anthropic-ratelimit-{name}-remaining")),
            reset_s=_seconds_until(lowered.get(f"anthropic-ratelimit-{name}-reset"), wall_now),
        )
        if quota != Quota(None, None, None):
            quotas[unit] = quota
    return quotas


class _Bucket:
    """A token bucket filled at capacity per minute; without a known capacity, only an announced hold limits it."""

    def __init__(self, capacity: float | None, now: float) -> None:
        self.configured = capacity
        self.capacity = capacity
        self.level = capacity if capacity is not None else 0.0
        self.updated = now
        self.hold_until = now

    def refill(self, now: float) -> None:
        if self.capacity is not None:
            elapsed = max(0.0, now - self.updated)
            self.level = min(self.capacity, self.level + elapsed * self.capacity / 60.0)
        self.updated = max(self.updated, now)

    def wait_s(self, amount: float, now: float, waive_until: float) -> float:
        """How long until `amount` can be taken; a hold ending by `waive_until` is not waited again."""
        hold = self.hold_until - now if self.hold_until > waive_until else 0.0
        if self.capacity is None or self.capacity <= 0:
            return max(0.0, hold)
        # A request larger than the whole budget would never fit: it waits for a full bucket instead.
        missing = min(amount, self.capacity) - self.level
        return max(0.0, hold, missing * 60.0 / self.capacity)

    def observe(self, quota: Quota, now: float) -> None:
        if quota.limit is not None and quota.limit > 0:
            learned = quota.limit if self.configured is None else min(self.configured, quota.limit)
            if self.capacity is None:
                self.level = learned
            self.capacity = learned
            self.level = min(self.level, learned)
        if quota.remaining is None:
            return
        if quota.remaining < 1 and quota.reset_s is not None:
            # Exhausted: nothing goes until the provider says the budget is back.
            self.hold_until = max(self.hold_until, now + quota.reset_s)
        elif self.capacity is not None:
            # The server has not seen our requests in flight yet: the lower of its count and ours is the safe one.
            self.level = min(self.level, quota.remaining)


@dataclass(frozen=True)
class Reservation:
    """What `RateLimiter.acquire` took for one request, to be corrected by `settle`."""

    cost: Cost


class RateLimiter:
    """Request and token budgets of one endpoint: FIFO admission, each request waiting until its cost fits.

    `clock` and `sleep` are injectable; a sleep is trusted to have lasted as long as asked, so a test's fake sleep
    that only records (or advances a fake clock) never makes the limiter spin.
    """

    def __init__(
        self,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._now = clock()
        self._lock = asyncio.Lock()
        self._buckets: dict[Unit, _Bucket] = {}
        if requests_per_minute is not None:
            self._buckets["requests"] = _Bucket(requests_per_minute, self._now)
        if tokens_per_minute is not None:
            self._buckets["tokens"] = _Bucket(tokens_per_minute, self._now)

    def _time(self) -> float:
        self._now = max(self._now, self._clock())
        return self._now

    def _wait_s(self, cost: Cost, now: float, waive_until: float) -> float:
        waits = [0.0]
        for unit, bucket in self._buckets.items():
            bucket.refill(now)
            waits.append(bucket.wait_s(cost.of(unit), now, waive_until))
        return max(waits)

    def wait_s(self, cost: Cost) -> float:
        """How long a request of this cost would wait now, if none were queued before it."""
        return self._wait_s(cost, self._time(), -math.inf)

    async def acquire(self, cost: Cost, waive_until: float | None = None) -> Reservation:
        """Wait, in turn, until the request's cost fits every budget, then take it.

        `waive_until` is a hold the caller has already waited out (see `observe`): it is not waited twice.
        """
        waived = -math.inf if waive_until is None else waive_until
        async with self._lock:
            while (wait := self._wait_s(cost, self._time(), waived)) > _NEGLIGIBLE_S:
                deadline = self._now + wait
                await self._sleep(wait)
                self._now = max(self._now, deadline)
            for unit, bucket in self._buckets.items():
                if bucket.capacity is not None:
                    bucket.level -= cost.of(unit)
        return Reservation(cost)

    def settle(self, reservation: Reservation, input_tokens: int, output_tokens: int) -> None:
        """Charge the tokens the response reports instead of the estimate (a refund or a debt)."""
        used = Cost(input_tokens=input_tokens, output_tokens=output_tokens)
        for unit, bucket in self._buckets.items():
            if unit != "requests" and bucket.capacity is not None:
                bucket.level = min(bucket.capacity, bucket.level + reservation.cost.of(unit) - used.of(unit))

    def observe(self, headers: Mapping[str, str]) -> float | None:
        """Take in a response's rate-limit headers; returns when the latest hold ends, if any is ahead."""
        now = self._time()
        for unit, quota in parse_rate_limit_headers(headers).items():
            bucket = self._buckets.get(unit)
            if bucket is None:
                bucket = self._buckets[unit] = _Bucket(None, now)
            bucket.refill(now)
            bucket.observe(quota, now)
        hold = max((b.hold_until for b in self._buckets.values()), default=now)
        return hold if hold > now else None


@dataclass(frozen=True)
class Ticket:
    """One admitted request's place: the epoch it was admitted in, so one burst of refusals halves only once."""

    epoch: int


class AdaptiveConcurrency:
    """At most `limit` requests in flight, FIFO; AIMD: halved on a refusal, +1 after `increase_after` successes.

    Requests already in flight when the limit was halved do not halve it again when they are refused too: they
    belong to the burst that was answered already.
    """

    def __init__(self, maximum: int, *, increase_after: int = 8) -> None:
        if maximum < 1 or increase_after < 1:
            raise ValueError("maximum and increase_after must be ≥ 1")
        self.maximum = maximum
        self.limit = maximum
        self._increase_after = increase_after
        self._in_flight = 0
        self._successes = 0
        self._epoch = 0
        self._closed = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet released."""
        return self._in_flight

    def close(self) -> None:
        """Admit no more requests (a run is stopping): those waiting for a place are cancelled, and so are later ones.

        Requests in flight are left to finish.
        """
        self._closed = True
        while self._waiters:
            self._waiters.popleft().cancel()

    async def acquire(self) -> Ticket:
        """Wait for a place within the current limit, in arrival order; CancelledError once `close`d."""
        if self._closed:
            raise asyncio.CancelledError("no more requests: the run is stopping")
        if not self._waiters and self._in_flight < self.limit:
            self._in_flight += 1
            return Ticket(self._epoch)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Granted just as it was cancelled: the place goes to the next in line.
                self._in_flight -= 1
                self._wake()
            elif waiter in self._waiters:  # `_wake` drops cancelled waiters it comes across
                self._waiters.remove(waiter)
            raise
        return Ticket(self._epoch)

    def release(self, ticket: Ticket, outcome: Outcome) -> None:
        """Give the place back, adapting the limit to how the request went."""
        self._in_flight -= 1
        if outcome == "throttled":
            self._successes = 0
            if ticket.epoch == self._epoch:
                self.limit = max(1, self.limit // 2)
                self._epoch += 1
        elif outcome == "ok":
            self._successes += 1
            if self._successes >= self._increase_after and self.limit < self.maximum:
                self.limit += 1
                self._successes = 0
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._in_flight += 1
