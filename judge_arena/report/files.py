"""The run's report: its views, battles, judgments, answers, prompts, failures and summary as the tables of a run
folder, and the folder's report.html.

`judge_arena.runs` owns the folder's format and writes it; `judge_arena.report.html` renders the page from it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from judge_arena.arena import ArenaRun, served_changes
from judge_arena.config import CandidateConfig
from judge_arena.defence import enabled_canaries
from judge_arena.records import Answer, Battle, Prompt
from judge_arena.report.html import write_html_report
from judge_arena.report.quality import judge_quality
from judge_arena.runner import CallStats, ModelCalls
from judge_arena.runs import (
    ANSWER_FIELDS,
    JSONL_FIELDS,
    NO_FLAGS,
    NO_STYLE_CONTROL,
    RunFolder,
    empty_jsonl_table,
    table,
    write_run,
)
from judge_arena.style import style_by_model
from judge_arena.views import BATTLE_COLUMNS, View, battles_frame, canary_warnings, identical_candidates


def _view_columns(view: View) -> dict[str, str]:
    return {
        "judge": view.judge,
        "view": view.label,
        "normalization": view.normalization,
        "style_control": view.style or NO_STYLE_CONTROL,
    }


def leaderboard_frame(views: list[View]) -> pd.DataFrame:
    """All views' leaderboards in one long table: one row per (judge, view, model)."""
    frames = [view.board.to_frame().assign(**_view_columns(view)) for view in views if view.board is not None]
    return table("leaderboard.csv", frames)


def category_frame(views: list[View]) -> pd.DataFrame:
    """Every view's per-category leaderboards in one long table; a category without a board gets one noted row."""
    frames = []
    for view in views:
        for category, entry in view.by_category.items():
            frame = entry.board.to_frame() if entry.board is not None else pd.DataFrame([{}])
            frames.append(
                frame.assign(**_view_columns(view), category=category, category_battles=entry.battles, note=entry.note)
            )
    return table("categories.csv", frames)


def battles_table(battles: Sequence[Battle]) -> pd.DataFrame:
    """The battles as battles.csv holds them: the rating stage's table with the defence's flags."""
    frame = battles_frame(battles)
    frame["defence_flags"] = [";".join(b.flags) or NO_FLAGS for b in battles]
    return table("battles.csv", [frame])


_VERDICT_FLAGS = ("reasked", "unparsed")


def judgments_table(battles: Sequence[Battle], games: pd.DataFrame) -> pd.DataFrame:
    """The battles as judgments.jsonl holds them: each game (`games`, the battles as `battles_table` gives them)
    with the judge's replies and flags."""
    verdicts: dict[str, list[Any]] = {
        "reasked": ["reasked" in b.flags for b in battles],
        "unparsed": [b.label is None for b in battles],
        "defence_flags": [tuple(f for f in b.flags if f not in _VERDICT_FLAGS) for b in battles],
        "reply": [b.replies[0] if b.replies else "" for b in battles],
        "reask_reply": [b.replies[1] if len(b.replies) > 1 else None for b in battles],
    }
    fields = JSONL_FIELDS["judgments.jsonl"]
    shown = [name for name in fields if name not in verdicts]
    return games[shown].assign(**verdicts).astype(fields)


def answers_table(answers: Sequence[Answer]) -> pd.DataFrame:
    """The answers as answers.jsonl holds them (a column per field, read without copying the records)."""
    return pd.DataFrame(
        {name: [getattr(a, name) for a in answers] for name in ANSWER_FIELDS}, columns=list(ANSWER_FIELDS)
    )


def prompts_table(prompts: Sequence[Prompt]) -> pd.DataFrame:
    """The prompts as prompts.jsonl holds them."""
    rows = [{"prompt_id": p.id, "suite": p.suite, "category": p.category, "turns": p.turns} for p in prompts]
    fields = JSONL_FIELDS["prompts.jsonl"]
    return pd.DataFrame(rows, columns=list(fields)).astype(fields)


