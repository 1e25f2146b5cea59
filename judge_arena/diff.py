"""Comparing two runs: each model's rating change per judge, view and category, with a 95 % interval of the change.

Both runs are refitted from their battles (`battles.csv`, with the answers' style features for style-controlled
views) on bootstrap resamples of the prompts. When the runs share prompts the bootstrap is *paired*: each round
draws one multiplicity per prompt (of the union of both runs' prompts) and refits both runs on that same sample,
so the noise of the prompts both runs answered cancels out of the difference. Runs on disjoint prompts are
resampled independently. A change is significant only when its interval excludes zero (by more than the rating's
0.01-point precision).

`evaluate_gates` checks a diff against the config's (or the command line's) gates; a run can call it after
writing its report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from pydantic import ValidationError

from judge_arena.config import ArenaConfig, Gate
from judge_arena.rating import InsufficientDataError, refit_ratings
from judge_arena.records import Answer
from judge_arena.runs import NO_STYLE_CONTROL, RunFolder
from judge_arena.style import NORMALIZATIONS
from judge_arena.views import PANEL, with_style_features

ALL = "all"
"""The category name of a view's board over every prompt."""
CATEGORY_MIN_PROMPTS = 20
"""Prompts a category needs in each run for the diff to compare it. A run's board shows a smaller category with its
wide interval, but a change's significance is not to be trusted there: a bootstrap over a handful of prompts has few
distinct draws and understates its interval, and a near-separated fit swings by thousands of points (on five
prompts per category, an unchanged model came out "significantly worse" in 5 of 24 categories)."""

Method = Literal["paired", "independent"]
Significance = Literal["worse", "better", "none"]

_PERCENTILES = (2.5, 97.5)
_PRECISION = 0.01
"""Rating points below which a difference is the solver's rounding, not a change (rating.py's precision budget):
two fits of the same games can differ by ~1e-6, and an interval of such noise must not count as excluding zero."""


@dataclass(frozen=True)
class RatingChange:
    """One model's rating change from the old run to the new one, in one judge's view of one category."""

    judge: str
    view: str
    """The view's label: raw, plain, raw+sc, …"""
    category: str
    """A prompt category, or `ALL` for the view's overall board."""
    model: str
    old: float
    new: float
    change: float
    """new − old, from the full-data fits."""
    lower: float
    """2.5th percentile of the bootstrap changes."""
    upper: float
    """97.5th percentile of the bootstrap changes."""
    old_position: int
    """Plain order by rating in the old run, 1 for the best."""
    new_position: int
    old_rank: int
    """Interval-aware rank in the old run: 1 + models whose lower bound is above this model's upper bound."""
    new_rank: int
    significance: Significance
    """"worse" when the whole interval is below zero, "better" when above, else "none"."""


@dataclass(frozen=True)
class StyleShift:
    """How much a judge's raw view rates a model above its plain view (raw − plain), in each run, and its change."""

    judge: str
    model: str
    old: float
    new: float
    change: float
    lower: float
    upper: float
    significance: Significance


@dataclass(frozen=True)
class Gap:
    """The new run's rating of `model` minus that of `other` in one view, with its bootstrap interval."""

    judge: str
    view: str
    model: str
    other: str
    difference: float
    lower: float
    upper: float


_Row = TypeVar("_Row", RatingChange, Gap)


