"""What every loader of an input file shares: its error, so each message reads the same way, and JSON Lines."""

from __future__ import annotations

import json


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


def json_lines(text: str, shown: str, error: type[InputFileError]) -> list[tuple[int, object]]:
    """The JSON value of each non-blank line with its line number; `error` names the line of invalid JSON."""
    values: list[tuple[int, object]] = []
    # Split on "\n" only: str.splitlines would also split on U+2028 and friends, which JSON allows in strings.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            values.append((number, json.loads(raw)))
        except json.JSONDecodeError as exc:
            raise error(shown, f"invalid JSON: {exc.msg} (column {exc.colno})", line=number) from None
    return values
