"""Answer files: a candidate's answers made elsewhere (a batch job, a published benchmark), read instead of generated.

Three layouts are read, each a JSONL file (one JSON object per line; blank lines are skipped):

``judge-arena`` — our own layout, strict (any other key is an error)::

    {"prompt_id": "core-math-01", "answer": "4"}
    {"prompt_id": "81", "turns": ["first answer", "second answer"]}

- ``prompt_id`` (string, required): the prompt's id in the suite.
- ``answer`` (non-empty string): the answer to a one-turn prompt; or
- ``turns`` (non-empty list of non-empty strings): one answer per user turn, in order. Exactly one of the two.

``arena-hard`` — Arena-Hard-Auto's ``model_answer/<model>.jsonl``: ``question_id`` (string) and
``choices[0].turns`` (list of ``{"content": str, "token_len": int}``); ``token_len`` is optional.

``mt-bench`` — MT-Bench's (FastChat's) ``model_answer/<model>.jsonl``: ``question_id`` (integer, turned into a
string id) and ``choices[0].turns`` (list of strings).

The two third-party layouts ignore unknown keys (``answer_id``, ``model_id``, ``tstamp``) and every choice but the
first. A prompt id may appear once per file. Every problem raises `AnswerFileError`, whose message names the file,
the line and the field::

    answers/x.jsonl line 7: field 'choices[0].turns': must not be empty
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from judge_arena.inputs import InputFileError, json_lines, json_type, read_text, record_error
from judge_arena.records import Answer, Prompt

ANSWERS_PREFIX = "answers:"
"""How the `model` of a candidate read from an answer file starts: ``answers:<file name>@<content hash>``."""

AnswerFormat = Literal["judge-arena", "arena-hard", "mt-bench"]
"""The answer file layouts `load_answer_file` reads."""


class AnswerFileError(InputFileError):
    """An answer file that cannot be used; the message names the file and, where known, the line and field."""


@dataclass(frozen=True)
class FileAnswer:
    """One answer of an answer file."""

    line: int
    """The line of the file it is on, for messages."""
    turns: tuple[str, ...]
    """One reply per user turn."""
    output_tokens: int | None
    """The answer's length in tokens when the file gives it (Arena-Hard's ``token_len``), else None."""
    field: str
    """The record's field that holds the turns, for messages."""


@dataclass(frozen=True)
class AnswerFile:
    """A loaded answer file: its answers by prompt id, and the hash that identifies its content."""

    path: Path
    format: AnswerFormat
    """The layout the file was read as (the detected one with ``format="auto"``)."""
    sha256: str
    """SHA-256 of the file's text: a changed file is another candidate version."""
    answers: dict[str, FileAnswer]
    """By prompt id, in file order."""

    @property
    def model(self) -> str:
        """The candidate's `model` string: the file's name and the start of its content hash."""
        return _model(self.path, self.sha256)


def answers_model(path: Path) -> str:
    """The `model` string of a candidate read from the answer file at `path` (as `AnswerFile.model`).

    Raises:
        AnswerFileError: The file cannot be read or is not UTF-8.
    """
    return _model(path, _sha256(read_text(path, str(path), AnswerFileError)))


def _model(path: Path, sha256: str) -> str:
    return f"{ANSWERS_PREFIX}{path.name}@{sha256[:16]}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


_Text = Annotated[str, AfterValidator(_non_blank)]


