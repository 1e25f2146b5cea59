"""Two processes running the same config against one cache: nothing corrupted, nothing paid twice."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sim_arena import write_config

from judge_arena.runs import _staged_folder
from judge_arena.sim import SimulatorServer
from judge_arena.store import Store


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _config(folder: Path, sim_url: str) -> Path:
    # An explicit api_base (not 'simulator') so both processes talk to the one server whose log we read.
    return write_config(folder, f"{sim_url}/v1", name="twice", limit=8, concurrency=4)


def _billed_per_request(sim: SimulatorServer) -> Counter[str]:
    return Counter(json.dumps([r.model, [(m.role, m.content) for m in r.messages]]) for r in sim.requests if r.billed)


def test_two_processes_share_one_cache_and_pay_once(tmp_path: Path, sim: SimulatorServer) -> None:
    path = _config(tmp_path, sim.url)
    command = [sys.executable, "-m", "judge_arena.cli", "run", str(path)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    billed = _billed_per_request(sim)
    assert billed
    assert max(billed.values()) == 1, [k for k, n in billed.items() if n > 1][:3]
    with Store(tmp_path / "cache" / "arena.sqlite") as store:
        assert store.count_completions() == len(billed)
        assert store.count_failures() == 0

    boards = [_lines(folder / "leaderboard.csv") for folder in sorted((tmp_path / "runs").iterdir())]
    assert len(boards) == 2
    assert boards[0] == boards[1]


def _lines(path: Path) -> list[str]:
    """The leaderboard file's lines (both runs must write the same numbers)."""
    return path.read_text().splitlines()


def _open_store(path: str) -> int:
    with Store(Path(path)) as store:
        return store.count_completions()


def test_processes_creating_one_new_cache_at_once_all_open_it(tmp_path: Path) -> None:
    # Switching a brand-new file to WAL fails with "database is locked" at once, with no busy wait, when another
    # process is creating it too; before the set-up was retried, one start in ~130 failed this way.
    context = multiprocessing.get_context("spawn")
    with context.Pool(6) as pool:
        for attempt in range(25):
            path = str(tmp_path / f"cache-{attempt}.sqlite")
            assert pool.map(_open_store, [path] * 6) == [0] * 6


def test_runs_finishing_in_the_same_second_get_report_folders_of_their_own(tmp_path: Path) -> None:
    # Two runs of one config finishing in the same second once both took the same name, and one failed.
    (tmp_path / "arena-20240101-000000").mkdir()  # an earlier run's report
    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda _: _staged_folder(tmp_path, "arena-20240101-000000"), range(8)))
    folders = sorted(folder.name for _, folder in claimed)
    assert folders == sorted(f"arena-20240101-000000-{n}" for n in range(2, 10))
    assert all(staging.is_dir() and staging.name == f".{folder.name}.partial" for staging, folder in claimed)
