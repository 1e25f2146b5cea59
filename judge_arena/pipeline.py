"""The whole job, as a library call: config → inputs → played arena → rated views → run folder; the answers alone
(`generate_answers`); and battles made elsewhere → rated views → run folder (`rate_battles`).

`run_arena_async` is the one implementation; `run_arena` is its blocking form, usable from a script and from inside
a running event loop (Jupyter), where it plays the arena on a worker thread with a loop of its own. Neither prints
anything or touches signal handlers: the command adds the progress display, Ctrl-C handling and exit codes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
from collections.abc import AsyncIterator, Collection, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import pandas as pd

from judge_arena.arena import ArenaRun, Inputs, Progress, Status, check_refresh, load_inputs, play_arena
from judge_arena.battle_files import BattlesInputError, load_battle_file
from judge_arena.config import ArenaConfig, RatingConfig, load_category_map
from judge_arena.interrupt import Interrupt
from judge_arena.report.files import RunTables, run_folder, run_tables, write_rated_battles, write_report
from judge_arena.report.html import encoded_run_report, write_html_report
from judge_arena.runs import RunFolder, load_run, write_run
from judge_arena.views import RatingJob, View, canary_warnings, rate_frame, rating_job
from judge_arena.worker import Worker, WorkerFailed, spare_cores

_T = TypeVar("_T")


@dataclass(frozen=True, repr=False)
class ArenaResult:
    """A finished or stopped run: what it played, its rated views and the run folder it wrote."""

    run: ArenaRun
    """Answers, battles, failures and call statistics, as records."""
    views: list[View]
    """Every judge's leaderboards (raw, plain, raw+sc, panel), with their notes."""
    folder: Path
    """The run folder written for this run (`load_run` reads it back)."""

    def __repr__(self) -> str:
        folder, views = str(self.folder), len(self.views)
        return f"ArenaResult(folder={folder!r}, status={self.status!r}, views={views}, run={self.run!r})"

    @property
    def status(self) -> Status:
        """How the run ended (`ArenaRun.status`); a canary that beat a real model is a failure when the config says
        to fail on that."""
        config = self.run.inputs.config
        canary_failed = config.canaries.fail_if_beats_real_model and bool(canary_warnings(config, self.views))
        return "failures" if self.run.status == "complete" and canary_failed else self.run.status

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
    async with _worker_for(inputs) as worker:
        run = await play_arena(
            inputs, progress, simulator_url=simulator_url, interrupt=interrupt, refresh=refresh, worker=worker
        )
        # Not when it is still busy with the answers of a stopped run.
        helped = worker if worker is not None and worker.idle else None
        views, tables = await _rated(run, helped)
        folder = await _reported(run, views, tables, helped)
    return ArenaResult(run=run, views=views, folder=folder)


WORKER_FROM_ANSWERS = 2_000
"""The answers a run must have for a second process (`worker.Worker`) to be worth starting: it takes a few tenths of
a second to start, and saves about a millisecond of the run's CPU per answer."""


@contextlib.asynccontextmanager
async def _worker_for(inputs: Inputs) -> AsyncIterator[Worker | None]:
    """A second process for the run, if it is large and the machine has a core to spare; ended after the block."""
    if len(inputs.config.candidates) * len(inputs.prompts) < WORKER_FROM_ANSWERS or spare_cores() < 1:
        yield None
        return
    worker = Worker()
    try:
        yield worker
    finally:
        await worker.aclose()


async def _rated(run: ArenaRun, worker: Worker | None) -> tuple[list[View], RunTables | None]:
    """`rate_views` of the run. With a second process, its style-controlled views (most of the rating's time) are
    fitted there, while this process fits the others and builds the run folder's tables (returned, else None)."""
    if worker is not None:
        worker.load("judge_arena.views")  # while the job is made ready here
    # The inputs' config: for a run of a votes file, it holds the candidates read from the file.
    job = rating_job(run.inputs.config, run.battles, run.answers)
    if worker is None:
        return job.finish(job.fit()), None
    styled = worker.call(RatingJob.fit, job.for_part("styled"), "styled")
    worker.load("judge_arena.report.html")  # once it is done, for `_reported`
    unstyled = job.fit("unstyled")
    tables = run_tables(run)
    try:
        return job.finish(job.merge(unstyled, await styled)), tables
    except WorkerFailed:
        return job.finish(job.merge(unstyled, job.fit("styled"))), tables


async def _reported(run: ArenaRun, views: list[View], tables: RunTables | None, worker: Worker | None) -> Path:
    """`write_report` of the run. With a second process, its report.html is rendered there while this process
    writes the tables."""
    if worker is None:
        return write_report(run, views, run.inputs.config.source, tables)
    config = run.inputs.config
    folder = run_folder(run, views, config.source, tables)
    rendering = worker.call(encoded_run_report, folder)
    written = write_run(folder, config.runner.output_dir, config.name)
    try:
        page = await rendering
    except WorkerFailed:
        page = None
    write_html_report(written, folder, page)
    return written


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
    return _blocking(job)


