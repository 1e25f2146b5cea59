"""Three nights of `judge-arena run --compare-to latest` on the simulator, as a nightly CI job runs them.

Night 1 runs three candidates. Night 2 gives one of them a new revision and makes the simulated model behind it
worse: only that candidate and the judge games involving it are called, the diff flags it (and no other) as
significantly worse, its gate fails (exit 1) and the Markdown summary names it. Night 3 refreshes an unchanged
candidate: its answers are asked for again, come back the same, and nothing is flagged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from judge_arena.cli import main
from judge_arena.diff import ALL, diff_runs
from judge_arena.runs import list_runs, load_run
from judge_arena.sim.models import CANDIDATES
from judge_arena.sim.server import RequestRecord, SimulatorServer
from judge_arena.style import normalize

CHANGED = "mine"
MODELS = {"strong": "sim-strong-markdown", "base": "sim-mid-plain", CHANGED: "sim-good-terse"}
"""Candidate names and the simulated models behind them; `base` is the baseline every candidate meets."""
JUDGE = "sim-judge"
PROMPTS = 40
"""The whole built-in suite: enough prompts for the style-controlled view to separate a real fall from noise."""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _config(folder: Path, sim: SimulatorServer, revision: str) -> Path:
    at = {"api_base": f"{sim.url}/v1"}
    candidates = [{"name": name, "model": f"openai/{model}", **at} for name, model in MODELS.items()]
    candidates[-1]["revision"] = revision
    config = {
        "name": "nightly",
        "suites": [{"path": "core", "limit": PROMPTS}],
        "candidates": candidates,
        "judges": [{"name": "judge", "model": f"openai/{JUDGE}", **at}],
        "pairing": {"mode": "vs-baseline", "baseline": "base"},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
        "gates": [{"model": CHANGED, "max_drop": 25, "views": ["plain", "raw+sc"]}],
    }
    path = folder / "nightly.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _night(sim: SimulatorServer, *args: str) -> tuple[int, list[RequestRecord]]:
    sim.reset_log()
    return main(["run", *args]), sim.requests


def _judged(request: RequestRecord, turns: list[str]) -> bool:
    """Whether a judge request shows one of `turns`, as written or with its markdown stripped."""
    shown = "\n".join(m.content for m in request.messages)
    return any(normalize(turn, view) in shown for turn in turns for view in ("raw", "plain"))


def test_a_worse_revision_is_called_alone_flagged_and_fails_its_gate_and_a_refresh_flags_nothing(
    tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _night(sim, str(_config(tmp_path, sim, "rev-41")))
    assert code == 0
    runs = tmp_path / "runs"
    (first,) = [entry.path for entry in list_runs(runs)]
    turns = sum(len(turn) for turn in load_run(first).prompts["turns"])
    capsys.readouterr()

    # Night 2: new weights behind the same model string, announced by the revision.
    worse = dataclasses.replace(CANDIDATES[MODELS[CHANGED]], quality=0.15)
    monkeypatch.setitem(CANDIDATES, MODELS[CHANGED], worse)
    config = _config(tmp_path, sim, "rev-42")
    code, requests = _night(sim, str(config), "--compare-to", "latest")
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1
    second = list_runs(runs)[-1].path
    assert [r.model for r in requests if r.model != JUDGE] == [MODELS[CHANGED]] * turns
    new_turns = [turn for turns_ in load_run(second).answers.query("model == @CHANGED")["turns"] for turn in turns_]
    judged = [r for r in requests if r.model == JUDGE]
    assert judged
    assert all(_judged(r, new_turns) for r in judged)  # only games involving the new revision's answers
    assert f"{CHANGED} fell" in out
    assert "more than max_drop 25" in out

    diff = diff_runs(load_run(first), load_run(second))
    worse_views = {(c.model, c.view) for c in diff.significant("worse") if c.category == ALL}
    assert worse_views == {(CHANGED, "raw"), (CHANGED, "plain"), (CHANGED, "raw+sc")}
    assert {c.model for c in diff.significant("worse")} == {CHANGED}
    manifest = load_run(second).manifest["models"]
    assert (manifest[CHANGED]["revision"], manifest["strong"]["revision"]) == ("rev-42", None)

    assert main(["diff", str(first), str(second), "--markdown"]) == 1
    markdown = capsys.readouterr().out
    assert CHANGED in markdown
    assert "strong" not in markdown

    # Night 3: an unchanged model refreshed answers the same; every verdict is reused and nothing moves.
    code, requests = _night(sim, str(config), "--refresh", "strong", "--compare-to", "latest")
    assert code == 0
    assert [r.model for r in requests] == [MODELS["strong"]] * turns
    third = list_runs(runs)[-1].path
    unchanged = diff_runs(load_run(second), load_run(third))
    assert unchanged.significant("worse") == []
    assert unchanged.significant("better") == []
    assert all(c.change == pytest.approx(0, abs=0.01) for c in unchanged.changes)
