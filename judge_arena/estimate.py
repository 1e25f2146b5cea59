"""What a run would cost before it is made: the calls it would make net of the cache, their tokens and their price.

The calls are the run's own, built as the run builds them (`store.call_key`, `judge.shown`), and looked up in the
cache without claiming or storing anything. Input tokens are counted with `tokens.message_tokens` on the rendered
prompts and judge templates. Output tokens: a model whose replies the cache holds some of (a judge's verdicts on
other games, a candidate's answers to other prompts or as the latest run called it) is expected to write as much as
those did on average; else its
`output_estimate` (its own, or the runner's), within its `max_tokens`. An answer not in the cache yet counts as that
many tokens in the judge's prompt. A judge re-asked for a missing verdict asks once more: such calls are not foreseen.

A game of another normalization than `raw` whose answers that normalization leaves unchanged is the raw game again,
which the run asks once. Where its answers are known the estimate counts it as the run does; where one is not, it
expects what the candidate's known answers say (`UnchangedShare`: the share of them the normalization leaves
unchanged; for a candidate with too few answers of its own, those it gave as the latest run called it, at another
revision say: `earlier_answers`). Where too few are known either way, it counts the game as a call of its own and
the judge's figures are an upper bound (`RunEstimate.undecided_games`). A candidate named in `refresh` answers
anew: its calls and its games are to make, and its cached answers only say how long and in which layout it writes.
Adaptive pairing is priced as all pairs, capped at the share of their games it may play (`RunEstimate.adaptive`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from statistics import fmean
from typing import Literal

from judge_arena.arena import Inputs, pair_prompts
from judge_arena.budget import known_price
from judge_arena.config import ArenaConfig, CandidateConfig, ModelConfig
from judge_arena.defence import canary_answer, enabled_canaries
from judge_arena.judge import as_called, games, render_game, shown
from judge_arena.records import Answer, Message, Prompt
from judge_arena.runs import RunFolderError, list_runs, read_manifest
from judge_arena.store import CallKey, Completion, call_key
from judge_arena.style import normalize
from judge_arena.tokens import TOKENS_PER_MESSAGE, count_tokens, message_tokens, output_cap

Lookup = Callable[[CallKey], Completion | None]
"""What the cache holds for a call (`store.CacheReader.get`), or None."""

SHARE_MIN_ANSWERS = 5
"""Known answers of a candidate from which the share of them a normalization leaves unchanged is used; with fewer,
its games in that normalization are counted as calls of their own (an upper bound)."""


@dataclass(frozen=True)
class EarlierAnswers:
    """A candidate as an earlier run called it (another revision, model string or params): its answers in the
    cache say how the candidate writes before its new answers exist."""

    candidate: CandidateConfig
    run: str
    """The earlier run's id (its folder's name)."""

    def __str__(self) -> str:
        revision = f"@{self.candidate.revision}" if self.candidate.revision else ""
        return f"{self.candidate.model}{revision} in {self.run}"


def earlier_answers(config: ArenaConfig) -> dict[str, EarlierAnswers]:
    """Per candidate of `config` that is called, itself as the latest run of the same name under its output folder
    called it, when that was otherwise (a new revision, model string or params: its answers then are not this
    run's); from the runs' manifests. A run history that cannot be read gives nothing."""
    try:
        entries = list_runs(config.runner.output_dir, config.name)
        latest = next((e for e in reversed(entries) if read_manifest(e.path)), None)
        models = read_manifest(latest.path).get("models", {}) if latest else {}
    except RunFolderError:
        return {}
    found = {}
    for candidate in config.candidates:
        before = models.get(candidate.name)
        if not candidate.called or not isinstance(before, dict) or latest is None:
            continue
        keys = ("model", "api_base", "params", "revision")
        then = candidate.model_copy(update={key: before.get(key) for key in keys if key in before})
        if any(getattr(then, key) != getattr(candidate, key) for key in keys):
            found[candidate.name] = EarlierAnswers(then, latest.id)
    return found


@dataclass(frozen=True)
class UnchangedShare:
    """How many of a candidate's known answers a normalization leaves unchanged: from these the estimate expects
    how many of its games not known yet are the raw game again (asked once)."""

    candidate: str
    normalization: str
    unchanged: int
    known: int
    """Its answers the cache holds (for a refreshed candidate: those it is to replace)."""
    earlier: EarlierAnswers | None = None
    """Where the answers counted come from when they are not the candidate's as configured now: an earlier run's
    (another revision, say); None: its own."""

    @property
    def share(self) -> float | None:
        """The share used, or None when fewer than `SHARE_MIN_ANSWERS` answers are known."""
        return self.unchanged / self.known if self.known >= SHARE_MIN_ANSWERS else None


@dataclass(frozen=True)
class AdaptiveCap:
    """Adaptive pairing: the (pair, prompt) items it may judge at most, of all pairs' (`PairingConfig.items_at_most`:
    `max_share`, `max_judge_calls`); the judges are priced for that many at most."""

    items: int
    all_items: int


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
    at_most: bool = False
    """The figures are an upper bound: some of its calls may be asked once for two games (`RunEstimate.
    undecided_games`), answers made anew may come out as they were (`RunEstimate.refreshed`), or adaptive pairing
    may stop sooner (`RunEstimate.adaptive`)."""


@dataclass(frozen=True)
class RunEstimate:
    """The whole run's estimate, per model and in total, against its budget."""

    models: tuple[ModelEstimate, ...]
    max_usd: float | None
    """The config's budget, if it has one."""
    unchanged: tuple[UnchangedShare, ...] = ()
    """Per candidate with answers not known yet and normalization other than raw (the raw view judged too): the
    share of its known answers the normalization leaves unchanged."""
    undecided_games: int = 0
    """Games counted as calls of their own that may be their raw game again (asked once): an answer of theirs is not
    known yet, and too few of its candidate's are to expect how many."""
    refreshed: tuple[str, ...] = ()
    """Candidates whose answers are made anew (`refresh`), priced with their games as calls to make."""
    adaptive: AdaptiveCap | None = None
    """With adaptive pairing: the cap the judges are priced at (the run may stop sooner, once the ranking is
    settled)."""

    @property
    def at_most(self) -> bool:
        """Whether the figures are an upper bound rather than an expectation."""
        return any(m.at_most for m in self.models)

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


