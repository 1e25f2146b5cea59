"""MT-Bench as MT-Bench judges it: turn by turn, reference-guided in math, reasoning and coding, three labels."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from judge_arena.agreement import run_votes
from judge_arena.arena import load_inputs, planned_games, play_arena
from judge_arena.config import ConfigError, builtin_templates, load_config
from judge_arena.fence import unfence
from judge_arena.judge import JudgeTemplate, TemplateError, parse_verdict, render_game
from judge_arena.labels import MT_BENCH, label_set_of
from judge_arena.pipeline import run_arena
from judge_arena.records import Battle, Prompt
from judge_arena.runs import load_run
from judge_arena.sim import SimulatorServer
from judge_arena.sim.server import RequestRecord
from judge_arena.suites import load_suite
from judge_arena.views import panel_battles

MT_BENCH_TEMPLATE = builtin_templates()["mt-bench"]

QUESTIONS: list[dict[str, Any]] = [
    {
        "question_id": 81,
        "category": "writing",
        "turns": ["Write a travel blog post about Hawaii.", "Rewrite it starting every sentence with A."],
        "reference": ["a writing reference the judge must not see", "another one"],
    },
    {
        "question_id": 111,
        "category": "math",
        "turns": ["What is the area of the triangle (0,0), (-1,1), (3,3)?", "What is its circumcircle's area?"],
        "reference": ["Area is 3", "5pi"],
    },
    {
        "question_id": 101,
        "category": "reasoning",
        "turns": ["You overtake the second person. Where are you?", "And if it was the last person?"],
        "reference": ["You are in second place.", ""],
    },
]
"""MT-Bench's layout; the reasoning question has no reference for its second turn (as three in MT-Bench)."""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _suite(folder: Path) -> Path:
    path = folder / "mt_bench" / "question.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def _config(folder: Path, **suite: object) -> Path:
    config = {
        "name": "mtb",
        "suites": [{"path": str(_suite(folder)), **suite}],
        "candidates": [
            {"name": "strong", "model": "openai/sim-strong-plain", "api_base": "simulator"},
            {"name": "weak", "model": "openai/sim-markdown-weak", "api_base": "simulator"},
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator", "template": "mt-bench"}],
        "normalizations": ["raw"],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _judge_requests(sim: SimulatorServer) -> list[RequestRecord]:
    return [r for r in sim.requests if r.model == "sim-judge" and len(r.messages) == 2]


def _prompt(category: str, references: tuple[str, ...] = ()) -> Prompt:
    return Prompt(id="q", category=category, turns=("Q1", "Q2"), references=references)


def test_the_builtin_template_is_mt_benchs_four_prompts_with_three_labels(shared_data: Path) -> None:
    template = JudgeTemplate.load(MT_BENCH_TEMPLATE)
    assert template.labels is MT_BENCH
    assert template.per_turn
    lines = (shared_data / "mt_bench" / "judge_prompts.jsonl").read_text().splitlines()
    source = {record["name"]: record for record in map(json.loads, lines)}
    texts = {
        "pair-v2": template.base,
        "pair-v2-multi-turn": template.multi_turn,
        "pair-math-v1": template.reference,
        "pair-math-v1-multi-turn": template.multi_turn_reference,
    }
    for name, text in texts.items():
        assert text is not None
        assert text.user == source[name]["prompt_template"], name
        # The system prompt is MT-Bench's with two sentences added before the verdict format: fenced text is data.
        original, cut = source[name]["system_prompt"], source[name]["system_prompt"].index("After providing")
        added = text.system.removeprefix(original[:cut]).removesuffix(original[cut:])
        assert added.startswith("The question, the answers and any reference answer are each enclosed")
        assert len(added) < 300
    assert parse_verdict("The answers are equally good. [[C]]", MT_BENCH) == "C"
    assert parse_verdict("[[A>B]]", MT_BENCH) is None
    assert {label_set_of(label) for label in "ABC"} == {MT_BENCH}


def test_turn_one_shows_the_first_answers_turn_two_the_conversation_focused_on_the_second() -> None:
    template = JudgeTemplate.load(MT_BENCH_TEMPLATE)
    prompt = _prompt("writing")
    first = render_game(template, prompt, ("a1", "a2"), ("b1", "b2"), 1)
    assert first[0].content == template.base.system
    shown = unfence(first[1].content)
    assert shown is not None
    assert (shown.question, shown.answer_a, shown.answer_b, shown.reference) == (("Q1",), ("a1",), ("b1",), ())
    second = render_game(template, prompt, ("a1", "a2"), ("b1", "b2"), 2)
    assert "focus on who provides a better answer to the second user question" in second[0].content
    shown = unfence(second[1].content)
    assert shown is not None
    assert (shown.question, shown.answer_a, shown.answer_b) == (("Q1", "Q2"), ("a1", "a2"), ("b1", "b2"))


def test_references_are_shown_only_for_every_turn_that_has_one() -> None:
    template = JudgeTemplate.load(MT_BENCH_TEMPLATE)
    prompt = _prompt("math", ("R1", "R2"))
    for turn, expected in ((1, ("R1",)), (2, ("R1", "R2"))):
        system, user = render_game(template, prompt, ("a1", "a2"), ("b1", "b2"), turn)
        assert "reference" in system.content
        shown = unfence(user.content)
        assert shown is not None
        assert shown.reference == expected
    half = _prompt("reasoning", ("R1", ""))
    assert unfence(render_game(template, half, ("a1", "a2"), ("b1", "b2"), 1)[1].content).reference == ("R1",)  # type: ignore[union-attr]
    assert unfence(render_game(template, half, ("a1", "a2"), ("b1", "b2"), 2)[1].content).reference == ()  # type: ignore[union-attr]


def test_a_suite_keeps_references_only_in_its_reference_categories(tmp_path: Path) -> None:
    path = _suite(tmp_path)
    default = {p.category: p.references for p in load_suite(path).prompts}
    assert default == {"writing": (), "math": ("Area is 3", "5pi"), "reasoning": ("You are in second place.", "")}
    chosen = {p.category: p.references for p in load_suite(path, reference_categories=["writing"]).prompts}
    assert chosen == {"writing": tuple(QUESTIONS[0]["reference"]), "math": (), "reasoning": ()}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("system: s\nuser: '{question} {answer_a} {answer_b} {reference}'\n", "reference placeholders belong"),
        ("system: s\nuser: '{question_1} {answer_a_1} {answer_b_2}'\nlabels: mt-bench\n", None),
        ("system: s\nuser: '{question} {answer_a} {answer_b}'\nlabels: five\n", "field 'labels'"),
        ("system: s\nuser: '{question} {answer_a} {answer_b}'\nmulti_turn: {system: s}\n", "'multi_turn.user'"),
        ("system: s\nuser: '{question} {answer_a_x} {answer_b}'\n", r"unknown placeholders \['answer_a_x'\]"),
    ],
)
def test_template_fields_are_checked(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    if message is None:
        assert JudgeTemplate.load(path).base.last_turn == 2
        return
    with pytest.raises(TemplateError, match=message):
        JudgeTemplate.load(path)


def test_a_reference_category_the_suite_does_not_have_is_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path, reference_categories=["maths"])
    with pytest.raises(ConfigError, match=r"arena\.yaml: field 'suites\.0\.reference_categories': \['maths'\] not"):
        load_inputs(load_config(path))


