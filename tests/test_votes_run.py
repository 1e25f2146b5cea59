"""Judge versus humans on the very answers they saw: a human-votes file that carries the conversations is judged
by a run (exactly its pairs), and `judge-arena agreement` compares judge and humans vote by vote.

The "human" votes are simulated: two annotators who know the simulated candidates' true quality order and vote
for the better model, except that with a seeded chance they call a tie or vote for the other. The expected figures
are computed here from the run's battles.csv and the votes file, without the package's agreement code.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from judge_arena.agreement import (
    VotesInputError,
    agreement,
    load_voted_conversations,
    parse_group,
    position_consistency,
    run_votes,
)
from judge_arena.arena import load_inputs, play_arena
from judge_arena.cli import EXIT_BAD_INPUT, EXIT_FAILURES, EXIT_OK, main
from judge_arena.config import ConfigError, config_from_dict
from judge_arena.runs import load_run
from judge_arena.sim import SimulatorServer
from judge_arena.sim.models import CANDIDATES
from judge_arena.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"strong": "sim-strong-plain", "mid": "sim-mid-plain", "weak": "sim-weak-terse"}
"""The candidates whose answers the humans saw, and the simulated models that wrote them."""
PROMPTS = 14
TIE, FLIP = 0.1, 0.15
"""The simulated annotators' noise: the chance of calling a tie, and of voting for the worse model."""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def _votes_file(folder: Path, sim: SimulatorServer) -> Path:
    """An MT-Bench human-judgment layout file: the simulated candidates' answers to core prompts as conversations,
    and two annotators' votes on a seeded share of the pairs (every pair on the first prompts, so that the two
    annotators meet there)."""
    config = {
        "name": "answers",
        "suites": [{"path": "core", "limit": PROMPTS}],
        "candidates": [{"name": n, "model": f"openai/{m}", "api_base": "simulator"} for n, m in MODELS.items()],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator"}],
        "runner": {"cache_dir": str(folder / "gen-cache"), "output_dir": str(folder / "gen-runs")},
    }
    run = asyncio.run(play_arena(load_inputs(config_from_dict(config, folder)), simulator_url=sim.url))
    answers = {(a.model, a.prompt_id): a.turns for a in run.answers}
    rng = random.Random(20240601)
    records = []
    for index, prompt in enumerate(run.inputs.prompts):
        for first, second in itertools.combinations(MODELS, 2):
            for annotator in ("expert_0", "expert_1"):
                if index >= 4 and rng.random() < 0.5:
                    continue
                a, b = (first, second) if rng.random() < 0.5 else (second, first)
                better = a if CANDIDATES[MODELS[a]].quality > CANDIDATES[MODELS[b]].quality else b
                draw = rng.random()
                chosen = "tie" if draw < TIE else (b if better == a else a) if draw < TIE + FLIP else better
                winner = "tie" if chosen == "tie" else "model_a" if chosen == a else "model_b"
                records.append(
                    {
                        "question_id": prompt.id,
                        "model_a": a,
                        "model_b": b,
                        "winner": winner,
                        "judge": annotator,
                        # the vote is on the whole conversation, as Chatbot Arena's (and MT-Bench's turn-2) votes
                        "turn": len(prompt.turns),
                        "category": prompt.category,
                        "conversation_a": _conversation(prompt.turns, answers[(a, prompt.id)]),
                        "conversation_b": _conversation(prompt.turns, answers[(b, prompt.id)]),
                    }
                )
    path = folder / "human.json"
    path.write_text(json.dumps(records))
    return path


def _conversation(users: tuple[str, ...], replies: tuple[str, ...]) -> list[dict[str, str]]:
    pairs = zip(users, replies, strict=True)
    return [
        message
        for user, reply in pairs
        for message in ({"role": "user", "content": user}, {"role": "assistant", "content": reply})
    ]


