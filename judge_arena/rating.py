"""Bradley–Terry ratings with bootstrap intervals, fitted from pairwise verdicts, optionally style-controlled.

Input is a DataFrame of battles, one row per judged game, with columns `prompt_id`, `model_a`, `model_b`,
`winner` ("model_a", "model_b" or "tie") and `weight` (how many battles the game counts as). A tie counts as
half a win for each side. Style control also reads `<feature>_a` and `<feature>_b` for each style feature.
`fit_leaderboard` also takes the FastChat / Chatbot Arena layout (no `weight` or `prompt_id`, "tie (bothbad)").

The model is P(a beats b) = 1 / (1 + exp(θ_b − θ_a − γ · z)), fitted by maximum likelihood with a hand-written
Newton solver. z is the game's vector of style covariates (empty without style control): for each feature,
(a − b) / (a + b + 1), standardized over the games, as Chatbot Arena and Arena-Hard-Auto v0.1 do. The solver
works on a binomial-logit *design*: one row per unique (pair, covariate vector), with weighted wins and losses.
Without covariates that is one row per compared pair, so the fit runs on aggregated counts; with them most games
get a row of their own. docs/rating.md describes the model and where each choice comes from.

L2 penalty: the loss carries `l2 / 2 · (‖θ‖² + ‖γ‖²)` with `l2 = 1e-6` by default: practically none, like the
references' unpenalised fits (Arena-Hard-Auto v0.1's `LogisticRegression(penalty=None)`). It keeps the optimum
finite when a model wins or loses every game (perfect separation: such a model lands a few thousand Elo away
from the others instead of at infinity) and keeps every Newton system positive definite. On normal
(non-separated) data it moves a rating by about `l2 · θ / curvature` in θ units: ~1e-5 Elo for 6 models and 300
games, far below the 0.01 Elo budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypedDict, Unpack

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
Unit = Literal["prompt", "battle"]

DEFAULT_L2 = 1e-6
"""Default L2 penalty on the log-strengths and style coefficients; see the module docstring."""

STYLE_SETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "length": ("tokens",),
        "markdown": ("headers", "lists", "bold"),
        "both": ("tokens", "headers", "lists", "bold"),
    }
)
"""Named sets of style features, as Arena-Hard-Auto v0.1's `--length-control-only`, `--markdown-control-only` and
`--style-control`; each feature is its own covariate, so "both" has four. The names are the stems of
`judge_arena.style.StyleFeatures`' fields."""

MIN_PROMPTS = 2
"""Default of `leaderboards_by(min_prompts=...)`: prompts every model of a category must appear in for its board to
be fitted. Two is the least a prompt-level bootstrap can vary: Arena-Hard's topic clusters have two prompts each,
MT-Bench's categories ten. Intervals from so few prompts are wide, and with fewer than about 20 they also cover
less often than 95 % (docs/rating.md has the figures): a category's board is a hint, never a verdict."""

FASTCHAT_WINNERS: Mapping[str, str] = MappingProxyType(
    {"model_a": "model_a", "model_b": "model_b", "tie": "tie", "tie (bothbad)": "tie"}
)
"""`fit_leaderboard`'s accepted winners (FastChat's and Chatbot Arena's) and what each counts as."""

_COLUMNS = ("prompt_id", "model_a", "model_b", "winner", "weight")
_SCORE_OF_A = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
_TOLERANCE = 1e-10
_ROUNDING = 1e-15
_MAX_ITERATIONS = 200
# A separated model needs about one Newton step per unit of θ (≈ 174 Elo) to reach its penalised optimum,
# which sits near θ ≈ ln(games / l2) ≈ 30; 200 iterations leave a wide margin.
_MIN_SPREAD = 1e-12
# The ratios lie in (−1, 1): a spread this small is rounding noise around a constant, not variation.
_BLOCK_ROWS = 8192
# Design rows per block of a pass (see _Design): 64 KiB per temporary, and below the ~10,000 elements from which
# OpenBLAS spreads even a dot product over threads.


class InsufficientDataError(ValueError):
    """Well-formed battles that cannot support the requested fit.

    Raised for a disconnected comparison graph, an anchor or reference model without battles, a style feature
    that does not vary over the games, and a fit that does not converge. `leaderboards_by` turns it into a
    category's note.
    """


class _Block(NamedTuple):
    """A run of consecutive design rows and the pairs it covers; rows are sorted by pair."""

    rows: slice
    pairs: IntArray
    """The pairs with rows in the block, ascending."""
    starts: IntArray
    """Offset of each of those pairs' first row within the block."""
    lengths: IntArray
    """Number of each of those pairs' rows within the block."""


class _Probabilities(NamedTuple):
    """Per design row at one β: the probabilities p and q that the row's first model wins and loses, and, when
    the loss is wanted, −log p = softplus(−η) and −log q = softplus(η)."""

    p: FloatArray
    q: FloatArray
    minus_log_p: FloatArray | None
    minus_log_q: FloatArray | None

    def rows(self, rows: slice) -> _Probabilities:
        """The same for a run of rows."""
        minus_log_p, minus_log_q = self.minus_log_p, self.minus_log_q
        return _Probabilities(
            self.p[rows],
            self.q[rows],
            None if minus_log_p is None else minus_log_p[rows],
            None if minus_log_q is None else minus_log_q[rows],
        )


def _probabilities(eta: FloatArray, *, with_logs: bool) -> _Probabilities:
    """p = σ(η) and q = σ(−η), with their minus logs when `with_logs`, each exact whatever the sign of η."""
    # e^−η with the exponent capped at 690: far on the losing side p = 1 / (1 + e^−η) then stays positive,
    # q = e^−η·p comes out 1 rather than inf·0, and nothing overflows.
    odds = np.minimum(-eta, 690.0)
    np.exp(odds, out=odds)
    p = odds + 1.0
    np.reciprocal(p, out=p)
    q = np.multiply(odds, p, out=odds)
    if not with_logs:
        return _Probabilities(p, q, None, None)
    # softplus(±η) = max(±η, 0) + log(1 + e^−|η|): the loss stays a sum of non-negative terms, with no
    # cancellation even when a separated pair has |η| ≫ 1.
    log_tail = np.log1p(np.exp(-np.abs(eta)))
    return _Probabilities(p, q, np.maximum(-eta, 0.0) + log_tail, np.maximum(eta, 0.0) + log_tail)


