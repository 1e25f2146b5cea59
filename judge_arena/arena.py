"""One arena run, stage after stage: suites → generate → normalize → judge → rate.

Generation and judging overlap: a pair of answers is judged as soon as both exist. Every call goes through the
cache, so a rerun of the same config makes no model call at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from judge_arena.agreement import VotesInputError, load_voted_conversations
from judge_arena.answer_files import AnswerFileError, answers_for, load_answer_file
from judge_arena.budget import Budget, BudgetExceeded, check_prices
from judge_arena.client import CallFailed, Client
from judge_arena.config import (
    ArenaConfig,
    CandidateConfig,
    ConfigError,
    JudgeConfig,
    check_cache_file,
    check_context,
)
from judge_arena.defence import canary_answer, enabled_canaries
from judge_arena.generate import generate_answer
from judge_arena.interrupt import Interrupt, signals_wake
from judge_arena.judge import Game, JudgeRequest, JudgeTemplate, as_called, decide, games, judge_shown, shown_requests
from judge_arena.local_server import LocalServer
from judge_arena.prepare import Plan, Preparer
from judge_arena.records import Answer, Battle, Failure, Message, Prompt
from judge_arena.runner import CallRunner, CallStats, Interrupted
from judge_arena.store import Completion, Store
from judge_arena.suites import SuiteError, SuiteOptionError, load_suite
from judge_arena.worker import Worker, WorkerFailed

CACHE_FILE = "arena.sqlite"

GRACE_S = 10.0
"""How long a stopped run waits for its calls in flight, so that answers being paid for are stored, not lost."""


class Progress(Protocol):
    """Receives the run's progress (the CLI shows it with rich; tests pass nothing)."""

    def start(self, stage: str, total: int) -> None:
        """A stage begins with `total` items."""

    def advance(self, stage: str) -> None:
        """One item of the stage is done."""

    def calls(self, stats: CallStats) -> None:
        """The call counters changed."""


@dataclass(frozen=True)
class Inputs:
    """Everything a run reads before it calls anything: validated up front, so a bad input writes nothing."""

    config: ArenaConfig
    prompts: tuple[Prompt, ...]
    templates: dict[str, JudgeTemplate]
    file_answers: Mapping[str, Mapping[str, Answer]] = field(default_factory=dict)
    """The answers of the candidates read from answer files: by candidate name, then prompt id."""
    unanswered: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The prompts each answer-file candidate's file does not answer (their games are not played); by name."""
    pairs: Mapping[str, tuple[tuple[str, str], ...]] | None = None
    """For a run of a votes file (`ArenaConfig.votes`), the pairs judged on each prompt, by prompt id; None: every
    pair of `candidate_pairs` on every prompt."""


Status = Literal["complete", "failures", "budget", "interrupted"]
"""How a run ended: every item done; done but some calls failed (or a canary beat a real model, when the config
says to fail on that: `pipeline.ArenaResult.status`); stopped by its budget; stopped by a signal or
`Interrupt.stop()`."""


@dataclass(frozen=True, repr=False)
class ArenaRun:
    """What a run produced: answers, battles, failures and call statistics."""

    inputs: Inputs
    answers: tuple[Answer, ...]
    battles: tuple[Battle, ...]
    failures: tuple[Failure, ...]
    stats: CallStats
    elapsed_s: float
    interrupted: int | None = None
    """The signal that stopped the run part-way (see `interrupt`); None when it ran to its end."""

    @property
    def status(self) -> Status:
        """How the run ended; a stop (signal, then budget) outranks failures."""
        if self.interrupted is not None:
            return "interrupted"
        if self.stats.refused:
            return "budget"
        return "failures" if self.failures else "complete"

    def __repr__(self) -> str:
        # Counts, not records: asyncio renders the repr of a finished main task's result when `asyncio.run` ends
        # under Python's default SIGINT handler, and the records of a 100k-game run written out took seconds and
        # more memory than the run's peak.
        return (
            f"ArenaRun(name={self.inputs.config.name!r}, answers={len(self.answers)}, battles={len(self.battles)}, "
            f"failures={len(self.failures)}, calls_made={self.stats.made}, elapsed_s={self.elapsed_s:.1f}, "
            f"interrupted={self.interrupted})"
        )