def summary(run: ArenaRun, views: list[View], quality: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's counts, call statistics and per-view notes, as written to summary.json (`quality`: the run's
    `judge_quality`, when measured already)."""
    config = run.inputs.config
    stats = run.stats
    flagged = Counter(
        kind for b in run.battles if b.flags for kind in {f.partition(":")[0] for f in b.flags if ":" in f}
    )
    return {
        "name": config.name,
        "prompts": len(run.inputs.prompts),
        "candidates": [c.name for c in config.candidates],
        "judges": {j.name: run.inputs.templates[j.name].fingerprint for j in config.judges},
        "normalizations": config.normalizations,
        "pairing": config.pairing.model_dump(),
        "rating": config.rating.model_dump(mode="json"),
        "answers": len(run.answers),
        "battles": len(run.battles),
        "calls": {
            "made": stats.made,
            "cached": stats.cached,
            "shared": stats.shared,
            "recovered": stats.recovered,
            "failed": stats.failed,
            "retries": dict(stats.retries),
        },
        "failures": len(run.failures),
        "budget": None
        if stats.max_usd is None
        else {
            "max_usd": stats.max_usd,
            "spent_usd": round(stats.spent_usd, 6),
            "reached": stats.refused > 0,
            "refused_calls": stats.refused,
        },
        "defence": {j.name: j.defence for j in config.judges},
        "canaries": list(enabled_canaries(config.canaries)),
        "canary_problems": canary_warnings(config, views),
        "flagged_battles": {kind: flagged[kind] for kind in ("neutralized", "injection")},
        "judge_quality": judge_quality(run.battles) if quality is None else quality,
        "identical_candidates": identical_candidates(run.answers),
        "unanswered": {name: list(ids) for name, ids in run.inputs.unanswered.items()},
        "served_changes": served_changes(run),
        "answers_cut_at_max_tokens": {
            c.name: sum(a.cut_turns > 0 for a in run.answers if a.model == c.name) for c in config.candidates
        },
        "views": views_summary(views),
        "elapsed_s": round(run.elapsed_s, 3),
    }


def views_summary(views: list[View]) -> list[dict[str, Any]]:
    """Each view's coefficients, counts and notes, as summary.json's "views" holds them."""
    return [
        {
            "judge": v.judge,
            "view": v.label,
            "normalization": v.normalization,
            "style_control": v.style or NO_STYLE_CONTROL,
            "coefficients": [asdict(c) for c in v.board.coefficients] if v.board else [],
            "games": v.games,
            "unparsed": v.unparsed,
            "note": v.note,
            "note_without_self": v.note_without_self,
        }
        for v in views
    ]


PACKAGES = ("judge-arena", "litellm", "openai", "anthropic")
"""Packages whose installed versions the manifest records."""


def manifest(run: ArenaRun, config_path: Path | None = None, *, finished: datetime | None = None) -> dict[str, Any]:
    """What the run was, as written to manifest.json (`judge_arena.runs.MANIFEST_KEYS` describes each key).

    `config_path` is the config file, whose repository's git revision is recorded (None when it is not in a git
    repository, or not given). The start time is the end time less the run's elapsed time. Only the *name* of
    each key's environment variable is recorded, never a key.
    """
    config = run.inputs.config
    resolved = config.model_dump(mode="json")
    finished = finished or datetime.now(UTC)
    models = [*config.candidates, *config.judges]
    answers = {c.name: [a for a in run.answers if a.model == c.name] for c in config.candidates}
    return {
        "config": resolved,
        "config_hash": _sha256(json.dumps(resolved, sort_keys=True).encode()),
        "suites": {
            str(path): _file_hash(path) for path in [*(s.path for s in config.suites), *filter(None, [config.votes])]
        },
        "templates": {str(j.template): _file_hash(j.template) for j in config.judges},
        "models": {
            m.name: {
                "model": m.model,
                "api_base": m.api_base,
                "params": m.params,
                "api_key_env": m.api_key_env,
                **({"revision": m.revision} if isinstance(m, CandidateConfig) else {}),
                "served": _served(run.stats, m.name),
            }
            for m in models
        },
        "packages": {name: _version(name) for name in PACKAGES},
        "git_revision": None
        if config_path is None
        else _git_revision(config_path if config_path.is_dir() else config_path.parent),
        "seeds": {
            "rating": config.rating.seed,
            **{m.name: m.params["seed"] for m in models if "seed" in m.params},
        },
        "started_at": (finished - timedelta(seconds=run.elapsed_s)).isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        # Retries are counted per run only (summary.json's "calls"); cost only with a budget.
        "calls": {
            m.name: {
                **asdict(run.stats.by_model.get(m.name, ModelCalls())),
                "cost_usd": round(run.stats.by_model[m.name].cost_usd, 6)
                if config.budget is not None and m.name in run.stats.by_model
                else None,
                "answers": len(answers[m.name]) if m.name in answers else None,
            }
            for m in models
        },
    }


def _served(stats: CallStats, name: str) -> list[dict[str, Any]]:
    """What the server said it served for the model's completions of this run: cached ones and ones made now."""
    before, now = stats.served_before.get(name, Counter()), stats.served_now.get(name, Counter())
    return [
        {"model": served.model, "system_fingerprint": served.fingerprint, "cached": before[served], "made": now[served]}
        for served in sorted(before.keys() | now.keys(), key=str)
    ]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_hash(path: Path) -> str:
    return _sha256(path.read_bytes())


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_revision(folder: Path) -> str | None:
    """HEAD of the git repository holding `folder`, or None (no repository, or no git)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


@dataclass(frozen=True)
class RunTables:
    """What the run folder holds that the ratings do not change: a large run builds it while its style-controlled
    views are fitted in its second process."""

    battles: pd.DataFrame
    judgments: pd.DataFrame
    answers: pd.DataFrame
    prompts: pd.DataFrame
    quality: dict[str, Any]
    """summary.json's `judge_quality`."""


