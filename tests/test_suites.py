"""Tests for judge_arena.suites: our format and its errors, the shipped suite, the real benchmarks."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from judge_arena.records import Prompt
from judge_arena.suites import SuiteError, load_suite

CORE = Path(__file__).resolve().parents[1] / "judge_arena" / "data" / "suites" / "core.jsonl"

GOOD = {"id": "p1", "category": "math", "turns": ["What is 2 + 2?"]}


def _write(tmp_path: Path, content: str | bytes, name: str = "x.jsonl") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _lines(*records: object) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_round_trip_of_our_format(tmp_path: Path) -> None:
    two_turn = {
        "id": "p2",
        "category": "writing",
        # U+2028 is legal inside a JSON string and must not split the line.
        "turns": ["Write a haiku.\u2028About rain.", "Now make it rhyme."],
        "reference": ["Soft rain on the roof", ""],
    }
    path = _write(tmp_path, "\n" + _lines(GOOD) + "   \n" + json.dumps(two_turn, ensure_ascii=False) + "\r\n")

    suite = load_suite(path)

    assert suite.name == "x"
    assert suite.format == "judge-arena"
    assert suite.prompts == (
        Prompt(id="p1", category="math", turns=("What is 2 + 2?",), suite="x"),
        Prompt(
            id="p2",
            category="writing",
            turns=("Write a haiku.\u2028About rain.", "Now make it rhyme."),
            suite="x",
            references=("Soft rain on the roof", ""),
        ),
    )


def test_name_limit_and_bom(tmp_path: Path) -> None:
    second = {**GOOD, "id": "p2"}
    path = _write(tmp_path, b"\xef\xbb\xbf" + _lines(GOOD, second).encode())

    suite = load_suite(path, "judge-arena", name="mine", limit=1)

    assert suite.name == "mine"
    assert [p.id for p in suite.prompts] == ["p1"]
    assert suite.prompts[0].suite == "mine"


def test_limit_still_validates_the_whole_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _lines(GOOD, {"id": "p2"}))
    with pytest.raises(SuiteError, match="line 2: field 'category'"):
        load_suite(path, limit=1)


def test_negative_limit_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, _lines(GOOD))
    with pytest.raises(ValueError, match="limit"):
        load_suite(path, limit=-1)


def test_error_message_format(tmp_path: Path) -> None:
    path = _write(tmp_path, _lines(*({**GOOD, "id": f"p{i}"} for i in range(6)), {**GOOD, "turns": []}))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value) == f"{path} line 7: field 'turns': must not be empty"
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 7, "turns")


@pytest.mark.parametrize(
    ("content", "line", "field", "reason"),
    [
        pytest.param(_lines(GOOD) + '{"id": "p2",\n', 2, None, "invalid JSON", id="invalid-json"),
        pytest.param(_lines(GOOD) + "\n" + '["p2"]\n', 3, None, "must be a JSON object, got a list", id="array"),
        pytest.param(
            _lines(GOOD, GOOD).encode() + b'{"id": "p3", "category": "caf\xe9"}\n',
            3,
            None,
            "not valid UTF-8",
            id="invalid-utf8",
        ),
        pytest.param(_lines({**GOOD, "id": 7}), 1, "id", "must be a string, got the number 7", id="id-type"),
        pytest.param(_lines({**GOOD, "turns": "hi"}), 1, "turns", "must be a list, got a string", id="turns-type"),
        pytest.param(
            _lines({**GOOD, "turns": ["a", None]}),
            1,
            "turns[1]",
            "must be a string, got null",
            id="turn-type",
        ),
        pytest.param(_lines({**GOOD, "reference": [1]}), 1, "reference[0]", "must be a string", id="reference-type"),
        pytest.param(_lines({"id": "p1", "turns": ["x"]}), 1, "category", "is required", id="missing"),
        pytest.param(_lines({**GOOD, "refrence": ["4"]}), 1, "refrence", "unknown key", id="unknown-key"),
        pytest.param(_lines({**GOOD, "turns": []}), 1, "turns", "must not be empty", id="no-turns"),
        pytest.param(_lines({**GOOD, "turns": ["a", ""]}), 1, "turns[1]", "must not be empty", id="empty-turn"),
        pytest.param(_lines({**GOOD, "turns": [" \n"]}), 1, "turns[0]", "must not be empty", id="blank-turn"),
        pytest.param(_lines({**GOOD, "id": ""}), 1, "id", "must not be empty", id="empty-id"),
        pytest.param(
            _lines({**GOOD, "reference": ["4", "5"]}),
            1,
            "reference",
            "one entry per turn",
            id="reference-count",
        ),
        pytest.param(
            _lines(GOOD, {**GOOD, "id": "p2"}, GOOD),
            3,
            "id",
            "duplicate id 'p1' (first used on line 1)",
            id="dup",
        ),
        pytest.param(_lines({"name": "p1"}), 1, None, "cannot detect the suite format", id="undetectable"),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, content: str | bytes, line: int, field: str | None, reason: str
) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    error = info.value
    assert (error.line, error.field) == (line, field)
    prefix = f"{path} line {line}: " + ("" if field is None else f"field '{field}': ")
    assert str(error).startswith(prefix)
    assert reason in str(error)


@pytest.mark.parametrize("content", ["", "\n  \n\n"], ids=["empty", "blank-lines"])
def test_empty_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(SuiteError, match=rf"^{re.escape(str(path))}: no records"):
        load_suite(path)


def test_explicit_format_is_not_second_guessed(tmp_path: Path) -> None:
    path = _write(tmp_path, _lines(GOOD))
    with pytest.raises(SuiteError, match="line 1: field 'question_id': is required"):
        load_suite(path, "mt-bench")


def test_arena_hard_category_choice(tmp_path: Path) -> None:
    records = [
        {"question_id": "a1", "category": "ah", "cluster": "Git", "turns": [{"content": "Rebase?"}]},
        {"question_id": "a2", "category": "ah", "turns": [{"content": "Merge?"}], "extra": 1},
    ]
    path = _write(tmp_path, _lines(*records), "question.jsonl")

    by_cluster = load_suite(path)
    by_category = load_suite(path, arena_hard_category="category")

    assert by_cluster.format == "arena-hard"
    assert by_cluster.name == tmp_path.name
    assert [p.category for p in by_cluster.prompts] == ["Git", "ah"]
    assert [p.category for p in by_category.prompts] == ["ah", "ah"]
    assert by_cluster.prompts[0].turns == ("Rebase?",)


def test_arena_hard_turn_without_content(tmp_path: Path) -> None:
    path = _write(tmp_path, _lines({"question_id": "a1", "category": "ah", "turns": [{"text": "hi"}]}))
    with pytest.raises(SuiteError, match=r"line 1: field 'turns\[0\]\.content': is required"):
        load_suite(path)


def test_mt_bench_ids_must_be_integers(tmp_path: Path) -> None:
    path = _write(tmp_path, _lines({"question_id": "81", "category": "writing", "turns": ["Hi"]}))
    with pytest.raises(SuiteError, match="field 'question_id': must be an integer, got a string"):
        load_suite(path, "mt-bench")


def test_mt_bench_duplicate_ids_name_the_field(tmp_path: Path) -> None:
    record = {"question_id": 81, "category": "writing", "turns": ["Hi"]}
    path = _write(tmp_path, _lines(record, record))
    with pytest.raises(SuiteError, match=r"line 2: field 'question_id': duplicate id '81' \(first used on line 1\)"):
        load_suite(path)


def test_shipped_core_suite() -> None:
    suite = load_suite(CORE)

    assert suite.name == "core"
    assert suite.format == "judge-arena"
    assert 38 <= len(suite.prompts) <= 45
    ids = [p.id for p in suite.prompts]
    assert len(set(ids)) == len(ids)
    for prompt in suite.prompts:
        assert re.fullmatch(rf"core-{re.escape(prompt.category)}-\d\d", prompt.id)
    counts = Counter(p.category for p in suite.prompts)
    minimum = {"coding": 6, "math": 6, "writing": 6, "advice": 6, "reasoning": 5, "refusal-prone": 5}
    assert {category: n for category, n in minimum.items() if counts[category] < n} == {}
    assert set(counts) - set(minimum) <= {"extraction", "knowledge"}
    assert sum(len(p.turns) >= 2 for p in suite.prompts) >= 4


def test_real_arena_hard(shared_data: Path) -> None:
    suite = load_suite(shared_data / "arena-hard-v0.1" / "question.jsonl")

    assert suite.format == "arena-hard"
    assert suite.name == "arena-hard-v0.1"
    assert len(suite.prompts) == 500
    assert all(len(p.turns) == 1 for p in suite.prompts)
    assert len({p.id for p in suite.prompts}) == 500
    clusters = Counter(p.category for p in suite.prompts)
    assert len(clusters) == 250
    assert set(clusters.values()) == {2}
    assert "arena-hard-v0.1" not in clusters


def test_real_mt_bench(shared_data: Path) -> None:
    suite = load_suite(shared_data / "mt_bench" / "question.jsonl")

    assert suite.format == "mt-bench"
    assert suite.name == "mt_bench"
    assert len(suite.prompts) == 80
    assert all(len(p.turns) == 2 for p in suite.prompts)
    suite_categories = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"]
    assert Counter(p.category for p in suite.prompts) == dict.fromkeys(suite_categories, 10)
    # MT-Bench's judge sees references only in math, reasoning and coding (29 of the 39 prompts that have one).
    with_reference = [p for p in suite.prompts if p.references]
    assert {p.category for p in with_reference} == {"math", "reasoning", "coding"}
    assert len(with_reference) == 29
    every = load_suite(shared_data / "mt_bench" / "question.jsonl", reference_categories=suite_categories)
    with_reference = [p for p in every.prompts if p.references]
    assert len(with_reference) == 39
    assert all(len(p.references) == 2 for p in with_reference)
    assert sum(ref == "" for p in with_reference for ref in p.references) == 8
    first = suite.prompts[0]
    assert (first.id, first.category) == ("81", "writing")
