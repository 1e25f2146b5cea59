"""Compare a leaderboard with a reference leaderboard (typically a human-vote one): how well it separates models,
how well it agrees with the reference, and how well its intervals forecast the reference's order.

Definitions follow Arena-Hard-Auto's ``notebook/benchmark_statistics.ipynb`` (lm-sys/arena-hard-auto) and
reproduce the figures it prints exactly from the files in ``shared/data/arena-hard-v0.1/benchmark_stats/`` (see
docs/metrics.md for the figures). Over n models there are n·(n − 1)/2 pairs; every metric but separability is
computed on the models both leaderboards share.

- **Separability**: share of pairs whose 95 % intervals do not overlap. Overlap follows the notebook's
  ``get_unique_overlapping_interval_pairs``: of the two intervals, the one that starts first (ties broken by the
  smaller upper bound, so the result does not depend on input order) is the earlier; the pair overlaps when the
  later one starts strictly before the earlier one ends. A zero-width interval (a fixed anchor) lying inside
  another therefore overlaps it; touching intervals do not. Each model pair counts once (the notebook also
  merges pairs whose interval values are identical, which no published file has).
- **Strict agreement**: over all pairs, the share ordered the same way by both point estimates; a tie on
  either side counts as disagreement.
- **Agreement with confidence**: over the pairs *separated in the reference*, 1 if the evaluated leaderboard
  separates them in the same order, 0.5 if its intervals overlap, 0 if it separates them in the other order.
  Here, as in the notebook's ``get_overlap(a, b) > 0``, two intervals overlap when their intersection has
  positive length, so a zero-width interval overlaps nothing. This differs from separability's rule only for
  zero-width intervals, and it is the one that reproduces the published 0.9040 (Arena-Hard and Chatbot Arena
  each hold one: gpt-4-0314 and mixtral-8x7b-instruct-v0.1); separability's rule on both sides gives 0.9138.
  A separated pair is ordered, on both sides, by its (lower, upper) tuples as the notebook compares them
  (``order="intervals"``, the default), or by the point estimates (``order="points"``). The two differ only
  when a zero-width interval lies inside the other one of its pair: ``[1114, 1114]`` is above ``[1100, 1130]``
  by its tuple even when the other model's point estimate is higher.
- **Spearman**: Pearson correlation of the average ranks of the point estimates (``scipy.stats.spearmanr``).
- **Kendall**: tau-b of the point estimates. The notebook publishes no Kendall figure; command-line ports of it
  call ``scipy.stats.kendalltau``, whose default is tau-b.
- **Brier score and log loss** (the notebook's "Forecasting" section): for every pair (a, b) whose reference
  ratings differ, P(a < b) = Φ((μ_b − μ_a) / √(σ²_a + σ²_b)) from normal approximations of the
  evaluated leaderboard, against the outcome 1 if the reference rates a below b, else 0. μ and σ² are the mean
  and population variance (ddof 0) of the bootstrap samples when the entry has them (the notebook: the mean of
  the samples, not the point estimate); otherwise μ is the point estimate and σ² the entry's ``variance``, or
  failing that ((upper − lower) / (2 · 1.95996))², the variance of a normal with that 95 % interval. When
  σ²_a + σ²_b is 0, P is 1, 0 or 0.5 by the order of the means. Log loss clips P to [ε, 1 − ε] with ε the
  float64 machine epsilon, as ``sklearn.metrics.log_loss`` did in the notebook (scikit-learn 1.3). The notebook
  scored reference ties as outcome 0; they are left out here, having no order to forecast.

Three file formats are read (`load_leaderboard`): a run's ``leaderboard.csv`` (one view selected by judge and
normalization), Arena-Hard-Auto's ``bootstrap_stats`` JSONL and a Chatbot Arena ratings CSV. A model map
(`load_model_map`) matches differently named models. Every problem in an input file raises `MetricsInputError`
(a ValueError) naming the file and, where known, the line and field.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from judge_arena.choices import FORMATS, ORDERS, Format, Order
from judge_arena.inputs import InputFileError, json_lines, json_type, parse_json, read_csv, read_text
from judge_arena.rating import FloatArray, Leaderboard
from judge_arena.runs import read_table, select_view

Z_975 = 1.959963984540054
"""97.5th percentile of the standard normal: a 95 % interval is ± Z_975 standard deviations."""

RUN_SIGNATURE = ("judge", "model", "rating", "lower", "upper")
"""Columns that mark a CSV file as a run's leaderboard.csv (`judge_arena.runs.COLUMNS` has them all)."""
CHATBOT_ARENA_COLUMNS = ("rating", "rating_q025", "rating_q975")
ARENA_HARD_FIELDS = ("model", "score", "lower", "upper")

