"""report.html: a run folder as one self-contained page, readable offline and attachable to a CI job or an email;
and the diff of two runs as a page of the same shape (`judge-arena diff OLD NEW --html FILE`).

The run's page is rendered from the folder as `load_run` reads it, so it can be rebuilt at any time (`judge-arena
report RUN`). Jinja2 renders it with autoescaping on, so every text that came from a model, a suite or a config is
escaped in text and attributes alike. The plots are SVG drawn here, in Python, and inlined: no plotting library,
no script and no network are needed to see them. The battle browser is a small inline script over the games
embedded as one JSON block (texts de-duplicated, strings escaped so that nothing inside can end the block); it
writes untrusted text with `textContent` only, never as markup. The diff's page has no script at all (its
Content-Security-Policy allows none); the diff itself is embedded as JSON the same way.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from judge_arena.agreement import Consistency, position_consistency
from judge_arena.diff import ALL, DiffResult, GateResult, RatingChange, StyleShift, view_order
from judge_arena.records import Battle
from judge_arena.report.diff import SHIFT_WORDS, change_text, diff_data, method_text, position_text, signed
from judge_arena.report.quality import read_judge_quality
from judge_arena.runs import NO_FLAGS, RunFolder, load_run
from judge_arena.style import NORMALIZATIONS, normalize

REPORT_FILE = "report.html"
"""The page's name in a run folder."""

_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
_JSON_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


# ---------------------------------------------------------------------------------------------------- SVG shapes


@dataclass(frozen=True)
class Shape:
    """One SVG element: its tag, attributes (rendered escaped), text content and tooltip."""

    tag: str
    attrs: tuple[tuple[str, str], ...]
    text: str = ""
    tooltip: str = ""


@dataclass(frozen=True)
class Plot:
    """An SVG image: its size, its shapes in drawing order and its accessible name."""

    width: float
    height: float
    label: str
    shapes: tuple[Shape, ...]
    kind: str = "plot"


def _shape(tag: str, *, text: str = "", tooltip: str = "", **attrs: object) -> Shape:
    def value(v: object) -> str:
        return f"{v:.1f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)

    names = {"class_": "class"}
    return Shape(tag, tuple((names.get(k, k.replace("_", "-")), value(v)) for k, v in attrs.items()), text, tooltip)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


@dataclass(frozen=True)
class _Scale:
    low: float
    high: float
    left: float
    right: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return self.left + (value - self.low) / span * (self.right - self.left)