def load_inputs(config: ArenaConfig) -> Inputs:
    """Load the suites (or the votes file), answer files and judge templates; raise ConfigError on any problem,
    before anything is written.

    For a run of a votes file, the returned inputs' config has the file's models as its candidates, each read
    from the file (`model` ``votes:<file name>``).
    """
    if config.votes is not None:
        return _voted_inputs(config, config.votes)
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    for i, suite in enumerate(config.suites):
        try:
            references = None if suite.references is None else load_answer_file(suite.references)
            loaded = load_suite(
                suite.path,
                suite.format,
                name=suite.name,
                limit=suite.limit,
                reference_categories=suite.reference_categories,
                references=None if references is None else {k: a.turns for k, a in references.answers.items()},
            ).prompts
        except (SuiteError, AnswerFileError) as exc:
            raise ConfigError(str(exc)) from None
        except SuiteOptionError as exc:
            raise ConfigError(f"{config.source}: field 'suites.{i}.{exc.option}': {exc}") from None
        check_context(suite.path, loaded, config)
        for prompt in loaded:
            if prompt.id in seen:
                where = seen[prompt.id]
                raise ConfigError(f"{suite.path}: field 'id': prompt id '{prompt.id}' also appears in {where}")
            seen[prompt.id] = str(suite.path)
        prompts.extend(loaded)
    file_answers: dict[str, dict[str, Answer]] = {}
    unanswered: dict[str, tuple[str, ...]] = {}
    for candidate in config.candidates:
        if candidate.answers is None:
            continue
        try:
            answer_file = load_answer_file(candidate.answers, candidate.answers_format)
            if answer_file.model != candidate.model:
                raise AnswerFileError(str(candidate.answers), "changed while the run was starting; run again")
            file_answers[candidate.name], missing = answers_for(answer_file, candidate.name, prompts)
        except AnswerFileError as exc:
            raise ConfigError(str(exc)) from None
        if missing:
            unanswered[candidate.name] = missing
    return Inputs(
        config=config,
        prompts=tuple(prompts),
        templates=_templates(config, prompts),
        file_answers=file_answers,
        unanswered=unanswered,
    )


def _templates(config: ArenaConfig, prompts: Sequence[Prompt]) -> dict[str, JudgeTemplate]:
    """The judges' templates, each checked against the prompts, after the checks every run makes before its first
    call (prices, the cache file)."""
    try:
        templates = {judge.name: JudgeTemplate.load(judge.template) for judge in config.judges}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for judge in config.judges:
        problem = templates[judge.name].check(prompts)
        if problem is not None:
            raise ConfigError(f"{judge.template}: field 'user': {problem}")
    if config.budget is not None:
        check_prices(config, config.source)
    check_cache_file(config.runner.cache_dir / CACHE_FILE)
    return templates


def _voted_inputs(config: ArenaConfig, votes: Path) -> Inputs:
    try:
        voted = load_voted_conversations(votes)
    except VotesInputError as exc:
        raise ConfigError(str(exc)) from None
    models = sorted(voted.answers)
    for where, value in (("pairing.baseline", config.pairing.baseline), ("rating.anchor", config.rating.anchor)):
        if value is not None and value not in models:
            raise ConfigError(f"{config.source}: field '{where}': '{value}' is not a model of {votes}")
    candidates = [
        CandidateConfig.model_validate({"name": model, "answers": votes}).model_copy(
            update={"model": f"votes:{votes.name}"}
        )
        for model in models
    ]
    config = config.model_copy(update={"candidates": candidates})
    check_context(votes, voted.prompts, config)
    return Inputs(
        config=config,
        prompts=voted.prompts,
        templates=_templates(config, voted.prompts),
        file_answers=voted.answers,
        pairs=voted.pairs,
    )


