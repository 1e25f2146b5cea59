"""How a diff of two runs reads: a terminal table per view, a short Markdown summary for a CI job's comment, and
JSON; the HTML page is `judge_arena.report.html.render_diff_report`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from itertools import groupby
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from judge_arena.diff import ALL, DiffResult, GateResult, RatingChange, Significance

_MARK = {"worse": "[red]worse[/red]", "better": "[green]better[/green]", "none": ""}
SHIFT_WORDS: dict[Significance, str] = {"worse": "smaller", "better": "larger", "none": ""}
"""How a significant change of the style shift (raw − plain) reads: the model gains less (or more) from formatting."""


def diff_data(diff: DiffResult, gates: Sequence[GateResult] = ()) -> dict[str, Any]:
    """The whole diff and the gates' outcomes as JSON-ready data (`judge-arena diff --json`)."""
    return {**diff.to_dict(), "gates": [asdict(gate) for gate in gates]}


def method_text(diff: DiffResult) -> str:
    """How the intervals were computed, in one sentence."""
    if diff.method == "paired":
        how = f"paired bootstrap over the prompts ({diff.shared_prompts} shared"
        how += (
            ""
            if diff.old_prompts == diff.new_prompts == diff.shared_prompts
            else (f"; {diff.old_prompts} in the old run, {diff.new_prompts} in the new")
        )
        how += ")"
    else:
        how = (
            f"independent bootstraps ({diff.old_prompts} and {diff.new_prompts} prompts, {diff.shared_prompts} shared)"
        )
    anchor = f"; {diff.anchor} held fixed" if diff.anchor else ""
    return f"95 % intervals of the change from {how}, {diff.rounds} rounds{anchor}"


def revisions_text(diff: DiffResult) -> str:
    """The candidates whose revision changed between the runs: ``name old → new`` (``none`` for no revision)."""
    return ", ".join(f"{r.model} {r.old or 'none'} → {r.new or 'none'}" for r in diff.revisions)


def signed(value: float) -> str:
    """Rating points rounded to a point and signed; 0 unsigned (a change of -0.3 is no change, not "-0")."""
    points = round(value)
    return f"{points:+d}" if points else "0"


def change_text(change: float, lower: float, upper: float) -> str:
    """A change and its 95 % interval, signed and rounded to a point."""
    return f"{signed(change)} [{signed(lower)}, {signed(upper)}]"


def position_text(change: RatingChange) -> str:
    """The model's position (plain order by rating) in the old run and the new, and how far it moved."""
    moved = change.old_position - change.new_position
    return f"{change.old_position} → {change.new_position}" + (f" ({moved:+d})" if moved else "")


def print_diff(console: Console, diff: DiffResult, gates: Sequence[GateResult] = ()) -> None:
    """The diff in the terminal: each view's overall board, the significant category changes, the style shift,
    notes and gates."""
    console.print(f"[bold]{escape(diff.old)} → {escape(diff.new)}[/bold]: {escape(method_text(diff))}")
    if diff.revisions:
        console.print(f"revisions: {escape(revisions_text(diff))}")
    overall = [c for c in diff.changes if c.category == ALL]
    for (judge, view), rows in groupby(overall, key=lambda c: (c.judge, c.view)):
        table = Table(title=f"{judge} / {view}", title_justify="left")
        for column in ("model", "old", "new", "change [95 % CI]", "position", "rank", ""):
            table.add_column(column, justify="left" if column in ("model", "") else "right")
        for change in rows:
            table.add_row(
                escape(change.model),
                f"{change.old:.0f}",
                f"{change.new:.0f}",
                change_text(change.change, change.lower, change.upper),
                position_text(change),
                f"{change.old_rank} → {change.new_rank}",
                _MARK[change.significance],
            )
        console.print(table)
    categories = [c for c in diff.changes if c.category != ALL]
    flagged = [c for c in categories if c.significance != "none"]
    if categories:
        table = Table(
            title=f"significant changes by category ({len(flagged)} of {len(categories)})", title_justify="left"
        )
        for column in ("judge / view", "category", "model", "change [95 % CI]", ""):
            table.add_column(column)
        for change in flagged:
            table.add_row(
                escape(f"{change.judge} / {change.view}"),
                escape(change.category),
                escape(change.model),
                change_text(change.change, change.lower, change.upper),
                _MARK[change.significance],
            )
        console.print(table)
    if diff.style_shifts:
        table = Table(title="style shift (raw − plain)", title_justify="left")
        for column in ("judge", "model", "old", "new", "change [95 % CI]", ""):
            table.add_column(column)
        for shift in diff.style_shifts:
            table.add_row(
                escape(shift.judge),
                escape(shift.model),
                signed(shift.old),
                signed(shift.new),
                change_text(shift.change, shift.lower, shift.upper),
                SHIFT_WORDS[shift.significance],
            )
        console.print(table)
    for note in diff.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    for gate in gates:
        status = "[green]pass[/green]" if gate.passed else "[red]FAIL[/red]"
        console.print(f"gate {escape(gate.gate)}: {status}")
        for failure in gate.failures:
            console.print(f"  {escape(failure)}")


def _inert(text: str) -> str:
    """Text for Markdown outside a code span with HTML's special characters as entities: a model, judge or category
    name reads as written in the rendered comment instead of becoming a tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def diff_markdown(diff: DiffResult, gates: Sequence[GateResult] = ()) -> str:
    """A short Markdown summary for a CI job's comment: what got significantly worse or better, in which view and
    category, and the gates. Names are written so that the comment shows them as text, never as markup."""
    lines = [f"### judge-arena diff: `{diff.old}` → `{diff.new}`", "", _inert(method_text(diff)) + ".", ""]
    if diff.revisions:
        lines += [f"Revisions: {_inert(revisions_text(diff))}.", ""]
    headings: tuple[tuple[Significance, str], ...] = (
        ("worse", "Significantly worse"),
        ("better", "Significantly better"),
    )
    for significance, title in headings:
        changes = diff.significant(significance)
        if not changes:
            lines += [f"**{title}:** nothing.", ""]
            continue
        lines.append(f"**{title}:**")
        for model, rows in groupby(sorted(changes, key=lambda c: c.model), key=lambda c: c.model):
            where = ", ".join(
                f"{c.judge}/{c.view}"
                + ("" if c.category == ALL else f" ({c.category})")
                + f" {change_text(c.change, c.lower, c.upper)}"
                for c in rows
            )
            lines.append(f"- **{_inert(model)}**: {_inert(where)}")
        lines.append("")
    if gates:
        lines += ["", "**Gates:**"]
        for gate in gates:
            lines.append(f"- {'✅' if gate.passed else '❌'} `{gate.gate}`")
            lines += [f"  - {_inert(failure)}" for failure in gate.failures]
    return "\n".join(lines).rstrip() + "\n"
