"""Adaptive pairing against all-pairs judging: the judge calls each needs for the same Kendall τ to the true order.

On the simulator's eight candidates (quality 0.90 down to 0.20, known order) and its fair judge (or --judge, on
--normalization), with a few hundred generated prompts: every game of every pair on every prompt, both orders, is
judged once, in-process (the simulator is deterministic, so a game judged here is the game a run would get). Then:

- all-pairs: the Bradley–Terry ratings of all those battles, and their Kendall τ to the true order;
- adaptive: `judge_arena.sampling.next_items` drives the choice step by step exactly as a run in
  `pairing.mode: adaptive` does (the run's judge calls replaced by a look-up of the judged games), until its stop
  rule holds. After each step the point ratings' τ is recorded.

Printed per repeat (a new prompt set each): the all-pairs τ and calls, and all-pairs' own τ on the first half of
its prompts (the uniform design at half the calls); the adaptive τ and calls at its stop (the mode's defaults:
separation, hopeless neighbours, or max_share 0.5), and the calls from which on the adaptive τ stays at or above
the all-pairs τ until that stop. The figure is that last share of all-pairs' calls: what the adaptive mode needs to
reach the same τ, target ≤ 50 %; the share it spent until its stop is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Sequence

from judge_arena.config import PairingConfig, builtin_templates
from judge_arena.generate import generate_answer
from judge_arena.judge import JudgeTemplate, games, judge_game
from judge_arena.metrics import kendall_tau
from judge_arena.rating import LeaderboardOptions, fit_bradley_terry
from judge_arena.records import Answer, Battle, Message, Prompt
from judge_arena.sampling import Item, Plan, next_items
from judge_arena.sim.models import CANDIDATES, ChatMessage, reply
from judge_arena.store import Completion
from judge_arena.views import battles_frame

TARGET_SHARE = 0.5
TEMPLATE = builtin_templates()["pairwise"]
TOPICS = (
    "database migrations",
    "unit testing",
    "memory allocation",
    "network timeouts",
    "password storage",
    "log rotation",
    "code review",
    "API versioning",
    "queue consumers",
    "cache invalidation",
    "container images",
    "date parsing",
    "floating rounding",
    "thread pools",
    "schema design",
    "error messages",
)


def prompts(count: int, repeat: int) -> list[Prompt]:
    """`count` generated questions; the simulator derives each one's hidden key points from its text."""
    return [
        Prompt(
            id=f"q{repeat}-{k:04d}",
            category="generated",
            turns=(f"How should a small team handle {TOPICS[k % len(TOPICS)]} in project number {repeat}-{k}?",),
        )
        for k in range(count)
    ]


async def _complete(model: str, messages: tuple[Message, ...]) -> Completion:
    return Completion(reply(model, [ChatMessage(m.role, m.content) for m in messages]), "stop", 0, 0, 0.0)


async def judged_games(questions: Sequence[Prompt], judge: str, normalization: str) -> dict[Item, list[Battle]]:
    """Both orders of every pair's game on every prompt, judged by the simulated `judge`."""
    answers: dict[tuple[str, str], Answer] = {}
    for name, prompt in itertools.product(CANDIDATES, questions):

        async def complete(messages: tuple[Message, ...], name: str = name) -> Completion:
            return await _complete(name, messages)

        answers[(name, prompt.id)] = await generate_answer(name, prompt, complete)
    template = JudgeTemplate.load(TEMPLATE)

    async def verdict(messages: tuple[Message, ...]) -> str:
        return (await _complete(judge, messages)).text

    table: dict[Item, list[Battle]] = {}
    for pair, prompt in itertools.product(itertools.combinations(CANDIDATES, 2), questions):
        both = games(prompt, answers[(pair[0], prompt.id)], answers[(pair[1], prompt.id)], normalization)
        table[Item(pair, prompt.id)] = [
            await judge_game(game, judge=judge, template=template, complete=verdict, strong_weight=3) for game in both
        ]
    return table


def tau(battles: Sequence[Battle]) -> float:
    """Kendall τ of the battles' Bradley–Terry ratings to the candidates' true quality."""
    frame = battles_frame(battles)
    ratings = fit_bradley_terry(frame[frame["winner"].notna()])
    return kendall_tau(list(ratings), [CANDIDATES[model].quality for model in ratings.index])


