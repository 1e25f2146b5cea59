"""The run folder: its files and their columns (one definition), the writer and the typed reader.

A run folder holds:

- ``leaderboard.csv`` (and the same rows in ``leaderboard.json``): one row per (judge, view, model). A *view* is
  named by its normalization and its style control together (``raw``, ``plain``, ``raw+sc``); ``normalization``
  and ``style_control`` (``none``, ``length``, ``markdown`` or ``both``) say the same apart.
- ``categories.csv``: one row per (judge, view, category, model); a category without a board has one row with a
  ``note`` and no model.
- ``battles.csv``: one row per judged game, as shown to the judge; ``defence_flags`` holds the defence's flags
  joined with ``;``, or ``none``.
- ``answers.jsonl``: one candidate answer a line, with the candidate's ``revision`` and, per turn, what the server
  said it served (``served_models``, ``system_fingerprints``); ``failures.csv``: the work items that failed;
  ``summary.json``: counts, calls, budget, per-view notes, the prompts an answer file does not answer
  (``unanswered``) and ``served_changes`` (candidates without a revision whose server now reports another model or
  fingerprint than for their cached answers).
- ``style.csv``: each candidate's mean style features per answer (tokens, headers, list items, bold spans), as
  Arena-Hard-Auto defines them; runs written before it have none (read as an empty table).
- ``judgments.jsonl``: one judged game a line, as battles.csv with the judge's full reply (and its answer to the
  re-ask), whether it was re-asked or left unparsed, and the defence's flags as a list (`JUDGMENT_FIELDS`).
- ``prompts.jsonl``: one prompt a line: its id, suite, category and user turns (`PROMPT_FIELDS`).
- ``report.html``: the same run as one self-contained page (`judge_arena.report.html`).
- ``manifest.json``: what the run was (`MANIFEST_KEYS`): the resolved config and its hash, the suites' and
  templates' hashes, each model's string, ``api_base`` and params, package versions, the config repository's git
  revision, seeds, start and end time (UTC) and per-model call statistics. Runs written before it have none.

Column names are plain identifiers. A value that is absent on purpose is written out (``none``); an empty cell is
a missing value: the label and winner of an unparsed verdict, the note of a category that has a board, the model
columns of one that has none.

`write_run` writes a folder under a hidden staging name and renames it when complete, so a report is never half
there; `load_run` reads one back as DataFrames with the dtypes of `COLUMNS`. Folders are named
``<name>-<date>-<time>``; `resolve_run` finds one from a path, a folder name or ``latest`` / ``latest:NAME``, and
`list_runs` lists the runs under an output folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import math
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Literal

import orjson
import pandas as pd

from judge_arena.inputs import InputFileError, json_lines, parse_json, read_csv, read_text
from judge_arena.rating import LeaderboardRow
from judge_arena.records import Answer

Kind = Literal["text", "number", "count", "optional text", "optional number", "optional count"]
"""What a column holds. Text is read as pandas' "string" dtype, a number as float64, a count as int64 (Int64 when
optional). An optional column may have empty cells (missing values); a text one reads them as <NA>."""

NO_STYLE_CONTROL = "none"
"""`style_control` of a view fitted without style covariates."""

NO_FLAGS = "none"
"""`defence_flags` of a battle the defence did not flag."""

_KIND_OF_FIELD: Mapping[str, Kind] = {
    "str": "text",
    "float": "number",
    "float | None": "optional number",
    "int": "count",
}
_BOARD_ROW: dict[str, Kind] = {f.name: _KIND_OF_FIELD[str(f.type)] for f in fields(LeaderboardRow)}
_VIEW: dict[str, Kind] = {"judge": "text", "view": "text", "normalization": "text", "style_control": "text"}
_OPTIONAL: Mapping[Kind, Kind] = {"text": "optional text", "number": "optional number", "count": "optional count"}

COLUMNS: Mapping[str, Mapping[str, Kind]] = {
    "leaderboard.csv": {**_VIEW, **_BOARD_ROW},
    "categories.csv": {
        **_VIEW,
        "category": "text",
        "category_battles": "count",
        "note": "optional text",
        **{name: _OPTIONAL.get(kind, kind) for name, kind in _BOARD_ROW.items()},
    },
    "battles.csv": {
        "prompt_id": "text",
        "suite": "optional text",
        "turn": "optional count",
        "category": "text",
        "judge": "text",
        "normalization": "text",
        "model_a": "text",
        "model_b": "text",
        "label": "optional text",
        "winner": "optional text",
        "weight": "number",
        "defence_flags": "text",
    },
    "failures.csv": {"stage": "text", "item": "text", "reason": "text"},
    "style.csv": {
        "model": "text",
        "answers": "count",
        "tokens": "number",
        "headers": "number",
        "lists": "number",
        "bold": "number",
    },
}
"""Every CSV file of a run folder and its columns, in order. `categories.csv`'s `category_battles` counts the
category's games; its `battles` (from the board's rows) counts one model's games, as in `leaderboard.csv`.
`battles.csv`'s `suite` and `turn` (the verdict's turn: the conversation's last) are missing in older runs.
`style.csv` has one row per candidate: its answers and their mean style features per answer (`style.ModelStyle`)."""

ADDED_COLUMNS: Mapping[str, tuple[str, ...]] = {"battles.csv": ("suite", "turn")}
"""Columns added after run folders were first written: a file without them reads them as missing values."""

MANIFEST_KEYS = (
    "config",
    "config_hash",
    "suites",
    "templates",
    "models",
    "packages",
    "git_revision",
    "seeds",
    "started_at",
    "finished_at",
    "calls",
)
"""Keys of ``manifest.json``: `config` (the resolved config, as JSON), `config_hash` (SHA-256 of it, keys
sorted), `suites` and `templates` (path → SHA-256 of the file), `models` (name → model string, ``api_base``,
params, the *name* of its key's environment variable, for a candidate its `revision`, and `served`: what the server
said it served (`model`, `system_fingerprint`) for the model's completions, with how many came from the cache
(``cached``) and were made in this run (``made``)), `packages` (name → installed version or None),
`git_revision` (HEAD of the config's repository, or None), `seeds`, `started_at` and `finished_at` (UTC, ISO 8601),
and `calls` (per model: calls made, cached (shared and recovered included) and failed, input and output tokens
of the calls made, cost in USD (None without a budget) and, for a candidate, its answers; retries are counted for
the whole run only, in ``summary.json``)."""

LATEST = "latest"
"""The run id of the newest run under an output folder; ``latest:NAME`` is the newest run named NAME."""

ANSWER_FIELDS = tuple(f.name for f in fields(Answer))
"""Keys of each line of ``answers.jsonl`` (the columns of `RunFolder.answers`)."""

JSONL_FIELDS: Mapping[str, Mapping[str, str]] = {
    "judgments.jsonl": {
        "prompt_id": "string",
        "category": "string",
        "judge": "string",
        "normalization": "string",
        "model_a": "string",
        "model_b": "string",
        "label": "string",
        "winner": "string",
        "weight": "float64",
        "reasked": "bool",
        "unparsed": "bool",
        "defence_flags": "object",
        "reply": "string",
        "reask_reply": "string",
    },
    "prompts.jsonl": {"prompt_id": "string", "suite": "string", "category": "string", "turns": "object"},
}
"""Keys of each line of the run folder's JSON Lines tables besides answers.jsonl, and their pandas dtypes (an
"object" key holds a list of strings, read as a tuple). In ``judgments.jsonl``, ``label``, ``winner`` and
``reask_reply`` are null when there is none, and ``defence_flags`` leaves out ``reasked`` and ``unparsed``. A run
folder written before these files existed reads them as empty tables."""

STALE_AFTER_S = 600.0
"""A staging folder left this long by a process that no longer holds its lock is removed by the next run of the
same name (a kill while writing the report leaves one behind)."""

_LOCK = ".writing"
_DTYPES: Mapping[Kind, str] = {
    "text": "string",
    "optional text": "string",
    "number": "float64",
    "optional number": "float64",
    "count": "int64",
    "optional count": "Int64",
}


class RunFolderError(InputFileError):
    """A run folder, or one of its files, that cannot be read; the message names the file, line and field."""


@dataclass(frozen=True, eq=False)
class RunFolder:
    """A run folder's contents as typed tables; `COLUMNS` gives each table's columns and kinds.

    The CSV tables are indexed by their line in the file (index name ``line``), so a check on a row can name it.
    """

    boards: pd.DataFrame
    """``leaderboard.csv``: every view's leaderboard, one row per (judge, view, model)."""
    categories: pd.DataFrame
    """``categories.csv``: every view's per-category leaderboards."""
    battles: pd.DataFrame
    """``battles.csv``: one row per judged game."""
    answers: pd.DataFrame
    """``answers.jsonl``: one row per candidate answer; ``turns`` holds a tuple of strings."""
    failures: pd.DataFrame
    """``failures.csv``: stage, item and reason of each failed work item."""
    summary: Mapping[str, Any]
    """``summary.json``."""
    judgments: pd.DataFrame = field(default_factory=lambda: empty_jsonl_table("judgments.jsonl"))
    """``judgments.jsonl``: one row per judged game with the judge's replies."""
    prompts: pd.DataFrame = field(default_factory=lambda: empty_jsonl_table("prompts.jsonl"))
    """``prompts.jsonl``: one row per prompt with its user turns."""
    manifest: Mapping[str, Any] = field(default_factory=dict)
    """``manifest.json`` (`MANIFEST_KEYS`); empty for a run written before manifests."""
    style: pd.DataFrame = field(default_factory=lambda: table("style.csv", []))
    """``style.csv``: each candidate's mean style features per answer; empty for a run written before it."""

    @property
    def revisions(self) -> dict[str, str]:
        """Each candidate's `revision`, from the manifest, for the candidates that have one (none for a run written
        before manifests)."""
        return manifest_revisions(self.manifest)

    def board(
        self, *, judge: str | None = None, normalization: str | None = None, style_control: str | None = None
    ) -> pd.DataFrame:
        """The rows of the one view that matches every selector given; see `select_view`."""
        return select_view(
            self.boards, "leaderboard.csv", judge=judge, normalization=normalization, style_control=style_control
        )[1]


