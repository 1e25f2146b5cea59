"""Bradley–Terry ratings with bootstrap intervals, fitted from pairwise verdicts.

Input is a DataFrame of battles, one row per judged game, with columns `prompt_id`, `model_a`, `model_b`,
`winner` ("model_a", "model_b" or "tie") and `weight` (how many battles the game counts as). A tie counts as
half a win for each side.

The model is P(i beats j) = 1 / (1 + exp(θ_j − θ_i)), fitted by maximum likelihood with a hand-written Newton
solver on aggregated counts. The solver works on a generic binomial-logit *design*: one row per unique
comparison, with weighted wins and losses. Today a row is a pair contrast (e_i − e_j); style control will
append covariate columns to the same design and reuse the solver and the bootstrap unchanged.

L2 penalty: the loss carries `l2 / 2 · ‖θ‖²` with `l2 = 1e-6` by default, the same regularisation as
Chatbot Arena's `LogisticRegression(C=1e6)`. It keeps the optimum finite when a model wins or loses every game
(perfect separation: such a model lands a few thousand Elo away from the others instead of at infinity) and
keeps every Newton system positive definite. On normal (non-separated) data it moves a rating by about
`l2 · θ / curvature` in θ units: ~1e-5 Elo for 6 models and 300 games, far below the 0.01 Elo budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
Unit = Literal["prompt", "battle"]

DEFAULT_L2 = 1e-6
"""Default L2 penalty on the log-strengths: matches Chatbot Arena's C=1e6, see the module docstring."""

_COLUMNS = ("prompt_id", "model_a", "model_b", "winner", "weight")
_SCORE_OF_A = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
_TOLERANCE = 1e-10
_ROUNDING = 1e-15
_MAX_ITERATIONS = 200
# A separated model needs about one Newton step per unit of θ (≈ 174 Elo) to reach its penalised optimum,
# which sits near θ ≈ ln(games / l2) ≈ 30; 200 iterations leave a wide margin.


