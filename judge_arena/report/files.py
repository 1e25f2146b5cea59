"""The run's output folder: leaderboards (CSV and JSON), battles, answers, failures and a summary.

The folder is written under a temporary name and renamed when complete, so a report is never half there.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from judge_arena.arena import ArenaRun
from judge_arena.defence import enabled_canaries
from judge_arena.views import View, battles_frame, canary_warnings


def leaderboard_frame(views: list[View]) -> pd.DataFrame:
    """All views' leaderboards in one long table: one row per (judge, view, model)."""
    frames = []
    for view in views:
        if view.board is None:
            continue
        frame = view.board.to_frame()
        frame.insert(0, "style_control", view.style or "")
        frame.insert(0, "normalization", view.normalization)
        frame.insert(0, "judge", view.judge)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def category_frame(views: list[View]) -> pd.DataFrame:
    """Every view's per-category leaderboards in one long table; a category without a board gets one noted row."""
    frames = []
    for view in views:
        for category, entry in view.by_category.items():
            frame = entry.board.to_frame() if entry.board is not None else pd.DataFrame([{}])
            frame.insert(0, "note", entry.note or "")
            frame.insert(0, "battles", entry.battles)
            frame.insert(0, "category", category)
            frame.insert(0, "view", view.label)
            frame.insert(0, "judge", view.judge)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
            kind: sum(any(f.startswith(kind) for f in b.flags) for b in run.battles)
            for kind in ("neutralized:", "injection:")
        },
        "views": [
            {
                "judge": v.judge,
                "normalization": v.normalization,
                "style_control": v.style,
                "coefficients": [asdict(c) for c in v.board.coefficients] if v.board else [],
                "games": v.games,
                "unparsed": v.unparsed,
                "note": v.note,
            }
            for v in views
        ],
        "elapsed_s": round(run.elapsed_s, 3),
    }


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


def write_report(run: ArenaRun, views: list[View]) -> Path:
    """Write the run's report folder and return its path."""
    config = run.inputs.config
    root = config.runner.output_dir
    root.mkdir(parents=True, exist_ok=True)
    staging, folder = _staged_folder(root, f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")

    boards = leaderboard_frame(views)
    boards.to_csv(staging / "leaderboard.csv", index=False)
    category_frame(views).to_csv(staging / "categories.csv", index=False)
    (staging / "leaderboard.json").write_text(json.dumps(boards.to_dict(orient="records"), indent=2))
    battles = battles_frame(run.battles)
    battles["flags"] = [";".join(b.flags) for b in run.battles]
    battles.to_csv(staging / "battles.csv", index=False)
    with (staging / "answers.jsonl").open("w", encoding="utf-8") as out:
        for answer in run.answers:
            out.write(json.dumps(asdict(answer), ensure_ascii=False) + "\n")
    pd.DataFrame([asdict(f) for f in run.failures], columns=["stage", "item", "reason"]).to_csv(
        staging / "failures.csv", index=False
    )
    (staging / "summary.json").write_text(json.dumps(summary(run, views), indent=2))
    staging.rename(folder)
    return folder