def pair_prompts(inputs: Inputs) -> list[tuple[tuple[str, str], Prompt]]:
    """Every (pair, prompt) the judges play, pair by pair: `candidate_pairs` on every prompt, or for a run of a
    votes file the voted pairs of each prompt."""
    if inputs.pairs is None:
        return list(itertools.product(candidate_pairs(inputs.config), inputs.prompts))
    voted = inputs.pairs
    pairs = sorted({pair for prompt_pairs in voted.values() for pair in prompt_pairs})
    return [(pair, prompt) for pair in pairs for prompt in inputs.prompts if pair in voted.get(prompt.id, ())]


def planned_games(inputs: Inputs) -> int:
    """The judge games the run plays when complete: both orders of every (pair, prompt) on each judged turn (the
    last, or each with a per-turn template), per judge and view (adaptive pairing: at most, counting one judged turn
    per prompt)."""
    config = inputs.config
    pairs = pair_prompts(inputs)
    if config.pairing.mode == "adaptive":
        return config.pairing.items_at_most(len(pairs), config.games_per_item) * config.games_per_item
    turns = sum(len(inputs.templates[j.name].judged_turns(prompt)) for j in config.judges for _, prompt in pairs)
    return turns * len(config.normalizations) * 2


def candidate_pairs(config: ArenaConfig) -> list[tuple[str, str]]:
    """The unordered candidate pairs to judge, per the pairing mode; each canary meets every real candidate."""
    names = [c.name for c in config.candidates]
    canaries = enabled_canaries(config.canaries)
    if config.pairing.mode == "vs-baseline":
        baseline = config.pairing.baseline
        return [(baseline, name) for name in [*names, *canaries] if name != baseline] if baseline else []
    return [*itertools.combinations(names, 2), *((name, canary) for canary in canaries for name in names)]


def planned_calls(inputs: Inputs) -> int:
    """The calls a complete run asks for, made or cached: every turn of every answer generated (not those read from
    answer files) and both orders of every game.

    A judge re-asked for a missing verdict asks once more, so a run may ask for a few more than this.
    """
    config = inputs.config
    turns = sum(len(prompt.turns) for prompt in inputs.prompts)
    return sum(c.called for c in config.candidates) * turns + planned_games(inputs)


def check_refresh(config: ArenaConfig, names: Collection[str]) -> None:
    """Raise ConfigError when a name to refresh is not one of the config's candidates that are called (the answers
    of one read from an answer file are the file's)."""
    candidates = [c.name for c in config.candidates if c.called]
    unknown = [name for name in names if name not in candidates]
    if unknown:
        raise ConfigError(
            f"--refresh: {', '.join(repr(n) for n in unknown)} is not a candidate of {config.source} "
            f"(candidates: {', '.join(candidates)})"
        )


def served_changes(run: ArenaRun) -> dict[str, str]:
    """Per candidate without a revision whose fresh answers report a model or system fingerprint that none of its
    cached answers reported: what it reports now and what it did (its cached answers may be of another model)."""
    before, now = run.stats.served_before, run.stats.served_now
    changes = {}
    for candidate in run.inputs.config.candidates:
        if candidate.revision is not None:
            continue
        known = {s for s in before.get(candidate.name, ()) if s.model or s.fingerprint}
        new = {s for s in now.get(candidate.name, ()) if s.model or s.fingerprint} - known
        if known and new:
            changes[candidate.name] = (
                f"{candidate.name} now reports {', '.join(sorted(map(str, new)))}; its cached answers were "
                f"served as {', '.join(sorted(map(str, known)))}: the model behind it may have changed, and its "
                f"cached answers be stale. Set its `revision` (or rerun with --refresh {candidate.name})."
            )
    return changes


