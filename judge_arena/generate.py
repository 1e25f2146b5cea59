"""Generation: a candidate answers a prompt, turn by turn, each later turn asked with the earlier answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from judge_arena.records import Answer, Message, Prompt
from judge_arena.store import Completion

Complete = Callable[[tuple[Message, ...]], Awaitable[Completion]]
"""Sends a conversation to the candidate model and returns its completion (cached and retried by the caller)."""


async def generate_answer(
    model: str, prompt: Prompt, complete: Complete, system_prompt: str | None = None, revision: str | None = None
) -> Answer:
    """The candidate's answer to every turn of the prompt, after its `system_prompt` if it has one, recording its
    `revision` and what the server said it served for each turn; raises the caller's failure if any turn fails."""
    conversation: list[Message] = [Message("system", system_prompt)] if system_prompt is not None else []
    replies: list[str] = []
    served: list[Completion] = []
    output_tokens = 0
    latency_s = 0.0
    cut_turns = 0
    for turn in prompt.turns:
        conversation.append(Message("user", turn))
        completion = await complete(tuple(conversation))
        conversation.append(Message("assistant", completion.text))
        replies.append(completion.text)
        served.append(completion)
        output_tokens += completion.output_tokens
        latency_s += completion.latency_s
        cut_turns += completion.finish_reason == "length"
    return Answer(
        model=model,
        prompt_id=prompt.id,
        turns=tuple(replies),
        output_tokens=output_tokens,
        latency_s=latency_s,
        cut_turns=cut_turns,
        revision=revision,
        served_models=tuple(c.served_model for c in served),
        system_fingerprints=tuple(c.system_fingerprint for c in served),
    )
