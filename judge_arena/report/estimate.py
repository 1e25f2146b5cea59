"""What `run --dry-run` and `validate` show of a run's estimate: a table per model, the total, the budget."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from judge_arena.estimate import RunEstimate


def _usd(cost: float | None) -> str:
    return "?" if cost is None else f"${cost:.4f}"


def print_estimate(console: Console, estimate: RunEstimate) -> None:
    """The calls to make (net of the cache), their estimated tokens and cost per model and in total, and whether the
    budget would stop the run."""
    table = Table(
        title="estimate of the calls to make, their tokens in and out (cached calls are free)", title_justify="left"
    )
    table.add_column("model", overflow="fold")  # a name is never cut short
    for header in ("role", "calls", "cached", "in", "out", "cost"):
        table.add_column(header, justify="left" if header == "role" else "right")
    for model in estimate.models:
        table.add_row(
            escape(model.name),
            model.role,
            str(model.calls),
            str(model.cached),
            f"{model.input_tokens:,}",
            f"{model.output_tokens:,}",
            _usd(model.cost_usd) if model.calls else "-",
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        str(estimate.calls),
        str(estimate.cached),
        f"{estimate.input_tokens:,}",
        f"{estimate.output_tokens:,}",
        _usd(estimate.cost_usd),
    )
    console.print(table)
    if not estimate.calls:
        console.print("0 calls to make: everything comes from the cache.")
    unpriced = [m.name for m in estimate.models if m.calls and m.cost_usd is None]
    if unpriced:
        console.print(f"no price known for {escape(', '.join(unpriced))} (set its price to include it)")
    if estimate.max_usd is not None:
        verdict = "[red]would stop the run[/red]" if estimate.over_budget else "would not stop the run"
        console.print(f"budget ${estimate.max_usd:g}: {verdict} (estimated {_usd(estimate.cost_usd)})")