@dataclass(frozen=True, eq=False)
class _Design:
    """A binomial-logit design matrix with rows [e_first − e_second of the row's pair, in `basis` | covariates],
    kept factored.

    Rows are sorted by pair, and every pass over them goes block by block (`blocks`): sums per pair are then
    reductions over contiguous runs, a block's temporaries stay in the CPU cache, and its products with the
    covariates are small enough that OpenBLAS runs them on the calling thread. Over all the rows at once,
    OpenBLAS multi-threads them, and its spinning threads made a style-controlled bootstrap 3–14 times slower
    whenever another process held the second core of a 2-core machine.
    """

    first: IntArray
    """(pairs,): the lower model index of each compared pair."""
    second: IntArray
    """(pairs,): the higher model index of each compared pair."""
    pair_starts: IntArray
    """(pairs + 1,): the rows of pair j are pair_starts[j]:pair_starts[j + 1]."""
    covariates: FloatArray
    """(k, rows): the rows' standardized style covariates, one contiguous array per feature."""
    basis: FloatArray
    """(m, m − 1): orthonormal basis of the sum-zero subspace; θ = basis @ β, so the gauge Σθ = 0 is built in."""
    block_rows: int = _BLOCK_ROWS

    @property
    def width(self) -> int:
        """Number of parameters: m − 1 contrasts, then k style coefficients."""
        return int(self.basis.shape[1] + self.covariates.shape[0])

    @cached_property
    def blocks(self) -> tuple[_Block, ...]:
        """The rows in runs of at most `block_rows`."""
        rows = self.covariates.shape[1]
        blocks = []
        for lo in range(0, rows, self.block_rows):
            hi = min(lo + self.block_rows, rows)
            begin = int(np.searchsorted(self.pair_starts, lo, side="right")) - 1
            end = int(np.searchsorted(self.pair_starts, hi, side="left"))
            bounds = np.clip(self.pair_starts[begin : end + 1], lo, hi) - lo
            blocks.append(_Block(slice(lo, hi), np.arange(begin, end), bounds[:-1], np.diff(bounds)))
        return tuple(blocks)

    def pair_log_odds(self, params: FloatArray) -> FloatArray:
        """θ_first − θ_second of each pair: the model part of its rows' log-odds."""
        theta = self.basis @ params[: self.basis.shape[1]]
        differences: FloatArray = theta[self.first] - theta[self.second]
        return differences

    def block_log_odds(self, block: _Block, pair_log_odds: FloatArray, gamma: FloatArray) -> FloatArray:
        """η of a block's rows, from `pair_log_odds(β)` and the style coefficients γ."""
        eta: FloatArray = np.repeat(pair_log_odds[block.pairs], block.lengths) + gamma @ self.covariates[:, block.rows]
        return eta

    def probabilities(self, params: FloatArray) -> _Probabilities:
        """Every row's `_probabilities` at β, with their minus logs."""
        pair_log_odds, gamma = self.pair_log_odds(params), params[self.basis.shape[1] :]
        parts = [
            _probabilities(self.block_log_odds(block, pair_log_odds, gamma), with_logs=True) for block in self.blocks
        ]
        return _Probabilities(*(np.concatenate(values) for values in zip(*parts, strict=True)))

    def from_pairs(self, per_pair: FloatArray) -> FloatArray:
        """Σ_pairs per_pair · (e_first − e_second) in `basis`: values per pair (last axis) brought to the m − 1
        contrast parameters, as the design's transpose does."""
        m = self.basis.shape[0]
        per_model = np.zeros((*per_pair.shape[:-1], m))
        for index in np.ndindex(per_pair.shape[:-1]):
            values = per_pair[index]
            per_model[index] = np.bincount(self.first, values, m) - np.bincount(self.second, values, m)
        contrasts: FloatArray = per_model @ self.basis
        return contrasts


class _Likelihood:
    """Σ wins·log(1 + e^−η) + losses·log(1 + e^η) + l2/2·‖β‖² over the rows of a design, η = design @ β.

    `point` gives the loss and its gradient at β and keeps every row's curvature there, from which `hessian`
    builds the Hessian at that point when the solver needs it.
    """

    def __init__(self, design: _Design, wins: FloatArray, losses: FloatArray, l2: float) -> None:
        self.design = design
        self.wins = wins
        self.losses = losses
        self.games = wins + losses
        self.l2 = l2
        self._curvature = np.empty_like(wins)

    def point(self, params: FloatArray, at: _Probabilities | None = None) -> tuple[float, FloatArray]:
        """The penalised loss at β and its gradient; `at`, when given, holds the rows' probabilities at β."""
        loss, gradient = self._evaluate(params, at, with_loss=True)
        return loss + 0.5 * self.l2 * float(params @ params), gradient

    def gradient(self, params: FloatArray) -> FloatArray:
        """The gradient at β alone, a third cheaper than `point`."""
        return self._evaluate(params, None, with_loss=False)[1]

    def _evaluate(self, params: FloatArray, at: _Probabilities | None, *, with_loss: bool) -> tuple[float, FloatArray]:
        """The unpenalised loss (0 unless `with_loss`) and the penalised gradient at β; keeps the curvature."""
        design = self.design
        pair_log_odds = design.pair_log_odds(params)
        gamma = params[design.basis.shape[1] :]
        loss = 0.0
        per_pair = np.zeros(len(design.first))
        style = np.zeros(len(gamma))
        for block in design.blocks:
            rows = block.rows
            wins, losses = self.wins[rows], self.losses[rows]
            p, q, minus_log_p, minus_log_q = (
                _probabilities(design.block_log_odds(block, pair_log_odds, gamma), with_logs=with_loss)
                if at is None
                else at.rows(rows)
            )
            if minus_log_p is not None and minus_log_q is not None:
                loss += float(wins @ minus_log_p + losses @ minus_log_q)
            # Same as games·p − wins, but without cancelling games·p against wins when p → 1 (separation).
            residual = p * losses
            residual -= q * wins
            curvature = np.multiply(self.games[rows], p, out=self._curvature[rows])
            curvature *= q
            per_pair[block.pairs] += np.add.reduceat(residual, block.starts)
            style += design.covariates[:, rows] @ residual
        return loss, np.concatenate([design.from_pairs(per_pair), style]) + self.l2 * params

    def hessian(self) -> FloatArray:
        """The Hessian at the last point evaluated: design.T @ diag(curvature) @ design + l2·I."""
        design = self.design
        split, width = design.basis.shape[1], design.width
        pairs, k = len(design.first), design.covariates.shape[0]
        per_pair = np.zeros(pairs)
        cross = np.zeros((k, pairs))
        hessian = np.empty((width, width))
        style = hessian[split:, split:]
        style[:] = 0.0
        for block in design.blocks:
            covariates = design.covariates[:, block.rows]
            curvature = self._curvature[block.rows]
            weighted = covariates * curvature
            per_pair[block.pairs] += np.add.reduceat(curvature, block.starts)
            cross[:, block.pairs] += np.add.reduceat(weighted, block.starts, axis=1)
            style += weighted @ covariates.T
        m = design.basis.shape[0]
        # The model block is basis.T @ L @ basis, L the Laplacian of the pair-weighted comparison graph.
        laplacian = np.zeros((m, m))
        laplacian[design.first, design.second] = -per_pair
        laplacian[design.second, design.first] = -per_pair
        laplacian[np.diag_indices(m)] = -laplacian.sum(axis=1)
        hessian[:split, :split] = design.basis.T @ laplacian @ design.basis
        hessian[split:, :split] = design.from_pairs(cross)
        hessian[:split, split:] = hessian[split:, :split].T
        hessian[np.diag_indices(width)] += self.l2
        return hessian