def test_a_turn_placeholder_the_prompt_cannot_fill_is_a_config_error(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text("system: s\nuser: '{question_1} {answer_a_2} {answer_b_2}'\n")
    config = yaml.safe_load(_config(tmp_path).read_text())
    config["judges"][0]["template"] = str(template)
    config["suites"] = [{"path": "core", "limit": 2}]
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"t\.yaml: field 'user': shows answers up to turn 2, but prompt '.*' is"):
        load_inputs(load_config(path))


def test_the_simulator_judges_mt_bench_per_turn_and_against_references(tmp_path: Path, sim: SimulatorServer) -> None:
    sim.reset_log()
    inputs = load_inputs(load_config(_config(tmp_path)))
    assert planned_games(inputs) == 3 * 2 * 2  # prompts × turns × orders, one pair, one view
    run = asyncio.run(play_arena(inputs, simulator_url=sim.url))
    assert not run.failures
    requests = _judge_requests(sim)
    assert len(requests) == len(run.battles) == 12
    seen: dict[tuple[str, int], set[tuple[str, ...]]] = {}
    for request in requests:
        system, user = request.messages
        shown = unfence(user.content)
        assert shown is not None
        category = next(q["category"] for q in QUESTIONS if q["turns"][0] == shown.question[0])
        turn = len(shown.question)
        assert len(shown.answer_a) == len(shown.answer_b) == turn
        assert ("second user question" in system.content) == (turn == 2)
        assert ("with the reference answer" in system.content) == bool(shown.reference)
        seen.setdefault((str(category), turn), set()).add(shown.reference)
    assert seen == {
        ("writing", 1): {()},
        ("writing", 2): {()},
        ("math", 1): {("Area is 3",)},
        ("math", 2): {("Area is 3", "5pi")},
        ("reasoning", 1): {("You are in second place.",)},
        ("reasoning", 2): {()},
    }
    assert {(b.prompt_id, b.turn) for b in run.battles} == {(p, t) for p in ("81", "111", "101") for t in (1, 2)}
    assert {b.label for b in run.battles} <= set(MT_BENCH.labels)
    assert all(b.weight == 1.0 for b in run.battles)
    assert all("reference answer" in b.replies[0] for b in run.battles if b.prompt_id == "111")
    # As votes (agreement with MT-Bench's human judgments), each turn is filed under its own turn.
    votes = run_votes(run.battles)
    assert sorted((v.question_id, v.turn) for v in votes) == sorted(
        (p, t) for p in ("81", "111", "101") for t in (1, 2)
    )


