"""Adaptive pairing: the pure chooser, its config, and an adaptive run end to end on the simulator."""

from __future__ import annotations

import asyncio
import math
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from judge_arena.arena import ArenaRun, load_inputs, planned_games, play_arena
from judge_arena.cli import EXIT_BAD_INPUT, main
from judge_arena.config import load_config
from judge_arena.interrupt import Interrupt
from judge_arena.metrics import kendall_tau
from judge_arena.rating import LeaderboardOptions
from judge_arena.records import Battle
from judge_arena.sampling import Item, Plan, next_items
from judge_arena.sim import SimulatorServer
from judge_arena.sim.models import CANDIDATES
from judge_arena.sim.server import SimRequest
from judge_arena.views import rate_views

STRENGTH = {"top": 3.0, "upper": 1.2, "lower": 1.0, "bottom": -1.0}
"""Log-odds strengths of four made-up models: `upper` and `lower` are close, the others far apart."""
PAIRS = (
    ("top", "upper"),
    ("top", "lower"),
    ("top", "bottom"),
    ("upper", "lower"),
    ("upper", "bottom"),
    ("lower", "bottom"),
)
PROMPTS = tuple(f"p{k:03d}" for k in range(200))


def _plan(**changes: object) -> Plan:
    settings: dict[str, object] = {
        "pairs": PAIRS,
        "prompt_ids": PROMPTS,
        "views": (("judge", "raw"),),
        "initial_prompts": 10,
        "batch_size": 8,
        "max_items": 6 * len(PROMPTS),
        "options": LeaderboardOptions(rounds=100, seed=0),
    }
    settings.update(changes)
    return Plan(**settings)  # type: ignore[arg-type]


def _battles(items: list[Item], strength: dict[str, float] = STRENGTH) -> list[Battle]:
    """Both orders of each item's game, decided by the strengths without noise: the first model of a pair wins a
    share σ(difference) of the prompts, spread evenly over them (a low-discrepancy sequence, not a random one)."""
    battles = []
    for item in items:
        first, second = item.pair
        share = 1.0 / (1.0 + math.exp(strength[second] - strength[first]))
        position = (int(item.prompt_id[1:]) * 0.6180339887) % 1.0
        winner = "model_a" if position < share else "model_b"
        for a, b, won in ((first, second, winner), (second, first, "model_b" if winner == "model_a" else "model_a")):
            battles.append(Battle(item.prompt_id, "c", "judge", "raw", a, b, "A>B", won))  # type: ignore[arg-type]
    return battles


def test_the_first_step_judges_every_pair_on_its_own_prompts() -> None:
    plan = _plan()
    first = next_items([], [], plan)
    assert first is not None
    assert Counter(item.pair for item in first) == dict.fromkeys(plan.pairs, plan.initial_prompts)
    # each pair starts further on in the prompts, so the first round covers 6 × 10 different prompts
    assert len({item.prompt_id for item in first}) == len(first) == 60


def test_the_chooser_is_deterministic_and_prefers_close_neighbours_whose_intervals_overlap() -> None:
    plan = _plan(initial_prompts=30)
    played = list(next_items([], [], plan) or ())
    battles = _battles(played)
    batch = next_items(battles, played, plan)
    assert batch is not None
    assert batch == next_items(list(battles), list(played), plan)
    assert len(batch) == plan.batch_size
    assert Counter(item.pair for item in batch).most_common(1)[0][0] == ("upper", "lower")
    # new prompts only
    assert not {(item.pair, item.prompt_id) for item in batch} & {(item.pair, item.prompt_id) for item in played}


def test_the_chooser_stops_once_neighbours_are_separated_or_the_budget_is_spent() -> None:
    plan = _plan(initial_prompts=40)
    played = list(next_items([], [], plan) or ())
    separated = _battles(played, {"top": 3.0, "upper": 1.5, "lower": 0.0, "bottom": -1.5})
    assert next_items(separated, played, plan) is None
    close = _battles(played)
    assert next_items(close, played, plan) is not None
    assert next_items(close, played, _plan(initial_prompts=40, max_items=len(played))) is None
    # the budget also cuts the last batch short
    batch = next_items(close, played, _plan(initial_prompts=40, max_items=len(played) + 3))
    assert batch is not None
    assert len(batch) == 3


