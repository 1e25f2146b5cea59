"""Config errors: one clear message naming the file and the field, exit code 2, nothing written."""

from __future__ import annotations

import datetime
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from judge_arena.cli import EXIT_BAD_INPUT, main
from judge_arena.config import (
    DATA_DIR,
    DEMO_CONFIG,
    SIMULATOR,
    ArenaConfig,
    BudgetConfig,
    CanaryConfig,
    ConfigError,
    JudgeConfig,
    ModelConfig,
    ModelRunnerConfig,
    Normalization,
    PairingConfig,
    PanelConfig,
    PriceConfig,
    RatingConfig,
    RunnerConfig,
    SuiteConfig,
    builtin_suites,
    builtin_templates,
    check_cache_file,
    config_from_dict,
    load_config,
    read_yaml,
)
from judge_arena.store import Store
from judge_arena.style import NORMALIZATIONS

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
                "template": str(ROOT / "judge_arena/data/templates/pairwise.yaml"),
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
            "field 'candidates': at least 2 are required, got 1 (or a vote file, field 'votes')",
        ),
        ({"judges": [{"name": "j"}]}, "field 'judges.0.model': Field required"),
        (
            {"pairing": {"mode": "round-robin"}},
            "field 'pairing.mode': Input should be 'all-pairs', 'vs-baseline' or 'adaptive'",
        ),
        ({"pairing": {"mode": "vs-baseline"}}, "pairing.baseline: required"),
        ({"pairing": {"mode": "vs-baseline", "baseline": "zz"}}, "pairing.baseline: 'zz' is not a candidate"),
        (
            {"rating": {"bootstrap_rounds": 10}},
            "field 'rating.bootstrap_rounds': Input should be greater than or equal to 100",
        ),
        ({"rating": {"seeed": 1}}, "field 'rating.seeed': Extra inputs are not permitted"),
        ({"normalizations": ["raw", "shouty"]}, "field 'normalizations.1': Input should be 'raw' or 'plain'"),
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
    assert "rating.bootstrap_rounds" in err
    assert str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_bad_suite_in_a_good_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path)
    (tmp_path / "suite.jsonl").write_text('{"id": "q1", "category": "math", "turns": []}\n')
    assert main(["run", str(path)]) == EXIT_BAD_INPUT
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "runs").exists()
    assert "suite.jsonl" in capsys.readouterr().err


def _python_config(**overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "suites": [{"path": "core", "limit": 2}],
        "candidates": [
            {"name": "a", "model": "openai/sim-strong-plain", "api_base": "simulator"},
            {"name": "b", "model": "openai/sim-markdown-weak", "api_base": "simulator"},
        ],
        "judges": [{"name": "j", "model": "openai/sim-judge", "api_base": "simulator"}],
    }
    config.update(overrides)
    return config


def test_config_built_in_python_uses_the_built_in_template_and_stays_in_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = config_from_dict(_python_config())
    assert config.judges[0].template == builtin_templates()["pairwise"] == DATA_DIR / "templates" / "pairwise.yaml"
    assert config.suites[0].path == builtin_suites()["core"]
    assert config.runner.cache_dir == tmp_path / "cache"
    assert config.runner.output_dir == tmp_path / "runs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.jsonl").write_text('{"id": "q1", "category": "math", "turns": ["2 + 2?"]}\n')
    config = config_from_dict(_python_config(suites=[{"path": "mine.jsonl"}]), base_dir=elsewhere)
    assert config.suites[0].path == elsewhere / "mine.jsonl"
    assert config.runner.cache_dir == elsewhere / "cache"
    assert config.source == elsewhere


def test_config_built_in_python_names_the_field_of_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_dict(_python_config(judges=[{"name": "j", "model": "m", "template": "pairwize"}]), tmp_path)
    assert str(raised.value) == (
        f"config: field 'judges.0.template': file not found: {tmp_path / 'pairwize'} "
        "(nor a built-in name: mt-bench, pairwise)"
    )


def test_default_folders_are_inside_the_config_folder(tmp_path: Path) -> None:
    path = _write_config(tmp_path, runner={})
    config = load_config(path)
    assert config.runner.cache_dir == tmp_path / "cache"
    assert config.runner.output_dir == tmp_path / "runs"


