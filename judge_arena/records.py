"""Typed records passed between the pipeline stages: suites → generate → normalize → judge → rate → report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
Winner = Literal["model_a", "model_b", "tie"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message as sent to a model."""

    role: Role
    content: str


@dataclass(frozen=True)
class Prompt:
    """One item of a prompt suite: a conversation of one or more user turns."""

    id: str
    category: str
    turns: tuple[str, ...]
    suite: str = ""
    references: tuple[str, ...] = ()
    """Reference answers per turn, when the suite ships them (MT-Bench); empty otherwise."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A candidate's complete answer to a prompt: one assistant reply per user turn."""

    model: str
    prompt_id: str
    turns: tuple[str, ...]
    output_tokens: int
    latency_s: float
    cut_turns: int = 0
    """Turns that stopped at max_tokens (finish reason 'length'): judged as written, counted in the report."""
    revision: str | None = None
    """The candidate's configured revision (`CandidateConfig.revision`), if it has one."""
    served_models: tuple[str | None, ...] = ()
    """Per turn, the model the server said it served (None where it did not say); empty for answers not made by a
    server (canaries) and in runs written before it was recorded."""
    system_fingerprints: tuple[str | None, ...] = ()
    """Per turn, the server's `system_fingerprint` (None where it gave none); empty as `served_models`."""


@dataclass(frozen=True)
class Failure:
    """A work item that could not be completed; recorded and reported, never silently dropped."""

    stage: Literal["generate", "judge"]
    item: str
    reason: str


@dataclass(frozen=True, slots=True)
class Battle:
    """One judged game, oriented as shown to the judge (model_a was 'Assistant A')."""

    prompt_id: str
    category: str
    judge: str
    normalization: str
    model_a: str
    model_b: str
    label: str | None
    """The verdict label such as 'A>>B', or None when the judge gave no parseable verdict."""
    winner: Winner | None = None
    weight: float = 1.0
    """How many battles this game counts as: a strong verdict ('>>') counts as several (Arena-Hard uses 3)."""
    flags: tuple[str, ...] = field(default_factory=tuple)
    replies: tuple[str, ...] = ()
    """The judge's replies as received: the verdict with its reasoning, then the answer to the re-ask when there
    was one. Empty for a battle no judge wrote (the panel's)."""
    suite: str = ""
    """The name of the prompt's suite."""
    turn: int = 1
    """The turn the verdict is on: the conversation's last turn (the judge sees every turn up to it)."""
