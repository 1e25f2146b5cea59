"""Token counts: the one tokenizer and the one request estimate that the rate limiter, the budget and the style
features share.

Text is counted in tiktoken's cl100k_base tokens, as Arena-Hard-Auto counts answer lengths. A request's input is
estimated from its messages with a margin, since providers' tokenizers count more than cl100k does; its output is
not known before it arrives, so each user of an estimate says what to assume (the limiter: what the provider counts
at admission; the budget: what the model's answers so far used).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import tiktoken

from judge_arena._offline import configure_offline
from judge_arena.records import Message

TOKENS_PER_MESSAGE = 8
"""Role markers and separators the chat format adds to each message."""

INPUT_MARGIN = 1.25
"""cl100k undercounts other tokenizers (Claude's, say) by up to about a quarter."""

_OUTPUT_PARAMS = ("max_tokens", "max_completion_tokens")
"""The parameters that cap a model's output, as litellm passes them on."""


@functools.cache
def _encoding() -> tiktoken.Encoding:
    configure_offline()
    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Length in tiktoken cl100k_base tokens, special-token text counted as ordinary text (as Arena-Hard-Auto)."""
    return len(_encoding().encode(text, disallowed_special=()))


def message_tokens(messages: Iterable[Message]) -> int:
    """The input tokens of a request's messages as cl100k counts them, with the chat format's markers."""
    return sum(count_tokens(m.content) + TOKENS_PER_MESSAGE for m in messages)


def input_tokens(messages: Iterable[Message]) -> int:
    """The input tokens a request is expected to be billed: meant to be at least what any provider counts."""
    return math.ceil(message_tokens(messages) * INPUT_MARGIN)


def output_cap(params: Mapping[str, Any]) -> int | None:
    """The most output tokens a request's parameters allow (`max_tokens` or `max_completion_tokens`); None: unset."""
    for name in _OUTPUT_PARAMS:
        value = params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
