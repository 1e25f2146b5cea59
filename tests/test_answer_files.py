"""Candidates read from answer files: the three layouts, their errors, and runs that judge them on the simulator
(the three real Arena-Hard-Auto answer files among them)."""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from judge_arena.answer_files import AnswerFileError, answers_model, load_answer_file
from judge_arena.arena import ArenaRun, load_inputs, planned_calls, play_arena
from judge_arena.cli import EXIT_BAD_INPUT, EXIT_OK, main
from judge_arena.config import ConfigError, config_from_dict, load_config
from judge_arena.runs import load_run
from judge_arena.sim import SimulatorServer
from judge_arena.style import style_by_model, style_features
from judge_arena.suites import load_suite

SUITE: list[dict[str, Any]] = [
    {"id": "p1", "category": "math", "turns": ["What is 2 + 2?"]},
    {"id": "p2", "category": "math", "turns": ["What is 3 + 3?"]},
    {"id": "p3", "category": "chat", "turns": ["Say hello.", "Now say it in French."]},
]
OURS: list[dict[str, Any]] = [
    {"prompt_id": "p1", "answer": "**4**. Two and two make four."},
    {"prompt_id": "p2", "answer": "6"},
    {"prompt_id": "p3", "turns": ["Hello!", "# Bonjour\n\n- bonjour"]},
]
THEIRS: list[dict[str, Any]] = [
    {"prompt_id": "p1", "answer": "It is 4."},
    {"prompt_id": "p3", "turns": ["Hi.", "Salut."]},
]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def _config(folder: Path, **overrides: Any) -> dict[str, Any]:
    """Two answer-file candidates and one simulated model on a three-prompt suite, judged by the simulator."""
    suite = _jsonl(folder / "suite.jsonl", SUITE)
    ours = _jsonl(folder / "ours.jsonl", OURS)
    theirs = _jsonl(folder / "theirs.jsonl", THEIRS)
    config: dict[str, Any] = {
        "name": "files",
        "suites": [{"path": str(suite)}],
        "candidates": [
            {"name": "ours", "answers": str(ours)},
            {"name": "theirs", "answers": str(theirs)},
            {"name": "sim", "model": "openai/sim-strong-plain", "api_base": "simulator"},
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator"}],
        "runner": {"cache_dir": str(folder / "cache"), "output_dir": str(folder / "runs"), "max_wait_s": 0.1},
        **overrides,
    }
    return config


def _run(config: dict[str, Any], folder: Path, sim: SimulatorServer) -> ArenaRun:
    inputs = load_inputs(config_from_dict(config, folder))
    return asyncio.run(play_arena(inputs, simulator_url=sim.url))


# --------------------------------------------------------------------------------------------------- layouts


def test_the_three_layouts_are_read_and_detected(tmp_path: Path) -> None:
    ours = load_answer_file(_jsonl(tmp_path / "ours.jsonl", OURS))
    assert ours.format == "judge-arena"
    assert ours.answers["p1"].turns == ("**4**. Two and two make four.",)
    assert ours.answers["p3"].turns == ("Hello!", "# Bonjour\n\n- bonjour")
    assert ours.answers["p3"].line == 3
    arena_hard = [
        {
            "question_id": "q1",
            "answer_id": "x",
            "model_id": "m",
            "choices": [{"index": 0, "turns": [{"content": "Answer.", "token_len": 2}]}],
            "tstamp": 1.0,
        }
    ]
    hard = load_answer_file(_jsonl(tmp_path / "hard.jsonl", arena_hard))
    assert hard.format == "arena-hard"
    assert hard.answers["q1"].turns == ("Answer.",)
    assert hard.answers["q1"].output_tokens == 2
    mt_bench = [{"question_id": 81, "model_id": "m", "choices": [{"index": 0, "turns": ["one", "two"]}]}]
    mt = load_answer_file(_jsonl(tmp_path / "mt.jsonl", mt_bench))
    assert mt.format == "mt-bench"
    assert mt.answers["81"].turns == ("one", "two")
    assert mt.answers["81"].output_tokens is None


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"prompt_id": "p1"}], "x.jsonl line 1: give exactly one of 'answer' (one turn) and 'turns'"),
        ([{"prompt_id": "p1", "answer": "a", "turns": ["a"]}], "x.jsonl line 1: give exactly one of"),
        ([{"prompt_id": "p1", "answr": "a"}], "x.jsonl line 1: field 'answr': unknown key (allowed: prompt_id, answer"),
        ([{"prompt_id": "p1", "turns": []}], "x.jsonl line 1: field 'turns': must not be empty"),
        (
            [{"prompt_id": "p1", "answer": "a"}, {"prompt_id": "p1", "answer": "b"}],
            "x.jsonl line 2: field 'prompt_id': 'p1' is answered twice (first on line 1)",
        ),
        (
            [{"question_id": "q", "choices": [{"turns": [{"text": "a"}]}]}],
            "x.jsonl line 1: field 'choices[0].turns[0].content': is required",
        ),
        ([{"question_id": "q", "choices": []}], "x.jsonl line 1: field 'choices': must not be empty"),
        (
            [{"question_id": "81", "choices": [{"turns": ["a"]}]}],
            "x.jsonl line 1: field 'question_id': must be an integer, got a string",
        ),
        ([{"answer": "a"}], "x.jsonl line 1: cannot detect the answer file's layout from keys ['answer']"),
        (["text"], "x.jsonl line 1: must be a JSON object, got a string"),
        ([], "x.jsonl: no answers (the file is empty or has only blank lines)"),
    ],
)
def test_a_bad_answer_file_names_file_line_and_field(tmp_path: Path, records: list[Any], message: str) -> None:
    path = _jsonl(tmp_path / "x.jsonl", records)
    with pytest.raises(AnswerFileError) as raised:
        load_answer_file(path)
    assert str(raised.value).startswith(str(tmp_path / message)), str(raised.value)


