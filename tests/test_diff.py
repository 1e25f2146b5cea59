"""`judge-arena diff` on two simulated nights: the model made worse is flagged, and no other; gates and outputs."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from judge_arena.arena import load_inputs, play_arena
from judge_arena.cli import main
from judge_arena.config import Gate, load_config
from judge_arena.diff import ALL, DiffResult, Gap, RatingChange, diff_runs, evaluate_gates, parse_gate
from judge_arena.report.diff import diff_markdown
from judge_arena.report.files import write_report
from judge_arena.runs import load_run
from judge_arena.sim.models import CANDIDATES
from judge_arena.views import rate_views

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = str(ROOT / "judge_arena/data/templates/pairwise.yaml")
CHANGED = "candidate"
"""The candidate whose model is replaced by a much weaker one on the second night."""


@dataclass(frozen=True)
class Nights:
    root: Path
    first: Path
    second: Path
    config: Path


def _suite(path: Path) -> Path:
    """Two categories of 20 prompts: each gets a board of its own."""
    prompts = [
        {"id": f"{category}{k}", "category": category, "turns": [f"How should I approach {category} task {k}?"]}
        for category in ("coding", "writing")
        for k in range(20)
    ]
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return path


def _config(folder: Path, candidate_model: str, gates: list[dict[str, object]] | None = None) -> Path:
    simulated = {"api_base": "simulator"}
    config = {
        "name": "nightly",
        "suites": [{"path": str(_suite(folder / "suite.jsonl"))}],
        "candidates": [
            {"name": "strong", "model": "openai/sim-strong-markdown", **simulated},
            {"name": "base", "model": "openai/sim-mid-plain", **simulated},
            {"name": CHANGED, "model": candidate_model, "api_key_env": "NIGHTLY_TEST_KEY", **simulated},
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "template": TEMPLATE} | simulated],
        "pairing": {"mode": "vs-baseline", "baseline": "base"},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
        "gates": gates or [],
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _night(config: Path) -> Path:
    inputs = load_inputs(load_config(config))
    run = asyncio.run(play_arena(inputs))
    return write_report(run, rate_views(inputs.config, run.battles, run.answers), config)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Nights:
    assert CANDIDATES["sim-weak-terse"].quality < CANDIDATES["sim-good-terse"].quality - 0.3
    folder = tmp_path_factory.mktemp("nights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NIGHTLY_TEST_KEY", "sk-secret-value-never-written")
        first = _night(_config(folder, "openai/sim-good-terse"))
        gates = [{"model": CHANGED, "max_drop": 25, "views": ["plain", "raw+sc"]}]
        config = _config(folder, "openai/sim-weak-terse", gates)
        second = _night(config)
    return Nights(folder / "runs", first, second, config)


@pytest.fixture(scope="module")
def paired(nights: Nights) -> DiffResult:
    return diff_runs(load_run(nights.first), load_run(nights.second))


def test_only_the_model_made_worse_is_flagged_and_in_every_view(paired: DiffResult) -> None:
    assert paired.method == "paired"
    assert paired.shared_prompts == 40
    worse = paired.significant("worse")
    assert {c.model for c in worse} == {CHANGED}
    assert {c.view for c in worse if c.category == ALL} == {"raw", "plain", "raw+sc"}
    assert paired.significant("better") == []
    assert {(c.view, c.category) for c in paired.changes} >= {
        (view, category) for view in ("raw", "plain", "raw+sc") for category in (ALL, "coding", "writing")
    }
    moved = [c for c in paired.changes if c.model == CHANGED and c.category == ALL]
    # Views in the order the boards show them, not alphabetical (which put plain first).
    assert list(dict.fromkeys(c.view for c in paired.changes)) == ["raw", "plain", "raw+sc"]
    assert all(c.change < -100 and c.upper < 0 for c in moved)
    assert all(c.new_position >= c.old_position for c in moved)


def test_paired_intervals_are_narrower_than_independent_ones_on_shared_prompts(nights: Nights) -> None:
    old, new = load_run(nights.first), load_run(nights.second)
    paired = diff_runs(old, new, method="paired")
    independent = diff_runs(old, new, method="independent")
    assert independent.method == "independent"

    def widths(diff: DiffResult) -> dict[tuple[str, str], float]:
        return {(c.view, c.model): c.upper - c.lower for c in diff.changes if c.category == ALL}

    narrow, wide = widths(paired), widths(independent)
    # `strong` played the same games both nights: paired, its change is exactly known; apart, it is not.
    for view in ("raw", "plain"):
        assert narrow[(view, "strong")] < wide[(view, "strong")]
    assert sum(narrow.values()) < sum(wide.values())
    assert {c.model for c in independent.significant("better")} <= {CHANGED} | set()


def test_style_shift_is_reported_per_model(paired: DiffResult) -> None:
    shifts = {s.model: s for s in paired.style_shifts}
    assert set(shifts) == {"strong", "base", CHANGED}
    # The markdown candidate gains from its formatting with a markdown-biased judge, both nights.
    assert shifts["strong"].old > 0
    assert shifts["strong"].new > 0


def test_gates_hold_or_fail_with_each_failure_named(paired: DiffResult) -> None:
    failing, holding, relative = evaluate_gates(
        paired,
        [
            parse_gate(f"{CHANGED}:max_drop=25:views=plain,raw+sc"),
            parse_gate("strong:max_drop=25"),
            parse_gate(f"{CHANGED}:not_significantly_worse_than=base:views=plain"),
        ],
    )
    assert not failing.passed
    assert len(failing.failures) == 2
    assert all(CHANGED in f for f in failing.failures)
    assert {"judge/plain", "judge/raw+sc"} == {f.split(" in ")[1].split(" ")[0] for f in failing.failures}
    # `strong` moves only in raw+sc, where every covariate's standardization changed with the new answers: a
    # fall larger than 25 there whose interval spans zero is noise, and does not fail the gate.
    noisy = [c for c in paired.changes if c.model == "strong" and c.category == ALL and c.change < -25]
    assert noisy
    assert all(c.significance == "none" for c in noisy)
    assert holding.passed
    assert holding.failures == ()
    assert not relative.passed
    assert "below base" in relative.failures[0]


@pytest.mark.parametrize(
    "spec",
    ["", "m", "m:max_drop", "m:max_drop=-3", "m:max_drop=x", "m:colour=blue", "m:views=plain"],
)
def test_a_malformed_gate_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="gate"):
        parse_gate(spec)


def test_a_gate_on_a_model_or_view_the_runs_lack_is_bad_input(paired: DiffResult) -> None:
    with pytest.raises(ValueError, match="nobody"):
        evaluate_gates(paired, [Gate(model="nobody", max_drop=1)])
    with pytest.raises(ValueError, match="sepia"):
        evaluate_gates(paired, [Gate(model="strong", max_drop=1, views=["sepia"])])


def test_markdown_names_the_model_that_got_worse(paired: DiffResult) -> None:
    text = diff_markdown(paired, evaluate_gates(paired, [parse_gate(f"{CHANGED}:max_drop=25")]))
    worse, better = text.split("**Significantly worse:**")[1].split("**Significantly better:**")
    assert f"**{CHANGED}**" in worse
    assert "judge/plain" in worse
    assert "strong" not in worse
    assert "nothing" in better
    assert f"❌ `{CHANGED}:max_drop=25`" in text


def test_diff_command_exit_codes(nights: Nights, capsys: pytest.CaptureFixture[str]) -> None:
    runs = ["--runs-dir", str(nights.root)]
    # The new run's config carries a gate on the model made worse: exit 1, naming it.
    assert main(["diff", str(nights.first), "latest:nightly", *runs, "--markdown"]) == 1
    assert f"**{CHANGED}**" in capsys.readouterr().out
    # Old against itself: nothing moves, every gate holds.
    assert (
        main(
            [
                "diff",
                nights.first.name,
                nights.first.name,
                *runs,
                "--gate",
                "strong:max_drop=1",
                "--json",
                "--rounds",
                "20",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["method"] == "paired"
    assert [g["passed"] for g in payload["gates"]] == [True]
    assert all(c["change"] == pytest.approx(0) for c in payload["changes"])
    # Bad input: an unknown run, a malformed gate, a gate on a model the runs lack.
    assert main(["diff", "no-such-run", "latest", *runs]) == 2
    assert main(["diff", nights.first.name, nights.first.name, *runs, "--gate", "strong:max_drop=x"]) == 2
    assert main(["diff", nights.first.name, nights.first.name, *runs, "--gate", "nobody:max_drop=1"]) == 2
    capsys.readouterr()
    # The terminal table.
    assert (
        main(["diff", nights.first.name, nights.second.name, *runs, "--gate", "strong:max_drop=25", "--rounds", "30"])
        == 1
    )
    out = capsys.readouterr().out
    assert "judge / plain" in out
    assert "worse" in out
    assert "FAIL" in out


def test_a_model_only_in_the_new_run_can_be_gated_against_another() -> None:
    # Pre-release: the new model was not in the production run, so it has no change, only gaps in the new run.
    prod = RatingChange("judge", "plain", ALL, "prod", 1100, 1100, 0, 0, 0, 1, 1, 1, 1, "none")
    diff = DiffResult(
        old="prod-run",
        new="prerelease-run",
        method="paired",
        shared_prompts=40,
        old_prompts=40,
        new_prompts=40,
        rounds=100,
        anchor=None,
        changes=(prod,),
        style_shifts=(),
        gaps=(Gap("judge", "plain", "new-model", "prod", -80, -130, -20),),
        notes=(),
    )
    (below,) = evaluate_gates(diff, [parse_gate("new-model:not_significantly_worse_than=prod")])
    assert not below.passed
    assert "new-model is significantly below prod in judge/plain" in below.failures[0]
    (above,) = evaluate_gates(diff, [parse_gate("prod:not_significantly_worse_than=new-model")])
    assert above.passed
    with pytest.raises(ValueError, match="not in both runs"):
        evaluate_gates(diff, [parse_gate("new-model:max_drop=10")])


@pytest.mark.parametrize("battles", ["none", "undecided"])
def test_a_run_without_decided_battles_is_named_as_bad_input(
    nights: Nights, tmp_path: Path, capsys: pytest.CaptureFixture[str], battles: str
) -> None:
    empty = tmp_path / "nightly-20260101-000000"
    shutil.copytree(nights.first, empty)
    table = pd.read_csv(empty / "battles.csv", dtype=str, keep_default_na=False)
    if battles == "none":
        table = table.iloc[0:0]
    else:
        table["winner"], table["label"] = "", ""  # every verdict left unparsed
    table.to_csv(empty / "battles.csv", index=False)
    for old, new in ((empty, nights.second), (nights.first, empty)):
        capsys.readouterr()
        assert main(["diff", str(old), str(new), "--runs-dir", str(nights.root)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"{empty.name}: battles.csv: no decided battle" in err, err
