"""Vote-level agreement (MT-Bench's procedure), Cohen's kappa, position consistency, vote files and rendering.

Expected values are worked out by hand from the small files in tests/data/votes/. In name order the models are
alpaca < gpt-4 < vicuna, so a normalised key lists them that way and "A" below is the model that sorts first.

human.jsonl (and the same votes in human.csv), normalised:
    K1 (81, alpaca, gpt-4, turn 1): expert_0 B, expert_1 B, author_0 tie
    K2 (81, gpt-4, vicuna, turn 1): expert_0 A, expert_1 tie
    K3 (82, alpaca, vicuna, turn 1): expert_0 B
    K4 (81, alpaca, gpt-4, turn 2): expert_0 B, expert_1 A
gpt4_pair.json (voters gpt-4/pair-v2 and gpt-4/pair-v2-multi-turn), normalised:
    K1 B, K2 A, K3 A, K4 B, and (82, alpaca, gpt-4, turn 1) tie, which no human voted on.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from judge_arena.agreement import (
    Agreement,
    Consistency,
    GroupAgreement,
    Vote,
    VoterGroup,
    VotesInputError,
    agreement,
    cohen_kappa,
    compare_groups,
    is_run_path,
    load_battles,
    load_pairwise_votes,
    load_votes,
    parse_group,
    position_consistency,
    reasks,
    rename_models,
    run_votes,
    vote_key,
    voter_groups,
)
from judge_arena.records import Battle
from judge_arena.report.agreement import print_agreement
from judge_arena.report.quality import judge_quality, read_judge_quality

DATA = Path(__file__).parent / "data" / "votes"
HUMAN = parse_group("human=expert_*")
GPT4 = parse_group("gpt4=gpt-4/pair*")


def votes_of(*names: str) -> list[Vote]:
    """The votes of the named files in tests/data/votes, in order."""
    return [vote for name in names for vote in load_votes(DATA / name)]


def counts(result: Agreement) -> tuple[int, int, int]:
    """(agree, pairs, items) of a result."""
    return result.agree, result.pairs, result.items


# ---------------------------------------------------------------------------------------------------- loading


def test_mt_bench_votes_load_as_written() -> None:
    votes = load_pairwise_votes(DATA / "human.jsonl")
    assert len(votes) == 8
    assert votes[0] == Vote("81", "gpt-4", "alpaca", "model_a", "expert_0", 1)
    assert votes[7] == Vote("81", "gpt-4", "alpaca", "model_b", "expert_1", 2)


def test_csv_votes_equal_jsonl_votes() -> None:
    assert load_pairwise_votes(DATA / "human.csv") == load_pairwise_votes(DATA / "human.jsonl")


def test_fastchat_judge_lists_are_joined() -> None:
    voters = [vote.voter for vote in load_pairwise_votes(DATA / "gpt4_pair.json")]
    assert voters == ["gpt-4/pair-v2"] * 3 + ["gpt-4/pair-v2-multi-turn", "gpt-4/pair-v2"]


def test_chatbot_arena_votes_bothbad_is_a_tie_and_turn_defaults_to_one() -> None:
    assert load_pairwise_votes(DATA / "arena.json") == [
        Vote("58210e39b3fd4441a2bd4a518bb44c2d", "chatglm-6b", "koala-13b", "model_b", "arena_user_973", 1),
        Vote("2564acd09e3942fd97657d05282d4389", "oasst-pythia-12b", "alpaca-13b", "tie", "arena_user_973", 1),
        Vote("90bfd142157948aba01931726c888e7f", "koala-13b", "oasst-pythia-12b", "model_a", "arena_user_22", 2),
        Vote("90bfd142157948aba01931726c888e7f", "oasst-pythia-12b", "koala-13b", "tie", "arena_user_23", 2),
    ]


def test_vote_key_sorts_models_and_flips_winner() -> None:
    assert vote_key(Vote("81", "gpt-4", "alpaca", "model_a", "x", 2)) == (("81", "alpaca", "gpt-4", 2), "model_b")
    assert vote_key(Vote("81", "alpaca", "gpt-4", "model_a", "x", 2)) == (("81", "alpaca", "gpt-4", 2), "model_a")
    assert vote_key(Vote("81", "gpt-4", "alpaca", "tie", "x", 1)) == (("81", "alpaca", "gpt-4", 1), "tie")


# ------------------------------------------------------------------------------------------------------ kappa


def test_kappa_textbook_example() -> None:
    # 50 items: both say A 20 times, B 15 times; 5 A/B and 10 B/A. p_o = 0.7; marginals 25/25 and 30/20 give
    # p_e = (25·30 + 25·20) / 50² = 0.5; kappa = 0.2 / 0.5 = 0.4.
    assert cohen_kappa(((20, 0, 5), (0, 0, 0), (10, 0, 15))) == pytest.approx(0.4)


def test_kappa_perfect_and_undefined() -> None:
    assert cohen_kappa(((3, 0, 0), (0, 2, 0), (0, 0, 1))) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(((0, 0, 0), (0, 4, 0), (0, 0, 0))))  # p_e = 1
    assert math.isnan(cohen_kappa(((0, 0, 0), (0, 0, 0), (0, 0, 0))))


# -------------------------------------------------------------------------------------------------- agreement


def test_judge_vs_human_with_ties() -> None:
    # K1: judge B vs B, B (2 agree); K2: A vs A, tie (1 of 2); K3: A vs B (0 of 1); K4: B vs B, A (1 of 2).
    # Rows (judge) A: 1 1 1, B: 1 0 3. p_o = 4/7; p_e = (3·2 + 0·1 + 4·4) / 49 = 22/49; kappa = 6/27.
    result = agreement(votes_of("gpt4_pair.json", "human.jsonl"), GPT4, HUMAN)
    assert counts(result) == (4, 7, 4)
    assert result.value == pytest.approx(4 / 7)
    assert result.confusion == ((1, 1, 1), (0, 0, 0), (1, 0, 3))
    assert result.kappa == pytest.approx(2 / 9)


def test_judge_vs_human_without_ties() -> None:
    # The K2 pair (A, tie) drops out: 4 of 6. Rows A: 1 0 1, B: 1 0 3; p_e = (2·2 + 4·4) / 36; kappa = 4/16.
    result = agreement(votes_of("gpt4_pair.json", "human.jsonl"), GPT4, HUMAN, ties=False)
    assert counts(result) == (4, 6, 4)
    assert result.confusion == ((1, 0, 1), (0, 0, 0), (1, 0, 3))
    assert result.kappa == pytest.approx(0.25)


def test_judge_vs_human_one_turn() -> None:
    # Turn 1 only: K1 2 of 2, K2 1 of 2, K3 0 of 1. Rows A: 1 1 1, B: 0 0 2; p_e = (3·1 + 0·1 + 2·3) / 25.
    result = agreement(votes_of("gpt4_pair.json", "human.jsonl"), GPT4, HUMAN, turn=1)
    assert counts(result) == (3, 5, 3)
    assert result.kappa == pytest.approx(6 / 16)


def test_human_vs_human_pairs_different_annotators_once() -> None:
    # One pair per key with two experts: K1 B/B agree, K2 A/tie, K4 B/A. Symmetric halves: A row 0 ½ ½,
    # tie row ½ 0 0, B row ½ 0 1. p_o = 1/3; margins 1, ½, 3/2 on both sides: p_e = 3.5/9; kappa = -1/11.
    votes = votes_of("human.jsonl")
    result = agreement(votes, HUMAN, HUMAN)
    assert counts(result) == (1, 3, 3)
    assert result.confusion == ((0, 0.5, 0.5), (0.5, 0, 0), (0.5, 0, 1))
    assert result.kappa == pytest.approx(-1 / 11)
    # Without ties K2 drops: A row 0 0 ½, B row ½ 0 1; p_o = ½, p_e = (¼ + 9/4) / 4 = 0.625; kappa = -1/3.
    without = agreement(votes, HUMAN, HUMAN, ties=False)
    assert counts(without) == (1, 2, 2)
    assert without.kappa == pytest.approx(-1 / 3)


def test_group_with_several_patterns() -> None:
    # Authors too: K1 has three voters (B, B, tie) giving 3 pairs, 1 agreeing; K2 and K4 one disagreeing pair each.
    people = parse_group("people=expert_*,author_*")
    votes = votes_of("human.jsonl")
    assert counts(agreement(votes, people, people)) == (1, 5, 3)
    assert counts(agreement(votes, people, people, ties=False)) == (1, 2, 2)


def test_within_group_never_pairs_a_voter_with_itself() -> None:
    votes = [
        Vote("1", "a", "b", "model_a", "expert_0"),
        Vote("1", "b", "a", "model_a", "expert_0"),  # the same annotator again, now for b
        Vote("1", "a", "b", "model_a", "expert_1"),
    ]
    # Pairs across annotators only: (a, a) agrees, (b, a) does not.
    assert counts(agreement(votes, HUMAN, HUMAN)) == (1, 2, 1)


def test_groups_sharing_a_voter_are_refused() -> None:
    with pytest.raises(ValueError, match="expert_0"):
        agreement(votes_of("human.jsonl"), HUMAN, parse_group("first=expert_0"))


def test_compare_groups_rows() -> None:
    rows = compare_groups(votes_of("gpt4_pair.json", "human.jsonl"), [GPT4, HUMAN])
    # The gpt4 group's two voters never voted on one key, so it has no row against itself.
    assert [(row.first, row.second, row.turn) for row in rows] == [("gpt4", "human", None), ("human", "human", None)]
    assert [counts(row.with_ties) for row in rows] == [(4, 7, 4), (1, 3, 3)]
    assert [counts(row.without_ties) for row in rows] == [(4, 6, 4), (1, 2, 2)]


def test_compare_groups_by_turn() -> None:
    rows = compare_groups(votes_of("gpt4_pair.json", "human.jsonl"), [GPT4, HUMAN], by_turn=True)
    # Turn 1: K1-K3 as in test_judge_vs_human_one_turn; turn 2: K4, judge B vs B and A. Humans: K1 and K2 / K4.
    assert [(row.first, row.second, row.turn, counts(row.with_ties)) for row in rows] == [
        ("gpt4", "human", 1, (3, 5, 3)),
        ("gpt4", "human", 2, (1, 2, 1)),
        ("human", "human", 1, (1, 2, 2)),
        ("human", "human", 2, (0, 1, 1)),
    ]


def test_compare_groups_refuses_bad_groups() -> None:
    votes = votes_of("human.jsonl")
    with pytest.raises(ValueError, match=r"'nobody'.*matches no voter.*expert_0"):
        compare_groups(votes, [HUMAN, parse_group("nobody=gpt*")])
    with pytest.raises(ValueError, match="'human' is defined twice"):
        compare_groups(votes, [HUMAN, HUMAN])


def test_parse_group_forms() -> None:
    assert parse_group("human=expert_*, author_*") == VoterGroup("human", ("expert_*", "author_*"))
    assert parse_group("judge-x/raw") == VoterGroup("judge-x/raw", ("judge-x/raw",))
    for bad in ("=x", "name=", "name=a,,b"):
        with pytest.raises(ValueError, match="NAME=PATTERN"):
            parse_group(bad)


def test_voter_groups_match_names_literally() -> None:
    votes = [Vote("1", "a", "b", "tie", "judge[1]/raw"), Vote("1", "a", "b", "tie", "judge1/raw")]
    groups = voter_groups(votes)
    assert [group.name for group in groups] == ["judge1/raw", "judge[1]/raw"]
    assert not groups[1].matches("judge1/raw")
    assert groups[1].matches("judge[1]/raw")
    with pytest.raises(ValueError, match="2 distinct voters"):
        voter_groups(votes, limit=1)


def test_rename_models() -> None:
    votes = [Vote("1", "gpt-4", "claude-v1", "model_a", "expert_0")]
    assert rename_models(votes, {"gpt-4": "strong"}) == [Vote("1", "strong", "claude-v1", "model_a", "expert_0")]


# ------------------------------------------------------------------------------------------------ run battles


def test_run_votes_combined_follow_mt_bench() -> None:
    # judge-x/raw: 81 alpaca/gpt-4 both orders gpt-4 -> B; 81 gpt-4/vicuna each order the first shown -> tie;
    # 82 alpaca/vicuna tie then vicuna -> tie; 82 alpaca/gpt-4 gpt-4 then alpaca -> tie; 82 gpt-4/vicuna has an
    # unparsed order and 81 alpaca/vicuna only one order: no vote. judge-y/raw agrees with itself throughout.
    votes = run_votes(load_battles(DATA / "run"))
    assert Counter(votes) == Counter(
        [
            Vote("81", "alpaca", "gpt-4", "model_b", "judge-x/raw"),
            Vote("81", "gpt-4", "vicuna", "tie", "judge-x/raw"),
            Vote("82", "alpaca", "vicuna", "tie", "judge-x/raw"),
            Vote("82", "alpaca", "gpt-4", "tie", "judge-x/raw"),
            Vote("81", "alpaca", "gpt-4", "model_b", "judge-x/plain"),
            Vote("81", "alpaca", "gpt-4", "model_b", "judge-y/raw"),
            Vote("81", "gpt-4", "vicuna", "model_a", "judge-y/raw"),
            Vote("82", "alpaca", "vicuna", "tie", "judge-y/raw"),
        ]
    )


def test_run_votes_separate_and_turn() -> None:
    battles = load_battles(DATA / "run" / "battles.csv")
    votes = run_votes(battles, orders="separate", turn=2)
    # 19 games, one unparsed.
    assert len(votes) == 18
    assert votes[0] == Vote("81", "alpaca", "gpt-4", "model_b", "judge-x/raw", 2)
    with pytest.raises(ValueError, match="turn"):
        run_votes(battles, turn=0)


def test_judge_vs_judge_from_a_run() -> None:
    # x vs y on the three keys both voted on: B/B, tie/A, tie/tie. Rows tie: 1 1 0, B: 0 0 1;
    # p_o = 2/3, p_e = (0·1 + 2·1 + 1·1) / 9 = 1/3, kappa = 0.5. Without ties only B/B is left: kappa undefined.
    votes = load_votes(DATA / "run")
    x, y = parse_group("x=judge-x/raw"), parse_group("y=judge-y/raw")
    result = agreement(votes, x, y)
    assert counts(result) == (2, 3, 3)
    assert result.kappa == pytest.approx(0.5)
    without = agreement(votes, x, y, ties=False)
    assert counts(without) == (1, 1, 1)
    assert math.isnan(without.kappa)


def test_run_judge_vs_humans_combined_and_separate() -> None:
    # judge-y/raw on turn 1: K1 B vs B, B; K2 A vs A, tie; K3 tie vs B. 3 of 5; rows A: 1 1 0, tie: 0 0 1,
    # B: 0 0 2; p_e = (2·1 + 1·1 + 2·3) / 25, kappa = 6/16. Without ties 3 of 3.
    y = parse_group("y=judge-y/raw")
    combined = load_votes(DATA / "run") + votes_of("human.jsonl")
    result = agreement(combined, y, HUMAN)
    assert counts(result) == (3, 5, 3)
    assert result.kappa == pytest.approx(0.375)
    assert counts(agreement(combined, y, HUMAN, ties=False)) == (3, 3, 2)
    # Each order its own vote: K1 2×2 pairs all agree, K2 2×2 pairs half agree, K3 2 pairs none.
    separate = load_votes(DATA / "run", orders="separate") + votes_of("human.jsonl")
    assert counts(agreement(separate, y, HUMAN)) == (6, 10, 3)


def test_run_votes_on_turn_two_meet_other_votes() -> None:
    # Filed under turn 2, judge-y's 81 alpaca/gpt-4 vote (B) meets K4: expert_0 B, expert_1 A.
    votes = load_votes(DATA / "run", run_turn=2) + votes_of("human.jsonl")
    assert counts(agreement(votes, parse_group("y=judge-y/raw"), HUMAN)) == (1, 2, 1)


def test_position_consistency() -> None:
    rows = position_consistency(load_battles(DATA / "run"))
    # judge-x/raw: 81 alpaca/gpt-4 consistent; 81 gpt-4/vicuna first+first; 82 alpaca/vicuna tie+first;
    # 82 alpaca/gpt-4 second+second; 82 gpt-4/vicuna unparsed; 81 alpaca/vicuna one order only.
    assert rows == [
        Consistency("judge-x", "plain", None, 1, 1, 0, 0, 0, 0),
        Consistency("judge-x", "plain", "writing", 1, 1, 0, 0, 0, 0),
        Consistency("judge-x", "raw", None, 4, 1, 2, 1, 1, 1),
        Consistency("judge-x", "raw", "math", 2, 0, 1, 1, 1, 0),
        Consistency("judge-x", "raw", "writing", 2, 1, 1, 0, 0, 1),
        Consistency("judge-y", "raw", None, 3, 3, 0, 0, 0, 0),
        Consistency("judge-y", "raw", "math", 1, 1, 0, 0, 0, 0),
        Consistency("judge-y", "raw", "writing", 2, 2, 0, 0, 0, 0),
    ]
    assert rows[2].value == pytest.approx(0.25)


def test_judge_quality_reads_back_as_measured() -> None:
    # judge-y's battles first: the summary lists judges as they appear, position consistency by name.
    battles = sorted(load_battles(DATA / "run"), key=lambda b: b.judge != "judge-y")
    summary = json.loads(json.dumps({"judge_quality": judge_quality(battles)}))
    assert list(summary["judge_quality"]) == ["judge-y", "judge-x"]
    quality = read_judge_quality(summary)
    assert quality is not None
    assert list(quality.reasks.items()) == list(reasks(battles).items())
    assert quality.consistency == [c for c in position_consistency(battles) if c.category is None]
    assert [(c.judge, c.normalization) for c in quality.consistency] == [
        ("judge-x", "plain"),
        ("judge-x", "raw"),
        ("judge-y", "raw"),
    ]
    assert read_judge_quality({"name": "rated"}) is None


def test_the_same_order_twice_is_refused() -> None:
    battle = Battle("1", "c", "j", "raw", "a", "b", "A>B", "model_a")
    with pytest.raises(ValueError, match="twice in the same order"):
        position_consistency([battle, battle])
    with pytest.raises(ValueError, match="twice in the same order"):
        run_votes([battle, battle])


# ------------------------------------------------------------------------------------------------- bad inputs

GOOD = '{"question_id": 1, "model_a": "a", "model_b": "b", "winner": "tie", "judge": "j"}'


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("v.jsonl", GOOD + '\n{"question_id": 1, "model_a": "a"', r"v\.jsonl line 2: invalid JSON"),
        ("v.jsonl", GOOD + "\n" + GOOD.replace('"tie"', '"model_c"'), r"line 2: field 'winner': must be one of"),
        ("v.jsonl", GOOD.replace('"j"', "[]"), r"line 1: field 'judge': must be a non-empty string or a list"),
        ("v.jsonl", GOOD.replace('"b"', '"a"'), r"line 1: field 'model_b': the same model as model_a"),
        ("v.jsonl", GOOD.replace("1", "1.0"), r"line 1: field 'question_id': must be a non-empty string or an in"),
        ("v.jsonl", GOOD.replace("}", ', "turn": 0}'), r"line 1: field 'turn': must be a positive integer"),
        ("v.jsonl", GOOD.replace("}", ', "turn": true}'), r"line 1: field 'turn'"),
        ("v.json", f"[{GOOD}, 3]", r"v\.json item 2: expected a JSON object, got the number 3"),
        ("v.json", '[{"question_id": 1}]', r"item 1: field 'model_a': missing"),
        ("v.json", "[\n" + GOOD + ",\n]", r"line 3: invalid JSON"),
        ("v.jsonl", "", r"no votes"),
        ("v.txt", GOOD, r"unknown file type '\.txt'"),
        ("v.csv", "question_id,model_a,model_b,judge\n1,a,b,j\n", r"v\.csv line 1: field 'winner': missing column"),
        ("v.csv", "question_id,model_a,model_b,winner,judge,turn\n1,a,b,tie,j,1\n1,a,b,tie,j,two\n", r"line 3: fie"),
        ("v.csv", "question_id,model_a,model_b,winner,judge\n1,a,b,tie\n", r"line 2: 4 cells, the header has 5"),
        ("v.csv", "question_id,model_a,model_b,winner,judge\n,a,b,tie,j\n", r"line 2: field 'question_id'"),
    ],
)
def test_bad_vote_files(tmp_path: Path, name: str, content: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VotesInputError, match=match):
        load_votes(path)


def test_unreadable_vote_files(tmp_path: Path) -> None:
    with pytest.raises(VotesInputError, match="no such file"):
        load_votes(tmp_path / "missing.jsonl")
    path = tmp_path / "v.jsonl"
    path.write_bytes(GOOD.encode() + b"\n\xff\n")
    with pytest.raises(VotesInputError, match="line 2: not valid UTF-8"):
        load_votes(path)


HEADER = "prompt_id,category,judge,normalization,model_a,model_b,label,winner,weight,defence_flags\n"
ROW = "1,c,j,raw,a,b,A>B,model_a,1.0,\n"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (HEADER + ROW + "1,c,j,raw,b,a,A>B,model_b,1.0,\n", r"line 3: field 'winner': must be model_a for label A>B"),
        (HEADER + ROW + "1,c,j,raw,b,a,,model_a,1.0,\n", r"line 3: field 'winner': must be empty"),
        (HEADER + "1,c,j,raw,a,b,A>>>B,model_a,1.0,\n", r"line 2: field 'label'"),
        (HEADER + "1,c,j,raw,a,b,A>B,model_a,heavy,\n", r"line 2: field 'weight'"),
        (HEADER + "1,c,,raw,a,b,A>B,model_a,1.0,\n", r"line 2: field 'judge'"),
        (HEADER + ROW + ROW, r"line 3: the same game as line 2"),
        (HEADER.replace("label,", ""), r"line 1: field 'label': missing column"),
        (HEADER, r"no battles"),
    ],
)
def test_bad_battles(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "battles.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VotesInputError, match=match):
        load_battles(path)


def test_battles_csv_is_recognised_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "anything.csv"
    path.write_text(HEADER + ROW + "1,c,j,raw,b,a,B>A,model_b,1.0,\n", encoding="utf-8")
    assert load_votes(path) == [Vote("1", "a", "b", "model_a", "j/raw")]
    assert is_run_path(path)
    assert is_run_path(DATA / "run")
    assert not is_run_path(DATA / "human.csv")


def test_parquet_without_pyarrow_names_the_package(tmp_path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pyarrow is installed")
    path = tmp_path / "votes.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(VotesInputError, match="needs the 'pyarrow' package"):
        load_votes(path)


def test_parquet_votes(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    import pandas as pd

    path = tmp_path / "votes.parquet"
    rows = [
        {"question_id": 81, "model_a": "gpt-4", "model_b": "alpaca", "winner": "tie (bothbad)", "judge": "u", "turn": 2}
    ]
    pd.DataFrame(rows).to_parquet(path)
    assert load_votes(path) == [Vote("81", "gpt-4", "alpaca", "tie", "u", 2)]


# ------------------------------------------------------------------------------------------------- rendering


def table_rows(text: str) -> list[list[str]]:
    """The stripped cells of every table line of rendered text."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


