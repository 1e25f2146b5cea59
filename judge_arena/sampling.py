"""Adaptive pairing: which games to judge next, so that fewer judge calls give the same ranking.

A run with `pairing.mode: adaptive` first judges every candidate pair on a few prompts (`initial_prompts`). Then,
step after step, `next_items` fits every view's leaderboard (one per judge and normalization) on the battles so far,
exactly as the report fits it (same bootstrap rounds, seed, unit and anchor), and looks at the models next to each
other in that order: where their 95 % intervals still overlap, the ranking is not settled. It chooses the
`batch_size` (pair, prompt) items that most reduce the variance of those neighbours' rating differences, and the run
judges them. It stops when every view's neighbours are separated (the report then gives each model a rank of its
own); when those still overlapping could not be separated even by every item left, their gap taken as wide as its
95 % bound allows (two models of equal strength are not worth every remaining call); when the judge-call budget is
spent; or when no unplayed item would help.

Why the report's bootstrap rather than the Hessian of the likelihood: a strong verdict counts as three battles and
both orders of a game share their answers, so the Hessian of the weighted likelihood claims more information than
the battles hold (on the simulator its variances are 5–10 times smaller than the prompt bootstrap's), and its
intervals would stop a run the report then shows unseparated. Resampling whole prompts accounts for both, and
stopping on the report's own intervals means the stop is what the user reads. The bootstrap's covariance C (in
Elo²) still predicts the effect of one more item: an item of pair x whose first model wins with probability p adds
about v = 2 p (1 − p) · i times x xᵀ to the information (x: +1 for one model, −1 for the other; two games, one per
order; i the information of a game, `_game_information`), and by Sherman–Morrison the variance of a neighbour
difference d becomes dᵀCd − v (dᵀCx)² / (1 + v xᵀCx). An item of the neighbours themselves usually helps most; an
item with a common opponent helps too, and the greedy batch updates C after each choice so that one batch spreads.
The cost is one leaderboard fit per view and step: 0.06–0.11 s of CPU at 100 rounds, 8 models and 1,100 battles.

`next_items` is a pure function of its arguments: the same battles and played items give the same choice, so
rerunning an interrupted run replays its games from the cache one for one.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from judge_arena.config import ArenaConfig
from judge_arena.rating import FloatArray, Leaderboard, LeaderboardOptions, leaderboard
from judge_arena.records import Battle
from judge_arena.views import battles_frame, leaderboard_options

Pair = tuple[str, str]

_ORDERS = 2
"""Games of an item in one view: one per order."""

_Z = 1.959964
"""Two-sided 95 % normal quantile: the report's intervals are 95 %."""

_PARTED = 2 * _Z / math.sqrt(2)
"""Gap over the deviation of a difference at which two independent 95 % intervals of equal width just part."""


@dataclass(frozen=True)
class Item:
    """A pair of candidates on one prompt: both orders of its game, under every judge and normalization."""

    pair: Pair
    prompt_id: str


@dataclass(frozen=True)
class Plan:
    """What an adaptive run may play and how it chooses (see `plan_of`)."""

    pairs: tuple[Pair, ...]
    """The candidate pairs, in the order ties between equally useful pairs are broken."""
    prompt_ids: tuple[str, ...]
    views: tuple[tuple[str, str], ...]
    """The (judge, normalization) views every item is judged in."""
    initial_prompts: int
    """Prompts each pair is judged on before the first choice."""
    batch_size: int
    """Items chosen per step."""
    max_items: int
    """Items played at most (the judge-call budget)."""
    options: LeaderboardOptions
    """The rating options of the report's leaderboards."""


def plan_of(config: ArenaConfig, pairs: Sequence[Pair], prompt_ids: Sequence[str]) -> Plan:
    """The plan of an adaptive run of `config` over `pairs` (its candidate pairs) and the prompts."""
    pairing = config.pairing
    return Plan(
        pairs=tuple(pairs),
        prompt_ids=tuple(prompt_ids),
        views=tuple((judge.name, normalization) for judge in config.judges for normalization in config.normalizations),
        initial_prompts=pairing.initial_prompts,
        batch_size=pairing.batch_size,
        max_items=pairing.items_at_most(len(pairs) * len(prompt_ids), config.games_per_item),
        options=leaderboard_options(config),
    )