def generate_answers(
    config: ArenaConfig,
    *,
    progress: Progress | None = None,
    interrupt: Interrupt | None = None,
    simulator_url: str | None = None,
) -> ArenaRun:
    """Only the candidates' answers of `config`, made (or found) through its cache: no judge is called and no run
    folder is written. The run of `config` then finds them in the cache, and its estimate (`estimate.estimate_run`)
    knows which games of the plain view are the raw game again, as they are judged once.

    Raises ConfigError on a bad input before anything is called; a stop (`interrupt`, the budget) and failed calls
    are in the returned run (`ArenaRun.stats`, `failures`, `interrupted`).
    """
    inputs = load_inputs(config)
    unjudged = config.model_copy(
        update={"judges": [], "pairing": config.pairing.model_copy(update={"mode": "all-pairs"})}
    )
    job = play_arena(replace(inputs, config=unjudged), progress, simulator_url=simulator_url, interrupt=interrupt)
    return _blocking(job)


def _blocking(job: Coroutine[object, object, _T]) -> _T:
    """Run `job` to its end: on this thread, or inside a running event loop (Jupyter) on a worker thread with a loop
    of its own."""
    with _fewer_collections(), _arrow_memory_returned():
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(job)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-arena") as worker:
            return worker.submit(asyncio.run, job).result()


_RUN_GC_THRESHOLDS = (100_000, 50, 100)
"""The cyclic garbage collector's thresholds during a run (Python's defaults: 700, 10, 10)."""


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """The garbage collector's thresholds raised for the block, then set back.

    A run makes hundreds of thousands of records that live until its end (answers, games, battles, table rows). With
    the default thresholds a collection starts every 700 allocations, and every so often one walks all of them: a
    cached rerun of 100,000 items spent 1.8 s of its 13 s in 2,685 collections (13 of them full); with these, 0.35 s
    in 263 (2 full).
    What a run leaves as garbage in cycles (tasks, exceptions) is collected all the same, a little later.

    At the end, what the block left in the younger generations is moved to the oldest (`gc.freeze` then
    `gc.unfreeze`): with the default thresholds back, the next collection would otherwise walk every object the run
    made since its last one, millions of them (0.2 to 0.3 s at the end of that rerun), only to find them still alive.
    Not when the caller keeps objects frozen itself (a server about to fork): unfreezing would release them.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(*_RUN_GC_THRESHOLDS)
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.set_threshold(*thresholds)


@contextlib.contextmanager
def _arrow_memory_returned() -> Iterator[None]:
    """Arrow's memory (pandas' strings) from the system's allocator for the block, then the caller's pool again.

    pyarrow's default pool (mimalloc) keeps much of what is freed for later: the tables a run builds, frees and builds
    again after its play held 40 to 60 MB more at the run's peak (a cached rerun of 100,000 items: 440–455 MB against
    380–400 MB). Buffers are freed to the pool they came from, whichever is the default by then.
    """
    try:
        import pyarrow
    except ImportError:  # pandas keeps its strings as Python objects
        yield
        return
    pool = pyarrow.default_memory_pool()
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    try:
        yield
    finally:
        pyarrow.set_memory_pool(pool)


@dataclass(frozen=True)
class RatedBattles:
    """Battles from a file, rated as a run's: the table read, its views and the run folder written."""

    battles: pd.DataFrame
    """The battles as read (`battle_files.BattleFile.battles`)."""
    views: list[View]
    folder: Path


def rate_battles(
    path: Path,
    rating: RatingConfig | None = None,
    *,
    baseline: str | None = None,
    output_dir: Path = Path("runs"),
    name: str = "rated",
) -> RatedBattles:
    """Fit the boards a run gets (each view, style control, per category, turn and suite) from a battles file made
    elsewhere (`battle_files`), and write them as a run folder `<output_dir>/<name>-<time>`.

    Style control needs style features in the file (else the view is left out), and prompt resampling needs every
    battle's prompt (else single battles are resampled). `rating.category_map` is read as in a run.

    Raises:
        ValueError: The file cannot be used (`battle_files.BattlesInputError`, naming file, record and field),
            the baseline or anchor is not a model of the file, or the category map is bad (`ConfigError`).
    """
    rating = rating or RatingConfig()
    source = load_battle_file(path)
    battles = source.battles
    models = set(battles["model_a"]) | set(battles["model_b"])
    for option, model in (("baseline", baseline), ("anchor", rating.anchor)):
        if model is not None and model not in models:
            raise BattlesInputError(str(path), f"{option} '{model}' is not a model of the file", field="model_a")
    rating = rating.model_copy(
        update={
            "style_control": rating.style_control if source.styled else "none",
            "bootstrap_unit": rating.bootstrap_unit if source.unit == "prompt" else "battle",
        }
    )
    views = rate_frame(
        battles,
        rating,
        judges=list(dict.fromkeys(battles["judge"])),
        normalizations=list(dict.fromkeys(battles["normalization"])),
        baseline=baseline,
        category_map=load_category_map(rating.category_map) if rating.category_map else None,
    )
    summary = {
        "name": name,
        "source": str(path),
        "battles": len(battles),
        "candidates": sorted(models),
        "pairing": {"mode": "all-pairs", "baseline": baseline},
        "rating": rating.model_dump(mode="json"),
    }
    return RatedBattles(battles, views, write_rated_battles(battles, views, summary, output_dir, name))
