"""What a run would cost before it is made: the calls it would make net of the cache, their tokens and their price.

The calls are the run's own, built as the run builds them (`runner.call_key`, `judge.shown`), and looked up in the
cache without claiming or storing anything. Input tokens are counted with `tokens.message_tokens` on the rendered
prompts and judge templates. Output tokens: a model whose replies the cache holds some of (a judge's verdicts on
other games, a candidate's answers to other prompts) is expected to write as much as those did on average; else its
`output_estimate` (its own, or the runner's), within its `max_tokens`. An answer not in the cache yet counts as that
many tokens in the judge's prompt. A judge re-asked for a missing verdict asks once more: such calls are not foreseen.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Literal

from judge_arena.arena import Inputs, pair_prompts
from judge_arena.budget import known_price
from judge_arena.config import ArenaConfig, CandidateConfig, ModelConfig
from judge_arena.defence import canary_answer, enabled_canaries
from judge_arena.judge import as_called, games, render_game, shown
from judge_arena.records import Answer, Message, Prompt
from judge_arena.runner import call_key
from judge_arena.store import CallKey, Completion
from judge_arena.style import normalize
from judge_arena.tokens import TOKENS_PER_MESSAGE, count_tokens, message_tokens, output_cap

Lookup = Callable[[CallKey], Completion | None]
"""What the cache holds for a call (`store.CacheReader.get`), or None."""


@dataclass(frozen=True)
class ModelEstimate:
    """One model's share of the run: its calls to make, those the cache holds, their expected tokens and cost."""

    name: str
    role: Literal["candidate", "judge"]
    calls: int
    """Calls the run would make (identical requests of the run counted once)."""
    cached: int
    """Calls the cache already answers (free)."""
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """Of the calls to make, at the model's price; None when no price is known for it."""


@dataclass(frozen=True)
class RunEstimate:
    """The whole run's estimate, per model and in total, against its budget."""

    models: tuple[ModelEstimate, ...]
    max_usd: float | None
    """The config's budget, if it has one."""

    @property
    def calls(self) -> int:
        """Calls the run would make."""
        return sum(m.calls for m in self.models)

    @property
    def cached(self) -> int:
        """Calls the cache already answers."""
        return sum(m.cached for m in self.models)

    @property
    def input_tokens(self) -> int:
        """Input tokens of the calls to make."""
        return sum(m.input_tokens for m in self.models)

    @property
    def output_tokens(self) -> int:
        """Output tokens of the calls to make."""
        return sum(m.output_tokens for m in self.models)

    @property
    def cost_usd(self) -> float | None:
        """The cost of the calls to make; None when a model that has calls to make has no known price."""
        costs = [m.cost_usd for m in self.models if m.calls]
        return None if None in costs else sum(c for c in costs if c is not None)

    @property
    def over_budget(self) -> bool:
        """Whether the budget would stop the run: its estimated cost exceeds `max_usd`."""
        cost = self.cost_usd
        return self.max_usd is not None and cost is not None and cost > self.max_usd


def estimate_run(inputs: Inputs, lookup: Lookup) -> RunEstimate:
    """The calls, tokens and cost of running `inputs` now, given what the cache holds (`lookup`); calls nothing."""
    config, prompts = inputs.config, inputs.prompts
    generating = [candidate for candidate in config.candidates if candidate.called]
    expected = {model.name: _expected_output(config, model) for model in generating}
    answering, judging = _Tally(lookup), _Tally(lookup)
    answers: dict[tuple[str, str], Answer | None] = {}
    """Each candidate's answer to each prompt: None when it is not known before the run."""
    for candidate in generating:
        for prompt in prompts:
            answers[(candidate.name, prompt.id)] = answering.answer(candidate, prompt, expected[candidate.name])
    # What the candidates' answers in the cache used, where there are some, says more than the configured guess.
    expected = {c.name: answering.per_call(c, expected[c.name]) for c in generating}
    for name, from_file in inputs.file_answers.items():
        # A prompt the file does not answer has no games: it is left out, as the run leaves it.
        answers.update({(name, prompt_id): answer for prompt_id, answer in from_file.items()})
    for name in enabled_canaries(config.canaries):
        for prompt in prompts:
            answers[(name, prompt.id)] = canary_answer(name, prompt)
    framing: dict[tuple[str, str, int], int] = {}
    """Tokens of a judge's prompt on a prompt and judged turn without the answers (the same in every game of it)."""
    for judge in config.judges:
        template = inputs.templates[judge.name]
        called = as_called(judge, template.labels)
        for normalization, (pair, prompt) in itertools.product(config.normalizations, pair_prompts(inputs)):
            if any((name, prompt.id) not in answers for name in pair):
                continue
            first, second = (answers[(name, prompt.id)] for name in pair)
            if first is not None and second is not None:
                for turn in template.judged_turns(prompt):
                    for game in games(prompt, first, second, normalization, turn):
                        judging.call(called, shown(game, template, judge.defence)[0])
                continue
            # An answer not known yet: the judge's prompt is the template's, plus the answers' expected tokens.
            for judged in template.judged_turns(prompt):
                if (judge.name, prompt.id, judged) not in framing:
                    empty = ("",) * len(prompt.turns)
                    rendered = render_game(template, prompt, empty, empty, judged)
                    framing[(judge.name, prompt.id, judged)] = message_tokens(rendered)
                tokens = framing[(judge.name, prompt.id, judged)] + sum(
                    expected[name] * judged
                    if answer is None
                    else sum(count_tokens(normalize(turn, normalization)) for turn in answer.turns[:judged])
                    for name, answer in zip(pair, (first, second), strict=True)
                )
                judging.unknown(called, tokens)
                judging.unknown(called, tokens)
    models = [answering.estimate(c, "candidate", expected[c.name]) for c in generating] + [
        judging.estimate(j, "judge", _expected_output(config, j)) for j in config.judges
    ]
    return RunEstimate(models=tuple(models), max_usd=config.budget.max_usd if config.budget else None)