def next_items(battles: Sequence[Battle], played: Sequence[Item], plan: Plan) -> tuple[Item, ...] | None:
    """The next items to judge given the battles so far and the items played (judged or attempted), or None when
    the run is done: every view's neighbours in rank are separated, the budget is spent, or nothing useful is left.

    The first call (nothing played) returns the initial round: each pair on `initial_prompts` prompts, the pairs
    taking different prompts where there are enough. A view that cannot be fitted yet (a model without a decided
    battle, say) makes the step play every pair's next prompt in turn instead of choosing.
    """
    left = plan.max_items - len(played)
    chooser = _Chooser(plan, played)
    if left <= 0 or not chooser.any_left():
        return None
    if not played:
        return chooser.initial_round()[:left]
    size = min(plan.batch_size, left)
    views = _unsettled_views(battles, plan, chooser.left)
    if views is None:
        return chooser.in_turn(size)
    if not views:
        return None
    return chooser.most_informative(views, size) or None


@dataclass
class _View:
    """One view's state for the choice: the bootstrap covariance and what separates its unsettled neighbours."""

    models: list[str]
    ratings: FloatArray
    covariance: FloatArray
    """Of the bootstrap ratings, models × models, updated as items are chosen."""
    neighbours: FloatArray
    """One row per pair of neighbours in rank whose intervals overlap: +1 for one, −1 for the other."""
    log_scale: float
    """ln(base) / scale: Elo to log-odds."""
    per_game: float
    """The information (Elo⁻²) a game adds, per unit of p (1 − p); see `_game_information`."""

    @classmethod
    def of(
        cls,
        games: pd.DataFrame,
        board: Leaderboard,
        options: LeaderboardOptions,
        pairs: Sequence[Pair],
        left: Callable[[Pair], int],
    ) -> _View | None:
        """The view of a board fitted on `games`, or None when none of its neighbours needs or can use more games:
        each two models next to each other in rank are separated, or could not be even by every item left."""
        models = list(board.samples.columns)
        ratings = np.array([next(row.rating for row in board.rows if row.model == model) for model in models])
        covariance = np.atleast_2d(np.cov(board.samples.to_numpy(), rowvar=False))
        log_scale = math.log(options.get("base", 10.0)) / options.get("scale", 400.0)
        view = cls(models, ratings, covariance, np.zeros((0, len(models))), log_scale, 0.0)
        view.per_game = _game_information(games, models, ratings, covariance, log_scale)
        x, v = view.directions(pairs)
        least = covariance
        for k, pair in enumerate(pairs):  # every item left, played: the least variance the rest of the run can give
            least = _plus_items(least, x[k], float(v[k]) * left(pair))
        neighbours = []
        for better, worse in itertools.pairwise(board.rows):
            if better.lower > worse.upper:
                continue
            difference = np.zeros(len(models))
            difference[models.index(better.model)] = 1.0
            difference[models.index(worse.model)] = -1.0
            deviation = math.sqrt(float(difference @ covariance @ difference))
            # Optimistic: the gap may be as wide as its upper 95 % bound; hopeless if even then every item left
            # could not shrink the difference's deviation enough for the two intervals to part.
            if better.rating - worse.rating + _Z * deviation >= _PARTED * math.sqrt(difference @ least @ difference):
                neighbours.append(difference)
        if not neighbours:
            return None
        view.neighbours = np.array(neighbours)
        return view

    def directions(self, pairs: Sequence[Pair]) -> tuple[FloatArray, FloatArray]:
        """Each pair's ±1 vector over the models, and the information v one item of it adds."""
        index = {model: k for k, model in enumerate(self.models)}
        x = np.zeros((len(pairs), len(self.models)))
        for row, (first, second) in enumerate(pairs):
            x[row, index[first]], x[row, index[second]] = 1.0, -1.0
        p = 1.0 / (1.0 + np.exp(-(x @ self.ratings) * self.log_scale))
        return x, _ORDERS * p * (1.0 - p) * self.per_game

    def reductions(self, x: FloatArray, v: FloatArray) -> FloatArray:
        """Per pair: how much one more item of it lowers the summed variance of the unsettled neighbour differences."""
        cx = x @ self.covariance
        spread = np.einsum("pm,pm->p", cx, x)
        along = self.neighbours @ cx.T
        reduction: FloatArray = v * np.sum(along**2, axis=0) / (1.0 + v * spread)
        return reduction

    def add(self, x: FloatArray, v: float) -> None:
        """Account for one more item along `x`."""
        self.covariance = _plus_items(self.covariance, x, v)


def _plus_items(covariance: FloatArray, x: FloatArray, v: float) -> FloatArray:
    """The covariance once information v x xᵀ is added (Sherman–Morrison)."""
    cx = covariance @ x
    after: FloatArray = covariance - v * np.outer(cx, cx) / (1.0 + v * float(x @ cx))
    return after


