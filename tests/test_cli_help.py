"""The command documents itself: every subcommand's --help describes each option and lists its exit codes."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from judge_arena.cli import _parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (commands,) = (a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_is_described_and_the_exit_codes_are_listed(name: str) -> None:
    command = _subcommands()[name]
    undocumented = [a.dest for a in command._actions if not a.help or a.help == argparse.SUPPRESS]
    assert undocumented == []
    assert command.epilog is not None
    assert command.epilog.startswith("exit codes:")
    assert " 0  " in command.epilog


def test_help_exits_0_and_shows_the_exit_codes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "judge_arena", "run", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    assert "exit codes:" in done.stdout
    assert "130" in done.stdout
