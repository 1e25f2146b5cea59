"""Budget cap on the simulator: a covering budget runs normally, a small one stops cleanly and a rerun resumes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from judge_arena.arena import ArenaRun, load_inputs, play_arena
from judge_arena.budget import Budget
from judge_arena.cli import EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_OK, main
from judge_arena.config import ModelConfig, PriceConfig, load_config
from judge_arena.records import Message
from judge_arena.sim import SimulatorServer
from judge_arena.sim.server import SimRequest, render
from judge_arena.tokens import input_tokens

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "judge_arena" / "data" / "templates" / "pairwise.yaml"
SUITE = ROOT / "judge_arena" / "data" / "suites" / "core.jsonl"
PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def cli_sim(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> SimulatorServer:
    """Routes `judge-arena run` to the module's simulator, whose request log the test reads."""
    monkeypatch.setattr("judge_arena.sim.server.SimulatorServer", lambda: contextlib.nullcontext(sim))
    return sim


def _config(folder: Path, *, max_usd: float | None, priced: bool = True, limit: int = 3) -> Path:
    def model(name: str, model: str, **extra: object) -> dict[str, object]:
        return {"name": name, "model": model, "api_base": "simulator", **({"price": PRICE} if priced else {}), **extra}

    config: dict[str, object] = {
        "name": "budget",
        "suites": [{"path": str(SUITE), "limit": limit}],
        "candidates": [
            model("strong-plain", "openai/sim-strong-plain"),
            model("markdown-weak", "openai/sim-markdown-weak", params={"max_tokens": 400}),
            model("strong-markdown", "anthropic/sim-strong-markdown", params={"max_tokens": 1024}),
        ],
        "judges": [{**model("judge", "openai/sim-judge"), "template": str(TEMPLATE)}],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    if max_usd is not None:
        config["budget"] = {"max_usd": max_usd}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(path: Path, sim: SimulatorServer) -> ArenaRun:
    return asyncio.run(play_arena(load_inputs(load_config(path)), simulator_url=sim.url))


def _cached(folder: Path) -> list[tuple[str, int, int]]:
    """The cache's completions: request JSON, input and output tokens."""
    with contextlib.closing(sqlite3.connect(folder / "cache" / "arena.sqlite")) as db:
        return list(db.execute("SELECT request, input_tokens, output_tokens FROM completions"))


def _cost(rows: list[tuple[str, int, int]]) -> float:
    return sum(i * PRICE["input_per_mtok"] / 1e6 + o * PRICE["output_per_mtok"] / 1e6 for _, i, o in rows)


def _summary(folder: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads(next((folder / "runs").iterdir()).joinpath("summary.json").read_text())
    return result


def test_covering_budget_runs_normally_and_reports_spend(
    tmp_path: Path, cli_sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_sim.reset_log()
    assert main(["run", str(_config(tmp_path, max_usd=100.0))]) == EXIT_OK
    assert "budget reached" not in capsys.readouterr().out
    rows = _cached(tmp_path)
    budget = _summary(tmp_path)["budget"]
    assert isinstance(budget, dict)
    assert not budget["reached"]
    assert budget["refused_calls"] == 0
    assert budget["spent_usd"] == pytest.approx(_cost(rows), abs=1e-6)
    assert budget["spent_usd"] > 0
    assert len(rows) == sum(r.billed for r in cli_sim.requests)


def test_input_estimates_cover_what_the_simulator_bills(tmp_path: Path, sim: SimulatorServer) -> None:
    _run(_config(tmp_path, max_usd=None), sim)
    for request, billed_input, _ in _cached(tmp_path):
        messages = [Message(m["role"], m["content"]) for m in json.loads(request)["messages"]]
        assert input_tokens(messages) >= billed_input


def test_output_reservations_follow_what_the_answers_used() -> None:
    price = PriceConfig(**PRICE)
    judge = ModelConfig(name="judge", model="openai/sim-judge", price=price)
    capped = ModelConfig(name="capped", model="openai/sim-judge", price=price, params={"max_tokens": 300})
    budget = Budget(1.0, output_estimate=1024)
    # until a few answers are known: the configured estimate (runner.output_estimate), within max_tokens
    assert (budget.output_tokens(judge), budget.output_tokens(capped)) == (1024, 300)
    for used in [120, 80, 100, 90, 110]:
        reservation = asyncio.run(budget.reserve(judge, [Message("user", "Which is better?")]))
        budget.bill(reservation, 50, used)
        budget.release(reservation)
    assert budget.output_tokens(judge) == 120
    assert budget.output_tokens(capped) == 300


def test_small_budget_stops_cleanly_and_a_rerun_resumes(
    tmp_path: Path, cli_sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # enough work that one call is a small part of the cap (a call's first reservation assumes 1,024 output tokens)
    reference = _run(_config(tmp_path / "reference", max_usd=None, limit=10), cli_sim)
    everything = _cached(tmp_path / "reference")
    cap = _cost(everything) * 0.4

    folder = tmp_path / "budget"
    cli_sim.reset_log()
    assert main(["run", str(_config(folder, max_usd=cap, limit=10))]) == EXIT_BUDGET
    out = capsys.readouterr().out
    assert "budget reached: $" in out
    assert "rerun with a larger budget to resume" in out
    made = _cached(folder)
    assert 0 < len(made) < len(everything)
    # every request the simulator saw was answered and paid, and together they stay within the cap
    assert len(made) == len(cli_sim.requests) == sum(r.billed for r in cli_sim.requests)
    summary = _summary(folder)
    budget, calls = summary["budget"], summary["calls"]
    assert isinstance(budget, dict)
    assert isinstance(calls, dict)
    assert budget["reached"]
    assert budget["refused_calls"] > 0
    assert calls["made"] == len(made)
    assert budget["spent_usd"] == pytest.approx(_cost(made), abs=1e-6)
    # reservations follow what the answers use, not max_tokens: the run spends most of its cap, and never more
    assert 0.9 * cap <= budget["spent_usd"] <= cap, (budget["spent_usd"], cap)
    assert summary["failures"] == 0

    cli_sim.reset_log()
    resumed = _run(_config(folder, max_usd=_cost(everything), limit=10), cli_sim)
    assert resumed.stats.refused == 0
    assert not resumed.failures
    assert resumed.stats.made == sum(r.billed for r in cli_sim.requests) == len(everything) - len(made)
    assert resumed.battles == reference.battles
    # latency differs between the runs; everything else an answer holds is the same
    assert [(a.model, a.prompt_id, a.turns) for a in resumed.answers] == [
        (a.model, a.prompt_id, a.turns) for a in reference.answers
    ]


class _EmptyFirst:
    """Answers each request's first attempt with an empty text, billed with its usage as a provider would."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.billed: list[tuple[int, int]] = []

    async def __call__(self, request: SimRequest) -> web.StreamResponse | None:
        key = json.dumps([request.http.path, request.model, [(m.role, m.content) for m in request.messages]])
        self.billed.append((request.reply.input_tokens, request.reply.output_tokens))
        if key in self.seen:
            return None
        self.seen.add(key)
        return await render(request, replace(request.reply, text=""))


def test_billed_attempts_the_run_cannot_use_count_against_the_budget(tmp_path: Path) -> None:
    empty_first = _EmptyFirst()
    with SimulatorServer(hook=empty_first) as sim:
        run = _run(_config(tmp_path, max_usd=100.0), sim)
    assert not run.failures
    assert len(empty_first.billed) == 2 * len(empty_first.seen)
    billed = sum(i * PRICE["input_per_mtok"] / 1e6 + o * PRICE["output_per_mtok"] / 1e6 for i, o in empty_first.billed)
    # the empty answers were paid for too: twice what the stored answers cost
    assert run.stats.spent_usd == pytest.approx(billed) == pytest.approx(2 * _cost(_cached(tmp_path)))


def test_unknown_price_with_a_budget_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, max_usd=1.0, priced=False)
    assert main(["run", str(path)]) == EXIT_BAD_INPUT
    assert "field 'candidates.0.price'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "cache").exists()
    # without a budget no price is needed
    assert main(["validate", str(_config(tmp_path, max_usd=None, priced=False))]) == EXIT_OK