_EPSILON = float(np.finfo(np.float64).eps)


class MetricsInputError(InputFileError):
    """A leaderboard or model-map file that cannot be read."""


@dataclass(frozen=True)
class BoardEntry:
    """One model's line of a leaderboard: point estimate, 95 % interval and, when known, its spread."""

    model: str
    score: float
    """Point estimate (rating, score or win rate; only the order and the spread matter)."""
    lower: float
    upper: float
    samples: tuple[float, ...] | None = None
    """Bootstrap samples of the score, when the source has them."""
    variance: float | None = None
    """Variance of the score's sampling distribution, when the source states it."""


@dataclass(frozen=True)
class Board:
    """A loaded leaderboard: a label saying where it came from, and one entry per model."""

    label: str
    entries: tuple[BoardEntry, ...]


@dataclass(frozen=True)
class Separability:
    """How many model pairs a leaderboard's intervals separate."""

    models: int
    pairs: int
    overlapping: int

    @property
    def value(self) -> float:
        """Share of pairs whose intervals do not overlap (NaN without pairs)."""
        return 1.0 - self.overlapping / self.pairs if self.pairs else math.nan


@dataclass(frozen=True)
class PairShare:
    """A share over model pairs: `credit` points earned over `pairs` pairs."""

    credit: float
    pairs: int

    @property
    def value(self) -> float:
        """credit / pairs (NaN without pairs)."""
        return self.credit / self.pairs if self.pairs else math.nan


@dataclass(frozen=True)
class Forecast:
    """How well the evaluated leaderboard's normal approximations forecast the reference's pairwise order."""

    brier: float
    log_loss: float
    pairs: int
    """Pairs scored: those whose reference ratings differ."""


@dataclass(frozen=True)
class Comparison:
    """Every metric of an evaluated leaderboard against a reference one."""

    evaluated: str
    reference: str
    models: tuple[str, ...]
    """Models both leaderboards rate, under their reference names, sorted."""
    only_evaluated: tuple[str, ...]
    """Evaluated models without a counterpart in the reference (under their evaluated names)."""
    only_reference: tuple[str, ...]
    evaluated_separability: Separability
    """Over the shared models."""
    reference_separability: Separability
    evaluated_separability_all: Separability
    """Over every model of the evaluated leaderboard."""
    reference_separability_all: Separability
    strict_agreement: PairShare
    agreement_with_confidence: PairShare
    agreement_order: Order
    """How `agreement_with_confidence` ordered separated pairs."""
    map_reversed: bool
    """Whether the model map was given evaluated → reference and turned around (False without a map)."""
    spearman: float
    kendall: float
    forecast: Forecast


# ---------------------------------------------------------------------------------------------------- metrics


