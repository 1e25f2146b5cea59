"""report.html and judgments.jsonl: written with every run, safe with hostile answers, checked in headless Chromium.

The browser tests drive Debian's Chromium with the network off (tests/chromium.py): one browser per module, one page
load per report.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from chromium import Browser, launch, needs_chromium

from judge_arena.arena import load_inputs, play_arena
from judge_arena.cli import EXIT_BAD_INPUT, EXIT_OK, main
from judge_arena.config import load_config
from judge_arena.rating import MIN_PROMPTS, leaderboard
from judge_arena.records import Answer
from judge_arena.report.files import write_report
from judge_arena.report.html import (
    _CHAR_WIDTH,
    REPORT_FILE,
    Plot,
    browser_data,
    embed_json,
    forest_plot,
    heatmap,
    render_run_report,
    slope_chart,
    write_html_report,
)
from judge_arena.runs import ANSWER_FIELDS, JSONL_FIELDS, NO_STYLE_CONTROL, RunFolder, load_run, table, write_run
from judge_arena.sim import SimulatorServer

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "judge_arena/data/templates/pairwise.yaml"

PLANTED = (
    "Sure! <script>window.__planted = 1; document.title = 'pwned'</script>"
    "<img src=x onerror=\"window.__planted = 2; document.title = 'pwned'\">"
    '<a href="javascript:window.__planted = 3">click me</a> </script><script>window.__planted = 4</script>'
    " \u2028 <!-- <svg onload=window.__planted=5>"
)
"""An answer, a prompt and a judge reply carrying every way text could try to run inside the page."""


# ------------------------------------------------------------------------------------------------- the run folder


def _suite(path: Path) -> Path:
    """One category with MIN_PROMPTS prompts (so it gets a board) and one with two (a noted category)."""
    prompts = [
        {"id": f"m{k}", "category": "maths", "turns": [f"What is {k} squared, and why?"]} for k in range(MIN_PROMPTS)
    ]
    prompts += [
        {"id": f"w{k}", "category": "writing", "turns": [f"Write a haiku about rain, take {k}."]} for k in (0, 1)
    ]
    assert sum(p["category"] == "maths" for p in prompts) == MIN_PROMPTS
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return path


def _config(folder: Path) -> Path:
    simulated = {"api_base": "simulator"}
    config = {
        "name": "html",
        "suites": [{"path": str(_suite(folder / "suite.jsonl"))}],
        "candidates": [
            {"name": name, "model": f"openai/sim-{name}", **simulated}
            for name in ("strong-plain", "strong-markdown", "markdown-weak")
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "template": str(TEMPLATE)} | simulated],
        "pairing": {"mode": "all-pairs", "baseline": "strong-plain"},
        "rating": {"bootstrap_rounds": 100},
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated run, reported as `judge-arena run` reports it."""
    from judge_arena.views import rate_views

    folder = tmp_path_factory.mktemp("run")
    inputs = load_inputs(load_config(_config(folder)))
    with SimulatorServer() as sim:
        run = asyncio.run(play_arena(inputs, simulator_url=sim.url))
    return write_report(run, rate_views(inputs.config, run.battles, run.answers))


def _rewrite_jsonl(path: Path, change: dict[str, Any], line: int = 0) -> dict[str, Any]:
    records = [json.loads(text) for text in path.read_text().splitlines()]
    records[line].update(change)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return dict(records[line])


