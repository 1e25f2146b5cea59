"""Views: one leaderboard per (judge, normalization), so raw and plain judging can be read side by side.

With two or more judges a *panel* judge is added, whose verdict on each game combines the judges' verdicts. A
judge that shares a model family with a candidate is flagged: its view also carries the leaderboard fitted
without those self-judged battles.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import pandas as pd

from judge_arena.config import ArenaConfig, RatingConfig, load_category_map
from judge_arena.defence import canary_problems, enabled_canaries
from judge_arena.labels import ARENA_HARD, LabelSet, label_set_of
from judge_arena.rating import (
    MIN_PROMPTS,
    CategoryLeaderboard,
    Leaderboard,
    LeaderboardOptions,
    leaderboard,
    leaderboards_by,
)
from judge_arena.records import Answer, Battle
from judge_arena.style import FEATURES, answer_style, style_features

PANEL = "panel"
"""The judge name of the panel's combined verdicts."""

BATTLE_COLUMNS = (
    "prompt_id",
    "suite",
    "turn",
    "category",
    "judge",
    "normalization",
    "model_a",
    "model_b",
    "label",
    "winner",
    "weight",
)


@dataclass(frozen=True)
class View:
    """The leaderboard of one judge on one normalization of the answers."""

    judge: str
    normalization: str
    board: Leaderboard | None
    """None when the view has no decided battle or cannot be rated; `note` says why."""
    games: int
    """Games judged in this view, unparsed verdicts included."""
    unparsed: int
    """Games whose verdict could not be parsed even after the re-ask; left out of the ratings."""
    note: str = ""
    self_judged: tuple[str, ...] = ()
    """Candidates sharing a model family with this judge (for the panel: with any of its judges)."""
    board_without_self: Leaderboard | None = None
    """Panel only: the leaderboard when no judge votes on a battle of its own family (None when none does, or when
    those battles cannot be rated: `note_without_self` says why)."""
    note_without_self: str = ""
    """Panel only: why `board_without_self` could not be fitted (e.g. a model left with no battle), else empty."""
    style: str | None = None
    """The style covariates the view is controlled for (a `rating.STYLE_SETS` name), or None."""
    by_category: Mapping[str, CategoryLeaderboard] = field(default_factory=dict)
    """One leaderboard per prompt category, each with a note when its battles are too few to trust."""
    by_suite: Mapping[str, CategoryLeaderboard] = field(default_factory=dict)
    """One leaderboard per suite when the run has several (empty with one), fitted and noted like a category's."""
    by_turn: Mapping[str, CategoryLeaderboard] = field(default_factory=dict)
    """One leaderboard per judged turn when turns were judged apart (a per-turn template; empty otherwise)."""

    @property
    def label(self) -> str:
        """The view's name in tables: the normalization, with the style control when there is one."""
        return self.normalization if self.style is None else f"{self.normalization}+sc"


def battles_frame(battles: Iterable[Battle]) -> pd.DataFrame:
    """The battles as a table, one row per judged game (the rating stage's input)."""
    rows = [
        (
            b.prompt_id,
            b.suite,
            b.turn,
            b.category,
            b.judge,
            b.normalization,
            b.model_a,
            b.model_b,
            b.label,
            b.winner,
            b.weight,
        )
        for b in battles
    ]
    return pd.DataFrame(rows, columns=list(BATTLE_COLUMNS))


def with_style_features(frame: pd.DataFrame, answers: Iterable[Answer]) -> pd.DataFrame:
    """The battles with both sides' style features of the answers as written (`tokens_a`, `tokens_b`, …).

    Features come from the raw answers whatever view a battle was judged in: style control asks how much of a
    verdict the answers' own formatting and length explain. They count every turn the judge was shown: up to the
    battle's `turn` (all of them when the frame has no turn, or the turn is missing).
    """
    answer_of = {(answer.model, answer.prompt_id): answer for answer in answers}

    @functools.cache
    def features(model: str, prompt_id: str, turn: int) -> dict[str, float]:
        answer = answer_of[(model, prompt_id)]
        if 0 < turn < len(answer.turns):
            return asdict(style_features("\n\n".join(answer.turns[:turn])))
        return asdict(answer_style(answer))

    out = frame.copy()
    shown = out["turn"].fillna(0).astype(int) if "turn" in out.columns else pd.Series(0, index=out.index)
    names = list(FEATURES)
    for side in ("a", "b"):
        # Each answer meets every other candidate in both orders and views: its features are looked up by key,
        # not built once per battle.
        keys = pd.MultiIndex.from_arrays([out[f"model_{side}"].to_numpy(), out["prompt_id"].to_numpy(), shown])
        distinct = keys.unique()
        table = pd.DataFrame([features(*key) for key in distinct], index=distinct, columns=names)
        values = table.reindex(keys)
        for name in names:
            out[f"{name}_{side}"] = values[name].to_numpy()
    return out


