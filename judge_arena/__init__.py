"""judge-arena: an automated arena with LLM judges, raw and style-normalized, with Bradley–Terry ratings.

The library surface::

    import judge_arena as ja

    config = ja.load_config("arena.yaml")            # or ja.config_from_dict({...}, base_dir=".")
    result = ja.run_arena(config)                     # `await ja.run_arena_async(config)` inside an event loop
    run = ja.load_run(result.folder)                  # boards, categories, battles, answers, summary
    board = ja.fit_leaderboard(battles_frame)         # Chatbot Arena / FastChat battles → ratings with CIs
    rated = ja.rate_battles(Path("battles.jsonl"))    # a battles file made elsewhere → the boards and run folder
    answered = ja.generate_answers(config)            # the candidates' answers alone, into the cache

Importing the package has no side effects and stays light: each name is imported on first use.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from judge_arena.config import ArenaConfig, ConfigError, config_from_dict, load_config
    from judge_arena.pipeline import (
        ArenaResult,
        RatedBattles,
        generate_answers,
        rate_battles,
        run_arena,
        run_arena_async,
    )
    from judge_arena.rating import Leaderboard, fit_leaderboard
    from judge_arena.runs import RunFolder, load_run

__all__ = [
    "ArenaConfig",
    "ArenaResult",
    "ConfigError",
    "Leaderboard",
    "RatedBattles",
    "RunFolder",
    "__version__",
    "config_from_dict",
    "fit_leaderboard",
    "generate_answers",
    "load_config",
    "load_run",
    "rate_battles",
    "run_arena",
    "run_arena_async",
]

_HOME = {
    "ArenaConfig": "judge_arena.config",
    "ConfigError": "judge_arena.config",
    "config_from_dict": "judge_arena.config",
    "load_config": "judge_arena.config",
    "ArenaResult": "judge_arena.pipeline",
    "run_arena": "judge_arena.pipeline",
    "run_arena_async": "judge_arena.pipeline",
    "RatedBattles": "judge_arena.pipeline",
    "generate_answers": "judge_arena.pipeline",
    "rate_battles": "judge_arena.pipeline",
    "Leaderboard": "judge_arena.rating",
    "fit_leaderboard": "judge_arena.rating",
    "RunFolder": "judge_arena.runs",
    "load_run": "judge_arena.runs",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return importlib.metadata.version("judge-arena")
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'judge_arena' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