def test_neighbours_that_the_prompts_left_cannot_separate_are_given_up() -> None:
    equal = {"top": 3.0, "upper": 1.0, "lower": 1.0, "bottom": -1.0}
    # 150 prompts left for the pair of equals: worth trying; 10 left: not
    for prompts, hopeful in ((PROMPTS, True), (PROMPTS[:60], False)):
        plan = _plan(initial_prompts=50, prompt_ids=prompts)
        played = list(next_items([], [], plan) or ())
        batch = next_items(_battles(played, equal), played, plan)
        if hopeful:
            assert batch is not None
            assert Counter(item.pair for item in batch).most_common(1)[0][0] == ("upper", "lower")
        else:
            assert batch is None


def test_a_view_that_cannot_be_fitted_yet_plays_every_pair_in_turn() -> None:
    plan = _plan(batch_size=6)
    played = list(next_items([], [], plan) or ())
    # no battle of the bottom model was decided (its judge calls failed, say)
    battles = [b for b in _battles(played) if "bottom" not in (b.model_a, b.model_b)]
    batch = next_items(battles, played, plan)
    assert batch is not None
    assert [item.pair for item in batch] == list(plan.pairs)


def test_nothing_left_to_play_ends_the_run() -> None:
    plan = _plan(prompt_ids=PROMPTS[:2], initial_prompts=2)
    played = list(next_items([], [], plan) or ())
    assert len(played) == 2 * len(plan.pairs)
    assert next_items(_battles(played), played, plan) is None


# --- config ---------------------------------------------------------------------------------------------------


SIMULATED = ("sim-strong-plain", "sim-good-verbose", "sim-mid-plain", "sim-markdown-weak", "sim-weak-terse")
"""Five candidates of graded quality, 0.90 down to 0.20: 10 pairs."""


def _config(folder: Path, pairing: dict[str, object], **overrides: object) -> Path:
    """24 prompts of the built-in suite, the five candidates and the fair simulated judge, raw answers only."""
    config: dict[str, object] = {
        "name": "adaptive",
        "suites": [{"path": "core", "limit": 24}],
        "candidates": [
            {"name": name.removeprefix("sim-"), "model": f"openai/{name}", "api_base": "simulator"}
            for name in SIMULATED
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge-fair", "api_base": "simulator"}],
        "normalizations": ["raw"],
        "pairing": pairing,
        "rating": {"style_control": "none"},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    config.update(overrides)
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("pairing", "message"),
    [
        ({"mode": "adaptive", "batch_size": 0}, "field 'pairing.batch_size': Input should be greater than or equal"),
        ({"mode": "adaptive", "initial_prompts": 0}, "field 'pairing.initial_prompts': Input should be greater"),
        ({"mode": "adaptive", "max_share": 1.5}, "field 'pairing.max_share': Input should be less than or equal"),
        ({"mode": "adaptive", "max_share": 0}, "field 'pairing.max_share': Input should be greater than 0"),
        ({"mode": "adaptive", "max_judge_calls": "many"}, "field 'pairing.max_judge_calls': Input should be a valid"),
        ({"mode": "adaptive", "max_judge_calls": 1}, "pairing.max_judge_calls: 1 is less than one pair on one prompt"),
        ({"mode": "all-pairs", "batch_size": 8}, "pairing.batch_size: only read when pairing.mode is 'adaptive'"),
        ({"mode": "adaptive", "batchsize": 8}, "field 'pairing.batchsize': Extra inputs are not permitted"),
    ],
)
def test_bad_adaptive_settings_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pairing: dict[str, object], message: str
) -> None:
    path = _config(tmp_path, pairing)
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    assert message in " ".join(capsys.readouterr().err.split())


