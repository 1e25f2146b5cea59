"""Stopping a run cleanly: the first SIGINT (Ctrl-C) or SIGTERM stops it, a second one exits at once.

A stopped run makes no new call; the calls in flight get a short grace period to finish, so their answers are
stored rather than paid for again by the next run, and the run then returns what it has done (the CLI writes the
partial report and exits 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TextIO

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a run."""

_SHOW_CURSOR = "\x1b[?25h"
"""The progress bars hide the terminal's cursor while they draw; an immediate exit must give it back."""


class Interrupt:
    """A run's stop switch: thrown once, by a signal (see `on_signals`) or by the caller; it stays thrown."""

    def __init__(self) -> None:
        self.signal: int | None = None
        """The signal that stopped the run (SIGINT for a stop asked in code); None while it runs on."""
        self._listeners: list[Callable[[], object]] = []

    @property
    def stopped(self) -> bool:
        """Whether the run was asked to stop."""
        return self.signal is not None

    def stop(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop (only the first request counts)."""
        if self.signal is None:
            self.signal = signum
            for listener in self._listeners:
                listener()

    def listen(self, listener: Callable[[], object]) -> Callable[[], None]:
        """Call `listener` when the run is asked to stop (at once if it was); returns what stops listening."""
        self._listeners.append(listener)
        if self.stopped:
            listener()
        return lambda: self._listeners.remove(listener)


@contextlib.contextmanager
def on_signals(interrupt: Interrupt, out: TextIO = sys.stderr) -> Iterator[Interrupt]:
    """Within the block, the first SIGINT or SIGTERM stops `interrupt`; a second one exits the process at once
    (its status 128 + the signal's number, after one line on `out`). Call from the main thread."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not interrupt.stopped:
            # Stopped before it is said: a second signal sent on seeing the line (or arriving while it is written,
            # which runs this handler again inside the first) must find the run stopped, and exit.
            interrupt.stop(signum)
            out.write(f"\n{name}: stopping: no new calls; those in flight may finish, then the report (again: exit)\n")
            out.flush()
            return
        # A write this very signal interrupted cannot be re-entered: then the exit matters, not the line.
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            if out.isatty():
                out.write(_SHOW_CURSOR)
            out.write(f"\n{name} again: exiting now, without a report\n")
            out.flush()
        # At once means no clean-up: every answer already received is committed to the cache or kept as a receipt.
        os._exit(128 + signum)

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield interrupt
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_wake(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Within the block, a signal wakes `loop` at once, so that its Python handler (see `on_signals`) runs then.

    Python runs a signal's handler on the main thread between two bytecodes; a signal that arrives just before the
    loop blocks waiting for its next event would otherwise wait for that event (a second Ctrl-C during a stop's
    grace period waited the whole period). A byte written to a socket the loop watches ends the wait. Does nothing
    off the main thread, where signals are not handled.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    loop.add_reader(reader.fileno(), _drain, reader)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()


def _drain(reader: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while reader.recv(4096):
            pass