@contextlib.contextmanager
def model_servers(
    config: ArenaConfig, simulator_url: str | None = None
) -> Iterator[tuple[Callable[[], str] | None, dict[str, str]]]:
    """The servers the config's models need, for the block: the simulator (unless `simulator_url` points at one
    already running) and each of `local_servers`, running; yields what gives the simulator's URL and the local
    servers' URLs by name.

    The simulator starts the first time its URL is asked for (a run served from the cache calls no model, and its
    web server costs a tenth of a second to import); a local server loads its model at once, as its first answer
    would wait for it anyway.
    """
    with ExitStack() as stack:
        simulator: Callable[[], str] | None = None
        if simulator_url is not None:
            simulator = functools.partial(str, simulator_url)
        elif config.uses_simulator:

            @functools.cache
            def simulator() -> str:
                from judge_arena.sim.server import SimulatorServer

                return stack.enter_context(SimulatorServer()).url

        local_urls = {
            name: stack.enter_context(LocalServer(name, server)).url for name, server in config.local_servers.items()
        }
        yield simulator, local_urls


async def play_arena(
    inputs: Inputs,
    progress: Progress | None = None,
    *,
    simulator_url: str | None = None,
    interrupt: Interrupt | None = None,
    grace_s: float = GRACE_S,
    refresh: Collection[str] = (),
    worker: Worker | None = None,
) -> ArenaRun:
    """Run the arena through the cache; start the simulator if the config uses it and no `simulator_url` is given,
    and the config's local servers (stopped when the run ends).

    With a `worker` (a large run's second process), each answer's normalizations, screening and style features are
    computed there, ahead of the games that need them, and then the judge items are rendered and keyed there from
    the last one back while this process takes them from the first (`prepare.py`).

    Once `interrupt` is stopped, no new call is made; calls in flight get `grace_s` seconds to finish (so that their
    answers are stored), and the run returns what it has done, with `interrupted` set.

    The candidates named in `refresh` answer anew instead of from the cache (the new answers replace the cached
    ones); judge calls are made only for games whose answers changed. A name that is not a candidate raises
    ConfigError before anything is done.
    """
    config = inputs.config
    check_refresh(config, refresh)
    runner_config = config.runner
    started = time.perf_counter()
    try:
        # Made before any call: a run that has paid for its calls must be able to write its report.
        runner_config.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = f"{config.source}: field 'runner.output_dir'"
        raise ConfigError(f"{where}: cannot create {runner_config.output_dir}: {exc.strerror or exc}") from None
    with ExitStack() as stack:
        simulator, local_urls = stack.enter_context(model_servers(config, simulator_url))
        store = stack.enter_context(Store(runner_config.cache_dir / CACHE_FILE))
        runner = CallRunner(
            store,
            lambda on_retry: Client(
                concurrency=runner_config.concurrency,
                timeout_s=runner_config.timeout_s,
                max_attempts=runner_config.max_attempts,
                max_wait_s=runner_config.max_wait_s,
                max_total_s=runner_config.max_total_s,
                stop_after=runner_config.stop_after_failures,
                requests_per_minute=runner_config.requests_per_minute,
                tokens_per_minute=runner_config.tokens_per_minute,
                output_estimate=runner_config.output_estimate,
                on_retry=on_retry,
            ),
            simulator,
            on_change=progress.calls if progress else None,
            budget=Budget(config.budget.max_usd, runner_config.output_estimate) if config.budget else None,
            local_urls=local_urls,
            refresh=refresh,
        )
        try:
            play = _Play(inputs, runner, progress, worker)
            complete = await play.until_done_or_stopped(interrupt or Interrupt(), grace_s)
        finally:
            await runner.aclose()
    return ArenaRun(
        inputs=inputs,
        answers=play.answers(),
        battles=play.battles(),
        failures=tuple(play.failures),
        stats=runner.stats,
        elapsed_s=time.perf_counter() - started,
        interrupted=interrupt.signal if interrupt and not complete else None,
    )


_ITEMS_PER_SLOT = 2
"""(Pair, prompt) items judged at once per request an endpoint admits (`runner.concurrency`): each item is two games
or more per judge and view, so the endpoints stay busy while the rest wait their turn."""