# ---------------------------------------------------------------------------------------------------- config


def test_a_candidate_gives_a_model_or_answers_and_its_model_names_the_file_content(tmp_path: Path) -> None:
    raw = _config(tmp_path)
    config = config_from_dict(raw, tmp_path)
    ours = config.candidates[0]
    assert not ours.called
    assert config.candidates[2].called
    assert ours.answers == tmp_path / "ours.jsonl"
    assert ours.model == answers_model(tmp_path / "ours.jsonl")
    assert ours.model.startswith("answers:ours.jsonl@")
    assert ours.model_family is None
    (tmp_path / "ours.jsonl").write_text((tmp_path / "ours.jsonl").read_text().replace("Hello!", "Hi there!"))
    assert config_from_dict(raw, tmp_path).candidates[0].model != ours.model

    both = _config(tmp_path)
    both["candidates"][0]["model"] = "openai/gpt-4o"
    with pytest.raises(ConfigError, match=r"field 'candidates\.0': .*either 'model' .* or 'answers'"):
        config_from_dict(both, tmp_path)
    calling = _config(tmp_path)
    calling["candidates"][0]["params"] = {"temperature": 0}
    with pytest.raises(ConfigError, match=r"field 'candidates\.0': .*\['params'\] apply to a model that is called"):
        config_from_dict(calling, tmp_path)
    missing = _config(tmp_path)
    missing["candidates"][0]["answers"] = "nowhere.jsonl"
    with pytest.raises(ConfigError, match=r"field 'candidates\.0\.answers': file not found: .*nowhere\.jsonl"):
        config_from_dict(missing, tmp_path)


