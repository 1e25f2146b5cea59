"""The whole job, as a library call: config → inputs → played arena → rated views → run folder.

`run_arena_async` is the one implementation; `run_arena` is its blocking form, usable from a script and from inside
a running event loop (Jupyter), where it plays the arena on a worker thread with a loop of its own. Neither prints
anything or touches signal handlers: the command adds the progress display, Ctrl-C handling and exit codes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from judge_arena.arena import ArenaRun, Progress, check_refresh, load_inputs, play_arena
from judge_arena.config import ArenaConfig
from judge_arena.interrupt import Interrupt
from judge_arena.report.files import write_report
from judge_arena.runs import RunFolder, load_run
from judge_arena.views import View, canary_warnings, rate_views

Status = Literal["complete", "failures", "budget", "interrupted"]
"""How a run ended: every item done; done but some calls failed (or a canary beat a real model, when the config
says to fail on that); stopped by its budget; stopped by a signal or `Interrupt.stop()`."""


@dataclass(frozen=True)
class ArenaResult:
    """A finished or stopped run: what it played, its rated views and the run folder it wrote."""

    run: ArenaRun
    """Answers, battles, failures and call statistics, as records."""
    views: list[View]
    """Every judge's leaderboards (raw, plain, raw+sc, panel), with their notes."""
    folder: Path
    """The run folder written for this run (`load_run` reads it back)."""

    @property
    def status(self) -> Status:
        """How the run ended; a stop (signal, then budget) outranks failures."""
        if self.run.interrupted is not None:
            return "interrupted"
        if self.run.stats.refused:
            return "budget"
        config = self.run.inputs.config
        canary_failed = config.canaries.fail_if_beats_real_model and bool(canary_warnings(config, self.views))
        return "failures" if self.run.failures or canary_failed else "complete"

    def load(self) -> RunFolder:
        """The run folder read back as DataFrames (see `judge_arena.runs.load_run`)."""
        return load_run(self.folder)


async def run_arena_async(
    config: ArenaConfig,
    *,
    progress: Progress | None = None,
    interrupt: Interrupt | None = None,
    simulator_url: str | None = None,
    refresh: Collection[str] = (),
) -> ArenaResult:
    """Run the arena of `config` through its cache, rate every view and write the run folder.

    Inputs (suites, templates, prices, folders) are checked before the first call: a bad one raises
    `ConfigError` and nothing is written. A run stopped by `interrupt`, its budget or failed calls still rates and
    writes what it did; `ArenaResult.status` says how it ended. `simulator_url` points the models routed to the
    simulator at one already running (by default the run starts its own). The candidates named in `refresh` answer
    anew instead of from the cache (see `play_arena`).
    """
    check_refresh(config, refresh)
    inputs = load_inputs(config)
    run = await play_arena(inputs, progress, simulator_url=simulator_url, interrupt=interrupt, refresh=refresh)
    # The inputs' config: for a run of a votes file, it holds the candidates read from the file.
    views = rate_views(run.inputs.config, run.battles, run.answers)
    return ArenaResult(run=run, views=views, folder=write_report(run, views, config.source))


def run_arena(
    config: ArenaConfig,
    *,
    progress: Progress | None = None,
    interrupt: Interrupt | None = None,
    simulator_url: str | None = None,
    refresh: Collection[str] = (),
) -> ArenaResult:
    """`run_arena_async`, blocking until the run is done; inside a running event loop it runs on a worker thread."""
    job = run_arena_async(config, progress=progress, interrupt=interrupt, simulator_url=simulator_url, refresh=refresh)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(job)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-arena") as worker:
        return worker.submit(asyncio.run, job).result()