def test_validate_counts_the_adaptive_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, {"mode": "adaptive", "max_share": 0.25})
    assert main(["validate", str(path)]) == 0
    # 10 pairs × 24 prompts, a quarter of them, both orders
    assert "120 judge games at most" in capsys.readouterr().out
    config = load_config(_config(tmp_path, {"mode": "adaptive", "max_judge_calls": 101}))
    assert planned_games(load_inputs(config)) == 100


# --- end to end -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _run(path: Path, sim: SimulatorServer) -> ArenaRun:
    return asyncio.run(play_arena(load_inputs(load_config(path)), simulator_url=sim.url))


def test_an_adaptive_run_rates_every_candidate_with_fewer_judge_calls_and_replays_from_the_cache(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # no cap: the stop rule alone ends the run
    path = _config(tmp_path, {"mode": "adaptive", "initial_prompts": 3, "batch_size": 4, "max_share": 1.0})
    config = load_config(path)
    all_pairs = 10 * 24 * 2
    sim.reset_log()
    run = _run(path, sim)
    assert not run.failures
    assert run.interrupted is None
    judged = len(run.battles)
    assert judged < all_pairs
    assert len(run.answers) == 5 * 24
    (view,) = rate_views(config, run.battles, run.answers)
    assert view.board is not None
    rows = view.board.rows
    names = {c.name: c.model.removeprefix("openai/") for c in config.candidates}
    assert {row.model for row in rows} == set(names)
    tau = kendall_tau([row.rating for row in rows], [CANDIDATES[names[row.model]].quality for row in rows])
    with capsys.disabled():
        print(f"\nadaptive run: {judged} of {all_pairs} judge games ({judged / all_pairs:.0%}), τ to truth {tau:.2f}")
    assert tau >= 0.7

    sim.reset_log()
    again = _run(path, sim)
    assert again.stats.made == 0
    assert again.battles == run.battles


def test_a_cut_adaptive_run_is_the_start_of_the_whole_one(tmp_path: Path, sim: SimulatorServer) -> None:
    """A run cut short by its budget keeps what it judged; a rerun with a larger budget replays those games from
    the cache, makes the same choices, and goes on."""
    pairing = {"mode": "adaptive", "initial_prompts": 2, "batch_size": 4}
    short = _run(_config(tmp_path, {**pairing, "max_judge_calls": 2 * (10 * 2 + 4 + 2)}), sim)
    assert len(short.battles) == 2 * (10 * 2 + 4 + 2)
    longer = _run(_config(tmp_path, {**pairing, "max_judge_calls": 2 * (10 * 2 + 4 * 4)}), sim)
    assert longer.battles[: len(short.battles)] == short.battles
    assert len(longer.battles) == 2 * (10 * 2 + 4 * 4)
    assert longer.stats.cached >= len(short.battles)


def test_an_interrupted_adaptive_run_keeps_what_it_did_and_the_rerun_goes_on_from_it(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    path = _config(tmp_path, {"mode": "adaptive", "initial_prompts": 3, "batch_size": 4, "max_share": 0.3})
    interrupt = Interrupt()
    judged = 0

    async def stop_in_the_second_step(request: SimRequest) -> web.StreamResponse | None:
        nonlocal judged
        judged += request.model == "sim-judge-fair"
        if judged == 10 * 3 * 2 + 5:  # the first round, then a few games of the next step
            interrupt.stop(signal.SIGTERM)
        return None

    sim.hook = stop_in_the_second_step
    try:
        partial = asyncio.run(play_arena(load_inputs(load_config(path)), simulator_url=sim.url, interrupt=interrupt))
    finally:
        sim.hook = None
    whole = _run(path, sim)
    assert partial.interrupted == signal.SIGTERM
    assert whole.interrupted is None
    assert 10 * 3 * 2 <= len(partial.battles) < len(whole.battles)
    assert [b for b in whole.battles if b in partial.battles] == list(partial.battles)