def separability(entries: Sequence[BoardEntry]) -> Separability:
    """Count the pairs whose intervals overlap (the later-starting one starts strictly before the earlier ends)."""
    overlapping = sum(_overlap_sorted(a, b) for a, b in combinations(entries, 2))
    n = len(entries)
    return Separability(models=n, pairs=n * (n - 1) // 2, overlapping=overlapping)


def strict_agreement(evaluated: Sequence[BoardEntry], reference: Sequence[BoardEntry]) -> PairShare:
    """Share of all pairs that both leaderboards order the same way; `evaluated[i]` and `reference[i]` are one model."""
    _check_aligned(evaluated, reference)
    credit = 0
    pairs = 0
    for i, j in combinations(range(len(evaluated)), 2):
        pairs += 1
        credit += _same_order(evaluated[i].score - evaluated[j].score, reference[i].score - reference[j].score)
    return PairShare(credit=float(credit), pairs=pairs)


def agreement_with_confidence(
    evaluated: Sequence[BoardEntry], reference: Sequence[BoardEntry], *, order: Order = "intervals"
) -> PairShare:
    """Over pairs separated in the reference: 1 if separated in the same order, 0.5 if overlapping, else 0.

    `order` says how a separated pair is ordered, on both sides: "intervals" compares the (lower, upper) tuples,
    as Arena-Hard-Auto's notebook does; "points" compares the point estimates. They differ only when a
    zero-width interval (an anchored model) lies inside the other interval of its pair.
    """
    _check_aligned(evaluated, reference)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    credit = 0.0
    pairs = 0
    for i, j in combinations(range(len(evaluated)), 2):
        if _overlap_positive(reference[i], reference[j]):
            continue
        pairs += 1
        if _overlap_positive(evaluated[i], evaluated[j]):
            credit += 0.5
        else:
            credit += _same_order(_sign(evaluated[i], evaluated[j], order), _sign(reference[i], reference[j], order))
    return PairShare(credit=credit, pairs=pairs)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    rx = np.asarray(pd.Series(x, dtype=np.float64).rank(method="average"), dtype=np.float64)
    ry = np.asarray(pd.Series(y, dtype=np.float64).rank(method="average"), dtype=np.float64)
    return _pearson(rx, ry)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties adjusted on both sides); NaN when either side is constant."""
    ax = np.asarray(x, dtype=np.float64)
    ay = np.asarray(y, dtype=np.float64)
    upper = np.triu_indices(len(ax), k=1)
    sx = np.sign(ax[:, None] - ax[None, :])[upper]
    sy = np.sign(ay[:, None] - ay[None, :])[upper]
    untied = float(np.count_nonzero(sx)) * float(np.count_nonzero(sy))
    return float(np.sum(sx * sy)) / math.sqrt(untied) if untied else math.nan


def forecast(evaluated: Sequence[BoardEntry], reference: Sequence[BoardEntry]) -> Forecast:
    """Brier score and log loss of P(a < b) from the evaluated side's normal approximations vs the reference order."""
    _check_aligned(evaluated, reference)
    probabilities: list[float] = []
    outcomes: list[float] = []
    # Swapping a and b turns P into 1 − P and the outcome into 1 − outcome: neither loss depends on pair order.
    for i, j in combinations(range(len(evaluated)), 2):
        if reference[i].score == reference[j].score:
            continue
        probabilities.append(_probability_below(evaluated[i], evaluated[j]))
        outcomes.append(1.0 if reference[i].score < reference[j].score else 0.0)
    if not outcomes:
        return Forecast(brier=math.nan, log_loss=math.nan, pairs=0)
    p = np.array(probabilities)
    y = np.array(outcomes)
    clipped = np.clip(p, _EPSILON, 1.0 - _EPSILON)
    log_loss = -float(np.mean(y * np.log(clipped) + (1.0 - y) * np.log(1.0 - clipped)))
    return Forecast(brier=float(np.mean((p - y) ** 2)), log_loss=log_loss, pairs=len(outcomes))


