"""A small arena config on a running simulator, written to a file: what the tests that run `judge-arena` as a
separate process (kills, signals, two processes on one cache) share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CANDIDATES = {"strong": "sim-strong-plain", "md-weak": "sim-markdown-weak", "terse": "sim-good-terse"}
"""Candidate names and the simulated models behind them."""


def write_config(
    folder: Path,
    api_base: str,
    *,
    name: str,
    limit: int,
    candidates: dict[str, str] = CANDIDATES,
    **runner: Any,
) -> Path:
    """`folder/arena.yaml`: `limit` prompts of the built-in suite, `candidates` and the simulated judge, every model
    at `api_base` (an explicit URL, so several processes talk to the one server a test reads); cache and runs in
    `folder`; `runner` adds runner settings."""
    model = {"api_base": api_base}
    config = {
        "name": name,
        "suites": [{"path": "core", "limit": limit}],
        "candidates": [{"name": n, "model": f"openai/{m}", **model} for n, m in candidates.items()],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "template": "pairwise", **model}],
        "runner": {"cache_dir": "cache", "output_dir": "runs", **runner},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