def _judge_config(folder: Path, votes: Path, sim: SimulatorServer) -> Path:
    """A config judging the votes file with the simulated judge, on `sim` (whose requests a test reads)."""
    config = {
        "name": "judge-vs-humans",
        "votes": str(votes),
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": f"{sim.url}/v1"}],
        "normalizations": ["raw"],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    path = folder / "judge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _kappa(pairs: list[tuple[str, str]]) -> float:
    """Cohen's kappa of paired labels, from its definition."""
    n = len(pairs)
    observed = sum(x == y for x, y in pairs) / n
    rows, columns = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(rows[k] * columns[k] for k in rows) / (n * n)
    return (observed - expected) / (1 - expected)


def _normalised(a: str, b: str, winner: str) -> tuple[tuple[str, str], str]:
    """The pair in name order and its outcome: 'A' (the model first by name won), 'B', 'tie', or '' for none (an
    unparsed verdict). MT-Bench's classes, which the confusion matrix and kappa use."""
    pair = (min(a, b), max(a, b))
    name = {"model_a": a, "model_b": b}.get(winner)
    return pair, "tie" if winner == "tie" else "" if name is None else "A" if name == pair[0] else "B"


def test_a_run_judges_exactly_the_voted_pairs_and_agreement_matches_an_independent_count(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    votes_path = _votes_file(tmp_path, sim)
    records = json.loads(votes_path.read_text())
    voted = load_voted_conversations(votes_path)
    assert len(voted.votes) == len(records)
    assert {p.id for p in voted.prompts} == {
        p.id for p in load_suite(ROOT / "judge_arena/data/suites/core.jsonl", limit=PROMPTS).prompts
    }
    config = _judge_config(tmp_path, votes_path, sim)

    sim.reset_log()
    assert main(["run", str(config)]) == EXIT_OK
    out = capsys.readouterr().out
    folder = next((tmp_path / "runs").iterdir())
    with (folder / "battles.csv").open(newline="") as handle:
        battles = list(csv.DictReader(handle))
    # exactly the voted pairs, each in both orders, and no candidate answer was generated
    judged = {(b["prompt_id"], min(b["model_a"], b["model_b"]), max(b["model_a"], b["model_b"])) for b in battles}
    pairs = {(r["question_id"], min(r["model_a"], r["model_b"]), max(r["model_a"], r["model_b"])) for r in records}
    assert judged == pairs
    assert len(battles) == 2 * len(pairs)
    assert "answer style" in out
    run = load_run(folder)
    assert set(run.answers["model"]) == set(MODELS)
    # the judge saw the answers of the votes file
    record = records[0]
    shown = [m for r in sim.requests if r.model == "sim-judge" for m in r.messages if m.role == "user"]
    assert any(record["conversation_a"][1]["content"] in m.content for m in shown)

    # Independently: the judge's vote per pair (both orders agree, else a tie), against every human vote.
    verdicts: dict[tuple[str, tuple[str, str]], list[str]] = {}
    for battle in battles:
        pair, name = _normalised(battle["model_a"], battle["model_b"], battle["winner"])
        verdicts.setdefault((battle["prompt_id"], pair), []).append(name)
    # a pair with an unparsed verdict in either order gives no judge vote
    judge_vote = {
        key: names[0] if names[0] == names[1] else "tie" for key, names in verdicts.items() if "" not in names
    }
    with_ties: list[tuple[str, str]] = []
    for r in records:
        pair, human_winner = _normalised(r["model_a"], r["model_b"], r["winner"])
        if (r["question_id"], pair) in judge_vote:
            with_ties.append((judge_vote[(r["question_id"], pair)], human_winner))
    without_ties = [(x, y) for x, y in with_ties if "tie" not in (x, y)]
    parsed = [names for names in verdicts.values() if "" not in names]
    consistent = sum(names[0] == names[1] for names in parsed) / len(parsed)

    votes = [*run_votes_of(folder), *voted.votes]
    human, ours = parse_group("human=expert_*"), parse_group("judge/raw")
    ties = agreement(votes, ours, human)
    no_ties = agreement(votes, ours, human, ties=False)
    assert ties.pairs == len(with_ties) > 0.9 * len(records)
    assert ties.value == pytest.approx(sum(x == y for x, y in with_ties) / len(with_ties))
    assert ties.kappa == pytest.approx(_kappa(with_ties))
    assert no_ties.pairs == len(without_ties)
    assert no_ties.value == pytest.approx(sum(x == y for x, y in without_ties) / len(without_ties))
    assert no_ties.kappa == pytest.approx(_kappa(without_ties))
    classes = ("A", "tie", "B")
    counted = Counter(with_ties)
    assert ties.confusion == tuple(tuple(float(counted[(x, y)]) for y in classes) for x in classes)
    # the humans are noisy but mostly right, and so is the simulated judge: they agree well above chance
    assert ties.value > 0.5
    assert ties.kappa > 0.2
    overall = next(c for c in position_consistency(load_battles_of(folder)) if c.category is None)
    assert overall.value == pytest.approx(consistent)

    # the command prints the same figures, per category too, and the confusion matrix
    assert (
        main(["agreement", str(folder), str(votes_path), "--group", "human=expert_*", "--group", "judge/raw"])
        == EXIT_OK
    )
    printed = capsys.readouterr().out
    assert f"{ties.value:.3f}" in printed
    assert f"{no_ties.kappa:.3f}" in printed
    assert f"{len(with_ties):,}" in printed
    assert "agreement per category" in printed
    coding = [r for r in records if r["category"] == "coding"]
    assert coding
    assert "position consistency" in printed


def run_votes_of(folder: Path) -> list[Any]:
    """The run's votes, one per pair (both orders combined), at each verdict's own turn."""
    return run_votes(load_battles_of(folder))


def load_battles_of(folder: Path) -> list[Any]:
    from judge_arena.agreement import load_battles

    return load_battles(folder)


def test_agreement_judge_runs_the_votes_and_compares_in_one_command(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    votes_path = _votes_file(tmp_path, sim)
    config = _judge_config(tmp_path, votes_path, sim)
    assert main(["agreement", "--judge", str(config), "--group", "human=expert_*", "--group", "judge/raw"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "agreement between voter groups" in out
    assert "judge/raw" in out
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_votes_and_a_run_that_share_no_pair_exit_1(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    votes_path = _votes_file(tmp_path, sim)
    assert main(["run", str(_judge_config(tmp_path, votes_path, sim))]) == EXIT_OK
    folder = next((tmp_path / "runs").iterdir())
    records = json.loads(votes_path.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{**r, "question_id": f"x-{r['question_id']}"} for r in records]))
    capsys.readouterr()
    code = main(["agreement", str(folder), str(other), "--group", "human=expert_*", "--group", "judge/raw"])
    assert code == EXIT_FAILURES
    out = capsys.readouterr().out
    assert "human and judge/raw share no vote on the same question, model pair and turn: 0 questions in common" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("conversation_a"), "item 1: field 'conversation_a': missing"),
        (
            lambda r: r.update(
                conversation_b=[{"role": "user", "content": "Another question"}, {"role": "assistant", "content": "x"}]
            ),
            "item 1: field 'conversation_b': its user turns differ from conversation_a's",
        ),
        (
            lambda r: r.update(conversation_a=[{"role": "assistant", "content": "x"}]),
            "item 1: field 'conversation_a[0].role': must be 'user'",
        ),
        (
            lambda r: r.update(conversation_a=[{"role": "user", "content": "q"}]),
            "item 1: field 'conversation_a': must end with an assistant message",
        ),
        (lambda r: r.update(turn=3), "item 1: field 'turn': 3, but the conversations have 1 turn(s)"),
    ],
)
def test_a_bad_votes_file_is_an_error_before_any_call(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str], change: Any, message: str
) -> None:
    record: dict[str, Any] = {
        "question_id": 81,
        "model_a": "a",
        "model_b": "b",
        "winner": "model_a",
        "judge": "expert_0",
        "turn": 1,
        "conversation_a": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
        "conversation_b": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "B."}],
    }
    change(record)
    votes = tmp_path / "bad.json"
    votes.write_text(json.dumps([record]))
    with pytest.raises(VotesInputError) as raised:
        load_voted_conversations(votes)
    assert str(raised.value).startswith(f"{votes} {message}"), str(raised.value)
    sim.reset_log()
    assert main(["run", str(_judge_config(tmp_path, votes, sim))]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert sim.requests == []
    assert not (tmp_path / "runs").exists()


def test_a_votes_config_takes_no_suites_or_candidates(tmp_path: Path) -> None:
    votes = tmp_path / "v.json"
    votes.write_text("[]")
    base: dict[str, Any] = {
        "votes": str(votes),
        "judges": [{"name": "j", "model": "openai/sim-judge", "api_base": "simulator"}],
    }
    with pytest.raises(ConfigError, match="takes its prompts and candidates from the votes file"):
        config_from_dict({**base, "suites": [{"path": "core"}]}, tmp_path)
    with pytest.raises(ConfigError, match=r"field 'suites': at least one suite is required \(or a vote file"):
        config_from_dict({"judges": base["judges"], "candidates": []}, tmp_path)


def test_chatbot_arena_battles_with_conversations_are_read(tmp_path: Path) -> None:
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "A joke?"},
        {"role": "assistant", "content": "No."},
    ]
    other = [{**m, "content": "Sure, here is one."} if m["content"] == "No." else m for m in conversation]
    battle = {
        "question_id": "58210e39b3fd4441a2bd4a518bb44c2d",
        "model_a": "chatglm-6b",
        "model_b": "koala-13b",
        "winner": "tie (bothbad)",
        "judge": "arena_user_973",
        "conversation_a": conversation,
        "conversation_b": other,
        "turn": 2,
        "anony": True,
        "language": "English",
        "tstamp": 1682351591.1322,
    }
    path = tmp_path / "arena.jsonl"
    path.write_text(json.dumps(battle) + "\n")
    voted = load_voted_conversations(path)
    (prompt,) = voted.prompts
    assert prompt.turns == ("Hi", "A joke?")
    assert prompt.category == "arena"
    assert voted.answers["koala-13b"][prompt.id].turns == ("Hello!", "Sure, here is one.")
    assert voted.pairs == {prompt.id: (("chatglm-6b", "koala-13b"),)}
    assert [(v.winner, v.turn) for v in voted.votes] == [("tie", 2)]
