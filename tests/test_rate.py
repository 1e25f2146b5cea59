"""`judge-arena rate BATTLES`: the boards a run gets, fitted from a battles file made elsewhere."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from judge_arena.cli import EXIT_BAD_INPUT, EXIT_OK, main
from judge_arena.config import RatingConfig, load_config
from judge_arena.pipeline import ArenaResult, rate_battles, run_arena
from judge_arena.runs import list_runs, load_run
from judge_arena.sim import SimulatorServer
from judge_arena.views import battles_frame, with_style_features

BOARD = ["model", "rating", "lower", "upper", "win_rate", "win_rate_lower", "win_rate_upper", "rank", "position"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArenaResult]:
    folder = tmp_path_factory.mktemp("run")
    config = {
        "name": "source",
        "suites": [{"path": "core", "limit": 12}],
        "candidates": [
            {"name": "strong", "model": "openai/sim-strong-plain", "api_base": "simulator"},
            {"name": "md-weak", "model": "openai/sim-markdown-weak", "api_base": "simulator"},
            {"name": "md-strong", "model": "openai/sim-strong-markdown", "api_base": "simulator"},
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator"}],
        "normalizations": ["raw", "plain"],
        "pairing": {"baseline": "strong"},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    (folder / "arena.yaml").write_text(yaml.safe_dump(config))
    with SimulatorServer() as sim:
        yield run_arena(load_config(folder / "arena.yaml"), simulator_url=sim.url)


def _arena_records(result: ArenaResult) -> list[dict[str, Any]]:
    """The run's raw battles in Chatbot Arena's layout: a strong verdict written as that many battles, the style
    features in conv_metadata as FastChat's style control reads them (counts per header level, list kind, bold mark)."""
    raw = [b for b in result.run.battles if b.normalization == "raw" and b.winner is not None]
    frame = with_style_features(battles_frame(raw), result.run.answers)
    records = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        metadata: dict[str, Any] = {}
        for side in "ab":
            headers = int(row[f"headers_{side}"])
            metadata |= {
                f"sum_assistant_{side}_tokens": int(row[f"tokens_{side}"]),
                f"header_count_{side}": {"h1": headers // 2, "h2": headers - headers // 2, "h3": 0},
                f"list_count_{side}": {"ordered": 0, "unordered": int(row[f"lists_{side}"])},
                f"bold_count_{side}": {"**": int(row[f"bold_{side}"]), "__": 0},
            }
        winner = "tie (bothbad)" if row["winner"] == "tie" and i % 2 else row["winner"]
        record = {
            "question_id": row["prompt_id"],
            "model_a": row["model_a"],
            "model_b": row["model_b"],
            "winner": winner,
            "category": row["category"],
            "judge": f"arena_user_{i}",
            "conv_metadata": metadata,
        }
        records += [record] * round(row["weight"])
    return records


def _write(records: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(records))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    elif path.suffix == ".parquet":
        pd.DataFrame(records).to_parquet(path)
    else:  # a flattened CSV: each count a plain number at the top level
        rows = [{**{k: v for k, v in r.items() if k != "conv_metadata"}, **_flat(r["conv_metadata"])} for r in records]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def _flat(metadata: dict[str, Any]) -> dict[str, int]:
    return {key: sum(value.values()) if isinstance(value, dict) else value for key, value in metadata.items()}


def _board(boards: pd.DataFrame, view: str) -> pd.DataFrame:
    return boards[boards["view"] == view][BOARD].reset_index(drop=True)


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet", ".csv"])
def test_a_chatbot_arena_file_with_style_columns_reproduces_the_runs_style_controlled_fit(
    run: ArenaResult, tmp_path: Path, suffix: str
) -> None:
    path = _write(_arena_records(run), tmp_path / f"battles{suffix}")
    output = tmp_path / "runs"
    code = main(["rate", str(path), "--baseline", "strong", "--output-dir", str(output), "--name", "arena"])
    assert code == EXIT_OK
    rated = load_run(list_runs(output)[-1].path)
    source = load_run(run.folder)
    assert set(rated.boards["view"]) == {"raw", "raw+sc"}
    assert set(rated.boards["judge"]) == {"votes"}
    for view in ("raw", "raw+sc"):
        pd.testing.assert_frame_equal(_board(rated.boards, view), _board(source.boards, view), atol=1e-6, rtol=0)
    coefficients = pd.DataFrame(rated.summary["views"][1]["coefficients"])
    assert list(coefficients["name"]) == ["tokens", "headers", "lists", "bold"]
    expected = pd.DataFrame(source.summary["views"][2]["coefficients"])
    pd.testing.assert_frame_equal(coefficients, expected, atol=1e-6, rtol=0)
    fitted = rated.categories[rated.categories["note"].isna()]
    assert not fitted.empty


def test_a_runs_own_battles_give_back_every_view(run: ArenaResult, tmp_path: Path) -> None:
    rated = rate_battles(run.folder, RatingConfig(), baseline="strong", output_dir=tmp_path, name="again")
    source, again = load_run(run.folder).boards, load_run(rated.folder).boards
    assert set(again["view"]) == {"raw", "plain", "raw+sc"}
    for view in ("raw", "plain", "raw+sc"):
        pd.testing.assert_frame_equal(_board(again, view), _board(source, view), atol=1e-6, rtol=0)


def test_mt_bench_human_judgments_are_rated_per_turn_with_their_measured_style(tmp_path: Path) -> None:
    def conversation(answers: list[str]) -> list[dict[str, str]]:
        return [m for a in answers for m in ({"role": "user", "content": "Q"}, {"role": "assistant", "content": a})]

    answers = {"x": ["# Title\n\n**bold** long answer " * 3, "- a list\n- of items"], "y": ["short", "plain"]}
    answers["z"] = ["middle answer", "## header\nmiddle"]
    records = []
    for question in range(101, 111):
        for turn in (1, 2):
            for model_a, model_b, winner in (("x", "y", "model_a"), ("y", "z", "tie"), ("z", "x", "model_b")):
                flip = (question + turn) % 3 == 0
                records.append(
                    {
                        "question_id": question,
                        "model_a": model_a,
                        "model_b": model_b,
                        "winner": "model_a" if flip and winner == "model_b" else winner,
                        "judge": f"expert_{question % 4}",
                        "turn": turn,
                        "category": "math" if question < 106 else "writing",
                        "conversation_a": conversation(answers[model_a]),
                        "conversation_b": conversation(answers[model_b]),
                    }
                )
    path = tmp_path / "human.json"
    path.write_text(json.dumps(records))
    rated = rate_battles(path, RatingConfig(style_control="length"), output_dir=tmp_path, name="mtb")
    assert [view.label for view in rated.views] == ["raw", "raw+sc"]
    styled = rated.views[1]
    assert styled.board is not None
    assert set(styled.by_turn) == {"1", "2"}
    assert set(styled.by_category) == {"math", "writing"}
    # Turn 1 measures the first answer only: x's first answer is the longer one.
    first = rated.battles[(rated.battles["turn"] == 1) & (rated.battles["model_a"] == "x")]
    second = rated.battles[(rated.battles["turn"] == 2) & (rated.battles["model_a"] == "x")]
    assert (first["tokens_a"] > first["tokens_b"]).all()
    assert (second["tokens_a"].to_numpy() > first["tokens_a"].to_numpy()).all()


@pytest.mark.parametrize(
    ("content", "place", "message"),
    [
        ('[{"model_a": "x", "model_b": "y"}]', "item 1", "field 'winner': must be one of"),
        ('{"model_a": "x", "model_b": "y", "winner": "A>B"}\n', "line 1", "field 'winner': must be one of"),
        ('{"model_a": "x", "model_b": "x", "winner": "tie"}\n', "line 1", "field 'model_b': the same model"),
        (
            '{"model_a": "x", "model_b": "y", "winner": "tie", "conv_metadata": {"sum_assistant_a_tokens": -1, '
            '"sum_assistant_b_tokens": 2}}\n',
            "line 1",
            "field 'conv_metadata.sum_assistant_a_tokens': must be a whole number >= 0",
        ),
        ('{"model_a": "x", "model_b": "y", "winner": "tie", "turn": 0}\n', "line 1", "field 'turn'"),
        (
            '{"model_a": "x", "model_b": "y", "winner": "tie", "conversation_a": [{"role": "assistant", "content": '
            '"A"}], "conversation_b": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]}\n',
            "line 1",
            "field 'conversation_a[0].role': must be 'user'",
        ),
    ],
)
def test_bad_input_exits_2_naming_file_place_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, place: str, message: str
) -> None:
    path = tmp_path / ("battles.json" if content.startswith("[") else "battles.jsonl")
    path.write_text(content)
    assert main(["rate", str(path), "--output-dir", str(tmp_path / "runs")]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert f"{path} {place}: {message}" in " ".join(error.split())
    assert not (tmp_path / "runs").exists()


def test_a_baseline_the_file_does_not_know_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.csv"
    path.write_text("model_a,model_b,winner\nx,y,model_a\ny,x,tie\n")
    assert main(["rate", str(path), "--baseline", "z", "--output-dir", str(tmp_path / "runs")]) == EXIT_BAD_INPUT
    assert "baseline 'z' is not a model of the file" in capsys.readouterr().err
