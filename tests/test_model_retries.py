"""Per-model retry settings: a model's own `runner` settings replace the runner's for its calls only."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import yaml

from judge_arena.arena import CACHE_FILE, load_inputs, play_arena
from judge_arena.client import CallFailed, Client, Endpoint
from judge_arena.config import ModelConfig, ModelRunnerConfig, RunnerConfig, load_config
from judge_arena.records import Message
from judge_arena.sim import SimulatorServer
from judge_arena.sim.faults import Fault, FaultPlan
from judge_arena.store import Store

PROMPTS = 2


def test_each_model_is_attempted_as_often_as_its_own_settings_say(tmp_path: Path) -> None:
    # Every request to two of the candidates fails with a 503, which is retried until the call's attempts run out.
    plan = FaultPlan([Fault("unavailable", model="sim-strong-plain"), Fault("unavailable", model="sim-good-terse")])
    config = {
        "name": "retries",
        "suites": [{"path": "core", "limit": PROMPTS}],
        "candidates": [
            {"name": "two", "model": "openai/sim-strong-plain", "api_base": "simulator", "runner": {"max_attempts": 2}},
            {"name": "five", "model": "openai/sim-good-terse", "api_base": "simulator", "runner": {"max_attempts": 5}},
            {"name": "fine", "model": "openai/sim-mid-plain", "api_base": "simulator"},
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator"}],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_attempts": 3, "max_wait_s": 0.01},
    }
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    with SimulatorServer(hook=plan.hook()) as sim:
        run = asyncio.run(play_arena(load_inputs(load_config(path)), simulator_url=sim.url))
        requests = Counter(record.model for record in sim.requests)
    assert requests["sim-strong-plain"] == PROMPTS * 2
    assert requests["sim-good-terse"] == PROMPTS * 5
    assert requests["sim-mid-plain"] == PROMPTS  # not faulted: one attempt each
    assert run.stats.retries == Counter({"http_503": PROMPTS * (1 + 4)})
    with Store(tmp_path / "cache" / CACHE_FILE) as store:
        attempts = store._db.execute("SELECT model, attempts FROM failures ORDER BY model").fetchall()
    assert attempts == [("openai/sim-good-terse", 5)] * PROMPTS + [("openai/sim-strong-plain", 2)] * PROMPTS


def test_a_models_own_longest_wait_caps_the_wait_the_server_asks_for() -> None:
    plan = FaultPlan([Fault("rate_limit")], retry_after_s=30)
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def attempts(endpoint: Endpoint) -> int:
        client = Client(concurrency=1, timeout_s=30, max_attempts=3, max_wait_s=60, sleep=record)
        try:
            await client.complete(endpoint, (Message("user", "What is a heap?"),), {"max_tokens": 50})
        except CallFailed as failure:
            return failure.attempts
        finally:
            await client.aclose()
        raise AssertionError("every request is refused")

    with SimulatorServer(hook=plan.hook()) as sim:
        own = ModelRunnerConfig(max_attempts=2, max_wait_s=4)
        patient = Endpoint("openai/sim-judge", f"{sim.url}/v1", None, "patient")
        hasty = Endpoint("openai/sim-judge", f"{sim.url}/v1", None, "hasty", settings=own)
        assert asyncio.run(attempts(patient)) == 3
        assert sleeps == [30, 30]
        sleeps.clear()
        assert asyncio.run(attempts(hasty)) == 2
        assert sleeps == [4]


def test_the_runner_settings_of_a_model_are_its_own_where_set() -> None:
    runner = RunnerConfig(max_attempts=4, max_wait_s=60, output_estimate=1024)
    model = ModelConfig(name="m", model="openai/x", runner=ModelRunnerConfig(max_attempts=9, output_estimate=200))
    merged = runner.of(model)
    assert (merged.max_attempts, merged.max_wait_s, merged.output_estimate) == (9, 60, 200)
    assert runner.of(ModelConfig(name="n", model="openai/x")) == runner


def test_the_budget_expects_a_models_own_output_estimate_within_its_max_tokens() -> None:
    from judge_arena.budget import Budget

    budget = Budget(max_usd=1.0, output_estimate=1024)
    own = ModelRunnerConfig(output_estimate=200)
    assert budget.output_tokens(ModelConfig(name="m", model="openai/x")) == 1024
    assert budget.output_tokens(ModelConfig(name="m", model="openai/x", runner=own)) == 200
    capped = ModelConfig(name="m", model="openai/x", runner=own, params={"max_tokens": 50})
    assert budget.output_tokens(capped) == 50
