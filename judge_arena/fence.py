"""The fences of a judge prompt: how the question and both answers are delimited, written and read back.

Each text is a block between delimiters that carry a nonce, `<<<ANSWER A 1f0c…>>>` … `<<<END ANSWER A 1f0c…>>>`,
and a text of several turns marks them, `[Assistant turn 2]`. `judge.render_game` writes the blocks; the simulated
judge (`sim.models`) reads them back, so the two cannot drift apart.

The nonce is a hash of the three texts, so the same game always renders the same (the cache hits), yet an answer
cannot contain its own closing delimiter: it would have to contain a hash of itself.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, fields

_TITLES = {"question": "QUESTION", "answer_a": "ANSWER A", "answer_b": "ANSWER B"}
_SPEAKERS = {"question": "User", "answer_a": "Assistant", "answer_b": "Assistant"}
_NONCE_LENGTH = 16


@dataclass(frozen=True)
class GameTexts:
    """What a judge prompt shows: the user turns and each assistant's replies, in order."""

    question: tuple[str, ...]
    answer_a: tuple[str, ...]
    answer_b: tuple[str, ...]


def _opening(title: str, nonce: str) -> str:
    return f"<<<{title} {nonce}>>>\n"


def _closing(title: str, nonce: str) -> str:
    return f"\n<<<END {title} {nonce}>>>"


def _turn_marker(speaker: str, number: int) -> str:
    return f"[{speaker} turn {number}]\n"


def _conversation(turns: tuple[str, ...], speaker: str) -> str:
    if len(turns) == 1:
        return turns[0]
    return "\n\n".join(f"{_turn_marker(speaker, i)}{text}" for i, text in enumerate(turns, start=1))


_BEFORE_NONCE, _AFTER_NONCE = _opening(_TITLES["question"], "|").split("|")
_FIRST_OPENING = re.compile(f"{re.escape(_BEFORE_NONCE)}([0-9a-f]{{{_NONCE_LENGTH}}}){re.escape(_AFTER_NONCE)}")


def fence(texts: GameTexts) -> dict[str, str]:
    """Each text as its block, by the name of its template placeholder: `question`, `answer_a`, `answer_b`."""
    bodies = {field.name: _conversation(getattr(texts, field.name), _SPEAKERS[field.name]) for field in fields(texts)}
    nonce = hashlib.sha256("\0".join(bodies.values()).encode()).hexdigest()[:_NONCE_LENGTH]
    return {
        name: f"{_opening(_TITLES[name], nonce)}{body}{_closing(_TITLES[name], nonce)}" for name, body in bodies.items()
    }


def _block(prompt: str, title: str, nonce: str) -> str | None:
    opening, closing = _opening(title, nonce), _closing(title, nonce)
    start = prompt.find(opening)
    if start < 0:
        return None
    end = prompt.find(closing, start + len(opening))
    return None if end < 0 else prompt[start + len(opening) : end]


def _turns(body: str, speaker: str) -> tuple[str, ...]:
    """Split a block into turns on its turn markers, present only when there are several turns."""
    first = _turn_marker(speaker, 1)
    if not body.startswith(first):
        return (body,)
    turns: list[str] = []
    rest = body[len(first) :]
    for number in itertools.count(2):
        marker = f"\n\n{_turn_marker(speaker, number)}"
        cut = rest.find(marker)
        if cut < 0:
            break
        turns.append(rest[:cut])
        rest = rest[cut + len(marker) :]
    turns.append(rest)
    return tuple(turns)


def unfence(prompt: str) -> GameTexts | None:
    """The texts fenced in a judge prompt, or None unless all three blocks are there."""
    opened = _FIRST_OPENING.search(prompt)
    if opened is None:
        return None
    turns = {}
    for name, title in _TITLES.items():
        body = _block(prompt, title, opened.group(1))
        if body is None:
            return None
        turns[name] = _turns(body, _SPEAKERS[name])
    return GameTexts(**turns)
