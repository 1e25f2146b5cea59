"""Views: one leaderboard per (judge, normalization), so raw and plain judging can be read side by side.

With two or more judges a *panel* judge is added, whose verdict on each game combines the judges' verdicts. A
judge that shares a model family with a candidate is flagged: its view also carries the leaderboard fitted
without those self-judged battles.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from judge_arena.config import ArenaConfig
from judge_arena.defence import canary_problems, enabled_canaries
from judge_arena.judge import outcome
from judge_arena.rating import Leaderboard, leaderboard
from judge_arena.records import Battle

PANEL = "panel"
"""The judge name of the panel's combined verdicts."""

BATTLE_COLUMNS = ("prompt_id", "category", "judge", "normalization", "model_a", "model_b", "label", "winner", "weight")

_SCORE = {"A>>B": 2, "A>B": 1, "A=B": 0, "B>A": -1, "B>>A": -2}


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
    """Panel only: the leaderboard when no judge votes on a battle of its own family (None when none does)."""


def battles_frame(battles: Iterable[Battle]) -> pd.DataFrame:
    """The battles as a table, one row per judged game (the rating stage's input)."""
    rows = [
        (b.prompt_id, b.category, b.judge, b.normalization, b.model_a, b.model_b, b.label, b.winner, b.weight)
        for b in battles
    ]
    return pd.DataFrame(rows, columns=list(BATTLE_COLUMNS))


def _label_of_score(score: float) -> str:
    if score >= 1.5:
        return "A>>B"
    if score >= 0.5:
        return "A>B"
    if score > -0.5:
        return "A=B"
    return "B>A" if score > -1.5 else "B>>A"


def panel_verdict(labels: Sequence[str], method: Literal["mean", "majority"]) -> str:
    """The panel's label from its judges' labels: the mean 5-point score, or the most frequent label.

    A majority split evenly between labels falls back to the mean, so the panel never picks a side by list order.
    """
    if method == "majority":
        ranked = Counter(labels).most_common()
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            return ranked[0][0]
    return _label_of_score(sum(_SCORE[label] for label in labels) / len(labels))


def panel_battles(battles: Iterable[Battle], method: Literal["mean", "majority"], strong_weight: float) -> list[Battle]:
    """One battle per game judged by the panel: the combination of every judge's parsed verdict on it."""
    games: dict[tuple[str, str, str, str], list[Battle]] = defaultdict(list)
    for battle in battles:
        games[(battle.prompt_id, battle.normalization, battle.model_a, battle.model_b)].append(battle)
    combined = []
    for group in games.values():
        labels = [b.label for b in group if b.label is not None]
        label = panel_verdict(labels, method) if labels else None
        winner, weight = outcome(label, strong_weight) if label is not None else (None, 0.0)
        first = group[0]
        combined.append(
            Battle(
                prompt_id=first.prompt_id,
                category=first.category,
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


def rate_views(config: ArenaConfig, battles: Sequence[Battle]) -> list[View]:
    """Fit one leaderboard per judge (and the panel, with two or more judges) and normalization."""
    judged = list(battles)
    judges = [j.name for j in config.judges]
    panel_without_self = pd.DataFrame()
    if len(judges) > 1:
        judged += panel_battles(battles, config.panel.method, config.rating.strong_weight)
        judges.append(PANEL)
        own = {j.name: set(_self_judged(config, j.name)) for j in config.judges}
        unbiased = [b for b in battles if not own[b.judge] & {b.model_a, b.model_b}]
        if len(unbiased) < len(battles):
            combined = panel_battles(unbiased, config.panel.method, config.rating.strong_weight)
            panel_without_self = battles_frame(combined)
    frame = battles_frame(judged)
    rating = config.rating

    def fit(decided: pd.DataFrame) -> Leaderboard:
        return leaderboard(
            decided,
            baseline=config.pairing.baseline,
            rounds=rating.bootstrap_rounds,
            seed=rating.seed,
            unit=rating.bootstrap_unit,
            anchor=rating.anchor or config.pairing.baseline,
            anchor_rating=rating.anchor_rating,
        )

    views = []
    for judge in judges:
        for normalization in config.normalizations:
            games = frame[(frame["judge"] == judge) & (frame["normalization"] == normalization)]
            decided = games[games["winner"].notna()]
            unparsed = len(games) - len(decided)
            if decided.empty:
                views.append(View(judge, normalization, None, len(games), unparsed, "no decided battle"))
                continue
            without_self = None
            try:
                board = fit(decided)
                if judge == PANEL and not panel_without_self.empty:
                    others = panel_without_self[panel_without_self["normalization"] == normalization]
                    without_self = fit(others[others["winner"].notna()])
            except ValueError as exc:
                views.append(View(judge, normalization, None, len(games), unparsed, str(exc)))
                continue
            views.append(
                View(judge, normalization, board, len(games), unparsed, "", _self_judged(config, judge), without_self)
            )
    return views


def canary_warnings(config: ArenaConfig, views: Sequence[View]) -> list[str]:
    """One line per view and canary rated above a real candidate in that view (empty when no canary is on)."""
    canaries = enabled_canaries(config.canaries)
    real = [c.name for c in config.candidates]
    return [
        f"{view.judge}/{view.normalization}: {problem}"
        for view in views
        if view.board is not None
        for problem in canary_problems({row.model: row.rating for row in view.board.rows}, canaries, real)
    ]
