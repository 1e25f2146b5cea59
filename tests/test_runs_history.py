"""Run history: the manifest of a run folder, `judge-arena runs`, and run ids with `latest` / `latest:NAME`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from rich.console import Console

from judge_arena.arena import ArenaRun, load_inputs, play_arena
from judge_arena.cli import main
from judge_arena.config import load_config
from judge_arena.report.files import PACKAGES, manifest, write_report
from judge_arena.report.terminal import print_run
from judge_arena.runs import COLUMNS, MANIFEST_KEYS, RunFolderError, list_runs, load_run, resolve_run
from judge_arena.views import rate_views

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = str(ROOT / "judge_arena/data/templates/pairwise.yaml")
SECRET = "sk-nightly-secret-0123456789"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTORY_TEST_KEY", SECRET)


def _config(folder: Path, name: str = "history") -> Path:
    suite = folder / "suite.jsonl"
    suite.write_text(
        "".join(json.dumps({"id": f"p{k}", "category": "c", "turns": [f"Explain idea {k}."]}) + "\n" for k in range(3))
    )
    simulated = {"api_base": "simulator"}
    config = {
        "name": name,
        "suites": [{"path": str(suite)}],
        "candidates": [
            {"name": "a", "model": "openai/sim-strong-plain", "params": {"seed": 7}, **simulated},
            {"name": "b", "model": "openai/sim-mid-plain", "api_key_env": "HISTORY_TEST_KEY", **simulated},
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "template": TEMPLATE} | simulated],
        "rating": {"seed": 3},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _played(config: Path) -> ArenaRun:
    return asyncio.run(play_arena(load_inputs(load_config(config))))


def _git(folder: Path, *args: str) -> str:
    command = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def test_the_manifest_records_the_run_and_no_secret(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    config_path = _config(tmp_path)
    _git(tmp_path, "add", "arena.yaml")
    _git(tmp_path, "commit", "-q", "-m", "config")
    run = _played(config_path)
    folder = write_report(run, rate_views(run.inputs.config, run.battles, run.answers), config_path)

    written = load_run(folder).manifest
    assert tuple(written) == MANIFEST_KEYS
    assert written["git_revision"] == _git(tmp_path, "rev-parse", "HEAD")
    config = written["config"]
    assert config["name"] == "history"
    assert [c["name"] for c in config["candidates"]] == ["a", "b"]
    canonical = json.dumps(config, sort_keys=True).encode()
    assert written["config_hash"] == hashlib.sha256(canonical).hexdigest()
    suite = tmp_path / "suite.jsonl"
    assert written["suites"] == {str(suite): hashlib.sha256(suite.read_bytes()).hexdigest()}
    template = ROOT / "judge_arena/data/templates/pairwise.yaml"
    assert written["templates"] == {str(template): hashlib.sha256(template.read_bytes()).hexdigest()}
    assert written["models"]["b"] == {
        "model": "openai/sim-mid-plain",
        "api_base": "simulator",
        "params": {},
        "api_key_env": "HISTORY_TEST_KEY",
        "revision": None,
        "served": [{"model": "sim-mid-plain", "system_fingerprint": "fp_sim", "cached": 0, "made": 3}],
    }
    assert set(written["packages"]) == set(PACKAGES)
    assert written["packages"]["litellm"] == "1.110.2"
    assert written["seeds"] == {"rating": 3, "a": 7}
    assert written["started_at"] <= written["finished_at"]
    assert written["finished_at"].endswith("+00:00")
    calls = written["calls"]
    assert set(calls) == {"a", "b", "judge"}
    assert calls["a"]["answers"] == 3
    assert calls["a"]["made"] == 3
    assert calls["a"]["cached"] == 0
    assert calls["a"]["output_tokens"] == sum(a.output_tokens for a in run.answers if a.model == "a")
    assert calls["a"]["input_tokens"] > 0
    assert calls["a"]["cost_usd"] is None
    assert calls["a"]["failed"] == 0
    # 3 prompts × 1 pair × 2 orders × 2 normalizations; a plain game identical to its raw one is shared.
    assert calls["judge"]["made"] + calls["judge"]["cached"] == 12
    assert calls["judge"]["answers"] is None

    again = manifest(_played(config_path), config_path)["calls"]
    assert [again[name]["made"] for name in ("a", "b", "judge")] == [0, 0, 0]
    assert again["judge"]["cached"] == 12
    for file in folder.iterdir():
        assert SECRET not in file.read_text(encoding="utf-8"), file.name


def test_a_config_outside_a_repository_has_no_git_revision(tmp_path: Path) -> None:
    config_path = _config(tmp_path)
    assert manifest(_played(config_path), config_path)["git_revision"] is None


def _fake_run(root: Path, folder: str, name: str, **summary: object) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"name": name, "candidates": ["a", "b"], **summary}))
    return path


def test_runs_are_listed_oldest_first_and_latest_resolves(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    older = _fake_run(root, "nightly-20260101-010000", "nightly", failures=0)
    same_second = _fake_run(root, "nightly-20260102-010000-2", "nightly", failures=2)
    first_of_second = _fake_run(root, "nightly-20260102-010000", "nightly", failures=0)
    other = _fake_run(root, "release-20260101-120000", "release", budget={"reached": True, "spent_usd": 0.5})
    _fake_run(root, ".nightly-20260103-010000.partial", "nightly")
    (root / "last-good").symlink_to(older)
    (root / "notes").mkdir()

    entries = list_runs(root)
    assert [e.path for e in entries] == [older, other, first_of_second, same_second]
    assert [e.status for e in entries] == ["ok", "budget", "ok", "failures"]
    assert entries[1].cost_usd == 0.5
    assert entries[0].cost_usd is None
    assert entries[0].time == "2026-01-01 01:00:00"
    assert entries[0].models == ("a", "b")
    assert [e.path for e in list_runs(root, "release")] == [other]

    assert resolve_run("latest", root) == same_second
    assert resolve_run("latest:release", root) == other
    assert resolve_run("nightly-20260101-010000", root) == older
    assert resolve_run("last-good", root) == root / "last-good"
    assert resolve_run(str(other), tmp_path / "elsewhere") == other
    for missing in ("latest:nobody", "nightly-1999", str(tmp_path / "no" / "such")):
        with pytest.raises(RunFolderError):
            resolve_run(missing, root)
    with pytest.raises(RunFolderError, match="no run"):
        resolve_run("latest", tmp_path / "empty")


def test_commands_take_run_ids_and_latest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = _config(tmp_path)
    for _ in range(2):
        run = _played(config_path)
        write_report(run, rate_views(run.inputs.config, run.battles, run.answers), config_path)
    root = tmp_path / "runs"
    newest = list_runs(root)[-1]
    assert main(["runs", "--runs-dir", str(root), "--path", "latest:history"]) == 0
    assert capsys.readouterr().out.strip() == str(newest.path)
    assert main(["runs", "--runs-dir", str(root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [e.id for e in list_runs(root)]
    assert listed[0]["status"] == "ok"
    assert main(["runs", "--runs-dir", str(root)]) == 0
    assert newest.id in capsys.readouterr().out
    views = ["--normalization", "raw", "--reference-normalization", "raw"]
    assert main(["metrics", "latest", newest.id, "--runs-dir", str(root), *views]) == 0
    assert main(["agreement", "latest:history", "--runs-dir", str(root)]) == 0
    assert main(["metrics", "latest:nobody", "latest", "--runs-dir", str(root)]) == 2


def test_several_suites_get_boards_of_their_own_and_battles_record_suite_and_turn(tmp_path: Path) -> None:
    # MIN_PROMPTS prompts in each suite, so each gets a board; the second suite's prompts have two turns.
    config_path = _config(tmp_path)
    suites = []
    for name, turns in (("single", ["Plan trip {k}."]), ("multi", ["Plan trip {k}.", "And its budget?"])):
        path = tmp_path / f"{name}.jsonl"
        lines = [{"id": f"{name}{k}", "category": "c", "turns": [t.format(k=k) for t in turns]} for k in range(20)]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        suites.append({"path": str(path), "name": name})
    raw = yaml.safe_load(config_path.read_text())
    raw["suites"] = suites
    raw["rating"] = {"style_control": "none"}
    raw["pairing"] = {"baseline": "a"}
    config_path.write_text(yaml.safe_dump(raw))
    run = _played(config_path)
    views = rate_views(run.inputs.config, run.battles, run.answers)
    folder = write_report(run, views, config_path)

    battles = load_run(folder).battles
    assert set(zip(battles["suite"], battles["turn"], strict=True)) == {("single", 1), ("multi", 2)}
    assert all(set(view.by_suite) == {"single", "multi"} for view in views)
    assert all(entry.board is not None for view in views for entry in view.by_suite.values())
    console = Console(record=True, width=200)
    print_run(console, run, views, folder)
    shown = console.export_text()
    assert "suite single" in shown
    assert "suite multi" in shown
    assert "the win rate against a" in shown
    assert "50%" in shown


def test_battles_written_before_suite_and_turn_read_as_missing(tmp_path: Path) -> None:
    run = _played(_config(tmp_path))
    folder = write_report(run, rate_views(run.inputs.config, run.battles, run.answers))
    path = folder / "battles.csv"
    pd.read_csv(path).drop(columns=["suite", "turn"]).to_csv(path, index=False)
    battles = load_run(folder).battles
    assert list(battles.columns) == list(COLUMNS["battles.csv"])
    assert battles["suite"].isna().all()
    assert battles["turn"].isna().all()


def test_runs_and_diff_show_the_candidates_revisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = _config(tmp_path)
    root = tmp_path / "runs"
    older = _fake_run(root, "history-20200101-000000", "history")  # written before manifests: no revisions
    for revision in (None, "rev-2"):
        data = yaml.safe_load(config_path.read_text())
        data["candidates"][0]["revision"] = revision
        config_path.write_text(yaml.safe_dump(data))
        run = _played(config_path)
        write_report(run, rate_views(run.inputs.config, run.battles, run.answers), config_path)
    entries = list_runs(root)
    assert entries[0].path == older
    assert [dict(e.revisions) for e in entries] == [{}, {}, {"a": "rev-2"}]
    assert load_run(entries[-1].path).revisions == {"a": "rev-2"}
    assert main(["runs", "--runs-dir", str(root), "--json"]) == 0
    assert [r["revisions"] for r in json.loads(capsys.readouterr().out)] == [{}, {}, {"a": "rev-2"}]
    assert main(["runs", "--runs-dir", str(root)]) == 0
    assert "a@rev-2" in capsys.readouterr().out
    first, second = (e.id for e in entries[1:])
    for output in ([], ["--markdown"]):
        assert main(["diff", first, second, "--runs-dir", str(root), "--rounds", "20", *output]) == 0
        assert "evisions: a none → rev-2" in capsys.readouterr().out
    assert main(["diff", first, second, "--runs-dir", str(root), "--rounds", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["revisions"] == [{"model": "a", "old": None, "new": "rev-2"}]
