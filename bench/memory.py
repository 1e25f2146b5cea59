"""Peak RSS of a 100k-item run: its first run and its cached rerun, each in a fresh process.

The arena is bench/rerun.py's (8 simulated candidates, the simulated judge, raw and plain views, all pairs). The
first run's calls are answered in-process by the simulated models, as in bench/rerun.py (100k real HTTP calls take
longer than this machine has; `--http` makes them for real through the simulator, best with fewer `--items`).
The rerun is `judge-arena run` on the filled cache. Each phase reports its own process's peak RSS, and beside it
the peak RSS of the second process a large run prepares its answers in (`judge_arena/prepare.py`), read from /proc
while it runs (Linux).

    nice .venv/bin/python bench/memory.py                        # 100,000 items
    nice .venv/bin/python bench/memory.py --items 20000 --http   # a real first run through the simulator
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rerun import ITEMS_PER_PROMPT, write_arena

TARGET_MB = 500
BENCH = Path(__file__).resolve().parent

_PEAK = "import resource; print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
_FILL = (
    f"import sys; sys.path.insert(0, {str(BENCH)!r}); from pathlib import Path; import rerun; "
    "rerun.fill_cache(Path(sys.argv[1]))"
)
_RUN = "import sys; from judge_arena.cli import main; code = main(['run', sys.argv[1]]); assert code == 0, code"
_LOOK_EVERY_S = 0.05


def _children_peak_kb(pid: int, seen: dict[int, int]) -> None:
    """Record in `seen` the peak RSS so far (VmHWM) of each child of `pid` that runs a program of its own.

    Read from /proc while they run, and only once a child has exec'd (its command line is no longer its parent's):
    between its fork and its exec a child shares its parent's pages, and its peak (in `ru_maxrss` as in /proc) reads
    as the parent's own.
    """
    try:
        parent = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # it has ended
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in children.read_text().split():
                if Path(f"/proc/{child}/cmdline").read_bytes() == parent:
                    continue
                status = Path(f"/proc/{child}/status").read_text()
                peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
                seen[int(child)] = max(seen.get(int(child), 0), peak)
        except (OSError, StopIteration, ValueError):
            continue  # gone meanwhile


def _phase(code: str, config_path: Path) -> tuple[float, float, float]:
    """Run `code` in a fresh interpreter; its peak RSS in MB, its largest child's (0 without), and its wall time."""
    started = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-c", f"{code}\n{_PEAK}", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        children: dict[int, int] = {}
        outputs: list[str] = []
        communicating = threading.Thread(target=lambda: outputs.extend(process.communicate()))
        communicating.start()
        while communicating.is_alive():
            _children_peak_kb(process.pid, children)
            communicating.join(_LOOK_EVERY_S)
    wall = time.perf_counter() - started
    stdout, stderr = outputs
    if process.returncode != 0:
        raise SystemExit(f"the phase failed: {stderr[-2000:]}")
    peak_kb = int(stdout.split("peak_kb")[-1].split()[0])
    return peak_kb / 1024, max(children.values(), default=0) / 1024, wall


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
