"""An API key never reaches a file, the terminal or the logs, even when the server echoes it in its errors."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from judge_arena.arena import load_inputs, play_arena
from judge_arena.config import load_config
from judge_arena.errors import Redactor
from judge_arena.report.files import write_report
from judge_arena.sim import SimulatorServer
from judge_arena.sim.faults import Fault, FaultInjector, FaultKind, FaultPlan
from judge_arena.views import rate_views

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "judge_arena" / "data" / "templates" / "pairwise.yaml"

KEY_ENV = "JA_SENTINEL_KEY"
SENTINEL = "sk-sentinel-0123456789abcdefghijKLMN"
FRAGMENTS = (SENTINEL, "0123456789abcdefghij", "abcdefghijKLMN")
"""The key, and pieces of it a masked echo ('sk-sen…KLMN') or a cut message could still carry."""
GOOGLE_KEY = "AIzaSyD3fG7hJ2kL9mN4pQ6rS8tU1vW3xY5zA7b"
"""Shaped like a Google API key: no `sk-` prefix for a pattern to find."""
PLAIN_KEY = "Zq81HfK2pLmN4oRs7TuV9wXy0AbCdEfGhIjK"
"""A key of no known shape at all: only its value can find it."""
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


def _pieces(key: str) -> tuple[str, ...]:
    """Every 8 characters in a row of the key, and its last 4 as a masked echo shows them."""
    return (*(key[i : i + 8] for i in range(len(key) - 7)), f"...{key[-4:]}")


def _leaks(data: bytes | str, fragments: tuple[str, ...] = FRAGMENTS) -> list[str]:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    return [fragment for fragment in fragments if fragment in text]


def _files_leaking(folder: Path, fragments: tuple[str, ...] = FRAGMENTS) -> dict[str, list[str]]:
    """Every file under the folder (the SQLite database, its WAL and shm files included) that holds the key."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "arena.yaml" and (leaks := _leaks(path.read_bytes(), fragments)):
            found[str(path.relative_to(folder))] = leaks
    return found


@pytest.fixture
def sentinel(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    return SENTINEL


def _echoed(hook: FaultInjector, sim: SimulatorServer, echo: FaultKind = "echo_key") -> int:
    """How many requests were answered with the key quoted in their error body."""
    assert all(r.model == KEYED for r in sim.requests if r.status == 401)
    return sum(i.kind == echo for i in hook.injections)


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
    # Refused for its key, or not made once three in a row were (the key is then quoted in the reason).
    assert generate_failures
    assert all(f.reason.startswith(("auth: ", "stopped: ")) for f in generate_failures)
    assert all("[redacted]" in f.reason for f in generate_failures)  # the echo was there, and was removed
    assert any(a.model == "keyed" for a in run.answers)
    assert folder.is_dir()
    assert (tmp_path / "cache" / "arena.sqlite").is_file()
    assert caplog.records, "no log output was captured at all"

    assert _files_leaking(tmp_path) == {}
    captured = capsys.readouterr()
    assert _leaks(captured.out) == []
    assert _leaks(captured.err) == []
    assert _leaks(caplog.text) == []
    assert _leaks(repr((run, run.answers, run.battles, run.failures, run.stats))) == []


@pytest.mark.parametrize(
    ("key", "echo"),
    [(SENTINEL, "echo_key"), (GOOGLE_KEY, "echo_masked_key"), (PLAIN_KEY, "echo_masked_key")],
    ids=["whole", "google-masked", "unknown-shape-masked"],
)
def test_key_echoed_by_the_server_is_written_nowhere_by_the_cli(tmp_path: Path, key: str, echo: FaultKind) -> None:
    """Into the cache's failures table, failures.csv, stdout and stderr: no 8 characters of the key in a row."""
    hook = FaultPlan([Fault(echo, rate=0.35, model=KEYED)], seed=5).hook()
    with SimulatorServer(hook=hook) as sim:
        path = _config(tmp_path, f"{sim.url}/v1")
        env = {**os.environ, KEY_ENV: key, "COLUMNS": "250"}
        done = subprocess.run(
            [sys.executable, "-m", "judge_arena.cli", "run", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        echoed = _echoed(hook, sim, echo)

    assert echoed > 0
    assert done.returncode == 1, done.stderr[-2000:]  # some calls failed: the ones whose key was refused
    assert "auth" in done.stdout + done.stderr
    assert "[redacted]" in done.stdout
    fragments = _pieces(key)
    assert _leaks(done.stdout, fragments) == []
    assert _leaks(done.stderr, fragments) == []
    (report,) = (tmp_path / "runs").iterdir()
    assert "[redacted]" in (report / "failures.csv").read_text()
    with sqlite3.connect(tmp_path / "cache" / "arena.sqlite") as db:
        stored = [message for (message,) in db.execute("SELECT message FROM failures")]
    assert stored
    assert all("[redacted]" in message for message in stored)
    assert _files_leaking(tmp_path, fragments) == {}


@pytest.mark.parametrize("key", [GOOGLE_KEY, PLAIN_KEY], ids=["google", "unknown-shape"])
@pytest.mark.parametrize("shown", range(10, 15))
def test_a_masked_echo_is_redacted_by_the_keys_value(key: str, shown: int) -> None:
    redact = Redactor()
    redact.add(key)
    said = f"API key not valid. Please pass a valid API key. (key: {key[:shown]}...{key[-4:]})"
    assert redact(said) == "API key not valid. Please pass a valid API key. (key: [redacted])"


@pytest.mark.parametrize("length", [8, 9, 20])
def test_any_piece_of_a_key_eight_characters_long_is_redacted(length: int) -> None:
    redact = Redactor()
    redact.add(PLAIN_KEY)
    for start in range(len(PLAIN_KEY) - length + 1):
        piece = PLAIN_KEY[start : start + length]
        assert redact(f"echoed {piece}, then cut") == "echoed [redacted], then cut"


def test_what_is_not_a_key_is_kept() -> None:
    redact = Redactor()
    redact.add(PLAIN_KEY)
    redact.add("no")  # a short key is redacted whole, never piece by piece
    said = "Rate limit reached for requests. Please try again in 2.5s. (request 7f3a)"
    assert redact(said) == said
    assert redact(f"seven {PLAIN_KEY[:7]} only") == f"seven {PLAIN_KEY[:7]} only"
    assert redact("say no") == "say [redacted]"


@pytest.mark.parametrize(
    "said", [f"key {GOOGLE_KEY}", f"key {SENTINEL}", "key AIzaSyD3fG7h...A7b", "key sk-abc***xyz", "key abCD12***wxYZ"]
)
def test_keys_the_run_did_not_read_are_caught_by_their_shape(said: str) -> None:
    assert Redactor()(said) == "key [redacted]"
