"""The fences of a judge prompt: how the question, both answers and the reference are delimited, written and read back.

Each text is a block between delimiters that carry a nonce, `<<<ANSWER A 1f0c…>>>` … `<<<END ANSWER A 1f0c…>>>`,
and a text of several turns marks them, `[Assistant turn 2]`. Each turn is also a block of its own,
`<<<ANSWER A TURN 2 1f0c…>>>`, for templates that lay the conversation out turn by turn (MT-Bench's `{answer_a_2}`).
`judge.render_game` writes the blocks; the simulated judge (`sim.models`) reads them back, so the two cannot drift
apart.

The nonce is a hash of the texts, so the same game always renders the same (the cache hits), yet an answer cannot
contain its own closing delimiter: it would have to contain a hash of itself.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass

_TITLES = {"question": "QUESTION", "answer_a": "ANSWER A", "answer_b": "ANSWER B", "reference": "REFERENCE"}
_SPEAKERS = {"question": "User", "answer_a": "Assistant", "answer_b": "Assistant", "reference": "Reference"}
TURN_PLACEHOLDERS = {"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "reference": "ref_answer"}
"""The stem of each text's per-turn placeholders: `{question_1}`, `{answer_a_2}`, `{ref_answer_1}`, …"""
_NONCE_LENGTH = 16


@dataclass(frozen=True)
class GameTexts:
    """What a judge prompt shows: the user turns and each assistant's replies, in order."""

    question: tuple[str, ...]
    answer_a: tuple[str, ...]
    answer_b: tuple[str, ...]
    reference: tuple[str, ...] = ()
    """The reference answer per turn; empty when the judge is shown none."""


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


_OPENING = re.compile(rf"<<<({'|'.join(_TITLES.values())})(?: TURN [0-9]+)? ([0-9a-f]{{{_NONCE_LENGTH}}})>>>\n")


def _turn_title(title: str, number: int) -> str:
    return f"{title} TURN {number}"


def fence(texts: GameTexts, names: Collection[str] | None = None) -> dict[str, str]:
    """Each text as its block, by the name of its template placeholder: `question`, `answer_a`, `answer_b` and
    `reference` (when there is one) for the whole conversation, and `question_1`, `answer_a_1`, `ref_answer_1`, …
    for each turn; only those in `names` when given (a template's placeholders: the rest would go unused)."""
    shown = {name: getattr(texts, name) for name in _TITLES if name != "reference" or texts.reference}
    bodies = {name: _conversation(turns, _SPEAKERS[name]) for name, turns in shown.items()}
    # A lone surrogate (which a provider's JSON can hold) as its three bytes: UTF-8 proper cannot encode it.
    nonce = hashlib.sha256("\0".join(bodies.values()).encode("utf-8", "surrogatepass")).hexdigest()[:_NONCE_LENGTH]
    blocks = {}
    for name, body in bodies.items():
        if names is None or name in names:
            title = _TITLES[name]
            blocks[name] = f"{_opening(title, nonce)}{body}{_closing(title, nonce)}"
        for number, text in enumerate(shown[name], start=1):
            placeholder = f"{TURN_PLACEHOLDERS[name]}_{number}"
            if names is None or placeholder in names:
                title = _turn_title(_TITLES[name], number)
                blocks[placeholder] = f"{_opening(title, nonce)}{text}{_closing(title, nonce)}"
    return blocks


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
    """The texts fenced in a judge prompt, each read from its whole block or else from its turn blocks (in turn
    order); None unless the question and both answers are there."""
    opened = _OPENING.search(prompt)
    if opened is None:
        return None
    nonce = opened.group(2)
    turns: dict[str, tuple[str, ...]] = {}
    for name, title in _TITLES.items():
        body = _block(prompt, title, nonce)
        if body is not None:
            turns[name] = _turns(body, _SPEAKERS[name])
            continue
        numbers = sorted({int(n) for n in re.findall(rf"<<<{title} TURN ([0-9]+) {nonce}>>>\n", prompt)})
        found = [_block(prompt, _turn_title(title, number), nonce) for number in numbers]
        turns[name] = tuple(text for text in found if text is not None)
    if not all(turns[name] for name in ("question", "answer_a", "answer_b")):
        return None
    return GameTexts(**turns)
