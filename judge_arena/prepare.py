"""The per-answer work of a large run, done ahead of its judge games in a second process.

A game shows the judge its two answers normalized (`style.strip_markdown` for `plain`) and screened
(`defence.screen_answer`), and the style-controlled rating reads each answer's style features (`style.answer_style`).
Each is a memoised pure function of one answer, computed once per answer however many games it is in. In a run of
thousands of answers that is seconds of CPU on the run's one thread: a cached rerun of 100,000 items spent a fifth of
its time there. So when the machine has a core to spare, a second process computes them for the answers in the
order the games ask for them (`Preparer.ready`), and the run's process adds the results to the memos
(`_memo.Memo.remember`); a game then finds them done.

Nothing depends on it: a result that is not there is computed where it is needed, as in a small run, and a second
process that cannot start or fails leaves the rest to be computed so. The results are the same either way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from judge_arena._memo import Memo
from judge_arena.defence import screen_answer
from judge_arena.labels import LabelSet
from judge_arena.records import Answer
from judge_arena.style import NORMALIZATIONS, StyleFeatures, answer_style

AHEAD_FROM_ANSWERS = 2_000
"""The answers a run must have for a second process to be worth starting (it takes about a third of a second to
start, and an answer's work about half a millisecond)."""
_CHUNK = 64
"""Answers sent to the second process at once: enough to make a message worth its cost, few enough that the first
games do not wait long."""


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
    """Every answer's results (run in the second process)."""
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


def spare_cores() -> int:
    """The cores this process may run on, beyond its own one."""
    try:
        return len(os.sched_getaffinity(0)) - 1
    except AttributeError:  # not Linux
        return (os.cpu_count() or 1) - 1


_Waiting = list[tuple[Work, "asyncio.Future[None]"]]
"""Answers sent (or to send) together, each with what is done once its results are remembered."""
_LENGTH = 8
"""Bytes of the length that goes before each message (little-endian)."""
_WARM_UP = Work(Answer(model="", prompt_id="", turns=("# Warm **up**",), output_tokens=0, latency_s=0.0), (1,))
"""Work whose preparation loads what every other's needs (the markdown parser, the tokenizer's tables)."""


def _frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(_LENGTH, "little") + body


class Preparer:
    """The second process, and the answers sent to it. Made on the run's event loop; `aclose` ends the process.

    The process is `python -m judge_arena.prepare`, not a `multiprocessing` child: those import the caller's main
    script again, which a library cannot ask of its users' scripts. Messages are pickles, each after its length, in
    both directions; replies come in the order of the requests. Two threads of this process write the requests and
    read the replies, blocking: on the event loop, a pipe was served once per turn of the loop (a turn judges hundreds
    of games), and the second process spent most of its time waiting for its next request or for room to reply.
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._loop = asyncio.get_running_loop()
        self._asked: dict[tuple[str, str], asyncio.Future[None]] = {}
        """Per answer (model, prompt id), done once its results are remembered (or will not come)."""
        self._waiting: _Waiting = []
        """Answers asked for since the last batch was sent, in the order they were asked for."""
        self._sent: collections.deque[_Waiting] = collections.deque()
        """Batches sent, oldest first, their replies not yet read."""
        self._requests: queue.SimpleQueue[list[Work] | None] = queue.SimpleQueue()
        """What the writing thread sends, in order; None ends it."""
        self._threads: list[threading.Thread] = []
        self._process: subprocess.Popen[bytes] | None = None
        # The package as this process found it, installed or not.
        paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))},
            )
        except OSError:
            self._given_up = True
            return
        self._given_up = False
        for pipe in (self._process.stdin, self._process.stdout):
            _widen(pipe)
        for name, target, pipe in (
            ("send", self._write, self._process.stdin),
            ("receive", self._read, self._process.stdout),
        ):
            thread = threading.Thread(target=target, args=(pipe,), name=f"judge-arena-prepare-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._sent.append([])
        self._requests.put([_WARM_UP])

    def ready(self, answer: Answer, judged_turns: tuple[int, ...]) -> asyncio.Future[None]:
        """Done once the answer's results are in this process's memos, or will not come from the second process."""
        key = (answer.model, answer.prompt_id)
        asked = self._asked.get(key)
        if asked is None:
            asked = self._asked[key] = self._loop.create_future()
            if self._given_up:
                asked.set_result(None)
            else:
                if not self._waiting:
                    self._loop.call_soon(self._send)
                self._waiting.append((Work(answer, judged_turns), asked))
        return asked

    def _send(self) -> None:
        """Hand the answers asked for to the writing thread, in batches."""
        waiting, self._waiting = self._waiting, []
        if self._given_up:
            _release(waiting)
            return
        for start in range(0, len(waiting), _CHUNK):
            chunk = waiting[start : start + _CHUNK]
            self._sent.append(chunk)
            self._requests.put([work for work, _ in chunk])

    def _write(self, requests: IO[bytes]) -> None:
        """The writing thread: each request as it comes, until None or the pipe breaks."""
        with contextlib.suppress(OSError, ValueError):  # the process ended, or its pipe was closed
            while (works := self._requests.get()) is not None:
                requests.write(_frame((self._plan, works)))
                requests.flush()

    def _read(self, replies: IO[bytes]) -> None:
        """The reading thread: each reply as it comes, handed to the event loop; at the end, the loop gives up."""
        try:
            while len(header := replies.read(_LENGTH)) == _LENGTH:
                prepared = pickle.loads(replies.read(int.from_bytes(header, "little")))
                self._loop.call_soon_threadsafe(self._received, prepared)
        except Exception:  # whatever went wrong, the results are computed where they are needed
            pass
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            self._loop.call_soon_threadsafe(self._give_up)

    def _received(self, prepared: list[Prepared]) -> None:
        if self._given_up:
            return
        chunk = self._sent.popleft()
        if chunk:
            remember(self._plan, [work for work, _ in chunk], prepared)
        _release(chunk)

    def _give_up(self) -> None:
        """Leave the rest to be computed where needed."""
        self._given_up = True
        for chunk in (*self._sent, self._waiting):
            _release(chunk)
        self._sent.clear()
        self._waiting = []
        self._requests.put(None)
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    async def aclose(self) -> None:
        """End the second process and its threads; whatever waits for it is released."""
        self._give_up()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        if self._process is not None:
            await asyncio.to_thread(self._process.wait)
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):  # what the writer left in the buffer, to an ended process
                        pipe.close()


_PIPE_BYTES = 1 << 20
"""The pipes' capacity asked for (Linux's default is 64 KiB, and its most without privileges 1 MiB)."""


def _widen(pipe: IO[bytes] | None) -> None:
    """Ask for a pipe of `_PIPE_BYTES`: a batch of answers is a few hundred KB, and each time a full pipe blocks a
    thread of this process, waking it takes the interpreter lock from the run's event loop. Where the system does not
    allow it (not Linux, a lower limit), the pipe stays as it is."""
    if pipe is not None and sys.platform == "linux":
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _release(chunk: _Waiting) -> None:
    for _, asked in chunk:
        if not asked.done():
            asked.set_result(None)


def _serve_requests() -> None:
    """The second process: read (plan, works) messages from stdin, write each one's `prepare` to stdout."""
    # Ctrl-C reaches every process of the terminal's group: the run's own process decides how to stop, and ends
    # this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    # Replies go to a descriptor of their own: whatever else writes to stdout (a library's warning) goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    while header := requests.read(_LENGTH):
        plan, works = pickle.loads(requests.read(int.from_bytes(header, "little")))
        replies.write(_frame(prepare(plan, works)))
        replies.flush()
        # Each answer comes once: its results are not asked for again here.
        screen_answer.cache_clear()
        answer_style.cache_clear()
        for normalization in NORMALIZATIONS.values():
            if isinstance(normalization, Memo):
                normalization.cache_clear()


if __name__ == "__main__":
    # Through the module's own name, so that the replies are pickled as `judge_arena.prepare.Prepared`, which the run's
    # process can read, not as `__main__.Prepared`.
    from judge_arena.prepare import _serve_requests as serve

    serve()