def _padded(values: Iterable[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.06 or 10.0
    return low - pad, high + pad


_CHAR_WIDTH = 7.5
"""Pixels a character of a bold 12 px sans-serif label takes at most on average (the plots' `name` text): labels
are laid out before any browser measures them, so a column is sized by this estimate."""


def _label_room(texts: Iterable[str], minimum: float, margin: float = 10.0) -> float:
    """The width a column of `texts` needs: at least `minimum`, else the longest text's estimate plus `margin`."""
    return max(minimum, max((_CHAR_WIDTH * len(text) + margin for text in texts), default=0.0))


def forest_plot(
    rows: Sequence[tuple[str, float, float, float]],
    label: str,
    *,
    colors: Mapping[str, str],
    domain: tuple[float, float] | None = None,
    reference: float | None = None,
    width: float = 560,
    label_width: float = 150,
    row_height: float = 22,
) -> Plot:
    """Points with 95 % intervals, one row per (name, value, lower, upper), on a shared axis below; the axis spans
    `domain`, or else the rows and the `reference` line (e.g. a zero line)."""
    low, high = domain or _padded(
        [*(v for _, *bounds in rows for v in bounds), *([] if reference is None else [reference])]
    )
    # A long name widens the plot rather than running off its left edge.
    wider = _label_room((name for name, *_ in rows), label_width) - label_width
    label_width, width = label_width + wider, width + wider
    scale = _Scale(low, high, label_width + 8, width - 12)
    top, bottom = 8.0, 8 + row_height * len(rows)
    shapes: list[Shape] = []
    ticks = _ticks(low, high)
    for tick in ticks:
        x = scale(tick)
        shapes.append(_shape("line", x1=x, x2=x, y1=top, y2=bottom, class_="grid"))
        shapes.append(_shape("text", text=f"{tick:g}", x=x, y=bottom + 14, text_anchor="middle", class_="tick"))
    if reference is not None and low < reference < high:
        x = scale(reference)
        shapes.append(_shape("line", x1=x, x2=x, y1=top, y2=bottom, class_="reference"))
    for i, (name, value, lower, upper) in enumerate(rows):
        y = top + row_height * (i + 0.5)
        color = colors.get(name, "#555")
        tip = f"{name}: {value:.1f} [{lower:.1f}, {upper:.1f}]"
        shapes.append(_shape("text", text=name, x=label_width, y=y + 4, text_anchor="end", class_="name"))
        shapes.append(
            _shape("line", tooltip=tip, x1=scale(lower), x2=scale(upper), y1=y, y2=y, stroke=color, class_="ci")
        )
        shapes.append(_shape("circle", tooltip=tip, cx=scale(value), cy=y, r=4.5, fill=color, class_="point"))
    return Plot(width, bottom + 22, label, tuple(shapes), "forest")


def _spread(positions: list[float], gap: float) -> list[float]:
    """The positions moved apart, keeping their order, so that neighbours are at least `gap` apart."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    placed = list(positions)
    for before, after in itertools.pairwise(order):
        placed[after] = max(placed[after], placed[before] + gap)
    return placed


def slope_chart(
    ratings: Mapping[str, Mapping[str, float]], views: Sequence[str], label: str, *, colors: Mapping[str, str]
) -> Plot:
    """Each model's rating in each view (columns, left to right) joined by a line; a line falling from raw to
    plain marks a model whose rating owes something to formatting."""
    label_width = _label_room((f"{model} 0000" for model in ratings), 175.0, margin=16.0)
    width, height = 660.0 + 2 * (label_width - 175.0), 320.0
    values = [r for per_view in ratings.values() for r in per_view.values()]
    low, high = _padded(values)
    y_of = _Scale(high, low, 24, height - 30)
    x_of = {view: label_width + i * (width - 2 * label_width) / max(len(views) - 1, 1) for i, view in enumerate(views)}
    shapes: list[Shape] = []
    for view, x in x_of.items():
        shapes.append(_shape("line", x1=x, x2=x, y1=20, y2=height - 26, class_="grid"))
        shapes.append(_shape("text", text=view, x=x, y=14, text_anchor="middle", class_="axis-name"))
    models = list(ratings)
    for view, x, anchor, dx in ((views[0], x_of[views[0]], "end", -8), (views[-1], x_of[views[-1]], "start", 8)):
        present = [m for m in models if view in ratings[m]]
        placed = _spread([y_of(ratings[m][view]) for m in present], 13)
        for model, y in zip(present, placed, strict=True):
            text = f"{model} {ratings[model][view]:.0f}"
            shapes.append(_shape("text", text=text, x=x + dx, y=y + 4, text_anchor=anchor, class_="name"))
    for model in models:
        points = [(x_of[v], y_of(ratings[model][v])) for v in views if v in ratings[model]]
        shift = ratings[model].get("raw", math.nan) - ratings[model].get("plain", math.nan)
        tip = f"{model}: " + ", ".join(f"{v} {ratings[model][v]:.0f}" for v in views if v in ratings[model])
        kind = "gains" if shift > 0 else "loses" if shift < 0 else "flat"
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        shapes.append(_shape("path", tooltip=tip, d=path, stroke=colors.get(model, "#555"), class_=f"slope {kind}"))
        for x, y in points:
            shapes.append(_shape("circle", tooltip=tip, cx=x, cy=y, r=3.5, fill=colors.get(model, "#555")))
    return Plot(width, height, label, tuple(shapes), "slope")


def heatmap(models: Sequence[str], rates: Mapping[tuple[str, str], tuple[float, int]], label: str) -> Plot:
    """The share of games each row model won against each column model (ties count half), coloured from
    blue (lost every game) through white to red (won every game)."""
    cell = 46.0
    longest = max((_CHAR_WIDTH * len(model) for model in models), default=0.0)
    label_width = max(150.0, longest + 16)
    # Column names are written at −40°: they rise sin 40° and reach cos 40° of their length to the right.
    top = max(110.0, 0.643 * longest + 16)
    width = label_width + cell * len(models) + max(60.0, 0.766 * longest - cell / 2 + 12)
    height = top + cell * len(models) + 10
    shapes: list[Shape] = []
    for j, model in enumerate(models):
        x = label_width + cell * (j + 0.5)
        shapes.append(
            _shape("text", text=model, x=x, y=top - 6, transform=f"rotate(-40 {x:.1f} {top - 6:.1f})", class_="name")
        )
    for i, row in enumerate(models):
        y = top + cell * i
        shapes.append(_shape("text", text=row, x=label_width - 6, y=y + cell / 2 + 4, text_anchor="end", class_="name"))
        for j, column in enumerate(models):
            x = label_width + cell * j
            if (row, column) not in rates:
                shapes.append(_shape("rect", x=x, y=y, width=cell - 2, height=cell - 2, class_="empty-cell"))
                continue
            rate, games = rates[(row, column)]
            tip = f"{row} vs {column}: won {rate:.0%} of {games} games"
            shapes.append(_shape("rect", tooltip=tip, x=x, y=y, width=cell - 2, height=cell - 2, fill=_diverging(rate)))
            shapes.append(
                _shape("text", text=f"{rate * 100:.0f}", x=x + cell / 2 - 1, y=y + cell / 2 + 4, class_="cell-value")
            )
    return Plot(width, height, label, tuple(shapes), "heatmap")


def _diverging(rate: float) -> str:
    """White at 0.5, blue toward 0, red toward 1."""
    t = min(1.0, abs(rate - 0.5) * 2)
    end = (214, 96, 77) if rate >= 0.5 else (67, 147, 195)
    r, g, b = (round(255 + (c - 255) * t) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


# ---------------------------------------------------------------------------------------------------- page data


@dataclass(frozen=True)
class BoardCard:
    """One view's leaderboard: the table rows, its forest plot and its note."""

    judge: str
    view: str
    rows: list[dict[str, Any]]
    plot: Plot | None
    reference: str
    note: str = ""


@dataclass(frozen=True)
class HealthRow:
    """One judge's health on one normalization."""

    judge: str
    normalization: str
    games: int
    unparsed: int
    reasked: int
    flagged: Mapping[str, int]
    consistency: Consistency | None


@dataclass(frozen=True)
class Page:
    """Everything the template shows."""

    title: str
    facts: list[tuple[str, str]]
    boards: dict[str, list[BoardCard]]
    slopes: list[tuple[str, Plot]]
    coefficients: list[tuple[str, Plot]]
    heatmaps: list[tuple[str, Plot]]
    categories: dict[str, list[tuple[str, Plot | None, str]]]
    health: list[HealthRow]
    notes: list[str]
    failures: list[dict[str, str]]
    data: Markup
    games: int
    palette: dict[str, str]


def _model_colors(run: RunFolder) -> dict[str, str]:
    columns = (run.boards["model"].dropna(), run.battles["model_a"], run.battles["model_b"])
    ordered = list(dict.fromkeys(model for column in columns for model in column.unique().tolist()))
    return {model: _PALETTE[i % len(_PALETTE)] for i, model in enumerate(ordered)}


def _boards(run: RunFolder, colors: Mapping[str, str]) -> dict[str, list[BoardCard]]:
    cards: dict[str, list[BoardCard]] = defaultdict(list)
    reference = str(run.summary.get("pairing", {}).get("baseline") or "")
    for (judge, view), rows in run.boards.groupby(["judge", "view"], sort=False):
        rows = rows.sort_values("position")
        records = [_board_row(row) for row in rows.to_dict(orient="records")]
        plot_rows = [(r["model"], r["rating"], r["lower"], r["upper"]) for r in records]
        plot = forest_plot(plot_rows, f"{judge} / {view}: ratings with 95 % intervals", colors=colors)
        cards[str(judge)].append(BoardCard(str(judge), str(view), records, plot, reference))
    for entry in run.summary.get("views", []):
        if entry.get("note") and not any(c.view == entry["view"] for c in cards.get(entry["judge"], [])):
            cards[entry["judge"]].append(BoardCard(entry["judge"], entry["view"], [], None, reference, entry["note"]))
    return dict(cards)


def _board_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    def number(value: Any) -> float | None:
        return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value

    return {str(key): number(value) if not isinstance(value, str) else value for key, value in row.items()}


def _view_ratings(run: RunFolder, judge: str) -> dict[str, dict[str, float]]:
    ratings: dict[str, dict[str, float]] = defaultdict(dict)
    rows = run.boards[run.boards["judge"] == judge]
    for model, view, rating in zip(rows["model"], rows["view"], rows["rating"], strict=True):
        ratings[str(model)][str(view)] = float(rating)
    return dict(ratings)


def _style(run: RunFolder, colors: Mapping[str, str]) -> tuple[list[tuple[str, Plot]], list[tuple[str, Plot]]]:
    slopes, coefficients = [], []
    views_order = list(dict.fromkeys(run.boards["view"]))
    for judge in dict.fromkeys(run.boards["judge"]):
        ratings = _view_ratings(run, str(judge))
        views = [v for v in views_order if any(v in r for r in ratings.values())]
        if len(views) > 1:
            title = f"{judge}: rating by view"
            slopes.append((str(judge), slope_chart(ratings, views, title, colors=colors)))
    for entry in run.summary.get("views", []):
        rows = [(c["name"], c["value"], c["lower"], c["upper"]) for c in entry.get("coefficients", [])]
        if rows:
            name = f"{entry['judge']} / {entry['view']}"
            title = f"{name}: style coefficients (log-odds per standard deviation)"
            coefficients.append((name, forest_plot(rows, title, colors={}, reference=0.0)))
    return slopes, coefficients


def _decided(battles: pd.DataFrame) -> pd.DataFrame:
    return battles[battles["winner"].notna()]


def _heatmaps(run: RunFolder) -> list[tuple[str, Plot]]:
    plots = []
    order = list(dict.fromkeys(run.boards.sort_values("position")["model"].dropna()))
    decided = _decided(run.battles)
    for (judge, normalization), games in decided.groupby(["judge", "normalization"], sort=False):
        score = games["winner"].map({"model_a": 1.0, "model_b": 0.0}).fillna(0.5)  # a tie counts half
        # Each game from both sides: the row model's score against the column model.
        sides = pd.DataFrame(
            {
                "row": pd.concat([games["model_a"], games["model_b"]]),
                "column": pd.concat([games["model_b"], games["model_a"]]),
                "score": pd.concat([score, 1 - score]),
            }
        )
        won = sides.groupby(["row", "column"])["score"].agg(["sum", "size"])
        # Scores are halves, so their sum is exact in any order.
        rates = {
            (str(row), str(column)): (float(total) / int(size), int(size))
            for (row, column), total, size in zip(won.index, won["sum"], won["size"], strict=True)
        }
        rows = {row for row, _ in rates}
        models = [m for m in order if m in rows]
        models += sorted(rows - set(models))
        name = f"{judge} / {normalization}"
        plots.append((name, heatmap(models, rates, f"{name}: share of games the row model won against the column")))
    return plots


def _categories(run: RunFolder, colors: Mapping[str, str]) -> dict[str, list[tuple[str, Plot | None, str]]]:
    out: dict[str, list[tuple[str, Plot | None, str]]] = {}
    categories = run.categories
    if categories.empty:
        return out
    fitted = categories[categories["note"].isna()]
    domain = _padded([*fitted["lower"].dropna(), *fitted["upper"].dropna()]) if not fitted.empty else None
    for (judge, view), rows in categories.groupby(["judge", "view"], sort=False):
        multiples: list[tuple[str, Plot | None, str]] = []
        for category, entry in rows.groupby("category", sort=True):
            note = entry["note"].dropna()
            title = f"{category} ({int(entry['category_battles'].iloc[0])} games)"
            if not note.empty:
                multiples.append((title, None, str(note.iloc[0])))
                continue
            entry = entry.sort_values("position")
            plot_rows = [
                (str(m), float(r), float(lo), float(hi))
                for m, r, lo, hi in zip(entry["model"], entry["rating"], entry["lower"], entry["upper"], strict=True)
            ]
            plot = forest_plot(plot_rows, f"{judge} / {view} / {category}", colors=colors, domain=domain, width=380)
            multiples.append((title, plot, ""))
        out[f"{judge} / {view}"] = sorted(multiples, key=lambda m: m[1] is None)
    return out


def _column(frame: pd.DataFrame, column: str) -> list[Any]:
    """The column's values as plain Python objects, None where missing (fast on Arrow-backed text)."""
    return frame[column].astype(object).where(frame[column].notna(), None).tolist()


def _values(frame: pd.DataFrame, *columns: str) -> Iterable[tuple[Any, ...]]:
    """The columns' values row by row as plain Python objects, None where missing."""
    return zip(*(_column(frame, c) for c in columns), strict=True)


def _battles_of(frame: pd.DataFrame) -> list[Battle]:
    columns = ("prompt_id", "category", "judge", "normalization", "model_a", "model_b", "label", "winner")
    turns = frame["turn"].fillna(1).astype(int).tolist()
    return [
        Battle(p, c, j, n, a, b, label=label, winner=winner, turn=turn)
        for (p, c, j, n, a, b, label, winner), turn in zip(_values(frame, *columns), turns, strict=True)
    ]


def _consistency(run: RunFolder) -> list[Consistency]:
    """Each judge's position consistency per normalization over all categories: as a run's summary records it, else
    (battles rated from a file record none) measured from battles.csv."""
    recorded = read_judge_quality(run.summary)
    if recorded is not None:
        return recorded.consistency
    try:
        return [c for c in position_consistency(_battles_of(run.battles)) if c.category is None]
    except ValueError:
        # Votes rated from a file (`judge-arena rate`) may hold one game several times, one per voter: a position
        # consistency would mean nothing there.
        return []


def _health(run: RunFolder) -> list[HealthRow]:
    consistency = {(c.judge, c.normalization): c for c in _consistency(run)}
    rows = []
    for (judge, normalization), games in run.battles.groupby(["judge", "normalization"], sort=False):
        flags: Counter[str] = Counter(
            flag.split(":")[0] for value in games["defence_flags"].tolist() for flag in value.split(";")
        )
        reasked = flags.pop("reasked", 0)
        for verdict_flag in (NO_FLAGS, "unparsed"):
            flags.pop(verdict_flag, None)
        rows.append(
            HealthRow(
                judge=str(judge),
                normalization=str(normalization),
                games=len(games),
                unparsed=int(games["label"].isna().sum()),
                reasked=reasked,
                flagged=dict(sorted(flags.items())),
                consistency=consistency.get((str(judge), str(normalization))),
            )
        )
    return rows


def _notes(summary: Mapping[str, Any]) -> list[str]:
    notes = [f"canary: {problem}" for problem in summary.get("canary_problems", [])]
    for entry in summary.get("views", []):
        for key in ("note", "note_without_self"):
            if entry.get(key):
                notes.append(f"{entry['judge']}/{entry['view']}: {entry[key]}")
    budget = summary.get("budget")
    if budget and budget.get("reached"):
        notes.append(f"the budget of ${budget['max_usd']} stopped the run ({budget['refused_calls']} calls refused)")
    return notes


def _facts(run: RunFolder) -> list[tuple[str, str]]:
    summary = run.summary
    calls = summary.get("calls", {})
    facts = [
        ("prompts", str(summary.get("prompts", len(run.prompts)))),
        ("candidates", ", ".join(summary.get("candidates", []))),
        ("judges", ", ".join(summary.get("judges", {}))),
        ("views", ", ".join(dict.fromkeys(run.boards["view"]))),
        ("games judged", str(len(run.battles))),
        ("calls", f"{calls.get('made', 0)} made, {calls.get('cached', 0)} cached, {calls.get('failed', 0)} failed"),
    ]
    if summary.get("canaries"):
        facts.append(("canaries", ", ".join(summary["canaries"])))
    if summary.get("budget"):
        facts.append(("spent", f"${summary['budget']['spent_usd']:.4f} of ${summary['budget']['max_usd']}"))
    if "elapsed_s" in summary:
        facts.append(("elapsed", f"{summary['elapsed_s']:.1f} s"))
    return facts


def browser_data(run: RunFolder) -> dict[str, Any]:
    """The battle browser's data: every game, prompt, answer (as written and in each other normalization of the
    run) and judge reply, with each distinct text stored once and referred to by its index in `texts`."""
    texts: dict[str, int] = {}

    def text(value: str) -> int:
        return texts.setdefault(value, len(texts))

    def index(values: list[str]) -> dict[str, int]:
        return {value: i for i, value in enumerate(values)}

    def distinct(*series: pd.Series) -> list[str]:
        return list(dict.fromkeys(value for values in series for value in values.unique().tolist()))

    battles = run.battles
    models = distinct(battles["model_a"], battles["model_b"], run.answers["model"])
    judges = distinct(battles["judge"])
    normalizations = ["raw", *(n for n in distinct(battles["normalization"]) if n in NORMALIZATIONS and n != "raw")]
    prompt_ids = distinct(run.prompts["prompt_id"], battles["prompt_id"])
    model_of, prompt_of = index(models), index(prompt_ids)
    prompts: list[list[Any]] = [[p, "", []] for p in prompt_ids]
    for pid, category, turns in _values(run.prompts, "prompt_id", "category", "turns"):
        prompts[prompt_of[pid]] = [pid, category, [text(t) for t in turns]]
    for pid, category in _values(battles.drop_duplicates("prompt_id", keep="last"), "prompt_id", "category"):
        prompts[prompt_of[pid]][1] = category
    answers = [
        [model_of[m], prompt_of[p], [[text(normalize(t, n)) for t in turns] for n in normalizations]]
        for m, p, turns in _values(run.answers, "model", "prompt_id", "turns")
        if p in prompt_of
    ]
    # Every judgment's texts are numbered, in order, even those of a game judged again later.
    replies = [
        (text(reply), -1 if reask is None else text(reask))
        for reply, reask in _values(run.judgments, "reply", "reask_reply")
    ]
    game = ["judge", "normalization", "prompt_id", "model_a", "model_b"]
    judged = pd.MultiIndex.from_frame(run.judgments[game])
    last = ~judged.duplicated(keep="last")  # a game judged twice shows its last judgment
    found = judged[last].get_indexer(pd.MultiIndex.from_frame(battles[game]))
    shown = np.array(replies, dtype=np.int64).reshape(-1, 2)[last]
    # The row appended means "no reply recorded": a game without a judgment (found: -1) picks it.
    reply_of = np.vstack([shown, (-1, -1)])[found]

    def codes(column: str, values: list[str]) -> list[int]:
        """Each battle's index of its `column` in `values`, -1 where it is not there."""
        return pd.Index(values, dtype="string").get_indexer(pd.Index(battles[column])).tolist()

    # A game as a tuple, which JSON writes as an array, as it does a list.
    games = zip(
        codes("prompt_id", prompt_ids),
        codes("judge", judges),
        # A normalization the page does not show is browsed as raw.
        [max(code, 0) for code in codes("normalization", normalizations)],
        codes("model_a", models),
        codes("model_b", models),
        _column(battles, "label"),
        ["" if flags == NO_FLAGS else flags for flags in _column(battles, "defence_flags")],
        reply_of[:, 0].tolist(),
        reply_of[:, 1].tolist(),
        strict=True,
    )
    return {
        "models": models,
        "judges": judges,
        "normalizations": normalizations,
        "battleNormalizations": distinct(battles["normalization"]),
        "prompts": prompts,
        "answers": answers,
        "games": list(games),
        "texts": list(texts),
    }


# ---------------------------------------------------------------------------------------------------- the diff page

_SIGNIFICANCE_COLORS: Mapping[str, str] = {"worse": "#c0392b", "better": "#2e8b57", "none": "#8a94a3"}


@dataclass(frozen=True)
class ChangeCard:
    """One view of one judge, overall or in one category: each model's rating change and their plot around 0."""

    judge: str
    view: str
    category: str
    changes: list[RatingChange]
    plot: Plot


@dataclass(frozen=True)
class DiffPage:
    """Everything the diff template shows."""

    title: str
    facts: list[tuple[str, str]]
    method: str
    gates: list[GateResult]
    boards: dict[str, list[ChangeCard]]
    """Each judge's overall change cards, one per view."""
    categories: dict[str, list[ChangeCard]]
    """Each judge and view's category cards, keyed "judge / view"."""
    flagged: list[RatingChange]
    """The significant changes in categories."""
    shifts: list[tuple[str, list[StyleShift], Plot]]
    """Each judge's style shifts and the plot of their changes."""
    notes: list[str]
    data: Markup


def _change_cards(changes: Sequence[RatingChange], title: str) -> list[ChangeCard]:
    """One card per judge, view and category of the changes (in their order), their plots on one axis."""
    domain = _padded([0.0, *(bound for c in changes for bound in (c.lower, c.upper))])
    groups: dict[tuple[str, str, str], list[RatingChange]] = defaultdict(list)
    for change in changes:
        groups[(change.judge, change.view, change.category)].append(change)
    cards = []
    for (judge, view, category), rows in groups.items():
        plot = forest_plot(
            [(c.model, c.change, c.lower, c.upper) for c in rows],
            f"{judge} / {view}" + ("" if category == ALL else f" / {category}") + f": {title}",
            colors={c.model: _SIGNIFICANCE_COLORS[c.significance] for c in rows},
            domain=domain,
            reference=0.0,
        )
        cards.append(ChangeCard(judge, view, category, rows, plot))
    return cards


def _diff_facts(diff: DiffResult, gates: Sequence[GateResult]) -> list[tuple[str, str]]:
    failed = sum(not gate.passed for gate in gates)
    return [
        ("old run", diff.old),
        ("new run", diff.new),
        ("intervals", diff.method),
        ("prompts", f"{diff.old_prompts} old, {diff.new_prompts} new, {diff.shared_prompts} shared"),
        ("significant changes", f"{len(diff.significant('worse'))} worse, {len(diff.significant('better'))} better"),
        ("gates", f"{failed} of {len(gates)} failed" if gates else "none"),
    ]


def render_diff_report(diff: DiffResult, gates: Sequence[GateResult] = ()) -> str:
    """The diff of two runs as one self-contained page, in the run report's layout: the gates and their outcome,
    each view's rating changes with their 95 % intervals drawn around zero (significant ones highlighted), rank
    changes, the category changes, the style shift's change, notes, and the whole diff as embedded JSON (as
    `judge-arena diff --json` prints it)."""
    ordered = sorted(diff.changes, key=lambda change: view_order(change.judge, change.view))
    overall = [c for c in ordered if c.category == ALL]
    by_category = [c for c in ordered if c.category != ALL]
    shifts = []
    for judge in dict.fromkeys(s.judge for s in diff.style_shifts):
        rows = [s for s in diff.style_shifts if s.judge == judge]
        plot = forest_plot(
            [(s.model, s.change, s.lower, s.upper) for s in rows],
            f"{judge}: change of the style shift (raw − plain)",
            colors={s.model: _SIGNIFICANCE_COLORS[s.significance] for s in rows},
            reference=0.0,
        )
        shifts.append((judge, rows, plot))
    page = DiffPage(
        title=f"judge-arena diff · {diff.old} → {diff.new}",
        facts=_diff_facts(diff, gates),
        method=method_text(diff),
        gates=list(gates),
        boards={
            judge: list(cards)
            for judge, cards in itertools.groupby(
                _change_cards(overall, "rating change with 95 % interval"), key=lambda card: card.judge
            )
        },
        categories={
            f"{judge} / {view}": _change_cards(list(rows), "rating change")
            for (judge, view), rows in itertools.groupby(by_category, key=lambda c: (c.judge, c.view))
        },
        flagged=[c for c in by_category if c.significance != "none"],
        shifts=shifts,
        notes=list(diff.notes),
        data=embed_json(diff_data(diff, gates)),
    )
    # No nonce: the page has no script of its own, so its Content-Security-Policy lets none run.
    return (
        _environment()
        .get_template("diff.html.j2")
        .render(
            page=page,
            nonce="",
            change_text=change_text,
            position_text=position_text,
            signed=signed,
            shift_words=SHIFT_WORDS,
        )
    )


def write_diff_report(path: Path, diff: DiffResult, gates: Sequence[GateResult] = ()) -> Path:
    """Write the diff's page to `path`, replacing any earlier file atomically; return the path."""
    _write_atomically(path, _encoded([render_diff_report(diff, gates)]))
    return path


def embed_json(value: Any) -> Markup:
    """JSON safe to place inside a `<script type="application/json">` block: `<`, `>`, `&` and the two line
    separators JavaScript once treated as line ends are written as escapes, so no text can close the block."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for character, escape in _JSON_ESCAPES:
        text = text.replace(character, escape)
    return Markup(text)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("judge_arena.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_run_report(run: RunFolder) -> str:
    """The run's report.html: leaderboards and their plots, the style shift, the pairwise heatmaps, the category
    boards, the judge's health and the battle browser, as one self-contained page."""
    return "".join(_run_report(run))


def _run_report(run: RunFolder) -> Iterator[str]:
    """`render_run_report`'s page in pieces, as the template renders them (written out without joining them: the
    page of a 100k-game run is tens of megabytes)."""
    colors = _model_colors(run)
    slopes, coefficients = _style(run, colors)
    page = Page(
        title=f"judge-arena · {run.summary.get('name', 'run')}",
        facts=_facts(run),
        boards=_boards(run, colors),
        slopes=slopes,
        coefficients=coefficients,
        heatmaps=_heatmaps(run),
        categories=_categories(run, colors),
        health=_health(run),
        notes=_notes(run.summary),
        failures=[{str(k): str(v) for k, v in row.items()} for row in run.failures.to_dict(orient="records")],
        data=embed_json(browser_data(run)),
        games=len(run.battles),
        palette=colors,
    )
    # A planted script that escaped escaping still would not run: only the page's own script carries the nonce.
    nonce = secrets.token_urlsafe(16)
    return _environment().get_template("run.html.j2").generate(page=page, nonce=nonce)


def encoded_run_report(run: RunFolder) -> bytes:
    """`render_run_report` as report.html holds it (`write_html_report(…, page=…)` writes it as it is)."""
    return b"".join(_encoded(_run_report(run)))


def write_html_report(folder: Path, run: RunFolder | None = None, page: bytes | bytearray | None = None) -> Path:
    """Render the run folder's report.html, replacing any earlier one atomically; return its path.

    `run` is the folder's content when the caller has just written it (`runs.write_run`): the report is rendered
    from it instead of reading the folder back with `load_run` (a second copy of every table, at the run's peak of
    memory). `page` is the report rendered already (`encoded_run_report`), written as it is.
    """
    target = folder / REPORT_FILE
    if page is not None:
        _write_atomically(target, [page])
    else:
        _write_atomically(target, _encoded(_run_report(run if run is not None else load_run(folder))))
    return target


def _encoded(html: Iterable[str]) -> Iterator[bytes]:
    # A lone surrogate (a provider may send one) has no UTF-8 form: written as its JSON escape, which the page's
    # embedded data reads back as the same character.
    return (piece.encode("utf-8", "backslashreplace") for piece in html)


def _write_atomically(target: Path, html: Iterable[bytes | bytearray]) -> None:
    staging = target.with_name(f".{target.name}.partial")
    with staging.open("wb") as out:
        out.writelines(html)
    os.replace(staging, target)
