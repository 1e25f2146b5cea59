"""The run folder: written end to end through the report, read back with load_run, stale staging removed."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from judge_arena.arena import load_inputs, play_arena
from judge_arena.config import load_config
from judge_arena.rating import MIN_PROMPTS
from judge_arena.report.files import write_report
from judge_arena.runs import COLUMNS, STALE_AFTER_S, RunFolderError, load_run, read_table, remove_stale_staging
from judge_arena.sim import SimulatorServer
from judge_arena.views import rate_views

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _suite(path: Path) -> Path:
    """One category with exactly MIN_PROMPTS prompts, so its board is fitted; and one prompt of another."""
    prompts = [
        {"id": f"m{k}", "category": "maths", "turns": [f"What is {k} squared, and why?"]} for k in range(MIN_PROMPTS)
    ]
    prompts.append({"id": "w0", "category": "writing", "turns": ["Write a haiku about rain."]})
    assert sum(p["category"] == "maths" for p in prompts) == MIN_PROMPTS
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return path


def _config(folder: Path) -> Path:
    simulated = {"api_base": "simulator"}
    config = {
        "name": "cats",
        "suites": [{"path": str(_suite(folder / "suite.jsonl"))}],
        "candidates": [
            {"name": "strong-plain", "model": "openai/sim-strong-plain", **simulated},
            {"name": "markdown-weak", "model": "openai/sim-markdown-weak", **simulated},
        ],
        "judges": [
            {
                "name": "judge",
                "model": "openai/sim-judge",
                "template": str(ROOT / "judge_arena/data/templates/pairwise.yaml"),
                **simulated,
            }
        ],
        "pairing": {"mode": "all-pairs", "baseline": "strong-plain"},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_category_that_reaches_the_threshold_is_reported_and_read_back(tmp_path: Path, sim: SimulatorServer) -> None:
    # Writing a category board once failed on its 'battles' column (already one per model) after every call was
    # paid for: categories that reach MIN_PROMPTS were never seen by a test.
    inputs = load_inputs(load_config(_config(tmp_path)))
    run = asyncio.run(play_arena(inputs, simulator_url=sim.url))
    views = rate_views(inputs.config, run.battles, run.answers)
    assert any(entry.board is not None for view in views for entry in view.by_category.values())
    folder = write_report(run, views)

    loaded = load_run(folder)
    categories = loaded.categories
    fitted = categories[categories["category"] == "maths"]
    assert set(fitted["view"]) == {"raw", "plain", "raw+sc"}
    assert fitted["note"].isna().all()
    assert set(fitted["model"]) == {"strong-plain", "markdown-weak"}
    # 2 models × MIN_PROMPTS prompts × both orders; the models' own counts sit in 'battles'
    assert set(fitted["category_battles"]) == {2 * MIN_PROMPTS}
    assert set(fitted["battles"]) == {2 * MIN_PROMPTS}
    noted = categories[categories["category"] == "writing"]
    assert noted["model"].isna().all()
    assert noted["note"].str.startswith("too few prompts").all()
    assert str(categories["category_battles"].dtype) == "int64"
    assert str(categories["rank"].dtype) == "Int64"

    assert len(loaded.battles) == len(run.battles)
    assert len(loaded.answers) == len(run.answers)
    assert set(loaded.boards["style_control"]) == {"none", "both"}
    assert loaded.board(normalization="raw", style_control="both")["model"].tolist() == [
        row.model for view in views if view.label == "raw+sc" and view.board for row in view.board.rows
    ]
    assert loaded.summary["flagged_battles"] == {"neutralized": 0, "injection": 0}
    for file, columns in COLUMNS.items():
        assert list(pd.read_csv(folder / file).columns) == list(columns)
        assert all(name.isidentifier() for name in columns)


def test_an_answer_utf_8_cannot_encode_is_written_escaped_and_read_back(tmp_path: Path, sim: SimulatorServer) -> None:
    """A provider may send a lone surrogate (`"\\ud800"` in its JSON): the run has paid for it, so its report must
    still be written."""
    inputs = load_inputs(load_config(_config(tmp_path)))
    run = asyncio.run(play_arena(inputs, simulator_url=sim.url))
    odd = dataclasses.replace(run.answers[0], turns=("half a pair \ud800 of surrogates",))
    run = dataclasses.replace(run, answers=(odd, *run.answers[1:]))
    folder = write_report(run, rate_views(inputs.config, run.battles, run.answers))
    answers = load_run(folder).answers
    assert answers["turns"].tolist()[0] == ("half a pair \ud800 of surrogates",)
    assert answers["turns"].tolist()[1:] == [answer.turns for answer in run.answers[1:]]


def test_load_run_names_the_file_and_line_of_a_bad_value(tmp_path: Path) -> None:
    battles = tmp_path / "battles.csv"
    battles.write_text(",".join(COLUMNS["battles.csv"]) + "\np1,core,1,c,j,raw,a,b,A>B,model_a,lots,none\n")
    with pytest.raises(RunFolderError, match=r"battles.csv line 2: field 'weight': must be a number, got 'lots'"):
        read_table(battles)
    with pytest.raises(RunFolderError, match=r"no such folder"):
        load_run(tmp_path / "missing")


def _stage(root: Path, name: str, age_s: float) -> Path:
    staging = root / f".{name}.partial"
    staging.mkdir()
    (staging / "leaderboard.csv").write_text("half")
    then = time.time() - age_s
    os.utime(staging, (then, then))
    return staging


def test_a_later_run_removes_stale_staging_folders_of_its_own_name_only(tmp_path: Path) -> None:
    old = STALE_AFTER_S + 60
    stale = _stage(tmp_path, "cats-20240101-000000", old)
    stale_suffixed = _stage(tmp_path, "cats-20240101-000000-2", old)
    fresh = _stage(tmp_path, "cats-20240102-000000", 0)  # a run writing its report right now
    other_config = _stage(tmp_path, "cats-extra-20240101-000000", old)
    held = _stage(tmp_path, "cats-20240103-000000", old)
    # a live writer holds its folder's lock, however long it has taken
    descriptor = os.open(held / ".writing", os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.utime(held, (time.time() - old, time.time() - old))
    try:
        removed = remove_stale_staging(tmp_path, "cats")
    finally:
        os.close(descriptor)
    assert sorted(removed) == sorted([stale, stale_suffixed])
    assert not stale.exists()
    assert fresh.exists()
    assert other_config.exists()
    assert held.exists()