def panel_verdict(labels: Sequence[str], method: Literal["mean", "majority"], label_set: LabelSet = ARENA_HARD) -> str:
    """The panel's label (in `label_set`) from its judges' labels: the label nearest their mean score, or the most
    frequent label. Each judge's label is scored in its own set (`labels.label_set_of`).

    A majority split evenly between labels falls back to the mean, so the panel never picks a side by list order.
    """
    if method == "majority":
        ranked = Counter(labels).most_common()
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            return ranked[0][0]
    scores = [(label_set_of(label) or label_set).score(label) for label in labels]
    return label_set.nearest(sum(scores) / len(scores))


def panel_battles(battles: Iterable[Battle], method: Literal["mean", "majority"], strong_weight: float) -> list[Battle]:
    """One battle per game judged by the panel: the combination of every judge's parsed verdict on it.

    The panel answers in its judges' label set when they share one, else in Arena-Hard's five labels.
    """
    games: dict[tuple[str, int, str, str, str], list[Battle]] = defaultdict(list)
    for battle in battles:
        games[(battle.prompt_id, battle.turn, battle.normalization, battle.model_a, battle.model_b)].append(battle)
    combined = []
    for group in games.values():
        labels = [b.label for b in group if b.label is not None]
        sets = {label_set_of(label) for label in labels}
        shared = sets.pop() if len(sets) == 1 else None
        label_set = shared or ARENA_HARD
        # Judges answering in different sets agree on no label, only on scores: their mean decides.
        label = panel_verdict(labels, method if shared else "mean", label_set) if labels else None
        winner, weight = label_set.outcome(label, strong_weight) if label is not None else (None, 0.0)
        first = group[0]
        combined.append(
            Battle(
                prompt_id=first.prompt_id,
                category=first.category,
                suite=first.suite,
                turn=first.turn,
                judge=PANEL,
                normalization=first.normalization,
                model_a=first.model_a,
                model_b=first.model_b,
                label=label,
                winner=winner,
                weight=weight,
                flags=(f"judges={len(labels)}",) if label is not None else ("unparsed",),
            )
        )
    return combined


def _self_judged(config: ArenaConfig, judge: str) -> tuple[str, ...]:
    families = {j.model_family for j in config.judges if judge in (j.name, PANEL)} - {None}
    return tuple(c.name for c in config.candidates if c.model_family in families)


def leaderboard_options(config: ArenaConfig) -> LeaderboardOptions:
    """The options of a run's leaderboards (every view's and category's), from its config; style control apart."""
    return _options(config.rating, config.pairing.baseline)


def rate_views(config: ArenaConfig, battles: Sequence[Battle], answers: Iterable[Answer]) -> list[View]:
    """Fit the views of every judge (and of the panel, with two or more judges): one per normalization, plus raw
    judging under style control, each with its per-category leaderboards."""
    job = rating_job(config, battles, answers)
    return job.finish(job.fit())


Part = Literal["styled", "unstyled"]
"""The views fitted with style control, or those without."""


@dataclass(frozen=True)
class RatingJob:
    """What `rate_views` fits, ready to fit: in one go (`fit`), or in parts fitted apart (a large run fits its
    style-controlled views, most of the rating's time, in its second process) and put back together (`merge`)."""

    frame: pd.DataFrame
    """The battles, the panel's included, with style features."""
    config: ArenaConfig
    judges: tuple[str, ...]
    """The judges, then the panel when there is one."""
    category_map: Mapping[str, str] | None
    panel_without_self: pd.DataFrame
    """The panel's battles without the votes of judges on their own model (empty when none were dropped)."""

    def fit(self, part: Part | None = None) -> list[View]:
        """`rate_frame` of the battles: every view, or one part."""
        return rate_frame(
            self.frame,
            self.config.rating,
            judges=self.judges,
            normalizations=self.config.normalizations,
            baseline=self.config.pairing.baseline,
            category_map=self.category_map,
            part=part,
        )

    def for_part(self, part: Part) -> RatingJob:
        """The job with only what fitting `part` reads (the style-controlled views are of raw judging)."""
        frame = self.frame[self.frame["normalization"] == "raw"] if part == "styled" else self.frame
        return replace(self, frame=frame, panel_without_self=pd.DataFrame())

    def merge(self, unstyled: Sequence[View], styled: Sequence[View]) -> list[View]:
        """The views of both parts in `fit`'s order: each judge's views without style control, then its others."""
        return [view for judge in self.judges for part in (unstyled, styled) for view in part if view.judge == judge]

    def finish(self, views: list[View]) -> list[View]:
        """The panel's boards without self-judged votes, and each board's self-judged models, added to `views`."""
        config, panel_without_self = self.config, self.panel_without_self
        options = leaderboard_options(config)
        for i, view in enumerate(views):
            if view.judge != PANEL or view.style is not None or view.board is None or panel_without_self.empty:
                continue
            others = panel_without_self[panel_without_self["normalization"] == view.normalization]
            # Dropping self-judged votes can leave a model (the baseline, say) with no battle at all; the run has
            # paid for its calls, so that board gets a note and every other one is still reported.
            try:
                views[i] = replace(view, board_without_self=leaderboard(others[others["winner"].notna()], **options))
            except ValueError as exc:
                views[i] = replace(view, note_without_self=f"without self-judged votes: {exc}")
        return [replace(view, self_judged=_self_judged(config, view.judge)) if view.board else view for view in views]


