"""A second Python process for a large run: pure functions of the package computed beside the run's own process.

A cached rerun of 100,000 items is CPU work on one thread (the event loop's), and this machine has two cores. The
work that is a pure function of data the run has — each answer's normalizations, screening and style features
(`prepare.py`), the style-controlled boards (`pipeline.py`) — can be done in a second process meanwhile.

The process is `python -m judge_arena.worker`, not a `multiprocessing` child: those import the caller's main script
again, which a library cannot ask of its users' scripts. Requests (a function, by its module and name, and its
arguments) and replies are pickles, each after its length; replies come in the order of the requests. Two threads
of the run's process write the requests and read the replies, blocking: served by the event loop, a pipe was served
once per turn of the loop (a turn judges hundreds of games), and the second process waited for its next request or
for room to reply. Nothing depends on it: a caller whose call fails computes the result itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import io
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar, cast

R = TypeVar("R")

_LENGTH = 8
"""Bytes of the length that goes before each message (little-endian)."""
_PIPE_BYTES = 1 << 20
"""The pipes' capacity asked for (Linux's default is 64 KiB, and its most without privileges 1 MiB)."""


class WorkerFailed(Exception):
    """A call the second process could not answer: it raised, or the process ended or could not start."""


def spare_cores() -> int:
    """The cores this process may run on, beyond its own one."""
    try:
        return len(os.sched_getaffinity(0)) - 1
    except AttributeError:  # not Linux
        return (os.cpu_count() or 1) - 1


def _length(size: int) -> bytes:
    return size.to_bytes(_LENGTH, "little")


def _frame(message: object) -> list[bytes | memoryview]:
    """The message as written: its pickle, then the arrays' buffers the pickle refers to (pickle protocol 5's
    out-of-band buffers), each after its length, and the number of buffers between them.

    The buffers are written from the arrays themselves, not copied into the pickle: a run folder's tables sent to be
    rendered are tens of MB, which a copy added to the peak memory of the run's process.
    """
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    frame: list[bytes | memoryview] = [_length(len(body)), body, _length(len(buffers))]
    for buffer in buffers:
        view = buffer.raw()
        frame += [_length(view.nbytes), view]
    return frame


def _receive(stream: IO[bytes]) -> Any:
    """A message written by `_frame`; raises EOFError at the end of the stream."""
    header = stream.read(_LENGTH)
    if len(header) < _LENGTH:
        raise EOFError
    body = stream.read(int.from_bytes(header, "little"))
    buffers = []
    for _ in range(int.from_bytes(stream.read(_LENGTH), "little")):
        # Writable, as the arrays were: read-only ones would refuse what their code may do to them.
        buffer = bytearray(int.from_bytes(stream.read(_LENGTH), "little"))
        if cast(io.BufferedIOBase, stream).readinto(buffer) < len(buffer):
            raise EOFError
        buffers.append(buffer)
    return pickle.loads(body, buffers=buffers)


def _widen(pipe: IO[bytes] | None) -> None:
    """Ask for a pipe of `_PIPE_BYTES`: a request is up to a few MB, and each time a full pipe blocks a thread of the
    run's process, waking it takes the interpreter lock from the event loop. Where the system does not allow it (not
    Linux, a lower limit), the pipe stays as it is."""
    if pipe is not None and sys.platform == "linux":
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


class Worker:
    """The second process. Made on the run's event loop, whose futures `call` returns; `aclose` ends it."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        """The calls sent, oldest first, their replies not yet read."""
        self._requests: queue.SimpleQueue[list[bytes | memoryview] | None] = queue.SimpleQueue()
        """What the writing thread sends, in order; None ends it."""
        self._threads: list[threading.Thread] = []
        self._process: subprocess.Popen[bytes] | None = None
        self.failed = False
        """Whether the process could not start, or has ended: a call now fails at once."""
        # The package as this process found it, installed or not.
        paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                # Arrow's memory (pandas' strings) from the system's allocator unless the user chose: pyarrow's
                # default keeps much of what is freed, and this process builds and frees the run folder's tables.
                env={
                    "ARROW_DEFAULT_MEMORY_POOL": "system",
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, paths)),
                },
            )
        except OSError:
            self.failed = True
            return
        for pipe in (self._process.stdin, self._process.stdout):
            _widen(pipe)
        for name, target, pipe in (
            ("send", self._write, self._process.stdin),
            ("receive", self._read, self._process.stdout),
        ):
            thread = threading.Thread(target=target, args=(pipe,), name=f"judge-arena-worker-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def idle(self) -> bool:
        """Whether every call sent has been answered."""
        return not self._pending

    def warm(self, function: Callable[..., object], *args: Any) -> None:
        """Call `function(*args)` there for what it loads ahead of the calls that need it (modules, tables); its
        outcome is not said."""
        self.call(function, *args).add_done_callback(_seen)

    def load(self, module: str) -> None:
        """Import `module` there, ahead of the calls that need it."""
        self.warm(_import, module)

    def call(self, function: Callable[..., R], *args: Any, **kwargs: Any) -> asyncio.Future[R]:
        """`function(*args, **kwargs)` computed in the second process (a module-level function: it is sent by name).

        The future fails with WorkerFailed when the function raised there or the process ended. A result in bytes
        comes as a bytearray (sent as it is, not copied into a pickle).
        """
        done: asyncio.Future[R] = self._loop.create_future()
        if self.failed:
            done.set_exception(WorkerFailed("the second process has ended"))
            return done
        try:
            # Pickled here, on the caller's thread: the arguments may change once the call returns. Only arrays'
            # buffers are read later, as the writing thread sends them (see `_frame`): a caller does not change an
            # array it has sent.
            request = _frame((function, args, kwargs))
        except Exception as exc:  # a function or argument that cannot be sent: the caller computes it
            done.set_exception(WorkerFailed(f"cannot send the call: {exc}"))
            return done
        self._pending.append(done)
        self._requests.put(request)
        return done

    def _write(self, requests: IO[bytes]) -> None:
        """The writing thread: each request as it comes, until None or the pipe breaks."""
        with contextlib.suppress(OSError, ValueError):  # the process ended, or its pipe was closed
            while (request := self._requests.get()) is not None:
                requests.writelines(request)
                requests.flush()

    def _read(self, replies: IO[bytes]) -> None:
        """The reading thread: each reply as it comes, handed to the event loop; at the end, the loop fails the rest."""
        try:
            while True:
                self._loop.call_soon_threadsafe(self._received, _receive(replies))
        except Exception:  # whatever went wrong, the callers compute the results themselves
            pass
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            self._loop.call_soon_threadsafe(self._end)

    def _received(self, reply: tuple[bool, Any]) -> None:
        if not self._pending:
            return  # ended meanwhile
        done = self._pending.popleft()
        if done.done():
            return
        answered, value = reply
        if answered:
            done.set_result(value)
        else:
            done.set_exception(WorkerFailed(value))

    def _end(self) -> None:
        """Fail the calls not answered, and end the process."""
        self.failed = True
        while self._pending:
            done = self._pending.popleft()
            if not done.done():
                done.set_exception(WorkerFailed("the second process has ended"))
                done.exception()  # retrieved: a caller that stopped waiting is not warned about it
        self._requests.put(None)
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    async def aclose(self) -> None:
        """End the second process and its threads; calls not answered fail."""
        self._end()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        if self._process is not None:
            await asyncio.to_thread(self._process.wait)
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):  # what the writer left in the buffer, to an ended process
                        pipe.close()


def _import(module: str) -> None:
    importlib.import_module(module)


def _seen(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: nobody waits for it


def _serve() -> None:
    """The second process: read each request from stdin, write its reply to stdout."""
    # Ctrl-C reaches every process of the terminal's group: the run's own process decides how to stop, and ends
    # this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    # Replies go to a descriptor of their own: whatever else writes to stdout (a library's warning) goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    while True:
        try:
            function, args, kwargs = _receive(requests)
        except EOFError:
            return
        try:
            result = function(*args, **kwargs)
            # Sent out of band, as arrays are (see `_frame`): a page of tens of MB, not copied into the pickle.
            sent = _frame((True, pickle.PickleBuffer(result) if isinstance(result, bytes) else result))
        except Exception as exc:  # raised, or its result cannot be sent: the caller computes it itself
            sent = _frame((False, f"{type(exc).__name__}: {exc}"))
        replies.writelines(sent)
        replies.flush()


if __name__ == "__main__":
    # Through the module's own name, so that what it defines is pickled as `judge_arena.worker.…`, which the run's
    # process can read, not as `__main__.…`.
    from judge_arena.worker import _serve as serve

    serve()
