"""Style-controlled Bradley–Terry and per-category leaderboards: agreement with an independent reference fit,
recovery of simulated truth, the covariate construction, and the notes of categories that cannot be rated."""

from __future__ import annotations

import inspect
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from judge_arena.rating import (
    DEFAULT_L2,
    MIN_PROMPTS,
    STYLE_SETS,
    InsufficientDataError,
    LeaderboardOptions,
    StyleCoefficient,
    _covariates,
    fit_bradley_terry,
    leaderboard,
    leaderboards_by,
)
from judge_arena.style import StyleFeatures

ELO = 400.0 / math.log(10.0)
FEATURES = ("tokens", "headers", "lists", "bold")
PLAIN = {"tokens": 400.0, "headers": 1.0, "lists": 3.0, "bold": 2.0}
"""Mean features of an ordinary answer."""
HEAVY = {"tokens": 900.0, "headers": 4.0, "lists": 8.0, "bold": 6.0}
"""Mean features of a long, markdown-heavy answer."""


def simulate(
    ratings: dict[str, float],
    prompts: int,
    seed: int,
    *,
    effects: dict[str, float],
    heavy: tuple[str, ...] = (),
    tie_band: float = 0.0,
    weighted: bool = False,
) -> pd.DataFrame:
    """Every pair of models on every prompt, in both orders, with style features for both sides.

    Each (prompt, model) answer draws its features around PLAIN, or HEAVY for the models in `heavy`: log-normal
    token counts, Poisson markdown counts. The log-odds that a beats b are (r_a − r_b) / ELO plus, per feature,
    effects[f] · (f_a − f_b) / (f_a + f_b + 1). A draw within `tie_band` of the win probability is a tie.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for prompt in range(prompts):
        answer = {}
        for model in ratings:
            mean = HEAVY if model in heavy else PLAIN
            answer[model] = {
                "tokens": float(np.round(rng.lognormal(math.log(mean["tokens"]), 0.4))),
                **{f: float(rng.poisson(mean[f])) for f in FEATURES[1:]},
            }
        for i, j in itertools.combinations(ratings, 2):
            for a, b in ((i, j), (j, i)):
                logit = (ratings[a] - ratings[b]) / ELO
                for feature, effect in effects.items():
                    fa, fb = answer[a][feature], answer[b][feature]
                    logit += effect * (fa - fb) / (fa + fb + 1.0)
                p_a = 1.0 / (1.0 + math.exp(-logit))
                u = rng.random()
                winner = "tie" if abs(u - p_a) < tie_band else ("model_a" if u < p_a else "model_b")
                row: dict[str, object] = {
                    "prompt_id": f"p{prompt}",
                    "model_a": a,
                    "model_b": b,
                    "winner": winner,
                    "weight": float(rng.choice([0.5, 1.0, 2.5, 3.0])) if weighted else 1.0,
                }
                for feature in FEATURES:
                    row[f"{feature}_a"], row[f"{feature}_b"] = answer[a][feature], answer[b][feature]
                rows.append(row)
    return pd.DataFrame(rows)


def reference_fit(battles: pd.DataFrame, features: tuple[str, ...], l2: float) -> tuple[pd.Series, np.ndarray]:
    """Independent fit: ratings centred on 1000 and the style coefficients.

    One row per game: +1 in model_a's column, −1 in model_b's, then per feature (a − b) / (a + b + 1)
    standardized with the weight-weighted mean and population standard deviation. A game is a win row and a
    loss row weighted by its weight times its score (a tie: half each). scipy BFGS on the logistic loss plus
    l2/2 · ‖params‖².
    """
    models = sorted(set(battles["model_a"]) | set(battles["model_b"]))
    n, m = len(battles), len(models)
    weight = battles["weight"].to_numpy(float)
    onehot = np.zeros((n, m))
    onehot[np.arange(n), [models.index(name) for name in battles["model_a"]]] = 1.0
    onehot[np.arange(n), [models.index(name) for name in battles["model_b"]]] = -1.0
    columns = []
    for feature in features:
        a, b = battles[f"{feature}_a"].to_numpy(float), battles[f"{feature}_b"].to_numpy(float)
        ratio = (a - b) / (a + b + 1.0)
        mean = np.sum(weight * ratio) / np.sum(weight)
        std = np.sqrt(np.sum(weight * (ratio - mean) ** 2) / np.sum(weight))
        columns.append((ratio - mean) / std)
    x = np.column_stack([onehot, *columns])
    score = battles["winner"].map({"model_a": 1.0, "model_b": 0.0, "tie": 0.5}).to_numpy(float)
    design = np.vstack([x, x])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    weights = np.concatenate([weight * score, weight * (1.0 - score)])

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        eta = design @ params
        p = 1.0 / (1.0 + np.exp(-eta))
        value = np.sum(weights * (np.logaddexp(0.0, eta) - labels * eta)) + 0.5 * l2 * params @ params
        return float(value), design.T @ (weights * (p - labels)) + l2 * params

    result = minimize(loss, np.zeros(x.shape[1]), jac=True, method="BFGS", options={"gtol": 1e-10})
    ratings = ELO * result.x[:m]
    return pd.Series(ratings - ratings.mean() + 1000.0, index=models), result.x[m:]


SMALL = {"a": 900.0, "b": 1000.0, "c": 1050.0, "d": 1150.0}
EFFECTS = {"tokens": 0.8, "headers": 0.4, "lists": 0.3, "bold": 0.3}


@pytest.mark.parametrize("style", [None, "length", "both"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_agrees_with_reference_fit(style: str | None, ties: bool, weighted: bool) -> None:
    battles = simulate(
        SMALL, 40, seed=3, effects=EFFECTS, heavy=("b",), tie_band=0.15 if ties else 0.0, weighted=weighted
    )
    assert (battles["winner"] == "tie").any() == ties
    features = () if style is None else STYLE_SETS[style]
    board = leaderboard(battles, rounds=1, style=style)
    expected, coefficients = reference_fit(battles, features, DEFAULT_L2)
    fitted = pd.Series({row.model: row.rating for row in board.rows})
    np.testing.assert_allclose(fitted[expected.index].to_numpy(), expected.to_numpy(), atol=0.01)
    assert [c.name for c in board.coefficients] == list(features)
    np.testing.assert_allclose([c.value for c in board.coefficients], coefficients, atol=1e-4)


TRUTH = {"plain": 1000.0, "styled": 1000.0, "weak": 900.0, "strong": 1100.0, "mid": 1050.0, "low": 950.0}
"""Mean 1000, like the unanchored fit; "styled" answers long and markdown-heavy."""


def test_style_control_recovers_the_truth_that_a_plain_fit_misses() -> None:
    battles = simulate(TRUTH, 300, seed=11, effects=EFFECTS, heavy=("styled",))
    controlled = leaderboard(battles, rounds=100, style="both")
    plain = leaderboard(battles, rounds=100)
    for row in controlled.rows:
        sd = float(controlled.samples[row.model].std())
        # About 1,500 games per model put a rating's standard error near 10 Elo; 4 bootstrap standard deviations
        # is a miss with probability ~1e-4 per model if the estimator is unbiased, and fails for a biased one.
        assert sd < 20.0
        assert abs(row.rating - TRUTH[row.model]) < 4.0 * sd, row
    styled = {row.model: row for row in plain.rows}["styled"]
    # Without the covariates, the styled model's edge of ~0.6 logits (≈ 100 Elo) lands in its rating.
    assert styled.rating - TRUTH["styled"] > 60.0
    assert styled.lower > TRUTH["styled"]
    # The coefficients are per standard deviation of each ratio: the true value is effect × that deviation.
    for coefficient in controlled.coefficients:
        a, b = battles[f"{coefficient.name}_a"], battles[f"{coefficient.name}_b"]
        truth = EFFECTS[coefficient.name] * float(np.std((a - b) / (a + b + 1.0)))
        assert coefficient.lower <= truth <= coefficient.upper, (coefficient, truth)
        assert coefficient.lower <= coefficient.value <= coefficient.upper


def test_covariates_standardize_like_arena_hard_auto_rows() -> None:
    # Arena-Hard-Auto v0.1 repeats a strong verdict `weight` times and takes np.mean / np.std (population) over
    # all rows; the weighted mean and deviation over the games must give the same covariates.
    battles = simulate(SMALL, 10, seed=5, effects=EFFECTS, heavy=("a",))
    battles["weight"] = np.random.default_rng(0).choice([1.0, 3.0], len(battles))
    covariates = _covariates(battles, FEATURES, battles["weight"].to_numpy())
    repeated = battles.loc[battles.index.repeat(battles["weight"].astype(int))]
    for k, feature in enumerate(FEATURES):
        a, b = repeated[f"{feature}_a"].to_numpy(), repeated[f"{feature}_b"].to_numpy()
        ratio = (a - b) / (a + b + 1.0)
        a, b = battles[f"{feature}_a"].to_numpy(), battles[f"{feature}_b"].to_numpy()
        expected = ((a - b) / (a + b + 1.0) - ratio.mean()) / ratio.std(ddof=0)
        np.testing.assert_allclose(covariates[:, k], expected, rtol=1e-12)


def test_showing_every_game_the_other_way_round_changes_nothing() -> None:
    battles = simulate(SMALL, 30, seed=8, effects=EFFECTS, heavy=("c",), tie_band=0.1, weighted=True)
    swapped = battles.rename(
        columns={
            f"{name}_{side}": f"{name}_{'b' if side == 'a' else 'a'}" for name in ("model", *FEATURES) for side in "ab"
        }
    )
    swapped["winner"] = battles["winner"].map({"model_a": "model_b", "model_b": "model_a", "tie": "tie"})
    first = leaderboard(battles, rounds=20, style="both")
    second = leaderboard(swapped, rounds=20, style="both")
    pd.testing.assert_frame_equal(first.to_frame(), second.to_frame(), atol=1e-6)
    for one, other in zip(first.coefficients, second.coefficients, strict=True):
        assert (one.value, one.lower, one.upper) == pytest.approx((other.value, other.lower, other.upper), abs=1e-8)


def test_repeated_games_count_as_their_weight() -> None:
    battles = simulate(SMALL, 20, seed=2, effects=EFFECTS, heavy=("d",), tie_band=0.1)
    doubled = battles.assign(weight=np.where(battles.index % 3 == 0, 2.0, 1.0))
    repeated = battles.loc[battles.index.repeat(np.where(battles.index % 3 == 0, 2, 1))]
    pd.testing.assert_series_equal(
        fit_bradley_terry(doubled, style="both"), fit_bradley_terry(repeated, style="both"), atol=1e-8
    )


def test_style_sets_and_feature_names() -> None:
    assert STYLE_SETS == {
        "length": ("tokens",),
        "markdown": ("headers", "lists", "bold"),
        "both": ("tokens", "headers", "lists", "bold"),
    }
    # The sets name judge_arena.style's features, whose values the lead stores as <name>_a / <name>_b.
    assert set(STYLE_SETS["both"]) == set(StyleFeatures.__dataclass_fields__)
    battles = simulate(SMALL, 25, seed=4, effects=EFFECTS, heavy=("a",))
    assert leaderboard(battles, rounds=5).coefficients == ()
    for name, features in STYLE_SETS.items():
        board = leaderboard(battles, rounds=5, style=name)
        assert tuple(c.name for c in board.coefficients) == features
    by_name = leaderboard(battles, rounds=5, style=["bold", "tokens"])
    assert [c.name for c in by_name.coefficients] == ["bold", "tokens"]
    rows = leaderboard(battles, rounds=1, style="length").rows
    fitted = fit_bradley_terry(battles, style="length")
    assert {row.model: row.rating for row in rows} == pytest.approx(fitted.to_dict(), abs=1e-9)


def test_coefficient_reads_as_value_and_interval() -> None:
    assert str(StyleCoefficient("tokens", 0.2512, 0.2191, 0.2837)) == "tokens coefficient 0.25 [0.22, 0.28]"


@pytest.mark.parametrize(
    ("style", "change", "error", "message"),
    [
        ("size", {}, ValueError, "unknown style set 'size'"),
        (["bold", "bold"], {}, ValueError, "repeat"),
        ("length", {"tokens_b": None}, ValueError, r"missing columns \['tokens_b'\]"),
        ("markdown", {"lists_a": -1.0}, ValueError, r"finite counts >= 0: \['lists'\]"),
        ("markdown", {"bold_b": float("nan")}, ValueError, r"finite counts >= 0: \['bold'\]"),
        ("both", {"headers_a": 0.0, "headers_b": 0.0}, InsufficientDataError, r"\['headers'\] do not vary"),
    ],
)
def test_bad_style_input_raises(
    style: str | list[str], change: dict[str, float | None], error: type, message: str
) -> None:
    battles = simulate(SMALL, 5, seed=1, effects={}, heavy=("a",))
    for column, value in change.items():
        if value is None:
            battles = battles.drop(columns=column)
        else:
            battles[column] = value
    with pytest.raises(error, match=message):
        leaderboard(battles, rounds=2, style=style)


def categories() -> pd.DataFrame:
    """Four categories: two rateable, one with too few prompts, one whose comparison graph is disconnected."""
    wide = simulate(SMALL, 30, seed=6, effects=EFFECTS, heavy=("b",)).assign(category="code")
    other = simulate(SMALL, 25, seed=7, effects=EFFECTS, heavy=("b",)).assign(category="writing")
    few = simulate(SMALL, 5, seed=8, effects=EFFECTS).assign(category="math")
    few = few[~((few["prompt_id"] == "p0") & (few[["model_a", "model_b"]] == "d").any(axis=1))]
    halves = simulate(SMALL, 30, seed=9, effects=EFFECTS)
    split = halves[halves["model_a"].isin(["a", "b"]) == halves["model_b"].isin(["a", "b"])].assign(category="chat")
    other["prompt_id"] = "w" + other["prompt_id"]
    few["prompt_id"] = "m" + few["prompt_id"]
    split["prompt_id"] = "c" + split["prompt_id"]
    return pd.concat([wide, other, few, split], ignore_index=True)


def test_leaderboards_by_category() -> None:
    battles = categories()
    boards = leaderboards_by(battles, rounds=20, style="length", baseline="a", min_prompts=20)
    assert list(boards) == ["chat", "code", "math", "writing"]
    for name in ("code", "writing"):
        entry = boards[name]
        assert entry.note is None
        assert entry.board is not None
        assert entry.battles == int((battles["category"] == name).sum())
        alone = leaderboard(battles[battles["category"] == name], rounds=20, style="length", baseline="a")
        pd.testing.assert_frame_equal(entry.board.to_frame(), alone.to_frame())
        assert entry.board.coefficients == alone.coefficients
        assert entry.board.reference == "a"
    math_board = boards["math"]
    assert math_board.board is None
    assert math_board.battles == int((battles["category"] == "math").sum())
    assert math_board.note == "too few prompts: 4 for d, fewer than 20 (and 3 more models)"
    # By default (MIN_PROMPTS) a category of five prompts is rated, its interval as wide as five prompts make it.
    shown = leaderboards_by(battles, rounds=20, style="length", baseline="a")["math"].board
    assert MIN_PROMPTS <= 4
    assert shown is not None
    assert max(row.upper - row.lower for row in shown.rows) > 500
    chat = boards["chat"]
    assert chat.board is None
    assert chat.note is not None
    assert "disconnected" in chat.note
    assert "{a, b}; {c, d}" in chat.note


def test_leaderboards_by_notes_a_missing_baseline_and_honours_min_prompts() -> None:
    battles = categories()
    without_a = battles[(battles["category"] == "code") & (battles["model_a"] != "a") & (battles["model_b"] != "a")]
    boards = leaderboards_by(without_a, rounds=5, baseline="a")
    assert boards["code"].board is None
    assert boards["code"].note is not None
    assert "'a' has no battles" in boards["code"].note
    relaxed = leaderboards_by(battles[battles["category"] == "math"], rounds=5, min_prompts=4)
    assert relaxed["math"].board is not None
    assert relaxed["math"].note is None


def test_leaderboards_by_rejects_malformed_input() -> None:
    battles = categories()
    with pytest.raises(ValueError, match=r"missing columns \['topic'\]"):
        leaderboards_by(battles, "topic")
    with pytest.raises(ValueError, match="missing values in \\['category'\\]"):
        leaderboards_by(battles.assign(category=None))
    with pytest.raises(ValueError, match="min_prompts"):
        leaderboards_by(battles, min_prompts=0)
    # Malformed battles are an error of the input, not a category's note, even in a category too small to fit.
    small = battles["category"] == "math"
    with pytest.raises(ValueError, match="winner"):
        leaderboards_by(battles.assign(winner=battles["winner"].where(~small, "A>B")))
    with pytest.raises(ValueError, match=r"finite counts >= 0: \['bold'\]"):
        leaderboards_by(battles.assign(bold_a=battles["bold_a"].where(~small, -1.0)), style="both")


def test_leaderboard_options_mirror_leaderboard_keywords() -> None:
    keywords = {
        name
        for name, parameter in inspect.signature(leaderboard).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert set(LeaderboardOptions.__annotations__) == keywords