def rating_job(config: ArenaConfig, battles: Sequence[Battle], answers: Iterable[Answer]) -> RatingJob:
    """The views' fit of `rate_views`, made ready: the battles table (with the panel's, for two or more judges)
    and its style features."""
    judged = list(battles)
    judges = [j.name for j in config.judges]
    answers = list(answers)
    panel_without_self = pd.DataFrame()
    if len(judges) > 1:
        judged += panel_battles(battles, config.panel.method, config.rating.strong_weight)
        judges.append(PANEL)
        own = {j.name: set(_self_judged(config, j.name)) for j in config.judges}
        unbiased = [b for b in battles if not own[b.judge] & {b.model_a, b.model_b}]
        if len(unbiased) < len(battles):
            combined = panel_battles(unbiased, config.panel.method, config.rating.strong_weight)
            panel_without_self = battles_frame(combined)
    return RatingJob(
        frame=with_style_features(battles_frame(judged), answers),
        config=config,
        judges=tuple(judges),
        category_map=load_category_map(config.rating.category_map) if config.rating.category_map else None,
        panel_without_self=panel_without_self,
    )


def _options(rating: RatingConfig, baseline: str | None) -> LeaderboardOptions:
    """The options of leaderboards rated with `rating` and win rates against `baseline`; style control apart."""
    return LeaderboardOptions(
        baseline=baseline,
        rounds=rating.bootstrap_rounds,
        seed=rating.seed,
        unit=rating.bootstrap_unit,
        anchor=rating.anchor or baseline,
        anchor_rating=rating.anchor_rating,
    )


def rate_frame(
    frame: pd.DataFrame,
    rating: RatingConfig,
    *,
    judges: Sequence[str],
    normalizations: Sequence[str],
    baseline: str | None = None,
    category_map: Mapping[str, str] | None = None,
    part: Part | None = None,
) -> list[View]:
    """Fit the views of a battles table (`battles_frame`'s columns, with style features for style control): one per
    judge and normalization, plus raw judging under `rating.style_control`, each with its per-category boards (and
    per-suite and per-turn boards when the battles have several). `category_map` groups categories (a category it
    does not name keeps its own board). A view that cannot be fitted gets a note instead of a board. `part` fits
    only the views with style control ('styled') or those without ('unstyled')."""
    options = _options(rating, baseline)
    min_prompts = rating.category_min_prompts or MIN_PROMPTS
    if category_map:
        frame = frame.assign(category=frame["category"].map(lambda category: category_map.get(category, category)))
    specs: list[tuple[str, str | None]] = [(normalization, None) for normalization in normalizations]
    if rating.style_control != "none" and "raw" in normalizations:
        specs.append(("raw", rating.style_control))
    if part is not None:
        specs = [(normalization, style) for normalization, style in specs if (style is not None) == (part == "styled")]
    suites = frame["suite"].nunique()
    views = []
    for judge in judges:
        for normalization, style in specs:
            games = frame[(frame["judge"] == judge) & (frame["normalization"] == normalization)]
            decided = games[games["winner"].notna()]
            view = View(judge, normalization, None, len(games), len(games) - len(decided), style=style)
            view_options: LeaderboardOptions = {**options, "style": style}
            if decided.empty:
                views.append(replace(view, note="no decided battle"))
                continue
            try:
                board = leaderboard(decided, **view_options)
            except ValueError as exc:
                views.append(replace(view, note=str(exc)))
                continue
            by = functools.partial(leaderboards_by, decided, min_prompts=min_prompts, **view_options)
            views.append(
                replace(
                    view,
                    board=board,
                    by_category=by("category"),
                    by_suite=by("suite") if suites > 1 else {},
                    by_turn=by("turn") if decided["turn"].nunique() > 1 else {},
                )
            )
    return views


def canary_warnings(config: ArenaConfig, views: Sequence[View]) -> list[str]:
    """One line per view and canary rated above a real candidate in that view (empty when no canary is on)."""
    canaries = enabled_canaries(config.canaries)
    real = [c.name for c in config.candidates]
    return [
        f"{view.judge}/{view.label}: {problem}"
        for view in views
        if view.board is not None
        for problem in canary_problems({row.model: row.rating for row in view.board.rows}, canaries, real)
    ]


def identical_candidates(answers: Iterable[Answer]) -> list[tuple[str, str]]:
    """Pairs of candidates whose answers are word for word the same on every prompt both answered (two or more).

    Candidates that differ only in a system prompt or a setting the server ignores (a chat template that drops
    the system message, for one) answer alike at temperature 0: their games are ties that say nothing.
    """
    by_model: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
    for answer in answers:
        by_model[answer.model][answer.prompt_id] = answer.turns
    pairs = []
    for first, second in itertools.combinations(by_model, 2):
        shared = by_model[first].keys() & by_model[second].keys()
        if len(shared) >= 2 and all(by_model[first][p] == by_model[second][p] for p in shared):
            pairs.append((first, second))
    return pairs