def _expected_output(config: ArenaConfig, model: ModelConfig) -> int:
    """Output tokens expected of one call of `model` before any is seen: its output estimate, within max_tokens."""
    estimate = config.runner.of(model).output_estimate
    cap = output_cap(model.params)
    return estimate if cap is None else min(estimate, cap)


@dataclass
class _Calls:
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    seen_outputs: list[int] = field(default_factory=list)
    """Output tokens of the cached replies found."""


@dataclass
class _Tally:
    """The calls of one role (candidates or judges) looked up so far, per model name; identical requests of the
    run are counted once."""

    lookup: Lookup
    by_model: dict[str, _Calls] = field(default_factory=dict)
    planned: set[str] = field(default_factory=set)
    """Digests of the calls to make: an identical request later in the run shares the call."""

    def _of(self, model: ModelConfig) -> _Calls:
        return self.by_model.setdefault(model.name, _Calls())

    def call(self, model: ModelConfig, messages: tuple[Message, ...]) -> Completion | None:
        """Count a call whose messages are known: cached (its completion returned), shared, or to make."""
        key = call_key(model, messages)
        calls = self._of(model)
        cached = self.lookup(key)
        if cached is not None:
            calls.cached += 1
            calls.seen_outputs.append(cached.output_tokens)
        elif key.digest not in self.planned:
            self.planned.add(key.digest)
            calls.calls += 1
            calls.input_tokens += message_tokens(messages)
        return cached

    def unknown(self, model: ModelConfig, input_tokens: int) -> None:
        """Count a call to make whose messages hold answers not known yet."""
        calls = self._of(model)
        calls.calls += 1
        calls.input_tokens += input_tokens

    def answer(self, candidate: CandidateConfig, prompt: Prompt, expected: int) -> Answer | None:
        """Count the calls of a candidate's answer to `prompt`, turn by turn; the answer if the cache holds it all."""
        system = candidate.system_prompt
        conversation: list[Message] = [Message("system", system)] if system is not None else []
        replies: list[str] = []
        pending = 0
        """Tokens of the earlier answers not known: as many as expected, with their messages' markers."""
        for turn in prompt.turns:
            conversation.append(Message("user", turn))
            if pending:
                self.unknown(candidate, message_tokens(conversation) + pending)
            else:
                cached = self.call(candidate, tuple(conversation))
                if cached is not None:
                    conversation.append(Message("assistant", cached.text))
                    replies.append(cached.text)
                    continue
            pending += expected + TOKENS_PER_MESSAGE
        if pending:
            return None
        return Answer(candidate.name, prompt.id, tuple(replies), output_tokens=0, latency_s=0.0)

    def per_call(self, model: ModelConfig, expected: int) -> int:
        """Output tokens expected of each call of the model: what its cached replies used on average, else
        `expected`."""
        seen = self._of(model).seen_outputs
        return round(fmean(seen)) if seen else expected

    def estimate(self, model: ModelConfig, role: Literal["candidate", "judge"], expected: int) -> ModelEstimate:
        """The model's share: its calls, their tokens (`per_call` each) and cost."""
        calls = self._of(model)
        output_tokens = calls.calls * self.per_call(model, expected)
        price = known_price(model) if calls.calls else None
        return ModelEstimate(
            name=model.name,
            role=role,
            calls=calls.calls,
            cached=calls.cached,
            input_tokens=calls.input_tokens,
            output_tokens=output_tokens,
            cost_usd=price.cost(calls.input_tokens, output_tokens) if price else None,
        )
