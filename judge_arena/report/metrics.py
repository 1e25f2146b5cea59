"""What `judge-arena metrics` shows in the terminal: one table of metrics, then the models left out."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from judge_arena.metrics import Comparison, PairShare, Separability

_NONE = "–"


def _number(value: float) -> str:
    return _NONE if math.isnan(value) else f"{value:.4f}"


def _percent(value: float) -> str:
    return _NONE if math.isnan(value) else f"{100.0 * value:.2f} %"


def _separability_detail(shared: Separability, full: Separability) -> str:
    detail = f"{shared.overlapping:,} of {shared.pairs:,} pairs overlap"
    if full.models != shared.models:
        detail += f"; all {full.models} models: {_percent(full.value)} ({full.overlapping:,} of {full.pairs:,})"
    return detail


def _credit(share: PairShare) -> str:
    return f"{share.credit:g}"


def metrics_table(result: Comparison) -> Table:
    """The comparison's metrics, one per row, each with the counts behind it."""
    table = Table(title=f"{len(result.models)} shared models", title_justify="left")
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("detail")
    table.add_row(
        "separability (evaluated)",
        _percent(result.evaluated_separability.value),
        _separability_detail(result.evaluated_separability, result.evaluated_separability_all),
    )
    table.add_row(
        "separability (reference)",
        _percent(result.reference_separability.value),
        _separability_detail(result.reference_separability, result.reference_separability_all),
    )
    strict = result.strict_agreement
    table.add_row(
        "strict agreement",
        _number(strict.value),
        f"{_credit(strict)} of {strict.pairs:,} pairs ordered the same way",
    )
    confident = result.agreement_with_confidence
    order = "(lower, upper) intervals" if result.agreement_order == "intervals" else "point estimates"
    table.add_row(
        "agreement with confidence",
        _number(confident.value),
        f"{_credit(confident)} points over the {confident.pairs:,} pairs separated in the reference "
        f"(1 same order, 0.5 overlapping, 0 reversed; ordered by {order})",
    )
    table.add_row("Spearman", _number(result.spearman), "rank correlation of the point estimates")
    table.add_row("Kendall tau-b", _number(result.kendall), "")
    forecast = result.forecast
    forecast_detail = f"P(a < b) from normal approximations, over {forecast.pairs:,} pairs (lower is better)"
    table.add_row("Brier score", _number(forecast.brier), forecast_detail)
    table.add_row("log loss", _number(forecast.log_loss), "")
    return table


def print_metrics(console: Console, result: Comparison) -> None:
    """Print which leaderboards were compared, the metrics table and the models that had no counterpart."""
    # Soft wrap: rich would otherwise move a long path whole to the next line, away from its label.
    console.print(f"evaluated: {escape(result.evaluated)}", soft_wrap=True)
    console.print(f"reference: {escape(result.reference)}", soft_wrap=True)
    if result.map_reversed:
        console.print("model map: read as evaluated → reference names (its names match that way round)")
    console.print(metrics_table(result))
    for side, models in (("evaluated", result.only_evaluated), ("reference", result.only_reference)):
        if models:
            names = escape(", ".join(models))
            console.print(f"[dim]only in the {side} leaderboard ({len(models)}): {names}[/dim]")
