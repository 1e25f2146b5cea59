"""What every loader of an input file shares: its error, reading a file as text, JSON Lines, CSV rows, records of
a JSON, JSON Lines, CSV or Parquet file, a record's validation error, and how a message names the type of a value,
so that each message reads the same way whatever the file."""

from __future__ import annotations

import codecs
import csv
import importlib
import importlib.util
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel
from pydantic_core import ErrorDetails

RECORD_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
"""File types `read_records` reads, by suffix."""


class InputFileError(ValueError):
    """An input file that cannot be used; the message names the file and, where known, the place and field.

    The message reads `<path> <place>: field '<field>': <reason>`, the place being `line N` (or the `where` text,
    e.g. `row 3`), each part left out when unknown.
    """

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        line: int | None = None,
        where: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.where = where if where is not None else (None if line is None else f"line {line}")
        self.field = field
        self.reason = reason
        place = path if self.where is None else f"{path} {self.where}"
        what = reason if field is None else f"field '{field}': {reason}"
        super().__init__(f"{place}: {what}")


def read_text(path: Path, shown: str, error: type[InputFileError] = InputFileError) -> str:
    """The file's text, decoded as UTF-8 with any byte order mark removed.

    Args:
        path: The file to read.
        shown: How messages name the file (usually the path as the user gave it).
        error: The error class raised, so that each loader keeps its own.

    Raises:
        error: The file is missing, a folder, unreadable (a symlink loop, no permission), or not UTF-8 (naming the
            line and the byte of the line).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(shown, "no such file") from None
    except IsADirectoryError:
        raise error(shown, "is a directory, not a file") from None
    except OSError as exc:
        raise error(shown, f"cannot read: {exc.strerror or exc}") from None
    # Editors on Windows and spreadsheet exports like to prepend a BOM, which would otherwise glue itself to the
    # first key or column name.
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(shown, f"not valid UTF-8 (byte {column} of the line)", line=line) from None


def parse_json(text: str, shown: str, error: type[InputFileError], *, line: int | None = None) -> object:
    """One JSON value; `error` names the place of invalid JSON, or of nesting too deep to parse.

    Args:
        text: The JSON text.
        shown: How messages name the file.
        error: The error class raised.
        line: The line `text` starts on in the file, for a JSON Lines record; None for a whole file, whose
            message names the line of the problem.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise error(shown, f"invalid JSON: {exc.msg} (column {exc.colno})", line=where) from None
    except RecursionError:
        raise error(shown, "invalid JSON: nested too deeply to read", line=line) from None


def json_lines(text: str, shown: str, error: type[InputFileError]) -> list[tuple[int, object]]:
    """The JSON value of each non-blank line with its line number; `error` names the line of invalid JSON."""
    # Split on "\n" only: str.splitlines would also split on U+2028 and friends, which JSON allows in strings.
    return [
        (number, parse_json(raw, shown, error, line=number))
        for number, raw in enumerate(text.split("\n"), start=1)
        if raw.strip()
    ]


class CsvTable(NamedTuple):
    """A CSV file's header and rows, each row with the line it ends on."""

    header: list[str]
    rows: list[tuple[int, dict[str, str]]]


