"""What `judge-arena agreement` shows in the terminal: the agreement table, each comparison's confusion matrix,
the agreement per category, and the judges' position consistency."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from judge_arena.agreement import Agreement, Consistency, GroupAgreement

_NONE = "–"
_HEADERS = ("A wins", "tie", "B wins")


def _share(value: float) -> str:
    return _NONE if math.isnan(value) else f"{value:.3f}"


def _turn(turn: int | None) -> str:
    return "all" if turn is None else str(turn)


def _agreement_cells(result: Agreement) -> list[str]:
    return [_share(result.value), f"{result.pairs:,}", _share(result.kappa)]


def agreement_table(rows: Sequence[GroupAgreement]) -> Table:
    """One row per comparison: agreement, pairs of votes compared and Cohen's kappa, with and without ties."""
    return _agreement_table("agreement between voter groups", [(None, rows)])


def category_agreement_table(by_category: Mapping[str, Sequence[GroupAgreement]]) -> Table:
    """`agreement_table` per category, a category column first."""
    return _agreement_table("agreement per category", list(by_category.items()))


def _agreement_table(title: str, grouped: Sequence[tuple[str | None, Sequence[GroupAgreement]]]) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        caption="n: pairs of votes compared (a group against itself: pairs of votes by different voters)",
        caption_justify="left",
    )
    if any(category is not None for category, _ in grouped):
        table.add_column("category", no_wrap=True)
    table.add_column("first", no_wrap=True)
    table.add_column("second", no_wrap=True)
    table.add_column("turn", justify="right")
    for ties in ("with ties", "without ties"):
        table.add_column(f"{ties}\nagreement", justify="right")
        table.add_column("\nn", justify="right")
        table.add_column("\nkappa", justify="right")
    for category, rows in grouped:
        for row in rows:
            table.add_row(
                *(() if category is None else (escape(category),)),
                escape(row.first),
                escape(row.second),
                _turn(row.turn),
                *_agreement_cells(row.with_ties),
                *_agreement_cells(row.without_ties),
            )
    return table


def confusion_table(row: GroupAgreement) -> Table:
    """The comparison's confusion matrix with ties: rows the first group's vote, columns the second's."""
    turn = "" if row.turn is None else f", turn {row.turn}"
    title = f"{row.first} (rows) vs {row.second} (columns){turn}"
    # A title is wrapped to the table's width, and four narrow columns would break this one over lines.
    table = Table(title=escape(title), title_justify="left", min_width=len(title))
    table.add_column("")
    for header in _HEADERS:
        table.add_column(header, justify="right")
    for header, cells in zip(_HEADERS, row.with_ties.confusion, strict=True):
        table.add_row(header, *(f"{cell:g}" for cell in cells))
    return table


def consistency_table(rows: Sequence[Consistency]) -> Table:
    """Each judge's position consistency per normalization, over all categories and per category."""
    table = Table(
        title="position consistency",
        title_justify="left",
        caption=(
            "consistent: share of pairs judged in both orders with the same winner; first/second: inconsistent "
            "pairs leaning to that position; unparsed and one-order pairs are left out of the share"
        ),
        caption_justify="left",
    )
    for column in ("judge", "normalization", "category"):
        table.add_column(column, no_wrap=True)
    for column in ("pairs", "consistent", "first", "second", "unparsed", "one order"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            escape(row.judge),
            escape(row.normalization),
            "all" if row.category is None else escape(row.category),
            f"{row.pairs:,}",
            _share(row.value),
            f"{row.first:,}",
            f"{row.second:,}",
            f"{row.unparsed:,}",
            f"{row.unpaired:,}",
        )
    return table


def print_agreement(
    console: Console,
    rows: Sequence[GroupAgreement],
    consistency: Sequence[Consistency] = (),
    by_category: Mapping[str, Sequence[GroupAgreement]] | None = None,
) -> None:
    """Print the agreement table, then each comparison's confusion matrix, the agreement per category (when there
    are several categories), then position consistency (if any)."""
    console.print(agreement_table(rows))
    if rows:
        console.print("A, B: the pair's models in name order (A sorts first).")
    for row in rows:
        console.print(confusion_table(row))
    if by_category is not None and len(by_category) > 1:
        console.print(category_agreement_table(by_category))
    if consistency:
        console.print(consistency_table(consistency))