@dataclass(frozen=True, eq=False)
class _Aggregate:
    """Battles aggregated once: the design (one row per unique comparison) and counts per (unit, design row).

    Refitting on a resample only needs new unit multiplicities: wins and losses per design row are then
    sums over each row's run of cells, with no pass over the battles.
    """

    models: tuple[str, ...]
    features: tuple[str, ...]
    design: _Design
    """Pair contrasts and the k standardized style covariates; every row oriented from its pair's lower model
    index."""
    cell_unit: IntArray
    """(cells,): the unit of each cell; cells are sorted by design row."""
    row_starts: IntArray
    """(rows,): each design row's first cell."""
    cell_wins: FloatArray
    """Weighted wins of the design row's first model in the cell, ties counting half."""
    cell_losses: FloatArray
    """Weighted losses of the same model: the cell's games minus its wins."""
    n_units: int

    def counts(self, multiplicity: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        """Wins and losses per design row, unit u counted `multiplicity[u]` times (default once)."""
        factor = 1.0 if multiplicity is None else multiplicity[self.cell_unit]
        wins: FloatArray = factor * self.cell_wins
        losses: FloatArray = factor * self.cell_losses
        # Rows left unmerged (see _aggregate) are one cell each, and summing runs of one costs five multiplications.
        if len(self.row_starts) < len(self.cell_unit):
            wins = np.add.reduceat(wins, self.row_starts)
            losses = np.add.reduceat(losses, self.row_starts)
        return wins, losses

    def theta(self, params: FloatArray) -> FloatArray:
        """Log-strengths, models on the last axis, from parameters (β then γ) on the last axis."""
        basis = self.design.basis
        theta: FloatArray = params[..., : basis.shape[1]] @ basis.T
        return theta

    def gamma(self, params: FloatArray) -> FloatArray:
        """Style coefficients, features on the last axis, from parameters (β then γ) on the last axis."""
        gamma: FloatArray = params[..., self.design.basis.shape[1] :]
        return gamma


@dataclass(frozen=True)
class LeaderboardRow:
    """One model's line of the leaderboard."""

    model: str
    rating: float
    """Maximum-likelihood rating on the full data (under style control: the model's parameter of the joint fit)."""
    lower: float
    """2.5th percentile of the bootstrap ratings."""
    upper: float
    """97.5th percentile of the bootstrap ratings."""
    win_rate: float | None
    """Expected win rate against the reference model in % (Arena-Hard-Auto's score), or None. Under style control,
    from the ratings alone: every covariate at its mean (z = 0)."""
    win_rate_lower: float | None
    """2.5th percentile of the bootstrap win rates, or None."""
    win_rate_upper: float | None
    """97.5th percentile of the bootstrap win rates, or None."""
    battles: int
    """Number of games (rows, whatever their weight) involving the model."""
    rank: int
    """Interval-aware rank: 1 + number of models whose lower bound is above this model's upper bound."""
    position: int
    """Plain order by rating, 1 for the best."""


@dataclass(frozen=True)
class StyleCoefficient:
    """The fitted effect of one style covariate on the log-odds of winning."""

    name: str
    """The feature, e.g. "tokens": the stem of the battles' `<name>_a` and `<name>_b` columns."""
    value: float
    """Change in the log-odds (natural log) of winning per standard deviation of the covariate, full-data fit."""
    lower: float
    """2.5th percentile of the bootstrap coefficients."""
    upper: float
    """97.5th percentile of the bootstrap coefficients."""

    def __str__(self) -> str:
        """E.g. "tokens coefficient 0.25 [0.22, 0.28]"."""
        return f"{self.name} coefficient {self.value:.2f} [{self.lower:.2f}, {self.upper:.2f}]"


@dataclass(frozen=True, eq=False)
class Leaderboard:
    """Leaderboard rows sorted by rating (best first), with the bootstrap samples they were computed from."""

    rows: tuple[LeaderboardRow, ...]
    samples: pd.DataFrame
    """Bootstrap ratings, rounds × models."""
    reference: str | None
    """Model the win rates are against (the baseline, else the anchor), or None when win rates are omitted."""
    coefficients: tuple[StyleCoefficient, ...] = ()
    """Style coefficients in the order the features were given; empty without style control."""

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, one line per model, in leaderboard order."""
        return pd.DataFrame([asdict(row) for row in self.rows])


@dataclass(frozen=True, eq=False)
class CategoryLeaderboard:
    """One category's leaderboard, or the reason it has none."""

    board: Leaderboard | None
    """The category's leaderboard; None when `note` says why it was not fitted."""
    note: str | None
    """Why there is no board (too few battles, a disconnected comparison graph, ...), else None."""
    battles: int
    """Games (rows, whatever their weight) in the category."""


class LeaderboardOptions(TypedDict, total=False):
    """Keyword arguments of `leaderboard`, which `leaderboards_by` passes on; same meaning and defaults."""

    baseline: str | None
    rounds: int
    seed: int
    unit: Unit
    anchor: str | None
    anchor_rating: float
    scale: float
    base: float
    init_rating: float
    l2: float
    style: str | Sequence[str] | None


def fit_bradley_terry(
    battles: pd.DataFrame,
    *,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    l2: float = DEFAULT_L2,
    style: str | Sequence[str] | None = None,
) -> pd.Series:
    """Fit Bradley–Terry ratings by penalised maximum likelihood; return ratings indexed by sorted model name.

    Ratings are Elo-like: `scale · θ / ln(base)` shifted so that `anchor` sits at `anchor_rating`, or, when
    `anchor` is None, so that the mean rating is `init_rating`. `style` (a name in STYLE_SETS, or feature names)
    fits the style covariates jointly and returns the model parameters of that fit; `leaderboard` also reports
    the coefficients. Raises ValueError on malformed battles, InsufficientDataError (a ValueError) on an anchor
    without battles, a disconnected comparison graph (naming its components) or a style feature that never varies.
    """
    _check_options(scale=scale, base=base, l2=l2)
    aggregate = _aggregate(battles, "prompt", _style_features(style))
    _check_anchor(anchor, aggregate.models)
    params = _newton(aggregate.design, *aggregate.counts(), np.zeros(aggregate.design.width), l2)
    ratings = _to_ratings(
        aggregate.theta(params),
        aggregate.models,
        scale=scale,
        base=base,
        init_rating=init_rating,
        anchor=anchor,
        anchor_rating=anchor_rating,
    )
    return pd.Series(ratings, index=pd.Index(aggregate.models, name="model"), name="rating")


def bootstrap_ratings(
    battles: pd.DataFrame,
    *,
    rounds: int = 100,
    seed: int = 0,
    unit: Unit = "prompt",
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    l2: float = DEFAULT_L2,
    style: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Refit the ratings on `rounds` resamples drawn with replacement; return a rounds × models DataFrame.

    `unit="prompt"` resamples whole prompts, so all games of a prompt (both orders, every pair) move together
    and the intervals account for their correlation; `unit="battle"` resamples single rows as Arena-Hard-Auto
    does. The draws come from `numpy.random.default_rng(seed)`: the same seed gives the same samples. Every
    round is anchored like `fit_bradley_terry`, and `style` works as there. A resample that drops all games of a
    model, or cuts the comparison graph, still gives finite ratings: the L2 penalty pulls the unconstrained part
    to the mean.
    """
    _check_options(scale=scale, base=base, l2=l2)
    aggregate = _aggregate(battles, unit, _style_features(style))
    _check_anchor(anchor, aggregate.models)
    _, samples = _bootstrap(aggregate, rounds=rounds, seed=seed, l2=l2)
    ratings = _to_ratings(
        aggregate.theta(samples),
        aggregate.models,
        scale=scale,
        base=base,
        init_rating=init_rating,
        anchor=anchor,
        anchor_rating=anchor_rating,
    )
    return pd.DataFrame(
        ratings, index=pd.RangeIndex(rounds, name="round"), columns=pd.Index(aggregate.models, name="model")
    )


def refit_ratings(
    battles: pd.DataFrame,
    multiplicities: pd.DataFrame,
    *,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    l2: float = DEFAULT_L2,
    style: str | Sequence[str] | None = None,
) -> tuple[pd.Series, pd.DataFrame]:
    """The full-data ratings, and the ratings refitted once per row of `multiplicities` (rounds × prompt ids:
    how many times each prompt's games count in that round; a prompt missing from the columns counts 0).

    `bootstrap_ratings` draws its own resamples; this takes them, so two sets of battles (two runs on the same
    prompts) can be refitted on one and the same sample, e.g. for a paired bootstrap of their difference.
    Options as in `fit_bradley_terry`; style covariates keep their full-data standardization in every round.
    """
    _check_options(scale=scale, base=base, l2=l2)
    aggregate = _aggregate(battles, "prompt", _style_features(style))
    _check_anchor(anchor, aggregate.models)
    # The aggregate numbers its units in this same order.
    _, units = pd.factorize(battles["prompt_id"])
    weights = multiplicities.reindex(columns=units, fill_value=0).to_numpy(dtype=np.float64)
    full, params = _refit(aggregate, weights, len(weights), l2)
    scaled = _to_ratings(
        aggregate.theta(np.vstack([full, params])),
        aggregate.models,
        scale=scale,
        base=base,
        init_rating=init_rating,
        anchor=anchor,
        anchor_rating=anchor_rating,
    )
    models = pd.Index(aggregate.models, name="model")
    return (
        pd.Series(scaled[0], index=models, name="rating"),
        pd.DataFrame(scaled[1:], index=multiplicities.index, columns=models),
    )


def leaderboard(
    battles: pd.DataFrame,
    *,
    baseline: str | None = None,
    rounds: int = 100,
    seed: int = 0,
    unit: Unit = "prompt",
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    l2: float = DEFAULT_L2,
    style: str | Sequence[str] | None = None,
) -> Leaderboard:
    """Fit the ratings, bootstrap 95 % percentile intervals and rank the models, best first.

    `anchor` defaults to `baseline` (when given), else ratings are centred on `init_rating`. Win rates are
    against `baseline`, else against `anchor`; with neither they are None. The reference's own win rate is
    50 %. Point ratings are the full-data fit; intervals are percentiles of the bootstrap.
    Ties in rating are ordered by model name so that the plain order is deterministic.

    `style` turns on style control: a name in STYLE_SETS ("length", "markdown", "both") or a sequence of
    feature names, each read from the columns `<name>_a` and `<name>_b` (non-negative counts). The ratings are
    then the model parameters of the joint fit, and `Leaderboard.coefficients` holds each covariate's effect
    with its bootstrap interval.
    """
    _check_options(scale=scale, base=base, l2=l2)
    if anchor is None:
        anchor = baseline
    reference = baseline if baseline is not None else anchor
    aggregate = _aggregate(battles, unit, _style_features(style))
    models = list(aggregate.models)
    _check_anchor(anchor, aggregate.models)
    _check_anchor(reference, aggregate.models)
    full, params = _bootstrap(aggregate, rounds=rounds, seed=seed, l2=l2)
    # The full-data fit rides along as row 0, so it is scaled and anchored exactly like the samples.
    scaled = _to_ratings(
        aggregate.theta(np.vstack([full, params])),
        aggregate.models,
        scale=scale,
        base=base,
        init_rating=init_rating,
        anchor=anchor,
        anchor_rating=anchor_rating,
    )
    values, samples = scaled[0], scaled[1:]
    lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
    win: FloatArray | None = None
    win_lower: FloatArray | None = None
    win_upper: FloatArray | None = None
    if reference is not None:
        ref = models.index(reference)
        win = _win_rate(values, values[ref], scale=scale, base=base)
        win_lower, win_upper = np.percentile(
            _win_rate(samples, samples[:, [ref]], scale=scale, base=base), [2.5, 97.5], axis=0
        )
    games = pd.concat([battles["model_a"], battles["model_b"]]).value_counts()
    order = sorted(range(len(models)), key=lambda k: (-values[k], models[k]))
    rows = tuple(
        LeaderboardRow(
            model=models[k],
            rating=float(values[k]),
            lower=float(lower[k]),
            upper=float(upper[k]),
            win_rate=None if win is None else float(win[k]),
            win_rate_lower=None if win_lower is None else float(win_lower[k]),
            win_rate_upper=None if win_upper is None else float(win_upper[k]),
            battles=int(games[models[k]]),
            rank=1 + int(np.sum(lower > upper[k])),
            position=position,
        )
        for position, k in enumerate(order, start=1)
    )
    gamma = aggregate.gamma(full)
    gamma_lower, gamma_upper = np.percentile(aggregate.gamma(params), [2.5, 97.5], axis=0)
    coefficients = tuple(
        StyleCoefficient(name=name, value=float(gamma[f]), lower=float(gamma_lower[f]), upper=float(gamma_upper[f]))
        for f, name in enumerate(aggregate.features)
    )
    frame = pd.DataFrame(samples, index=pd.RangeIndex(rounds, name="round"), columns=pd.Index(models, name="model"))
    return Leaderboard(rows=rows, samples=frame, reference=reference, coefficients=coefficients)


def fit_leaderboard(battles: pd.DataFrame, **options: Unpack[LeaderboardOptions]) -> Leaderboard:
    """Fit a leaderboard from battles in the FastChat / Chatbot Arena layout, or this project's own.

    Columns: `model_a`, `model_b` and `winner` (`model_a`, `model_b`, `tie` or `tie (bothbad)`; both ties count
    as half a win for each side); `weight` (how many battles a row counts as) defaults to 1; `prompt_id` is needed
    only to resample whole prompts; `<feature>_a` / `<feature>_b` columns (e.g. `tokens_a`) only for style
    control. Other columns are ignored.

    `options` are `leaderboard`'s, with one difference: `unit` defaults to "prompt" when the battles have a
    `prompt_id` column and to "battle" (Chatbot Arena's and Arena-Hard-Auto's bootstrap) when they do not.
    Raises ValueError on a missing column, an unknown winner, or `unit="prompt"` without `prompt_id`;
    InsufficientDataError (a ValueError) as `leaderboard` does.
    """
    _check_columns(battles, ("model_a", "model_b", "winner"))
    has_prompts = "prompt_id" in battles.columns
    options["unit"] = options.get("unit", "prompt" if has_prompts else "battle")
    if options["unit"] == "prompt" and not has_prompts:
        raise ValueError(
            "battles: no prompt_id column, so whole prompts cannot be resampled; pass unit='battle' to resample "
            "single battles"
        )
    winner = battles["winner"].map(FASTCHAT_WINNERS)
    unknown = sorted({str(w) for w in battles["winner"][winner.isna()]})
    if unknown:
        raise ValueError(f"battles: winner must be one of {list(FASTCHAT_WINNERS)}, got {unknown}")
    defaults = {
        name: value
        for name, value in (("weight", 1.0), ("prompt_id", np.arange(len(battles))))
        if name not in battles.columns
    }
    return leaderboard(battles.assign(winner=winner, **defaults), **options)


def leaderboards_by(
    battles: pd.DataFrame,
    column: str = "category",
    *,
    min_prompts: int = MIN_PROMPTS,
    **options: Unpack[LeaderboardOptions],
) -> dict[str, CategoryLeaderboard]:
    """One leaderboard per value of `column`, each fitted on that category's battles alone; keys sorted.

    A category gets a short note and no board when one of its models appears in fewer than `min_prompts` prompts
    (MIN_PROMPTS): the one with fewest prompts is named. It also gets a note when its battles cannot support a fit
    (InsufficientDataError: a disconnected comparison graph, the baseline or anchor absent, a style feature that
    never varies). Style covariates are standardized within each category.
    `options` are `leaderboard`'s. Malformed battles, in any category, raise ValueError as `leaderboard` does.
    """
    _check_columns(battles, (column,))
    _scores(battles)
    _style_ratios(battles, _style_features(options.get("style")))
    if min_prompts < 1:
        raise ValueError(f"min_prompts must be >= 1, got {min_prompts}")
    if battles[column].isna().any():
        raise ValueError(f"battles: missing values in ['{column}']")
    boards: dict[str, CategoryLeaderboard] = {}
    for category, games in battles.groupby(battles[column].astype(str), sort=True):
        prompts = _prompts_per_model(games)
        short = prompts[prompts < min_prompts].sort_index().sort_values(kind="stable")
        note: str | None = None
        board: Leaderboard | None = None
        if not short.empty:
            note = f"too few prompts: {short.iloc[0]} for {short.index[0]}, fewer than {min_prompts}"
            if len(short) > 1:
                note += f" (and {len(short) - 1} more models)"
        else:
            try:
                board = leaderboard(games, **options)
            except InsufficientDataError as exc:
                note = str(exc)
        boards[str(category)] = CategoryLeaderboard(board=board, note=note, battles=len(games))
    return boards


def rank_changes(a: Leaderboard, b: Leaderboard) -> dict[str, int]:
    """Plain-order position in `a` minus position in `b`, for each model on both boards.

    A positive value means the model sits lower in `a` than in `b` (e.g. it loses places once markdown is
    stripped when `a` is the plain view and `b` the raw one). Models on only one board are left out.
    """
    in_b = {row.model: row.position for row in b.rows}
    return {row.model: row.position - in_b[row.model] for row in a.rows if row.model in in_b}


def _check_options(*, scale: float, base: float, l2: float) -> None:
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base}")
    # Without a penalty a perfectly separated model has no finite optimum and Newton would run to infinity.
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0, got {l2}")


def _check_columns(battles: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in battles.columns]
    if missing:
        raise ValueError(f"battles: missing columns {missing}")


def _check_anchor(anchor: str | None, models: tuple[str, ...]) -> None:
    if anchor is not None and anchor not in models:
        raise InsufficientDataError(f"'{anchor}' has no battles; models: {list(models)}")


def _style_features(style: str | Sequence[str] | None) -> tuple[str, ...]:
    """The feature names of a style argument: a STYLE_SETS name, a sequence of names, or None for none."""
    if style is None:
        return ()
    if isinstance(style, str):
        if style not in STYLE_SETS:
            raise ValueError(f"unknown style set {style!r}; known: {list(STYLE_SETS)}, or a sequence of feature names")
        return STYLE_SETS[style]
    features = tuple(style)
    if len(set(features)) < len(features):
        raise ValueError(f"style features repeat: {list(features)}")
    return features


def _prompts_per_model(battles: pd.DataFrame) -> pd.Series:
    """Number of distinct prompts each model appears in."""
    sides = pd.DataFrame(
        {
            "model": pd.concat([battles["model_a"], battles["model_b"]], ignore_index=True),
            "prompt": pd.concat([battles["prompt_id"], battles["prompt_id"]], ignore_index=True),
        }
    )
    return sides.drop_duplicates()["model"].value_counts()


def _style_ratios(battles: pd.DataFrame, features: tuple[str, ...]) -> FloatArray:
    """(games, k): (a − b) / (a + b + 1) per feature in the shown order, after checking the columns hold counts."""
    _check_columns(battles, [f"{name}_{side}" for name in features for side in "ab"])
    a = battles[[f"{name}_a" for name in features]].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    b = battles[[f"{name}_b" for name in features]].to_numpy(dtype=np.float64, na_value=np.nan)
    invalid = ~(np.isfinite(a) & (a >= 0) & np.isfinite(b) & (b >= 0)).all(axis=0)
    if invalid.any():
        bad = [name for name, flag in zip(features, invalid, strict=True) if flag]
        raise ValueError(f"battles: style features must be finite counts >= 0: {bad}")
    # In place: with a million games each (games, k) temporary is tens of MB.
    ratios: FloatArray = a - b
    a += b
    a += 1.0
    ratios /= a
    return ratios


def _covariates(battles: pd.DataFrame, features: tuple[str, ...], weight: FloatArray) -> FloatArray:
    """(games, k) style covariates in the shown order: the ratios of `_style_ratios`, standardized.

    Mean and population standard deviation are over the games weighted by `weight`, which equals Chatbot Arena's
    and Arena-Hard-Auto v0.1's np.mean / np.std over their battle rows, where a strong verdict is `weight` rows.
    """
    covariates = _style_ratios(battles, features)
    covariates -= np.average(covariates, axis=0, weights=weight)
    spread = np.sqrt(np.average(covariates**2, axis=0, weights=weight))
    constant = spread <= _MIN_SPREAD
    if constant.any():
        flat = [name for name, flag in zip(features, constant, strict=True) if flag]
        raise InsufficientDataError(
            f"style features {flat} do not vary over the battles: their effect is not identified"
        )
    covariates /= spread
    return covariates


def _scores(battles: pd.DataFrame) -> tuple[FloatArray, FloatArray]:
    """Check the battles' columns and values; return model_a's score (1, ½ or 0) and the weight of each game."""
    _check_columns(battles, _COLUMNS)
    if battles.empty:
        raise ValueError("battles: no rows")
    score_a = battles["winner"].map(_SCORE_OF_A).to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float64)
    if np.isnan(score_a).any():
        bad = sorted({str(w) for w in battles["winner"][np.isnan(score_a)]})
        raise ValueError(f"battles: winner must be one of {list(_SCORE_OF_A)}, got {bad}")
    weight = battles["weight"].to_numpy(dtype=np.float64, na_value=np.nan)
    if not (np.isfinite(weight) & (weight >= 0)).all():
        raise ValueError("battles: weight must be finite and >= 0")
    empty = [c for c in ("prompt_id", "model_a", "model_b") if battles[c].isna().any()]
    if empty:
        raise ValueError(f"battles: missing values in {empty}")
    if (battles["model_a"] == battles["model_b"]).any():
        raise ValueError("battles: a model cannot play itself")
    return score_a, weight


def _aggregate(battles: pd.DataFrame, unit: Unit, features: tuple[str, ...] = ()) -> _Aggregate:
    """Validate the battles and aggregate them into a design and per-(unit, design row) counts."""
    if unit not in ("prompt", "battle"):
        raise ValueError(f"unit must be 'prompt' or 'battle', got {unit!r}")
    score_a, weight = _scores(battles)

    codes, names = pd.factorize(pd.concat([battles["model_a"], battles["model_b"]], ignore_index=True), sort=True)
    models = tuple(str(name) for name in names)
    n = len(battles)
    code_a, code_b = codes[:n].astype(np.intp, copy=False), codes[n:].astype(np.intp, copy=False)
    m = len(models)
    pair = np.minimum(code_a, code_b) * m + np.maximum(code_a, code_b)
    shown_first = code_a < code_b
    score_first = score_a
    score_first[~shown_first] = 1.0 - score_first[~shown_first]
    played = np.unique(pair[weight > 0])
    _check_connected(models, played // m, played % m)

    # Each design row is oriented from its pair's lower model index, whatever the shown order: swapping the sides
    # negates the whole row, the covariates included, and swaps wins and losses.
    keys = np.empty((n, 1 + len(features)))
    keys[:, 0] = pair
    keys[:, 1:] = _covariates(battles, features, weight)
    keys[~shown_first, 1:] *= -1.0
    keys, row = _unique_rows(keys)
    if unit == "prompt":
        unit_codes, unit_names = pd.factorize(battles["prompt_id"])
        units = np.asarray(unit_codes, dtype=np.intp)
        n_units = len(unit_names)
    else:
        units = np.arange(n, dtype=np.intp)
        n_units = n
    cells, cell_index = np.unique(row * n_units + units, return_inverse=True)
    cell_wins = np.bincount(cell_index, weights=weight * score_first, minlength=len(cells))
    cell_losses = np.bincount(cell_index, weights=weight * (1.0 - score_first), minlength=len(cells))
    cell_row = cells // n_units
    # Merging a row's cells costs every bootstrap round a sum over them, about as much as a quarter of the passes
    # over the row: it pays when it removes most rows (no covariates, or coarse ones), not when most games are a
    # row of their own. Unmerged, every cell is a row.
    if len(keys) < len(cells) < 2 * len(keys):
        keys, cell_row = keys[cell_row], np.arange(len(cells))
    pairs, pair_of_key = np.unique(keys[:, 0].astype(np.intp), return_inverse=True)

    basis = _sum_zero_basis(m)
    return _Aggregate(
        models=models,
        features=features,
        design=_Design(
            first=(pairs // m).astype(np.intp),
            second=(pairs % m).astype(np.intp),
            pair_starts=np.searchsorted(pair_of_key, np.arange(len(pairs) + 1)).astype(np.intp),
            covariates=np.ascontiguousarray(keys[:, 1:].T),
            basis=basis,
        ),
        cell_unit=(cells % n_units).astype(np.intp),
        row_starts=np.searchsorted(cell_row, np.arange(len(keys))).astype(np.intp),
        cell_wins=cell_wins.astype(np.float64),
        cell_losses=cell_losses.astype(np.float64),
        n_units=n_units,
    )


def _unique_rows(keys: FloatArray) -> tuple[FloatArray, IntArray]:
    """The distinct rows of `keys` in lexicographic order, and each row's index among them.

    What np.unique(keys, axis=0, return_inverse=True) returns, but through a lexsort of the columns: np.unique
    sorts the rows as opaque records, ~25 times slower, which doubled the time of an unstyled leaderboard.
    """
    order = np.lexsort(keys.T[::-1])
    ordered = keys[order]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(len(keys), dtype=np.intp)
    inverse[order] = np.cumsum(starts) - 1
    return (ordered if starts.all() else ordered[starts]), inverse


def _check_connected(models: tuple[str, ...], first: IntArray, second: IntArray) -> None:
    """Raise InsufficientDataError naming the components when the graph of compared pairs is not connected."""
    parent = list(range(len(models)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, j in zip(first.tolist(), second.tolist(), strict=True):
        parent[root(i)] = root(j)
    components: dict[int, list[str]] = {}
    for k, name in enumerate(models):
        components.setdefault(root(k), []).append(name)
    if len(components) > 1:
        listed = "; ".join("{" + ", ".join(names) + "}" for names in components.values())
        raise InsufficientDataError(
            f"comparison graph is disconnected, ratings across components are not comparable: {listed}"
        )


def _sum_zero_basis(m: int) -> FloatArray:
    """Orthonormal (Helmert) basis of {θ ∈ R^m : Σθ = 0}.

    Fitting β with θ = basis @ β removes the shift invariance of the likelihood, and because the basis is
    orthonormal ‖β‖ = ‖θ‖, so the penalty is the same as on θ with the gauge Σθ = 0.
    """
    basis = np.zeros((m, m - 1))
    for k in range(1, m):
        norm = np.sqrt(k * (k + 1))
        basis[:k, k - 1] = 1.0 / norm
        basis[k, k - 1] = -k / norm
    return basis


def _converged(step: npt.NDArray[np.floating[Any]], gradient: FloatArray, loss: float) -> bool:
    """The largest step component is below 1e-10, or the predicted decrease is below the rounding of the loss
    (further steps would be noise)."""
    return bool(np.max(np.abs(step), initial=0.0) < _TOLERANCE or gradient @ step < _ROUNDING * loss)


def _newton(
    design: _Design,
    wins: FloatArray,
    losses: FloatArray,
    start: FloatArray,
    l2: float,
    at_start: _Probabilities | None = None,
    hessian: FloatArray | None = None,
) -> FloatArray:
    """Minimise Σ wins·log(1 + e^−η) + losses·log(1 + e^η) + l2/2·‖β‖² over β, with η = design @ β.

    β stacks every parameter of the design: the model contrasts, then the style coefficients. Newton's method
    until a step is `_converged`; that last step is returned applied.
    A full step is taken without evaluating the loss when the Newton decrement at its end is below a quarter of
    the current one, as it always is near the optimum; otherwise the step is halved until the loss does not rise.
    `at_start`, when given, holds the rows' probabilities at `start`, saving the first pass's exponentials;
    `hessian`, when given, stands in for the Hessian at `start` in the first step (any positive definite matrix
    only changes the path, not the optimum reached).
    """
    likelihood = _Likelihood(design, wins, losses, l2)
    beta = start.copy()
    loss, gradient = likelihood.point(beta, at_start)
    if hessian is None:
        hessian = likelihood.hessian()
    step = np.linalg.solve(hessian, gradient)
    for _ in range(_MAX_ITERATIONS):
        if _converged(step, gradient, loss):
            return beta - step
        decrement = gradient @ step
        candidate = beta - step
        candidate_gradient = likelihood.gradient(candidate)
        # Near the optimum the Hessian barely moves between steps, so the current one measures the decrement at
        # the candidate.
        candidate_step = np.linalg.solve(hessian, candidate_gradient)
        if not candidate_gradient @ candidate_step < decrement / 4.0:
            size = 1.0
            while True:
                candidate_loss, candidate_gradient = likelihood.point(candidate)
                if candidate_loss <= loss:
                    break
                size /= 2.0
                if size < _TOLERANCE:
                    return beta
                candidate = beta - size * step
            loss = candidate_loss
            candidate_step = np.linalg.solve(hessian, candidate_gradient)
        beta, gradient, step = candidate, candidate_gradient, candidate_step
        # The current Hessian also gives a final step as good as a fresh one: it is rebuilt only if the fit goes on.
        if not _converged(step, gradient, loss):
            hessian = likelihood.hessian()
            step = np.linalg.solve(hessian, gradient)
    raise InsufficientDataError(
        f"the Bradley–Terry fit did not converge in {_MAX_ITERATIONS} Newton steps: the battles do not pin the "
        "parameters down (too few games for the style covariates, or covariates that separate the outcomes)"
    )


def _bootstrap(aggregate: _Aggregate, *, rounds: int, seed: int, l2: float) -> tuple[FloatArray, FloatArray]:
    """Full-data parameters and parameters per round (rounds × (m − 1 + k)), each round refit on units drawn with
    replacement. The covariates keep their full-data standardization in every round, as in the references."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    rng = np.random.default_rng(seed)
    # Drawing n_units indices with replacement and counting them is a multinomial draw of multiplicities; drawn one
    # round at a time, since rounds × units may not fit in memory when the units are single battles.
    resamples = (
        np.bincount(rng.integers(0, aggregate.n_units, size=aggregate.n_units), minlength=aggregate.n_units).astype(
            np.float64
        )
        for _ in range(rounds)
    )
    return _refit(aggregate, resamples, rounds, l2)


def _refit(
    aggregate: _Aggregate, multiplicities: Iterable[FloatArray], rounds: int, l2: float
) -> tuple[FloatArray, FloatArray]:
    """Full-data parameters, and parameters refit once per vector of unit multiplicities (`rounds` of them)."""
    design = aggregate.design
    counts = aggregate.counts()
    full = _newton(design, *counts, np.zeros(design.width), l2)
    rows = design.covariates.shape[1]
    if rounds * max(len(aggregate.cell_unit), aggregate.n_units) <= _BATCHED_CELLS and (
        rows * design.width**2 <= _BATCHED_ROW_WORK
    ):
        return full, _newton_rounds(aggregate, np.array(list(multiplicities), dtype=np.float64), full, l2)
    # Every round starts from the full-data optimum, where the rows' probabilities do not depend on the resample,
    # and takes its first step with the full data's Hessian there, which differs from the resample's by a few
    # percent: a pass over the rows saved per round, for a first step nearly as good.
    at_full = design.probabilities(full)
    likelihood = _Likelihood(design, *counts, l2)
    likelihood.point(full, at_full)
    hessian = likelihood.hessian()
    samples = np.empty((rounds, design.width))
    for r, multiplicity in enumerate(multiplicities):
        # Resamples are close to the full data, so starting from its optimum saves most Newton iterations.
        samples[r] = _newton(design, *aggregate.counts(multiplicity), full, l2, at_full, hessian)
    return full, samples


_BATCHED_CELLS = 2_000_000
"""Rounds × cells (or units) up to which the rounds are refitted together (`_newton_rounds`)."""
_BATCHED_ROW_WORK = 20_000
"""Design rows × parameters², up to which the rounds are refitted together: beyond it, the dense Hessian of every
row costs more than the structured one of a round at a time (measured: a style-controlled board of 6 models breaks
even at about 300 rows)."""


def _newton_rounds(aggregate: _Aggregate, multiplicities: FloatArray, start: FloatArray, l2: float) -> FloatArray:
    """`_newton` for every row of `multiplicities` (rounds × units) at once, from `start`: a small design refitted
    round by round spends its time in numpy's per-call overhead (a category's board of a few dozen battles took
    0.1 s for 200 rounds), while all rounds stacked are a few array operations per Newton step.

    The same method and stopping rule per round: Newton steps, halved while the penalised loss rises; a round is
    done when its step is `_converged`, and that last step is applied.
    """
    design = aggregate.design
    rows_of_pair = np.repeat(np.arange(len(design.first)), np.diff(design.pair_starts))
    basis = design.basis
    dense = np.hstack([(basis[design.first] - basis[design.second])[rows_of_pair], design.covariates.T])
    factor = multiplicities[:, aggregate.cell_unit]
    wins, losses = factor * aggregate.cell_wins, factor * aggregate.cell_losses
    if len(aggregate.row_starts) < len(aggregate.cell_unit):
        wins = np.add.reduceat(wins, aggregate.row_starts, axis=1)
        losses = np.add.reduceat(losses, aggregate.row_starts, axis=1)
    games = wins + losses
    identity = l2 * np.eye(design.width)

    def point(rounds: IntArray, beta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Penalised loss, gradient and Hessian of `rounds` at their β (one row each)."""
        eta = beta @ dense.T
        at = _probabilities(eta, with_logs=False)
        w, lo = wins[rounds], losses[rounds]
        # −log p = softplus(−η), −log q = softplus(η), as `_probabilities` writes them.
        loss = (w * np.logaddexp(0.0, -eta)).sum(axis=1) + (lo * np.logaddexp(0.0, eta)).sum(axis=1)
        loss += 0.5 * l2 * (beta * beta).sum(axis=1)
        gradient = (at.p * lo - at.q * w) @ dense + l2 * beta
        hessian = np.einsum("rn,ni,nj->rij", games[rounds] * at.p * at.q, dense, dense) + identity
        return loss, gradient, hessian

    result = np.empty((len(multiplicities), design.width))
    active = np.arange(len(multiplicities))
    beta = np.tile(start, (len(active), 1))
    loss, gradient, hessian = point(active, beta)
    for _ in range(_MAX_ITERATIONS):
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        done = (np.max(np.abs(step), axis=1) < _TOLERANCE) | ((gradient * step).sum(axis=1) < _ROUNDING * loss)
        result[active[done]] = beta[done] - step[done]
        keep = ~done
        active, beta, step, loss = active[keep], beta[keep], step[keep], loss[keep]
        if not len(active):
            return result
        size = np.ones(len(active))
        candidate = beta - step
        candidate_loss, candidate_gradient, candidate_hessian = point(active, candidate)
        while (rising := candidate_loss > loss).any():
            size[rising] /= 2.0
            stuck = rising & (size < _TOLERANCE)
            result[active[stuck]] = beta[stuck]  # as `_newton`: no step lowers the loss any more
            retry = rising & ~stuck
            candidate[retry] = beta[retry] - size[retry, None] * step[retry]
            candidate_loss[stuck] = loss[stuck]
            if retry.any():
                again = point(active[retry], candidate[retry])
                candidate_loss[retry], candidate_gradient[retry], candidate_hessian[retry] = again
            if stuck.any():
                keep = ~stuck
                active, beta, step, size = active[keep], beta[keep], step[keep], size[keep]
                candidate, candidate_loss = candidate[keep], candidate_loss[keep]
                candidate_gradient, candidate_hessian = candidate_gradient[keep], candidate_hessian[keep]
                loss = loss[keep]
        if not len(active):
            return result
        beta, loss, gradient, hessian = candidate, candidate_loss, candidate_gradient, candidate_hessian
    raise InsufficientDataError(
        f"the Bradley–Terry fit did not converge in {_MAX_ITERATIONS} Newton steps: the battles do not pin the "
        "parameters down (too few games for the style covariates, or covariates that separate the outcomes)"
    )


def _to_ratings(
    theta: FloatArray,
    models: tuple[str, ...],
    *,
    scale: float,
    base: float,
    init_rating: float,
    anchor: str | None,
    anchor_rating: float,
) -> FloatArray:
    """Elo-like ratings from log-strengths (last axis = models), shifted per the anchor or the mean."""
    ratings: FloatArray = scale * theta / np.log(base)
    shift: FloatArray = (
        ratings.mean(axis=-1, keepdims=True) - init_rating
        if anchor is None
        else ratings[..., [models.index(anchor)]] - anchor_rating
    )
    return ratings - shift


def _win_rate(ratings: FloatArray, reference: FloatArray, *, scale: float, base: float) -> FloatArray:
    """100 / (1 + base^((reference − rating) / scale)), written as a logistic so huge gaps cannot overflow."""
    logit = np.log(base) * (ratings - reference) / scale
    rate: FloatArray = 100.0 * np.exp(-np.logaddexp(0.0, -logit))
    return rate
