"""A cached rerun: `judge-arena run` on a config whose every call is in the cache already, against a bare replay.

The arena: 8 simulated candidates, the simulated judge, raw and plain views, all pairs, on a suite of synthetic
prompts sized so that answers + judge games reach the items asked for (100,000 by default: 834 prompts, 6,672
answers and 93,408 games). The cache is filled by a first run whose model calls are answered in-process by the
simulated models (no HTTP: only the cache matters here), then the same config is run again by the command, as a
user would, in a fresh process: wall time from start to exit, nothing called.

The reference is the least a rerun must do: for each cached call, hash its request and SELECT its answer.

    nice .venv/bin/python bench/rerun.py                  # 100,000 items
    nice .venv/bin/python bench/rerun.py --items 20000    # sized down
    nice .venv/bin/python bench/rerun.py --keep DIR       # keep (and reuse) the arena folder and its cache
    nice .venv/bin/python bench/rerun.py --repeat 5       # five reruns (default three): min–median–max
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

CANDIDATES = [
    "sim-strong-plain",
    "sim-strong-markdown",
    "sim-good-verbose",
    "sim-good-terse",
    "sim-mid-plain",
    "sim-markdown-weak",
    "sim-weak-verbose",
    "sim-weak-terse",
]
ITEMS_PER_PROMPT = len(CANDIDATES) + len(CANDIDATES) * (len(CANDIDATES) - 1) // 2 * 2 * 2
"""An answer per candidate, and both orders of every pair in the raw and plain views."""
TARGET_S = 10.0
"""The rerun of 100,000 items, at most."""
TOPICS = ["binary search", "hash maps", "TCP handshakes", "photosynthesis", "compound interest", "sorting"]


def write_arena(folder: Path, prompts: int) -> Path:
    """The arena's suite and config in `folder`; returns the config's path."""
    with (folder / "suite.jsonl").open("w") as suite:
        for n in range(prompts):
            question = f"Question {n}: explain {TOPICS[n % len(TOPICS)]} to a new colleague, with an example."
            suite.write(json.dumps({"id": f"q{n}", "category": TOPICS[n % len(TOPICS)], "turns": [question]}) + "\n")
    config = {
        "name": "rerun",
        "suites": [{"path": "suite.jsonl"}],
        "candidates": [{"name": m, "model": f"openai/{m}", "api_base": "simulator"} for m in CANDIDATES],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator", "template": "pairwise"}],
        "normalizations": ["raw", "plain"],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "concurrency": 256},
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class _Simulated:
    """A model client answering in-process with the simulated models (the `ModelClient` the runner takes)."""

    def __init__(self, **_: Any) -> None:
        from judge_arena.client import Gate
        from judge_arena.limiter import AdaptiveConcurrency, RateLimiter

        self._gate = Gate(AdaptiveConcurrency(1_000_000), RateLimiter())

    async def complete(
        self,
        endpoint: Any,
        messages: tuple[Any, ...],
        params: Mapping[str, Any],
        on_receipt: Callable[[Any], None] | None = None,
        on_billed: Callable[[int, int], None] | None = None,
    ) -> Any:
        from judge_arena.sim.models import ChatMessage, estimate_tokens, reply
        from judge_arena.store import Completion

        conversation = [ChatMessage(m.role, m.content) for m in messages]
        text = reply(endpoint.model.split("/", 1)[1], conversation, params.get("seed"))
        prompt_tokens = sum(estimate_tokens(m.content) for m in messages)
        return Completion(text, "stop", prompt_tokens, estimate_tokens(text), 0.0)

    async def recover(self, *_: Any) -> None:
        return None

    def gate(self, endpoint: Any) -> Any:
        return self._gate

    async def aclose(self) -> None:
        pass


def fill_cache(config_path: Path) -> tuple[int, float]:
    """Run the arena once, whole (rated, its report written), with in-process answers; returns the calls made and
    the seconds taken."""
    from judge_arena import arena
    from judge_arena.config import load_config
    from judge_arena.pipeline import run_arena

    arena.Client = _Simulated  # type: ignore[attr-defined]  # the bench's stand-in for the network
    started = time.perf_counter()
    run = run_arena(load_config(config_path)).run
    if run.failures:
        raise SystemExit(f"the first run failed: {run.failures[0]}")
    return run.stats.made, time.perf_counter() - started


def bare_replay(cache: Path) -> tuple[int, float]:
    """Hash every cached request and SELECT its answer, one by one; returns the count and the seconds taken."""
    with sqlite3.connect(cache) as db:
        requests = [row[0] for row in db.execute("SELECT request FROM completions")]
        started = time.perf_counter()
        for request in requests:
            digest = hashlib.sha256(request.encode("utf-8")).hexdigest()
            db.execute(
                "SELECT text, finish_reason, input_tokens, output_tokens, latency_s FROM completions WHERE key = ?",
                (digest,),
            ).fetchone()
        return len(requests), time.perf_counter() - started


def rerun(config_path: Path) -> tuple[float, str]:
    """`judge-arena run` in a fresh process; its wall time and its output's call line."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "judge_arena.cli", "run", str(config_path)], capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the rerun exited {done.returncode}: {done.stderr[-2000:]}")
    calls = next((line.strip() for line in done.stdout.splitlines() if "from the cache" in line), "")
    return wall, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="answers + judge games (default 100,000)")
    parser.add_argument("--keep", type=Path, help="arena folder to keep, and to reuse when its cache exists")
    parser.add_argument("--repeat", type=int, default=3, help="reruns, each beside a bare replay (default 3)")
    args = parser.parse_args()
    prompts = -(-args.items // ITEMS_PER_PROMPT)
    items = prompts * ITEMS_PER_PROMPT
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        config_path = write_arena(folder, prompts)
        cache = folder / "cache" / "arena.sqlite"
        print(f"{items:,} items: {prompts} prompts × ({len(CANDIDATES)} answers + {ITEMS_PER_PROMPT - 8} games)")
        if not cache.exists():
            made, fill_s = fill_cache(config_path)
            print(f"  cache filled: {made:,} calls answered in-process in {fill_s:.0f} s")
        walls, ratios = [], []
        for _ in range(args.repeat):
            count, bare_s = bare_replay(cache)
            each = 1e6 * bare_s / count
            print(f"  reference  hash + SELECT of {count:,} cached calls   {bare_s:6.2f} s  ({each:.0f} µs each)")
            wall, calls = rerun(config_path)
            per_item = 1e6 * wall / items
            print(f"  project    judge-arena run, cached, whole process  {wall:6.2f} s  ({per_item:.0f} µs/item)")
            walls.append(wall)
            ratios.append(wall / bare_s)
        print(f"             {calls}")
        scaled = [wall * 100_000 / items for wall in walls]
        median = statistics.median(scaled)
        verdict = "met" if median <= TARGET_S else "MISSED"
        print(
            f"  100,000 items at this rate (min–median–max of {args.repeat}): {_spread(scaled, '{:.1f} s')}, "
            f"target ≤ {TARGET_S:g} s (median): {verdict}"
        )
        print(f"  ratio to the bare replay beside it: {_spread(ratios, '{:.1f}×')}")


def _spread(values: list[float], form: str) -> str:
    ordered = sorted(values)
    return "–".join(form.format(value) for value in (ordered[0], statistics.median(ordered), ordered[-1]))


if __name__ == "__main__":
    main()
