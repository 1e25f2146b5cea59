"""Cost before the run: `run --dry-run` / `validate` estimate the calls net of the cache, their tokens and cost.

On the simulator the token estimate is within 10 % of what the run then used: on a first run (answers capped by
`max_tokens`, the judge's output as configured from a pilot run), and on a second night where one candidate is a new
model (its answers unknown, the others' cached, the judge's output taken from its cached verdicts).
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
from judge_arena.cli import EXIT_OK, main
from judge_arena.config import config_from_dict
from judge_arena.estimate import RunEstimate, estimate_run
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


def _estimate_and_run(folder: Path, data: dict[str, Any], sim: SimulatorServer) -> tuple[RunEstimate, ArenaRun]:
    inputs = load_inputs(config_from_dict(data, folder))
    with CacheReader(folder / "cache" / CACHE_FILE) as cache:
        estimate = estimate_run(inputs, cache.get)
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
