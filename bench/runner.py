"""The runner's calls against a bare SDK client: wall time, CPU per call and calls in flight, side by side.

The simulator runs in a process of its own and delays every answer by the latency asked for; it counts the
requests in flight at once. Each side then runs in a fresh process of its own, against that same server:

- project: `CallRunner.complete` on a fresh cache, the whole path of a run's call (cache lookup, claim, limiter,
  litellm, receipts, parse, store), with `runner.concurrency` set to the concurrency asked for;
- reference: a bare `openai.AsyncOpenAI` (no retries) with an `asyncio.Semaphore` of the same size.

Each side makes one untimed call first (litellm's first call sets itself up), then the timed calls, each with a
question of its own (no cache hit). CPU is the process's (every thread), over the timed calls only.

    nice .venv/bin/python bench/runner.py                 # 5,000 calls, 200 ms, concurrency 128
    nice .venv/bin/python bench/runner.py --long          # 1,000 calls, 5 s, concurrency 256
    nice .venv/bin/python bench/runner.py --calls 1000    # sized down
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

MODEL = "sim-good-terse"
PARAMS: dict[str, Any] = {"max_tokens": 256}
CPU_TARGET = 1.5
"""CPU per call of the project, at most this many times the reference's."""
WALL_TARGET = 1.5
"""The project's wall time at 200 ms, at most this many times the reference's."""
IDEAL_TARGET = 1.15
"""The project's wall time at 5 s, at most this many times the ideal (calls / concurrency × latency)."""


class _Delay:
    """The simulator's hook: waits `latency_s`, counting the requests in flight and the most seen at once."""

    def __init__(self, latency_s: float, now: Synchronized[int], most: Synchronized[int]) -> None:
        self.latency_s = latency_s
        self.now = now
        self.most = most

    async def __call__(self, request: Any) -> None:
        with self.now.get_lock():
            self.now.value += 1
            self.most.value = max(self.most.value, self.now.value)
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            with self.now.get_lock():
                self.now.value -= 1


def _serve(latency_s: float, now: Synchronized[int], most: Synchronized[int], url: Any, done: Any) -> None:
    from judge_arena.sim import SimulatorServer

    with SimulatorServer(hook=_Delay(latency_s, now, most)) as sim:
        url.send(sim.url)
        done.wait()


@dataclass(frozen=True)
class Side:
    """One side's timed calls."""

    wall_s: float
    cpu_s: float
    calls: int
    in_flight: int
    """The most requests the server saw in flight at once."""

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / self.calls


async def _project(url: str, calls: int, concurrency: int, tag: str) -> tuple[float, float]:
    from judge_arena.client import Client
    from judge_arena.config import CandidateConfig
    from judge_arena.records import Message
    from judge_arena.runner import CallRunner
    from judge_arena.store import Store

    model = CandidateConfig(name="candidate", model=f"openai/{MODEL}", api_base="simulator", params=PARAMS)
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "arena.sqlite") as store:
        runner = CallRunner(
            store,
            lambda on_retry: Client(
                concurrency=concurrency, timeout_s=60.0, max_attempts=1, max_wait_s=0.0, on_retry=on_retry
            ),
            lambda: url,
        )
        try:
            await runner.complete(model, (Message("user", f"warm-up {tag}"),))
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(
                *(runner.complete(model, (Message("user", f"question {tag} {n}"),)) for n in range(calls))
            )
            return time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await runner.aclose()


async def _reference(url: str, calls: int, concurrency: int, tag: str) -> tuple[float, float]:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="no-key", max_retries=0, timeout=60.0)
    gate = asyncio.Semaphore(concurrency)

    async def call(question: str) -> str | None:
        async with gate:
            response = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": question}], **PARAMS
            )
            return response.choices[0].message.content

    try:
        await call(f"warm-up {tag}")
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(call(f"question {tag} {n}") for n in range(calls)))
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await client.close()


def _side(which: str, url: str, calls: int, concurrency: int, tag: str, out: Any) -> None:
    side = _project if which == "project" else _reference
    out.send(asyncio.run(side(url, calls, concurrency, tag)))


def _measure(which: str, url: str, calls: int, concurrency: int, tag: str, most: Synchronized[int]) -> Side:
    most.value = 0
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_side, args=(which, url, calls, concurrency, tag, send))
    process.start()
    wall_s, cpu_s = receive.recv()
    process.join()
    return Side(wall_s, cpu_s, calls, most.value)


def _spread(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return "–".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="1,000 calls at 5 s latency and concurrency 256")
    parser.add_argument("--calls", type=int, help="calls per side (default 5,000, or 1,000 with --long)")
    parser.add_argument("--latency", type=float, help="seconds per answer (default 0.2, or 5 with --long)")
    parser.add_argument("--concurrency", type=int, help="calls in flight (default 128, or 256 with --long)")
    parser.add_argument("--repeat", type=int, default=1, help="side-by-side runs (min–median–max when > 1)")
    args = parser.parse_args()
    calls = args.calls or (1000 if args.long else 5000)
    latency_s = args.latency or (5.0 if args.long else 0.2)
    concurrency = args.concurrency or (256 if args.long else 128)
    ideal_s = calls / concurrency * latency_s

    multiprocessing.set_start_method("spawn")
    now, most = multiprocessing.Value("i", 0), multiprocessing.Value("i", 0)
    url_in, url_out = multiprocessing.Pipe(duplex=False)
    done = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(latency_s, now, most, url_out, done), daemon=True)
    server.start()
    url = url_in.recv()
    print(f"{calls:,} calls, {latency_s:g} s latency, concurrency {concurrency} (ideal {ideal_s:.1f} s)")
    sides: dict[str, list[Side]] = {"project": [], "reference": []}
    try:
        for repeat in range(args.repeat):
            for which in sides:
                side = _measure(which, url, calls, concurrency, f"{time.time_ns()}-{repeat}", most)
                sides[which].append(side)
                print(
                    f"  {which:<9}  wall {side.wall_s:6.1f} s ({side.wall_s / ideal_s:4.2f}× ideal)  "
                    f"CPU {side.cpu_s:6.1f} s = {side.cpu_ms_per_call:5.2f} ms/call  in flight {side.in_flight}",
                    flush=True,
                )
    finally:
        done.set()
        server.join()
    project, reference = sides["project"], sides["reference"]
    cpu = [p.cpu_ms_per_call / r.cpu_ms_per_call for p, r in zip(project, reference, strict=True)]
    wall = [p.wall_s / r.wall_s for p, r in zip(project, reference, strict=True)]
    ideal = [p.wall_s / ideal_s for p in project]
    print("project / reference" + (" (min–median–max)" if args.repeat > 1 else ""))
    met = {True: "met", False: "MISSED"}
    print(f"  CPU per call  {_spread(cpu, '.2f')}×, target ≤ {CPU_TARGET}×: {met[max(cpu) <= CPU_TARGET]}")
    if args.long:
        print(f"  wall / ideal  {_spread(ideal, '.2f')}×, target ≤ {IDEAL_TARGET}×: {met[max(ideal) <= IDEAL_TARGET]}")
    else:
        print(f"  wall          {_spread(wall, '.2f')}×, target ≤ {WALL_TARGET}×: {met[max(wall) <= WALL_TARGET]}")
    in_flight = min(s.in_flight for s in project)
    print(f"  in flight     {in_flight} of {concurrency}: {met[in_flight >= concurrency]}")


if __name__ == "__main__":
    sys.exit(main())