class _JudgeArenaAnswer(BaseModel):
    """One line of a judge-arena answer file."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    prompt_id: _Text = Field(description="The id of the prompt answered, as in the suite.")
    answer: _Text | None = Field(default=None, description="The answer to a one-turn prompt.")
    turns: list[_Text] | None = Field(default=None, min_length=1, description="One answer per user turn, in order.")

    @model_validator(mode="after")
    def _one_of_answer_or_turns(self) -> _JudgeArenaAnswer:
        if (self.answer is None) == (self.turns is None):
            raise ValueError("give exactly one of 'answer' (one turn) and 'turns' (a list, one per turn)")
        return self


class _ArenaHardTurn(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)

    content: _Text = Field(description="The answer to one user turn.")
    token_len: int | None = Field(default=None, ge=0, description="Its length in cl100k_base tokens.")


class _ArenaHardChoice(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)

    turns: list[_ArenaHardTurn] = Field(min_length=1, description="One answer per user turn.")


class _ArenaHardAnswer(BaseModel):
    """One line of an Arena-Hard-Auto ``model_answer`` file."""

    model_config = ConfigDict(strict=True, frozen=True)

    question_id: _Text = Field(description="The id of the question answered.")
    choices: list[_ArenaHardChoice] = Field(min_length=1, description="The answers sampled; the first is used.")


class _MTBenchChoice(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)

    turns: list[str] = Field(min_length=1, description="One answer per user turn.")


class _MTBenchAnswer(BaseModel):
    """One line of an MT-Bench (FastChat) ``model_answer`` file."""

    model_config = ConfigDict(strict=True, frozen=True)

    question_id: int = Field(description="The numeric id of the question answered.")
    choices: list[_MTBenchChoice] = Field(min_length=1, description="The answers sampled; the first is used.")


_Record = _JudgeArenaAnswer | _ArenaHardAnswer | _MTBenchAnswer

_MODELS: dict[AnswerFormat, type[_Record]] = {
    "judge-arena": _JudgeArenaAnswer,
    "arena-hard": _ArenaHardAnswer,
    "mt-bench": _MTBenchAnswer,
}


def load_answer_file(path: Path, format: AnswerFormat | Literal["auto"] = "auto") -> AnswerFile:
    """Read and validate a whole answer file.

    Args:
        path: The JSONL file; it appears in messages as given.
        format: The layout, or "auto" to detect it from the first record: ``prompt_id`` means judge-arena;
            ``question_id`` means arena-hard when the first choice's turns are objects (or, without turns, when
            the id is a string), mt-bench otherwise.

    Raises:
        AnswerFileError: The file cannot be read, is not UTF-8, has no answer, a line that is not a valid record,
            or a prompt id twice.
    """
    shown = str(path)
    text = read_text(path, shown, AnswerFileError)
    objects: list[tuple[int, dict[str, Any]]] = []
    for number, obj in json_lines(text, shown, AnswerFileError):
        if not isinstance(obj, dict):
            raise AnswerFileError(shown, f"must be a JSON object, got {json_type(obj)}", line=number)
        objects.append((number, obj))
    if not objects:
        raise AnswerFileError(shown, "no answers (the file is empty or has only blank lines)")
    resolved = _detect_format(shown, *objects[0]) if format == "auto" else format
    model = _MODELS[resolved]
    answers: dict[str, FileAnswer] = {}
    for line, obj in objects:
        try:
            record = model.model_validate(obj)
        except ValidationError as exc:
            raise record_error(AnswerFileError, shown, line, exc.errors()[0], model) from None
        prompt_id, answer = _answer(record, line)
        if prompt_id in answers:
            field = "prompt_id" if resolved == "judge-arena" else "question_id"
            first = answers[prompt_id].line
            raise AnswerFileError(
                shown, f"'{prompt_id}' is answered twice (first on line {first})", line=line, field=field
            )
        answers[prompt_id] = answer
    return AnswerFile(path=path, format=resolved, sha256=_sha256(text), answers=answers)


def _detect_format(shown: str, line: int, obj: dict[str, Any]) -> AnswerFormat:
    if "prompt_id" in obj:
        return "judge-arena"
    if "question_id" in obj:
        choices = obj.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        turns = first.get("turns") if isinstance(first, dict) else None
        if isinstance(turns, list) and turns:
            return "arena-hard" if isinstance(turns[0], dict) else "mt-bench"
        # No turn to look at: Arena-Hard's ids are strings, MT-Bench's integers.
        return "arena-hard" if isinstance(obj["question_id"], str) else "mt-bench"
    raise AnswerFileError(
        shown,
        f"cannot detect the answer file's layout from keys {sorted(obj)}: expected 'prompt_id' (judge-arena) or "
        "'question_id' (arena-hard, mt-bench); set the candidate's answers_format",
        line=line,
    )


def _answer(record: _Record, line: int) -> tuple[str, FileAnswer]:
    match record:
        case _JudgeArenaAnswer():
            if record.turns is not None:
                return record.prompt_id, FileAnswer(line, tuple(record.turns), None, "turns")
            return record.prompt_id, FileAnswer(line, (record.answer or "",), None, "answer")
        case _ArenaHardAnswer():
            parts = record.choices[0].turns
            lengths = [turn.token_len for turn in parts]
            tokens = None if None in lengths else sum(length or 0 for length in lengths)
            return record.question_id, FileAnswer(
                line, tuple(turn.content for turn in parts), tokens, "choices[0].turns"
            )
        case _MTBenchAnswer():
            return str(record.question_id), FileAnswer(line, tuple(record.choices[0].turns), None, "choices[0].turns")


def answers_for(
    file: AnswerFile, candidate: str, prompts: Sequence[Prompt]
) -> tuple[dict[str, Answer], tuple[str, ...]]:
    """The candidate's answers to `prompts` from its file, and the ids of the prompts the file does not answer.

    An answer's `output_tokens` is the file's own count when it gives one, else the cl100k count of its turns.

    Raises:
        AnswerFileError: An answer's number of turns differs from its prompt's, or the file answers none of
            `prompts` (its ids and the suites' are then named, which is the usual cause: another suite's file).
    """
    # Imported here: loading a config (which hashes answer files) must not load the tokenizer.
    from judge_arena.tokens import count_tokens

    answers: dict[str, Answer] = {}
    missing: list[str] = []
    shown = str(file.path)
    for prompt in prompts:
        found = file.answers.get(prompt.id)
        if found is None:
            missing.append(prompt.id)
            continue
        if len(found.turns) != len(prompt.turns):
            raise AnswerFileError(
                shown,
                f"{len(found.turns)} answer turn(s) for prompt '{prompt.id}', which has {len(prompt.turns)} turn(s)",
                line=found.line,
                field=found.field,
            )
        tokens = found.output_tokens
        if tokens is None:
            tokens = sum(count_tokens(turn) for turn in found.turns)
        answers[prompt.id] = Answer(
            model=candidate, prompt_id=prompt.id, turns=found.turns, output_tokens=tokens, latency_s=0.0
        )
    if not answers:
        theirs = ", ".join(repr(key) for key in list(file.answers)[:3])
        ours = ", ".join(repr(prompt.id) for prompt in prompts[:3])
        raise AnswerFileError(
            shown,
            f"answers none of the {len(prompts)} prompts of the suites (its ids: {theirs}, …; the suites': {ours}, …)",
        )
    return answers, tuple(missing)
