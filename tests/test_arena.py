"""End to end on the simulator: generate, judge raw and plain, rate, report; rerun from cache; multi-turn."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from judge_arena.arena import ArenaRun, load_inputs, play_arena
from judge_arena.cli import EXIT_OK, main
from judge_arena.config import load_config
from judge_arena.sim import SimulatorServer
from judge_arena.views import rate_views

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "judge_arena" / "data" / "templates" / "pairwise.yaml"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _config(folder: Path, suite: Path, *, limit: int = 6, template: Path = TEMPLATE, **overrides: object) -> Path:
    config: dict[str, object] = {
        "name": "e2e",
        "suites": [{"path": str(suite), "limit": limit}],
        "candidates": [
            {"name": "strong-plain", "model": "openai/sim-strong-plain", "api_base": "simulator"},
            {"name": "markdown-weak", "model": "openai/sim-markdown-weak", "api_base": "simulator"},
            {
                "name": "strong-markdown",
                "model": "anthropic/sim-strong-markdown",
                "api_base": "simulator",
                "params": {"max_tokens": 1024},
            },
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator", "template": str(template)}],
        "pairing": {"mode": "all-pairs", "baseline": "strong-plain"},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    config.update(overrides)
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(path: Path, sim: SimulatorServer) -> ArenaRun:
    return asyncio.run(play_arena(load_inputs(load_config(path)), simulator_url=sim.url))


def test_full_run_then_rerun_makes_no_call(tmp_path: Path, sim: SimulatorServer) -> None:
    path = _config(tmp_path, ROOT / "judge_arena/data/suites/core.jsonl")
    sim.reset_log()
    first = _run(path, sim)
    prompts = first.inputs.prompts
    turns = sum(len(p.turns) for p in prompts)
    assert len(first.answers) == 3 * len(prompts)
    assert not first.failures
    # 3 pairs × prompts × raw/plain × both orders
    assert len(first.battles) == 3 * len(prompts) * 2 * 2
    billed = [r for r in sim.requests if r.billed]
    assert first.stats.made == len(billed) <= 3 * turns + len(first.battles) * 2
    assert {r.path for r in billed} == {"/v1/chat/completions", "/v1/messages"}

    sim.reset_log()
    second = _run(path, sim)
    assert sim.requests == []
    assert second.stats.made == 0
    # a fresh cache serves nothing: identical requests of the first run are shared within it, not "from cache"
    assert first.stats.cached == 0
    assert first.stats.shared > 0
    assert second.stats.cached == first.stats.made + first.stats.shared
    assert second.stats.shared == 0
    assert second.battles == first.battles
    assert second.answers == first.answers


def test_changed_template_rejudges_without_regenerating(tmp_path: Path, sim: SimulatorServer) -> None:
    suite = ROOT / "judge_arena/data/suites/core.jsonl"
    _run(_config(tmp_path, suite, limit=3), sim)
    template = tmp_path / "judge.yaml"
    template.write_text(TEMPLATE.read_text().replace("impartial judge", "impartial and careful judge"))
    sim.reset_log()
    run = _run(_config(tmp_path, suite, limit=3, template=template), sim)
    judged = [r for r in sim.requests if r.model == "sim-judge"]
    assert run.stats.made == len(sim.requests) == len(judged) > 0
    # answers all come from the cache; a judge request is shared when raw and plain render alike
    assert run.stats.made + run.stats.served == len(run.battles) + sum(len(p.turns) for p in run.inputs.prompts) * 3


def test_views_and_report_files(tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, ROOT / "judge_arena/data/suites/core.jsonl", limit=12)
    run = _run(path, sim)
    views = rate_views(run.inputs.config, run.battles, run.answers)
    assert [(v.judge, v.label) for v in views] == [("judge", "raw"), ("judge", "plain"), ("judge", "raw+sc")]
    style_controlled = views[2].board
    assert style_controlled is not None
    assert [c.name for c in style_controlled.coefficients] == ["tokens", "headers", "lists", "bold"]
    for view in views:
        assert view.board is not None
        assert {r.model for r in view.board.rows} == {"strong-plain", "markdown-weak", "strong-markdown"}
        baseline = next(r for r in view.board.rows if r.model == "strong-plain")
        assert baseline.rating == pytest.approx(1000.0)
        assert baseline.win_rate == pytest.approx(50.0)
        assert all(r.lower <= r.rating <= r.upper for r in view.board.rows)

    assert main(["run", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "raw" in out
    assert "plain" in out
    assert "strong-plain" in out
    assert "no model call was made" in out
    # not a terminal: tables at their natural width and lines unwrapped, never cut at 80 columns
    caption = "rating #place, 95 % interval below; Δ: places gained (↑) or lost (↓) against raw; +sc: style-controlled"
    assert any(line.startswith(caption) for line in out.splitlines()), out
    assert any(len(line) > 80 and "calls made" in line for line in out.splitlines()), out
    folder = next((tmp_path / "runs").iterdir())
    board = pd.read_csv(folder / "leaderboard.csv")
    assert set(board["normalization"]) == {"raw", "plain"}
    assert len(board) == 9
    # every view is named by one column, and a plain pandas reader sees no missing style control
    assert set(board["view"]) == {"raw", "plain", "raw+sc"}
    assert set(zip(board["view"], board["style_control"], strict=True)) == {
        ("raw", "none"),
        ("plain", "none"),
        ("raw+sc", "both"),
    }
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["calls"]["made"] == 0
    assert summary["battles"] == len(run.battles)
    assert all(key.isidentifier() for key in summary["flagged_battles"])
    battles = pd.read_csv(folder / "battles.csv")
    assert len(battles) == len(run.battles)
    assert "flags" not in battles.columns
    assert set(battles["defence_flags"]) == {"none"}


def test_multi_turn_mt_bench_prompt_asks_turn_two_with_turn_one_answer(
    tmp_path: Path, sim: SimulatorServer, shared_data: Path
) -> None:
    path = _config(tmp_path, shared_data / "mt_bench" / "question.jsonl", limit=1)
    sim.reset_log()
    run = _run(path, sim)
    prompt = run.inputs.prompts[0]
    assert len(prompt.turns) == 2
    answer = next(a for a in run.answers if a.model == "strong-plain")
    assert len(answer.turns) == 2
    requests = [r for r in sim.requests if r.model == "sim-strong-plain"]
    second_turn = next(r for r in requests if len(r.messages) == 3)
    assert [m.role for m in second_turn.messages] == ["user", "assistant", "user"]
    assert second_turn.messages[0].content == prompt.turns[0]
    assert second_turn.messages[1].content == answer.turns[0]
    assert second_turn.messages[2].content == prompt.turns[1]
    judge_request = next(r for r in sim.requests if r.model == "sim-judge")
    assert "[User turn 2]" in judge_request.messages[-1].content


def test_unknown_model_is_recorded_as_failure_and_retried_next_run(tmp_path: Path, sim: SimulatorServer) -> None:
    path = _config(tmp_path, ROOT / "judge_arena/data/suites/core.jsonl", limit=2)
    config = yaml.safe_load(path.read_text())
    config["candidates"][1]["model"] = "openai/sim-no-such-model"
    path.write_text(yaml.safe_dump(config))
    run = _run(path, sim)
    failed = [f for f in run.failures if f.stage == "generate"]
    assert len(failed) == 2
    assert all("not_found" in f.reason for f in failed)
    # only the pair of the two working candidates is judged
    assert {frozenset((b.model_a, b.model_b)) for b in run.battles} == {frozenset(("strong-plain", "strong-markdown"))}
    sim.reset_log()
    _run(path, sim)
    assert [r.status for r in sim.requests] == [404, 404]


def test_canaries_meet_every_candidate_and_can_fail_the_run(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    canaries = {"null_model": True, "injection_probe": True, "fail_if_beats_real_model": True}
    path = _config(tmp_path, ROOT / "judge_arena/data/suites/core.jsonl", limit=4, canaries=canaries)
    run = _run(path, sim)
    pairs = {frozenset((b.model_a, b.model_b)) for b in run.battles}
    for canary in ("canary-null-model", "canary-injection-probe"):
        assert {frozenset((name, canary)) for name in ("strong-plain", "markdown-weak", "strong-markdown")} <= pairs
    probe_games = [b for b in run.battles if "canary-injection-probe" in (b.model_a, b.model_b)]
    assert probe_games
    assert all(any(f.startswith("injection:") for f in b.flags) for b in probe_games)
    assert all(any(f.startswith("neutralized:") for f in b.flags) for b in probe_games)

    code = main(["run", str(path)])
    out = capsys.readouterr().out
    views = rate_views(run.inputs.config, run.battles, run.answers)
    beaten = any(
        row.model.startswith("canary-")
        and row.position < max(r.position for r in view.board.rows if not r.model.startswith("canary-"))
        for view in views
        if view.board is not None
        for row in view.board.rows
    )
    assert code == (1 if beaten else 0)
    assert ("canary:" in out) == beaten


class _TaskCount:
    """A progress receiver that records the most asyncio tasks alive whenever a verdict is in."""

    def __init__(self) -> None:
        self.most = 0

    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str) -> None:
        if stage == "verdicts":
            self.most = max(self.most, len(asyncio.all_tasks()))

    def calls(self, stats: object) -> None:
        pass


def test_a_cached_rerun_starts_a_window_of_games_and_lets_go_of_its_tasks(tmp_path: Path, sim: SimulatorServer) -> None:
    """Every pair's task exists from the start, but only a window of pairs judge at once: a rerun served from the
    cache must not start every game of the run before the first ends (a 100k-item rerun held them all in memory).
    Once the run returns, none of its tasks is left for the rating and report to carry."""
    path = _config(
        tmp_path,
        ROOT / "judge_arena/data/suites/core.jsonl",
        limit=12,
        runner={"cache_dir": "cache", "output_dir": "runs", "concurrency": 1},
    )
    inputs = load_inputs(load_config(path))
    asyncio.run(play_arena(inputs, simulator_url=sim.url))

    async def rerun() -> tuple[ArenaRun, int]:
        counted = _TaskCount()
        run = await play_arena(inputs, counted, simulator_url=sim.url)
        return run, counted.most

    sim.reset_log()
    run, most = asyncio.run(rerun())
    assert sim.requests == []
    assert run.stats.made == 0
    config = inputs.config
    answers, items = len(run.answers), len(run.battles) // (2 * len(config.judges) * len(config.normalizations))
    # The run's own task, its waiters, and every answer's and item's task: a game found in the cache is decided
    # without a task of its own.
    assert most <= 1 + 3 + answers + items
    assert items > 4 * 2 * config.runner.concurrency  # many times the window of items judged at once

    async def tasks_left() -> int:
        await play_arena(inputs, simulator_url=sim.url)
        gc.collect()
        tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task)]
        return sum(getattr(task.get_coro(), "__qualname__", "").startswith("_Play.") for task in tasks)

    assert asyncio.run(tasks_left()) == 0


def test_a_run_and_its_result_show_counts_not_records(tmp_path: Path, sim: SimulatorServer) -> None:
    """asyncio writes out the repr of `asyncio.run`'s result when it ends under Python's default SIGINT handler (a
    library call): a repr of every record took seconds and the run's peak memory at 100k games."""
    from judge_arena.pipeline import run_arena

    path = _config(tmp_path, ROOT / "judge_arena/data/suites/core.jsonl", limit=4)
    result = run_arena(load_config(path), simulator_url=sim.url)
    shown = repr(result)
    assert f"battles={len(result.run.battles)}" in shown
    assert f"answers={len(result.run.answers)}" in shown
    assert str(result.folder) in shown
    assert len(shown) < 400
    assert result.run.battles[0].replies[0] not in shown