@dataclass(frozen=True)
class RevisionChange:
    """A candidate answering at another revision in the new run than in the old (None: it had none)."""

    model: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class DiffResult:
    """Everything `judge-arena diff` reports; `to_dict` gives it as JSON-ready data."""

    old: str
    new: str
    method: Method
    """"paired" when the runs share prompts (both refitted on the same resamples), else "independent"."""
    shared_prompts: int
    old_prompts: int
    new_prompts: int
    rounds: int
    anchor: str | None
    """The model whose rating is held fixed (its change is 0 by construction), or None when ratings are centred."""
    changes: tuple[RatingChange, ...]
    style_shifts: tuple[StyleShift, ...]
    gaps: tuple[Gap, ...]
    """Every pair of models of the new run's overall boards, for gates that compare two models."""
    notes: tuple[str, ...]
    """Views, categories and models that could not be compared, and why."""
    revisions: tuple[RevisionChange, ...] = ()
    """The candidates of both runs whose revision differs (from the manifests)."""

    def significant(self, significance: Significance) -> list[RatingChange]:
        """The changes that are significantly worse (or better)."""
        return [change for change in self.changes if change.significance == significance]

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data (for JSON)."""
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome."""

    gate: str
    """The gate as written on the command line."""
    passed: bool
    failures: tuple[str, ...]
    """One line per view where the gate does not hold."""


def diff_runs(
    old: RunFolder,
    new: RunFolder,
    *,
    old_name: str = "old",
    new_name: str = "new",
    rounds: int | None = None,
    seed: int | None = None,
    method: Method | None = None,
) -> DiffResult:
    """Compare two runs: every model's rating change per judge, view and category, the style shift, the gaps.

    Rating options (anchor, scale, style sets) are the new run's; `rounds` and `seed` default to its bootstrap
    settings. `method` defaults to "paired" when the runs share a prompt, else "independent". Views, categories
    and models present in only one run are left out with a note; the panel is not compared (its battles are not
    in `battles.csv`). Raises ValueError when a run has no decided battle, or the runs have no view in common.
    """
    if rounds is not None and rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    for run, name in ((old, old_name), (new, new_name)):
        _check_decided(run, name)
    rating = dict(new.summary.get("rating", {}))
    pairing = dict(new.summary.get("pairing", {}))
    rounds = int(rating.get("bootstrap_rounds", 100)) if rounds is None else rounds
    seed = int(rating.get("seed", 0)) if seed is None else seed
    anchor = rating.get("anchor") or pairing.get("baseline")
    options: dict[str, Any] = {"anchor": anchor, "anchor_rating": float(rating.get("anchor_rating", 1000.0))}

    old_prompts = set(old.battles["prompt_id"].dropna().astype(str))
    new_prompts = set(new.battles["prompt_id"].dropna().astype(str))
    shared = old_prompts & new_prompts
    chosen: Method = method or ("paired" if shared else "independent")
    rng = np.random.default_rng(seed)
    if chosen == "paired":
        union = _draw(sorted(old_prompts | new_prompts), rounds, rng)
        old_sample, new_sample = union, union
    else:
        old_sample, new_sample = _draw(sorted(old_prompts), rounds, rng), _draw(sorted(new_prompts), rounds, rng)

    notes: list[str] = []
    views = _common_views(old, new, notes)
    if not views:
        raise ValueError(f"{old_name} and {new_name} have no view in common to compare")
    fits: dict[tuple[str, str, str], tuple[_Fit, _Fit]] = {}
    for judge, view, normalization, style in views:
        old_battles = _view_battles(old, judge, normalization, style)
        new_battles = _view_battles(new, judge, normalization, style)
        small = 0
        for category in [ALL, *_common_categories(old, new, judge, view)]:
            where = f"{judge}/{view}" + ("" if category == ALL else f" category {category}")
            if category != ALL and any(
                b.loc[b["category"] == category, "prompt_id"].nunique() < CATEGORY_MIN_PROMPTS
                for b in (old_battles, new_battles)
            ):
                small += 1
                continue
            pair = []
            for battles, sample in ((old_battles, old_sample), (new_battles, new_sample)):
                games = battles if category == ALL else battles[battles["category"] == category]
                try:
                    pair.append(_Fit.of(games, sample, style=style, **options))
                except InsufficientDataError as exc:
                    notes.append(f"{where}: not compared ({exc})")
                    break
            if len(pair) == 2:
                fits[(judge, view, category)] = (pair[0], pair[1])
        if small:
            notes.append(f"{judge}/{view}: {small} categories under {CATEGORY_MIN_PROMPTS} prompts not compared")

    changes = [
        change
        for (judge, view, category), (before, after) in fits.items()
        for change in _changes(judge, view, category, before, after, notes)
    ]
    before, after = old.revisions, new.revisions
    both = [name for name in new.summary.get("candidates", ()) if name in set(old.summary.get("candidates", ()))]
    return DiffResult(
        revisions=tuple(
            RevisionChange(name, before.get(name), after.get(name))
            for name in both
            if before.get(name) != after.get(name)
        ),
        old=old_name,
        new=new_name,
        method=chosen,
        shared_prompts=len(shared),
        old_prompts=len(old_prompts),
        new_prompts=len(new_prompts),
        rounds=rounds,
        anchor=anchor,
        changes=tuple(changes),
        style_shifts=tuple(_style_shifts(fits)),
        gaps=tuple(
            gap
            for (judge, view, category), (_, after) in fits.items()
            if category == ALL
            for gap in _gaps(judge, view, after)
        ),
        notes=tuple(notes),
    )


