"""Load prompt suites from JSONL files into `Prompt` records.

Three formats are read, each a JSONL file (one JSON object per line; blank lines are skipped):

``judge-arena`` — our own format, written by hand, so it is strict::

    {"id": "core-math-01", "category": "math", "turns": ["What is 2 + 2?"], "reference": ["4"]}

- ``id`` (string, required): unique within the file.
- ``category`` (string, required).
- ``turns`` (required): non-empty list of non-empty strings, the user turns in order.
- ``reference`` (optional): list of strings, exactly one per turn; an empty string means "no reference
  for this turn".
- Any other key is an error, so that a typo such as ``"refrence"`` cannot silently drop data.

``arena-hard`` — Arena-Hard-Auto's ``question.jsonl``: ``question_id`` (string), ``category``, optional
``cluster`` and ``turns`` (list of ``{"content": str}``). Arena-Hard v0.1 gives every question the same
``category``, so by default the ``cluster`` becomes the prompt's category (see ``arena_hard_category`` of
`load_suite`).

``mt-bench`` — MT-Bench's ``question.jsonl``: ``question_id`` (integer, turned into a string id),
``category``, ``turns`` (list of strings) and optional ``reference`` (list of strings, one per turn, some
empty).

References are what a judge template's reference variants show the judge (`judge.JudgeTemplate`). A suite keeps
them only for the categories it gives references in (`reference_categories` of `load_suite`): by default MT-Bench's
math, reasoning and coding for an mt-bench file, as MT-Bench's judge does, and every category otherwise.

The two third-party formats ignore unknown keys: their files are generated upstream and may grow new metadata.

Every problem in a file raises `SuiteError`, whose message names the file, the line and the field (the
latter two where they apply: an empty file has no line, invalid JSON no field)::

    suites/x.jsonl line 7: field 'turns': must not be empty
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from judge_arena.inputs import InputFileError, json_lines, json_type, read_text, record_error
from judge_arena.records import Prompt

SuiteFormat = Literal["judge-arena", "arena-hard", "mt-bench"]
"""The suite file formats `load_suite` understands."""

MT_BENCH_REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
"""The categories whose reference answers MT-Bench shows its judge (FastChat's `NEED_REF_CATS`)."""


class SuiteError(InputFileError):
    """A suite file that cannot be loaded; the message names the file and, where known, the line and field."""


class SuiteOptionError(ValueError):
    """An argument of `load_suite` that does not fit the suite file; `option` names it."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        super().__init__(reason)


@dataclass(frozen=True)
class Suite:
    """A loaded prompt suite."""

    name: str
    format: SuiteFormat
    """The format the file was read as (the detected one when loading with ``format="auto"``)."""
    prompts: tuple[Prompt, ...]


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


_Text = Annotated[str, AfterValidator(_non_blank)]


def _one_per_turn(value: list[str] | None, info: ValidationInfo) -> list[str] | None:
    turns = info.data.get("turns")
    # When `turns` itself was invalid it is absent here, and its own error is the one worth reporting.
    if value is not None and turns is not None and len(value) != len(turns):
        raise ValueError(f"must have one entry per turn ({len(turns)}), got {len(value)}")
    return value


class _JudgeArenaRecord(BaseModel):
    """One line of a judge-arena suite file."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: _Text = Field(description="Unique id of the prompt within the file, e.g. 'core-coding-01'.")
    category: _Text = Field(description="Category the prompt is reported under, e.g. 'coding'.")
    turns: list[_Text] = Field(min_length=1, description="The user turns of the conversation, in order.")
    reference: list[str] | None = Field(
        default=None, description="Reference answer per turn; an empty string when a turn has none."
    )

    _check_reference = field_validator("reference")(_one_per_turn)


class _ArenaHardTurn(BaseModel):
    """One user turn of an Arena-Hard-Auto question."""

    model_config = ConfigDict(strict=True, frozen=True)

    content: _Text = Field(description="The text of the user turn.")


class _ArenaHardRecord(BaseModel):
    """One line of an Arena-Hard-Auto ``question.jsonl``."""

    model_config = ConfigDict(strict=True, frozen=True)

    question_id: _Text = Field(description="Unique id of the question, a hex string in v0.1.")
    category: _Text = Field(description="The benchmark's category, the same ('arena-hard-v0.1') for all of v0.1.")
    cluster: _Text | None = Field(default=None, description="The topic cluster the question was sampled from.")
    turns: list[_ArenaHardTurn] = Field(min_length=1, description="The user turns of the conversation, in order.")


class _MTBenchRecord(BaseModel):
    """One line of MT-Bench's ``question.jsonl``."""

    model_config = ConfigDict(strict=True, frozen=True)

    question_id: int = Field(description="Unique numeric id of the question (81–160 in MT-Bench).")
    category: _Text = Field(description="One of MT-Bench's eight categories, e.g. 'writing'.")
    turns: list[_Text] = Field(min_length=1, description="The user turns of the conversation, in order.")
    reference: list[str] | None = Field(
        default=None, description="Reference answer per turn; an empty string when a turn has none."
    )

    _check_reference = field_validator("reference")(_one_per_turn)


_Record = _JudgeArenaRecord | _ArenaHardRecord | _MTBenchRecord

_MODELS: dict[SuiteFormat, type[_Record]] = {
    "judge-arena": _JudgeArenaRecord,
    "arena-hard": _ArenaHardRecord,
    "mt-bench": _MTBenchRecord,
}

_ID_FIELDS: dict[SuiteFormat, str] = {
    "judge-arena": "id",
    "arena-hard": "question_id",
    "mt-bench": "question_id",
}


def load_suite(
    path: str | Path,
    format: SuiteFormat | Literal["auto"] = "auto",
    *,
    name: str | None = None,
    limit: int | None = None,
    arena_hard_category: Literal["cluster", "category"] = "cluster",
    reference_categories: Collection[str] | None = None,
    references: Mapping[str, tuple[str, ...]] | None = None,
) -> Suite:
    """Read and validate a whole suite file and return its prompts in file order.

    Args:
        path: The JSONL file; it appears in error messages as given.
        format: The file's format, or "auto" to detect it from the first record's keys: ``id`` means
            judge-arena; ``question_id`` means arena-hard when the turns are objects, mt-bench otherwise.
        name: The suite name, stored on every prompt; defaults to the file's stem, or to the folder's name
            for a file called ``question.jsonl`` (the layout of Arena-Hard-Auto and MT-Bench data).
        limit: Keep only the first ``limit`` prompts. The whole file is still validated.
        arena_hard_category: For arena-hard files, which field becomes the prompt's category; "cluster" falls
            back to ``category`` for records that have no cluster.
        reference_categories: The categories whose prompts keep their references; the others' are dropped.
            None: `MT_BENCH_REFERENCE_CATEGORIES` for an mt-bench file, every category otherwise.
        references: Reference answers by prompt id (one per turn) that replace the file's own, e.g. MT-Bench's
            GPT-4 reference answers; a prompt they leave out keeps its own.

    Raises:
        SuiteError: The file cannot be read (missing, a folder, a symlink loop), is not valid UTF-8, has a line
            that is not a valid record (or is nested too deeply to read), a duplicate id, or no records at all.
        SuiteOptionError: ``reference_categories`` names a category no prompt has, or a prompt's `references` have
            another number of turns than the prompt.
        ValueError: ``limit`` is negative.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    path = Path(path)
    shown = str(path)
    if name is None:
        name = path.parent.name if path.name == "question.jsonl" else path.stem
    objects = _read_objects(path, shown)
    if not objects:
        raise SuiteError(shown, "no records (the file is empty or has only blank lines)")
    resolved = _detect_format(shown, *objects[0]) if format == "auto" else format
    model = _MODELS[resolved]
    id_field = _ID_FIELDS[resolved]
    first_line_of: dict[str, int] = {}
    prompts: list[Prompt] = []
    for line, obj in objects:
        try:
            record = model.model_validate(obj)
        except ValidationError as exc:
            raise record_error(SuiteError, shown, line, exc.errors()[0], model) from None
        prompt = _to_prompt(record, name, arena_hard_category)
        if prompt.id in first_line_of:
            raise SuiteError(
                shown,
                f"duplicate id {prompt.id!r} (first used on line {first_line_of[prompt.id]})",
                line=line,
                field=id_field,
            )
        first_line_of[prompt.id] = line
        prompts.append(prompt)
    for i, prompt in enumerate(prompts):
        given = (references or {}).get(prompt.id)
        if given is not None:
            if len(given) != len(prompt.turns):
                reason = f"{len(given)} reference turn(s) for prompt '{prompt.id}', which has {len(prompt.turns)}"
                raise SuiteOptionError("references", reason)
            prompts[i] = replace(prompt, references=given)
    if reference_categories is not None:
        unknown = sorted(set(reference_categories) - {p.category for p in prompts})
        if unknown:
            raise SuiteOptionError("reference_categories", f"{unknown} not among the categories of {shown}")
    elif resolved == "mt-bench":
        reference_categories = MT_BENCH_REFERENCE_CATEGORIES
    if reference_categories is not None:
        kept = set(reference_categories)
        prompts = [p if p.category in kept else replace(p, references=()) for p in prompts]
    return Suite(name=name, format=resolved, prompts=tuple(prompts[:limit]))


def _read_objects(path: Path, shown: str) -> list[tuple[int, dict[str, Any]]]:
    objects: list[tuple[int, dict[str, Any]]] = []
    for number, obj in json_lines(read_text(path, shown, SuiteError), shown, SuiteError):
        if not isinstance(obj, dict):
            raise SuiteError(shown, f"must be a JSON object, got {json_type(obj)}", line=number)
        objects.append((number, obj))
    return objects


def _detect_format(shown: str, line: int, obj: dict[str, Any]) -> SuiteFormat:
    if "id" in obj:
        return "judge-arena"
    if "question_id" in obj:
        turns = obj.get("turns")
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            return "arena-hard"
        return "mt-bench"
    raise SuiteError(
        shown,
        f"cannot detect the suite format from keys {sorted(obj)}: expected 'id' (judge-arena) or "
        "'question_id' (arena-hard, mt-bench); pass format= explicitly",
        line=line,
    )


def _to_prompt(record: _Record, suite: str, arena_hard_category: Literal["cluster", "category"]) -> Prompt:
    match record:
        case _JudgeArenaRecord():
            return Prompt(
                id=record.id,
                category=record.category,
                turns=tuple(record.turns),
                suite=suite,
                references=tuple(record.reference or ()),
            )
        case _ArenaHardRecord():
            category = record.category
            if arena_hard_category == "cluster" and record.cluster is not None:
                category = record.cluster
            return Prompt(
                id=record.question_id,
                category=category,
                turns=tuple(turn.content for turn in record.turns),
                suite=suite,
            )
        case _MTBenchRecord():
            return Prompt(
                id=str(record.question_id),
                category=record.category,
                turns=tuple(record.turns),
                suite=suite,
                references=tuple(record.reference or ()),
            )
