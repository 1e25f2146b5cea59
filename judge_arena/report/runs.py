"""The list of past runs (`judge-arena runs`) in the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from judge_arena.runs import RunEntry

_STATUS = {"ok": "[green]ok[/green]", "failures": "[red]failures[/red]", "budget": "[yellow]budget[/yellow]"}


def print_runs(console: Console, entries: Sequence[RunEntry], root: Path) -> None:
    """One line per run, oldest first: id, name, time, models (`name@revision` for a candidate with one), status and
    cost."""
    if not entries:
        console.print(f"no runs under {escape(str(root))}")
        return
    table = Table(title=f"runs under {escape(str(root))}", title_justify="left")
    table.add_column("run id", no_wrap=True)
    for column in ("name", "time", "models", "status", "cost"):
        table.add_column(column, justify="right" if column == "cost" else "left")
    for entry in entries:
        table.add_row(
            escape(entry.id),
            escape(entry.name),
            # A manifest's time is ISO 8601 in UTC; shown like the folder names' times.
            escape(entry.time.replace("T", " ").removesuffix("+00:00")),
            escape(", ".join(f"{m}@{entry.revisions[m]}" if m in entry.revisions else m for m in entry.models)),
            _STATUS.get(entry.status, escape(entry.status)),
            "" if entry.cost_usd is None else f"${entry.cost_usd:.4f}",
        )
    console.print(table)