def compare_runs(
    old: RunFolder,
    new: RunFolder,
    gates: Iterable[Gate] = (),
    *,
    old_name: str = "old",
    new_name: str = "new",
    rounds: int | None = None,
    method: Method | None = None,
) -> tuple[DiffResult, list[GateResult]]:
    """`diff_runs`, and `evaluate_gates` on it with the new run's config gates (from its manifest), then `gates`.

    Raises ValueError on bad input: a run without a decided battle, no view in common, a malformed gate in the
    manifest, a gate naming a model, view or judge the runs lack.
    """
    written = new.manifest.get("config", {}).get("gates", [])
    try:
        configured = [Gate.model_validate(gate) for gate in written]
    except ValidationError as exc:
        raise ValueError(f"{new_name}: manifest.json: field 'config.gates': {exc.errors()[0]['msg']}") from None
    result = diff_runs(old, new, old_name=old_name, new_name=new_name, rounds=rounds, method=method)
    return result, evaluate_gates(result, [*configured, *gates])


def _check_decided(run: RunFolder, name: str) -> None:
    if not run.battles["winner"].notna().any():
        raise ValueError(
            f"{name}: battles.csv: no decided battle (no game was judged with a verdict): nothing to compare"
        )


def check_gates(config: ArenaConfig, baseline: RunFolder, baseline_name: str) -> None:
    """Raise ValueError when `baseline` has no decided battle, or a gate of `config` names a model a run of it
    cannot be compared on with `baseline`: one that is not a candidate, or (for `max_drop`) not a candidate of the
    baseline. Checked before a run that is to be compared, so that a comparison that cannot be made is found before
    any call is paid for."""
    _check_decided(baseline, baseline_name)
    candidates = {c.name for c in config.candidates}
    before = set(baseline.summary.get("candidates", ()))
    for i, gate in enumerate(config.gates):
        for name in (gate.model, gate.not_significantly_worse_than):
            if name is not None and name not in candidates:
                raise ValueError(f"{config.source}: field 'gates.{i}': {name!r} is not a candidate")
        if gate.max_drop is not None and gate.model not in before:
            raise ValueError(
                f"{config.source}: field 'gates.{i}': {gate.model!r} is not in {baseline_name} to compare with "
                f"(its candidates: {', '.join(sorted(before))})"
            )


