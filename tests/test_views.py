"""Views: per-judge boards, the panel's combined verdicts, self-preference flags."""

from __future__ import annotations

import itertools
from pathlib import Path

from judge_arena.config import ArenaConfig
from judge_arena.labels import ARENA_HARD
from judge_arena.records import Answer, Battle
from judge_arena.views import PANEL, panel_battles, panel_verdict, rate_views

ROOT = Path(__file__).resolve().parents[1]


def test_panel_verdict_examples_by_hand() -> None:
    assert panel_verdict(["A>>B", "A>B", "B>A"], "mean") == "A>B"  # 2/3
    assert panel_verdict(["A>B", "B>A"], "mean") == "A=B"
    assert panel_verdict(["A>>B", "A>>B", "A>B"], "mean") == "A>>B"  # 5/3
    assert panel_verdict(["B>A", "B>>A"], "mean") == "B>>A"  # -1.5
    assert panel_verdict(["A>B", "A>B", "B>>A"], "majority") == "A>B"
    assert panel_verdict(["A>B", "B>A"], "majority") == "A=B"  # an even split falls back to the mean


def _battle(judge: str, a: str, b: str, label: str | None, prompt: str = "p1") -> Battle:
    winner, weight = ARENA_HARD.outcome(label, 3.0) if label else (None, 0.0)
    return Battle(prompt, "c", judge, "raw", a, b, label, winner, weight)


def test_panel_combines_parsed_votes_per_game() -> None:
    battles = [
        _battle("j1", "x", "y", "A>B"),
        _battle("j2", "x", "y", "A>>B"),
        _battle("j1", "y", "x", None),
        _battle("j2", "y", "x", "B>A"),
        _battle("j1", "x", "z", None),
        _battle("j2", "x", "z", None),
    ]
    combined = {(b.model_a, b.model_b): b for b in panel_battles(battles, "mean", 3.0)}
    assert combined[("x", "y")].label == "A>>B"
    assert combined[("x", "y")].flags == ("judges=2",)
    assert combined[("y", "x")].label == "B>A"
    assert combined[("y", "x")].flags == ("judges=1",)
    assert combined[("x", "z")].label is None
    assert combined[("x", "z")].winner is None
    assert all(b.judge == PANEL for b in combined.values())


def _config(**overrides: object) -> ArenaConfig:
    data: dict[str, object] = {
        "suites": [{"path": "x.jsonl"}],
        "candidates": [
            {"name": "gpt-small", "model": "openai/gpt-4o-mini"},
            {"name": "claude-small", "model": "anthropic/claude-haiku"},
            {"name": "local", "model": "openai/my-model", "family": "mine"},
        ],
        "judges": [
            {"name": "gpt-judge", "model": "openai/gpt-4.1"},
            {"name": "claude-judge", "model": "anthropic/claude-sonnet"},
        ],
        "normalizations": ["raw"],
    }
    data.update(overrides)
    return ArenaConfig.model_validate(data)


def test_family_is_configured_or_guessed() -> None:
    config = _config()
    assert [c.model_family for c in config.candidates] == ["gpt", "claude", "mine"]
    assert [j.model_family for j in config.judges] == ["gpt", "claude"]


def test_views_flag_self_preference_and_refit_the_panel_without_it() -> None:
    config = _config()
    models = [c.name for c in config.candidates]
    battles = []
    for i, (a, b) in enumerate(itertools.permutations(models, 2)):
        for p in range(6):
            prompt = f"p{p}"
            # each judge strongly favours its own family; otherwise the first-listed model wins
            for judge, own in (("gpt-judge", "gpt-small"), ("claude-judge", "claude-small")):
                if own in (a, b):
                    label = "A>>B" if a == own else "B>>A"
                else:
                    label = "A>B" if models.index(a) < models.index(b) else "B>A"
                if (i + p) % 5 == 0:
                    label = "A=B"
                battles.append(_battle(judge, a, b, label, prompt))
    answers = [
        Answer(model, f"p{p}", ("# Answer\n\n- **short**" if p % 2 else "A plain and longer answer.",), 5, 0.1)
        for model in models
        for p in range(6)
    ]
    views = {v.judge: v for v in rate_views(config, battles, answers) if v.style is None}
    assert set(views) == {"gpt-judge", "claude-judge", PANEL}
    assert views["gpt-judge"].self_judged == ("gpt-small",)
    assert views["claude-judge"].self_judged == ("claude-small",)
    assert views["gpt-judge"].board_without_self is None
    panel = views[PANEL]
    assert panel.self_judged == ("gpt-small", "claude-small")
    assert panel.board is not None
    assert panel.board_without_self is not None
    with_self = {r.model: r.rating for r in panel.board.rows}
    without = {r.model: r.rating for r in panel.board_without_self.rows}
    # without self-votes only the unbiased order remains: gpt-small first, then claude-small, then local
    assert without["gpt-small"] > without["claude-small"] > without["local"]
    assert with_self["local"] < with_self["gpt-small"]


def test_a_panel_refit_that_leaves_a_model_without_battles_gets_a_note_and_the_other_boards() -> None:
    # Without same-family votes the baseline (gpt family) meets no one: the gpt judge may not vote on its games
    # and the claude judge may not vote on games against its two claude candidates. The refit once raised
    # InsufficientDataError after every call was paid for, and no report was written.
    config = _config(
        candidates=[
            {"name": "gpt-small", "model": "openai/gpt-4o-mini"},
            {"name": "claude-small", "model": "anthropic/claude-haiku"},
            {"name": "claude-big", "model": "anthropic/claude-opus"},
        ],
        pairing={"mode": "all-pairs", "baseline": "gpt-small"},
    )
    models = [c.name for c in config.candidates]
    battles = [
        _battle(judge, a, b, "A>B" if (p + models.index(a)) % 3 else "B>A", f"p{p}")
        for judge in ("gpt-judge", "claude-judge")
        for a, b in itertools.permutations(models, 2)
        for p in range(4)
    ]
    answers = [Answer(model, f"p{p}", ("An answer.",), 3, 0.1) for model in models for p in range(4)]
    views = rate_views(config, battles, answers)
    panel = next(v for v in views if v.judge == PANEL and v.style is None)
    assert panel.board is not None
    assert panel.board_without_self is None
    assert "without self-judged votes: 'gpt-small' has no battles" in panel.note_without_self
    assert all(v.board is not None for v in views if v.style is None)
