"""Ctrl-C and SIGTERM on a real `judge-arena run` process: a graceful stop with a partial report, then a resume.

The simulator delays every answer, so the run is mid-flight when the signal comes; the test waits for the server to
have answered some requests (polling, never a fixed short sleep) before it sends the signal.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from sim_arena import write_config

from judge_arena.arena import load_inputs, play_arena
from judge_arena.cli import main
from judge_arena.config import load_config
from judge_arena.interrupt import Interrupt, on_signals
from judge_arena.sim import SimulatorServer
from judge_arena.sim.server import SimRequest

LATENCY_S = 0.5
"""Simulated model latency: long enough that calls are in flight when the signal comes."""
STARTED = 6
"""Answers the server gives before the test sends its signal."""
TIMEOUT_S = 120.0
"""Only against a hung process: never a timing this test relies on."""


class Latency:
    """A hook that only waits, then lets the simulator answer (billed); counts the answers by request."""

    def __init__(self) -> None:
        self.billed: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def __call__(self, request: SimRequest) -> web.StreamResponse | None:
        await asyncio.sleep(LATENCY_S)
        self._bill(request)
        return None

    def _bill(self, request: SimRequest) -> None:
        with self._lock:
            self.billed[json.dumps([request.model, [(m.role, m.content) for m in request.messages]])] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.billed.values())


@pytest.fixture
def latency() -> Latency:
    return Latency()


@pytest.fixture
def sim(latency: Latency) -> Iterator[SimulatorServer]:
    with SimulatorServer(hook=latency) as server:
        yield server


def _config(folder: Path, sim_url: str) -> Path:
    return write_config(folder, f"{sim_url}/v1", name="interrupted", limit=6, concurrency=4)


def _start(path: Path, latency: Latency) -> subprocess.Popen[str]:
    run = subprocess.Popen(
        [sys.executable, "-m", "judge_arena.cli", "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT_S
    while latency.total() < STARTED:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    return run


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_with_a_partial_report_and_the_same_command_resumes(
    tmp_path: Path, sim: SimulatorServer, latency: Latency, signum: int, code: int
) -> None:
    path = _config(tmp_path, sim.url)
    run = _start(path, latency)
    os.kill(run.pid, signum)
    out, err = run.communicate(timeout=TIMEOUT_S)

    assert run.returncode == code, (out, err)
    assert "Traceback" not in err, err
    assert "never awaited" not in err, err
    lines = out.splitlines()
    interrupted = [line for line in lines if line.startswith("interrupted: ")]
    assert len(interrupted) == 1, out
    assert interrupted[0].endswith("games done; run the same command to resume"), out
    done, planned = (int(n.replace(",", "")) for n in interrupted[0].split()[1:4:2])
    assert 0 <= done < planned == 3 * 6 * 2 * 2
    # the partial report is written, rated on what was done
    (report,) = (tmp_path / "runs").iterdir()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["calls"]["made"] > 0
    assert len(json.loads(json.dumps(summary)))
    assert (report / "battles.csv").exists()

    # calls in flight were let finish and stored: nothing the stopped run paid for is paid again
    assert main(["run", str(path)]) == 0
    assert latency.billed
    assert max(latency.billed.values()) == 1, [k for k, n in latency.billed.items() if n > 1][:2]


class Held(Latency):
    """Latency, and once `hold()` is called, no answer until `release()`: a run stopped after `hold()` stays in its
    grace period with calls in flight, whatever the machine's load, until the second signal comes."""

    def __init__(self) -> None:
        super().__init__()
        self._held = threading.Event()
        self._released = threading.Event()

    async def __call__(self, request: SimRequest) -> web.StreamResponse | None:
        await asyncio.sleep(LATENCY_S)
        while self._held.is_set() and not self._released.is_set():
            await asyncio.sleep(0.05)
        self._bill(request)
        return None

    def hold(self) -> None:
        self._held.set()

    def release(self) -> None:
        self._released.set()


def test_a_second_signal_exits_at_once(tmp_path: Path, sim: SimulatorServer) -> None:
    held = Held()
    sim.hook = held
    try:
        run = _start(_config(tmp_path, sim.url), held)
        held.hold()
        os.kill(run.pid, signal.SIGINT)
        assert run.stderr is not None
        first = run.stderr.readline() + run.stderr.readline()  # a blank line, then the one saying it is stopping
        assert "SIGINT: stopping" in first, first
        os.kill(run.pid, signal.SIGINT)
        out, err = run.communicate(timeout=TIMEOUT_S)
    finally:
        held.release()
    assert run.returncode == 130
    assert "SIGINT again: exiting now, without a report" in err, err
    assert "Traceback" not in err, err
    assert "interrupted: " not in out
    assert not any((tmp_path / "runs").glob("*/summary.json"))


def test_a_run_stopped_in_code_keeps_what_it_did_in_the_order_of_a_full_run(
    tmp_path: Path, sim: SimulatorServer, latency: Latency
) -> None:
    path = _config(tmp_path, sim.url)
    interrupt = Interrupt()

    async def stop_after_some_answers(request: SimRequest) -> web.StreamResponse | None:
        await latency(request)
        if latency.total() >= 3 * STARTED:
            interrupt.stop(signal.SIGTERM)  # from the simulator's thread, as a signal handler would
        return None

    sim.hook = stop_after_some_answers
    partial = asyncio.run(play_arena(load_inputs(load_config(path)), interrupt=interrupt))
    sim.hook = latency
    full = asyncio.run(play_arena(load_inputs(load_config(path))))

    assert partial.interrupted == signal.SIGTERM
    assert full.interrupted is None
    assert 0 < len(partial.answers) < len(full.answers)
    assert len(partial.battles) < len(full.battles)
    assert [a for a in full.answers if a in partial.answers] == list(partial.answers)
    assert [b for b in full.battles if b in partial.battles] == list(partial.battles)
    # the calls the stopped run let finish were stored: the full run paid for none of them again
    assert max(latency.billed.values()) == 1


class _Exited(Exception):
    """Stands in for `os._exit` in-process: raised where the process would have ended."""


class _SignalledWhileWriting:
    """An output where a second SIGINT comes while the first one's line is being written: the handler then runs
    again inside itself, as it does when the user (or a test) answers the line with another Ctrl-C."""

    def __init__(self) -> None:
        self.text = ""
        self._signalled = False

    def write(self, text: str) -> int:
        self.text += text
        if "stopping" in text and not self._signalled:
            self._signalled = True
            signal.raise_signal(signal.SIGINT)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_a_second_signal_while_the_first_is_announced_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    def exit_(code: int) -> None:
        raise _Exited(code)

    monkeypatch.setattr(os, "_exit", exit_)
    out = _SignalledWhileWriting()
    interrupt = Interrupt()
    with on_signals(interrupt, out), pytest.raises(_Exited, match="130"):  # type: ignore[arg-type]
        signal.raise_signal(signal.SIGINT)
    assert interrupt.signal == signal.SIGINT
    assert out.text.count("stopping") == 1, out.text
    assert "SIGINT again: exiting now, without a report" in out.text
