"""Leaderboard comparison metrics: the published Arena-Hard-Auto figures, hand-worked cases, input files, rendering."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from judge_arena.cli import main as cli_main
from judge_arena.metrics import (
    Board,
    BoardEntry,
    Comparison,
    MetricsInputError,
    agreement_with_confidence,
    board_from_leaderboard,
    compare,
    forecast,
    kendall_tau,
    load_leaderboard,
    load_model_map,
    separability,
    spearman,
    strict_agreement,
)
from judge_arena.rating import leaderboard
from judge_arena.report.files import leaderboard_frame
from judge_arena.report.metrics import print_metrics
from judge_arena.runs import COLUMNS
from judge_arena.views import View

STATS = Path("arena-hard-v0.1") / "benchmark_stats"


def entry(
    model: str,
    score: float,
    lower: float,
    upper: float,
    *,
    samples: tuple[float, ...] | None = None,
    variance: float | None = None,
) -> BoardEntry:
    """A board entry."""
    return BoardEntry(model, score, lower, upper, samples=samples, variance=variance)


def reference_forecast(evaluated: list[BoardEntry], reference: list[BoardEntry]) -> tuple[float, float]:
    """Brier score and log loss computed independently, as the notebook does (with sklearn's clipping)."""
    p, y = [], []
    for a, b in itertools.combinations(range(len(evaluated)), 2):
        if reference[a].score == reference[b].score:
            continue
        moments: list[tuple[float, float]] = []
        for e in (evaluated[a], evaluated[b]):
            if e.samples is not None:
                moments.append((float(np.mean(e.samples)), float(np.var(e.samples))))
            elif e.variance is not None:
                moments.append((e.score, e.variance))
            else:
                moments.append((e.score, ((e.upper - e.lower) / (2 * NormalDist().inv_cdf(0.975))) ** 2))
        (ma, va), (mb, vb) = moments
        p.append(NormalDist(ma - mb, math.sqrt(va + vb)).cdf(0))
        y.append(float(reference[a].score < reference[b].score))
    pa, ya = np.array(p), np.array(y)
    eps = np.finfo(float).eps
    clipped = np.clip(pa, eps, 1 - eps)
    return float(np.mean((pa - ya) ** 2)), float(-np.mean(ya * np.log(clipped) + (1 - ya) * np.log(1 - clipped)))


# ------------------------------------------------------------------------------------ published figures


@pytest.fixture(scope="module")
def arena_hard_vs_chatbot_arena(shared_data: Path) -> Comparison:
    """Arena-Hard v0.1 against Chatbot Arena 2024-03-29, matched by the published model map."""
    folder = shared_data / STATS
    return compare(
        load_leaderboard(folder / "bootstrap_stats_arena_hard.jsonl"),
        load_leaderboard(folder / "chatbot_arena_elo_20240329.csv"),
        model_map=load_model_map(folder / "arena_to_arena_hard.json"),
    )


def test_separability_of_every_model_matches_the_published_counts(arena_hard_vs_chatbot_arena: Comparison) -> None:
    arena_hard = arena_hard_vs_chatbot_arena.evaluated_separability_all
    assert (arena_hard.models, arena_hard.overlapping, arena_hard.pairs) == (28, 76, 378)
    assert f"{100 * arena_hard.value:.2f}" == "79.89"
    chatbot_arena = arena_hard_vs_chatbot_arena.reference_separability_all
    assert (chatbot_arena.models, chatbot_arena.overlapping, chatbot_arena.pairs) == (76, 258, 2850)
    assert f"{100 * chatbot_arena.value:.2f}" == "90.95"


def test_arena_hard_on_the_mapped_models_matches_the_published_figures(arena_hard_vs_chatbot_arena: Comparison) -> None:
    result = arena_hard_vs_chatbot_arena
    assert len(result.models) == 20
    sep = result.evaluated_separability
    assert (sep.overlapping, sep.pairs) == (30, 190)
    assert f"{100 * sep.value:.2f}" == "84.21"
    assert f"{result.strict_agreement.value:.4f}" == "0.9158"
    assert f"{result.agreement_with_confidence.value:.4f}" == "0.9040"
    assert f"{result.spearman:.4f}" == "0.9323"
    # The notebook's "Forecasting" cell prints these (sklearn brier_score_loss and log_loss).
    assert result.forecast.pairs == 190
    assert result.forecast.brier == pytest.approx(0.07047865504650436, abs=1e-12)
    assert result.forecast.log_loss == pytest.approx(0.3950460397256576, abs=1e-12)
    # Chatbot Arena on the same 20 models: 16 of 190 overlap (the notebook's 91.58 %).
    assert result.reference_separability.overlapping == 16


def test_the_published_map_taken_the_wrong_way_round_gives_the_published_figures(shared_data: Path) -> None:
    folder = shared_data / STATS
    published = json.loads((folder / "arena_to_arena_hard.json").read_text())
    result = compare(
        load_leaderboard(folder / "bootstrap_stats_arena_hard.jsonl"),
        load_leaderboard(folder / "chatbot_arena_elo_20240329.csv"),
        model_map={evaluated: reference for reference, evaluated in published.items()},
    )
    assert result.map_reversed
    assert len(result.models) == 20
    assert f"{result.agreement_with_confidence.value:.4f}" == "0.9040"


def test_another_benchmark_file_needs_no_change(shared_data: Path) -> None:
    """The notebook's Chatbot Arena fitted on 20k votes: 59 of 190 pairs overlap, 68.95 % separability."""
    folder = shared_data / STATS
    votes = load_leaderboard(folder / "bootstrap_stats_20k_votes.jsonl")
    result = compare(votes, load_leaderboard(folder / "chatbot_arena_elo_20240329.csv"))
    assert len(result.models) == 20
    assert (result.evaluated_separability.overlapping, result.evaluated_separability.pairs) == (59, 190)
    assert f"{100 * result.evaluated_separability.value:.2f}" == "68.95"


# ------------------------------------------------------------------------------------ metric definitions


def test_separability_touching_intervals_are_apart_and_a_point_inside_overlaps() -> None:
    entries = [entry("a", 1, 0, 2), entry("b", 3, 2, 4), entry("point", 3, 3, 3), entry("far", 9, 8, 10)]
    # a–b touch (apart); the point lies inside b (overlap); everything else is apart.
    result = separability(entries)
    assert (result.models, result.pairs, result.overlapping) == (4, 6, 1)
    assert result.value == pytest.approx(5 / 6)


def test_separability_does_not_depend_on_input_order_when_lower_bounds_tie() -> None:
    entries = [entry("point", 5, 5, 5), entry("wide", 6, 5, 7), entry("other", 6.5, 6, 8)]
    counts = {separability(list(order)).overlapping for order in itertools.permutations(entries)}
    # point–wide share a lower bound: the point (smaller upper) is the earlier one, and wide does not start before
    # it ends; wide–other overlap; point–other are apart.
    assert counts == {1}


def test_separability_of_fewer_than_two_models_is_undefined() -> None:
    assert math.isnan(separability([entry("a", 1, 0, 2)]).value)


def test_strict_agreement_counts_ties_as_disagreement() -> None:
    evaluated = [entry("a", 1, 0, 2), entry("b", 1, 0, 2), entry("c", 3, 2, 4)]
    reference = [entry("a", 10, 9, 11), entry("b", 20, 19, 21), entry("c", 20, 19, 21)]
    result = strict_agreement(evaluated, reference)
    # a–b tied in evaluated, b–c tied in reference, a–c agree.
    assert (result.credit, result.pairs) == (1.0, 3)


def test_agreement_with_confidence_scores_only_reference_separated_pairs() -> None:
    reference = [entry("a", 30, 29, 31), entry("b", 20, 19, 21), entry("c", 10, 9, 11), entry("d", 10.5, 9.5, 11.5)]
    evaluated = [entry("a", 3, 2.9, 3.1), entry("b", 2, 1.5, 2.5), entry("c", 2.2, 2.1, 2.3), entry("d", 1, 0, 1.2)]
    # Reference: c–d overlap and are skipped; 5 pairs count.
    # a–b, a–c, a–d separated and agree: 3; b–c overlap in evaluated: 0.5; b–d separated, same order: 1.
    result = agreement_with_confidence(evaluated, reference)
    assert (result.credit, result.pairs) == (4.5, 5)
    reversed_reference = [entry("a", 1, 0.9, 1.1), entry("b", 2, 1.9, 2.1)]
    assert agreement_with_confidence(evaluated[:2], reversed_reference).credit == 0.0


def test_agreement_with_confidence_treats_a_zero_width_interval_as_overlapping_nothing() -> None:
    # The notebook's get_overlap(a, b) > 0: a fixed anchor inside another interval still counts as separated.
    reference = [entry("anchor", 100, 100, 100), entry("x", 98, 95, 105)]
    evaluated = [entry("anchor", 50, 50, 50), entry("x", 45, 40, 52)]
    result = agreement_with_confidence(evaluated, reference)
    assert (result.credit, result.pairs) == (1.0, 1)
    # Separability's rule counts both pairs as overlapping.
    assert separability(reference).overlapping == 1
    assert separability(evaluated).overlapping == 1


def test_agreement_with_confidence_orders_a_pair_by_its_interval_tuples_as_the_notebook_does() -> None:
    # A zero-width anchor interval nested inside the other model's interval: by the (lower, upper) tuples the
    # anchor is above ((1114, 1114) > (1100, 1140)), by the point estimates below (1114 < 1120).
    reference = [entry("anchor", 1114, 1114, 1114), entry("x", 1120, 1100, 1140)]
    evaluated = [entry("anchor", 50, 50, 50), entry("x", 30, 25, 35)]
    assert agreement_with_confidence(evaluated, reference).credit == 1.0
    assert agreement_with_confidence(evaluated, reference, order="points").credit == 0.0
    with pytest.raises(ValueError, match="order must be one of intervals, points"):
        agreement_with_confidence(evaluated, reference, order="ranks")  # type: ignore[arg-type]


def notebook_agreement_with_confidence(evaluated: list[BoardEntry], reference: list[BoardEntry]) -> float:
    """The notebook's cell ("Agreement With Confidence"), line for line: intervals are (lower, upper) tuples."""

    def get_overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
        return max(0, min(a[1], b[1]) - max(a[0], b[0]))

    count = 0.0
    total = 0
    for i, j in itertools.combinations(range(len(evaluated)), 2):
        score_a, score_b = (evaluated[i].lower, evaluated[i].upper), (evaluated[j].lower, evaluated[j].upper)
        elo_a, elo_b = (reference[i].lower, reference[i].upper), (reference[j].lower, reference[j].upper)
        if get_overlap(elo_a, elo_b) > 0:
            continue
        total += 1
        if get_overlap(score_a, score_b) > 0:
            count += 0.5
            continue
        if (score_a < score_b and elo_a < elo_b) or (score_a > score_b and elo_a > elo_b):
            count += 1
    return count / total


@pytest.mark.parametrize("seed", range(20))
def test_agreement_with_confidence_equals_the_notebook_on_boards_with_anchors(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def board(anchor: int) -> list[BoardEntry]:
        scores = rng.normal(0, 10, 12)
        widths = rng.uniform(2, 15, 12)
        entries = [
            entry(f"m{k}", s, s - w, s + w * rng.uniform(0.5, 1.5))
            for k, (s, w) in enumerate(zip(scores, widths, strict=True))
        ]
        # the anchor sits at a fixed value with a zero-width interval, inside some of the others
        entries[anchor] = entry(f"m{anchor}", scores[anchor], scores[anchor], scores[anchor])
        return entries

    evaluated, reference = board(0), board(1)
    result = agreement_with_confidence(evaluated, reference)
    assert result.value == notebook_agreement_with_confidence(evaluated, reference)


def test_metrics_refuse_misaligned_entries() -> None:
    with pytest.raises(ValueError, match="same models in the same order"):
        strict_agreement([entry("a", 1, 0, 2), entry("b", 2, 1, 3)], [entry("b", 2, 1, 3), entry("a", 1, 0, 2)])


def test_rank_correlations_with_ties() -> None:
    x = [1.0, 2.0, 2.0, 3.0]
    y = [1.0, 3.0, 2.0, 4.0]
    # Average ranks of x: 1, 2.5, 2.5, 4; Pearson of the ranks = 4.5 / √(4.5 · 5).
    assert spearman(x, y) == pytest.approx(3 / math.sqrt(10))
    # 5 concordant pairs, 0 discordant, 1 tied in x: tau-b = 5 / √((6 − 1) · 6).
    assert kendall_tau(x, y) == pytest.approx(5 / math.sqrt(30))
    assert kendall_tau(x, y[::-1]) == pytest.approx(-5 / math.sqrt(30))


def test_rank_correlations_of_a_constant_side_are_undefined() -> None:
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(kendall_tau([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))


def test_forecast_uses_samples_then_variance_then_interval_width() -> None:
    rng = np.random.default_rng(0)
    evaluated = [
        entry("a", 10, 8, 12, samples=tuple(rng.normal(10.5, 1.0, 50).tolist())),
        entry("b", 11, 9, 13, variance=0.8),
        entry("c", 9, 7, 12),
        entry("d", 12, 11, 13, samples=(12.0,)),
    ]
    reference = [entry("a", 1000, 990, 1010), entry("b", 1020, 1010, 1030), entry("c", 990, 980, 1000)]
    reference.append(entry("d", 1000, 990, 1010))  # tied with a: no order to forecast, left out
    result = forecast(evaluated, reference)
    brier, log_loss = reference_forecast(evaluated, reference)
    assert result.pairs == 5
    assert result.brier == pytest.approx(brier, abs=1e-12)
    assert result.log_loss == pytest.approx(log_loss, abs=1e-12)


def test_forecast_with_no_spread_is_certain_and_log_loss_is_clipped() -> None:
    evaluated = [entry("a", 2, 2, 2), entry("b", 1, 1, 1), entry("c", 1, 1, 1)]
    reference = [entry("a", 1, 1, 1), entry("b", 2, 2, 2), entry("c", 3, 3, 3)]
    # a–b: P(a < b) = 0 but a is below b; a–c likewise; b–c tied means: P = 0.5.
    result = forecast(evaluated, reference)
    assert result.brier == pytest.approx((1 + 1 + 0.25) / 3)
    assert result.log_loss == pytest.approx((2 * -math.log(np.finfo(float).eps) + math.log(2)) / 3)


def test_forecast_without_an_ordered_pair_is_undefined() -> None:
    result = forecast([entry("a", 1, 0, 2), entry("b", 2, 1, 3)], [entry("a", 5, 4, 6), entry("b", 5, 4, 6)])
    assert result.pairs == 0
    assert math.isnan(result.brier)
    assert math.isnan(result.log_loss)


# ------------------------------------------------------------------------------------ files and matching


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write `lines` to `path`, one a line."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def arena_hard_line(model: str, score: float, lower: float, upper: float, results: list[float] | None = None) -> str:
    """One line of an Arena-Hard-Auto bootstrap_stats JSONL file."""
    record: dict[str, object] = {"model": model, "score": score, "lower": lower, "upper": upper}
    if results is not None:
        record["results"] = results
    return json.dumps(record)


CHATBOT_ARENA_HEADER = "index,rating,variance,rating_q975,rating_q025,num_battles,final_ranking"
RUN_HEADER = ",".join(COLUMNS["leaderboard.csv"])


@pytest.fixture
def benchmark_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    evaluated = write_lines(
        tmp_path / "bootstrap_stats_bench.jsonl",
        [
            arena_hard_line("Alpha-Model", 60, 55, 65, [58.0, 60.0, 62.0]),
            arena_hard_line("Beta-Model", 40, 35, 45, [38.0, 40.5, 41.0]),
            "",
            arena_hard_line("gamma-model", 50, 50, 50, [50.0]),
            arena_hard_line("Delta-Model", 42, 38, 46),
            arena_hard_line("Extra-Model", 10, 5, 15),
        ],
    )
    reference = write_lines(
        tmp_path / "ratings.csv",
        [
            CHATBOT_ARENA_HEADER,
            "alpha,1200,4.0,1210,1190,100,1",
            "beta,1150,4.0,1160,1140,100,2",
            "gamma,1100,0.0,1100,1100,100,3",
            "delta,1095,4.0,1105,1085,100,4",
            "omega,900,9.0,910,890,100,5",
        ],
    )
    mapping = tmp_path / "map.json"
    mapping.write_text(
        json.dumps(
            {"alpha": "alpha-model", "beta": "beta-model", "gamma": "gamma-model", "delta": "DELTA-model", "zeta": "z"}
        )
    )
    return evaluated, reference, mapping


def test_compare_synthetic_benchmark_files_with_a_model_map(benchmark_files: tuple[Path, Path, Path]) -> None:
    evaluated_path, reference_path, map_path = benchmark_files
    evaluated = load_leaderboard(evaluated_path)
    reference = load_leaderboard(reference_path)
    assert evaluated.entries[0].samples == (58.0, 60.0, 62.0)
    assert reference.entries[0].variance == 4.0
    result = compare(evaluated, reference, model_map=load_model_map(map_path))

    assert result.models == ("alpha", "beta", "delta", "gamma")
    assert result.only_evaluated == ("Extra-Model",)
    assert result.only_reference == ("omega",)
    # Evaluated: beta–delta overlap; reference: delta's interval holds gamma's point.
    assert (result.evaluated_separability.overlapping, result.evaluated_separability.pairs) == (1, 6)
    assert (result.evaluated_separability_all.overlapping, result.evaluated_separability_all.pairs) == (1, 10)
    assert (result.reference_separability.overlapping, result.reference_separability_all.pairs) == (1, 10)
    # beta–gamma and beta–delta are reversed.
    assert (result.strict_agreement.credit, result.strict_agreement.pairs) == (4.0, 6)
    # All 6 pairs are separated in the reference (gamma is a point); beta–delta overlaps: 0.5; beta–gamma: 0.
    assert (result.agreement_with_confidence.credit, result.agreement_with_confidence.pairs) == (4.5, 6)
    # Evaluated ranks (alpha, beta, delta, gamma) = (4, 1, 2, 3), reference (4, 3, 1, 2): Σd² = 6.
    assert result.spearman == pytest.approx(1 - 6 * 6 / (4 * 15))
    assert result.kendall == pytest.approx((4 - 2) / 6)
    ev = {e.model.lower(): e for e in evaluated.entries}
    brier, log_loss = reference_forecast(
        [ev[n] for n in ("alpha-model", "beta-model", "delta-model", "gamma-model")],
        [{e.model: e for e in reference.entries}[n] for n in result.models],
    )
    assert result.forecast.brier == pytest.approx(brier, abs=1e-12)
    assert result.forecast.log_loss == pytest.approx(log_loss, abs=1e-12)


def test_compare_without_a_map_matches_exact_names(benchmark_files: tuple[Path, Path, Path]) -> None:
    evaluated_path, reference_path, _ = benchmark_files
    with pytest.raises(ValueError, match=r"share 0 model\(s\); at least 2 are needed \(.*model map"):
        compare(load_leaderboard(evaluated_path), load_leaderboard(reference_path))


def test_a_model_map_is_taken_either_way_round() -> None:
    # Two models share their names on both sides; two are renamed. Read the wrong way round, the map used to
    # match only the two that share names and report figures over them.
    evaluated = Board(
        "ev", (entry("x", 4, 3.5, 4.5), entry("y", 3, 2.5, 3.5), entry("b-ev", 2, 1.5, 2.5), entry("c-ev", 1, 0.5, 1.5))
    )
    reference = Board(
        "ref",
        (
            entry("x", 40, 39, 41),
            entry("y", 30, 29, 31),
            entry("b", 20, 19, 21),
            entry("c", 10, 9, 11),
            entry("z", 5, 4, 6),
        ),
    )
    forward = {"x": "x", "y": "y", "b": "b-ev", "c": "c-ev"}
    given = compare(evaluated, reference, model_map=forward)
    turned = compare(evaluated, reference, model_map={ev: ref for ref, ev in forward.items()})
    assert not given.map_reversed
    assert turned.map_reversed
    assert given.models == turned.models == ("b", "c", "x", "y")
    assert turned.agreement_with_confidence == given.agreement_with_confidence


def test_a_model_map_for_other_leaderboards_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evaluated = Board("ev", (entry("x", 4, 3.5, 4.5), entry("y", 3, 2.5, 3.5), entry("w", 2, 1.5, 2.5)))
    reference = Board("ref", (entry("x", 40, 39, 41), entry("y", 30, 29, 31), entry("w", 20, 19, 21)))
    other = {"x": "x", "y": "y", "p": "p1", "q": "q1", "r": "r1"}
    with pytest.raises(ValueError, match=r"does not fit these leaderboards, either way round: 2 of its 5 reference"):
        compare(evaluated, reference, model_map=other)
    lines = [arena_hard_line(e.model, e.score, e.lower, e.upper) for e in evaluated.entries]
    ev_path = write_lines(tmp_path / "ev.jsonl", lines)
    map_path = tmp_path / "map.json"
    map_path.write_text(json.dumps(other))
    assert cli_main(["metrics", str(ev_path), str(ev_path), "--map", str(map_path)]) == 2
    assert "does not fit these leaderboards" in capsys.readouterr().err


def test_compare_refuses_two_models_matching_one_map_entry() -> None:
    board = Board("x", (entry("Model", 1, 0, 2), entry("model", 2, 1, 3)))
    with pytest.raises(ValueError, match="x: models 'Model' and 'model' both match"):
        compare(board, Board("r", (entry("m", 1, 0, 2), entry("n", 2, 1, 3))), model_map={"m": "MODEL"})


def run_folder(tmp_path: Path, *, style_controlled: bool = False) -> tuple[Path, dict[str, Board]]:
    """A run folder whose leaderboard.csv is written by the report code, and the boards with their samples."""
    rng = np.random.default_rng(0)
    strength = {"m1": 1.0, "m2": 0.5, "m3": 0.0, "m4": -0.8}
    names = list(strength)
    rows = []
    for k in range(120):
        a, b = rng.choice(4, 2, replace=False)
        p = 1 / (1 + math.exp(strength[names[b]] - strength[names[a]]))
        rows.append((f"p{k // 3}", names[a], names[b], "model_a" if rng.random() < p else "model_b", 1.0))
    battles = pd.DataFrame(rows, columns=["prompt_id", "model_a", "model_b", "winner", "weight"])
    boards = {
        "raw": leaderboard(battles, rounds=30, seed=1, baseline="m3"),
        "plain": leaderboard(battles.iloc[::-1].reset_index(drop=True), rounds=30, seed=2, baseline="m3"),
    }
    views = [View("judge", norm, board, games=120, unparsed=0) for norm, board in boards.items()]
    if style_controlled:
        styled = leaderboard(battles, rounds=30, seed=3, baseline="m3")
        views.append(View("judge", "raw", styled, games=120, unparsed=0, style="both"))
        boards["raw+sc"] = styled
    folder = tmp_path / "runs" / "demo-20250101-000000"
    folder.mkdir(parents=True)
    leaderboard_frame(views).to_csv(folder / "leaderboard.csv", index=False)
    return folder, {norm: board_from_leaderboard(board, norm) for norm, board in boards.items()}


def test_a_style_controlled_view_is_selected_by_its_style_control(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, boards = run_folder(tmp_path, style_controlled=True)
    # raw and raw+sc share normalization=raw: the normalization alone is ambiguous, never a mix of both views
    with pytest.raises(MetricsInputError, match=r"2 views match; .* judge/raw, judge/plain, judge/raw\+sc"):
        load_leaderboard(folder, normalization="raw")
    for style_control, view in (("none", "raw"), ("both", "raw+sc")):
        loaded = load_leaderboard(folder, normalization="raw", style_control=style_control)
        assert loaded.label.endswith(f"[judge/{view}]")
        assert [e.score for e in loaded.entries] == pytest.approx([e.score for e in boards[view].entries])
    command = ["metrics", str(folder), str(folder), "--normalization", "raw", "--reference-normalization", "raw"]
    assert cli_main(command) == 2
    assert "choose a judge, a normalization and a style control" in capsys.readouterr().err
    assert cli_main([*command, "--style-control", "none", "--reference-style-control", "both"]) == 0
    out = capsys.readouterr().out
    assert "[judge/raw]" in out
    assert "[judge/raw+sc]" in out


def test_run_leaderboard_csv_loads_the_selected_view(tmp_path: Path) -> None:
    folder, boards = run_folder(tmp_path)
    plain = load_leaderboard(folder, judge="judge", normalization="plain")
    assert plain.label == f"{folder / 'leaderboard.csv'} [judge/plain]"
    expected = boards["plain"].entries
    assert [e.model for e in plain.entries] == [e.model for e in expected]
    for loaded, fitted in zip(plain.entries, expected, strict=True):
        assert (loaded.score, loaded.lower, loaded.upper) == pytest.approx((fitted.score, fitted.lower, fitted.upper))
        assert loaded.samples is None
    assert len(expected[0].samples or ()) == 30


def test_run_leaderboard_csv_needs_a_view_when_it_holds_several(tmp_path: Path) -> None:
    folder, _ = run_folder(tmp_path)
    with pytest.raises(MetricsInputError, match=r"2 views match; choose .* judge/raw, judge/plain"):
        load_leaderboard(folder)
    with pytest.raises(
        MetricsInputError, match=r"no view with judge='other'; views \(judge/view\): judge/raw, judge/p"
    ):
        load_leaderboard(folder, judge="other")
    assert load_leaderboard(folder, normalization="raw").label.endswith("[judge/raw]")


def test_bootstrap_samples_of_a_fitted_leaderboard_drive_the_forecast(tmp_path: Path) -> None:
    folder, boards = run_folder(tmp_path)
    reference = load_leaderboard(folder / "leaderboard.csv", fmt="run", normalization="raw")
    result = compare(boards["plain"], reference)
    assert result.models == ("m1", "m2", "m3", "m4")
    ev = {e.model: e for e in boards["plain"].entries}
    ref = {e.model: e for e in reference.entries}
    brier, log_loss = reference_forecast([ev[m] for m in result.models], [ref[m] for m in result.models])
    assert result.forecast.brier == pytest.approx(brier, abs=1e-12)
    assert result.forecast.log_loss == pytest.approx(log_loss, abs=1e-12)


# ------------------------------------------------------------------------------------ bad input files

GOOD = arena_hard_line("a", 1, 0, 2)


@pytest.mark.parametrize(
    ("name", "lines", "message"),
    [
        ("b.jsonl", [GOOD, "{not json"], r"b.jsonl line 2: invalid JSON"),
        ("b.jsonl", ["[1, 2]"], r"b.jsonl line 1: must be a JSON object, got a list"),
        ("b.jsonl", ['{"model": "a", "lower": 0, "upper": 1}'], r"line 1: field 'score': missing"),
        ("b.jsonl", [arena_hard_line("a", 1, 0, 2).replace("1", '"x"', 1)], r"field 'score': must be a number"),
        ("b.jsonl", ['{"model": "a", "score": NaN, "lower": 0, "upper": 1}'], r"field 'score': must be finite"),
        ("b.jsonl", ['{"model": "a", "score": true, "lower": 0, "upper": 1}'], r"field 'score': must be a number"),
        ("b.jsonl", [arena_hard_line("a", 4, 5, 3)], r"line 1: field 'lower': 5.0 is above upper 3.0"),
        ("b.jsonl", [arena_hard_line("a", 1, 0, 2, [])], r"field 'results': must be a non-empty list"),
        ("b.jsonl", [arena_hard_line("a", 1, 0, 2).replace("}", ', "results": [1, "x"]}')], r"field 'results'"),
        ("b.jsonl", [arena_hard_line(" ", 1, 0, 2)], r"line 1: field 'model': must be a non-empty string"),
        ("b.jsonl", [GOOD, "", GOOD], r"line 3: duplicate model 'a' \(first on line 1\)"),
        ("b.jsonl", ["", "  "], r"b.jsonl: no models"),
        ("r.csv", [CHATBOT_ARENA_HEADER, "a,1,x,2,0,1,1"], r"r.csv line 2: field 'variance': must be a number"),
        ("r.csv", [CHATBOT_ARENA_HEADER, "a,1,-1,2,0,1,1"], r"line 2: field 'variance': must not be negative"),
        ("r.csv", [CHATBOT_ARENA_HEADER, "a,1,1,0,2,1,1"], r"line 2: field 'rating_q025': 2.0 is above rating_q975"),
        ("r.csv", [CHATBOT_ARENA_HEADER, "a,1,1,2,0,1,1", "b,1,1,2"], r"line 3: 4 cells, the header has 7"),
        ("r.csv", ["name,rating,rating_q025,rating_q975", "a,1,0,2"], r"missing the model name column 'index'"),
        ("x.csv", ["model,score", "a,1"], r"x.csv: cannot tell the format"),
        ("v.csv", [RUN_HEADER, "j,raw,raw,none,a,abc,0,1,,,,1,1,1"], r"line 2: field 'rating': must be a number"),
        ("v.csv", [RUN_HEADER, "j,raw,raw,none,a,1,2,1,,,,1,1,1"], r"line 2: field 'lower': 2.0 is above upper"),
        (
            "v.csv",
            ["judge,normalization,model,rating,lower,upper", "j,raw,a,1,0,2"],
            r"line 1: field 'view': missing column",
        ),
    ],
)
def test_bad_leaderboard_files_name_the_file_line_and_field(
    tmp_path: Path, name: str, lines: list[str], message: str
) -> None:
    path = write_lines(tmp_path / name, lines)
    with pytest.raises(MetricsInputError, match=message):
        load_leaderboard(path)


def test_unreadable_leaderboard_inputs(tmp_path: Path) -> None:
    with pytest.raises(MetricsInputError, match=r"missing.jsonl: no such file"):
        load_leaderboard(tmp_path / "missing.jsonl")
    with pytest.raises(MetricsInputError, match=r"leaderboard.csv: no such file"):
        load_leaderboard(tmp_path)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(GOOD.encode() + b"\n" + '{"model": "é"}'.encode("latin-1"))
    with pytest.raises(MetricsInputError, match=r"latin.jsonl line 2: not valid UTF-8"):
        load_leaderboard(latin)
    ratings = write_lines(tmp_path / "ratings.csv", [CHATBOT_ARENA_HEADER, "a,1,1,2,0,1,1"])
    with pytest.raises(MetricsInputError, match=r"ratings.csv: a judge, a normalization and a style control select"):
        load_leaderboard(ratings, judge="j")
    with pytest.raises(MetricsInputError, match=r"ratings.csv line 1: field 'judge': missing column"):
        load_leaderboard(ratings, fmt="run")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", r"map.json line 1: invalid JSON"),
        ('["a"]', r"map.json: must be a JSON object of names, got a list"),
        ('{"a": 1}', r"map.json: field 'a': must be a non-empty string, got 1"),
        ('{"": "x"}', r"map.json: a reference model name is empty"),
        ('{"a": "X", "b": "x"}', r"field 'b': maps to 'x', as does 'a': the map must be one-to-one"),
    ],
)
def test_bad_model_maps(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(MetricsInputError, match=message):
        load_model_map(path)


# ------------------------------------------------------------------------------------ terminal


def test_print_metrics_shows_values_counts_and_unmatched_models(benchmark_files: tuple[Path, Path, Path]) -> None:
    evaluated_path, reference_path, map_path = benchmark_files
    result = compare(
        load_leaderboard(evaluated_path), load_leaderboard(reference_path), model_map=load_model_map(map_path)
    )
    console = Console(record=True, width=200)
    print_metrics(console, result)
    text = console.export_text()
    assert "83.33 %" in text
    assert "1 of 6 pairs overlap; all 5 models: 90.00 % (1 of 10)" in text
    assert "4 of 6 pairs ordered the same way" in text
    assert "4.5 points over the 6 pairs separated in the reference" in text
    assert "0.4000" in text
    assert "only in the evaluated leaderboard (1): Extra-Model" in text
    assert "only in the reference leaderboard (1): omega" in text


def test_print_metrics_shows_undefined_values_as_a_dash() -> None:
    board = Board("b", (entry("a", 1, 0, 2), entry("b", 1, 0, 2)))
    console = Console(record=True, width=200)
    print_metrics(console, compare(board, board))
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in console.export_text().splitlines()
        if line.count("│") == 4
    }
    assert rows["Spearman"] == rows["Kendall tau-b"] == rows["agreement with confidence"] == rows["Brier score"] == "–"


def test_metrics_command_prints_the_published_figures(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stats = shared_data / "arena-hard-v0.1" / "benchmark_stats"
    code = cli_main(
        [
            "metrics",
            str(stats / "bootstrap_stats_arena_hard.jsonl"),
            str(stats / "chatbot_arena_elo_20240329.csv"),
            "--map",
            str(stats / "arena_to_arena_hard.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for figure in ("84.21 %", "79.89 %", "90.95 %", "0.9158", "0.9040", "0.9323", "76 of 378", "258 of 2,850"):
        assert figure in out


def test_metrics_command_rejects_a_bad_file_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "board.jsonl"
    bad.write_text('{"model": "a", "score": "high", "lower": 1, "upper": 2}\n')
    assert cli_main(["metrics", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "score" in err
    assert len(err.strip().splitlines()) == 1