def compare(
    evaluated: Board,
    reference: Board,
    *,
    model_map: Mapping[str, str] | None = None,
    agreement_order: Order = "intervals",
) -> Comparison:
    """Every metric of `evaluated` against `reference`, on the models they share.

    Without `model_map` models match by exact name. With it (reference name → evaluated name, the direction of
    Arena-Hard-Auto's ``arena_to_arena_hard.json``), an evaluated model matches when its lower-cased name is a
    lower-cased value of the map, and takes the map's key as its name; evaluated models outside the map are left
    out. A map written the other way round (evaluated → reference) is recognised by its names and turned around
    (`Comparison.map_reversed`). Raises ValueError when fewer than two models are shared, when two evaluated
    models match one map entry, or when, either way round, fewer than half of the map's names on either side are
    models of their leaderboard (the map is not one for these two).
    """
    map_reversed = False
    if model_map is not None:
        model_map, map_reversed = _orient(model_map, evaluated, reference)
    renamed, left_out = _rename(evaluated, model_map)
    by_reference = {e.model: e for e in reference.entries}
    shared = tuple(sorted(set(renamed) & set(by_reference)))
    unmatched = [entry.model for name, entry in renamed.items() if name not in by_reference]
    if len(shared) < 2:
        hint = "" if model_map else " (do the two name their models differently? pass a model map)"
        raise ValueError(
            f"{evaluated.label} and {reference.label} share {len(shared)} model(s); at least 2 are needed{hint}"
        )
    ev = [replace(renamed[m], model=m) for m in shared]
    ref = [by_reference[m] for m in shared]
    return Comparison(
        evaluated=evaluated.label,
        reference=reference.label,
        models=shared,
        only_evaluated=tuple(sorted([*left_out, *unmatched])),
        only_reference=tuple(sorted(set(by_reference) - set(shared))),
        evaluated_separability=separability(ev),
        reference_separability=separability(ref),
        evaluated_separability_all=separability(evaluated.entries),
        reference_separability_all=separability(reference.entries),
        strict_agreement=strict_agreement(ev, ref),
        agreement_with_confidence=agreement_with_confidence(ev, ref, order=agreement_order),
        agreement_order=agreement_order,
        map_reversed=map_reversed,
        spearman=spearman([e.score for e in ev], [e.score for e in ref]),
        kendall=kendall_tau([e.score for e in ev], [e.score for e in ref]),
        forecast=forecast(ev, ref),
    )


def _orient(model_map: Mapping[str, str], evaluated: Board, reference: Board) -> tuple[Mapping[str, str], bool]:
    """The map as reference → evaluated, and whether it had to be turned around to be so.

    The direction that matches more entries on both sides wins (a tie keeps the map as given). Raises ValueError
    when, in that direction, fewer than half of the map's reference names are in `reference` or fewer than half of
    its evaluated names are in `evaluated`: a map taken the wrong way round, or made for other leaderboards, would
    otherwise match a few models by their shared names and give figures over the wrong set.
    """
    in_reference = {e.model for e in reference.entries}
    in_evaluated = {e.model.lower() for e in evaluated.entries}

    def matched(ref_to_ev: Mapping[str, str]) -> tuple[int, int, int]:
        found_ref = sum(name in in_reference for name in ref_to_ev)
        found_ev = sum(name.lower() in in_evaluated for name in ref_to_ev.values())
        both = sum(r in in_reference and e.lower() in in_evaluated for r, e in ref_to_ev.items())
        return both, found_ref, found_ev

    turned = {ev: ref for ref, ev in model_map.items()}
    turn_around = matched(turned)[0] > matched(model_map)[0]
    oriented = turned if turn_around else model_map
    _, found_ref, found_ev = matched(oriented)
    if 2 * min(found_ref, found_ev) < len(oriented):
        raise ValueError(
            f"the model map does not fit these leaderboards, either way round: {found_ref} of its {len(oriented)} "
            f"reference names are in {reference.label} and {found_ev} of its evaluated names in {evaluated.label} "
            "(at least half of each are needed)"
        )
    return oriented, turn_around


def _overlap_sorted(a: BoardEntry, b: BoardEntry) -> bool:
    first, second = sorted((a, b), key=lambda e: (e.lower, e.upper))
    return second.lower < first.upper


