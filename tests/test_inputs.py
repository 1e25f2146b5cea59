"""The one reader of input files (`judge_arena.inputs`): configs, suites, leaderboards, votes and run folders."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from judge_arena.inputs import InputFileError, json_lines, json_type, parse_json, read_csv, read_text


class _Error(InputFileError):
    """A loader's own error class, which the shared readers raise."""


def test_read_text_strips_a_bom_and_names_the_line_and_byte_of_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"\xef\xbb\xbfname: x\n")
    assert read_text(path, "f.txt") == "name: x\n"
    path.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(_Error) as raised:
        read_text(path, "f.txt", _Error)
    assert str(raised.value) == "f.txt line 2: not valid UTF-8 (byte 4 of the line)"


def test_read_text_says_why_a_file_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(_Error, match=r"^missing: no such file$"):
        read_text(tmp_path / "missing", "missing", _Error)
    with pytest.raises(_Error, match=r"^folder: is a directory, not a file$"):
        read_text(tmp_path, "folder", _Error)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    with pytest.raises(_Error, match=r"^loop: cannot read: Too many levels of symbolic links$"):
        read_text(loop, "loop", _Error)


def test_json_nested_too_deeply_is_an_input_error_not_a_recursion_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(_Error, match=r"^f line 3: invalid JSON: nested too deeply to read$"):
        json_lines('{"a": 1}\n\n' + deep + "\n", "f", _Error)
    with pytest.raises(_Error, match=r"^f: invalid JSON: nested too deeply to read$"):
        parse_json(deep, "f", _Error)
    with pytest.raises(_Error, match=r"^f line 2: invalid JSON: Extra data \(column 2\)$"):
        parse_json("[\n]]", "f", _Error)


def test_read_csv_keeps_the_header_and_the_line_of_each_row() -> None:
    table = read_csv('a,b\n1,"two\nlines"\n\n3,4\n', "t.csv", ["a"], _Error)
    assert table.header == ["a", "b"]
    assert table.rows == [(3, {"a": "1", "b": "two\nlines"}), (5, {"a": "3", "b": "4"})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "t.csv: empty file; expected a header row"),
        ("a,c\n1,2\n", "t.csv line 1: field 'b': missing column"),
        ("a,b\n1,2\n3\n", "t.csv line 3: 1 cells, the header has 2"),
        ("a,b\n" + "x" * 200_000 + ",1\n", "t.csv line 2: invalid CSV: field larger than field limit (131072)"),
    ],
)
def test_read_csv_errors_name_the_line_and_column(text: str, message: str) -> None:
    with pytest.raises(_Error) as raised:
        read_csv(text, "t.csv", ["a", "b"], _Error)
    assert str(raised.value) == message


def test_json_type_names_what_a_value_is() -> None:
    values: list[object] = [None, True, 3, "x", " ", [], [1], {}, datetime.date(2024, 1, 1)]
    assert [json_type(value) for value in values] == [
        "null",
        "a boolean",
        "the number 3",
        "a string",
        "an empty string",
        "an empty list",
        "a list",
        "an object",
        "a date",
    ]
