"""The per-answer work of a large run, done ahead of its judge games in a second process, and a share of its judge
requests keyed there.

A game shows the judge its two answers normalized (`style.strip_markdown` for `plain`) and screened
(`defence.screen_answer`), and the style-controlled rating reads each answer's style features (`style.answer_style`).
Each is a memoised pure function of one answer, computed once per answer however many games it is in. In a run of
thousands of answers that is seconds of CPU on the run's one thread: a cached rerun of 100,000 items spent a fifth of
its time there. So a large run's second process (`worker.py`) computes them for the answers in the order the games
ask for them (`Preparer.ready`), and the run's process adds the results to the memos (`_memo.Memo.remember`); a game
then finds them done.

Once every answer asked for is prepared, the second process has room for more: the run gives it whole judge items
to render and key (`judge.request_keys`), from the last item back, while its own process goes on from the first
(`arena._Play`). It sends back each game's cache key and the screen's flags, not the messages, which a cached game
does not need: a rerun served from the cache spends about a third of its CPU rendering and keying its games.

Nothing depends on it: a result that is not there is computed where it is needed, as in a small run, and a second
process that fails leaves the rest to be computed so. The results are the same either way.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from judge_arena._memo import Memo
from judge_arena.defence import screen_answer
from judge_arena.labels import LabelSet
from judge_arena.records import Answer
from judge_arena.style import NORMALIZATIONS, StyleFeatures, answer_style
from judge_arena.worker import Worker

if TYPE_CHECKING:
    from judge_arena.judge import JudgeRequest

_CHUNK = 64
"""Answers sent to the second process at once: enough to make a message worth its cost, few enough that the first
games do not wait long."""
_KEY_JOBS_AHEAD = 3
"""Judge request jobs (`Preparer.keys`) the second process may have waiting: enough to keep it busy between two turns
of the run's event loop, which may each take tens of milliseconds, few enough that the run's own process does not
wait for the last ones where the two meet."""


@dataclass(frozen=True)
class Plan:
    """What a run's games need of each answer."""

    views: tuple[str, ...]
    """The normalizations the answers are judged in."""
    label_sets: tuple[LabelSet, ...]
    """The label sets of the judges that screen the answers they are shown."""


@dataclass(frozen=True)
class Work:
    """One answer to prepare."""

    answer: Answer
    judged_turns: tuple[int, ...]
    """The turns its prompt is judged at: a game at turn t shows the answer's first t turns."""


@dataclass(frozen=True)
class Prepared:
    """One answer's results, in `Plan` order."""

    normalized: tuple[tuple[str, ...] | None, ...]
    """Per view, its turns normalized; None for a view whose normalization is not memoised (`raw`, as written)."""
    screened: tuple[tuple[tuple[str, ...], bool], ...]
    """Per view, label set and judged turn (in that nesting), `defence.screen_answer` of the turns shown."""
    style: StyleFeatures


def _shown(plan: Plan, work: Work, normalized: Sequence[tuple[str, ...]]) -> list[tuple[tuple[str, ...], LabelSet]]:
    """The arguments of every `screen_answer` the answer's games call, in `Prepared.screened` order."""
    return [
        (turns[:shown], label_set)
        for turns in normalized
        for label_set in plan.label_sets
        for shown in work.judged_turns
    ]


def prepare(plan: Plan, works: Sequence[Work]) -> list[Prepared]:
    """Every answer's results (run in the second process), through that process's memos: the judge requests it keys
    (`judge.request_keys`) show the same answers."""
    prepared = []
    for work in works:
        normalized = [tuple(NORMALIZATIONS[view](turn) for turn in work.answer.turns) for view in plan.views]
        prepared.append(
            Prepared(
                normalized=tuple(
                    turns if isinstance(NORMALIZATIONS[view], Memo) else None
                    for view, turns in zip(plan.views, normalized, strict=True)
                ),
                screened=tuple(screen_answer(*arguments) for arguments in _shown(plan, work, normalized)),
                style=answer_style(work.answer),
            )
        )
    return prepared