def test_answer_file_problems_are_config_errors_before_any_call(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    path = tmp_path / "arena.yaml"
    sim.reset_log()

    _jsonl(tmp_path / "theirs.jsonl", [{"prompt_id": "p3", "answer": "only one turn"}])
    path.write_text(
        yaml.safe_dump(
            {
                **config,
                "candidates": [
                    *config["candidates"][:1],
                    {"name": "theirs", "answers": "theirs.jsonl"},
                    config["candidates"][2],
                ],
            }
        )
    )
    assert main(["run", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{tmp_path / 'theirs.jsonl'} line 1: field 'answer': 1 answer turn(s) for prompt 'p3', which has 2" in err

    _jsonl(tmp_path / "theirs.jsonl", [{"prompt_id": "elsewhere-1", "answer": "a"}])
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "theirs.jsonl: answers none of the 3 prompts of the suites (its ids: 'elsewhere-1', …; the suites': " in err

    (tmp_path / "theirs.jsonl").write_text('{"prompt_id": "p1", "answer": "a"}\n{"prompt_id": 2}\n')
    assert main(["run", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "theirs.jsonl line 2: field 'prompt_id': must be a string, got the number 2" in err
    assert sim.requests == []
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------------------- runs


def test_file_answers_are_judged_as_if_generated_and_unanswered_prompts_are_reported(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    inputs = load_inputs(config_from_dict(config, tmp_path))
    assert inputs.unanswered == {"theirs": ("p2",)}
    # only the simulated candidate is called for answers: 1 + 1 + 2 turns
    assert planned_calls(inputs) == 4 + 3 * 3 * 2 * 2
    sim.reset_log()
    run = _run(config, tmp_path, sim)
    answered = {(a.model, a.prompt_id): a.turns for a in run.answers}
    assert answered[("ours", "p3")] == ("Hello!", "# Bonjour\n\n- bonjour")
    assert ("theirs", "p2") not in answered
    assert {r.model for r in sim.requests if r.billed} == {"sim-strong-plain", "sim-judge"}
    assert len([r for r in sim.requests if r.model == "sim-strong-plain"]) == 4
    # every pair on every prompt but the two pairs with 'theirs' on p2; both orders, raw and plain
    assert len(run.battles) == (3 * 3 - 2) * 2 * 2
    assert not run.failures
    judged = [b for b in run.battles if "ours" in (b.model_a, b.model_b)]
    assert judged
    assert all(b.label is not None for b in judged)

    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "theirs: its answer file answers 2 of 3 prompts; its games on the other 1 are not played" in out
    assert "no model call was made" in out
    assert "answer style (mean per answer)" in out
    folder = next((tmp_path / "runs").iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["unanswered"] == {"theirs": ["p2"]}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["models"]["ours"]["model"] == answers_model(tmp_path / "ours.jsonl")
    style = load_run(folder).style.set_index("model")
    assert style.loc["ours", "answers"] == 3
    ours_features = [
        style_features(t) for t in ("**4**. Two and two make four.", "6", "Hello!\n\n# Bonjour\n\n- bonjour")
    ]
    assert style.loc["ours", "tokens"] == pytest.approx(statistics.mean(f.tokens for f in ours_features))
    assert style.loc["ours", "bold"] == pytest.approx(1 / 3)
    assert style.loc["ours", "headers"] == pytest.approx(1 / 3)
    assert style.loc["ours", "lists"] == pytest.approx(1 / 3)
    assert style.loc["theirs", "answers"] == 2


def test_a_changed_answer_file_is_judged_again_only_where_it_changed(tmp_path: Path, sim: SimulatorServer) -> None:
    config = _config(tmp_path)
    first = _run(config, tmp_path, sim)
    sim.reset_log()
    again = _run(config, tmp_path, sim)
    assert sim.requests == []
    assert again.battles == first.battles

    changed = [{**OURS[0], "answer": "Four."}, *OURS[1:]]
    _jsonl(tmp_path / "ours.jsonl", changed)
    config = {
        **config,
        "candidates": [{"name": "ours", "answers": str(tmp_path / "ours.jsonl")}, *config["candidates"][1:]],
    }
    sim.reset_log()
    third = _run(config, tmp_path, sim)
    judged = {str(r.messages) for r in sim.requests if r.model == "sim-judge"}
    assert judged
    assert all("Four." in body for body in judged)
    # the games of 'ours' on p1 (two pairs × two orders; raw and plain render "Four." alike)
    assert 0 < third.stats.made <= 2 * 2 * 2
    assert third.stats.made == len(sim.requests)


# ------------------------------------------------------------------------------------------------- real data


def _arena_hard_config(shared_data: Path, folder: Path, *, limit: int | None) -> dict[str, Any]:
    answers = shared_data / "arena-hard-v0.1" / "model_answer"
    suite: dict[str, Any] = {"path": str(shared_data / "arena-hard-v0.1" / "question.jsonl")}
    if limit is not None:
        suite["limit"] = limit
    return {
        "name": "arena-hard-files",
        "suites": [suite],
        "candidates": [
            {"name": name, "answers": str(answers / f"{name}.jsonl")}
            for name in ("gpt-4-0314", "gpt-4-0613", "gpt-3.5-turbo-0125")
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator"}],
        "pairing": {"mode": "vs-baseline", "baseline": "gpt-4-0314"},
        "normalizations": ["raw"],
        "runner": {"cache_dir": str(folder / "cache"), "output_dir": str(folder / "runs"), "max_wait_s": 0.1},
    }


def test_all_1500_real_answers_are_read_with_their_style(shared_data: Path, tmp_path: Path) -> None:
    inputs = load_inputs(config_from_dict(_arena_hard_config(shared_data, tmp_path, limit=None), tmp_path))
    answers = [answer for by_prompt in inputs.file_answers.values() for answer in by_prompt.values()]
    assert len(answers) == 1500
    assert inputs.unanswered == {}
    assert len(inputs.prompts) == 500
    styles = {row.model: row for row in style_by_model(answers)}
    # Independently: the files' own token_len (cl100k_base, as Arena-Hard-Auto counts), and the means the data's
    # README gives.
    folder = shared_data / "arena-hard-v0.1" / "model_answer"
    for model, published in (("gpt-4-0314", 423.3), ("gpt-4-0613", 354.9), ("gpt-3.5-turbo-0125", 329.7)):
        records = [json.loads(line) for line in (folder / f"{model}.jsonl").read_text().splitlines()]
        lengths = {r["question_id"]: r["choices"][0]["turns"][0]["token_len"] for r in records}
        assert styles[model].answers == 500
        assert styles[model].tokens == pytest.approx(statistics.mean(lengths.values()))
        assert round(styles[model].tokens, 1) == published
        assert {a.prompt_id: a.output_tokens for a in answers if a.model == model} == lengths
    # GPT-4-0314 writes the least markdown of the three (Arena-Hard-Auto's style-control finding)
    assert styles["gpt-4-0314"].bold < styles["gpt-3.5-turbo-0125"].bold
    assert all(row.headers + row.lists + row.bold > 0 for row in styles.values())


def test_real_answer_files_judged_by_the_simulator(
    shared_data: Path, tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _arena_hard_config(shared_data, tmp_path, limit=40)
    suite = load_suite(shared_data / "arena-hard-v0.1" / "question.jsonl", limit=40)
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    run = _run(config, tmp_path, sim)
    assert len(run.answers) == 3 * 40
    assert len(run.battles) == 2 * 40 * 2
    assert not run.failures
    assert {p.id for p in run.inputs.prompts} == {p.id for p in suite.prompts}
    assert sum(b.label is not None for b in run.battles) == len(run.battles)

    assert main(["run", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "no model call was made" in out
    lines = [line for line in out.splitlines() if "gpt-4-0613" in line]
    assert lines
    folder = next((tmp_path / "runs").iterdir())
    style = pd.read_csv(folder / "style.csv").set_index("model")
    assert list(style.columns) == ["answers", "tokens", "headers", "lists", "bold"]
    assert set(style.index) == {"gpt-4-0314", "gpt-4-0613", "gpt-3.5-turbo-0125"}
    assert (style["answers"] == 40).all()
    assert any(f"{style['tokens']['gpt-4-0613']:.1f}" in line for line in lines), out
    assert load_config(path).candidates[0].model.startswith("answers:gpt-4-0314.jsonl@")
