"""What local models need, without one: structured verdicts, system prompts, answers cut at max_tokens, and the
run's record of re-asks and truncation (on the simulator)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from judge_arena.agreement import Reasks, reasks
from judge_arena.arena import load_inputs, play_arena
from judge_arena.config import JudgeConfig, load_config
from judge_arena.generate import generate_answer
from judge_arena.judge import Game, JudgeTemplate, as_called, judge_game, parse_verdict, verdict_schema
from judge_arena.labels import LabelSet
from judge_arena.records import Answer, Battle, Message, Prompt
from judge_arena.report.files import write_report
from judge_arena.runs import load_run
from judge_arena.sim import SimulatorServer
from judge_arena.store import Completion
from judge_arena.views import identical_candidates, rate_views

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "judge_arena" / "data" / "templates" / "pairwise.yaml"


def _judge(**fields: object) -> JudgeConfig:
    return JudgeConfig.model_validate({"name": "j", "model": "openai/m", "params": {"temperature": 0}, **fields})


def test_a_judge_without_structured_output_is_called_as_configured() -> None:
    judge = _judge()
    assert as_called(judge) is judge


def test_structured_output_asks_for_the_verdict_schema_in_the_form_the_server_takes() -> None:
    schema = verdict_schema()
    assert schema["properties"] == {"verdict": {"type": "string", "enum": ["A>>B", "A>B", "A=B", "B>A", "B>>A"]}}
    llama_cpp = as_called(_judge(structured_output="json_object")).params
    assert llama_cpp == {"temperature": 0, "response_format": {"type": "json_object", "schema": schema}}
    openai = as_called(_judge(structured_output="json_schema")).params["response_format"]
    assert openai == {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}}
    mt_bench = LabelSet(scores=(("A", 1), ("B", -1), ("C", 0)))
    enum = as_called(_judge(structured_output="json_object"), mt_bench).params["response_format"]["schema"]
    assert enum["properties"]["verdict"]["enum"] == ["A", "B", "C"]
    assert parse_verdict('{"verdict": "C"}', mt_bench) == "C"


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ('{"verdict": "B>A"}', "B>A"),
        (' {"verdict":"A=B"}\n', "A=B"),
        ('{"verdict": "C>A"}', None),
        ('{"verdict": "[[A>B]]"}', None),
        ('{"reasoning": "A is clearer. [[A>B]]"}', "A>B"),
        ('["A>B"]', None),
        ('{"verdict": "A>B"', None),
    ],
)
def test_a_json_reply_gives_its_verdict_field_and_any_other_reply_its_label(reply: str, label: str | None) -> None:
    assert parse_verdict(reply) == label


class _Replies:
    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[Message, ...]] = []

    async def __call__(self, messages: tuple[Message, ...]) -> str:
        self.sent.append(messages)
        return self.replies.pop(0)


def _game() -> Game:
    prompt = Prompt(id="p1", category="c", turns=("Why is the sky blue?",))
    return Game(prompt, Answer("x", "p1", ("Rayleigh.",), 2, 0.1), Answer("y", "p1", ("Magic.",), 2, 0.1), "raw")


async def test_a_structured_verdict_is_taken_at_once() -> None:
    judge = _Replies('{"verdict": "A>>B"}')
    battle = await judge_game(
        _game(), judge="j", template=JudgeTemplate.load(TEMPLATE), complete=judge, strong_weight=3.0
    )
    assert (battle.label, battle.winner, battle.weight, battle.flags) == ("A>>B", "model_a", 3.0, ())
    assert len(judge.sent) == 1


async def test_a_rambling_reply_cut_at_max_tokens_is_reasked_then_unparsed_never_a_default_winner() -> None:
    """What SmolLM2-135M does without structured output: it restates the answers and never gives a label."""
    ramble = "Assistant A's answer is Rayleigh. Assistant B's answer is Magic. Assistant A's answer is"
    judge = _Replies(ramble, "Both answers are answers to the question")
    battle = await judge_game(
        _game(), judge="j", template=JudgeTemplate.load(TEMPLATE), complete=judge, strong_weight=3.0
    )
    assert (battle.label, battle.winner, battle.weight) == (None, None, 0.0)
    assert battle.flags == ("reasked", "unparsed")
    assert judge.sent[1][-2:] == (Message("assistant", ramble), judge.sent[1][-1])


async def test_a_system_prompt_opens_every_conversation_and_cut_turns_are_counted() -> None:
    sent: list[tuple[Message, ...]] = []
    finishes = iter(["length", "stop", "stop"])

    async def complete(messages: tuple[Message, ...]) -> Completion:
        sent.append(messages)
        return Completion(f"reply {len(sent)}", next(finishes), 5, 7, 0.5)

    prompt = Prompt(id="p", category="c", turns=("first", "second"))
    answer = await generate_answer("lists", prompt, complete, system_prompt="Answer in a markdown list.")
    assert [m.role for m in sent[1]] == ["system", "user", "assistant", "user"]
    assert sent[0][0] == Message("system", "Answer in a markdown list.")
    assert (answer.turns, answer.output_tokens, answer.cut_turns) == (("reply 1", "reply 2"), 14, 1)
    without = await generate_answer("plain", Prompt("p", "c", ("q",)), complete)
    assert [m.role for m in sent[-1]] == ["user"]
    assert without.cut_turns == 0


def test_reasks_are_counted_per_judge() -> None:
    def battle(judge: str, *flags: str) -> Battle:
        return Battle("p", "c", judge, "raw", "x", "y", None if "unparsed" in flags else "A>B", flags=flags)

    battles = [battle("a"), battle("a", "reasked"), battle("a", "reasked", "unparsed"), battle("b", "neutralized:A")]
    assert reasks(battles) == {"a": Reasks(games=3, reasked=2, unparsed=1), "b": Reasks(games=1, reasked=0, unparsed=0)}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


def test_the_report_records_reasks_position_bias_and_answers_cut_at_max_tokens(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    config = {
        "name": "quirks",
        "suites": [{"path": str(ROOT / "judge_arena/data/suites/core.jsonl"), "limit": 3}],
        "candidates": [
            {
                "name": "cut",
                "model": "openai/sim-weak-verbose",
                "api_base": "simulator",
                "system_prompt": "Be brief.",
                "params": {"max_tokens": 5},
            },
            {"name": "whole", "model": "openai/sim-strong-plain", "api_base": "simulator"},
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator", "template": str(TEMPLATE)}],
        "normalizations": ["raw"],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "max_wait_s": 0.1},
    }
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    inputs = load_inputs(load_config(path))
    run = asyncio.run(play_arena(inputs, simulator_url=sim.url))
    folder = write_report(run, rate_views(inputs.config, run.battles, run.answers))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["answers_cut_at_max_tokens"] == {"cut": 3, "whole": 0}
    assert dict(load_run(folder).answers.groupby("model")["cut_turns"].sum()) == {"cut": 3, "whole": 0}
    # A run folder written before answers recorded their cut turns still reads, as none cut.
    lines = (folder / "answers.jsonl").read_text().splitlines()
    older = [json.dumps({k: v for k, v in json.loads(line).items() if k != "cut_turns"}) for line in lines]
    (folder / "answers.jsonl").write_text("\n".join(older) + "\n")
    assert load_run(folder).answers["cut_turns"].tolist() == [0] * 6
    quality = summary["judge_quality"]["judge"]
    assert (quality["games"], quality["reasked"], quality["unparsed"]) == (6, 0, 0)
    (consistency,) = quality["position_consistency"]
    assert consistency["pairs"] == 3
    assert consistency["consistent"] + consistency["first"] + consistency["second"] == 3


def test_candidates_answering_alike_on_every_prompt_are_named() -> None:
    def answer(model: str, prompt_id: str, text: str) -> Answer:
        return Answer(model, prompt_id, (text,), 3, 0.1)

    answers = [
        *(answer(model, p, f"same {p}") for model in ("lists", "prose") for p in ("p1", "p2")),
        answer("other", "p1", "same p1"),
        answer("other", "p2", "different"),
        answer("alone", "p1", "same p1"),
    ]
    assert identical_candidates(answers) == [("lists", "prose")]
