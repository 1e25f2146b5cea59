"""The spend cap of a run: token prices, an estimate reserved before each call made, the billed cost after it.

Before a call that is not in the cache, its estimated cost is reserved: its input as `tokens.input_tokens` counts
it, plus the output its model's answers have actually used so far (a high percentile; `runner.output_estimate`
until a few are known). A call that would take reserved plus spent past `budget.max_usd` waits for calls in flight
to settle, and is refused when none is left that could free room; so the run spends nearly all of its cap, and a
rerun with a larger one resumes from the cache. Every attempt the
provider bills is counted at its reported usage (else its estimate), including answers the run cannot use (empty,
cut off). Cached calls cost nothing, and the spend is this run's only.
"""

from __future__ import annotations

import asyncio
import functools
import math
from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from judge_arena import _litellm
from judge_arena.config import ArenaConfig, CandidateConfig, ConfigError, ModelConfig
from judge_arena.records import Message
from judge_arena.tokens import input_tokens, output_cap

_SAMPLES = 5
"""Answers of a model seen before its reservations follow them instead of `runner.output_estimate`."""

_PERCENTILE = 0.95
"""The share of a model's answers seen so far that its output reservation covers."""


class BudgetExceeded(Exception):
    """A call refused: its estimated cost would take the run's spend past `budget.max_usd`."""


@dataclass(frozen=True)
class Price:
    """A model's token prices, in US dollars per token."""

    input_per_token: float
    output_per_token: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The cost in US dollars of a call with these token counts."""
        return input_tokens * self.input_per_token + output_tokens * self.output_per_token


def known_price(model: ModelConfig) -> Price | None:
    """The model's configured price, else litellm's bundled price map's entry for its model string, else None."""
    if model.price is not None:
        return Price(model.price.input_per_mtok / 1e6, model.price.output_per_mtok / 1e6)
    return _litellm_price(model.model)


@functools.cache
def _litellm_price(model: str) -> Price | None:
    litellm = _litellm.litellm()  # seconds to import: only a run with a budget needs its prices
    # The map keys most models without their provider prefix ('gpt-4o-mini', not 'openai/gpt-4o-mini').
    for name in (model, model.split("/", 1)[-1]):
        entry = litellm.model_cost.get(name)
        if entry is None:
            continue
        input_cost, output_cost = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if isinstance(input_cost, int | float) and isinstance(output_cost, int | float):
            return Price(float(input_cost), float(output_cost))
    return None


def check_prices(config: ArenaConfig, path: Path) -> None:
    """Raise ConfigError naming the first model of `config` (read from `path`) whose price is unknown."""
    for field, models in (("candidates", config.candidates), ("judges", config.judges)):
        for i, model in enumerate(models):
            # A candidate read from an answer file is never called, so it has nothing to price.
            called = not isinstance(model, CandidateConfig) or model.called
            if called and known_price(model) is None:
                raise ConfigError(
                    f"{path}: field '{field}.{i}.price': no price known for '{model.model}' in litellm's price map; "
                    "set input_per_mtok and output_per_mtok (required with budget.max_usd)"
                )


@dataclass
class Reservation:
    """What `Budget.reserve` holds for one call until it is released: its estimate, less what was billed since."""

    model: ModelConfig
    price: Price
    input_tokens: int
    output_tokens: int
    held_usd: float


class Budget:
    """The run's spend against its cap: reservations for calls in flight, the billed cost of every attempt made.

    A call reserves its input estimate (`tokens.input_tokens`) plus what its model's answers have used so far:
    `output_estimate` tokens (the model's own, if it has one; capped by its `max_tokens`) until `_SAMPLES` answers
    are known, then the 95th percentile of their output tokens. A call that does not fit waits while calls in
    flight can still free room; when none can, it is refused (a smaller call may still fit after it).
    """

    def __init__(self, max_usd: float, output_estimate: int) -> None:
        self.max_usd = max_usd
        self.spent_usd = 0.0
        """Cost of every attempt billed so far, from its reported usage (else its estimate)."""
        self._output_estimate = output_estimate
        self._outputs: dict[str, list[int]] = {}
        self._held: list[Reservation] = []
        self._freed = asyncio.Event()

    def output_tokens(self, model: ModelConfig) -> int:
        """The output tokens reserved for the model's next call."""
        seen = self._outputs.get(model.name, [])
        # Nearest rank: with fewer than 20 answers seen, the 95th percentile is the longest of them.
        expected = model.runner.output_estimate or self._output_estimate
        estimate = seen[math.ceil(_PERCENTILE * len(seen)) - 1] if len(seen) >= _SAMPLES else expected
        cap = output_cap(model.params)
        return estimate if cap is None else min(estimate, cap)

    async def reserve(self, model: ModelConfig, messages: Sequence[Message]) -> Reservation:
        """Hold the call's estimated cost, waiting while calls in flight may free room; BudgetExceeded when the
        call cannot fit."""
        price = _price(model)
        tokens_in, tokens_out = input_tokens(messages), self.output_tokens(model)
        usd = price.cost(tokens_in, tokens_out)
        while self.spent_usd + self._held_usd() + usd > self.max_usd:
            if not self._held:
                raise BudgetExceeded(f"budget of ${self.max_usd:g} reached")
            await self._freed.wait()
        reservation = Reservation(model, price, tokens_in, tokens_out, usd)
        self._held.append(reservation)
        return reservation

    def bill(self, reservation: Reservation, input_tokens: int, output_tokens: int) -> None:
        """Count one billed attempt of the call, at its reported usage; without usage (zeros), at the estimate."""
        if not (input_tokens or output_tokens):
            input_tokens, output_tokens = reservation.input_tokens, reservation.output_tokens
        elif output_tokens:
            insort(self._outputs.setdefault(reservation.model.name, []), output_tokens)
        cost = reservation.price.cost(input_tokens, output_tokens)
        self.spent_usd += cost
        reservation.held_usd = max(0.0, reservation.held_usd - cost)

    def release(self, reservation: Reservation) -> None:
        """The call is over (answered, failed or cancelled): what it still held is free for the calls waiting."""
        self._held.remove(reservation)
        self._freed.set()
        self._freed = asyncio.Event()

    def _held_usd(self) -> float:
        return sum(r.held_usd for r in self._held)


def _price(model: ModelConfig) -> Price:
    price = known_price(model)
    if price is None:
        raise ConfigError(f"no price known for model '{model.model}'; set its price (required with budget.max_usd)")
    return price