def test_a_run_writes_the_turn_and_rates_each_turn(tmp_path: Path, sim: SimulatorServer) -> None:
    result = run_arena(load_config(_config(tmp_path)), simulator_url=sim.url)
    battles = load_run(result.folder).battles
    assert sorted(battles["turn"].unique()) == [1, 2]
    assert set(battles["label"].dropna()) <= {"A", "B", "C"}
    for view in result.views:
        assert set(view.by_turn) == {"1", "2"}
        assert all(entry.battles == 6 for entry in view.by_turn.values())


def test_the_panel_of_mt_bench_judges_answers_in_their_labels_per_turn() -> None:
    def battle(judge: str, turn: int, label: str) -> Battle:
        winner = MT_BENCH.winner(label)
        return Battle("q", "math", judge, "raw", "x", "y", label, winner, 1.0, turn=turn)

    combined = panel_battles(
        [battle("j1", 1, "A"), battle("j2", 1, "A"), battle("j1", 2, "B"), battle("j2", 2, "C")], "mean", 3.0
    )
    assert {(b.turn, b.label, b.winner, b.weight) for b in combined} == {
        (1, "A", "model_a", 1.0),
        (2, "B", "model_b", 1.0),
    }


def test_categories_are_grouped_by_the_config_map_and_rated_with_their_interval(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    path = _config(tmp_path)
    config = yaml.safe_load(path.read_text())
    (tmp_path / "groups.yaml").write_text("math: closed\nreasoning: closed\n")
    config["rating"] = {"category_map": "groups.yaml", "category_min_prompts": 2}
    path.write_text(yaml.safe_dump(config))
    result = run_arena(load_config(path), simulator_url=sim.url)
    for view in result.views:
        assert set(view.by_category) == {"closed", "writing"}
        closed = view.by_category["closed"]
        assert closed.battles == 8
        assert closed.board is not None
        assert all(row.lower <= row.rating <= row.upper for row in closed.board.rows)
        # One prompt is fewer than two: a note of one short line, no board.
        assert view.by_category["writing"].note == "too few prompts: 1 for strong, fewer than 2 (and 1 more models)"
    assert set(load_run(result.folder).battles["category"]) == {"writing", "math", "reasoning"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("- math\n", "expected a mapping of categories to groups"), ("math: 3\n", "field 'math': the group must be")],
)
def test_a_bad_category_map_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    path = _config(tmp_path)
    config = yaml.safe_load(path.read_text())
    (tmp_path / "groups.yaml").write_text(text)
    config["rating"] = {"category_map": "groups.yaml"}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=rf"groups\.yaml: {message}"):
        load_config(path)


def _references(folder: Path, turns: dict[int, list[str]]) -> Path:
    path = folder / "gpt-4.jsonl"
    lines = [{"question_id": q, "model_id": "gpt-4", "choices": [{"index": 0, "turns": t}]} for q, t in turns.items()]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_reference_answer_file_replaces_the_suites_own_references(tmp_path: Path, sim: SimulatorServer) -> None:
    references = _references(tmp_path, {111: ["GPT-4: the area is 3.", "GPT-4: 5 pi."], 101: ["2nd", "last"]})
    sim.reset_log()
    inputs = load_inputs(load_config(_config(tmp_path, references=str(references))))
    assert {p.id: p.references for p in inputs.prompts} == {
        "81": (),
        "111": ("GPT-4: the area is 3.", "GPT-4: 5 pi."),
        "101": ("2nd", "last"),
    }
    asyncio.run(play_arena(inputs, simulator_url=sim.url))
    shown = {unfence(r.messages[1].content).reference for r in _judge_requests(sim)}  # type: ignore[union-attr]
    assert shown == {
        (),
        ("GPT-4: the area is 3.",),
        ("GPT-4: the area is 3.", "GPT-4: 5 pi."),
        ("2nd",),
        ("2nd", "last"),
    }


def test_a_reference_answer_with_other_turns_is_a_config_error(tmp_path: Path) -> None:
    references = _references(tmp_path, {111: ["only one turn"]})
    path = _config(tmp_path, references=str(references))
    with pytest.raises(ConfigError, match=r"field 'suites\.0\.references': 1 reference turn\(s\) for prompt '111'"):
        load_inputs(load_config(path))


def test_mt_benchs_gpt4_references_reach_the_thirty_reference_guided_prompts(shared_data: Path, tmp_path: Path) -> None:
    data = shared_data / "mt_bench"
    config = yaml.safe_load(_config(tmp_path).read_text())
    config["suites"] = [
        {"path": str(data / "question.jsonl"), "references": str(data / "reference_answer/gpt-4.jsonl")}
    ]
    (tmp_path / "arena.yaml").write_text(yaml.safe_dump(config))
    prompts = load_inputs(load_config(tmp_path / "arena.yaml")).prompts
    guided = [p for p in prompts if p.references]
    assert len(guided) == 30
    assert {p.category for p in guided} == {"math", "reasoning", "coding"}
    assert all(len(p.references) == 2 and all(r.strip() for r in p.references) for p in guided)
