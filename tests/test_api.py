"""The library surface, used as a notebook would: a config built in Python, a run inside a running event loop, the
run folder read back, and a leaderboard fitted from battles in the Chatbot Arena layout."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import judge_arena as ja

CANDIDATES = ("strong-plain", "mid-plain", "weak-verbose")


def _config_data() -> dict[str, Any]:
    return {
        "name": "notebook",
        "suites": [{"path": "core", "limit": 6}],
        "candidates": [{"name": name, "model": f"openai/sim-{name}", "api_base": "simulator"} for name in CANDIDATES],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator", "template": "pairwise"}],
        "pairing": {"mode": "all-pairs", "baseline": "mid-plain"},
        "rating": {"bootstrap_rounds": 100},
    }


def test_the_public_names_are_exported_and_documented() -> None:
    for name in ja.__all__:
        value = getattr(ja, name)
        if name != "__version__":
            assert value.__doc__, f"{name} has no docstring"
    assert ja.__version__ == __import__("importlib.metadata").metadata.version("judge-arena")
    with pytest.raises(AttributeError):
        _ = ja.not_a_name


async def test_a_config_built_in_python_runs_inside_a_running_event_loop(tmp_path: Path) -> None:
    asyncio.get_running_loop()  # as in Jupyter: a loop is running in this thread
    config = ja.config_from_dict(_config_data(), base_dir=tmp_path)
    assert config.runner.cache_dir.is_relative_to(tmp_path)
    assert config.runner.output_dir.is_relative_to(tmp_path)

    result = await ja.run_arena_async(config)
    assert result.status == "complete"
    assert result.folder.parent == config.runner.output_dir

    run = ja.load_run(result.folder)
    raw = run.boards[run.boards["view"] == "raw"]
    assert sorted(raw["model"]) == sorted(CANDIDATES)
    assert len(run.battles) == 3 * 6 * 2 * 2  # pairs × prompts × orders × views
    assert set(run.answers["model"]) == set(CANDIDATES)
    assert run.summary["calls"]["failed"] == 0

    # The blocking form works from inside the loop too (on a worker thread), and the rerun is served from the cache.
    again = ja.run_arena(config)
    assert again.run.stats.made == 0
    assert again.folder != result.folder


def test_a_leaderboard_from_a_chatbot_arena_battles_frame() -> None:
    rows = []
    for i in range(60):
        rows += [
            {"model_a": "a", "model_b": "b", "winner": "model_a" if i % 4 else "tie"},
            {"model_a": "b", "model_b": "c", "winner": "model_a" if i % 3 else "tie (bothbad)"},
            {"model_a": "c", "model_b": "a", "winner": "model_b" if i % 5 else "model_a"},
        ]
    board = ja.fit_leaderboard(pd.DataFrame(rows), rounds=20)
    order = [row.model for row in sorted(board.rows, key=lambda row: -row.rating)]
    assert order == ["a", "b", "c"]


def test_python_m_judge_arena_and_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "judge_arena", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"judge-arena {ja.__version__}"


def test_the_readme_example_runs(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("## Use it from Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("complete ")
    assert (tmp_path / "runs").is_dir()


def test_a_run_collects_garbage_less_often_and_sets_the_collector_back() -> None:
    """The collector's thresholds are raised while a run's records pile up, and are the caller's again after."""
    from judge_arena import pipeline

    async def thresholds_during() -> tuple[int, ...]:
        return gc.get_threshold()

    before = gc.get_threshold()
    during = pipeline._blocking(thresholds_during())
    assert during[0] > before[0]
    assert gc.get_threshold() == before

    async def fails() -> None:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        pipeline._blocking(fails())
    assert gc.get_threshold() == before


def test_a_run_takes_arrow_memory_from_the_system_and_sets_the_pool_back() -> None:
    """pyarrow's own pool keeps what is freed; the caller's pool is the default again after the run."""
    pyarrow = pytest.importorskip("pyarrow")
    from judge_arena import pipeline

    async def pool_during() -> str:
        return str(pyarrow.default_memory_pool().backend_name)

    before = pyarrow.default_memory_pool()
    assert pipeline._blocking(pool_during()) == "system"
    assert pyarrow.default_memory_pool().backend_name == before.backend_name


def test_what_a_run_made_is_in_the_oldest_generation_after_it() -> None:
    """So that the first collection after it, with the caller's thresholds, does not walk all of it again."""
    from judge_arena import pipeline

    async def make() -> list[list[int]]:
        return [[n] for n in range(1_000)]

    made = pipeline._blocking(make())
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(record) in oldest for record in made)

    kept = [[n] for n in range(10)]  # a caller's own frozen objects stay frozen
    gc.freeze()
    try:
        pipeline._blocking(make())
        assert gc.get_freeze_count() >= len(kept)
        assert not any(record is kept[0] for record in gc.get_objects())
    finally:
        gc.unfreeze()