_KEYED_PER_JOB = 400
"""Judge requests sent to the second process to key at once (a few prompts' items, whole): enough to make a message
worth its cost."""

_Slot = tuple[int, JudgeConfig, str]
"""Where an item's games go: the index of its judge, view and item in a run's order (their battles are kept in that
order), the judge, and the view (normalization)."""
_Item = tuple[Sequence[_Slot], tuple[str, str], Prompt]
"""A judge item: its slots, the pair, and the prompt."""
_Planned = tuple[tuple[int, int, int], JudgeConfig, Game]
"""A game of an item: where its battle is kept (`_Play._battles`), its judge and the game."""
_Keyed = tuple[asyncio.Future[list[tuple[str, tuple[str, ...]]]], int, int]
"""The keys of an item's games computed in the second process: the job's future, and the item's slice of it."""


class _Play:
    """One run's tasks: every candidate's answer to every prompt, and the judge games that wait for both answers.

    Results are kept as they come, so a run that stops part-way still has everything it did.
    """

    def __init__(self, inputs: Inputs, runner: CallRunner, progress: Progress | None, worker: Worker | None) -> None:
        self._inputs = inputs
        self._runner = runner
        self._progress = progress
        self.failures: list[Failure] = []
        self._answers: dict[tuple[str, str], asyncio.Task[Answer | None]] = {}
        self._battles: dict[tuple[int, int, int], Battle] = {}
        """Battles by (index of the judge item, turn, order): the order of an uninterrupted run."""
        self._cut = False
        """Whether a stop left something undone."""
        config = inputs.config
        self._judging = asyncio.Semaphore(_ITEMS_PER_SLOT * config.runner.concurrency)
        """Items whose games are under way at once, their answers in hand. Every item's task exists from the start;
        without this, a rerun served from the cache started every game of the run (a task, its rendered prompts)
        before the first could end: a 100k-item rerun held them all at once."""
        self._called = {judge.name: as_called(judge, inputs.templates[judge.name].labels) for judge in config.judges}
        """Each judge as its calls are made."""
        self._screening = [judge for judge in config.judges if judge.defence]
        """The judges that screen the answers they are shown."""
        self._screened_turns: dict[str, tuple[int, ...]] = {}
        """`_judged_turns` by prompt id."""
        label_sets = tuple(dict.fromkeys(inputs.templates[judge.name].labels for judge in self._screening))
        self._preparer = (
            None
            if worker is None
            else Preparer(Plan(tuple(config.normalizations), label_sets), worker, on_room=self._give_keys)
        )
        """What sends the answers to `worker` ahead of their games (`prepare.py`), and items to key."""
        self._items: list[_Item] = []
        """The items of a run of fixed pairs, in the order they start; what `_judge_item` calls their positions."""
        self._last_free = -1
        """The position of the last item neither process has taken to key: the second takes from there back."""
        self._keyed_there: dict[int, _Keyed] = {}
        """The items, by position, whose games the second process keys."""
        self._keyed_here: set[int] = set()
        """The items, by position, whose games this process keys."""

    def _advance(self, stage: str) -> None:
        if self._progress:
            self._progress.advance(stage)

    async def until_done_or_stopped(self, interrupt: Interrupt, grace_s: float) -> bool:
        """Play every game; if the run is stopped first, wait up to `grace_s` for the calls in flight, then end.

        Returns whether everything was played (False: the run was stopped part-way).
        """
        config, prompts = self._inputs.config, self._inputs.prompts
        if self._progress:
            self._progress.start("answers", sum(c.called for c in config.candidates) * len(prompts))
            self._progress.start("verdicts", planned_games(self._inputs))
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        unlisten = interrupt.listen(functools.partial(loop.call_soon_threadsafe, stopped.set))
        for candidate in config.candidates:
            from_file = self._inputs.file_answers.get(candidate.name)
            for prompt in prompts:
                answering = (
                    self._answer(candidate, prompt) if from_file is None else _constant(from_file.get(prompt.id))
                )
                self._answers[(candidate.name, prompt.id)] = asyncio.create_task(answering)
        for name in enabled_canaries(config.canaries):
            for prompt in prompts:
                self._answers[(name, prompt.id)] = asyncio.create_task(_constant(canary_answer(name, prompt)))
        if config.pairing.mode == "adaptive":
            judging = [asyncio.create_task(self._judge_adaptively())]
        else:
            items = pair_prompts(self._inputs)
            views = list(itertools.product(config.judges, config.normalizations))
            position = {prompt.id: n for n, prompt in enumerate(prompts)}
            # Indexed as the items of every judge and view would be, one after the other; started prompt by prompt,
            # so that a run stopped part-way (or out of budget) has every pair on the prompts it reached, and the
            # answers a game needs are prepared in the order the games come.
            self._items = [
                (
                    [
                        (view * len(items) + i, judge, normalization)
                        for view, (judge, normalization) in enumerate(views)
                    ],
                    pair,
                    prompt,
                )
                for i, (pair, prompt) in sorted(enumerate(items), key=lambda item: position[item[1][1].id])
            ]
            self._last_free = len(self._items) - 1
            judging = [asyncio.create_task(self._judge_item(*item, n)) for n, item in enumerate(self._items)]
        tasks = [*self._answers.values(), *judging]
        finished = asyncio.ensure_future(asyncio.wait(tasks))
        stop = asyncio.ensure_future(stopped.wait())
        idle: asyncio.Future[None] | None = None
        try:
            with signals_wake(loop):
                await asyncio.wait([finished, stop], return_when=asyncio.FIRST_COMPLETED)
                if not finished.done():
                    self._runner.stop()
                    # Calls sent already may finish and be stored; what still waits after them waits for nothing.
                    idle = asyncio.ensure_future(self._runner.idle())
                    await asyncio.wait([finished, idle], timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            unlisten()
            for waiting in (finished, stop, idle, *tasks):
                if waiting is not None:
                    waiting.cancel()
            # Only those still running need the wait (gathering the tens of thousands done took a third of a second).
            await asyncio.gather(*(task for task in tasks if not task.done()), return_exceptions=True)
            # The waiters cancelled above end on the loop's next turn; until then they hold every task and its
            # result, through the rating and the report that follow without awaiting anything.
            await asyncio.sleep(0)
            # It calls back into the play (`_give_keys`): kept, the two would hold each other, and every task and
            # battle of the run with them, until a collection of cycles found them (0.4 s at the end of a rerun of
            # 100,000 items).
            self._preparer = None
        cancelled = False
        for task in tasks:
            if task.cancelled():
                cancelled = True
            elif isinstance(error := task.exception(), Exception):
                raise error
        return not self._cut and not cancelled

    def answers(self) -> tuple[Answer, ...]:
        """The answers made (or cached), in candidate and prompt order."""
        return tuple(
            answer
            for task in self._answers.values()
            if task.done() and not task.cancelled() and (answer := task.result()) is not None
        )

    def battles(self) -> tuple[Battle, ...]:
        """The games judged, in the order of an uninterrupted run."""
        return tuple(self._battles[key] for key in sorted(self._battles))

    async def _answer(self, candidate: CandidateConfig, prompt: Prompt) -> Answer | None:
        """The candidate's answer, or None when it failed or was not made in this run."""

        async def complete(messages: tuple[Message, ...]) -> Completion:
            return await self._runner.complete(candidate, messages)

        try:
            answer = await generate_answer(
                candidate.name, prompt, complete, candidate.system_prompt, candidate.revision
            )
        except CallFailed as exc:
            self.failures.append(Failure("generate", f"{candidate.name} × {prompt.id}", str(exc)))
            answer = None
        except BudgetExceeded:
            # Not a failure: the answer is simply not made in this run, and a rerun resumes it.
            answer = None
        except Interrupted:
            self._cut = True
            return None
        self._advance("answers")
        return answer

    async def _judge_adaptively(self) -> None:
        """Adaptive pairing: judge the items `sampling.next_items` chooses, step by step, each step chosen from the
        battles of those before; until it is done, the run is stopped, or a step adds no battle (budget, failures)."""
        from judge_arena import sampling  # it imports numpy and pandas: only the runs that choose pay for them

        config, prompts = self._inputs.config, {prompt.id: prompt for prompt in self._inputs.prompts}
        plan = sampling.plan_of(config, candidate_pairs(config), list(prompts))
        views = list(itertools.product(config.judges, config.normalizations))
        played: list[sampling.Item] = []
        keys = itertools.count()
        while not self._cut and (batch := await asyncio.to_thread(sampling.next_items, self.battles(), played, plan)):
            before = len(self._battles)
            await asyncio.gather(
                *(
                    self._judge_item(
                        [(next(keys), judge, normalization) for judge, normalization in views],
                        item.pair,
                        prompts[item.prompt_id],
                    )
                    for item in batch
                )
            )
            played.extend(batch)
            if len(self._battles) == before:
                break

    async def _judge_item(
        self, slots: Sequence[_Slot], pair: tuple[str, str], prompt: Prompt, position: int | None = None
    ) -> None:
        """The pair's games on the prompt for each slot's judge and view (both orders, on each judged turn), once both
        answers exist. Those whose judge reply is cached are decided on the spot, found in one query; the others are
        asked together. `position`: the item's in `_items`, if it is one of them."""
        first = await self._answers[(pair[0], prompt.id)]
        second = await self._answers[(pair[1], prompt.id)]
        if first is None or second is None:
            if not self._cut:  # games that will not be played; a stopped run has not finished them
                templates = self._inputs.templates
                for _ in range(sum(2 * len(templates[judge.name].judged_turns(prompt)) for _, judge, _ in slots)):
                    self._advance("verdicts")
            return
        if self._preparer is not None:
            judged_turns = self._judged_turns(prompt)
            # Both asked for before either is awaited: the second process takes them in the order they are asked.
            for preparing in [self._preparer.ready(answer, judged_turns) for answer in (first, second)]:
                await preparing
        async with self._judging:
            planned = self._planned(slots, prompt, first, second)
            shown = await self._shown(planned, position)
            cached = await self._runner.cached(
                [
                    (self._called[judge.name], digest)
                    for (_, judge, _), (_, _, digest) in zip(planned, shown, strict=True)
                ]
            )
            left = []
            for (key, judge, game), (messages, flags, _), completion in zip(planned, shown, cached, strict=True):
                reply = None if completion is None else completion.text
                decided = None if reply is None else self._decide(judge, game, reply, flags)
                if decided is None:
                    left.append(self._play(key, judge, game, messages, flags, reply))
                else:
                    self._battles[key] = decided
                    self._advance("verdicts")
            await asyncio.gather(*left)

    def _planned(self, slots: Sequence[_Slot], prompt: Prompt, first: Answer, second: Answer) -> list[_Planned]:
        """The item's games: per slot, on each judged turn, in both orders."""
        templates = self._inputs.templates
        return [
            ((index, turn, order), judge, game)
            for index, judge, normalization in slots
            for turn in templates[judge.name].judged_turns(prompt)
            for order, game in enumerate(games(prompt, first, second, normalization, turn))
        ]

    def _requests(self, planned: Sequence[_Planned]) -> list[JudgeRequest]:
        templates = self._inputs.templates
        return [(self._called[judge.name], templates[judge.name], game) for _, judge, game in planned]

    async def _shown(
        self, planned: Sequence[_Planned], position: int | None
    ) -> Sequence[tuple[tuple[Message, ...] | None, tuple[str, ...], str]]:
        """What each game shows its judge (`judge.shown_requests`); from the second process when it took the item,
        without the messages (rendered again if the call must be made)."""
        keyed = None if position is None else self._keyed_there.pop(position, None)
        if keyed is None:
            if position is not None:
                self._keyed_here.add(position)
            return shown_requests(self._requests(planned))
        job, start, stop = keyed
        try:
            # Shielded: the job is other items' too, and a task cancelled while awaiting a future cancels it.
            return [(None, flags, digest) for digest, flags in (await asyncio.shield(job))[start:stop]]
        except WorkerFailed:
            return shown_requests(self._requests(planned))

    def _give_keys(self) -> None:
        """Give the second process items to key while it has room, from the last one no process has taken back,
        until it meets those this process took or an item whose answers are not all there yet."""
        preparer = self._preparer
        while preparer is not None and preparer.room and self._last_free >= 0:
            taken: list[tuple[int, int, int]] = []
            requests: list[JudgeRequest] = []
            while self._last_free >= 0 and len(requests) < _KEYED_PER_JOB:
                position = self._last_free
                if position in self._keyed_here:
                    self._last_free = -1
                    break
                slots, pair, prompt = self._items[position]
                answering = [self._answers[(model, prompt.id)] for model in pair]
                if not all(task.done() and not task.cancelled() and task.exception() is None for task in answering):
                    break
                first, second = (task.result() for task in answering)
                if first is not None and second is not None:
                    planned = self._requests(self._planned(slots, prompt, first, second))
                    taken.append((position, len(requests), len(requests) + len(planned)))
                    requests.extend(planned)
                self._last_free -= 1
            if not requests:
                return
            job = preparer.keys(requests)
            for position, start, stop in taken:
                self._keyed_there[position] = (job, start, stop)

    def _judged_turns(self, prompt: Prompt) -> tuple[int, ...]:
        """The turns of `prompt` the screening judges judge (found once per prompt: every pair's item asks)."""
        turns = self._screened_turns.get(prompt.id)
        if turns is None:
            templates = self._inputs.templates
            judged = {turn for judge in self._screening for turn in templates[judge.name].judged_turns(prompt)}
            turns = self._screened_turns[prompt.id] = tuple(sorted(judged))
        return turns

    def _decide(self, judge: JudgeConfig, game: Game, reply: str, flags: tuple[str, ...]) -> Battle | None:
        labels, strong_weight = self._inputs.templates[judge.name].labels, self._inputs.config.rating.strong_weight
        return decide(game, reply, flags, judge=judge.name, labels=labels, strong_weight=strong_weight)

    async def _play(
        self,
        key: tuple[int, int, int],
        judge: JudgeConfig,
        game: Game,
        messages: tuple[Message, ...] | None,
        flags: tuple[str, ...],
        reply: str | None,
    ) -> None:
        """One judge game shown as `messages` (None: rendered now), with the screen's `flags` (`reply`: the judge's
        first reply, when cached); its battle is kept under `key`, a failure is recorded."""
        template = self._inputs.templates[judge.name]
        called = self._called[judge.name]

        async def complete(messages: tuple[Message, ...]) -> str:
            return (await self._runner.complete(called, messages)).text

        try:
            self._battles[key] = await judge_shown(
                game,
                messages or shown_requests([(called, template, game)])[0][0],
                flags,
                judge=judge.name,
                labels=template.labels,
                complete=complete,
                strong_weight=self._inputs.config.rating.strong_weight,
                reply=reply,
            )
        except CallFailed as exc:
            per_turn = template.per_turn and len(game.prompt.turns) > 1
            on = f"{game.prompt.id} turn {game.judged_turn}" if per_turn else game.prompt.id
            where = f"{game.answer_a.model} vs {game.answer_b.model} on {on} ({game.normalization})"
            self.failures.append(Failure("judge", f"{judge.name}: {where}", str(exc)))
        except BudgetExceeded:
            pass
        except Interrupted:
            self._cut = True
            return
        self._advance("verdicts")


async def _constant(answer: Answer | None) -> Answer | None:
    return answer