# ---------------------------------------------------------------------------------------------------- reading


def load_run(path: Path) -> RunFolder:
    """Read a run folder written by `judge-arena run` (or `write_run`) into typed tables.

    Raises `RunFolderError` naming the file (and the line and field) when a file is missing or does not have the
    run folder's columns and values.
    """
    if not path.is_dir():
        raise RunFolderError(str(path), "not a run folder" if path.exists() else "no such folder")
    summary = read_summary(path)
    return RunFolder(
        boards=read_table(path / "leaderboard.csv"),
        categories=read_table(path / "categories.csv"),
        battles=read_table(path / "battles.csv"),
        answers=_read_answers(path / "answers.jsonl"),
        failures=read_table(path / "failures.csv"),
        summary=summary,
        judgments=_read_jsonl_table(path / "judgments.jsonl"),
        prompts=_read_jsonl_table(path / "prompts.jsonl"),
        manifest=read_manifest(path),
        style=read_table(path / "style.csv") if (path / "style.csv").exists() else table("style.csv", []),
    )


def _json_object(path: Path) -> dict[str, Any]:
    shown = str(path)
    value = parse_json(read_text(path, shown, RunFolderError), shown, RunFolderError)
    if not isinstance(value, dict):
        raise RunFolderError(shown, "must be a JSON object")
    return value


