"""Per-category boards: `rating.leaderboards_by` on many small categories, their bootstrap rounds refitted together
(what a run does) against one round at a time (what it did before), side by side in one process.

Arena-Hard-Auto's prompts come in hundreds of small clusters and a board per category is fitted for each view, so a
run spent minutes on boards of a few dozen battles each. Synthetic battles: 3 models, both orders, a 10 % tie
rate; with `--style`, four random style features per side and the `both` style set.

    .venv/bin/python bench/categories.py                       # 250 categories of 2 prompts, 200 rounds
    .venv/bin/python bench/categories.py --prompts 10 --style  # larger categories, style-controlled
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from judge_arena import rating

FEATURES = ("tokens", "headers", "lists", "bold")


def battles(categories: int, prompts: int, models: int, *, styled: bool, seed: int = 0) -> pd.DataFrame:
    """Every pair of `models` in both orders on each prompt of each category, with random outcomes."""
    rng = np.random.default_rng(seed)
    names = [f"model-{k}" for k in range(models)]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    rows = []
    for category in range(categories):
        for prompt in range(prompts):
            for a, b in pairs:
                for first, second in ((a, b), (b, a)):
                    row = {
                        "prompt_id": f"c{category}-p{prompt}",
                        "category": f"category-{category}",
                        "model_a": first,
                        "model_b": second,
                        "winner": rng.choice(["model_a", "model_b", "tie"], p=[0.45, 0.45, 0.1]),
                        "weight": 1.0,
                    }
                    if styled:
                        row |= {f"{f}_{side}": float(rng.integers(0, 50)) for f in FEATURES for side in "ab"}
                    rows.append(row)
    return pd.DataFrame(rows)


def _timed(frame: pd.DataFrame, rounds: int, style: str | None) -> tuple[float, dict[str, rating.CategoryLeaderboard]]:
    started = time.perf_counter()
    boards = rating.leaderboards_by(frame, rounds=rounds, seed=0, style=style)
    return time.perf_counter() - started, boards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", type=int, default=250)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per category (default 2)")
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200, help="bootstrap rounds (default 200)")
    parser.add_argument("--style", action="store_true", help="style-controlled boards (the 'both' set)")
    args = parser.parse_args()
    style = "both" if args.style else None
    frame = battles(args.categories, args.prompts, args.models, styled=args.style)
    print(
        f"{args.categories} categories × {args.prompts} prompts × {args.models} models ({len(frame):,} battles), "
        f"{args.rounds} rounds, style {style}"
    )
    together_s, together = _timed(frame, args.rounds, style)
    cells = rating._BATCHED_CELLS
    rating._BATCHED_CELLS = 0  # no design small enough: every round refitted on its own, as before
    try:
        alone_s, alone = _timed(frame, args.rounds, style)
    finally:
        rating._BATCHED_CELLS = cells
    print(f"  rounds together     {together_s:7.2f} s")
    print(f"  one round at a time {alone_s:7.2f} s")
    print(f"  speed-up            {alone_s / together_s:7.1f}×")
    gaps = [
        float(
            np.max(
                np.abs(
                    a.board.to_frame()[["rating", "lower", "upper"]].to_numpy()
                    - b.board.to_frame()[["rating", "lower", "upper"]].to_numpy()
                )
            )
        )
        for a, b in zip(together.values(), alone.values(), strict=True)
        if a.board is not None and b.board is not None
    ]
    print(f"  largest difference  {max(gaps, default=0.0):.1e} Elo over {len(gaps)} boards (ratings and intervals)")


if __name__ == "__main__":
    main()