def test_print_agreement() -> None:
    console = Console(record=True, width=200)
    votes = votes_of("gpt4_pair.json", "human.jsonl")
    rows = compare_groups(votes, [GPT4, HUMAN])
    print_agreement(console, rows, position_consistency(load_battles(DATA / "run")))
    text = console.export_text()
    cells = table_rows(text)
    # 4/7 with kappa 2/9, without ties 4/6 with kappa 1/4; humans 1/3 with kappa -1/11, then 1/2 with -1/3.
    assert ["gpt4", "human", "all", "0.571", "7", "0.222", "0.667", "6", "0.250"] in cells
    assert ["human", "human", "all", "0.333", "3", "-0.091", "0.500", "2", "-0.333"] in cells
    assert "gpt4 (rows) vs human (columns)" in text
    assert ["B wins", "1", "0", "3"] in cells
    assert ["tie", "0.5", "0", "0"] in cells
    assert ["judge-x", "raw", "all", "4", "0.250", "2", "1", "1", "1"] in cells
    assert ["judge-x", "raw", "math", "2", "0.000", "1", "1", "1", "0"] in cells


def test_group_agreement_is_plain_data() -> None:
    empty = Agreement(0, 0, 0, ((0, 0, 0), (0, 0, 0), (0, 0, 0)))
    row = GroupAgreement("a", "b", None, empty, empty)
    assert math.isnan(row.with_ties.value)
    assert math.isnan(row.with_ties.kappa)


