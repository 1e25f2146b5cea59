"""Battles made elsewhere, read into the rating stage's table so that `judge-arena rate` fits the boards a run gets.

Three layouts, each in JSON (an array or JSON Lines), JSON Lines, CSV or Parquet (`inputs.read_records`):

- **Chatbot Arena / FastChat** battles: ``model_a``, ``model_b``, ``winner`` (``model_a``, ``model_b``, ``tie``,
  ``tie (bothbad)``; both ties count as half a win each), optional ``question_id`` (whole prompts are resampled
  when every battle has one, single battles otherwise), ``category``, ``turn`` and ``weight``, and the style
  features Chatbot Arena publishes per battle in ``conv_metadata`` (read as FastChat's style control reads them):
  ``sum_assistant_a_tokens``, ``header_count_a`` (``h1`` … ``h6``), ``list_count_a`` (``ordered``,
  ``unordered``), ``bold_count_a`` (``**``, ``__``) and the same for ``b``; a count may also be a plain number,
  and the keys may stand at the top level of a record (a flattened CSV).
- **MT-Bench human judgments**: the same fields with ``judge`` and ``turn``; with ``conversation_a`` and
  ``conversation_b`` (lists of ``{"role", "content"}``) and no style metadata, the style features are measured on
  the assistant's turns up to the vote's turn (`style.style_features`).
- **This project's** ``battles.csv`` (or the run folder holding it), detected by its header: rated per judge and
  normalization as the run was, with the style features of the folder's ``answers.jsonl`` when it has one.

Third-party votes form one view, judge `VOTES`, normalization ``raw``. Every problem raises `BattlesInputError`
naming the file, the record and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from judge_arena.agreement import is_run_path, load_battles
from judge_arena.inputs import InputFileError, conversation_turns, json_type, read_records
from judge_arena.rating import FASTCHAT_WINNERS
from judge_arena.records import Answer
from judge_arena.runs import load_run
from judge_arena.style import FEATURES, style_features
from judge_arena.views import BATTLE_COLUMNS, battles_frame, with_style_features

VOTES = "votes"
"""The judge name of the one view a third-party battles file is rated as."""

"""The style features read per side (`tokens`, `headers`, `lists`, `bold`), as `<feature>_a` / `<feature>_b`."""

_ARENA_KEYS = {
    "tokens": "sum_assistant_{side}_tokens",
    "headers": "header_count_{side}",
    "lists": "list_count_{side}",
    "bold": "bold_count_{side}",
}
"""Chatbot Arena's `conv_metadata` key of each feature; a dict value (``{"h1": 2, "h2": 1}``) counts its sum."""


class BattlesInputError(InputFileError):
    """A battles file that cannot be rated."""


_Fail = Callable[[str, str], BattlesInputError]
"""Builds the error for (field, reason) at the record being read."""


@dataclass(frozen=True)
class BattleFile:
    """A battles file read for rating."""

    battles: pd.DataFrame
    """`views.BATTLE_COLUMNS`, then `<feature>_a` / `<feature>_b` for each of `FEATURES` when `styled`."""
    styled: bool
    """Whether every battle has its style features (style control is possible)."""
    unit: str
    """The bootstrap unit the file supports: "prompt" when every battle names its prompt, else "battle"."""


def load_battle_file(path: Path) -> BattleFile:
    """Read a battles file (or a run folder) in any of the module's layouts.

    Raises:
        BattlesInputError: The file cannot be read, has no battle, or a record lacks a field or has a bad value
            (for a run's battles.csv, `agreement.VotesInputError`).
    """
    if is_run_path(path):
        return _run_battles(path)
    shown = str(path)
    records = read_records(path, shown, BattlesInputError, required=("model_a", "model_b", "winner"))
    if not records:
        raise BattlesInputError(shown, "no battles (the file is empty)")
    rows = [_battle(record, shown, where) for where, record in records]
    unstyled = [where for (where, _), row in zip(records, rows, strict=True) if "tokens_a" not in row]
    if unstyled and len(unstyled) < len(rows):
        raise BattlesInputError(
            shown, "no style features, while other battles have them", where=unstyled[0], field="conv_metadata"
        )
    frame = pd.DataFrame(rows)
    unit = "prompt" if frame["prompt_id"].notna().all() else "battle"
    if unit == "battle":
        frame["prompt_id"] = [f"battle-{i}" for i in range(1, len(frame) + 1)]
    styled = not unstyled
    columns = list(BATTLE_COLUMNS) + ([f"{name}_{side}" for side in "ab" for name in FEATURES] if styled else [])
    return BattleFile(battles=frame[columns], styled=styled, unit=unit)