def parse_gate(spec: str) -> Gate:
    """A gate from its command-line form: ``MODEL:KEY=VALUE[:KEY=VALUE…]``, e.g.
    ``my-model:max_drop=25:views=plain,raw+sc`` or ``my-model:not_significantly_worse_than=prod-model``.

    Keys are `Gate`'s fields; `views` takes a comma-separated list. Raises ValueError naming the problem.
    """
    model, *settings = spec.split(":")
    values: dict[str, object] = {"model": model}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise ValueError(f"gate {spec!r}: expected KEY=VALUE after the model, got {setting!r}")
        values[key.strip()] = [v.strip() for v in value.split(",") if v.strip()] if key.strip() == "views" else value
    try:
        return Gate.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'gate'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"gate {spec!r}: {problems}") from None


def gate_text(gate: Gate) -> str:
    """The gate in its command-line form (`parse_gate` reads it back)."""
    parts = [gate.model]
    if gate.max_drop is not None:
        parts.append(f"max_drop={gate.max_drop:g}")
    if gate.not_significantly_worse_than is not None:
        parts.append(f"not_significantly_worse_than={gate.not_significantly_worse_than}")
    if gate.views is not None:
        parts.append("views=" + ",".join(gate.views))
    if gate.judge is not None:
        parts.append(f"judge={gate.judge}")
    return ":".join(parts)


def evaluate_gates(diff: DiffResult, gates: Iterable[Gate]) -> list[GateResult]:
    """Each gate's outcome on the diff's overall boards (category `ALL`), over its views and judges.

    `max_drop` fails where the model's rating fell by more than that many points *and* the fall is significant
    (its interval excludes zero: a noisy view whose interval spans zero does not fail a nightly job); the model
    must be in both runs. `not_significantly_worse_than` fails where, in the new run, the model's rating is
    significantly below the other model's (the interval of their difference is all below zero); both must be in
    the new run. Raises ValueError when a gate names a model, view or judge the diff does not have (bad input,
    not a failed gate).
    """
    overall = [c for c in diff.changes if c.category == ALL]
    results = []
    for gate in gates:
        text = gate_text(gate)
        failures = []
        if gate.max_drop is not None:
            changes = _selected(text, gate, overall, {c.model for c in overall}, [gate.model])
            failures += [
                f"{gate.model} fell {-c.change:.0f} points in {c.judge}/{c.view} "
                f"(interval {c.lower:+.0f} to {c.upper:+.0f}), more than max_drop {gate.max_drop:g}"
                for c in changes
                if -c.change > gate.max_drop and c.significance == "worse"
            ]
        other = gate.not_significantly_worse_than
        if other is not None:
            in_new = {name for gap in diff.gaps for name in (gap.model, gap.other)}
            for gap in _selected(text, gate, diff.gaps, in_new, [gate.model, other]):
                oriented = _oriented(gap, gate.model, other)
                if oriented is not None and oriented.upper < -_PRECISION:
                    failures.append(
                        f"{gate.model} is significantly below {other} in {gap.judge}/{gap.view} of {diff.new}: "
                        f"{oriented.difference:+.0f} ({oriented.lower:+.0f} to {oriented.upper:+.0f})"
                    )
        results.append(GateResult(gate=text, passed=not failures, failures=tuple(failures)))
    return results


def _selected(text: str, gate: Gate, rows: Sequence[_Row], models: set[str], named: Sequence[str]) -> list[_Row]:
    """The rows (changes or gaps) of the gate's views and judge that involve its model; ValueError when the gate
    names a model, view or judge the rows lack."""
    where = "the new run" if any(isinstance(row, Gap) for row in rows) else "both runs"
    for name in named:
        if name not in models:
            raise ValueError(f"gate {text!r}: model {name!r} is not in {where}; models: {', '.join(sorted(models))}")
    views, judges = {row.view for row in rows}, {row.judge for row in rows}
    unknown = sorted(set(gate.views or ()) - views)
    if unknown:
        raise ValueError(f"gate {text!r}: no view {', '.join(unknown)} in {where}; views: {', '.join(sorted(views))}")
    if gate.judge is not None and gate.judge not in judges:
        raise ValueError(f"gate {text!r}: no judge {gate.judge!r} in {where}; judges: {', '.join(sorted(judges))}")
    return [
        row
        for row in rows
        if gate.model in (row.model, getattr(row, "other", None))
        and (gate.views is None or row.view in gate.views)
        and (gate.judge is None or row.judge == gate.judge)
    ]


