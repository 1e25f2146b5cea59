"""Bad input: each malformed config, suite or judge template gets one line naming the file and the field, exit code
2 from `judge-arena run`, and nothing written.

The corpus is `tests/data/bad_inputs/`: one folder per case, holding `config.yaml`, any suite or template it points
to, and `expect.txt`, the start of the expected message, with `{case}` standing for the case's folder and `{shared}`
for `_shared/` (a valid suite and template most cases point to). Every case runs from a copy in tmp_path, so a run
that wrongly started would write there (its cache and runs folders are relative to the config), not in the repo.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
from pathlib import Path
from typing import Any

import pytest

from judge_arena.arena import load_inputs, play_arena
from judge_arena.cli import EXIT_BAD_INPUT, EXIT_OK, main
from judge_arena.config import ConfigError, check_context, load_config
from judge_arena.suites import load_suite

CORPUS = Path(__file__).parent / "data" / "bad_inputs"
SHARED = "_shared"
UNSET_KEY = "JA_BAD_INPUTS_UNSET_KEY"
EMPTY_KEY = "JA_BAD_INPUTS_EMPTY_KEY"

CASES = sorted(folder.name for folder in CORPUS.iterdir() if folder.name != SHARED)


@pytest.fixture(autouse=True)
def _key_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET_KEY, raising=False)
    monkeypatch.setenv(EMPTY_KEY, "")


def _copy(case: str, tmp_path: Path) -> Path:
    shutil.copytree(CORPUS / SHARED, tmp_path / SHARED)
    # symlinks=True: a case may hold a symbolic link (a loop, even), copied as the link itself.
    shutil.copytree(CORPUS / case, tmp_path / case, symlinks=True, ignore=shutil.ignore_patterns("expect.txt"))
    return tmp_path / case


def _expected(case: str, folder: Path) -> str:
    text = (CORPUS / case / "expect.txt").read_text(encoding="utf-8").strip()
    return text.replace("{case}", str(folder)).replace("{shared}", str(folder.parent / SHARED))


def _tree(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*"))


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert (CORPUS / case / "config.yaml").exists(), case
        assert (CORPUS / case / "expect.txt").read_text(encoding="utf-8").startswith("{case}/"), case


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy(case, tmp_path)
    before = _tree(tmp_path)
    code = main(["run", str(folder / "config.yaml")])
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {_expected(case, folder)}"), err
    assert _tree(tmp_path) == before
    assert not (folder / "cache").exists()
    assert not (folder / "runs").exists()


def test_prompt_beyond_a_models_context_is_a_config_error(tmp_path: Path) -> None:
    folder = _copy("prompt_beyond_context", tmp_path)
    config = load_config(folder / "config.yaml")
    suite = config.suites[0].path
    with pytest.raises(ConfigError) as raised:
        check_context(suite, load_suite(suite).prompts, config)
    assert str(raised.value).startswith(_expected("prompt_beyond_context", folder))
    assert len(str(raised.value).splitlines()) == 1


def test_prompts_within_context_pass(tmp_path: Path) -> None:
    folder = _copy("prompt_beyond_context", tmp_path)
    config = load_config(folder / "config.yaml")
    suite = config.suites[0].path
    short = [prompt for prompt in load_suite(suite).prompts if prompt.id == "short"]
    check_context(suite, short, config)


def test_utf8_bom_is_accepted_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = shutil.copytree(CORPUS / SHARED, tmp_path / SHARED)
    config = shared / "config.yaml"
    config.write_text(
        "name: bom\nsuites: [{path: suite.jsonl}]\njudges: [{name: j, model: openai/sim-judge, template: judge.yaml}]\n"
        "candidates: [{name: a, model: openai/sim-strong-plain}, {name: b, model: openai/sim-markdown-weak}]\n",
        encoding="utf-8",
    )
    for path in (config, shared / "suite.jsonl", shared / "judge.yaml"):
        path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8-sig")
    assert main(["validate", str(config)]) == EXIT_OK, capsys.readouterr().err


def test_yaml_merge_keys_may_override_merged_values(tmp_path: Path) -> None:
    shared = shutil.copytree(CORPUS / SHARED, tmp_path / SHARED)
    config = shared / "config.yaml"
    config.write_text(
        "name: merge\nsuites: [{path: suite.jsonl}]\n"
        "judges: [{name: j, model: openai/sim-judge, template: judge.yaml}]\n"
        "candidates:\n  - &a {name: a, model: openai/sim-strong-plain, params: {temperature: 0}}\n"
        "  - {<<: *a, name: b}\n",
        encoding="utf-8",
    )
    assert [c.name for c in load_config(config).candidates] == ["a", "b"]


def test_an_output_folder_that_cannot_be_made_stops_the_run_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy("prompt_beyond_context", tmp_path)
    config_path = folder / "config.yaml"
    config_path.write_text(
        "name: ok\nsuites: [{path: ../_shared/suite.jsonl}]\n"
        "candidates: [{name: a, model: openai/sim-strong-plain, api_base: simulator},"
        " {name: b, model: openai/sim-markdown-weak, api_base: simulator}]\n"
        "judges: [{name: j, model: openai/sim-judge, api_base: simulator, template: ../_shared/judge.yaml}]\n",
        encoding="utf-8",
    )
    inputs = load_inputs(load_config(config_path))
    make_folder = Path.mkdir

    def read_only_runs(path: Path, *args: Any, **kwargs: Any) -> None:
        # What a full disk or a read-only mount does; as root, permissions alone would not stop it.
        if path == inputs.config.runner.output_dir:
            raise OSError(errno.EROFS, "Read-only file system")
        make_folder(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_runs)
    with pytest.raises(ConfigError) as raised:
        asyncio.run(play_arena(inputs))
    assert str(raised.value) == (
        f"{config_path}: field 'runner.output_dir': cannot create {folder / 'runs'}: Read-only file system"
    )
    assert not (folder / "cache").exists()
