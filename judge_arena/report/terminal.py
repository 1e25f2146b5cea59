"""What a run shows in the terminal: live progress, then the leaderboards side by side and a summary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from judge_arena.agreement import judge_agreement
from judge_arena.arena import ArenaRun, Inputs, planned_calls, planned_games, served_changes
from judge_arena.config import SIMULATOR, ArenaConfig
from judge_arena.metrics import kendall_tau
from judge_arena.rating import MIN_PROMPTS, CategoryLeaderboard, LeaderboardRow, rank_changes
from judge_arena.report.agreement import agreement_table
from judge_arena.report.quality import read_judge_quality
from judge_arena.runner import CallStats
from judge_arena.runs import read_summary
from judge_arena.style import ModelStyle, style_by_model
from judge_arena.views import View, canary_warnings, identical_candidates

LOG_INTERVAL_S = 30.0
"""How often progress is printed as a plain line when the output is not a terminal."""

_LOG_WIDTH = 1000
"""The width tables are laid out in outside a terminal: wider than any table, which then takes its natural width."""


def _calls_text(stats: CallStats) -> str:
    retries = f", {stats.total_retries} retries" if stats.total_retries else ""
    refused = f", {stats.refused} refused by the budget" if stats.refused else ""
    recovered = f", {stats.recovered} recovered from an interrupted run" if stats.recovered else ""
    spend = f"; ${stats.spent_usd:.4f} of ${stats.max_usd:g} spent (estimated)" if stats.max_usd is not None else ""
    return (
        f"{stats.made} calls made, {stats.shared} shared within this run (identical requests), {stats.cached} from "
        f"the cache of earlier runs, {stats.failed} failed{recovered}{retries}{refused}{spend}"
    )


def budget_message(run: ArenaRun) -> str | None:
    """The line saying how far a run stopped by its budget got; None when the budget (if any) was not reached."""
    stats = run.stats
    if not stats.refused or stats.max_usd is None:
        return None
    done = stats.made + stats.served + stats.failed
    return (
        f"budget reached: ${stats.spent_usd:.4f} of ${stats.max_usd:g} spent (estimated); {done:,} of "
        f"{planned_calls(run.inputs):,} calls made (or from cache); rerun with a larger budget to resume"
    )


def interrupted_message(run: ArenaRun) -> str | None:
    """The line saying how far an interrupted run got; None when it ran to its end."""
    if run.interrupted is None:
        return None
    planned = planned_games(run.inputs)
    return f"interrupted: {len(run.battles):,} of {planned:,} games done; run the same command to resume"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class _RateColumn(ProgressColumn):
    """Items done per second (rich's estimate over the last half minute)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "–/s", style="progress.data.speed")


class _Bars(Progress):
    """rich's progress bars with the call counters on a line of their own, where they cannot squeeze the bars."""

    counters = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.counters:
            yield Text(self.counters, overflow="fold")


class LiveProgress:
    """Bars in a terminal: done/total, rate and time left per stage, the call counters below (an arena.Progress)."""

    def __init__(self, console: Console) -> None:
        self._progress = _Bars(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

    def start(self, stage: str, total: int) -> None:
        """A stage begins with `total` items."""
        self._tasks[stage] = self._progress.add_task(stage, total=total)

    def advance(self, stage: str) -> None:
        """One item of the stage is done."""
        self._progress.advance(self._tasks[stage])

    def calls(self, stats: CallStats) -> None:
        """The call counters changed."""
        self._progress.counters = _calls_text(stats)


class LogProgress:
    """Progress for a log (stdout not a terminal, as in CI): a plain line every `interval_s` seconds and at the end,
    with done/total per stage, rate, time left, failures and spend (an arena.Progress). `clock` is injectable."""

    def __init__(
        self, console: Console, *, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._console = console
        self._interval_s = interval_s
        self._clock = clock
        self._started = self._last = clock()
        self._totals: dict[str, int] = {}
        self._done: Counter[str] = Counter()
        self._stats: CallStats | None = None

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # Nothing started (the inputs were refused before the first stage): nothing to report.
        if self._totals:
            self._console.print(self.line(), soft_wrap=True, highlight=False)

    def start(self, stage: str, total: int) -> None:
        """A stage begins with `total` items."""
        self._totals[stage] = total

    def advance(self, stage: str) -> None:
        """One item of the stage is done."""
        self._done[stage] += 1
        self._tick()

    def calls(self, stats: CallStats) -> None:
        """The call counters changed."""
        self._stats = stats
        self._tick()

    def _tick(self) -> None:
        now = self._clock()
        if now - self._last >= self._interval_s:
            self._last = now
            self._console.print(self.line(), soft_wrap=True, highlight=False)

    def line(self) -> str:
        """The progress so far, as one plain line."""
        elapsed = self._clock() - self._started
        stages = ", ".join(f"{stage} {self._done[stage]:,}/{total:,}" for stage, total in self._totals.items())
        done, total = sum(self._done.values()), sum(self._totals.values())
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f"ETA {_duration((total - done) / rate)}" if rate > 0 else "ETA unknown"
        line = f"[{_duration(elapsed)}] {stages}; {rate:.1f}/s, {left}"
        stats = self._stats
        if stats is not None:
            line += f"; {stats.made:,} calls made, {stats.failed:,} failed"
            if stats.max_usd is not None:
                line += f", ${stats.spent_usd:.4f} of ${stats.max_usd:g} spent"
        return line


def progress_display(console: Console) -> LiveProgress | LogProgress:
    """Bars in a terminal; plain lines at a steady interval anywhere else (a CI log, a file)."""
    return LiveProgress(console) if console.is_terminal else LogProgress(console)


def _cell(row: LeaderboardRow | None) -> str:
    if row is None:
        return "–"
    cell = f"{row.rating:.0f} [dim]#{row.position}[/dim]\n[dim]{row.lower:.0f}–{row.upper:.0f}[/dim]"
    if row.win_rate is not None and row.win_rate_lower is not None and row.win_rate_upper is not None:
        cell += f"\n{row.win_rate:.0f}% [dim]{row.win_rate_lower:.0f}–{row.win_rate_upper:.0f}[/dim]"
    return cell


def _move(change: int) -> str:
    if change == 0:
        return "="
    # rank_changes gives later-view position minus first-view position: negative is a climb.
    return f"[green]↑{-change}[/green]" if change < 0 else f"[red]↓{change}[/red]"


def views_table(judge: str, views: list[View], candidates: list[str]) -> Table:
    """One judge's views side by side: rating with 95 % interval and position per view, and the moves."""
    rated = [v for v in views if v.board is not None]
    table = Table(title=f"judge: {judge}", title_justify="left", caption_justify="left")
    table.add_column("model", no_wrap=True)
    for view in rated:
        table.add_column(view.label, justify="right", no_wrap=True)
    first = rated[0] if rated else None
    for view in rated[1:]:
        table.add_column(f"Δ {view.label}", justify="center")
    rows = {v.label: {r.model: r for r in v.board.rows} for v in rated if v.board is not None}
    order = [r.model for r in first.board.rows] if first and first.board else candidates
    moves = {
        v.label: rank_changes(v.board, first.board)
        for v in rated[1:]
        if v.board is not None and first is not None and first.board is not None
    }
    caption = ["rating #place, 95 % interval below"]
    if first is not None and len(rated) > 1:
        caption.append(f"Δ: places gained (↑) or lost (↓) against {first.label}")
    if any(v.style for v in rated):
        caption.append("+sc: style-controlled (" + ", ".join(sorted({v.style for v in rated if v.style})) + ")")
    reference = next((v.board.reference for v in rated if v.board is not None and v.board.reference), None)
    if reference is not None:
        caption.append(f"under it, the win rate against {reference} with its interval")
    table.caption = "; ".join(caption)
    for model in order:
        cells = [model]
        cells += [_cell(rows[view.label].get(model)) for view in rated]
        cells += [_move(moves[v.label].get(model, 0)) for v in rated[1:]]
        table.add_row(*cells)
    return table


def style_table(rows: Sequence[ModelStyle]) -> Table:
    """Each candidate's answers and their mean style features per answer (what style control adjusts for)."""
    table = Table(
        title="answer style (mean per answer)",
        title_justify="left",
        caption="tokens: cl100k_base; headers, list items and bold spans outside code blocks (Arena-Hard-Auto's "
        "definitions); style.csv",
        caption_justify="left",
    )
    table.add_column("model", no_wrap=True)
    for column in ("answers", "tokens", "headers", "lists", "bold"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            escape(row.model),
            f"{row.answers:,}",
            f"{row.tokens:.1f}",
            f"{row.headers:.2f}",
            f"{row.lists:.2f}",
            f"{row.bold:.2f}",
        )
    return table


def unanswered_messages(inputs: Inputs) -> list[str]:
    """One line per answer-file candidate whose file does not answer every prompt: how many, and the first ids."""
    lines = []
    for name, missing in inputs.unanswered.items():
        shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
        total = len(inputs.prompts)
        lines.append(
            f"{name}: its answer file answers {total - len(missing):,} of {total:,} prompts; its games on the other "
            f"{len(missing):,} are not played (summary.json 'unanswered'): {shown}"
        )
    return lines


def _print_notes(console: Console, view: View) -> None:
    prefix = f"  {view.label}:"
    if view.unparsed:
        console.print(f"{prefix} {view.unparsed} of {view.games} verdicts unparsed (left out)")
    if view.note:
        console.print(f"{prefix} not rated: {escape(view.note)}")
    if view.board is not None and view.board.coefficients:
        console.print(f"{prefix} " + "; ".join(str(c) for c in view.board.coefficients) + " (log-odds per SD)")
    if view.self_judged and view.board is not None:
        console.print(f"{prefix} self-preference risk: judged by its own model family: {', '.join(view.self_judged)}")
        if view.board_without_self is not None:
            without = {row.model: row for row in view.board_without_self.rows}
            for row in view.board.rows:
                if row.model in view.self_judged and row.model in without:
                    other = without[row.model]
                    console.print(
                        f"{prefix}   {row.model}: {row.rating:.0f} ({row.lower:.0f}–{row.upper:.0f}) with same-family "
                        f"votes, {other.rating:.0f} ({other.lower:.0f}–{other.upper:.0f}) without"
                    )
        if view.note_without_self:
            console.print(f"{prefix}   not rated {escape(view.note_without_self)}")


def ground_truth(config: ArenaConfig, views: list[View]) -> dict[tuple[str, str], float] | None:
    """Kendall τ of each view's ratings against the simulator's latent qualities, when every candidate is simulated.

    This is the product's thesis made visible: how well each view recovers the true order of the models.
    """
    if any(candidate.api_base != SIMULATOR for candidate in config.candidates):
        return None
    from judge_arena.sim.models import CANDIDATES  # the ground truth, not the server: only when simulated

    quality = {}
    for candidate in config.candidates:
        profile = CANDIDATES.get(candidate.model.rsplit("/", 1)[-1])
        if profile is None:
            return None
        quality[candidate.name] = profile.quality
    return {
        (view.judge, view.label): kendall_tau(
            [row.rating for row in view.board.rows if row.model in quality],
            [quality[row.model] for row in view.board.rows if row.model in quality],
        )
        for view in views
        if view.board is not None
    }


def print_run(console: Console, run: ArenaRun, views: list[View], folder: Path) -> None:
    """Print every judge's leaderboards side by side, the notes, the call summary and the report folder.

    Outside a terminal (a CI log, a file) tables have their natural width and lines are not wrapped: a log is read
    in a window of any width, and a wrapped table splits numbers across lines.
    """
    if console.is_terminal:
        _print_run(console, run, views, folder)
        return
    width, soft_wrap = console.width, console.soft_wrap
    console.width, console.soft_wrap = _LOG_WIDTH, True
    try:
        _print_run(console, run, views, folder)
    finally:
        console.width, console.soft_wrap = width, soft_wrap


def print_generated(console: Console, run: ArenaRun) -> None:
    """What `judge-arena generate` did: the answers there are now, the calls and tokens, failures and any stop."""
    inputs = run.inputs
    planned = sum(c.called for c in inputs.config.candidates) * len(inputs.prompts)
    stats = run.stats
    tokens = stats.by_model.values()
    console.print(
        f"{len(run.answers)} of {planned} answers in the cache; {_calls_text(stats)}; "
        f"{sum(t.input_tokens for t in tokens):,} tokens in, {sum(t.output_tokens for t in tokens):,} out; "
        f"{run.elapsed_s:.1f} s"
    )
    for failure in run.failures[:5]:
        console.print(f"  [red]failed[/red] {failure.stage} {escape(failure.item)}: {escape(failure.reason)}")
    stopped = budget_message(run) or (
        f"interrupted: {len(run.answers)} of {planned} answers made; run the same command to resume"
        if run.interrupted is not None
        else None
    )
    if stopped:
        console.print(f"[yellow]{escape(stopped)}[/yellow]")


CATEGORY_COLUMNS = 10
"""The most categories shown side by side in the terminal; with more, categories.csv holds them."""


def categories_table(judge: str, view: View, candidates: list[str]) -> Table:
    """One view's per-category boards side by side: rating, place and 95 % interval (however wide) per category."""
    rated = {name: entry.board for name, entry in view.by_category.items() if entry.board is not None}
    table = Table(title=f"judge: {judge} · {view.label} per category", title_justify="left", caption_justify="left")
    table.caption = "rating #place, 95 % interval below: few prompts give wide intervals"
    table.add_column("model", no_wrap=True)
    for name in rated:
        table.add_column(f"{name}\n[dim]{view.by_category[name].battles} games[/dim]", justify="right", no_wrap=True)
    rows = {name: {row.model: row for row in board.rows} for name, board in rated.items()}
    order = [row.model for row in view.board.rows] if view.board is not None else candidates
    for model in order:
        cells = (rows[name].get(model) for name in rows)
        table.add_row(model, *(_cell(replace(row, win_rate=None)) if row else "–" for row in cells))
    return table


def print_views(console: Console, views: list[View], candidates: list[str], min_prompts: int) -> None:
    """Every judge's views side by side, their notes, the per-suite and per-turn boards, and the categories (side by
    side when there are few, else one line); `min_prompts` is the categories' threshold, for that line."""
    for judge in dict.fromkeys(v.judge for v in views):
        judge_views = [v for v in views if v.judge == judge]
        console.print(views_table(judge, judge_views, candidates))
        for view in judge_views:
            _print_notes(console, view)
        for kind, parts in (("suite", "by_suite"), ("turn", "by_turn")):
            boards_of: list[Mapping[str, CategoryLeaderboard]] = [getattr(view, parts) for view in judge_views]
            for part in dict.fromkeys(name for boards in boards_of for name in boards):
                part_views = [
                    replace(v, board=boards[part].board)
                    for v, boards in zip(judge_views, boards_of, strict=True)
                    if part in boards
                ]
                console.print(views_table(f"{judge} · {kind} {part}", part_views, candidates))
                for view, boards in zip(judge_views, boards_of, strict=True):
                    if part in boards and boards[part].board is None:
                        console.print(f"  {view.label}: not rated: {escape(boards[part].note or '')}")
        first = judge_views[0]
        if first.by_category:
            rated = sum(c.board is not None for c in first.by_category.values())
            if rated and len(first.by_category) <= CATEGORY_COLUMNS:
                console.print(categories_table(judge, first, candidates))
            noted = len(first.by_category) - rated
            line = f"  per category ({first.label}): {rated} of {len(first.by_category)} rated"
            if noted:
                line += f"; {noted} noted in categories.csv (a model in fewer than {min_prompts} prompts, or no fit)"
            console.print(line)


def _print_run(console: Console, run: ArenaRun, views: list[View], folder: Path) -> None:
    config = run.inputs.config
    candidates = [c.name for c in config.candidates]
    print_views(console, views, candidates, config.rating.category_min_prompts or MIN_PROMPTS)
    if run.answers:
        console.print(style_table(style_by_model(run.answers)))
    agreement = judge_agreement(run.battles, [j.name for j in config.judges], config.normalizations)
    if agreement:
        console.print(agreement_table(agreement))
    # Measured once, for the run folder's summary, which always records a run's judges' quality.
    quality = read_judge_quality(read_summary(folder))
    assert quality is not None
    consistency = [c for c in quality.consistency if c.pairs]
    if consistency:
        shares = ", ".join(
            f"{c.judge}/{c.normalization} {c.value:.2f} ({c.first} lean first, {c.second} second)" for c in consistency
        )
        console.print(f"Position consistency (same winner in both orders): {shares}")
    for judge, counts in quality.reasks.items():
        if counts.reasked:
            console.print(
                f"{judge} was re-asked for a verdict in {counts.reasked} of {counts.games} games "
                f"({counts.unparsed} still unparsed)"
            )
    cut = [a for a in run.answers if a.cut_turns]
    if cut:
        console.print(f"{len(cut)} of {len(run.answers)} answers stopped at max_tokens (finish reason 'length')")
    for first, second in identical_candidates(run.answers):
        console.print(
            f"[yellow]{first} and {second} gave the same answers to every prompt[/yellow]: what sets them apart "
            "(a system prompt, a parameter) had no effect; does the server's chat template drop system messages?"
        )
    for change in served_changes(run).values():
        console.print(f"[yellow]served model changed:[/yellow] {escape(change)}")
    truth = ground_truth(config, views)
    if truth:
        one_judge = len(config.judges) == 1
        scores = [f"{label if one_judge else f'{judge}/{label}'} {tau:.2f}" for (judge, label), tau in truth.items()]
        console.print(f"Agreement with the simulator's true quality order, Kendall τ: {', '.join(scores)}")
    stats = run.stats
    console.print(
        f"{len(run.inputs.prompts)} prompts × {len(candidates)} candidates, {len(run.battles)} judged games; "
        f"{_calls_text(stats)}; {run.elapsed_s:.1f} s"
    )
    if stats.made == stats.failed == stats.refused == stats.recovered == 0 and run.interrupted is None:
        console.print("[green]Everything came from the cache: no model call was made.[/green]")
    if stats.retries:
        console.print("retries: " + ", ".join(f"{kind} {n}" for kind, n in stats.retries.most_common()))
    if run.failures:
        console.print(f"[red]{len(run.failures)} failures[/red] (listed in failures.csv); first ones:")
        for failure in run.failures[:5]:
            console.print(f"  {failure.stage} {escape(failure.item)}: {escape(failure.reason)}")
    flagged = Counter(flag.split(":")[0] for battle in run.battles for flag in battle.flags if ":" in flag)
    if flagged:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(flagged.items()))
        console.print(f"[yellow]suspicious answers[/yellow] (flags on judged games; see battles.csv): {kinds}")
    for line in unanswered_messages(run.inputs):
        console.print(f"[yellow]{escape(line)}[/yellow]")
    for warning in canary_warnings(config, views):
        console.print(f"[red]canary:[/red] {escape(warning)}")
    for stopped in (budget_message(run), interrupted_message(run)):
        if stopped:
            console.print(f"[yellow]{escape(stopped)}[/yellow]")
    console.print(f"report: {folder}")
