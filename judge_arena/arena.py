"""One arena run, stage after stage: suites → generate → normalize → judge → rate.

Generation and judging overlap: a pair of answers is judged as soon as both exist. Every call goes through the
cache, so a rerun of the same config makes no model call at all.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Protocol

from judge_arena.budget import Budget, BudgetExceeded
from judge_arena.client import CallFailed, Client
from judge_arena.config import ArenaConfig, ConfigError, JudgeConfig, ModelConfig, check_context
from judge_arena.defence import canary_answer, enabled_canaries
from judge_arena.generate import generate_answer
from judge_arena.judge import Game, JudgeTemplate, games, judge_game
from judge_arena.records import Answer, Battle, Failure, Message, Prompt
from judge_arena.runner import CallRunner, CallStats
from judge_arena.store import Completion, Store
from judge_arena.suites import SuiteError, load_suite

CACHE_FILE = "arena.sqlite"


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


@dataclass(frozen=True)
class ArenaRun:
    """What a run produced: answers, battles, failures and call statistics."""

    inputs: Inputs
    answers: tuple[Answer, ...]
    battles: tuple[Battle, ...]
    failures: tuple[Failure, ...]
    stats: CallStats
    elapsed_s: float


def load_inputs(config: ArenaConfig) -> Inputs:
    """Load the suites and judge templates; raise ConfigError on any problem, before anything is written."""
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    for suite in config.suites:
        try:
            loaded = load_suite(suite.path, suite.format, name=suite.name, limit=suite.limit).prompts
        except SuiteError as exc:
            raise ConfigError(str(exc)) from None
        check_context(suite.path, loaded, config)
        for prompt in loaded:
            if prompt.id in seen:
                where = seen[prompt.id]
                raise ConfigError(f"{suite.path}: field 'id': prompt id '{prompt.id}' also appears in {where}")
            seen[prompt.id] = str(suite.path)
        prompts.extend(loaded)
    try:
        templates = {judge.name: JudgeTemplate.load(judge.template) for judge in config.judges}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Inputs(config=config, prompts=tuple(prompts), templates=templates)


def candidate_pairs(config: ArenaConfig) -> list[tuple[str, str]]:
    """The unordered candidate pairs to judge, per the pairing mode; each canary meets every real candidate."""
    names = [c.name for c in config.candidates]
    canaries = enabled_canaries(config.canaries)
    if config.pairing.mode == "vs-baseline":
        baseline = config.pairing.baseline
        return [(baseline, name) for name in [*names, *canaries] if name != baseline] if baseline else []
    return [*itertools.combinations(names, 2), *((name, canary) for canary in canaries for name in names)]


def planned_calls(inputs: Inputs) -> int:
    """The calls a complete run asks for, made or cached: every turn of every answer and both orders of every game.

    A judge re-asked for a missing verdict asks once more, so a run may ask for a few more than this.
    """
    config = inputs.config
    turns = sum(len(prompt.turns) for prompt in inputs.prompts)
    games = len(candidate_pairs(config)) * len(inputs.prompts) * len(config.judges) * len(config.normalizations) * 2
    return len(config.candidates) * turns + games


def run_arena(inputs: Inputs, progress: Progress | None = None, *, simulator_url: str | None = None) -> ArenaRun:
    """Run the arena through the cache; start the simulator if the config uses it and no `simulator_url` is given."""
    config = inputs.config
    with ExitStack() as stack:
        if config.uses_simulator and simulator_url is None:
            from judge_arena.sim.server import SimulatorServer

            simulator_url = stack.enter_context(SimulatorServer()).url
        store = stack.enter_context(Store(config.runner.cache_dir / CACHE_FILE))
        return asyncio.run(_run(inputs, store, simulator_url, progress))


async def _run(inputs: Inputs, store: Store, simulator_url: str | None, progress: Progress | None) -> ArenaRun:
    config = inputs.config
    runner_config = config.runner
    started = time.perf_counter()
    runner = CallRunner(
        store,
        lambda on_retry: Client(
            concurrency=runner_config.concurrency,
            timeout_s=runner_config.timeout_s,
            max_attempts=runner_config.max_attempts,
            max_wait_s=runner_config.max_wait_s,
            max_total_s=runner_config.max_total_s,
            requests_per_minute=runner_config.requests_per_minute,
            tokens_per_minute=runner_config.tokens_per_minute,
            output_estimate=runner_config.output_estimate,
            on_retry=on_retry,
        ),
        simulator_url,
        on_change=progress.calls if progress else None,
        budget=Budget(config.budget.max_usd) if config.budget else None,
    )
    try:
        return await _played(inputs, runner, progress, started)
    finally:
        await runner.aclose()


async def _played(inputs: Inputs, runner: CallRunner, progress: Progress | None, started: float) -> ArenaRun:
    """Every answer and every verdict of the arena, as far as the calls succeed and the budget allows."""
    config = inputs.config
    failures: list[Failure] = []
    pairs = candidate_pairs(config)
    judge_items = len(pairs) * len(inputs.prompts) * len(config.judges) * len(config.normalizations) * 2
    if progress:
        progress.start("answers", len(config.candidates) * len(inputs.prompts))
        progress.start("verdicts", judge_items)

    async def answer(candidate: ModelConfig, prompt: Prompt) -> Answer | None:
        async def complete(messages: tuple[Message, ...]) -> Completion:
            return await runner.complete(candidate, messages)

        try:
            return await generate_answer(candidate.name, prompt, complete)
        except CallFailed as exc:
            failures.append(Failure("generate", f"{candidate.name} × {prompt.id}", str(exc)))
            return None
        except BudgetExceeded:
            # Not a failure: the answer is simply not made in this run, and a rerun resumes it.
            return None
        finally:
            if progress:
                progress.advance("answers")

    answer_tasks = {
        (candidate.name, prompt.id): asyncio.create_task(answer(candidate, prompt))
        for candidate in config.candidates
        for prompt in inputs.prompts
    }

    async def canary(name: str, prompt: Prompt) -> Answer | None:
        return canary_answer(name, prompt)

    answer_tasks.update(
        {
            (name, prompt.id): asyncio.create_task(canary(name, prompt))
            for name in enabled_canaries(config.canaries)
            for prompt in inputs.prompts
        }
    )

    async def judge_pair(judge: JudgeConfig, normalization: str, pair: tuple[str, str], prompt: Prompt) -> list[Battle]:
        first = await answer_tasks[(pair[0], prompt.id)]
        second = await answer_tasks[(pair[1], prompt.id)]
        template = inputs.templates[judge.name]

        async def complete(messages: tuple[Message, ...]) -> str:
            return (await runner.complete(judge, messages)).text

        async def play(game: Game) -> Battle | None:
            try:
                return await judge_game(
                    game,
                    judge=judge.name,
                    template=template,
                    complete=complete,
                    strong_weight=config.rating.strong_weight,
                    defence=judge.defence,
                )
            except CallFailed as exc:
                item = f"{judge.name}: {game.answer_a.model} vs {game.answer_b.model} on {prompt.id} ({normalization})"
                failures.append(Failure("judge", item, str(exc)))
                return None
            except BudgetExceeded:
                return None
            finally:
                if progress:
                    progress.advance("verdicts")

        if first is None or second is None:
            if progress:
                progress.advance("verdicts")
                progress.advance("verdicts")
            return []
        played = await asyncio.gather(*(play(game) for game in games(prompt, first, second, normalization)))
        return [battle for battle in played if battle is not None]

    judged = await asyncio.gather(
        *(judge_pair(*item) for item in itertools.product(config.judges, config.normalizations, pairs, inputs.prompts))
    )
    answers = [a for a in await asyncio.gather(*answer_tasks.values()) if a is not None]
    return ArenaRun(
        inputs=inputs,
        answers=tuple(answers),
        battles=tuple(b for group in judged for b in group),
        failures=tuple(failures),
        stats=runner.stats,
        elapsed_s=time.perf_counter() - started,
    )