# ---------------------------------------------------------------------------------------------------- fitting


@dataclass(frozen=True, eq=False)
class _Fit:
    """One run's ratings in one view and category: the full-data fit and the bootstrap rounds."""

    ratings: pd.Series
    samples: pd.DataFrame

    @classmethod
    def of(cls, battles: pd.DataFrame, sample: pd.DataFrame, **options: Any) -> _Fit:
        if battles.empty:
            raise InsufficientDataError("no decided battle")
        if options.get("anchor") not in set(battles["model_a"]) | set(battles["model_b"]):
            options = {**options, "anchor": None}
        ratings, samples = refit_ratings(battles, sample, **options)
        return cls(ratings, samples)

    def positions(self) -> dict[str, int]:
        order = sorted(self.ratings.index, key=lambda model: (-self.ratings[model], model))
        return {model: position for position, model in enumerate(order, start=1)}

    def ranks(self) -> dict[str, int]:
        lower, upper = (self.samples.quantile(q / 100) for q in _PERCENTILES)
        return {model: 1 + int((lower > upper[model]).sum()) for model in self.ratings.index}


def _draw(prompts: Sequence[str], rounds: int, rng: np.random.Generator) -> pd.DataFrame:
    """rounds × prompts multiplicities: each round draws len(prompts) prompts with replacement."""
    counts = rng.multinomial(len(prompts), np.full(len(prompts), 1.0 / max(len(prompts), 1)), size=rounds)
    return pd.DataFrame(counts, columns=pd.Index(prompts, name="prompt_id"), dtype=np.float64)


def _common_views(old: RunFolder, new: RunFolder, notes: list[str]) -> list[tuple[str, str, str, str | None]]:
    """(judge, view, normalization, style set) of the views both runs rated, judged by a judge of battles.csv."""
    columns = ["judge", "view", "normalization", "style_control"]
    keys = [{tuple(str(v) for v in row) for row in run.boards[columns].itertuples(index=False)} for run in (old, new)]
    for key in sorted(keys[0] ^ keys[1]):
        notes.append(f"{key[0]}/{key[1]}: in only one run, not compared")
    common = sorted(keys[0] & keys[1], key=lambda key: view_order(key[0], key[1]))
    return [
        (judge, view, normalization, None if style == NO_STYLE_CONTROL else style)
        for judge, view, normalization, style in common
        if judge != PANEL
    ]


def view_order(judge: str, view: str) -> tuple[str, bool, int, str]:
    """The order views are shown in, per judge: raw, plain (the normalizations' order), then the style-controlled
    ones in the same order."""
    normalization = view.removesuffix("+sc")
    order = list(NORMALIZATIONS)
    position = order.index(normalization) if normalization in order else len(order)
    return judge, normalization != view, position, view


def _common_categories(old: RunFolder, new: RunFolder, judge: str, view: str) -> list[str]:
    """The categories both runs have a board for in this view."""
    boards = [
        set(
            run.categories.loc[(run.categories["judge"] == judge) & (run.categories["view"] == view)]
            .loc[lambda rows: rows["note"].isna(), "category"]
            .astype(str)
        )
        for run in (old, new)
    ]
    return sorted(boards[0] & boards[1])


def _view_battles(run: RunFolder, judge: str, normalization: str, style: str | None) -> pd.DataFrame:
    """The decided battles of one view, with the answers' style features when the view is style-controlled."""
    battles = run.battles
    games = battles[
        (battles["judge"] == judge) & (battles["normalization"] == normalization) & battles["winner"].notna()
    ]
    games = games.astype({"prompt_id": object, "model_a": object, "model_b": object, "winner": object})
    if style is None:
        return games
    answers = [
        Answer(model=str(model), prompt_id=str(prompt), turns=tuple(turns), output_tokens=0, latency_s=0.0)
        for model, prompt, turns in zip(
            run.answers["model"], run.answers["prompt_id"], run.answers["turns"], strict=True
        )
    ]
    return with_style_features(games, answers)


