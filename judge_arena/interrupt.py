"""Stopping a run cleanly: the first SIGINT (Ctrl-C) or SIGTERM stops it, a second one exits at once.

A stopped run makes no new call; the calls in flight get a short grace period to finish, so their answers are
stored rather than paid for again by the next run, and the run then returns what it has done (the CLI writes the
partial report and exits 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
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
            out.write(f"\n{name}: stopping: no new calls; those in flight may finish, then the report (again: exit)\n")
            out.flush()
            interrupt.stop(signum)
            return
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