@pytest.fixture(scope="module")
def planted_folder(run_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The run folder with hostile text planted in an answer, a prompt and the judge's reply to a game between
    them, its report regenerated with `judge-arena report`; returns the folder and the planted game."""
    folder = tmp_path_factory.mktemp("planted") / run_folder.name
    shutil.copytree(run_folder, folder)
    game = _rewrite_jsonl(folder / "judgments.jsonl", {"reply": f"{PLANTED}\n\nMy final verdict: [[A>B]]"})
    answers = [json.loads(text) for text in (folder / "answers.jsonl").read_text().splitlines()]
    line = next(
        i for i, a in enumerate(answers) if (a["model"], a["prompt_id"]) == (game["model_a"], game["prompt_id"])
    )
    _rewrite_jsonl(folder / "answers.jsonl", {"turns": [PLANTED]}, line)
    prompts = [json.loads(text) for text in (folder / "prompts.jsonl").read_text().splitlines()]
    line = next(i for i, p in enumerate(prompts) if p["prompt_id"] == game["prompt_id"])
    _rewrite_jsonl(folder / "prompts.jsonl", {"turns": [PLANTED]}, line)
    assert main(["report", str(folder)]) == EXIT_OK
    return folder, game


# ---------------------------------------------------------------------------------------------- files, no browser


def test_the_judgments_file_holds_every_game_with_the_judges_reply(run_folder: Path) -> None:
    judgments = pd.read_json(run_folder / "judgments.jsonl", lines=True)
    battles = pd.read_csv(run_folder / "battles.csv")
    assert list(judgments.columns) == list(JSONL_FIELDS["judgments.jsonl"])
    keys = ["judge", "normalization", "prompt_id", "model_a", "model_b"]
    assert judgments[keys].values.tolist() == battles[keys].values.tolist()
    assert judgments["label"].fillna("").tolist() == battles["label"].fillna("").tolist()
    # The reply is the judge's own text, and the parsed label is in it.
    assert judgments["reply"].str.len().min() > 0
    decided = judgments[~judgments["reasked"] & judgments["label"].notna()]
    assert all(f"[[{label}]]" in reply for label, reply in zip(decided["label"], decided["reply"], strict=True))
    assert judgments["reask_reply"].isna().tolist() == (~judgments["reasked"]).tolist()
    assert (judgments["unparsed"] == judgments["label"].isna()).all()

    loaded = load_run(run_folder)
    assert len(loaded.judgments) == len(loaded.battles)
    assert len(loaded.prompts) == MIN_PROMPTS + 2
    assert loaded.prompts.set_index("prompt_id").loc["w1", "turns"] == ("Write a haiku about rain, take 1.",)
    assert (run_folder / REPORT_FILE).read_text().startswith("<!doctype html>")


def test_a_folder_written_before_the_judgments_file_still_gets_a_report(run_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    shutil.copytree(run_folder, folder)
    for name in ("judgments.jsonl", "prompts.jsonl", REPORT_FILE):
        (folder / name).unlink()
    assert main(["report", str(folder)]) == EXIT_OK
    assert "no reply recorded" in (folder / REPORT_FILE).read_text()


def test_report_of_a_folder_that_is_not_a_run_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "summary.json" in capsys.readouterr().err
    assert not (tmp_path / REPORT_FILE).exists()


def test_embedded_json_cannot_end_its_script_block_and_reads_back_the_same() -> None:
    value = {"answer": PLANTED, "nested": ["</SCRIPT >", "<!--", "a & b", "\u2029"]}
    embedded = str(embed_json(value))
    for forbidden in ("<", ">", "&", "\u2028", "\u2029"):
        assert forbidden not in embedded
    assert json.loads(embedded) == value


def test_planted_markup_is_never_written_as_markup(planted_folder: tuple[Path, dict[str, Any]]) -> None:
    html = (planted_folder[0] / REPORT_FILE).read_text()
    for fragment in ("<script>window", "<img src=x", '<a href="javascript', "<svg onload", "</script><script>w"):
        assert fragment not in html
    assert html.count("<script") == 2  # the data block and the page's own script


# ------------------------------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    yield from launch(tmp_path_factory)


@pytest.fixture(scope="module")
def page(browser: Browser, planted_folder: tuple[Path, dict[str, Any]]) -> Browser:
    """The planted run's report, loaded once for the module's tests."""
    browser.open(planted_folder[0] / REPORT_FILE)
    return browser


def _select(browser: Browser, select: str, text: str) -> None:
    """Choose the option showing `text` in a filter, as a user would."""
    browser.eval(
        f"(() => {{ const s = document.getElementById({json.dumps(select)});"
        f" s.value = Array.from(s.options).find(o => o.text === {json.dumps(text)}).value;"
        " s.dispatchEvent(new Event('change')); })()"
    )


@needs_chromium
def test_the_page_loads_offline_without_errors(page: Browser, planted_folder: tuple[Path, dict[str, Any]]) -> None:
    assert page.errors() == []
    assert page.requests() == [(planted_folder[0] / REPORT_FILE).as_uri()]
    assert page.eval("document.title") == "judge-arena · html"


@needs_chromium
def test_every_view_has_a_board_and_the_plots_are_drawn(
    page: Browser, planted_folder: tuple[Path, dict[str, Any]]
) -> None:
    views = load_run(planted_folder[0]).boards[["judge", "view"]].drop_duplicates()
    shown = page.eval(
        "Array.from(document.querySelectorAll('article.board')).map(a => [a.dataset.judge, a.dataset.view])"
    )
    assert shown == views.values.tolist()
    assert {v for _, v in shown} == {"raw", "plain", "raw+sc"}
    # Drawn means laid out with a size: a forest plot per board with one point per model, the slope chart, a
    # heatmap per normalization and the maths category's board.
    boxes = page.eval(
        "Object.fromEntries(['forest', 'slope', 'heatmap'].map(k => [k, Array.from("
        "document.querySelectorAll('svg.plot.' + k)).filter(s => s.checkVisibility()).map(s => s.getBBox().width)]))"
    )
    assert len(boxes["forest"]) >= 3 + 1 + 1
    assert min(boxes["forest"]) > 100
    assert len(boxes["slope"]) == 1
    assert len(boxes["heatmap"]) == 2
    assert min(boxes["slope"] + boxes["heatmap"]) > 100
    assert page.eval("document.querySelector('article.board svg').querySelectorAll('circle').length") == 3
    visible_groups = page.eval(
        "Array.from(document.querySelectorAll('.category-group')).filter(g => !g.hidden).map(g => g.dataset.key)"
    )
    assert visible_groups == ["judge / raw"]


@needs_chromium
def test_the_battle_browser_filters_and_opens_a_game_with_the_judges_reasoning(
    page: Browser, planted_folder: tuple[Path, dict[str, Any]]
) -> None:
    judgments = load_run(planted_folder[0]).judgments
    assert page.eval("document.getElementById('page-info').textContent").startswith(f"{len(judgments)} games")
    _select(page, "filter-category", "writing")
    _select(page, "filter-view", "judge · plain")
    writing = judgments[(judgments["category"] == "writing") & (judgments["normalization"] == "plain")]
    rows = page.eval("Array.from(document.querySelectorAll('#battle-table tbody tr')).map(r => r.dataset.game)")
    assert len(rows) == len(writing) > 0
    page.eval("document.querySelector('#battle-table tbody tr').click()")
    first = writing.iloc[0]
    detail = page.eval(
        "({reply: document.getElementById('game-reply').textContent,"
        " versions: Array.from(document.querySelectorAll('#game-answers .version-label')).map(v => v.textContent),"
        " verdict: document.getElementById('game-verdict').textContent,"
        " hidden: document.getElementById('game-detail').hidden})"
    )
    assert detail["hidden"] is False
    assert detail["reply"] == first["reply"]
    assert detail["versions"] == ["raw", "plain (as judged)"] * 2
    assert detail["verdict"] == (first["label"] if first["label"] is not pd.NA else "unparsed")
    _select(page, "filter-category", "any")
    _select(page, "filter-view", "any")


@needs_chromium
def test_planted_scripts_do_not_run_and_show_as_text(
    page: Browser, planted_folder: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    game = planted_folder[1]
    _select(page, "filter-model", game["model_a"])
    index = page.eval(
        "Array.from(document.querySelectorAll('#battle-table tbody tr')).findIndex(r =>"
        f" r.cells[0].textContent === {json.dumps(game['prompt_id'])} && r.cells[1].textContent ==="
        f" {json.dumps(game['model_a'])} && r.cells[4].textContent.endsWith({json.dumps(game['normalization'])}))"
    )
    assert index >= 0
    page.eval(f"document.querySelectorAll('#battle-table tbody tr')[{index}].click()")
    shown = page.eval(
        "({planted: typeof window.__planted, title: document.title,"
        " reply: document.getElementById('game-reply').textContent,"
        " prompt: document.getElementById('game-prompt').textContent,"
        " answer: document.querySelector('#game-answers .version pre').textContent,"
        " markup: document.querySelectorAll('#game-detail img, #game-detail a, #game-detail script, #game-detail svg')"
        ".length})"
    )
    assert shown["planted"] == "undefined"
    assert shown["title"] == "judge-arena · html"
    assert PLANTED in shown["reply"]
    assert shown["prompt"] == PLANTED
    assert shown["answer"] == PLANTED
    assert shown["markup"] == 0
    assert page.errors() == []
    screenshot = page.screenshot(tmp_path / "report.png")
    assert screenshot.stat().st_size > 10_000
    _select(page, "filter-model", "any")


# ------------------------------------------------------------------------------------------- 10,000 games


def synthetic_run(games: int, *, models: int = 8, seed: int = 0) -> RunFolder:
    """A run folder's tables for `games` judged games between `models` models on made-up answers, rated for real
    (few bootstrap rounds); for size and load measurements."""
    rng = np.random.default_rng(seed)
    names = [f"model-{k}" for k in range(models)]
    pairs = list(itertools.combinations(names, 2))
    prompts = games // (2 * len(pairs)) + 1
    rows = []
    for p, (a, b) in itertools.product(range(prompts), pairs):
        for first, second in ((a, b), (b, a)):
            label = str(rng.choice(["A>>B", "A>B", "A=B", "B>A", "B>>A"]))
            winner = {"A": "model_a", "B": "model_b"}.get(label[0] if label[1] != "=" else "", "tie")
            rows.append((f"p{p}", f"cat-{p % 5}", "judge", "raw", first, second, label, winner, 1.0))
    battles = pd.DataFrame(rows[:games], columns=list(JSONL_FIELDS["judgments.jsonl"])[:9])
    board = leaderboard(battles, baseline=names[0], rounds=20)
    view = {"judge": "judge", "view": "raw", "normalization": "raw", "style_control": NO_STYLE_CONTROL}
    answer = "## Answer\n\n" + "Some **bold** reasoning about the question. " * 30
    reply = "Assistant A is more thorough; Assistant B misses a step. " * 10
    return RunFolder(
        boards=table("leaderboard.csv", [board.to_frame().assign(**view)]),
        categories=table("categories.csv", []),
        battles=table("battles.csv", [battles.assign(defence_flags="none")]),
        answers=pd.DataFrame(
            [asdict(Answer(m, f"p{p}", (f"{answer} ({m}, p{p})",), 300, 1.0)) for m in names for p in range(prompts)],
            columns=list(ANSWER_FIELDS),
        ),
        failures=table("failures.csv", []),
        summary={"name": "synthetic", "prompts": prompts, "candidates": names, "judges": {"judge": "x"}},
        judgments=battles.assign(
            reasked=False,
            unparsed=False,
            defence_flags=pd.Series([()] * len(battles), dtype=object),
            reply=[f"{reply} [[{label}]] #{i}" for i, label in enumerate(battles["label"])],
            reask_reply=None,
        ).astype(JSONL_FIELDS["judgments.jsonl"]),
        prompts=pd.DataFrame(
            [(f"p{p}", "suite", f"cat-{p % 5}", (f"Question {p}?",)) for p in range(prompts)],
            columns=list(JSONL_FIELDS["prompts.jsonl"]),
        ),
    )


@needs_chromium
def test_ten_thousand_games_are_paged(browser: Browser, tmp_path: Path) -> None:
    folder = write_run(synthetic_run(10_000), tmp_path, "synthetic")
    write_html_report(folder)
    browser.open(folder / REPORT_FILE)
    assert browser.errors() == []
    assert browser.eval("document.getElementById('page-info').textContent") == "10000 games · page 1 of 200"
    assert browser.eval("document.querySelectorAll('#battle-table tbody tr').length") == 50
    browser.eval("document.getElementById('page-next').click()")
    browser.eval("document.querySelectorAll('#battle-table tbody tr')[49].click()")
    assert browser.eval("document.getElementById('game-reply').textContent").endswith("#99")


def test_health_and_heatmap_count_what_the_battles_say() -> None:
    run = synthetic_run(600)
    flags = ["reasked", "neutralized:A;injection:B", "neutralized:B", "none"] * (len(run.battles) // 4)
    html = render_run_report(replace(run, battles=run.battles.assign(defence_flags=flags)))
    assert f'<span class="tag warn">injection {flags.count("neutralized:A;injection:B")}</span>' in html
    assert f'<span class="tag warn">neutralized {len(flags) // 2}</span>' in html
    assert f"<td>{flags.count('reasked')}</td>" in html

    games = run.battles
    pair = games[games["model_a"].isin(["model-0", "model-1"]) & games["model_b"].isin(["model-0", "model-1"])]
    score_of_a = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
    won = sum(
        score_of_a[w] if a == "model-0" else 1 - score_of_a[w]
        for a, w in zip(pair["model_a"], pair["winner"], strict=True)
    )
    assert f"<title>model-0 vs model-1: won {won / len(pair):.0%} of {len(pair)} games</title>" in html


def test_health_shows_the_position_consistency_the_summary_records(run_folder: Path) -> None:
    run = load_run(run_folder)
    recorded = [row for quality in run.summary["judge_quality"].values() for row in quality["position_consistency"]]
    assert recorded
    assert all(row["pairs"] for row in recorded)
    shown = [
        f'<td>{100 * row["consistent"] / row["pairs"]:.0f} % <span class="muted">of {row["pairs"]} pairs</span></td>'
        for row in recorded
    ]
    # Battles rated from a file record none in their summary: the page measures it from battles.csv, alike.
    unrecorded = replace(run, summary={k: v for k, v in run.summary.items() if k != "judge_quality"})
    for html in (render_run_report(run), render_run_report(unrecorded)):
        assert all(text in html for text in shown)


def test_the_browser_shows_each_game_with_its_last_judgment() -> None:
    run = synthetic_run(6)
    battles, judgments = run.battles.copy(), run.judgments
    again = judgments.iloc[[0]].assign(reply="judged again", reask_reply="re-asked again")
    # Game 0 judged twice (the later judgment is shown), game 1 not at all, game 5 on a normalization not browsed.
    battles.loc[battles.index[5], "normalization"] = "odd"
    data = browser_data(replace(run, battles=battles, judgments=pd.concat([judgments.drop(index=1), again])))
    texts, games = data["texts"], [tuple(game) for game in data["games"]]
    assert [texts[i] for i in games[0][7:]] == ["judged again", "re-asked again"]
    assert [games[1][7:], games[5][7:]] == [(-1, -1), (-1, -1)]
    assert (texts[games[2][7]], games[2][8]) == (judgments["reply"].iloc[2], -1)
    # Texts are numbered in the judgments' order, the reply no longer shown included.
    replies = [judgments["reply"].iloc[i] for i in (0, 2, 3, 4, 5)]
    numbered = [text for text in texts if text in replies or "again" in text]
    assert numbered == [*replies, "judged again", "re-asked again"]
    assert data["battleNormalizations"] == ["raw", "odd"]
    assert [game[2] for game in games] == [0] * 6
    shown = [
        (data["models"][game[3]], data["models"][game[4]], data["judges"][game[1]], data["prompts"][game[0]][0])
        for game in games
    ]
    columns = (battles["model_a"], battles["model_b"], battles["judge"], battles["prompt_id"])
    assert shown == list(zip(*columns, strict=True))
    assert [game[5:7] for game in games] == [(label, "") for label in battles["label"]]


LONG = "meta-llama/Llama-3.1-405B-Instruct-Turbo-2024-07-23"
"""A model name as long as real ones get (51 characters)."""


def _names(plot: Plot) -> list[tuple[float, float, str, str, float]]:
    """Each model-name label of a plot: x, y, text-anchor, transform and its estimated width."""
    labels = []
    for shape in plot.shapes:
        attrs = dict(shape.attrs)
        if shape.tag == "text" and attrs.get("class") == "name":
            width = _CHAR_WIDTH * len(shape.text)
            labels.append(
                (
                    float(attrs["x"]),
                    float(attrs["y"]),
                    attrs.get("text-anchor", "start"),
                    attrs.get("transform", ""),
                    width,
                )
            )
    return labels


def test_long_model_names_fit_inside_every_plot() -> None:
    """Labels are laid out from an estimate of their width; a long name widens its plot instead of being cut off."""
    models = [LONG, "gpt-4o", "small"]
    colors = {model: "#555" for model in models}
    forest = forest_plot(
        [(m, 1000.0 + 10 * i, 990.0, 1020.0 + 10 * i) for i, m in enumerate(models)], "f", colors=colors, width=380
    )
    slope = slope_chart(
        {m: {"raw": 1000.0 + i, "plain": 990.0 - i} for i, m in enumerate(models)}, ["raw", "plain"], "s", colors=colors
    )
    rates = {(a, b): (0.5, 4) for a in models for b in models if a != b}
    grid = heatmap(models, rates, "h")
    for plot in (forest, slope, grid):
        for x, y, anchor, transform, width in _names(plot):
            if transform:  # a heatmap column, at −40°: it rises and reaches right
                assert y - 0.643 * width >= 0, plot.kind
                assert x + 0.766 * width <= plot.width, plot.kind
            elif anchor == "end":
                assert x - width >= 0, plot.kind
            else:
                assert x + width <= plot.width, plot.kind
    # Short names keep the plots at their usual size.
    assert forest_plot([("a", 1.0, 0.0, 2.0)], "f", colors={}, width=380).width == 380