def read_summary(folder: Path) -> dict[str, Any]:
    """The run folder's ``summary.json`` alone."""
    return _json_object(folder / "summary.json")


def read_manifest(folder: Path) -> Mapping[str, Any]:
    """The run folder's ``manifest.json`` (`MANIFEST_KEYS`) alone; empty for a run written before manifests."""
    path = folder / "manifest.json"
    return _json_object(path) if path.exists() else {}


def manifest_revisions(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Candidate name → `revision` of the manifest's models that have one."""
    models = manifest.get("models") or {}
    return {
        name: str(model["revision"])
        for name, model in models.items()
        if isinstance(model, dict) and model.get("revision") is not None
    }


@dataclass(frozen=True)
class RunEntry:
    """One run folder under an output folder, as `judge-arena runs` lists it."""

    id: str
    """The folder's name: the run id commands accept."""
    path: Path
    name: str
    """The config's run name."""
    time: str
    """When the run finished (UTC, from its manifest), else the local time in its folder name."""
    models: tuple[str, ...]
    """The candidates."""
    revisions: Mapping[str, str]
    """The candidates' revisions (`manifest_revisions`), for those that have one; empty for a run written before
    manifests."""
    status: str
    """"ok", "failures" (some work items failed) or "budget" (stopped at its budget)."""
    cost_usd: float | None
    """What the run's calls cost, when known (the manifest's total, else the budget's spend)."""


_FOLDER_NAME = re.compile(r"(?P<name>.+)-(?P<date>\d{8})-(?P<time>\d{6})(?:-(?P<suffix>\d+))?")


def list_runs(root: Path, name: str | None = None) -> list[RunEntry]:
    """The run folders directly under `root` (those named NAME when given), oldest first.

    A run folder is a folder named ``<name>-<date>-<time>[-n]`` holding a ``summary.json``; hidden staging folders
    and symbolic links (such as a ``last-good`` link a CI job keeps) are not listed. A folder that cannot be read
    raises `RunFolderError`.
    """
    entries: list[tuple[tuple[str, str, int], RunEntry]] = []
    for path in root.iterdir() if root.is_dir() else ():
        match = _FOLDER_NAME.fullmatch(path.name)
        if match is None or path.is_symlink() or not (path / "summary.json").is_file():
            continue
        entry = _entry(path, match)
        if name is None or entry.name == name:
            entries.append(((match["date"], match["time"], int(match["suffix"] or 1)), entry))
    return [entry for _, entry in sorted(entries, key=lambda pair: pair[0])]


def resolve_run(spec: str | Path, root: Path) -> Path:
    """The run folder `spec` names: an existing path (returned as it is), a run id (a folder name under `root`), or
    ``latest`` / ``latest:NAME`` (the newest run under `root`, of that run name).

    Raises `RunFolderError` when nothing matches, naming what was looked for.
    """
    text = str(spec)
    if text == LATEST or text.startswith(f"{LATEST}:"):
        name = text.partition(":")[2] or None
        runs = list_runs(root, name)
        if not runs:
            what = f"no run named {name!r}" if name else "no run"
            raise RunFolderError(str(root), f"{what} to resolve {text!r}")
        return runs[-1].path
    path = Path(spec)
    if path.exists():
        return path
    if (root / text).is_dir() and "/" not in text:
        return root / text
    raise RunFolderError(text, f"no such run folder (nor a run id under {root}, nor 'latest' or 'latest:NAME')")


def _entry(path: Path, match: re.Match[str]) -> RunEntry:
    summary = read_summary(path)
    manifest = read_manifest(path)
    budget = summary.get("budget") or {}
    status = "budget" if budget.get("reached") else "failures" if summary.get("failures") else "ok"
    costs = [calls.get("cost_usd") for calls in (manifest.get("calls") or {}).values()]
    known = [cost for cost in costs if cost is not None]
    cost = sum(known) if known else budget.get("spent_usd")
    date, clock = match["date"], match["time"]
    return RunEntry(
        id=path.name,
        path=path,
        name=str(summary.get("name", match["name"])),
        time=manifest.get("finished_at") or f"{date[:4]}-{date[4:6]}-{date[6:]} {clock[:2]}:{clock[2:4]}:{clock[4:]}",
        models=tuple(summary.get("candidates", ())),
        revisions=manifest_revisions(manifest),
        status=status,
        cost_usd=None if cost is None else float(cost),
    )


def read_table(path: Path, file: str | None = None, *, error: type[InputFileError] = RunFolderError) -> pd.DataFrame:
    """A CSV file holding one of a run folder's tables (`file`, a key of `COLUMNS`; default: the path's name),
    checked against its columns and typed; indexed by line.

    Columns beyond the table's are kept as text. `error` is the exception raised (a caller reading the file as
    its own input names its own error type).
    """
    columns = COLUMNS[file or path.name]
    added = ADDED_COLUMNS.get(file or path.name, ())
    shown = str(path)
    required = [name for name in columns if name not in added]
    header, rows = read_csv(read_text(path, shown, error), shown, required, error)
    kinds: dict[str, Kind] = {name: columns.get(name, "text") for name in header}
    values: dict[str, list[object]] = {name: [] for name in header}
    for line, row in rows:
        for name, cell in row.items():
            values[name].append(_value(cell, kinds[name], shown, line, name, error))
    index = pd.Index([line for line, _ in rows], name="line", dtype="int64")
    frame = pd.DataFrame({name: pd.Series(values[name], index=index, dtype=_DTYPES[kinds[name]]) for name in header})
    for name in added:
        if name not in header:
            frame[name] = pd.Series(None, index=index, dtype=_DTYPES[columns[name]])
    return frame[[*columns, *(name for name in header if name not in columns)]]


def select_view(
    boards: pd.DataFrame,
    shown: str,
    *,
    judge: str | None = None,
    normalization: str | None = None,
    style_control: str | None = None,
    error: type[InputFileError] = RunFolderError,
) -> tuple[str, pd.DataFrame]:
    """The name (``judge/view``) and rows of the one view of `boards` that every given selector matches.

    A selector left None matches any value. Raises `error` naming `shown` when no view or several match, listing
    the views there are.
    """
    keys = boards[["judge", "view", "normalization", "style_control"]].drop_duplicates()
    wanted = {"judge": judge, "normalization": normalization, "style_control": style_control}
    chosen = keys
    for column, value in wanted.items():
        if value is not None:
            chosen = chosen[chosen[column] == value]
    available = ", ".join(f"{j}/{v}" for j, v in zip(keys["judge"], keys["view"], strict=True)) or "none"
    if keys.empty:
        raise error(shown, "no leaderboard: no view of the run could be rated (summary.json says why)")
    if chosen.empty:
        given = ", ".join(f"{column}={value!r}" for column, value in wanted.items() if value is not None)
        raise error(shown, f"no view with {given}; views (judge/view): {available}")
    if len(chosen) > 1:
        controls = ", ".join(sorted(set(keys["style_control"])))
        raise error(
            shown,
            f"{len(chosen)} views match; choose a judge, a normalization and a style control ({controls}) among: "
            f"{available}",
        )
    judge_name, view = str(chosen["judge"].iloc[0]), str(chosen["view"].iloc[0])
    rows = boards[(boards["judge"] == judge_name) & (boards["view"] == view)]
    return f"{judge_name}/{view}", rows


def _value(cell: str, kind: Kind, shown: str, line: int, field: str, error: type[InputFileError]) -> object:
    optional = kind.startswith("optional")
    if kind.endswith("text"):
        return None if optional and cell == "" else cell
    if cell.strip() == "":
        if optional:
            return None
        raise error(shown, "missing value", line=line, field=field)
    try:
        number = float(cell)
    except ValueError:
        raise error(shown, f"must be a number, got {cell!r}", line=line, field=field) from None
    if kind.endswith("count"):
        if not number.is_integer():
            raise error(shown, f"must be a whole number, got {cell!r}", line=line, field=field)
        return int(number)
    if math.isnan(number):
        raise error(shown, f"must be a number, got {cell!r}", line=line, field=field)
    return number


def _read_answers(path: Path) -> pd.DataFrame:
    dtypes = {"model": "string", "prompt_id": "string", "turns": "object", "output_tokens": "int64"}
    dtypes |= {"latency_s": "float64", "cut_turns": "int64", "revision": "string"}
    dtypes |= {"served_models": "object", "system_fingerprints": "object"}
    # Folders written before answers recorded their cut turns (revision, served model) lack the key: none was cut
    # (nothing recorded).
    defaults = {"cut_turns": 0, "revision": None, "served_models": (), "system_fingerprints": ()}
    return _read_jsonl(path, dtypes, defaults=defaults)


def empty_jsonl_table(file: str) -> pd.DataFrame:
    """One of `JSONL_FIELDS`' tables with no rows (its columns and dtypes)."""
    return pd.DataFrame(columns=list(JSONL_FIELDS[file])).astype(JSONL_FIELDS[file])


def _read_jsonl_table(path: Path) -> pd.DataFrame:
    return _read_jsonl(path, JSONL_FIELDS[path.name]) if path.exists() else empty_jsonl_table(path.name)


def _read_jsonl(path: Path, dtypes: Mapping[str, str], defaults: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One object a line with the keys of `dtypes` (those of `defaults` may be missing: their default is read); a
    list value is read as a tuple."""
    shown = str(path)
    defaults = defaults or {}
    rows = []
    for number, record in json_lines(read_text(path, shown, RunFolderError), shown, RunFolderError):
        if not isinstance(record, dict) or not set(dtypes) - defaults.keys() <= record.keys() <= set(dtypes):
            raise RunFolderError(shown, f"must be an object with keys {', '.join(dtypes)}", line=number)
        record = {**defaults, **record}
        rows.append({key: tuple(value) if isinstance(value, list) else value for key, value in record.items()})
    return pd.DataFrame(rows, columns=list(dtypes)).astype(dict(dtypes))


# ---------------------------------------------------------------------------------------------------- writing


def table(file: str, frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The frames stacked into one of `COLUMNS`' tables: its columns in order, with their dtypes; a column a frame
    lacks is missing there, a column the table does not have is left out."""
    columns = COLUMNS[file]
    frames = list(frames)
    stacked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
    return stacked.reindex(columns=list(columns)).astype({name: _DTYPES[kind] for name, kind in columns.items()})


def write_run(run: RunFolder, root: Path, name: str) -> Path:
    """Write a run folder under `root`, named `<name>-<date>-<time>` (with `-2`, `-3`, … if taken); return it.

    The tables must have exactly the columns of `COLUMNS` (and `ANSWER_FIELDS`), in that order. The folder is
    written as a hidden staging folder and renamed when complete, so it is never seen half-written; staging
    folders of earlier runs of the same name that were killed while writing theirs are removed first.
    """
    for file, frame in (
        ("leaderboard.csv", run.boards),
        ("categories.csv", run.categories),
        ("battles.csv", run.battles),
        ("failures.csv", run.failures),
        ("style.csv", run.style),
    ):
        if list(frame.columns) != list(COLUMNS[file]):
            raise ValueError(f"{file}: columns {list(frame.columns)}, expected {list(COLUMNS[file])}")
    for file, frame, expected in (
        ("answers.jsonl", run.answers, ANSWER_FIELDS),
        ("judgments.jsonl", run.judgments, JSONL_FIELDS["judgments.jsonl"]),
        ("prompts.jsonl", run.prompts, JSONL_FIELDS["prompts.jsonl"]),
    ):
        if list(frame.columns) != list(expected):
            raise ValueError(f"{file}: columns {list(frame.columns)}, expected {list(expected)}")
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(root, name)
    staging, folder = _staged_folder(root, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    # A fresh staging folder is never stale, so no cleaner can take the lock before this does.
    with _lock(staging, blocking=True):
        try:
            _write_files(run, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / _LOCK).unlink()
        staging.rename(folder)
    return folder


def _write_files(run: RunFolder, staging: Path) -> None:
    run.boards.to_csv(staging / "leaderboard.csv", index=False)
    (staging / "leaderboard.json").write_text(
        json.dumps(list(_records(run.boards)), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    run.categories.to_csv(staging / "categories.csv", index=False)
    run.battles.to_csv(staging / "battles.csv", index=False)
    for file, frame in (
        ("answers.jsonl", run.answers),
        ("judgments.jsonl", run.judgments),
        ("prompts.jsonl", run.prompts),
    ):
        with (staging / file).open("wb") as out:
            for record in _records(frame):
                out.write(_json_line(record))
    run.failures.to_csv(staging / "failures.csv", index=False)
    run.style.to_csv(staging / "style.csv", index=False)
    (staging / "summary.json").write_text(json.dumps(run.summary, indent=2), encoding="utf-8")
    if run.manifest:
        (staging / "manifest.json").write_text(json.dumps(run.manifest, indent=2), encoding="utf-8")


def remove_stale_staging(root: Path, name: str, *, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the staging folders of runs named `name` that nobody is writing; return the removed ones.

    A staging folder is stale when it is older than `stale_after_s` and its writer's lock is free (the lock dies
    with the process that held it): a report another process is writing right now is never touched.
    """
    pattern = re.compile(rf"\.{re.escape(name)}-\d{{8}}-\d{{6}}(-\d+)?\.partial")
    removed = []
    for staging in root.glob(f".{glob_escape(name)}-*.partial"):
        if not pattern.fullmatch(staging.name):
            continue
        # Another run may finish with it, or remove it, at any moment: a folder that has gone is not an error.
        with contextlib.suppress(FileNotFoundError):
            if time.time() - staging.stat().st_mtime < stale_after_s:
                continue
            with _lock(staging, blocking=False) as held:
                if held:
                    shutil.rmtree(staging)
                    removed.append(staging)
    return removed


@contextlib.contextmanager
def _lock(staging: Path, *, blocking: bool) -> Iterator[bool]:
    """Hold the staging folder's writer lock; yields False when another process holds it (non-blocking)."""
    descriptor = os.open(staging / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def _staged_folder(root: Path, base: str) -> tuple[Path, Path]:
    """A new staging folder and the free report name it will be renamed to (`base`, else `base-2`, `base-3`, …).

    Another run finishing in the same second may be choosing at the same moment: creating the staging folder is
    the atomic claim on a name, and the name is checked free only once claimed (the only process that could still
    take it is the one holding its staging folder).
    """
    for suffix in itertools.count(1):
        name = base if suffix == 1 else f"{base}-{suffix}"
        staging, folder = root / f".{name}.partial", root / name
        try:
            staging.mkdir()
        except FileExistsError:
            continue
        if not folder.exists():
            return staging, folder
        staging.rmdir()
    raise AssertionError("unreachable: itertools.count never ends")


_RECORDS_AT_ONCE = 4096
"""Rows converted to dicts at a time when a table is written as JSON lines (`_records`)."""


def _records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The rows as JSON-ready dicts, a missing value as None; converted `_RECORDS_AT_ONCE` rows at a time (a 100k-game
    run's judgments as dicts all at once took more memory than anything else in the run)."""
    names = [str(column) for column in frame.columns]
    for start in range(0, len(frame), _RECORDS_AT_ONCE):
        chunk = frame.iloc[start : start + _RECORDS_AT_ONCE]
        columns = []
        for _, column in chunk.items():
            values = column.astype(object).tolist()
            for missing in column.isna().to_numpy().nonzero()[0]:
                values[missing] = None
            columns.append(values)
        for row in zip(*columns, strict=True):
            yield dict(zip(names, row, strict=True))


def _json_line(record: dict[str, Any]) -> bytes:
    """A record as one line of JSON (UTF-8, tuples as lists); a float that is not finite, which JSON cannot hold,
    is written as null."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a lone surrogate, which UTF-8 cannot encode: escaped, as JSON allows
        return (json.dumps(record) + "\n").encode()
