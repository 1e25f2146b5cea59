"""The spend cap of a run: token prices, an estimate reserved before each call made, the actual cost after it.

Before a call that is not in the cache, its estimated cost is reserved: the input counted in cl100k tokens (with a
margin, since providers' tokenizers count more) plus the model's `max_tokens` as output (`DEFAULT_OUTPUT_TOKENS`
when unset). A call whose reservation would take reserved plus spent past `budget.max_usd` is refused, and so is
every later one: the run stops, it does not pick cheaper calls. When a call returns, its reservation is replaced by
its cost from the usage the provider reported. Cached calls cost nothing, and the spend is this run's only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from judge_arena.config import ArenaConfig, ConfigError, ModelConfig
from judge_arena.records import Message
from judge_arena.store import Completion

DEFAULT_OUTPUT_TOKENS = 1024
"""Output tokens reserved for a call whose model sets no `max_tokens` (an estimate, not a bound: set `max_tokens`
for a cap the provider enforces)."""

_INPUT_MARGIN = 1.25
"""cl100k undercounts other tokenizers (Claude's, the simulator's 1.3 tokens a word) by up to about a quarter."""

_TOKENS_PER_MESSAGE = 8
"""Role markers and separators the chat format adds to each message."""

_OUTPUT_PARAMS = ("max_tokens", "max_completion_tokens")
"""The parameters that cap a model's output, as litellm passes them on."""


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
    # Imported here: litellm takes seconds to import, and only a run with a budget needs its prices.
    import litellm

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
            if known_price(model) is None:
                raise ConfigError(
                    f"{path}: field '{field}.{i}.price': no price known for '{model.model}' in litellm's price map; "
                    "set input_per_mtok and output_per_mtok (required with budget.max_usd)"
                )


def estimate_tokens(model: ModelConfig, messages: Sequence[Message]) -> tuple[int, int]:
    """The input and output tokens reserved for a call: meant to be at least what the provider will bill."""
    from judge_arena.style import count_tokens

    counted = sum(count_tokens(message.content) + _TOKENS_PER_MESSAGE for message in messages)
    output = next((model.params[name] for name in _OUTPUT_PARAMS if model.params.get(name)), DEFAULT_OUTPUT_TOKENS)
    return math.ceil(counted * _INPUT_MARGIN), int(output)


class Budget:
    """The run's spend against its cap: reservations for calls in flight, actual costs for calls done."""

    def __init__(self, max_usd: float) -> None:
        self.max_usd = max_usd
        self.spent_usd = 0.0
        """Actual cost of the calls made so far, from their reported usage."""
        self.reached = False
        """Whether a call was refused; every later call is refused too."""
        self._reserved = 0.0

    def reserve(self, model: ModelConfig, messages: Sequence[Message]) -> float:
        """Reserve the call's estimated cost and return it; raise BudgetExceeded when it does not fit."""
        estimate = _price(model).cost(*estimate_tokens(model, messages))
        if self.reached or self.spent_usd + self._reserved + estimate > self.max_usd:
            self.reached = True
            raise BudgetExceeded(f"budget of ${self.max_usd:g} reached")
        self._reserved += estimate
        return estimate

    def settle(self, model: ModelConfig, reservation: float, completion: Completion | None) -> None:
        """Replace a reservation by the call's actual cost; a failed call (None) reported no usage and costs 0."""
        self._reserved -= reservation
        if completion is not None:
            self.spent_usd += _price(model).cost(completion.input_tokens, completion.output_tokens)


def _price(model: ModelConfig) -> Price:
    price = known_price(model)
    if price is None:
        raise ConfigError(f"no price known for model '{model.model}'; set its price (required with budget.max_usd)")
    return price
