"""Answers that belong to a model revision: the revision in the cache key, what the server says it served,
`--refresh` and the checks `run --refresh` / `--compare-to` make before any call."""

from __future__ import annotations

import csv
import dataclasses
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from judge_arena.arena import served_changes
from judge_arena.cli import main
from judge_arena.config import ConfigError, load_config
from judge_arena.pipeline import ArenaResult, run_arena
from judge_arena.records import Message
from judge_arena.report.terminal import print_run
from judge_arena.runs import load_run
from judge_arena.sim.models import CANDIDATES
from judge_arena.sim.server import RequestRecord, SimulatorServer
from judge_arena.store import CallKey, Completion, Store

JUDGE = "sim-judge-fair"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _config(
    folder: Path, sim: SimulatorServer, candidates: list[dict[str, Any]], *, limit: int = 3, **extra: Any
) -> Path:
    """`folder/arena.yaml`: `limit` prompts of the built-in suite, `candidates` (name, simulated model, maybe a
    revision) and a fair simulated judge of raw answers, all at the test's simulator."""
    at = {"api_base": f"{sim.url}/v1"}
    config = {
        "name": "revisions",
        "suites": [{"path": "core", "limit": limit}],
        "candidates": [{**c, "model": f"openai/{c['model']}", **at} for c in candidates],
        "judges": [{"name": "judge", "model": f"openai/{JUDGE}", **at}],
        "normalizations": ["raw"],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
        **extra,
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config: Path, sim: SimulatorServer, refresh: tuple[str, ...] = ()) -> tuple[ArenaResult, list[RequestRecord]]:
    """Run the config; the result and the requests the simulator received for it."""
    sim.reset_log()
    result = run_arena(load_config(config), refresh=refresh)
    return result, sim.requests


def _candidate_calls(requests: list[RequestRecord]) -> list[str]:
    return [r.model for r in requests if r.model != JUDGE]


def _judge_calls(requests: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in requests if r.model == JUDGE]


def _turns(result: ArenaResult) -> int:
    return sum(len(p.turns) for p in result.run.inputs.prompts)


def test_a_new_revision_gets_new_answers_and_older_revisions_stay_cached(tmp_path: Path, sim: SimulatorServer) -> None:
    base = {"name": "base", "model": "sim-mid-plain"}
    first, _ = _run(_config(tmp_path, sim, [{"name": "mine", "model": "sim-good-terse", "revision": "r1"}, base]), sim)
    turns = _turns(first)

    second, requests = _run(
        _config(tmp_path, sim, [{"name": "mine", "model": "sim-good-terse", "revision": "r2"}, base]), sim
    )
    assert _candidate_calls(requests) == ["sim-good-terse"] * turns
    # The simulated model has not changed: the same answers give the same judge prompts, whose verdicts are reused.
    assert _judge_calls(requests) == []
    assert second.run.stats.by_model["mine"].made == turns

    both = [
        {"name": "mine@r1", "model": "sim-good-terse", "revision": "r1"},
        {"name": "mine@r2", "model": "sim-good-terse", "revision": "r2"},
        base,
    ]
    third, requests = _run(_config(tmp_path, sim, both), sim)
    assert _candidate_calls(requests) == []  # both revisions' answers are in the cache
    # Only the new pair's games; the same answers on both sides make both orders one request.
    assert len(_judge_calls(requests)) == len(third.run.inputs.prompts)
    folder = load_run(third.folder)
    assert {m: folder.manifest["models"][m]["revision"] for m in ("mine@r1", "mine@r2")} == {
        "mine@r1": "r1",
        "mine@r2": "r2",
    }
    assert "revision" not in folder.manifest["models"]["judge"]
    revisions = folder.answers.groupby("model")["revision"].unique().to_dict()
    assert [list(revisions[m]) for m in ("mine@r1", "mine@r2")] == [["r1"], ["r2"]]
    assert revisions["base"].isna().all()


def test_each_answer_records_what_the_server_said_it_served(tmp_path: Path, sim: SimulatorServer) -> None:
    config = _config(tmp_path, sim, [{"name": "a", "model": "sim-good-terse"}, {"name": "b", "model": "sim-mid-plain"}])
    result, _ = _run(config, sim)
    answers = load_run(result.folder).answers.set_index("model")
    served = answers.loc["a"]
    assert all(
        models == ("sim-good-terse",) * len(turns)
        for models, turns in zip(served["served_models"], served["turns"], strict=True)
    )
    assert all(set(prints) == {"fp_sim"} for prints in served["system_fingerprints"])
    with sqlite3.connect(tmp_path / "cache" / "arena.sqlite") as db:
        rows = set(db.execute("SELECT model, served_model, system_fingerprint FROM completions"))
    assert rows == {
        ("openai/sim-good-terse", "sim-good-terse", "fp_sim"),
        ("openai/sim-mid-plain", "sim-mid-plain", "fp_sim"),
        (f"openai/{JUDGE}", JUDGE, "fp_sim"),
    }
    again, requests = _run(config, sim)
    assert requests == []
    assert [a.served_models for a in again.run.answers] == [a.served_models for a in result.run.answers]
    assert load_run(again.folder).manifest["models"]["a"]["served"] == [
        {"model": "sim-good-terse", "system_fingerprint": "fp_sim", "cached": _turns(again), "made": 0}
    ]