def adaptive(table: dict[Item, list[Battle]], plan: Plan) -> list[tuple[int, float]]:
    """The adaptive run over the judged games: (judge calls so far, τ) after each step, until the stop rule."""
    played: list[Item] = []
    battles: list[Battle] = []
    trace = []
    while (batch := next_items(battles, played, plan)) is not None:
        played.extend(batch)
        battles.extend(battle for item in batch for battle in table[item])
        trace.append((len(battles), tau(battles)))
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300, help="prompts per repeat (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="prompt sets (default 3)")
    parser.add_argument("--initial-prompts", type=int, default=4, help="pairing.initial_prompts (default 4)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairing.batch_size (default 16)")
    parser.add_argument("--rounds", type=int, default=100, help="rating.bootstrap_rounds (default 100)")
    parser.add_argument("--judge", default="sim-judge-fair", help="simulated judge (default sim-judge-fair)")
    parser.add_argument("--normalization", default="raw", choices=("raw", "plain"), help="view (default raw)")
    args = parser.parse_args()

    pairs = tuple(itertools.combinations(CANDIDATES, 2))
    print(
        f"{len(CANDIDATES)} simulated candidates, judge {args.judge} ({args.normalization}), {args.prompts} prompts × "
        f"{args.repeats} repeats; adaptive: initial_prompts {args.initial_prompts}, batch_size {args.batch_size}, "
        f"{args.rounds} bootstrap rounds"
    )
    needed: list[float | None] = []
    spent: list[float] = []
    for repeat in range(args.repeats):
        questions = prompts(args.prompts, repeat)
        started = time.perf_counter()
        table = asyncio.run(judged_games(questions, args.judge, args.normalization))
        judged = time.perf_counter() - started
        every = [battle for battles in table.values() for battle in battles]
        all_calls, all_tau = len(every), tau(every)
        half = {prompt.id for prompt in questions[: args.prompts // 2]}
        half_tau = tau([battle for battle in every if battle.prompt_id in half])
        plan = Plan(
            pairs=pairs,
            prompt_ids=tuple(prompt.id for prompt in questions),
            views=((args.judge, args.normalization),),
            initial_prompts=args.initial_prompts,
            batch_size=args.batch_size,
            max_items=PairingConfig(mode="adaptive").items_at_most(len(table), 2),
            options=LeaderboardOptions(rounds=args.rounds, seed=0),
        )
        started = time.perf_counter()
        trace = adaptive(table, plan)
        chose = time.perf_counter() - started
        stop_calls, stop_tau = trace[-1]
        # The calls from which on adaptive's τ stays at all-pairs' τ until the stop (None: it is not there at the stop).
        reached = next((calls for k, (calls, _) in enumerate(trace) if all(t >= all_tau for _, t in trace[k:])), None)
        needed.append(None if reached is None else reached / all_calls)
        spent.append(stop_calls / all_calls)
        print(f"repeat {repeat}: {len(table)} items judged in {judged:.0f} s; adaptive chose in {chose:.1f} s")
        print(f"  all-pairs   τ {all_tau:.3f} with {all_calls:,} judge calls; on half the prompts τ {half_tau:.3f}")
        print(
            f"  adaptive    τ {stop_tau:.3f} at its stop after {stop_calls:,} calls ({stop_calls / all_calls:.1%}); "
            + (
                f"τ ≥ {all_tau:.3f} from {reached:,} calls ({reached / all_calls:.1%}) on"
                if reached is not None
                else f"τ below {all_tau:.3f} at the stop"
            )
        )
    met = [share for share in needed if share is not None]
    verdict = "met" if len(met) == len(needed) and max(met) <= TARGET_SHARE else "MISSED"
    print(
        f"share of all-pairs' judge calls adaptive needs to reach its τ: {_spread(met)}, target ≤ {TARGET_SHARE:.0%}: "
        f"{verdict}; reached in {len(met)} of {len(needed)} repeats"
    )
    print(f"share adaptive spent until its stop rule held: {_spread(spent)}")


def _spread(shares: Sequence[float]) -> str:
    """min–median–max of shares, or 'none'."""
    if not shares:
        return "none"
    return f"{min(shares):.1%}–{statistics.median(shares):.1%}–{max(shares):.1%} (min–median–max)"


if __name__ == "__main__":
    main()