def test_agreement_command_on_a_run_and_bad_votes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from judge_arena.cli import main

    header = "prompt_id,category,judge,normalization,model_a,model_b,label,winner,weight,defence_flags\n"
    rows = [
        "q1,c,j,raw,x,y,A>B,model_a,1,",
        "q1,c,j,raw,y,x,B>A,model_b,1,",
        "q1,c,j,plain,x,y,A=B,tie,1,",
        "q1,c,j,plain,y,x,B>A,model_b,1,",
    ]
    run = tmp_path / "battles.csv"
    run.write_text(header + "\n".join(rows) + "\n")
    assert main(["agreement", str(run)]) == 0
    out = capsys.readouterr().out
    assert "j/raw" in out
    assert "j/plain" in out
    bad = tmp_path / "votes.jsonl"
    bad.write_text('{"question_id": 1, "model_a": "x", "model_b": "y", "winner": "maybe", "judge": "h", "turn": 1}\n')
    assert main(["agreement", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "winner" in err


def test_judge_agreement_compares_judges_within_each_normalization() -> None:
    from judge_arena.agreement import judge_agreement
    from judge_arena.records import Battle

    def game(judge: str, normalization: str, prompt: str, label: str) -> list[Battle]:
        # both orders agree, so each game pair is one combined vote
        flipped = {"A>B": "B>A", "B>A": "A>B", "A=B": "A=B"}[label]
        winner = {"A>B": "model_a", "B>A": "model_b", "A=B": "tie"}
        return [
            Battle(prompt, "c", judge, normalization, "x", "y", label, winner[label], 1.0),  # type: ignore[arg-type]
            Battle(prompt, "c", judge, normalization, "y", "x", flipped, winner[flipped], 1.0),  # type: ignore[arg-type]
        ]

    battles = [
        *game("j1", "raw", "p1", "A>B"),
        *game("j2", "raw", "p1", "A>B"),
        *game("j1", "raw", "p2", "A>B"),
        *game("j2", "raw", "p2", "B>A"),
        *game("j1", "plain", "p1", "A=B"),
        *game("j2", "plain", "p1", "A=B"),
    ]
    rows = judge_agreement(battles, ["j1", "j2"], ["raw", "plain"])
    assert [(r.first, r.second) for r in rows] == [("j1/raw", "j2/raw"), ("j1/plain", "j2/plain")]
    assert (rows[0].with_ties.agree, rows[0].with_ties.pairs) == (1, 2)
    assert (rows[1].with_ties.agree, rows[1].with_ties.pairs, rows[1].without_ties.pairs) == (1, 1, 0)
    assert judge_agreement(battles, ["j1"], ["raw"]) == []
