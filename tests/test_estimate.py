"""Cost before the run: `run --dry-run` / `validate` estimate the calls net of the cache, their tokens and cost.

On the simulator the token estimate is within 10 % of what the run then used: on a first run (answers capped by
`max_tokens`, the judge's output as configured from a pilot run), and on a second night where one candidate is a new
model (its answers unknown, the others' cached, the judge's output taken from its cached verdicts). With the plain
view as well: an upper bound before the answers exist, within 10 % once `judge-arena generate` has made them, on a
night where one candidate has a new revision (learned from its answers at the earlier one), and on a grown suite.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from judge_arena.arena import CACHE_FILE, ArenaRun, load_inputs, play_arena
from judge_arena.cli import EXIT_BAD_INPUT, EXIT_OK, main
from judge_arena.config import config_from_dict
from judge_arena.estimate import RunEstimate, earlier_answers, estimate_run
from judge_arena.pipeline import run_arena
from judge_arena.runs import list_runs
from judge_arena.sim import SimulatorServer
from judge_arena.store import CacheReader

PROMPTS = 8
CAP = 80
"""The candidates' max_tokens: below what the simulated candidates write, so their answers are cut at it."""
BOUND = 0.10
CANDIDATES = {"strong": "sim-strong-plain", "md": "sim-strong-markdown", "terse": "sim-good-terse"}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _config(candidates: dict[str, str], limit: int, judge: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "estimate",
        "suites": [{"path": "core", "limit": limit}],
        "candidates": [
            {"name": name, "model": f"openai/{model}", "api_base": "simulator", "params": {"max_tokens": CAP}}
            for name, model in candidates.items()
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator", **(judge or {})}],
        # A plain-view game of two answers without markdown is the raw game again, which a run asks once; an
        # estimate made before the answers exist cannot tell, so these runs judge the raw view only.
        "normalizations": ["raw"],
        "runner": {"cache_dir": "cache", "output_dir": "runs"},
    }


def _estimate_and_run(
    folder: Path, data: dict[str, Any], sim: SimulatorServer, *, history: bool = False
) -> tuple[RunEstimate, ArenaRun]:
    """The estimate, then the run; with `history`, as the command makes them: the estimate knows the earlier runs
    (`earlier_answers`), and the run writes its run folder."""
    config = config_from_dict(data, folder)
    inputs = load_inputs(config)
    with CacheReader(folder / "cache" / CACHE_FILE) as cache:
        estimate = estimate_run(inputs, cache.get, earlier=earlier_answers(config) if history else None)
    if history:
        return estimate, run_arena(config, simulator_url=sim.url).run
    return estimate, asyncio.run(play_arena(inputs, simulator_url=sim.url))


def _used(run: ArenaRun, names: list[str]) -> tuple[int, int]:
    calls = [run.stats.by_model[name] for name in names if name in run.stats.by_model]
    return sum(c.input_tokens for c in calls), sum(c.output_tokens for c in calls)


def _errors(estimate: RunEstimate, run: ArenaRun, role: str | None = None) -> dict[str, float]:
    """Relative error of the estimate against what the run used: input, output and total tokens."""
    models = [m for m in estimate.models if role is None or m.role == role]
    estimated = sum(m.input_tokens for m in models), sum(m.output_tokens for m in models)
    used = _used(run, [m.name for m in models])
    return {
        "input": estimated[0] / used[0] - 1,
        "output": estimated[1] / used[1] - 1,
        "total": sum(estimated) / sum(used) - 1,
    }


def _files(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_estimate_is_within_ten_percent_of_what_two_nights_used(
    tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A pilot on a few prompts, in a cache of its own, tells what the judge writes per verdict: the expectation a
    # user configures for a first run.
    _, pilot = _estimate_and_run(tmp_path / "pilot", _config(CANDIDATES, 3), sim)
    judge_calls = pilot.stats.by_model["judge"]
    per_verdict = round(judge_calls.output_tokens / judge_calls.made)

    # Night 1: nothing cached. Every call is to make; no server is started and nothing is written by the estimate.
    folder = tmp_path / "arena"
    night1 = _config(CANDIDATES, PROMPTS, {"runner": {"output_estimate": per_verdict}})
    estimate, run = _estimate_and_run(folder, night1, sim)
    assert (estimate.calls, estimate.cached) == (run.stats.made, 0)
    for role in ("candidate", "judge", None):
        errors = _errors(estimate, run, role)
        assert max(map(abs, errors.values())) <= BOUND, (role, errors)

    # Night 2: one candidate is a new model. Its answers and the games they are in are to make; the others' answers
    # and games come from the cache, and the judge is expected to write what its cached verdicts did (its
    # configured expectation is gone: the runner's default of 1024 would be 15 times too many).
    changed = {**CANDIDATES, "terse": "sim-weak-terse"}
    estimate, run = _estimate_and_run(folder, _config(changed, PROMPTS), sim)
    assert (estimate.calls, estimate.cached) == (run.stats.made, run.stats.cached)
    judge = next(m for m in estimate.models if m.role == "judge")
    assert judge.calls == 2 * judge.cached > 0  # two of the three pairs have the new model in them
    for role in ("judge", None):
        errors = _errors(estimate, run, role)
        assert max(map(abs, errors.values())) <= BOUND, (role, errors)

    # Night 3, the same config again: a dry run says 0 calls, and leaves the cache and the runs as they were.
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(_config(changed, PROMPTS)))
    before = _files(folder)

    def no_server(self: SimulatorServer) -> SimulatorServer:
        raise AssertionError("a dry run starts no server")

    monkeypatch.setattr(SimulatorServer, "__enter__", no_server)
    capsys.readouterr()
    assert main(["run", str(path), "--dry-run"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "0 calls to make: everything comes from the cache." in out
    assert _files(folder) == before


def test_a_dry_run_says_whether_the_budget_would_stop_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _config(CANDIDATES, 2)
    price = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
    for model in (*data["candidates"], *data["judges"]):
        model["price"] = price
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(data))
    estimate = estimate_run(load_inputs(config_from_dict(data, tmp_path)), lambda key: None)
    assert estimate.cost_usd == pytest.approx((2.0 * estimate.input_tokens + 8.0 * estimate.output_tokens) / 1e6)
    cost = estimate.cost_usd
    assert cost is not None
    for max_usd, verdict in ((cost / 2, "would stop the run"), (cost * 2, "would not stop the run")):
        assert main(["run", str(path), "--dry-run", "--set", f"budget.max_usd={max_usd}"]) == EXIT_OK
        assert f"budget ${max_usd:g}: {verdict}" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "runs").exists()


def test_candidates_read_from_answer_files_make_no_calls_and_unanswered_prompts_no_games(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    ours = tmp_path / "ours.jsonl"
    ours.write_text("".join(f'{{"prompt_id": "{i}", "answer": "Answer {i}."}}\n' for i in range(1, 4)))
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_text('{"prompt_id": "1", "answer": "Only this one."}\n')
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(f'{{"id": "{i}", "category": "c", "turns": ["Question {i}?"]}}\n' for i in range(1, 4)))
    data = _config(CANDIDATES, 3)
    data["suites"] = [{"path": str(suite)}]
    data["candidates"] = [
        data["candidates"][0],
        {"name": "ours", "answers": str(ours)},
        {"name": "theirs", "answers": str(theirs)},
    ]
    estimate, run = _estimate_and_run(tmp_path, data, sim)
    assert [m.name for m in estimate.models] == ["strong", "judge"]
    # 3 answers; games: strong-ours on 3 prompts, strong-theirs and ours-theirs on the 1 prompt theirs answers.
    assert estimate.calls == run.stats.made == 3 + 2 * (3 + 1 + 1)


def _with_plain(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "normalizations": ["raw", "plain"]}


def _within_bound(estimate: RunEstimate, run: ArenaRun) -> None:
    """Input and output tokens together, of the candidates, of the judge and of the run, within 10 %."""
    for role in ("candidate", "judge", None):
        if any(m.role == role or role is None for m in estimate.models if m.calls):
            error = _errors(estimate, run, role)["total"]
            assert abs(error) <= BOUND, (role, error)


def test_plain_view_games_are_counted_once_when_they_are_the_raw_game_again(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The simulated candidates write plain prose most of the time, so most plain-view games are their raw game
    # again, which the run asks once. Before the answers exist the estimate cannot tell which: it says it is an upper
    # bound, and why; once `judge-arena generate` has made the answers it is within 10 % again. On a later night,
    # a candidate's answers at its earlier revision say how it writes.
    _, pilot = _estimate_and_run(tmp_path / "pilot", _config(CANDIDATES, 3), sim)
    judge_calls = pilot.stats.by_model["judge"]
    per_verdict = round(judge_calls.output_tokens / judge_calls.made)
    folder = tmp_path / "arena"
    path = folder / "arena.yaml"
    folder.mkdir()
    night1 = _with_plain(_config(CANDIDATES, PROMPTS, {"runner": {"output_estimate": per_verdict}}))
    path.write_text(yaml.safe_dump(night1))

    assert main(["run", str(path), "--dry-run"]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "plain-view games are counted as calls of their own" in out
    assert "`judge-arena generate CONFIG` makes the answers alone" in out
    upper = estimate_run(load_inputs(config_from_dict(night1, folder)), lambda key: None)
    assert upper.at_most
    assert upper.undecided_games > 0

    assert main(["generate", str(path)]) == EXIT_OK
    assert not (folder / "runs").exists() or not any((folder / "runs").iterdir())  # no run folder
    assert "answers in the cache" in capsys.readouterr().out
    assert main(["run", str(path), "--dry-run"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "≤" not in out
    assert "counted as calls of their own" not in out
    estimate, run = _estimate_and_run(folder, night1, sim, history=True)
    judge = next(m for m in estimate.models if m.role == "judge")
    assert judge.calls == run.stats.by_model["judge"].made < next(m for m in upper.models if m.role == "judge").calls
    assert not estimate.at_most
    _within_bound(estimate, run)

    # Night 2: one candidate's revision changes, and a worse model answers behind it. Its answers are not known;
    # without the run history the estimate is an upper bound again, with it the answers it gave at its earlier
    # revision in night 1's run say how it writes.
    night2 = _with_plain(_config({**CANDIDATES, "terse": "sim-weak-terse"}, PROMPTS))
    night2["candidates"][2]["revision"] = "rev-2"
    config = config_from_dict(night2, folder)
    with CacheReader(folder / "cache" / CACHE_FILE) as cache:
        assert estimate_run(load_inputs(config), cache.get).at_most
    (night1_run,) = list_runs(folder / "runs")
    earlier = earlier_answers(config)
    assert {name: (str(e.candidate.model), e.run) for name, e in earlier.items()} == {
        "terse": ("openai/sim-good-terse", night1_run.id)
    }
    path.write_text(yaml.safe_dump(night2))
    assert main(["run", str(path), "--dry-run"]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert f"/8 (as openai/sim-good-terse in {night1_run.id})" in out
    estimate, run = _estimate_and_run(folder, night2, sim, history=True)
    assert not estimate.at_most
    assert [(s.candidate, s.earlier) for s in estimate.unchanged] == [("terse", earlier["terse"])]
    _within_bound(estimate, run)

    # The suite grows: the candidates' answers to the new prompts are not known, but their answers to the old ones
    # say how many of them plain leaves unchanged; the estimate expects as many, within 10 %.
    grown = _with_plain(_config({**CANDIDATES, "terse": "sim-weak-terse"}, 2 * PROMPTS))
    grown["candidates"][2]["revision"] = "rev-2"
    estimate, run = _estimate_and_run(folder, grown, sim, history=True)
    assert not estimate.at_most
    assert {(s.candidate, s.known) for s in estimate.unchanged} == {(name, PROMPTS) for name in CANDIDATES}
    unchanged = {s.candidate: s.unchanged for s in estimate.unchanged}
    assert unchanged["md"] < unchanged["strong"]  # markdown is what plain takes out
    _within_bound(estimate, run)


def test_a_dry_run_with_refresh_prices_the_refreshed_answers_and_their_games_as_calls_to_make(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _config(CANDIDATES, 4)
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(data))
    _estimate_and_run(tmp_path, data, sim)  # everything cached now
    inputs = load_inputs(config_from_dict(data, tmp_path))
    with CacheReader(tmp_path / "cache" / CACHE_FILE) as cache:
        cached = estimate_run(inputs, cache.get)
        estimate = estimate_run(inputs, cache.get, refresh=["terse"])
    assert cached.calls == 0
    by_name = {m.name: m for m in estimate.models}
    turns = sum(len(prompt.turns) for prompt in inputs.prompts)
    assert (by_name["terse"].calls, by_name["terse"].cached) == (turns, 0)
    assert by_name["terse"].output_tokens > 0  # as long as its cached answers
    assert (by_name["strong"].calls, by_name["md"].calls) == (0, 0)
    games = next(m for m in cached.models if m.role == "judge").cached
    judge = by_name["judge"]
    assert (judge.calls, judge.cached) == (games * 2 // 3, games // 3)  # two of the three pairs have terse in them
    assert judge.at_most  # answers made anew may come out as they were, and their games be cached
    assert estimate.refreshed == ("terse",)

    # The run makes the refreshed candidate's calls as priced; the simulator answers as before, so no game is new.
    run = asyncio.run(play_arena(inputs, simulator_url=sim.url, refresh=["terse"]))
    assert run.stats.by_model["terse"].made == by_name["terse"].calls
    assert "judge" not in run.stats.by_model or run.stats.by_model["judge"].made <= judge.calls

    capsys.readouterr()
    assert main(["run", str(path), "--dry-run", "--refresh", "terse"]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "answers made anew (--refresh): terse" in out
    assert "0 calls to make" not in out
    assert main(["run", str(path), "--dry-run", "--refresh", "nobody"]) == EXIT_BAD_INPUT
    assert "'nobody' is not a candidate" in capsys.readouterr().err


def test_adaptive_pairing_is_priced_at_the_share_of_all_pairs_it_may_play(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _config({**CANDIDATES, "mid": "sim-mid-plain"}, 6)
    everything = estimate_run(load_inputs(config_from_dict(data, tmp_path)), lambda key: None)
    data["pairing"] = {"mode": "adaptive", "max_share": 0.5}
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(data))
    estimate = estimate_run(load_inputs(config_from_dict(data, tmp_path)), lambda key: None)
    judge, all_pairs = (next(m for m in e.models if m.role == "judge") for e in (estimate, everything))
    assert estimate.adaptive is not None
    assert (estimate.adaptive.items, estimate.adaptive.all_items) == (18, 36)  # 6 pairs × 6 prompts, half of them
    assert judge.calls == all_pairs.calls // 2 == 18 * 2
    assert judge.input_tokens == pytest.approx(all_pairs.input_tokens / 2, abs=1)
    assert judge.at_most
    candidates = [m for m in estimate.models if m.role == "candidate"]
    assert candidates == [m for m in everything.models if m.role == "candidate"]  # every answer is made still
    assert main(["run", str(path), "--dry-run"]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "adaptive pairing is priced as all pairs, capped at the 18 of their 36 (pair, prompt) items" in out
    assert f"≤ {judge.calls}" in out
