"""Startup: `judge-arena --help` against a bare `python -c pass`, best and median of 10, with the imports it makes.

.venv/bin/python bench/startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

TARGET_S = 0.3
RUNS = 10
HELP = [sys.executable, "-m", "judge_arena.cli", "--help"]


def _times(command: list[str]) -> list[float]:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return times


def _imports_s() -> tuple[float, int]:
    """The seconds `-X importtime` counts for every module `--help` imports, and how many modules."""
    done = subprocess.run([sys.executable, "-X", "importtime", *HELP[1:]], capture_output=True, text=True, check=True)
    rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")][1:]
    return sum(int(row[0].split(":")[1]) for row in rows) / 1e6, len(rows)


def main() -> None:
    bare, help_ = _times([sys.executable, "-c", "pass"]), _times(HELP)
    imports_s, modules = _imports_s()
    print(f"python -c pass        best {min(bare):.3f} s  median {statistics.median(bare):.3f} s")
    print(f"judge-arena --help    best {min(help_):.3f} s  median {statistics.median(help_):.3f} s")
    print(f"  imports (-X importtime, self times summed): {imports_s:.3f} s over {modules} modules")
    verdict = "met" if min(help_) <= TARGET_S else "MISSED"
    print(f"  target ≤ {TARGET_S} s: {verdict}")


if __name__ == "__main__":
    main()