def run_tables(run: ArenaRun) -> RunTables:
    """The run folder's tables that the ratings do not change."""
    battles = battles_table(run.battles)
    return RunTables(
        battles=battles,
        judgments=judgments_table(run.battles, battles),
        answers=answers_table(run.answers),
        prompts=prompts_table(run.inputs.prompts),
        quality=judge_quality(run.battles),
    )


def run_folder(
    run: ArenaRun, views: list[View], config_path: Path | None = None, tables: RunTables | None = None
) -> RunFolder:
    """The run's report folder, as `write_report` writes it.

    `config_path`, the config file, lets the manifest record its repository's git revision; `tables`, when built
    already (`run_tables`), are not built again.
    """
    tables = tables or run_tables(run)
    return RunFolder(
        boards=leaderboard_frame(views),
        categories=category_frame(views),
        battles=tables.battles,
        answers=tables.answers,
        failures=table("failures.csv", [pd.DataFrame([asdict(f) for f in run.failures])]),
        summary=summary(run, views, tables.quality),
        judgments=tables.judgments,
        prompts=tables.prompts,
        manifest=manifest(run, config_path),
        style=table("style.csv", [pd.DataFrame([asdict(row) for row in style_by_model(run.answers)])]),
    )


def write_report(
    run: ArenaRun, views: list[View], config_path: Path | None = None, tables: RunTables | None = None
) -> Path:
    """Write the run's report folder (`run_folder`; `judge_arena.runs` describes it) and its report.html; return
    its path."""
    config = run.inputs.config
    folder = run_folder(run, views, config_path, tables)
    written = write_run(folder, config.runner.output_dir, config.name)
    write_html_report(written, folder)
    return written


def write_rated_battles(
    battles: pd.DataFrame, views: list[View], summary: dict[str, Any], output_dir: Path, name: str
) -> Path:
    """Write the run folder of battles rated from a file (`pipeline.rate_battles`): the boards, categories and
    battles as a run's (`battles` in `views.BATTLE_COLUMNS`), no answers, judgments or prompts; return its path."""
    frame = battles[list(BATTLE_COLUMNS)].copy()
    frame["defence_flags"] = NO_FLAGS
    folder = RunFolder(
        boards=leaderboard_frame(views),
        categories=category_frame(views),
        battles=table("battles.csv", [frame]),
        answers=pd.DataFrame(columns=list(ANSWER_FIELDS)),
        failures=table("failures.csv", []),
        summary={**summary, "views": views_summary(views)},
        judgments=empty_jsonl_table("judgments.jsonl"),
        prompts=empty_jsonl_table("prompts.jsonl"),
    )
    written = write_run(folder, output_dir, name)
    write_html_report(written, folder)
    return written
