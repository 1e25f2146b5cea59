"""Style-controlled Bradley–Terry bootstrap: judge_arena against scikit-learn's one-hot logistic regression.

Builds seeded synthetic battles with four style features (1M battles × 50 models × 1,000 rounds, or 200k × 20 ×
100 with --small), then runs, each in a child process of its own so that its peak RSS is its own:

- the project: `judge_arena.rating.leaderboard(battles, style="both", rounds=...)`, timed whole (validation,
  aggregation, full fit and every bootstrap round);
- the reference, as Arena-Hard-Auto v0.1 and Chatbot Arena fit style control: one row per game with +1 in
  model_a's column, −1 in model_b's and the four standardized style covariates, a tie as a win row and a loss row
  of half weight each, `LogisticRegression(fit_intercept=False, penalty=None)` (spelled C=inf since scikit-learn
  1.8), refitted from scratch on every resample. It would take hours for 1,000 rounds, so it fits the full data
  and the first few rounds (the same resamples as the project's) and extrapolates: set-up and full fit, plus
  rounds × the mean time of a timed round.

Prints both times, their ratio against the ≥100× target, the largest rating difference between the two over the
full fit and the rounds both computed (in Elo), and each side's peak RSS (target for the project: ≤ 500 MB).
Timings are ratios of one run on a shared machine: see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ELO = 400.0 / math.log(10.0)
FEATURES = ("tokens", "headers", "lists", "bold")
TARGET_RATIO = 100.0
TARGET_RSS_MB = 500.0
TOLERANCE_ELO = 0.01
SIZES = {"large": (1_000_000, 50, 1000), "small": (200_000, 20, 100)}


def battles(n: int, models: int, seed: int) -> pd.DataFrame:
    """n games between random pairs of `models` models, four per prompt, with style counts for both answers.

    Typed columns, added one at a time so that none is copied: integer prompt ids, categorical model names and
    verdicts, float counts. Each model has a strength and a verbosity; the verdict follows Bradley–Terry with style
    effects, ties within 0.05 of the win probability, and one game in five is a strong verdict (weight 3).
    """
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, models)
    verbosity = rng.normal(0.0, 0.3, models)
    names = [f"model-{k:03d}" for k in range(models)]
    a = rng.integers(0, models, n)
    b = (a + rng.integers(1, models, n)) % models
    frame = pd.DataFrame({"prompt_id": np.arange(n) // 4})
    frame["model_a"] = pd.Categorical.from_codes(a, categories=names)
    frame["model_b"] = pd.Categorical.from_codes(b, categories=names)
    logit = strength[a] - strength[b]
    for side, model in (("a", a), ("b", b)):
        frame[f"tokens_{side}"] = np.round(rng.lognormal(np.log(500.0) + verbosity[model], 0.5))
        frame[f"headers_{side}"] = rng.poisson(1.0 + 2.0 * (verbosity[model] > 0)).astype(np.float64)
        frame[f"lists_{side}"] = rng.poisson(3.0, n).astype(np.float64)
        frame[f"bold_{side}"] = rng.poisson(2.0, n).astype(np.float64)
    for feature, effect in zip(FEATURES, (0.8, 0.3, 0.2, 0.1), strict=True):
        fa, fb = frame[f"{feature}_a"].to_numpy(), frame[f"{feature}_b"].to_numpy()
        logit += effect * (fa - fb) / (fa + fb + 1.0)
    p_a = 1.0 / (1.0 + np.exp(-logit))
    u = rng.random(n)
    verdict = np.where(np.abs(u - p_a) < 0.05, 2, np.where(u < p_a, 0, 1))
    frame["winner"] = pd.Categorical.from_codes(verdict, categories=["model_a", "model_b", "tie"])
    frame["weight"] = np.where(rng.random(n) < 0.2, 3.0, 1.0)
    return frame


def run_project(frame: pd.DataFrame, rounds: int, seed: int, compared: int) -> dict[str, Any]:
    from judge_arena.rating import leaderboard

    start, cpu = time.perf_counter(), time.process_time()
    board = leaderboard(frame, rounds=rounds, seed=seed, style="both")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    ratings = {row.model: row.rating for row in board.rows}
    models = sorted(ratings)
    return {
        "seconds": seconds,
        "cpu": cpu,
        "models": models,
        "full": [ratings[model] for model in models],
        "rounds": board.samples[models].to_numpy()[:compared].tolist(),
    }


def run_reference(frame: pd.DataFrame, seed: int, compared: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    start, cpu = time.perf_counter(), time.process_time()
    models = sorted(set(frame["model_a"]) | set(frame["model_b"]))
    code = {model: k for k, model in enumerate(models)}
    n, m = len(frame), len(models)
    weight = frame["weight"].to_numpy(np.float64)
    score = frame["winner"].map({"model_a": 1.0, "model_b": 0.0, "tie": 0.5}).to_numpy(np.float64)
    x = np.zeros((n, m + len(FEATURES)))
    x[np.arange(n), frame["model_a"].map(code).to_numpy(np.intp)] = 1.0
    x[np.arange(n), frame["model_b"].map(code).to_numpy(np.intp)] = -1.0
    for f, feature in enumerate(FEATURES):
        fa, fb = frame[f"{feature}_a"].to_numpy(np.float64), frame[f"{feature}_b"].to_numpy(np.float64)
        ratio = (fa - fb) / (fa + fb + 1.0)
        mean = np.average(ratio, weights=weight)
        x[:, m + f] = (ratio - mean) / np.sqrt(np.average((ratio - mean) ** 2, weights=weight))
    # A game is a win row weighted by its score and a loss row by the rest; rows of weight 0 are left out.
    wins, losses = np.flatnonzero(score > 0), np.flatnonzero(score < 1)
    game = np.concatenate([wins, losses])
    design = x[game]
    del x
    label = np.concatenate([np.ones(len(wins)), np.zeros(len(losses))])
    base = weight[game] * np.concatenate([score[wins], 1.0 - score[losses]])
    units, n_units = pd.factorize(frame["prompt_id"])[0][game], frame["prompt_id"].nunique()

    def fit(sample_weight: np.ndarray) -> list[float]:
        model = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8, max_iter=10_000)
        model.fit(design, label, sample_weight=sample_weight)
        ratings = ELO * model.coef_[0, :m]
        return list(ratings - ratings.mean() + 1000.0)

    full = fit(base)
    setup_and_full, setup_and_full_cpu = time.perf_counter() - start, time.process_time() - cpu
    # The project's draw (judge_arena.rating._bootstrap): whole prompts, numbered in order of appearance.
    rng = np.random.default_rng(seed)
    per_round, per_round_cpu, samples = [], [], []
    for _ in range(compared):
        multiplicity = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units).astype(np.float64)
        start, cpu = time.perf_counter(), time.process_time()
        samples.append(fit(base * multiplicity[units]))
        per_round.append(time.perf_counter() - start)
        per_round_cpu.append(time.process_time() - cpu)
    return {
        "seconds": setup_and_full,
        "cpu": setup_and_full_cpu,
        "per_round": per_round,
        "per_round_cpu": per_round_cpu,
        "models": models,
        "full": full,
        "rounds": samples,
    }


def child(side: str, size: str, seed: int, compared: int, out: Path) -> None:
    n, m, rounds = SIZES[size]
    frame = battles(n, m, seed)
    result = run_project(frame, rounds, seed, compared) if side == "project" else run_reference(frame, seed, compared)
    out.write_text(json.dumps(result))


def spawn(side: str, args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], float]:
    """Run one side in a child process; its result and its peak RSS in MB."""
    out = folder / f"{side}.json"
    command = [sys.executable, __file__, "--side", side, "--out", str(out), "--seed", str(args.seed)]
    process = subprocess.Popen([*command, "--compared", str(args.compared), *(["--small"] if args.small else [])])
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{side} failed with exit code {process.returncode}")
    return json.loads(out.read_text()), usage.ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="200k battles × 20 models × 100 rounds")
    parser.add_argument("--memory", action="store_true", help="only the project's peak RSS (no reference)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compared", type=int, default=3, help="bootstrap rounds the reference fits (default 3)")
    parser.add_argument("--side", choices=["project", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = "small" if args.small else "large"
    if args.side:
        child(args.side, size, args.seed, args.compared, args.out)
        return
    n, m, rounds = SIZES[size]
    print(f"{n:,} battles × {m} models × {rounds:,} bootstrap rounds, 4 style features, seed {args.seed}")
    print("(wall and CPU seconds of the timed part; CPU counts every thread of the process)")
    with tempfile.TemporaryDirectory() as folder:
        ours, our_rss = spawn("project", args, Path(folder))
        print(
            f"project    leaderboard(style='both'), whole       wall {ours['seconds']:8.1f} s  "
            f"CPU {ours['cpu']:8.1f} s  peak RSS {our_rss:5.0f} MB"
        )
        if not args.memory:
            theirs, their_rss = spawn("reference", args, Path(folder))
    print(
        f"memory     project peak RSS {our_rss:.0f} MB, target ≤ {TARGET_RSS_MB:.0f} MB: "
        f"{met(our_rss <= TARGET_RSS_MB)}"
    )
    if args.memory:
        return
    wall = theirs["seconds"] + rounds * float(np.mean(theirs["per_round"]))
    cpu = theirs["cpu"] + rounds * float(np.mean(theirs["per_round_cpu"]))
    timed = ", ".join(f"{seconds:.1f}" for seconds in theirs["per_round"])
    print(f"reference  one-hot LogisticRegression: set-up and full fit {theirs['seconds']:.1f} s, rounds {timed} s")
    print(
        f"           extrapolated to {rounds:,} rounds       wall {wall:8.0f} s  CPU {cpu:8.0f} s  "
        f"peak RSS {their_rss:5.0f} MB"
    )
    ratio = wall / ours["seconds"]
    print(
        f"ratio      wall {ratio:.0f}×, target ≥ {TARGET_RATIO:.0f}×: {met(ratio >= TARGET_RATIO)} "
        f"(CPU {cpu / ours['cpu']:.0f}×)"
    )
    assert ours["models"] == theirs["models"]
    difference = float(
        np.max(np.abs(np.vstack([ours["full"], ours["rounds"]]) - np.vstack([theirs["full"], theirs["rounds"]])))
    )
    print(
        f"ratings    largest difference {difference:.2g} Elo over the full fit and {len(theirs['rounds'])} rounds, "
        f"budget {TOLERANCE_ELO} Elo: {met(difference <= TOLERANCE_ELO)}"
    )


def met(flag: bool) -> str:
    return "met" if flag else "MISSED"


if __name__ == "__main__":
    main()
