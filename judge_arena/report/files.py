"""The run's report: its views, battles, judgments, answers, prompts, failures and summary as the tables of a run
folder, and the folder's report.html.

`judge_arena.runs` owns the folder's format and writes it; `judge_arena.report.html` renders the page from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from judge_arena.agreement import position_consistency, reasks
from judge_arena.arena import ArenaRun
from judge_arena.defence import enabled_canaries
from judge_arena.records import Battle, Prompt
from judge_arena.report.html import write_html_report
from judge_arena.runs import ANSWER_FIELDS, JSONL_FIELDS, NO_FLAGS, NO_STYLE_CONTROL, RunFolder, table, write_run
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


def judgments_table(battles: Sequence[Battle]) -> pd.DataFrame:
    """The battles as judgments.jsonl holds them: each game with the judge's replies and flags."""
    rows = [
        {
            **{column: getattr(b, column) for column in BATTLE_COLUMNS},
            "reasked": "reasked" in b.flags,
            "unparsed": b.label is None,
            "defence_flags": tuple(f for f in b.flags if f not in _VERDICT_FLAGS),
            "reply": b.replies[0] if b.replies else "",
            "reask_reply": b.replies[1] if len(b.replies) > 1 else None,
        }
        for b in battles
    ]
    fields = JSONL_FIELDS["judgments.jsonl"]
    return pd.DataFrame(rows, columns=list(fields)).astype(fields)


def prompts_table(prompts: Sequence[Prompt]) -> pd.DataFrame:
    """The prompts as prompts.jsonl holds them."""
    rows = [{"prompt_id": p.id, "suite": p.suite, "category": p.category, "turns": p.turns} for p in prompts]
    fields = JSONL_FIELDS["prompts.jsonl"]
    return pd.DataFrame(rows, columns=list(fields)).astype(fields)


def summary(run: ArenaRun, views: list[View]) -> dict[str, Any]:
    """The run's counts, call statistics and per-view notes, as written to summary.json."""
    config = run.inputs.config
    stats = run.stats
    return {
        "name": config.name,
        "prompts": len(run.inputs.prompts),
        "candidates": [c.name for c in config.candidates],
        "judges": {j.name: run.inputs.templates[j.name].fingerprint for j in config.judges},
        "normalizations": config.normalizations,
        "pairing": config.pairing.model_dump(),
        "rating": config.rating.model_dump(),
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
        "flagged_battles": {
            kind: sum(any(f.startswith(f"{kind}:") for f in b.flags) for b in run.battles)
            for kind in ("neutralized", "injection")
        },
        "judge_quality": {
            judge: {
                **asdict(counts),
                "position_consistency": [
                    asdict(c) for c in position_consistency(run.battles) if c.judge == judge and c.category is None
                ],
            }
            for judge, counts in reasks(run.battles).items()
        },
        "identical_candidates": identical_candidates(run.answers),
        "answers_cut_at_max_tokens": {
            c.name: sum(a.cut_turns > 0 for a in run.answers if a.model == c.name) for c in config.candidates
        },
        "views": [
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
        ],
        "elapsed_s": round(run.elapsed_s, 3),
    }


def write_report(run: ArenaRun, views: list[View]) -> Path:
    """Write the run's report folder (`judge_arena.runs` describes it) and return its path."""
    config = run.inputs.config
    folder = RunFolder(
        boards=leaderboard_frame(views),
        categories=category_frame(views),
        battles=battles_table(run.battles),
        answers=pd.DataFrame([asdict(answer) for answer in run.answers], columns=list(ANSWER_FIELDS)),
        failures=table("failures.csv", [pd.DataFrame([asdict(f) for f in run.failures])]),
        summary=summary(run, views),
        judgments=judgments_table(run.battles),
        prompts=prompts_table(run.inputs.prompts),
    )
    written = write_run(folder, config.runner.output_dir, config.name)
    write_html_report(written)
    return written
