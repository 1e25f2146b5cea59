"""Startup: `judge-arena --help` imports nothing heavy (the command's parser offers choices owned by modules that
import pandas; their names live in a light module, `choices`)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "pyarrow", "numpy", "pydantic", "litellm", "openai", "httpx", "aiohttp")
"""Modules that take tenths of a second or more to import, none needed to print the help."""


def _imported_by(*argv: str) -> list[str]:
    """The heavy modules imported in a fresh interpreter by `judge-arena ARGV`."""
    script = (
        "import sys\n"
        "from judge_arena.cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[-1].split()


def test_help_imports_nothing_heavy() -> None:
    assert _imported_by("--help") == []
    assert _imported_by("metrics", "--help") == []
    assert _imported_by("agreement", "--help") == []


def test_a_run_imports_the_simulator_only_when_it_uses_it() -> None:
    """The simulator's server brings aiohttp (a tenth of a second or more); a run of real models never starts it."""
    script = (
        "import sys\n"
        "import judge_arena.pipeline, judge_arena.report.terminal, judge_arena.cli\n"
        "print(' '.join(m for m in ('aiohttp', 'judge_arena.sim') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_the_simulator_s_ground_truth_comes_without_its_server() -> None:
    """The report of a simulated run reads the ground truth (`sim.models`); only starting the server brings aiohttp."""
    script = (
        "import sys\n"
        "from judge_arena.sim.models import CANDIDATES\n"
        "print('aiohttp' in sys.modules)\n"
        "from judge_arena.sim import SimulatorServer\n"
        "print('aiohttp' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
