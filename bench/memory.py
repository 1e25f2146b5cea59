"""Peak RSS of a 100k-item run: its first run and its cached rerun, each in a fresh process.

The arena is bench/rerun.py's (8 simulated candidates, the simulated judge, raw and plain views, all pairs). The
first run's calls are answered in-process by the simulated models, as in bench/rerun.py (100k real HTTP calls take
longer than this machine has; `--http` makes them for real through the simulator, best with fewer `--items`).
The rerun is `judge-arena run` on the filled cache. Each phase reports its own process's peak RSS, and beside it
the peak RSS of the second process a large run prepares its answers in (`judge_arena/prepare.py`), if it had one.

    nice .venv/bin/python bench/memory.py                        # 100,000 items
    nice .venv/bin/python bench/memory.py --items 20000 --http   # a real first run through the simulator
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rerun import ITEMS_PER_PROMPT, write_arena

TARGET_MB = 500
BENCH = Path(__file__).resolve().parent

_PEAK = (
    "import resource; print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
    "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)
_FILL = (
    f"import sys; sys.path.insert(0, {str(BENCH)!r}); from pathlib import Path; import rerun; "
    "rerun.fill_cache(Path(sys.argv[1]))"
)
_RUN = "import sys; from judge_arena.cli import main; code = main(['run', sys.argv[1]]); assert code == 0, code"


def _phase(code: str, config_path: Path) -> tuple[float, float, float]:
    """Run `code` in a fresh interpreter; its peak RSS in MB, its children's (the largest), and its wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", f"{code}\n{_PEAK}", str(config_path)], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the phase failed: {done.stderr[-2000:]}")
    peak_kb, children_kb = (int(kb) for kb in done.stdout.split("peak_kb")[-1].split()[:2])
    return peak_kb / 1024, children_kb / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="answers + judge games (default 100,000)")
    parser.add_argument("--http", action="store_true", help="make the first run's calls through the simulator")
    args = parser.parse_args()
    prompts = -(-args.items // ITEMS_PER_PROMPT)
    items = prompts * ITEMS_PER_PROMPT
    print(f"{items:,} items: {prompts} prompts, 8 candidates, 1 judge, raw and plain, all pairs")
    with tempfile.TemporaryDirectory() as folder:
        config_path = write_arena(Path(folder), prompts)
        first = "first run, calls through the simulator" if args.http else "first run, answers in-process"
        results = [
            (first, *_phase(_RUN if args.http else _FILL, config_path)),
            ("cached rerun (judge-arena run)", *_phase(_RUN, config_path)),
        ]
    for name, peak_mb, children_mb, wall in results:
        verdict = "met" if peak_mb <= TARGET_MB else "MISSED"
        second = f"second process {children_mb:4.0f} MB" if children_mb else "no second process"
        print(
            f"  {name:<40} peak RSS {peak_mb:5.0f} MB  ({wall:5.0f} s)  target ≤ {TARGET_MB} MB: {verdict}  ({second})"
        )


if __name__ == "__main__":
    main()
