"""The package as a user gets it: a wheel built from the repository, installed in a fresh virtualenv, runs a config
in an empty folder with the built-in template and suite, and keeps its files in that folder."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CONFIG = textwrap.dedent(
    """\
    name: from-wheel
    suites: [{path: core, limit: 3}]
    candidates:
      - {name: strong, model: openai/sim-strong-plain, api_base: simulator}
      - {name: weak, model: openai/sim-weak-verbose, api_base: simulator}
    judges:
      - {name: judge, model: openai/sim-judge, api_base: simulator, template: pairwise}
    """
)


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel; its dependencies come from this environment's site-packages, read
    through a .pth line (which does not load this environment's editable install of judge_arena)."""
    root = tmp_path_factory.mktemp("wheel")
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", root, REPO, cwd=root)
    assert built.returncode == 0, built.stderr
    (wheel,) = root.glob("judge_arena-*.whl")
    venv = root / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    packages = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root)
    Path(packages.stdout.strip(), "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=root)
    assert pip.returncode == 0, pip.stderr
    return venv


def test_the_installed_package_is_the_wheel_not_the_repository(installed: Path, tmp_path: Path) -> None:
    done = _run(installed / "bin" / "python", "-c", "import judge_arena; print(judge_arena.__file__)", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed)


def test_a_config_in_an_empty_folder_runs_with_the_built_in_template(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "arena.yaml").write_text(CONFIG)
    done = _run(installed / "bin" / "judge-arena", "run", "arena.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arena.yaml", "cache", "runs"]
    (folder,) = (tmp_path / "runs").iterdir()
    assert (folder / "leaderboard.csv").is_file()


def test_python_m_and_version_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    done = _run(installed / "bin" / "python", "-m", "judge_arena", "--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("judge-arena ")


def test_the_demo_command_runs_from_the_wheel_in_any_folder(installed: Path, tmp_path: Path) -> None:
    done = _run(installed / "bin" / "judge-arena", "demo", tmp_path / "here", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (tmp_path / "here").iterdir()) == ["cache", "runs"]
    (folder,) = (tmp_path / "here" / "runs").iterdir()
    assert (folder / "report.html").is_file()