def remember(plan: Plan, works: Sequence[Work], prepared: Sequence[Prepared]) -> None:
    """Add the results to the memos of this process."""
    for work, results in zip(works, prepared, strict=True):
        answer = work.answer
        normalized = []
        for view, turns in zip(plan.views, results.normalized, strict=True):
            transform = NORMALIZATIONS[view]
            if turns is None or not isinstance(transform, Memo):
                normalized.append(tuple(transform(turn) for turn in answer.turns))
                continue
            for turn, result in zip(answer.turns, turns, strict=True):
                transform.remember((turn,), result)
            normalized.append(turns)
        for arguments, screened in zip(_shown(plan, work, normalized), results.screened, strict=True):
            screen_answer.remember(arguments, screened)
        answer_style.remember((answer,), results.style)


_Waiting = list[tuple[Work, "asyncio.Future[None]"]]
"""Answers sent (or to send) together, each with what is done once its results are remembered."""
_WARM_UP = Work(Answer(model="", prompt_id="", turns=("# Warm **up**",), output_tokens=0, latency_s=0.0), (1,))
"""Work whose preparation loads what every other's needs (the markdown parser, the tokenizer's tables)."""


class Preparer:
    """The answers a run's games ask for, sent to its second process (`worker.Worker`) in batches, and their results
    remembered as they come; and the judge requests it is given to key (`keys`) when it has `room`. Made on the
    run's event loop."""

    def __init__(self, plan: Plan, worker: Worker, on_room: Callable[[], None] | None = None) -> None:
        """`on_room` is called each time the second process sends a result and has `room` after it."""
        self._plan = plan
        self._worker = worker
        self._on_room = on_room
        self._loop = asyncio.get_running_loop()
        self._asked: dict[tuple[str, str], asyncio.Future[None]] = {}
        """Per answer (model, prompt id), done once its results are remembered (or will not come)."""
        self._waiting: _Waiting = []
        """Answers asked for since the last batch was sent, in the order they were asked for."""
        self._sent = 0
        """Calls sent to the second process and not answered yet."""
        self._keying = 0
        """Of those, the `keys` jobs."""
        worker.warm(prepare, plan, [_WARM_UP])

    @property
    def room(self) -> bool:
        """Whether the second process can take a `keys` job: every answer asked for is prepared, and fewer than
        `_KEY_JOBS_AHEAD` jobs wait there."""
        return not self._worker.failed and not self._waiting and self._sent == self._keying < _KEY_JOBS_AHEAD

    def ready(self, answer: Answer, judged_turns: tuple[int, ...]) -> asyncio.Future[None]:
        """Done once the answer's results are in this process's memos, or will not come from the second process."""
        key = (answer.model, answer.prompt_id)
        asked = self._asked.get(key)
        if asked is None:
            asked = self._asked[key] = self._loop.create_future()
            if self._worker.failed:
                asked.set_result(None)
            else:
                if not self._waiting:
                    self._loop.call_soon(self._send)
                self._waiting.append((Work(answer, judged_turns), asked))
        return asked

    def keys(self, requests: Sequence[JudgeRequest]) -> asyncio.Future[list[tuple[str, tuple[str, ...]]]]:
        """`judge.request_keys` of the requests, computed in the second process; fails with `worker.WorkerFailed`
        when they cannot be."""
        # Imported here, not with this module: the second process imports this module to prepare the first
        # answers, and the judge's modules (the config's among them) only when it is given requests to key.
        from judge_arena.judge import request_keys

        self._sent += 1
        self._keying += 1
        keyed = self._worker.call(request_keys, requests)
        keyed.add_done_callback(self._keyed)
        return keyed

    def _send(self) -> None:
        """Send the answers asked for, in batches."""
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), _CHUNK):
            chunk = waiting[start : start + _CHUNK]
            self._sent += 1
            prepared = self._worker.call(prepare, self._plan, [work for work, _ in chunk])
            prepared.add_done_callback(functools.partial(self._received, chunk))

    def _received(self, chunk: _Waiting, prepared: asyncio.Future[list[Prepared]]) -> None:
        self._sent -= 1
        if not prepared.cancelled() and prepared.exception() is None:
            remember(self._plan, [work for work, _ in chunk], prepared.result())
        for _, asked in chunk:
            if not asked.done():
                asked.set_result(None)
        self._answered()

    def _keyed(self, _: object) -> None:
        self._sent -= 1
        self._keying -= 1
        self._answered()

    def _answered(self) -> None:
        if self._on_room is not None and self.room:
            self._on_room()