def _interval(samples: pd.Series) -> tuple[float, float]:
    lower, upper = np.percentile(samples.to_numpy(dtype=np.float64), _PERCENTILES)
    return float(lower), float(upper)


def _significance(lower: float, upper: float) -> Significance:
    return "worse" if upper < -_PRECISION else "better" if lower > _PRECISION else "none"


def _changes(judge: str, view: str, category: str, old: _Fit, new: _Fit, notes: list[str]) -> list[RatingChange]:
    models = [m for m in new.ratings.index if m in old.ratings.index]
    only = sorted(set(old.ratings.index) ^ set(new.ratings.index))
    if only and category == ALL:
        notes.append(f"{judge}/{view}: {', '.join(only)} in only one run, not compared")
    positions = (old.positions(), new.positions())
    ranks = (old.ranks(), new.ranks())
    rows = []
    for model in models:
        lower, upper = _interval(new.samples[model] - old.samples[model])
        rows.append(
            RatingChange(
                judge=judge,
                view=view,
                category=category,
                model=str(model),
                old=float(old.ratings[model]),
                new=float(new.ratings[model]),
                change=float(new.ratings[model] - old.ratings[model]),
                lower=lower,
                upper=upper,
                old_position=positions[0][model],
                new_position=positions[1][model],
                old_rank=ranks[0][model],
                new_rank=ranks[1][model],
                significance=_significance(lower, upper),
            )
        )
    return sorted(rows, key=lambda row: row.new_position)


def _style_shifts(fits: Mapping[tuple[str, str, str], tuple[_Fit, _Fit]]) -> list[StyleShift]:
    """raw − plain per judge and model, in each run and its change (rounds are shared across views)."""
    shifts = []
    for judge in sorted({judge for judge, _, _ in fits}):
        raw, plain = fits.get((judge, "raw", ALL)), fits.get((judge, "plain", ALL))
        if raw is None or plain is None:
            continue
        models = [
            m for m in raw[1].ratings.index if all(m in fit.ratings.index for pair in (raw, plain) for fit in pair)
        ]
        for model in models:
            before = raw[0].ratings[model] - plain[0].ratings[model]
            after = raw[1].ratings[model] - plain[1].ratings[model]
            samples = (raw[1].samples[model] - plain[1].samples[model]) - (
                raw[0].samples[model] - plain[0].samples[model]
            )
            lower, upper = _interval(samples)
            shifts.append(
                StyleShift(
                    judge=judge,
                    model=str(model),
                    old=float(before),
                    new=float(after),
                    change=float(after - before),
                    lower=lower,
                    upper=upper,
                    significance=_significance(lower, upper),
                )
            )
    return shifts


def _gaps(judge: str, view: str, fit: _Fit) -> list[Gap]:
    models = sorted(str(m) for m in fit.ratings.index)
    gaps = []
    for k, model in enumerate(models):
        for other in models[k + 1 :]:
            lower, upper = _interval(fit.samples[model] - fit.samples[other])
            difference = float(fit.ratings[model] - fit.ratings[other])
            gaps.append(Gap(judge, view, model, other, difference, lower, upper))
    return gaps


def _oriented(gap: Gap, model: str, other: str) -> Gap | None:
    """The gap as `model` − `other`, whichever way it is stored; None when it is about another pair."""
    if (gap.model, gap.other) == (model, other):
        return gap
    if (gap.model, gap.other) == (other, model):
        return Gap(gap.judge, gap.view, model, other, -gap.difference, -gap.upper, -gap.lower)
    return None