def test_the_simulator_starts_for_the_first_call_it_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run served from the cache calls no model: it starts no simulator (nor imports its web server)."""
    started: list[SimulatorServer] = []
    enter = SimulatorServer.__enter__

    def counted(server: SimulatorServer) -> SimulatorServer:
        started.append(server)
        return enter(server)

    monkeypatch.setattr(SimulatorServer, "__enter__", counted)
    inputs = load_inputs(load_config(_config(tmp_path, ROOT / "judge_arena/data/suites/core.jsonl", limit=2)))
    first = asyncio.run(play_arena(inputs))
    assert first.stats.made > 0
    assert len(started) == 1
    again = asyncio.run(play_arena(inputs))
    assert again.stats.made == 0
    assert again.battles == first.battles
    assert len(started) == 1


def test_a_plain_game_of_answers_without_markdown_is_rendered_as_its_raw_game(
    tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its judge is shown the same texts, so the run renders and keys it once; it is still a battle of the plain
    view, decided as the raw game is, and counted as a request served."""
    from judge_arena import judge
    from judge_arena.style import strip_markdown

    candidates = [
        {"name": "plain", "model": "openai/sim-strong-plain", "api_base": "simulator"},
        {"name": "terse", "model": "openai/sim-weak-terse", "api_base": "simulator"},
    ]
    path = _config(
        tmp_path,
        ROOT / "judge_arena/data/suites/core.jsonl",
        limit=4,
        candidates=candidates,
        pairing={"mode": "all-pairs", "baseline": "plain"},
    )
    first = _run(path, sim)
    assert all(strip_markdown(turn) == turn for answer in first.answers for turn in answer.turns)
    shown: list[object] = []

    show = judge.show

    def counted(*args: Any) -> Any:
        shown.append(args)
        return show(*args)

    monkeypatch.setattr(judge, "show", counted)
    again = _run(path, sim)
    raw = [b for b in again.battles if b.normalization == "raw"]
    plain = [b for b in again.battles if b.normalization == "plain"]
    assert len(shown) == len(raw) == len(plain) > 0
    assert [(b.model_a, b.model_b, b.label, b.replies) for b in plain] == [
        (b.model_a, b.model_b, b.label, b.replies) for b in raw
    ]
    assert again.battles == first.battles
    assert again.stats.cached == first.stats.made + first.stats.shared