def _overlap_positive(a: BoardEntry, b: BoardEntry) -> bool:
    return max(a.lower, b.lower) < min(a.upper, b.upper)


def _sign(a: BoardEntry, b: BoardEntry, order: Order) -> float:
    """+1 when `order` puts a above b, −1 when below, 0 when tied."""
    first, second = ((a.lower, a.upper), (b.lower, b.upper)) if order == "intervals" else ((a.score,), (b.score,))
    return float(int(first > second) - int(first < second))


def _same_order(difference: float, reference_difference: float) -> int:
    return int((difference < 0 and reference_difference < 0) or (difference > 0 and reference_difference > 0))


def _pearson(x: FloatArray, y: FloatArray) -> float:
    dx = x - x.mean()
    dy = y - y.mean()
    scale = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
    return float(np.sum(dx * dy)) / scale if scale else math.nan


def _normal(entry: BoardEntry) -> tuple[float, float]:
    if entry.samples is not None:
        samples = np.asarray(entry.samples, dtype=np.float64)
        return float(samples.mean()), float(samples.var())
    if entry.variance is not None:
        return entry.score, entry.variance
    return entry.score, ((entry.upper - entry.lower) / (2.0 * Z_975)) ** 2


def _probability_below(a: BoardEntry, b: BoardEntry) -> float:
    mean_a, var_a = _normal(a)
    mean_b, var_b = _normal(b)
    sd = math.sqrt(var_a + var_b)
    if sd == 0.0:
        return 1.0 if mean_a < mean_b else 0.0 if mean_a > mean_b else 0.5
    return 0.5 * math.erfc((mean_a - mean_b) / (sd * math.sqrt(2.0)))


def _check_aligned(evaluated: Sequence[BoardEntry], reference: Sequence[BoardEntry]) -> None:
    if [e.model for e in evaluated] != [e.model for e in reference]:
        raise ValueError("evaluated and reference entries must list the same models in the same order")


def _rename(board: Board, model_map: Mapping[str, str] | None) -> tuple[dict[str, BoardEntry], list[str]]:
    """The board's entries keyed by reference name, and the models the map leaves out."""
    if model_map is None:
        return {e.model: e for e in board.entries}, []
    to_reference = {evaluated.lower(): reference for reference, evaluated in model_map.items()}
    renamed: dict[str, BoardEntry] = {}
    left_out: list[str] = []
    for entry in board.entries:
        name = to_reference.get(entry.model.lower())
        if name is None:
            left_out.append(entry.model)
            continue
        if name in renamed:
            raise ValueError(
                f"{board.label}: models {renamed[name].model!r} and {entry.model!r} both match the model map's "
                f"entry for {name!r} (names are matched case-insensitively)"
            )
        renamed[name] = entry
    return renamed, left_out


# ---------------------------------------------------------------------------------------------------- loading


