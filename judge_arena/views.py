"""Views: one leaderboard per (judge, normalization), so raw and plain judging can be read side by side."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from judge_arena.config import ArenaConfig
from judge_arena.rating import Leaderboard, leaderboard
from judge_arena.records import Battle

BATTLE_COLUMNS = (
    "prompt_id",
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


def battles_frame(battles: Iterable[Battle]) -> pd.DataFrame:
    """The battles as a table, one row per judged game (the rating stage's input)."""
    rows = [
        (b.prompt_id, b.category, b.judge, b.normalization, b.model_a, b.model_b, b.label, b.winner, b.weight)
        for b in battles
    ]
    return pd.DataFrame(rows, columns=list(BATTLE_COLUMNS))


def rate_views(config: ArenaConfig, battles: Sequence[Battle]) -> list[View]:
    """Fit one leaderboard per judge and normalization, in config order."""
    frame = battles_frame(battles)
    rating = config.rating
    anchor = rating.anchor or config.pairing.baseline
    views = []
    for judge in config.judges:
        for normalization in config.normalizations:
            games = frame[(frame["judge"] == judge.name) & (frame["normalization"] == normalization)]
            decided = games[games["winner"].notna()]
            unparsed = len(games) - len(decided)
            if decided.empty:
                views.append(View(judge.name, normalization, None, len(games), unparsed, "no decided battle"))
                continue
            try:
                board = leaderboard(
                    decided,
                    baseline=config.pairing.baseline,
                    rounds=rating.bootstrap_rounds,
                    seed=rating.seed,
                    unit=rating.bootstrap_unit,
                    anchor=anchor,
                    anchor_rating=rating.anchor_rating,
                )
            except ValueError as exc:
                views.append(View(judge.name, normalization, None, len(games), unparsed, str(exc)))
                continue
            views.append(View(judge.name, normalization, board, len(games), unparsed))
    return views