def _unsettled_views(battles: Sequence[Battle], plan: Plan, left: Callable[[Pair], int]) -> list[_View] | None:
    """Every view with neighbours more games may separate; None when a view cannot be fitted or lacks a model."""
    frame = battles_frame(battles)
    decided = frame[frame["winner"].notna()]
    by_view = dict(iter(decided.groupby(["judge", "normalization"], sort=True)))
    models = {model for pair in plan.pairs for model in pair}
    views = []
    for key in plan.views:
        if key not in by_view:
            return None
        try:
            board = leaderboard(by_view[key], **plan.options)
        except ValueError:
            return None
        if set(board.samples.columns) != models:
            return None
        view = _View.of(by_view[key], board, plan.options, plan.pairs, left)
        if view is not None:
            views.append(view)
    return views


def _game_information(
    games: pd.DataFrame, models: list[str], ratings: FloatArray, covariance: FloatArray, log_scale: float
) -> float:
    """The information (Elo⁻²) one game at p (1 − p) = 1 adds, as the bootstrap sees it.

    The weighted likelihood says w̄ (ln base / scale)², w̄ the games' mean weight; but its Hessian H counts strong
    verdicts and the two orders of a game as independent battles, and the bootstrap's covariance C comes out about
    φ H⁺ with φ > 1 (5–10 on the simulator). tr(C H) / (models − 1) estimates φ, and the information is divided by it.
    """
    index = {model: k for k, model in enumerate(models)}
    first = games["model_a"].map(index).to_numpy(dtype=np.intp)
    second = games["model_b"].map(index).to_numpy(dtype=np.intp)
    weight = games["weight"].to_numpy(dtype=np.float64)
    p = 1.0 / (1.0 + np.exp(-(ratings[first] - ratings[second]) * log_scale))
    curvature = weight * p * (1.0 - p) * log_scale**2
    hessian = np.zeros_like(covariance)
    for rows, columns, sign in (
        (first, first, 1.0),
        (second, second, 1.0),
        (first, second, -1.0),
        (second, first, -1.0),
    ):
        np.add.at(hessian, (rows, columns), sign * curvature)
    dispersion = max(1.0, float(np.trace(covariance @ hessian)) / (len(models) - 1))
    return float(weight.mean()) * log_scale**2 / dispersion


class _Chooser:
    """The prompts each pair has left, in the order they are taken, and the counts that spread the choice."""

    def __init__(self, plan: Plan, played: Sequence[Item]) -> None:
        self._plan = plan
        done = {(item.pair, item.prompt_id) for item in played}
        self._uses = Counter(item.prompt_id for item in played)
        prompts = plan.prompt_ids
        self._left: dict[Pair, list[str]] = {}
        for q, pair in enumerate(plan.pairs):
            # Pair q starts q · initial_prompts prompts further on, so the initial round covers many prompts.
            start = (q * plan.initial_prompts) % len(prompts) if prompts else 0
            rotated = prompts[start:] + prompts[:start]
            self._left[pair] = [prompt for prompt in rotated if (pair, prompt) not in done]

    def left(self, pair: Pair) -> int:
        """The prompts the pair has left."""
        return len(self._left[pair])

    def any_left(self) -> bool:
        """Whether any pair has a prompt left."""
        return any(self._left.values())

    def initial_round(self) -> tuple[Item, ...]:
        """Every pair on its first `initial_prompts` prompts."""
        return tuple(
            Item(pair, prompt) for pair in self._plan.pairs for prompt in self._left[pair][: self._plan.initial_prompts]
        )

    def in_turn(self, size: int) -> tuple[Item, ...]:
        """Up to `size` items: each pair with prompts left takes its next one, in turn."""
        chosen: list[Item] = []
        while len(chosen) < size and self.any_left():
            for pair in self._plan.pairs:
                if self._left[pair] and len(chosen) < size:
                    chosen.append(self._take(pair))
        return tuple(chosen)

    def most_informative(self, views: Sequence[_View], size: int) -> tuple[Item, ...]:
        """Up to `size` items, greedily: each the pair whose next item most lowers the unsettled variance."""
        pairs = self._plan.pairs
        directions = [view.directions(pairs) for view in views]
        chosen: list[Item] = []
        for _ in range(size):
            gain = sum(view.reductions(x, v) for view, (x, v) in zip(views, directions, strict=True))
            gain = np.where([bool(self._left[pair]) for pair in pairs], gain, 0.0)
            best = int(np.argmax(gain))
            if gain[best] <= 0.0:
                break
            for view, (x, v) in zip(views, directions, strict=True):
                view.add(x[best], float(v[best]))
            chosen.append(self._take(pairs[best]))
        return tuple(chosen)

    def _take(self, pair: Pair) -> Item:
        """The pair's unplayed prompt used least so far (earliest in its order on ties), now taken."""
        left = self._left[pair]
        prompt = min(left, key=lambda p: self._uses[p])
        left.remove(prompt)
        self._uses[prompt] += 1
        return Item(pair, prompt)