def read_csv(text: str, shown: str, required: Sequence[str], error: type[InputFileError]) -> CsvTable:
    """The header and rows of a CSV text; blank rows are skipped.

    Raises:
        error: No header, a `required` column missing (named as the field), a row whose number of cells differs
            from the header's, or text that is not CSV.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = next(reader, None)
        if header is None:
            raise error(shown, "empty file; expected a header row")
        missing = [column for column in required if column not in header]
        if missing:
            raise error(shown, "missing column", line=1, field=missing[0])
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise error(shown, f"{len(cells)} cells, the header has {len(header)}", line=reader.line_num)
            rows.append((reader.line_num, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        raise error(shown, f"invalid CSV: {exc}", line=reader.line_num) from None
    return CsvTable(header, rows)


def read_records(
    path: Path, shown: str, error: type[InputFileError], *, required: Sequence[str] = ()
) -> list[tuple[str, Mapping[str, Any]]]:
    """The records of a table file, each with where it is (`line 3`, `item 2`, `row 5`), by the file's suffix.

    ``.json`` holds a JSON array of objects or JSON Lines, ``.jsonl`` JSON Lines, ``.csv`` a header row then one
    record a row (every value a string; `required` columns must be in the header), ``.parquet`` a table (needs the
    pyarrow package). Records are not checked beyond being objects; an empty file gives none.

    Raises:
        error: An unknown suffix, a file that cannot be read or parsed, or a record that is not an object.
    """
    suffix = path.suffix.lower()
    if suffix not in RECORD_SUFFIXES:
        raise error(shown, f"unknown file type '{suffix}'; expected one of {', '.join(RECORD_SUFFIXES)}")
    if suffix == ".parquet":
        return _parquet_records(path, shown, error)
    text = read_text(path, shown, error)
    if suffix == ".csv":
        return [(f"line {line}", row) for line, row in read_csv(text, shown, required, error).rows]
    if text.lstrip().startswith("["):
        items = parse_json(text, shown, error)
        assert isinstance(items, list)  # valid JSON that starts with "[" is an array
        places = [(f"item {i}", item) for i, item in enumerate(items, start=1)]
    else:
        places = [(f"line {number}", value) for number, value in json_lines(text, shown, error)]
    records: list[tuple[str, Mapping[str, Any]]] = []
    for where, item in places:
        if not isinstance(item, dict):
            raise error(shown, f"expected a JSON object, got {json_type(item)}", where=where)
        records.append((where, item))
    return records


def _parquet_records(path: Path, shown: str, error: type[InputFileError]) -> list[tuple[str, Mapping[str, Any]]]:
    if importlib.util.find_spec("pyarrow") is None:
        raise error(shown, "reading Parquet needs the 'pyarrow' package, which is not installed")
    parquet = importlib.import_module("pyarrow.parquet")
    if not path.is_file():
        raise error(shown, "no such file" if not path.exists() else "not a file")
    try:
        rows: list[dict[str, Any]] = parquet.read_table(path).to_pylist()
    except Exception as exc:
        # pyarrow signals a damaged or non-Parquet file with several unrelated exception types.
        raise error(shown, f"cannot be read as Parquet ({exc})") from None
    return [(f"row {i}", row) for i, row in enumerate(rows, start=1)]


def json_type(value: object) -> str:
    """How a message names what a parsed JSON or YAML value is: 'null', 'a boolean', 'the number 3', 'a string',
    'an empty string', 'a list', 'an empty list', 'an object'; else its Python type (a YAML date is 'a date')."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string" if value.strip() else "an empty string"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


_Error = TypeVar("_Error", bound=InputFileError)


def record_error(error: type[_Error], shown: str, line: int, details: ErrorDetails, model: type[BaseModel]) -> _Error:
    """The `error` for the first of pydantic's `details` on a record (a JSON Lines line) validated as `model`:
    the field's path (``choices[0].turns``) and the reason in plain words."""
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in details["loc"]).lstrip(".")
    got = json_type(details["input"])
    kind = details["type"]
    if kind == "missing":
        reason = "is required"
    elif kind == "extra_forbidden":
        reason = f"unknown key (allowed: {', '.join(model.model_fields)})"
    elif kind == "string_type":
        reason = f"must be a string, got {got}"
    elif kind == "int_type":
        reason = f"must be an integer, got {got}"
    elif kind == "list_type":
        reason = f"must be a list, got {got}"
    elif kind == "model_type":
        reason = f"must be an object, got {got}"
    elif kind == "too_short":
        reason = "must not be empty"
    elif kind == "value_error":
        reason = str(details.get("ctx", {}).get("error", details["msg"]))
    else:
        reason = details["msg"]
    return error(shown, reason, line=line, field=field or None)


def conversation_turns(
    value: object, fail: Callable[[str, str], InputFileError], field: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The user turns and the assistant turns of a conversation in a record (`field`): a list of messages with
    `role` and `content`, or its JSON text (a CSV cell); user first, then user and assistant in turn, ending with the
    assistant; system messages are skipped. A malformed one raises `fail(field, message)`."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise fail(field, "must be a list of messages (in CSV, as JSON text)") from None
    if not isinstance(value, list) or not value:
        raise fail(field, f"must be a non-empty list of messages, got {json_type(value)}")
    turns: dict[str, list[str]] = {"user": [], "assistant": []}
    expected = "user"
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise fail(f"{field}[{i}]", f"must be an object with role and content, got {json_type(message)}")
        role, content = message.get("role"), message.get("content")
        if role == "system":
            continue
        if role != expected:
            raise fail(
                f"{field}[{i}].role",
                f"must be '{expected}' (user first, then user and assistant in turn); got {role!r}",
            )
        if not isinstance(content, str):
            raise fail(f"{field}[{i}].content", f"must be a string, got {json_type(content)}")
        turns[role].append(content)
        expected = "assistant" if role == "user" else "user"
    if expected != "user":
        raise fail(field, "must end with an assistant message (the answer voted on)")
    return tuple(turns["user"]), tuple(turns["assistant"])
