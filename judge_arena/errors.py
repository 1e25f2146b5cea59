"""The error of an input file that cannot be used, shared by every loader so each message reads the same way."""

from __future__ import annotations


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
