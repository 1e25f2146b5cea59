"""Config errors: one clear message naming the file and the field, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from judge_arena.cli import EXIT_BAD_INPUT, main
from judge_arena.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def _write_config(folder: Path, **overrides: object) -> Path:
    suite = folder / "suite.jsonl"
    suite.write_text('{"id": "q1", "category": "math", "turns": ["What is 2+2?"]}\n')
    config: dict[str, object] = {
        "name": "t",
        "suites": [{"path": "suite.jsonl"}],
        "candidates": [
            {"name": "a", "model": "openai/sim-strong-plain", "api_base": "simulator"},
            {"name": "b", "model": "openai/sim-markdown-weak", "api_base": "simulator"},
        ],
        "judges": [
            {
                "name": "j",
                "model": "openai/sim-judge",
                "api_base": "simulator",
                "template": str(ROOT / "prompts/judge_pairwise.yaml"),
            }
        ],
        "runner": {"cache_dir": "cache", "output_dir": "runs"},
    }
    config.update(overrides)
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_valid_config_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    config = load_config(_write_config(tmp_path))
    assert config.suites[0].path == tmp_path / "suite.jsonl"
    assert config.runner.cache_dir == tmp_path / "cache"
    assert config.normalizations == ["raw", "plain"]
    assert config.uses_simulator


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"candidates": [{"name": "a", "model": "openai/x"}]},
            "field 'candidates': List should have at least 2",
        ),
        ({"judges": [{"name": "j"}]}, "field 'judges.0.model': Field required"),
        (
            {"pairing": {"mode": "round-robin"}},
            "field 'pairing.mode': Input should be 'all-pairs' or 'vs-baseline'",
        ),
        ({"pairing": {"mode": "vs-baseline"}}, "pairing.baseline: required"),
        ({"pairing": {"mode": "vs-baseline", "baseline": "zz"}}, "pairing.baseline: 'zz' is not a candidate"),
        (
            {"rating": {"bootstrap_rounds": 10}},
            "field 'rating.bootstrap_rounds': Input should be greater than or equal to 100",
        ),
        ({"rating": {"seeed": 1}}, "field 'rating.seeed': Extra inputs are not permitted"),
        ({"normalizations": ["raw", "shouty"]}, "normalizations: unknown ['shouty']"),
        ({"suites": [{"path": "missing.jsonl"}]}, "field 'suites.0.path': file not found"),
        (
            {
                "candidates": [
                    {"name": "a", "model": "openai/x", "params": {"api_key": "x"}},
                    {"name": "b", "model": "openai/y"},
                ]
            },
            "field 'candidates.0.params': Value error, ['api_key'] cannot be set in params",
        ),
        (
            {
                "candidates": [
                    {"name": "a", "model": "openai/x", "api_key_env": "JA_TEST_UNSET_KEY"},
                    {"name": "b", "model": "openai/y"},
                ]
            },
            "field 'candidates.0.api_key_env': environment variable JA_TEST_UNSET_KEY is not set",
        ),
        (
            {"candidates": [{"name": "a", "model": "openai/x"}, {"name": "a", "model": "openai/y"}]},
            "candidates: duplicate names ['a']",
        ),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    path = _write_config(tmp_path, **overrides)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(str(path))
    assert message in str(raised.value)


def test_bad_yaml_and_wrong_top_level(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+: invalid YAML"):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(path)


def test_cli_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path, rating={"bootstrap_rounds": 5})
    before = sorted(tmp_path.iterdir())
    assert main(["run", str(path)]) == EXIT_BAD_INPUT
    assert sorted(tmp_path.iterdir()) == before
    err = capsys.readouterr().err
    assert "rating.bootstrap_rounds" in err and str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_bad_suite_in_a_good_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path)
    (tmp_path / "suite.jsonl").write_text('{"id": "q1", "category": "math", "turns": []}\n')
    assert main(["run", str(path)]) == EXIT_BAD_INPUT
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()
    assert "suite.jsonl" in capsys.readouterr().err