@dataclass(frozen=True, eq=False)
class _Aggregate:
    """Battles aggregated once: the design (one row per compared pair) and counts per (unit, design row).

    Refitting on a resample only needs new unit multiplicities: wins and losses per design row are then
    one weighted bincount over the cells, with no pass over the battles.
    """

    models: tuple[str, ...]
    design: FloatArray
    """(rows, m − 1): pair contrasts e_i − e_j expressed in `basis`, so the gauge (sum θ = 0) is built in."""
    basis: FloatArray
    """(m, m − 1): orthonormal basis of the sum-zero subspace; θ = basis @ β."""
    cell_unit: IntArray
    cell_row: IntArray
    cell_wins: FloatArray
    """Weighted wins of the design row's first model in the cell, ties counting half."""
    cell_losses: FloatArray
    """Weighted losses of the same model: the cell's games minus its wins."""
    n_units: int

    def counts(self, multiplicity: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        """Wins and losses per design row, unit u counted `multiplicity[u]` times (default once)."""
        rows = self.design.shape[0]
        factor = np.ones(self.cell_unit.shape[0]) if multiplicity is None else multiplicity[self.cell_unit]
        wins = np.bincount(self.cell_row, weights=factor * self.cell_wins, minlength=rows)
        losses = np.bincount(self.cell_row, weights=factor * self.cell_losses, minlength=rows)
        return wins.astype(np.float64), losses.astype(np.float64)


@dataclass(frozen=True)
class LeaderboardRow:
    """One model's line of the leaderboard."""

    model: str
    rating: float
    """Maximum-likelihood rating on the full data."""
    lower: float
    """2.5th percentile of the bootstrap ratings."""
    upper: float
    """97.5th percentile of the bootstrap ratings."""
    win_rate: float | None
    """Expected win rate against the reference model in % (Arena-Hard-Auto's score), or None."""
    win_rate_lower: float | None
    win_rate_upper: float | None
    battles: int
    """Number of games (rows, whatever their weight) involving the model."""
    rank: int
    """Interval-aware rank: 1 + number of models whose lower bound is above this model's upper bound."""
    position: int
    """Plain order by rating, 1 for the best."""


@dataclass(frozen=True, eq=False)
class Leaderboard:
    """Leaderboard rows sorted by rating (best first), with the bootstrap samples they were computed from."""

    rows: tuple[LeaderboardRow, ...]
    samples: pd.DataFrame
    """Bootstrap ratings, rounds × models."""
    reference: str | None
    """Model the win rates are against (the baseline, else the anchor), or None when win rates are omitted."""

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, one line per model, in leaderboard order."""
        return pd.DataFrame([asdict(row) for row in self.rows])


def fit_bradley_terry(
    battles: pd.DataFrame,
    *,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    l2: float = DEFAULT_L2,
) -> pd.Series:
    """Fit Bradley–Terry ratings by penalised maximum likelihood; return ratings indexed by sorted model name.

    Ratings are Elo-like: `scale · θ / ln(base)` shifted so that `anchor` sits at `anchor_rating`, or, when
    `anchor` is None, so that the mean rating is `init_rating`. Raises ValueError on malformed battles, on an
    unknown anchor and on a disconnected comparison graph (naming its components).
    """
    _check_options(scale=scale, base=base, l2=l2)
    aggregate = _aggregate(battles, "prompt")
    _check_anchor(anchor, aggregate.models)
    beta = _newton(aggregate.design, *aggregate.counts(), np.zeros(aggregate.design.shape[1]), l2)
    ratings = _to_ratings(
        aggregate.basis @ beta,
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
) -> pd.DataFrame:
    """Refit the ratings on `rounds` resamples drawn with replacement; return a rounds × models DataFrame.

    `unit="prompt"` resamples whole prompts, so all games of a prompt (both orders, every pair) move together
    and the intervals account for their correlation; `unit="battle"` resamples single rows as Arena-Hard-Auto
    does. The draws come from `numpy.random.default_rng(seed)`: the same seed gives the same samples. Every
    round is anchored like `fit_bradley_terry`. A resample that drops all games of a model, or cuts the
    comparison graph, still gives finite ratings: the L2 penalty pulls the unconstrained part to the mean.
    """
    _check_options(scale=scale, base=base, l2=l2)
    aggregate = _aggregate(battles, unit)
    _check_anchor(anchor, aggregate.models)
    _, samples = _bootstrap(aggregate, rounds=rounds, seed=seed, l2=l2)
    ratings = _to_ratings(
        samples @ aggregate.basis.T,
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
) -> Leaderboard:
    """Fit the ratings, bootstrap 95 % percentile intervals and rank the models, best first.

    `anchor` defaults to `baseline` (when given), else ratings are centred on `init_rating`. Win rates are
    against `baseline`, else against `anchor`; with neither they are None. The reference's own win rate is
    50 %. Point ratings are the full-data fit; intervals are percentiles of the bootstrap.
    Ties in rating are ordered by model name so that the plain order is deterministic.
    """
    _check_options(scale=scale, base=base, l2=l2)
    if anchor is None:
        anchor = baseline
    reference = baseline if baseline is not None else anchor
    aggregate = _aggregate(battles, unit)
    models = list(aggregate.models)
    _check_anchor(anchor, aggregate.models)
    _check_anchor(reference, aggregate.models)
    full, betas = _bootstrap(aggregate, rounds=rounds, seed=seed, l2=l2)
    values = _to_ratings(
        aggregate.basis @ full,
        aggregate.models,
        scale=scale,
        base=base,
        init_rating=init_rating,
        anchor=anchor,
        anchor_rating=anchor_rating,
    )
    samples = _to_ratings(
        betas @ aggregate.basis.T,
        aggregate.models,
        scale=scale,
        base=base,
        init_rating=init_rating,
        anchor=anchor,
        anchor_rating=anchor_rating,
    )
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
    frame = pd.DataFrame(samples, index=pd.RangeIndex(rounds, name="round"), columns=pd.Index(models, name="model"))
    return Leaderboard(rows=rows, samples=frame, reference=reference)


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


def _check_anchor(anchor: str | None, models: tuple[str, ...]) -> None:
    if anchor is not None and anchor not in models:
        raise ValueError(f"'{anchor}' has no battles; models: {list(models)}")


def _aggregate(battles: pd.DataFrame, unit: Unit) -> _Aggregate:
    """Validate the battles and aggregate them into a pair design and per-(unit, pair) counts."""
    missing = [c for c in _COLUMNS if c not in battles.columns]
    if missing:
        raise ValueError(f"battles: missing columns {missing}")
    if battles.empty:
        raise ValueError("battles: no rows")
    if unit not in ("prompt", "battle"):
        raise ValueError(f"unit must be 'prompt' or 'battle', got {unit!r}")
    score_a = battles["winner"].map(_SCORE_OF_A).to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(score_a).any():
        bad = sorted({str(w) for w in battles["winner"][np.isnan(score_a)]})
        raise ValueError(f"battles: winner must be one of {list(_SCORE_OF_A)}, got {bad}")
    weight = battles["weight"].to_numpy(dtype=np.float64, na_value=np.nan)
    if not (np.isfinite(weight) & (weight >= 0)).all():
        raise ValueError("battles: weight must be finite and >= 0")
    empty = [c for c in ("prompt_id", "model_a", "model_b") if battles[c].isna().any()]
    if empty:
        raise ValueError(f"battles: missing values in {empty}")

    codes, names = pd.factorize(pd.concat([battles["model_a"], battles["model_b"]], ignore_index=True), sort=True)
    models = tuple(str(name) for name in names)
    n = len(battles)
    code_a, code_b = codes[:n].astype(np.intp), codes[n:].astype(np.intp)
    if (code_a == code_b).any():
        raise ValueError("battles: a model cannot play itself")
    m = len(models)
    first = np.minimum(code_a, code_b)
    second = np.maximum(code_a, code_b)
    score_first = np.where(code_a == first, score_a, 1.0 - score_a)

    # Each unordered pair is one design row, oriented from its lower model index, whatever the shown order.
    pairs, row = np.unique(first * m + second, return_inverse=True)
    if unit == "prompt":
        unit_codes, unit_names = pd.factorize(battles["prompt_id"])
        units = np.asarray(unit_codes, dtype=np.intp)
        n_units = len(unit_names)
    else:
        units = np.arange(n, dtype=np.intp)
        n_units = n
    cells, cell_index = np.unique(units * len(pairs) + row, return_inverse=True)
    cell_wins = np.bincount(cell_index, weights=weight * score_first, minlength=len(cells))
    cell_losses = np.bincount(cell_index, weights=weight * (1.0 - score_first), minlength=len(cells))

    pair_games = np.bincount(row, weights=weight, minlength=len(pairs))
    _check_connected(models, pairs[pair_games > 0] // m, pairs[pair_games > 0] % m)

    basis = _sum_zero_basis(m)
    return _Aggregate(
        models=models,
        design=basis[pairs // m] - basis[pairs % m],
        basis=basis,
        cell_unit=(cells // len(pairs)).astype(np.intp),
        cell_row=(cells % len(pairs)).astype(np.intp),
        cell_wins=cell_wins.astype(np.float64),
        cell_losses=cell_losses.astype(np.float64),
        n_units=n_units,
    )


def _check_connected(models: tuple[str, ...], first: IntArray, second: IntArray) -> None:
    """Raise ValueError naming the components when the graph of compared pairs is not connected."""
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
        raise ValueError(f"comparison graph is disconnected, ratings across components are not comparable: {listed}")


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


def _softplus(x: FloatArray) -> FloatArray:
    value: FloatArray = np.logaddexp(0.0, x)
    return value


def _loss(design: FloatArray, wins: FloatArray, losses: FloatArray, beta: FloatArray, l2: float) -> float:
    eta = design @ beta
    # A sum of non-negative terms: no cancellation even when a separated pair has η ≫ 1.
    return float(wins @ _softplus(-eta) + losses @ _softplus(eta) + 0.5 * l2 * (beta @ beta))


def _newton(design: FloatArray, wins: FloatArray, losses: FloatArray, start: FloatArray, l2: float) -> FloatArray:
    """Minimise Σ wins·log(1 + e^−η) + losses·log(1 + e^η) + l2/2·‖β‖² over β, with η = design @ β.

    Plain Newton with step halving; stops once the largest step component is below 1e-10, or once the
    predicted decrease is below the rounding of the loss (further steps would be noise).
    """
    beta = start.copy()
    loss = _loss(design, wins, losses, beta, l2)
    ridge = l2 * np.eye(design.shape[1])
    for _ in range(_MAX_ITERATIONS):
        eta = design @ beta
        p = np.exp(-_softplus(-eta))
        q = np.exp(-_softplus(eta))
        # Same as games·p − wins, but without cancelling games·p against wins when p → 1 (separation).
        gradient = design.T @ (p * losses - q * wins) + l2 * beta
        hessian = (design.T * ((wins + losses) * p * q)) @ design + ridge
        step = np.linalg.solve(hessian, gradient)
        if np.max(np.abs(step)) < _TOLERANCE or gradient @ step < _ROUNDING * loss:
            return beta - step
        size = 1.0
        while True:
            candidate = beta - size * step
            candidate_loss = _loss(design, wins, losses, candidate, l2)
            if candidate_loss <= loss:
                break
            size /= 2.0
            if size < _TOLERANCE:
                return beta
        beta, loss = candidate, candidate_loss
    raise RuntimeError(f"Bradley–Terry Newton solver did not converge in {_MAX_ITERATIONS} iterations")


def _bootstrap(aggregate: _Aggregate, *, rounds: int, seed: int, l2: float) -> tuple[FloatArray, FloatArray]:
    """Full-data β and β per round (rounds × (m − 1)), each round refit on units drawn with replacement."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    n_params = aggregate.design.shape[1]
    full = _newton(aggregate.design, *aggregate.counts(), np.zeros(n_params), l2)
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, n_params))
    for r in range(rounds):
        # Drawing n_units indices with replacement and counting them is a multinomial draw of multiplicities.
        drawn = rng.integers(0, aggregate.n_units, size=aggregate.n_units)
        multiplicity = np.bincount(drawn, minlength=aggregate.n_units).astype(np.float64)
        # Resamples are close to the full data, so starting from its optimum saves most Newton iterations.
        samples[r] = _newton(aggregate.design, *aggregate.counts(multiplicity), full, l2)
    return full, samples


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
