"""What `run --dry-run` and `validate` show of a run's estimate: a table per model, the total, what the figures
assume, the budget."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from judge_arena.estimate import RunEstimate


def _usd(cost: float | None) -> str:
    return "?" if cost is None else f"${cost:.4f}"


def print_estimate(console: Console, estimate: RunEstimate) -> None:
    """The calls to make (net of the cache), their estimated tokens and cost per model and in total (an upper bound
    marked ≤, and why), and whether the budget would stop the run."""
    table = Table(
        title="estimate of the calls to make, their tokens in and out (cached calls are free)", title_justify="left"
    )
    table.add_column("model", overflow="fold")  # a name is never cut short
    for header in ("role", "calls", "cached", "in", "out", "cost"):
        table.add_column(header, justify="left" if header == "role" else "right")
    for model in estimate.models:
        most = "≤ " if model.at_most else ""
        table.add_row(
            escape(model.name),
            model.role,
            f"{most}{model.calls}",
            str(model.cached),
            f"{most}{model.input_tokens:,}",
            f"{most}{model.output_tokens:,}",
            f"{most}{_usd(model.cost_usd)}" if model.calls else "-",
        )
    table.add_section()
    most = "≤ " if estimate.at_most else ""
    table.add_row(
        "total",
        "",
        f"{most}{estimate.calls}",
        str(estimate.cached),
        f"{most}{estimate.input_tokens:,}",
        f"{most}{estimate.output_tokens:,}",
        f"{most}{_usd(estimate.cost_usd)}",
    )
    console.print(table)
    if not estimate.calls:
        console.print("0 calls to make: everything comes from the cache.")
    for line in _assumptions(estimate):
        console.print(escape(line))
    unpriced = [m.name for m in estimate.models if m.calls and m.cost_usd is None]
    if unpriced:
        console.print(f"no price known for {escape(', '.join(unpriced))} (set its price to include it)")
    if estimate.max_usd is not None:
        stops = "[red]may stop the run[/red]" if estimate.at_most else "[red]would stop the run[/red]"
        verdict = stops if estimate.over_budget else "would not stop the run"
        console.print(f"budget ${estimate.max_usd:g}: {verdict} (estimated {most}{_usd(estimate.cost_usd)})")


def _assumptions(estimate: RunEstimate) -> list[str]:
    """What the judges' figures assume about games not known yet, and why some are upper bounds."""
    lines = []
    learned = [s for s in estimate.unchanged if s.share is not None]
    if learned:
        shares = ", ".join(
            f"{s.candidate} {s.unchanged}/{s.known}" + (f" (as {s.earlier})" if s.earlier else "") for s in learned
        )
        lines.append(
            "games identical to their raw game are judged once: for answers not known yet, expected from the share of "
            f"each candidate's answers in the cache that the normalization leaves unchanged ({shares})"
        )
    if estimate.undecided_games:
        lines.append(
            f"≤: {estimate.undecided_games:,} plain-view games are counted as calls of their own; those identical "
            "to their raw game (both answers unchanged by it) are judged once, and how many are is known once the "
            "answers are: `judge-arena generate CONFIG` makes the answers alone (nothing judged), after which this "
            "estimate counts them as the run will"
        )
    if estimate.refreshed:
        lines.append(
            f"answers made anew (--refresh): {', '.join(estimate.refreshed)}; their games are priced as calls to make "
            "(a game whose answers come out unchanged reuses its cached verdict)"
        )
    if estimate.adaptive is not None:
        cap = estimate.adaptive
        lines.append(
            f"≤: adaptive pairing is priced as all pairs, capped at the {cap.items:,} of their {cap.all_items:,} "
            "(pair, prompt) items it may judge (pairing.max_share, max_judge_calls); it stops sooner once the "
            "ranking is settled"
        )
    return lines