def _run_battles(path: Path) -> BattleFile:
    """A run's battles, with the style features of its folder's answers when it has them."""
    frame = battles_frame(load_battles(path))
    folder = path if path.is_dir() else path.parent
    if not (folder / "answers.jsonl").is_file() or not (folder / "summary.json").is_file():
        return BattleFile(battles=frame, styled=False, unit="prompt")
    records = load_run(folder).answers.to_dict(orient="records")
    answers = [Answer(**{str(key): value for key, value in row.items()}) for row in records]
    have = {(answer.model, answer.prompt_id) for answer in answers}
    sides = zip(frame["model_a"], frame["model_b"], frame["prompt_id"], strict=True)
    if not all((a, prompt) in have and (b, prompt) in have for a, b, prompt in sides):
        return BattleFile(battles=frame, styled=False, unit="prompt")
    return BattleFile(battles=with_style_features(frame, answers), styled=True, unit="prompt")


def _battle(record: Mapping[str, Any], shown: str, where: str) -> dict[str, Any]:
    def fail(field: str, reason: str) -> BattlesInputError:
        return BattlesInputError(shown, reason, where=where, field=field)

    model_a, model_b = (_text(record.get(side), fail, side) for side in ("model_a", "model_b"))
    if model_a == model_b:
        raise fail("model_b", f"the same model as model_a ('{model_a}')")
    winner = record.get("winner")
    if not isinstance(winner, str) or winner not in FASTCHAT_WINNERS:
        raise fail("winner", f"must be one of {', '.join(FASTCHAT_WINNERS)}; got {winner!r}")
    question_id = record.get("question_id")
    if question_id is not None and not (isinstance(question_id, str | int) and not isinstance(question_id, bool)):
        raise fail("question_id", f"must be a string or an integer, got {json_type(question_id)}")
    turn = _count(record.get("turn", 1), fail, "turn", minimum=1)
    weight = record.get("weight", 1.0)
    weight = float(weight) if isinstance(weight, str) and _is_number(weight) else weight
    if not isinstance(weight, int | float) or isinstance(weight, bool) or not weight >= 0:
        raise fail("weight", f"must be a number >= 0, got {weight!r}")
    category = record.get("category") or "all"
    row: dict[str, Any] = {
        "prompt_id": None if question_id in (None, "") else str(question_id),
        "suite": "",
        "turn": turn,
        "category": _text(category, fail, "category"),
        "judge": VOTES,
        "normalization": "raw",
        "model_a": model_a,
        "model_b": model_b,
        "label": None,
        "winner": FASTCHAT_WINNERS[winner],
        "weight": float(weight),
    }
    return row | _features(record, turn, fail)


def _features(record: Mapping[str, Any], turn: int, fail: _Fail) -> dict[str, float]:
    """The battle's style features, `<feature>_<side>`; empty when it carries none."""
    metadata = record.get("conv_metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise fail("conv_metadata", f"must be an object, got {json_type(metadata)}")
    source: Mapping[str, Any] = metadata if metadata is not None else record
    if all(_ARENA_KEYS["tokens"].format(side=side) in source for side in "ab"):
        where = "conv_metadata." if metadata is not None else ""
        out: dict[str, float] = {}
        for side in "ab":
            for name, key in _ARENA_KEYS.items():
                field = key.format(side=side)
                value = source.get(field)
                counts = list(value.values()) if isinstance(value, dict) else [value]
                out[f"{name}_{side}"] = sum(_count(c, fail, f"{where}{field}", minimum=0) for c in counts)
        return out
    if all(f"{name}_{side}" in record for name in FEATURES for side in "ab"):
        return {
            f"{name}_{side}": _count(record[f"{name}_{side}"], fail, f"{name}_{side}", minimum=0)
            for name in FEATURES
            for side in "ab"
        }
    if "conversation_a" in record and "conversation_b" in record:
        return {
            f"{name}_{side}": value
            for side in "ab"
            for name, value in asdict(style_features(_assistant_text(record, side, turn, fail))).items()
        }
    return {}


def _assistant_text(record: Mapping[str, Any], side: str, turn: int, fail: _Fail) -> str:
    field = f"conversation_{side}"
    _, replies = conversation_turns(record[field], fail, field)
    return "\n\n".join(replies[:turn])


def _text(value: object, fail: _Fail, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(field, f"must be a non-empty string, got {json_type(value)}")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count(value: object, fail: _Fail, field: str, *, minimum: int) -> int:
    """A whole number >= `minimum`, also written as text (a CSV cell)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise fail(field, f"must be a whole number >= {minimum}, got {value!r}")
    return value
