"""The product's thesis on the simulator, whose candidates' true quality is known.

A judge biased toward markdown and length ranks a markdown-heavy weaker model above a plain stronger one when it
reads the answers as written; judging markdown-stripped answers, or fitting the raw verdicts with style control,
each restores the true order. The simulated models are called in-process (the HTTP path is tested elsewhere), so
eight models, all pairs, both orders and both views take a few seconds.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import pandas as pd
import pytest

from judge_arena.generate import generate_answer
from judge_arena.judge import JudgeTemplate, games, judge_game
from judge_arena.metrics import kendall_tau
from judge_arena.rating import Leaderboard, leaderboard
from judge_arena.records import Answer, Battle, Message
from judge_arena.sim.models import CANDIDATES, ChatMessage, reply
from judge_arena.store import Completion
from judge_arena.suites import load_suite
from judge_arena.views import battles_frame, with_style_features

ROOT = Path(__file__).resolve().parents[1]
JUDGE = "sim-judge"


def _caller(model: str) -> Callable[[tuple[Message, ...]], Awaitable[Completion]]:
    async def complete(messages: tuple[Message, ...]) -> Completion:
        text = reply(model, [ChatMessage(m.role, m.content) for m in messages])
        return Completion(text, "stop", 0, 0, 0.0)

    return complete


async def _arena() -> tuple[list[Answer], list[Battle]]:
    prompts = load_suite(ROOT / "judge_arena/data/suites/core.jsonl").prompts
    answers = {
        (name, prompt.id): await generate_answer(name, prompt, _caller(name))
        for name in CANDIDATES
        for prompt in prompts
    }
    template = JudgeTemplate.load(ROOT / "judge_arena/data/templates/pairwise.yaml")
    judge = _caller(JUDGE)

    async def complete(messages: tuple[Message, ...]) -> str:
        return (await judge(messages)).text

    battles = []
    for (first, second), prompt, normalization in itertools.product(
        itertools.combinations(CANDIDATES, 2), prompts, ("raw", "plain")
    ):
        for game in games(prompt, answers[(first, prompt.id)], answers[(second, prompt.id)], normalization):
            battles.append(await judge_game(game, judge=JUDGE, template=template, complete=complete, strong_weight=3))
    return list(answers.values()), battles


@pytest.fixture(scope="module")
def boards() -> dict[str, Leaderboard]:
    answers, battles = asyncio.run(_arena())
    frame = with_style_features(battles_frame(battles), answers)
    raw = frame[frame["normalization"] == "raw"]
    plain = frame[frame["normalization"] == "plain"]
    return {
        "raw": leaderboard(raw, rounds=100),
        "plain": leaderboard(plain, rounds=100),
        "style-controlled": leaderboard(raw, rounds=100, style="both"),
    }


def _tau(board: Leaderboard) -> float:
    return kendall_tau([row.rating for row in board.rows], [CANDIDATES[row.model].quality for row in board.rows])


def _ratings(board: Leaderboard) -> pd.Series:
    return pd.Series({row.model: row.rating for row in board.rows})


def test_the_catalog_has_a_markdown_heavy_weak_model_and_a_plain_strong_one() -> None:
    assert len(CANDIDATES) >= 8
    weak, strong = CANDIDATES["sim-markdown-weak"], CANDIDATES["sim-mid-plain"]
    assert weak.style == "markdown"
    assert strong.style == "plain"
    assert weak.quality < strong.quality


def test_raw_judging_rewards_markdown(boards: dict[str, Leaderboard]) -> None:
    raw = _ratings(boards["raw"])
    assert raw["sim-markdown-weak"] > raw["sim-mid-plain"]
    assert raw["sim-markdown-weak"] > raw["sim-good-verbose"]
    assert _tau(boards["raw"]) < 0.8


@pytest.mark.parametrize("view", ["plain", "style-controlled"])
def test_plain_judging_and_style_control_each_restore_the_true_order(boards: dict[str, Leaderboard], view: str) -> None:
    ratings = _ratings(boards[view])
    assert ratings["sim-markdown-weak"] < ratings["sim-mid-plain"] < ratings["sim-strong-plain"]
    assert _tau(boards[view]) >= 0.9


def test_style_control_finds_the_judges_bias(boards: dict[str, Leaderboard]) -> None:
    coefficients = {c.name: c for c in boards["style-controlled"].coefficients}
    assert set(coefficients) == {"tokens", "headers", "lists", "bold"}
    markdown_effect = sum(coefficients[name].value for name in ("headers", "lists", "bold"))
    assert markdown_effect > 0
    assert coefficients["tokens"].value > 0