def load_leaderboard(
    path: Path,
    *,
    fmt: Format = "auto",
    judge: str | None = None,
    normalization: str | None = None,
    style_control: str | None = None,
) -> Board:
    """Load a leaderboard from a run folder or file, in one of the `FORMATS`.

    - ``run``: a run's ``leaderboard.csv`` (a run folder stands for the file in it); `judge`, `normalization`
      and `style_control` (``none``, or the style set of a ``raw+sc`` view) select one of its views and may be
      omitted when only one view matches (`judge_arena.runs.select_view`). Score = ``rating``, interval =
      ``lower``–``upper``.
    - ``arena-hard``: Arena-Hard-Auto ``bootstrap_stats`` JSONL, one object a line with ``model``, ``score``,
      ``lower``, ``upper`` and optional ``results`` (the bootstrap samples); other keys are ignored.
    - ``chatbot-arena``: a Chatbot Arena ratings CSV: model name in ``index`` (or ``model``), ``rating``,
      ``rating_q025``, ``rating_q975`` and optional ``variance``; other columns are ignored.

    ``auto`` picks ``arena-hard`` for ``.jsonl`` files and tells the two CSV formats apart by their columns.
    Raises `MetricsInputError` naming the file (and the line and field) on any problem.
    """
    source = path / "leaderboard.csv" if path.is_dir() else path
    shown = str(source)
    text = read_text(source, shown, MetricsInputError)
    kind = _detect(source, text, shown) if fmt == "auto" else fmt
    if kind != "run" and any(selector is not None for selector in (judge, normalization, style_control)):
        raise MetricsInputError(
            shown, "a judge, a normalization and a style control select a view of a run's leaderboard.csv only"
        )
    if kind == "run":
        return _load_run(source, shown, judge=judge, normalization=normalization, style_control=style_control)
    if kind == "arena-hard":
        return _load_arena_hard(text, shown)
    if kind == "chatbot-arena":
        return _load_chatbot_arena(text, shown)
    raise MetricsInputError(shown, f"unknown format {kind!r}: expected one of {', '.join(FORMATS)}")


def load_model_map(path: Path) -> dict[str, str]:
    """Load a model map: a JSON object from reference model names to evaluated model names.

    Raises `MetricsInputError` when the file is not such an object, or when two reference models map to the same
    evaluated model (compared case-insensitively, as `compare` matches them).
    """
    shown = str(path)
    data = parse_json(read_text(path, shown, MetricsInputError), shown, MetricsInputError)
    if not isinstance(data, dict):
        raise MetricsInputError(shown, f"must be a JSON object of names, got {json_type(data)}")
    seen: dict[str, str] = {}
    for reference, evaluated in data.items():
        if not reference.strip():
            raise MetricsInputError(shown, "a reference model name is empty")
        if not isinstance(evaluated, str) or not evaluated.strip():
            raise MetricsInputError(shown, f"must be a non-empty string, got {evaluated!r}", field=reference)
        if evaluated.lower() in seen:
            raise MetricsInputError(
                shown,
                f"maps to {evaluated!r}, as does {seen[evaluated.lower()]!r}: the map must be one-to-one",
                field=reference,
            )
        seen[evaluated.lower()] = reference
    return dict(data)


def board_from_leaderboard(board: Leaderboard, label: str) -> Board:
    """Entries of a fitted `rating.Leaderboard`, with each model's bootstrap ratings as its samples."""
    entries = tuple(
        BoardEntry(
            model=row.model,
            score=row.rating,
            lower=row.lower,
            upper=row.upper,
            samples=tuple(float(x) for x in board.samples[row.model].to_numpy()),
        )
        for row in board.rows
    )
    return Board(label=label, entries=entries)


def _detect(path: Path, text: str, shown: str) -> Format:
    if path.suffix.lower() == ".jsonl":
        return "arena-hard"
    header = set(next(csv.reader(io.StringIO(text)), []))
    if set(RUN_SIGNATURE) <= header:
        return "run"
    if set(CHATBOT_ARENA_COLUMNS) <= header:
        return "chatbot-arena"
    raise MetricsInputError(
        shown,
        "cannot tell the format: expected a .jsonl file (arena-hard), or a CSV with columns "
        f"{', '.join(RUN_SIGNATURE)} (run) or {', '.join(CHATBOT_ARENA_COLUMNS)} (chatbot-arena)",
    )


