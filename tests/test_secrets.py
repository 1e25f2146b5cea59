"""An API key never reaches a file, the terminal or the logs, even when the server echoes it in its errors."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from judge_arena.arena import load_inputs, play_arena
from judge_arena.config import load_config
from judge_arena.report.files import write_report
from judge_arena.sim import SimulatorServer
from judge_arena.sim.faults import Fault, FaultInjector, FaultPlan
from judge_arena.views import rate_views

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "judge_arena" / "data" / "templates" / "pairwise.yaml"

KEY_ENV = "JA_SENTINEL_KEY"
SENTINEL = "sk-sentinel-0123456789abcdefghijKLMN"
FRAGMENTS = (SENTINEL, "0123456789abcdefghij", "abcdefghijKLMN")
"""The key, and pieces of it a masked echo ('sk-sen…KLMN') or a cut message could still carry."""
KEYED = "sim-strong-markdown"
"""The one candidate configured with the key."""


def _plan() -> FaultPlan:
    # A third of the keyed model's requests get a 401 that quotes the key; the others are answered as usual.
    return FaultPlan([Fault("echo_key", rate=0.35, model=KEYED)], seed=5)


def _config(folder: Path, api_base: str) -> Path:
    config = {
        "name": "secrets",
        "suites": [{"path": str(ROOT / "judge_arena/data/suites/core.jsonl"), "limit": 4}],
        "candidates": [
            {"name": "keyed", "model": f"openai/{KEYED}", "api_base": api_base, "api_key_env": KEY_ENV},
            {"name": "plain", "model": "openai/sim-strong-plain", "api_base": api_base},
            {"name": "terse", "model": "openai/sim-good-terse", "api_base": api_base},
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": api_base, "template": str(TEMPLATE)}],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.05},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _leaks(data: bytes | str) -> list[str]:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    return [fragment for fragment in FRAGMENTS if fragment in text]


def _files_leaking(folder: Path) -> dict[str, list[str]]:
    """Every file under the folder (the SQLite database, its WAL and shm files included) that holds the key."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "arena.yaml" and (leaks := _leaks(path.read_bytes())):
            found[str(path.relative_to(folder))] = leaks
    return found


@pytest.fixture
def sentinel(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    yield SENTINEL


def _echoed(hook: FaultInjector, sim: SimulatorServer) -> int:
    """How many requests were answered with the key quoted in their error body."""
    assert all(r.model == KEYED for r in sim.requests if r.status == 401)
    return sum(i.kind == "echo_key" for i in hook.injections)


def test_key_echoed_by_the_server_is_written_nowhere(
    tmp_path: Path, sentinel: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    # litellm's loggers do not all propagate to the root logger: listen to them directly as well.
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "httpcore", "openai"):
        logging.getLogger(name).addHandler(caplog.handler)
    try:
        hook = _plan().hook()
        with SimulatorServer(hook=hook) as sim:
            inputs = load_inputs(load_config(_config(tmp_path, "simulator")))
            run = asyncio.run(play_arena(inputs, simulator_url=sim.url))
            folder = write_report(run, rate_views(inputs.config, run.battles, run.answers))
        echoed = _echoed(hook, sim)
    finally:
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "httpcore", "openai"):
            logging.getLogger(name).removeHandler(caplog.handler)

    # The test means something: the key was sent, echoed back, and the calls failed on it with the key quoted.
    assert echoed > 0
    generate_failures = [f for f in run.failures if f.stage == "generate"]
    assert generate_failures and all(f.reason.startswith("auth: ") for f in generate_failures)
    assert all("[redacted]" in f.reason for f in generate_failures)  # the echo was there, and was removed
    assert any(a.model == "keyed" for a in run.answers)
    assert folder.is_dir() and (tmp_path / "cache" / "arena.sqlite").is_file()
    assert caplog.records, "no log output was captured at all"

    assert _files_leaking(tmp_path) == {}
    captured = capsys.readouterr()
    assert _leaks(captured.out) == [] and _leaks(captured.err) == []
    assert _leaks(caplog.text) == []
    assert _leaks(repr(run)) == []


def test_key_echoed_by_the_server_is_written_nowhere_by_the_cli(tmp_path: Path, sentinel: str) -> None:
    hook = _plan().hook()
    with SimulatorServer(hook=hook) as sim:
        path = _config(tmp_path, f"{sim.url}/v1")
        env = {**os.environ, KEY_ENV: sentinel, "COLUMNS": "250"}
        done = subprocess.run(
            [sys.executable, "-m", "judge_arena.cli", "run", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        echoed = _echoed(hook, sim)

    assert echoed > 0
    assert done.returncode == 1, done.stderr[-2000:]  # some calls failed: the ones whose key was refused
    assert "auth" in done.stdout + done.stderr
    assert _leaks(done.stdout) == [] and _leaks(done.stderr) == []
    assert list((tmp_path / "runs").iterdir())
    assert _files_leaking(tmp_path) == {}