def estimate_run(
    inputs: Inputs,
    lookup: Lookup,
    refresh: Collection[str] = (),
    earlier: Mapping[str, EarlierAnswers] | None = None,
) -> RunEstimate:
    """The calls, tokens and cost of running `inputs` now, given what the cache holds (`lookup`), the candidates
    named in `refresh` answering anew (`run --refresh`); calls nothing. A candidate with too few answers in the
    cache is expected to write as it did in `earlier` (`earlier_answers`), where it has an entry."""
    config, prompts = inputs.config, inputs.prompts
    generating = [candidate for candidate in config.candidates if candidate.called]
    expected = {model.name: _expected_output(config, model) for model in generating}
    learning, answering, judging = _Tally(lookup), _Tally(lookup), _Tally(lookup)
    answers: dict[tuple[str, str], Answer | None] = {}
    """Each candidate's answer to each prompt: None when it is not known before the run."""
    known: dict[str, list[Answer]] = {}
    """Each candidate's answers the cache holds: how it writes, also for one that answers anew."""
    sources: dict[str, EarlierAnswers] = {}
    """The earlier runs whose answers stand for a candidate's (in `known`)."""
    for candidate in generating:
        known[candidate.name] = [answer for prompt in prompts if (answer := learning.recall(candidate, prompt))]
        before = (earlier or {}).get(candidate.name)
        if before is not None and len(known[candidate.name]) < SHARE_MIN_ANSWERS:
            recalled = [answer for prompt in prompts if (answer := learning.recall(before.candidate, prompt))]
            if recalled:
                known[candidate.name], sources[candidate.name] = recalled, before
        # What its replies in the cache used, where there are some, says more than the configured guess; also for
        # the earlier answers in a later turn's prompt.
        expected[candidate.name] = learning.per_call(candidate, expected[candidate.name])
        fresh = candidate.name in refresh
        for prompt in prompts:
            answers[(candidate.name, prompt.id)] = answering.answer(candidate, prompt, expected[candidate.name], fresh)
    for name, from_file in inputs.file_answers.items():
        # A prompt the file does not answer has no games: it is left out, as the run leaves it.
        answers.update({(name, prompt_id): answer for prompt_id, answer in from_file.items()})
    for name in enabled_canaries(config.canaries):
        for prompt in prompts:
            answers[(name, prompt.id)] = canary_answer(name, prompt)
    # A game of another normalization is the raw game again when both its answers are unchanged by it.
    collapsing = [n for n in config.normalizations if n != "raw"] if "raw" in config.normalizations else []
    shares = {
        (c.name, n): UnchangedShare(
            c.name, n, sum(_unchanged(a, n) for a in known[c.name]), len(known[c.name]), sources.get(c.name)
        )
        for c in generating
        for n in collapsing
        if any(answers[(c.name, prompt.id)] is None for prompt in prompts)
    }
    undecided = 0
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
                # The chance that the game is its raw game again; None: not known, counted as a call of its own.
                same: float | None = 0.0
                if normalization in collapsing:
                    unchanged = [
                        shares[(name, normalization)].share
                        if answer is None
                        else float(_unchanged(answer, normalization, judged))
                        for name, answer in zip(pair, (first, second), strict=True)
                    ]
                    shares_known = [u for u in unchanged if u is not None]
                    same = 0.0 if 0.0 in shares_known else math.prod(shares_known) if len(shares_known) == 2 else None
                if same is None:
                    undecided += 2
                    judging.undecided.add(judge.name)
                for _ in range(2):
                    judging.unknown(called, tokens, 1.0 - (same or 0.0))
    models = [answering.estimate(c, "candidate", expected[c.name]) for c in generating]
    judge_models = [
        judging.estimate(j, "judge", judging.per_call(j, _expected_output(config, j))) for j in config.judges
    ]
    if any(c.name in refresh for c in generating):
        # Answers made anew may come out as they were: their games then reuse the cached verdicts.
        judge_models = [replace(m, at_most=bool(m.calls)) for m in judge_models]
    adaptive = None
    if config.pairing.mode == "adaptive":
        items = len(pair_prompts(inputs))
        adaptive = AdaptiveCap(config.pairing.items_at_most(items, config.games_per_item), items)
        judge_models = [_capped(m, adaptive, 2 * len(config.normalizations)) for m in judge_models]
    return RunEstimate(
        models=(*models, *judge_models),
        max_usd=config.budget.max_usd if config.budget else None,
        unchanged=tuple(shares.values()),
        undecided_games=undecided,
        refreshed=tuple(c.name for c in generating if c.name in refresh),
        adaptive=adaptive,
    )