def test_a_linked_config_keeps_its_files_beside_the_link(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    link = tmp_path / "configs" / "demo.yaml"
    link.symlink_to(DEMO_CONFIG)
    config = load_config(link)
    assert config.runner.cache_dir == tmp_path / "configs" / "cache"
    assert config.runner.output_dir == tmp_path / "configs" / "runs"
    assert config.source == link


def test_the_repositorys_demo_config_is_the_packaged_one() -> None:
    demo = ROOT / "configs" / "demo.yaml"
    assert demo.resolve() == DEMO_CONFIG
    config = load_config(demo)
    assert config.suites[0].path == builtin_suites()["core"]
    assert config.runner.output_dir == ROOT / "configs" / "runs"


def test_the_packaged_demo_runs_from_any_folder(tmp_path: Path) -> None:
    config = config_from_dict(read_yaml(DEMO_CONFIG), base_dir=tmp_path)
    assert config.name == "demo"
    assert config.uses_simulator
    assert config.judges[0].template == builtin_templates()["pairwise"]
    assert (config.runner.cache_dir, config.runner.output_dir) == (tmp_path / "cache", tmp_path / "runs")


def test_package_data_ships_every_data_file() -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        patterns = tomllib.load(handle)["tool"]["setuptools"]["package-data"]["judge_arena"]
    package = DATA_DIR.parent
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    files = {path for path in DATA_DIR.rglob("*") if path.is_file()}
    assert files
    assert files <= shipped
    assert set(builtin_templates()) == {"mt-bench", "pairwise"}
    assert set(builtin_suites()) == {"core"}


def test_normalizations_are_the_ones_style_knows() -> None:
    assert set(get_args(Normalization)) == set(NORMALIZATIONS)


def test_enabled_canaries_are_named_by_the_config() -> None:
    assert CanaryConfig().enabled == ()
    both = CanaryConfig(null_model=True, injection_probe=True).enabled
    assert both == (CanaryConfig.NULL_MODEL, CanaryConfig.INJECTION_PROBE)


def test_loading_a_config_imports_no_tokenizer_markdown_or_price_map() -> None:
    # The config module once pulled in budget (litellm's price map), defence and style (tiktoken, markdown-it).
    # Counted from after the package's own import, which is not the config's doing.
    code = (
        "import sys, pathlib, judge_arena; before = set(sys.modules); "
        "from judge_arena.config import load_config; "
        f"load_config(pathlib.Path({str(DEMO_CONFIG)!r})); "
        "added = set(sys.modules) - before; "
        "print(sorted(m for m in ('tiktoken', 'markdown_it', 'litellm', 'judge_arena.budget', 'judge_arena.defence', "
        "'judge_arena.style') if m in added))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


MODELS = [
    ArenaConfig,
    SuiteConfig,
    ModelConfig,
    JudgeConfig,
    PriceConfig,
    PairingConfig,
    PanelConfig,
    RatingConfig,
    RunnerConfig,
    CanaryConfig,
    BudgetConfig,
    ModelRunnerConfig,
]


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_config_field_is_described(model: type[BaseModel]) -> None:
    assert model.__doc__
    undescribed = [name for name, field in model.model_fields.items() if not field.description]
    assert undescribed == []


def test_an_existing_cache_must_be_sqlite(tmp_path: Path) -> None:
    cache = tmp_path / "arena.sqlite"
    check_cache_file(cache)  # absent: the store creates it
    cache.write_bytes(b"")
    check_cache_file(cache)  # what SQLite leaves when killed before its first page
    cache.unlink()
    with Store(cache):
        pass
    check_cache_file(cache)
    cache.write_bytes(cache.read_bytes()[:100] + b"\0" * 4000)
    with pytest.raises(ConfigError, match="is a damaged SQLite database"):
        check_cache_file(cache)


def test_params_must_be_json_at_load() -> None:
    config = ModelConfig(name="m", model="openai/x", params={"stop": ["\n"], "extra_body": {"top_k": 5}})
    assert config.params["extra_body"] == {"top_k": 5}
    with pytest.raises(ValidationError, match=r"extra_body\.when: a date is not a JSON value"):
        ModelConfig(name="m", model="openai/x", params={"extra_body": {"when": datetime.date(2024, 1, 1)}})
    with pytest.raises(ValidationError, match=r"logit_bias: key 50256 is not a string"):
        ModelConfig(name="m", model="openai/x", params={"logit_bias": {50256: -100}})


@pytest.mark.parametrize(
    "api_base", ["http://127.0.0.1:8080/v1", "https://api.example.com", "http://[::1]:8000/v1", SIMULATOR]
)
def test_api_base_accepts_urls_and_the_simulator(api_base: str) -> None:
    assert ModelConfig(name="m", model="openai/x", api_base=api_base).api_base == api_base


@pytest.mark.parametrize("api_base", ["localhost 8080", "localhost:8080", "ftp://host", "http://", "http://h:port/v1"])
def test_api_base_refuses_what_is_not_a_url(api_base: str) -> None:
    with pytest.raises(ValidationError, match="api_base"):
        ModelConfig(name="m", model="openai/x", api_base=api_base)
