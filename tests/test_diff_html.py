"""`judge-arena diff --html`: the diff of two runs as one self-contained page, safe with hostile names, checked in
headless Chromium with the network off (tests/chromium.py)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from chromium import Browser, launch, needs_chromium
from markupsafe import escape

from judge_arena.arena import load_inputs, play_arena
from judge_arena.cli import EXIT_BAD_INPUT, EXIT_FAILURES, main
from judge_arena.config import load_config
from judge_arena.diff import ALL, DiffResult, GateResult, RatingChange, StyleShift
from judge_arena.report.diff import change_text, diff_markdown
from judge_arena.report.files import write_report
from judge_arena.report.html import forest_plot, render_diff_report
from judge_arena.views import rate_views

MODEL = "</script><img src=x onerror=\"window.__planted = 1; document.title = 'pwned'\">"
"""The candidate made worse on the second night: its name tries to end a script block and plant an image."""
JUDGE = 'judge"><svg onload="window.__planted = 2"></svg><a href=\'javascript:window.__planted = 3\'>j</a>'
"""A judge name that tries to break out of an attribute."""
PROMPTS = 20
"""Enough prompts for every view's board, the style-controlled one included, and for the category's own board."""
CATEGORY = "<script>window.__planted = 4</script>maths & more"
"""The suite's one category: every prompt's, so that it gets a board of its own."""


@dataclass(frozen=True)
class Nights:
    runs: Path
    first: Path
    second: Path


def _config(folder: Path, model: str, gates: list[dict[str, Any]]) -> Path:
    prompts = [{"id": f"p{k}", "category": CATEGORY, "turns": [f"Explain idea {k} briefly."]} for k in range(PROMPTS)]
    suite = folder / "suite.jsonl"
    suite.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    served = {"api_base": "simulator"}
    config = {
        "name": "nightly",
        "suites": [{"path": str(suite)}],
        "candidates": [
            {"name": "strong", "model": "openai/sim-strong-markdown", **served},
            {"name": "base", "model": "openai/sim-mid-plain", **served},
            {"name": MODEL, "model": model, **served},
        ],
        "judges": [{"name": JUDGE, "model": "openai/sim-judge", "template": "pairwise", **served}],
        "pairing": {"mode": "vs-baseline", "baseline": "base"},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
        "gates": gates,
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Nights:
    """Two simulated nights on one cache: on the second, the hostile-named candidate's model is much weaker (only
    its answers and games are played again) and the config gates it."""
    folder = tmp_path_factory.mktemp("nights")
    written = []
    for model, gates in (
        ("openai/sim-good-terse", []),
        ("openai/sim-weak-terse", [{"model": MODEL, "max_drop": 25, "views": ["plain"]}]),
    ):
        inputs = load_inputs(load_config(_config(folder, model, gates)))
        run = asyncio.run(play_arena(inputs))
        written.append(write_report(run, rate_views(inputs.config, run.battles, run.answers)))
    return Nights(folder / "runs", written[0], written[1])


@pytest.fixture(scope="module")
def diff_page(nights: Nights, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """`judge-arena diff --json --html`: the page and the JSON printed beside it."""
    page = tmp_path_factory.mktemp("diff") / "diff.html"
    args = ["diff", str(nights.first), str(nights.second), "--rounds", "30", "--json", "--html", str(page)]
    with pytest.MonkeyPatch.context() as patch:
        printed: list[str] = []
        patch.setattr("builtins.print", lambda text, **_: printed.append(text))
        # The gate in the second night's config fails: the page changes nothing about the exit code.
        assert main(args) == EXIT_FAILURES
    return page, json.loads("".join(printed))


# ---------------------------------------------------------------------------------------------- files, no browser


def _tiny_diff(method: str = "paired") -> tuple[DiffResult, list[GateResult]]:
    change = RatingChange(JUDGE, "raw", ALL, MODEL, 1100.0, 1000.0, -100.0, -140.0, -60.0, 1, 2, 1, 2, "worse")
    diff = DiffResult(
        old="old-run",
        new="new-run",
        method=method,  # type: ignore[arg-type]
        shared_prompts=20 if method == "paired" else 0,
        old_prompts=20,
        new_prompts=20,
        rounds=100,
        anchor=None,
        changes=(change, RatingChange(JUDGE, "raw", CATEGORY, MODEL, 1100, 1000, -100, -150, -50, 1, 2, 1, 2, "worse")),
        style_shifts=(StyleShift(JUDGE, MODEL, 40.0, 90.0, 50.0, 10.0, 80.0, "better"),),
        gaps=(),
        notes=(f"{JUDGE}/plain: {MODEL} in only one run, not compared",),
    )
    return diff, [GateResult(f"{MODEL}:max_drop=25", False, (f"{MODEL} fell 100 points in {JUDGE}/raw",))]


def _data_block(page: str) -> Any:
    (block,) = re.findall(r'<script type="application/json" id="diff-data">(.*?)</script>', page, re.DOTALL)
    return json.loads(block)


def test_hostile_names_are_escaped_in_text_attributes_and_the_embedded_json() -> None:
    diff, gates = _tiny_diff()
    page = render_diff_report(diff, gates)
    for fragment in ("<img", "<svg onload", "<a href='javascript", "<script>window", '"><svg'):
        assert fragment not in page
    assert page.count("<script") == 1  # the data block, which no script reads or runs
    assert "script-src 'none'" in page
    assert f'data-judge="{escape(JUDGE)}"' in page
    assert f'data-model="{escape(MODEL)}"' in page
    data = _data_block(page)
    assert data["changes"][0]["model"] == MODEL
    assert data["gates"][0]["failures"] == [f"{MODEL} fell 100 points in {JUDGE}/raw"]


def test_the_markdown_summary_shows_hostile_names_as_text() -> None:
    text = diff_markdown(*_tiny_diff())
    outside_code = re.sub(r"`[^`\n]*`", "", text)  # a code span shows its text as written
    for fragment in ("<img", "<svg", "<a href", "<script"):
        assert fragment not in outside_code
    assert "- **&lt;/script&gt;&lt;img src=x onerror=" in text
    assert f"{JUDGE}/raw".replace("<", "&lt;").replace(">", "&gt;") in text
    # Each heading is a paragraph of its own, also when it has nothing to list.
    unchanged = diff_markdown(replace(_tiny_diff()[0], changes=()))
    assert "**Significantly worse:** nothing.\n\n**Significantly better:** nothing." in unchanged


def test_the_page_says_whether_intervals_are_paired_or_independent() -> None:
    assert "paired bootstrap over the prompts (20 shared)" in render_diff_report(*_tiny_diff("paired"))
    assert "independent bootstraps (20 and 20 prompts, 0 shared)" in render_diff_report(*_tiny_diff("independent"))


def test_a_change_rounding_to_zero_reads_as_zero_not_minus_zero() -> None:
    assert change_text(-0.2, -0.4, 0.3) == "0 [0, 0]"
    assert change_text(-12.6, -30.2, 4.5) == "-13 [-30, +4]"


def test_a_change_plot_draws_its_zero_line_even_when_every_change_is_below_it() -> None:
    plot = forest_plot([("m", -50.0, -80.0, -20.0)], "changes", colors={}, reference=0.0)
    assert [s for s in plot.shapes if ("class", "reference") in s.attrs]


def test_the_command_writes_the_page_and_its_json_is_what_json_prints(
    diff_page: tuple[Path, dict[str, Any]],
) -> None:
    page, printed = diff_page
    text = page.read_text()
    assert _data_block(text) == printed
    (gate,) = printed["gates"]
    assert not gate["passed"]
    assert MODEL not in text  # escaped everywhere
    assert escape(gate["failures"][0]) in text
    assert not list(page.parent.glob(".*partial"))


def test_bad_input_writes_no_page(nights: Nights, tmp_path: Path) -> None:
    page = tmp_path / "diff.html"
    runs = [str(nights.first), str(nights.second), "--rounds", "5"]
    assert main(["diff", *runs, "--gate", "strong:max_drop=x", "--html", str(page)]) == EXIT_BAD_INPUT
    assert main(["diff", *runs, "--html", str(tmp_path / "no-such-folder" / "diff.html")]) == EXIT_BAD_INPUT
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    yield from launch(tmp_path_factory)


@needs_chromium
def test_the_diff_page_in_a_browser(browser: Browser, diff_page: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, printed = diff_page
    browser.open(page)
    assert browser.errors() == []
    assert browser.requests() == [page.resolve().as_uri()]
    shown = browser.eval(
        "({planted: typeof window.__planted, title: document.title,"
        " markup: document.querySelectorAll('main img, main a, main script, main foreignObject').length,"
        " cards: Array.from(document.querySelectorAll('#changes article.change')).map(a => [a.dataset.judge,"
        "   a.dataset.view, a.querySelectorAll('svg.plot circle').length,"
        "   a.querySelectorAll('svg line.reference').length,"
        "   a.querySelector('svg.plot').getBBox().width]),"
        " worse: Array.from(document.querySelectorAll('#changes tr.sig-worse')).map(r => r.cells[0].textContent),"
        " gates: Array.from(document.querySelectorAll('#gates tbody tr')).map(r => [r.cells[1].textContent.trim(),"
        "   Array.from(r.querySelectorAll('li')).map(li => li.textContent)]),"
        " categories: Array.from(document.querySelectorAll('details.category-group')).map(d => d.dataset.key),"
        " shifts: document.querySelectorAll('#style svg.plot circle').length})"
    )
    assert shown["planted"] == "undefined"
    assert shown["title"] == f"judge-arena diff · {printed['old']} → {printed['new']}"
    assert shown["markup"] == 0
    # A card per view, each plotting the three models around a zero line; the model made worse is highlighted in
    # every view, and its name reads back exactly as written.
    assert [card[:2] for card in shown["cards"]] == [[JUDGE, "raw"], [JUDGE, "plain"], [JUDGE, "raw+sc"]]
    assert all(circles == 3 and zero == 1 and width > 100 for *_, circles, zero, width in shown["cards"])
    assert shown["worse"] == [MODEL] * 3
    assert shown["gates"] == [["FAIL", printed["gates"][0]["failures"]]]
    assert shown["categories"] == [f"{JUDGE} / {view}" for view in ("raw", "plain", "raw+sc")]
    assert shown["shifts"] == 3
    screenshot = browser.screenshot(tmp_path / "diff.png")
    assert screenshot.stat().st_size > 10_000