def _unchanged(answer: Answer, normalization: str, turns: int | None = None) -> bool:
    """Whether `normalization` leaves the answer's first `turns` turns (default: all) as they are."""
    return all(normalize(text, normalization) == text for text in answer.turns[:turns])


def _capped(model: ModelEstimate, cap: AdaptiveCap, games_per_item: int) -> ModelEstimate:
    """A judge's share under adaptive pairing: at most the cap's items' games (its calls to make, if fewer), their
    tokens and cost in proportion."""
    most = cap.items * games_per_item
    if model.calls <= most:
        return replace(model, at_most=True)
    ratio = most / model.calls
    return replace(
        model,
        calls=most,
        input_tokens=round(model.input_tokens * ratio),
        output_tokens=round(model.output_tokens * ratio),
        cost_usd=None if model.cost_usd is None else model.cost_usd * ratio,
        at_most=True,
    )


def _expected_output(config: ArenaConfig, model: ModelConfig) -> int:
    """Output tokens expected of one call of `model` before any is seen: its output estimate, within max_tokens."""
    estimate = config.runner.of(model).output_estimate
    cap = output_cap(model.params)
    return estimate if cap is None else min(estimate, cap)


@dataclass
class _Calls:
    calls: float = 0.0
    """Calls to make; a game that may be its raw game again counts as the chance that it is not."""
    cached: int = 0
    input_tokens: float = 0.0
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
    undecided: set[str] = field(default_factory=set)
    """Models some of whose calls may be asked once for two games, counted as two (an upper bound)."""

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

    def unknown(self, model: ModelConfig, input_tokens: int, chance: float = 1.0) -> None:
        """Count a call to make whose messages hold answers not known yet, made with the given `chance` (a game
        that may be its raw game again)."""
        calls = self._of(model)
        calls.calls += chance
        calls.input_tokens += chance * input_tokens

    def answer(self, candidate: CandidateConfig, prompt: Prompt, expected: int, fresh: bool) -> Answer | None:
        """Count the calls of a candidate's answer to `prompt`, turn by turn; the answer if the cache holds it all.
        A `fresh` answer (refreshed) is made whatever the cache holds."""
        system = candidate.system_prompt
        conversation: list[Message] = [Message("system", system)] if system is not None else []
        replies: list[str] = []
        pending = 0
        """Tokens of the earlier answers not known: as many as expected, with their messages' markers."""
        for turn in prompt.turns:
            conversation.append(Message("user", turn))
            if pending or fresh:
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

    def recall(self, candidate: CandidateConfig, prompt: Prompt) -> Answer | None:
        """The candidate's answer to `prompt` if the cache holds it all, counted as no call: how it writes. The
        lengths of its replies found are learned (`per_call`)."""
        system = candidate.system_prompt
        conversation: list[Message] = [Message("system", system)] if system is not None else []
        for turn in prompt.turns:
            conversation.append(Message("user", turn))
            cached = self.lookup(call_key(candidate, tuple(conversation)))
            if cached is None:
                return None
            self._of(candidate).seen_outputs.append(cached.output_tokens)
            conversation.append(Message("assistant", cached.text))
        replies = tuple(m.content for m in conversation if m.role == "assistant")
        return Answer(candidate.name, prompt.id, replies, output_tokens=0, latency_s=0.0)

    def per_call(self, model: ModelConfig, expected: int) -> int:
        """Output tokens expected of each call of the model: what its cached replies used on average, else
        `expected`."""
        seen = self._of(model).seen_outputs
        return round(fmean(seen)) if seen else expected

    def estimate(self, model: ModelConfig, role: Literal["candidate", "judge"], per_call: int) -> ModelEstimate:
        """The model's share: its calls, their tokens (`per_call` output tokens each) and cost."""
        calls = self._of(model)
        made, input_tokens = round(calls.calls), round(calls.input_tokens)
        output_tokens = round(calls.calls * per_call)
        price = known_price(model) if made else None
        return ModelEstimate(
            name=model.name,
            role=role,
            calls=made,
            cached=calls.cached,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=price.cost(input_tokens, output_tokens) if price else None,
            at_most=model.name in self.undecided,
        )
