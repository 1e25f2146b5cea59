"""`${VAR}` references in a config and `--set PATH=VALUE` overrides: applied before validation, errors exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from judge_arena.cli import EXIT_BAD_INPUT, main
from judge_arena.config import ConfigError, config_from_dict, load_config, parse_override

CONFIG: dict[str, object] = {
    "name": "t",
    "suites": [{"path": "core", "limit": 2}],
    "candidates": [
        {"name": "a", "model": "openai/sim-strong-plain", "api_base": "simulator"},
        {"name": "gpt-4.1", "model": "openai/sim-markdown-weak", "api_base": "simulator"},
    ],
    "judges": [{"name": "j", "model": "openai/sim-judge", "api_base": "simulator"}],
    "runner": {"cache_dir": "cache", "output_dir": "runs"},
}


def _write(folder: Path, config: dict[str, object]) -> Path:
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_references_take_the_environment_or_their_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARENA_MODEL", "sim-good-terse")
    monkeypatch.setenv("ARENA_CONCURRENCY", "3")
    monkeypatch.setenv("ARENA_EMPTY", "")
    monkeypatch.delenv("ARENA_UNSET", raising=False)
    config = {
        **CONFIG,
        "name": "run-${ARENA_UNSET:-nightly}",
        "candidates": [
            {
                "name": "a",
                "model": "openai/${ARENA_MODEL}",
                "api_base": "simulator",
                "system_prompt": "Costs $${HOME} and ${ARENA_EMPTY:-nothing}.",
                "params": {"temperature": "${ARENA_UNSET:-0.5}", "seed": "${ARENA_CONCURRENCY}"},
            },
            {"name": "b", "model": "openai/sim-markdown-weak", "api_base": "simulator"},
        ],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "concurrency": "${ARENA_CONCURRENCY}"},
    }
    loaded = load_config(_write(tmp_path, config))
    assert loaded.name == "run-nightly"
    assert loaded.candidates[0].model == "openai/sim-good-terse"
    assert loaded.candidates[0].system_prompt == "Costs ${HOME} and nothing."
    # A value that is one reference alone is read as YAML: numbers stay numbers where the field takes any value.
    assert loaded.candidates[0].params == {"temperature": 0.5, "seed": 3}
    assert loaded.runner.concurrency == 3


def test_a_reference_in_a_text_field_stays_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARENA_NAME", "0123")
    config = {**CONFIG, "name": "${ARENA_NAME}"}
    assert load_config(_write(tmp_path, config)).name == "0123"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("${ARENA_UNSET}", "field 'candidates.1.model': environment variable ARENA_UNSET is not set"),
        ("${ARENA UNSET}", "field 'candidates.1.model': '${ARENA UNSET}' is not ${VAR} nor ${VAR:-default}"),
        ("openai/${ARENA_UNSET", "field 'candidates.1.model': '${ARENA_UNSET' is not ${VAR}"),
    ],
)
def test_a_bad_reference_names_the_file_and_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
    message: str,
) -> None:
    monkeypatch.delenv("ARENA_UNSET", raising=False)
    candidates = [CONFIG["candidates"][0], {"name": "b", "model": value, "api_base": "simulator"}]  # type: ignore[index]
    path = _write(tmp_path, {**CONFIG, "candidates": candidates})
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    err = " ".join(capsys.readouterr().err.split())
    assert f"{path}: {message}" in err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("variable", "api_key_env"), [("OPENAI_API_KEY", None), ("MY_CREDENTIAL", "MY_CREDENTIAL")])
def test_a_reference_may_not_bring_a_secret_into_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, api_key_env: str | None
) -> None:
    monkeypatch.setenv(variable, "sk-sentinel-0123456789")
    candidate = {"name": "b", "model": "openai/sim-markdown-weak", "api_base": "simulator"}
    if api_key_env is not None:
        candidate["api_key_env"] = api_key_env
    candidate["params"] = {"user": f"${{{variable}}}"}  # type: ignore[assignment]
    candidates = [CONFIG["candidates"][0], candidate]  # type: ignore[index]
    with pytest.raises(
        ConfigError, match=rf"field 'candidates\.1\.params\.user': \$\{{{variable}\}} would write a secret"
    ):
        load_config(_write(tmp_path, {**CONFIG, "candidates": candidates}))


def test_set_overrides_by_name_with_dots_and_by_index(tmp_path: Path) -> None:
    overrides = dict(
        parse_override(spec)
        for spec in (
            "runner.concurrency=8",
            "candidates.gpt-4.1.params.temperature=0",
            "candidates.0.system_prompt=0123",
            "judges.j.params.max_tokens=300",
            "normalizations=[raw]",
            "runner.max_total_s=null",
            "budget.max_usd=2.5",
        )
    )
    assert overrides["candidates.0.system_prompt"] == "0123"  # a text field keeps the text as written
    config = load_config(_write(tmp_path, CONFIG), overrides)
    assert config.runner.concurrency == 8
    assert config.candidates[1].params == {"temperature": 0}
    assert config.candidates[0].system_prompt == "0123"
    assert config.judges[0].params == {"max_tokens": 300}
    assert config.normalizations == ["raw"]
    assert config.runner.max_total_s is None
    assert config.budget is not None
    assert config.budget.max_usd == 2.5
    # The file itself is not changed, nor the data of a config built in Python.
    assert "concurrency" not in (tmp_path / "arena.yaml").read_text()
    data = yaml.safe_load((tmp_path / "arena.yaml").read_text())
    assert config_from_dict(data, tmp_path, {"runner.concurrency": 5}).runner.concurrency == 5
    assert "concurrency" not in data["runner"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("runner.concurency=8", "--set runner.concurency=8: 'runner.concurency' is no config field"),
        ("candidates.a.paramz.t=1", "'candidates.a.paramz' is no config field"),
        ("name.first=x", "'name' holds a value, not fields"),
        ("runner.concurrency", "expected PATH=VALUE"),
    ],
)
def test_set_names_an_unknown_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str) -> None:
    path = _write(tmp_path, CONFIG)
    assert main(["validate", str(path), "--set", spec]) == EXIT_BAD_INPUT
    assert message in " ".join(capsys.readouterr().err.split())


def test_set_is_validated_like_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, CONFIG)
    assert main(["run", str(path), "--set", "runner.concurrency=0", "--set", "name=x"]) == EXIT_BAD_INPUT
    assert "field 'runner.concurrency': Input should be greater than 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert main(["validate", str(path), "--set", "candidates.nobody.model=x"]) == EXIT_BAD_INPUT
    assert "'candidates' has no item named 'nobody'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"override 'judges\.9\.model': 'judges' has no item named '9'"):
        load_config(path, {"judges.9.model": "x"})