def test_a_cache_written_before_served_models_were_recorded_is_read_and_extended(tmp_path: Path) -> None:
    path = tmp_path / "arena.sqlite"
    key = CallKey(model="openai/m", api_base=None, params=(), messages=(Message("user", "hi"),))
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE completions (key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, "
            "text TEXT NOT NULL, finish_reason TEXT NOT NULL, input_tokens INTEGER NOT NULL, "
            "output_tokens INTEGER NOT NULL, latency_s REAL NOT NULL, created_at REAL NOT NULL)"
        )
        db.execute(
            "INSERT INTO completions VALUES (?, ?, ?, 'hello', 'stop', 1, 1, 0.1, 0)",
            (key.digest, key.model, key.canonical_json),
        )
    with Store(path) as store:
        assert store.get(key) == Completion("hello", "stop", 1, 1, 0.1)
        revised = dataclasses.replace(key, revision="r1")
        assert revised.digest != key.digest
        store.put(revised, Completion("new", "stop", 1, 1, 0.1, served_model="m-2", system_fingerprint="fp_2"))
    with Store(path) as store:
        assert store.get(revised) == Completion("new", "stop", 1, 1, 0.1, "m-2", "fp_2")
        assert store.get(key) is not None


def test_a_candidate_without_a_revision_that_reports_another_fingerprint_is_warned(
    tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    candidates = [
        {"name": "unrevised", "model": "sim-good-terse"},
        {"name": "revised", "model": "sim-strong-plain", "revision": "r1"},
        {"name": "same", "model": "sim-mid-plain"},
    ]
    _run(_config(tmp_path, sim, candidates, limit=2), sim)
    for model in ("sim-good-terse", "sim-strong-plain"):
        monkeypatch.setitem(CANDIDATES, model, dataclasses.replace(CANDIDATES[model], fingerprint="fp_new"))

    # Two more prompts: fresh answers of every candidate, next to the cached answers of the first two.
    result, requests = _run(_config(tmp_path, sim, candidates, limit=4), sim)
    assert set(_candidate_calls(requests)) == {"sim-good-terse", "sim-strong-plain", "sim-mid-plain"}
    changes = served_changes(result.run)
    # A revision says what is behind the model; a fingerprint that changes without one is the alarm.
    assert set(changes) == {"unrevised"}
    assert "fp_new" in changes["unrevised"]
    assert "fp_sim" in changes["unrevised"]
    assert load_run(result.folder).summary["served_changes"] == changes
    console = Console(record=True, width=200)
    print_run(console, result.run, result.views, result.folder)
    assert "served model changed: unrevised now reports sim-good-terse (fp_new)" in console.export_text()


def test_refresh_compares_with_the_answers_it_replaces(
    tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, sim, [{"name": "a", "model": "sim-good-terse"}, {"name": "b", "model": "sim-mid-plain"}])
    _run(config, sim)
    monkeypatch.setitem(
        CANDIDATES, "sim-good-terse", dataclasses.replace(CANDIDATES["sim-good-terse"], fingerprint="fp_2")
    )
    result, _ = _run(config, sim, refresh=("a",))
    assert set(served_changes(result.run)) == {"a"}
    # The refreshed answers replaced the cached ones: the next run serves them, and nothing has changed since.
    again, requests = _run(config, sim)
    assert requests == []
    assert served_changes(again.run) == {}
    assert {f for a in again.run.answers if a.model == "a" for f in a.system_fingerprints} == {"fp_2"}


def test_refresh_remakes_one_candidates_answers_and_only_the_games_whose_answers_changed(
    tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    candidates = [
        {"name": "a", "model": "sim-good-terse"},
        {"name": "b", "model": "sim-mid-plain"},
        {"name": "c", "model": "sim-strong-plain"},
    ]
    config = _config(tmp_path, sim, candidates, limit=4)
    first, _ = _run(config, sim)
    turns = _turns(first)

    same, requests = _run(config, sim, refresh=("b",))
    assert _candidate_calls(requests) == ["sim-mid-plain"] * turns
    assert _judge_calls(requests) == []  # the same answers again: every verdict is reused
    assert same.run.stats.by_model["b"].made == turns

    monkeypatch.setitem(CANDIDATES, "sim-mid-plain", dataclasses.replace(CANDIDATES["sim-mid-plain"], quality=0.0))
    worse, requests = _run(config, sim, refresh=("b",))
    assert _candidate_calls(requests) == ["sim-mid-plain"] * turns
    old = {a.prompt_id: a.turns for a in first.run.answers if a.model == "b"}
    new = {a.prompt_id: a.turns for a in worse.run.answers if a.model == "b"}
    changed = [p for p in new if new[p] != old[p]]
    assert changed
    judged = _judge_calls(requests)
    # Both orders of b's two games on each prompt whose answer changed, and nothing else.
    assert len(judged) == len(changed) * 2 * 2
    texts = [turn for p in changed for turn in new[p]]
    assert all(any(t in "\n".join(m.content for m in r.messages) for t in texts) for r in judged)

    after, requests = _run(config, sim)
    assert requests == []
    assert {a.prompt_id: a.turns for a in after.run.answers if a.model == "b"} == new


def test_run_with_an_unknown_refresh_name_calls_nothing(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, sim, [{"name": "a", "model": "sim-good-terse"}, {"name": "b", "model": "sim-mid-plain"}])
    assert main(["run", str(config), "--refresh", "a", "nobody"]) == 2
    error = capsys.readouterr().err
    assert "--refresh: 'nobody' is not a candidate" in error
    assert "candidates: a, b" in " ".join(error.split())
    assert sim.requests == []
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="'judge' is not a candidate"):
        run_arena(load_config(config), refresh=["judge"])


@pytest.mark.parametrize(
    ("compare_to", "gates", "message"),
    [
        ("latest", [], "--compare-to: .*no run to resolve 'latest'"),
        ("no-such-run", [], "--compare-to: no-such-run: no such run folder"),
        ("FIRST", [{"model": "ghost", "max_drop": 10}], "field 'gates.0': 'ghost' is not a candidate"),
        ("FIRST", [{"model": "c", "max_drop": 10}], "field 'gates.0': 'c' is not in revisions-.* to compare with"),
        ("UNDECIDED", [], "--compare-to: revisions-.*: battles.csv: no decided battle"),
    ],
)
def test_run_compare_to_an_unusable_run_or_gate_calls_nothing(
    tmp_path: Path,
    sim: SimulatorServer,
    capsys: pytest.CaptureFixture[str],
    compare_to: str,
    gates: list[dict[str, Any]],
    message: str,
) -> None:
    two = [{"name": "a", "model": "sim-good-terse"}, {"name": "b", "model": "sim-mid-plain"}]
    if compare_to in ("FIRST", "UNDECIDED"):
        first, _ = _run(_config(tmp_path, sim, two, limit=1), sim)
        if compare_to == "UNDECIDED":  # every verdict of the run to compare with left unparsed
            battles = first.folder / "battles.csv"
            with battles.open(newline="") as read:
                rows = list(csv.DictReader(read))
            with battles.open("w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows({**row, "label": "", "winner": ""} for row in rows)
        compare_to = str(first.folder)
    config = _config(tmp_path, sim, [*two, {"name": "c", "model": "sim-strong-plain"}], limit=1, gates=gates)
    sim.reset_log()
    runs = set((tmp_path / "runs").glob("*"))
    assert main(["run", str(config), "--compare-to", compare_to]) == 2
    assert sim.requests == []
    assert set((tmp_path / "runs").glob("*")) == runs
    error = " ".join(capsys.readouterr().err.split())
    assert re.search(message, error), error


def test_run_compared_after_its_budget_stopped_it_exits_3_without_a_diff(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    price = {"price": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}}
    candidates = [{"name": "a", "model": "sim-good-terse", **price}, {"name": "b", "model": "sim-mid-plain", **price}]
    first, _ = _run(_config(tmp_path, sim, candidates), sim)
    judges = [{"name": "judge", "model": f"openai/{JUDGE}", "api_base": f"{sim.url}/v1", **price}]
    revised = [{**candidates[0], "revision": "r2"}, candidates[1]]
    config = _config(tmp_path, sim, revised, judges=judges, budget={"max_usd": 0.01})
    assert main(["run", str(config), "--compare-to", str(first.folder)]) == 3
    out = " ".join(capsys.readouterr().out.split())
    assert f"not compared with {first.folder.name}: the run stopped at its budget" in out


def test_a_candidate_read_from_an_answer_file_takes_no_revision(tmp_path: Path, sim: SimulatorServer) -> None:
    config = _config(tmp_path, sim, [{"name": "a", "model": "sim-good-terse"}, {"name": "b", "model": "sim-mid-plain"}])
    data = yaml.safe_load(config.read_text())
    data["candidates"].append({"name": "filed", "answers": "answers.jsonl", "revision": "r1"})
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"\['revision'\] apply to a model that is called"):
        load_config(config)