def _number(value: object, shown: str, line: int, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MetricsInputError(shown, f"must be a number, got {value!r}", line=line, field=field)
    try:
        number = float(value)
    except ValueError:
        raise MetricsInputError(shown, f"must be a number, got {value!r}", line=line, field=field) from None
    if not math.isfinite(number):
        raise MetricsInputError(shown, f"must be finite, got {value!r}", line=line, field=field)
    return number


def _name(value: object, shown: str, line: int, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MetricsInputError(shown, f"must be a non-empty string, got {value!r}", line=line, field=field)
    return value


def _interval(shown: str, line: int, fields: tuple[str, str], values: tuple[object, object]) -> tuple[float, float]:
    lower = _number(values[0], shown, line, fields[0])
    upper = _number(values[1], shown, line, fields[1])
    if lower > upper:
        raise MetricsInputError(shown, f"{lower} is above {fields[1]} {upper}", line=line, field=fields[0])
    return lower, upper


def _board(shown: str, label: str, entries: list[tuple[int, BoardEntry]]) -> Board:
    if not entries:
        raise MetricsInputError(shown, "no models")
    first_line: dict[str, int] = {}
    for line, entry in entries:
        if entry.model in first_line:
            raise MetricsInputError(
                shown, f"duplicate model {entry.model!r} (first on line {first_line[entry.model]})", line=line
            )
        first_line[entry.model] = line
    return Board(label=label, entries=tuple(entry for _, entry in entries))


def _load_run(
    source: Path, shown: str, *, judge: str | None, normalization: str | None, style_control: str | None
) -> Board:
    boards = read_table(source, "leaderboard.csv", error=MetricsInputError)
    name, rows = select_view(
        boards,
        shown,
        judge=judge,
        normalization=normalization,
        style_control=style_control,
        error=MetricsInputError,
    )
    entries: list[tuple[int, BoardEntry]] = []
    for line, row in zip(rows.index, rows.itertuples(index=False), strict=True):
        lower, upper = _interval(shown, line, ("lower", "upper"), (row.lower, row.upper))
        model = _name(row.model, shown, line, "model")
        entries.append((line, BoardEntry(model, _number(row.rating, shown, line, "rating"), lower, upper)))
    return _board(shown, f"{shown} [{name}]", entries)


def _load_arena_hard(text: str, shown: str) -> Board:
    entries: list[tuple[int, BoardEntry]] = []
    for line, record in json_lines(text, shown, MetricsInputError):
        if not isinstance(record, dict):
            raise MetricsInputError(shown, f"must be a JSON object, got {json_type(record)}", line=line)
        for field in ARENA_HARD_FIELDS:
            if field not in record:
                raise MetricsInputError(shown, "missing", line=line, field=field)
        samples = record.get("results")
        if samples is not None:
            if not isinstance(samples, list) or not samples:
                raise MetricsInputError(shown, "must be a non-empty list of numbers", line=line, field="results")
            samples = tuple(_number(s, shown, line, "results") for s in samples)
        lower, upper = _interval(shown, line, ("lower", "upper"), (record["lower"], record["upper"]))
        model = _name(record["model"], shown, line, "model")
        score = _number(record["score"], shown, line, "score")
        entries.append((line, BoardEntry(model, score, lower, upper, samples=samples)))
    return _board(shown, shown, entries)


def _load_chatbot_arena(text: str, shown: str) -> Board:
    header = next(csv.reader(io.StringIO(text)), [])
    if "index" not in header and "model" not in header:
        raise MetricsInputError(shown, "missing the model name column 'index' (or 'model')", line=1)
    name_column = "index" if "index" in header else "model"
    entries: list[tuple[int, BoardEntry]] = []
    for line, row in read_csv(text, shown, (name_column, *CHATBOT_ARENA_COLUMNS), MetricsInputError).rows:
        variance = None
        if row.get("variance"):
            variance = _number(row["variance"], shown, line, "variance")
            if variance < 0:
                raise MetricsInputError(shown, f"must not be negative, got {variance}", line=line, field="variance")
        fields = ("rating_q025", "rating_q975")
        lower, upper = _interval(shown, line, fields, (row[fields[0]], row[fields[1]]))
        model = _name(row[name_column], shown, line, name_column)
        score = _number(row["rating"], shown, line, "rating")
        entries.append((line, BoardEntry(model, score, lower, upper, variance=variance)))
    return _board(shown, shown, entries)
