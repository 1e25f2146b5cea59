"""Agreement between voters at the level of single votes (judge–human, judge–judge, human–human), and a judge's
position consistency.

Agreement follows MT-Bench (FastChat ``fastchat/llm_judge/compute_agreement.py``, lm-sys/FastChat):

- A vote is keyed by (question, model pair, turn). The pair is put in name order (the model whose name sorts
  first becomes ``model_a``) and the winner is flipped with it, so (a, b) and (b, a) votes match.
- Voters are gathered into *groups* (MT-Bench: every ``expert_*`` is "human", the GPT-4 pairwise judge is
  "gpt4-pair"). Two different groups are compared vote by vote: on every key both voted on, every vote of one
  group is paired with every vote of the other. A group compared with itself pairs every two votes of the
  group on the same key (each unordered pair once) cast by *different* voters: a vote is never compared with
  itself, nor with another vote of the same voter.
- "With ties" counts every pair; "without ties" drops each pair in which either vote is a tie. Agreement is the
  share of counted pairs whose two votes are the same.

On the same pairs: the 3×3 confusion matrix (rows the first group's vote, columns the second's, in the order
model_a, tie, model_b) and Cohen's kappa computed from it. Within one group the two votes of a pair have no
natural order, so each pair adds ½ to both (x, y) and (y, x): the matrix is symmetric, its cells may be halves,
and kappa does not depend on which vote came first.

Votes come from the MT-Bench human-judgment layout and the Chatbot Arena battles layout (JSON, JSON Lines, CSV or
Parquet; `load_pairwise_votes`) or from a run's ``battles.csv`` (`load_battles`, then `run_votes`). A run judges
every pair in both orders; by default the two orders are combined as MT-Bench's pairwise judge does (FastChat
``show_result.py``): a win only when both orders name the same winner, otherwise a tie.

Position consistency (the MT-Bench paper's measure of position bias) is read from a run's battles: the share of
pairs whose two orders give the same winner once the second order is flipped back.

Every problem in an input file raises `VotesInputError` (a ValueError) naming the file and, where known, the line,
row or item and the field.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from glob import escape as glob_escape
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from judge_arena.choices import VoteOrders as Orders
from judge_arena.inputs import RECORD_SUFFIXES, InputFileError, conversation_turns, json_type, read_records
from judge_arena.labels import LABEL_SETS, label_set_of
from judge_arena.records import Answer, Battle, Prompt, Winner
from judge_arena.runs import NO_FLAGS, read_table

CLASSES: tuple[Winner, ...] = ("model_a", "tie", "model_b")
"""Row and column order of the confusion matrices."""

VOTE_FIELDS = ("question_id", "model_a", "model_b", "winner", "judge")
"""Fields every record of a pairwise-vote file must have; ``turn`` is optional (1 when absent)."""

RUN_SIGNATURE = ("prompt_id", "judge", "normalization", "model_a", "model_b", "label", "winner")
"""Columns that mark a CSV file as a run's battles.csv (`judge_arena.runs.COLUMNS` has them all)."""

VOTE_SUFFIXES = RECORD_SUFFIXES
"""File types `load_pairwise_votes` reads, by suffix (`inputs.read_records`)."""

Confusion = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
"""A 3×3 count matrix indexed like `CLASSES`: rows the first group's vote, columns the second's."""

VoteKey = tuple[str, str, str, int]
"""What two votes must share to be compared: (question_id, model first by name, the other model, turn)."""

_POSITION: Mapping[Winner, int] = {"model_a": 1, "tie": 0, "model_b": -1}
"""A verdict for the answer shown first counts +1, for the one shown second −1 (`position_consistency`)."""
_WINNERS: dict[str, Winner] = {"model_a": "model_a", "model_b": "model_b", "tie": "tie", "tie (bothbad)": "tie"}
_DIGITS = re.compile(r"[0-9]+")


class VotesInputError(InputFileError):
    """A vote or battles file that cannot be read."""


_Fail = Callable[[str, str], VotesInputError]
"""Builds the error for (field, reason) at the record being read."""


@dataclass(frozen=True)
class Vote:
    """One voter's verdict on two models' answers to one question, at one turn of the conversation."""

    question_id: str
    model_a: str
    model_b: str
    winner: Winner
    voter: str
    """Who voted: a human annotator's id, or for a run's votes ``<judge>/<normalization>``."""
    turn: int = 1
    """Counted from 1. MT-Bench's turn-2 votes judge the second answer with the whole conversation shown."""


@dataclass(frozen=True)
class VoterGroup:
    """A named set of voters, given by shell-style patterns (``*``, ``?``, ``[...]``) over voter names."""

    name: str
    patterns: tuple[str, ...]

    def matches(self, voter: str) -> bool:
        """Whether the voter belongs to the group (case-sensitive, like the names in the files)."""
        return any(fnmatchcase(voter, pattern) for pattern in self.patterns)


@dataclass(frozen=True)
class Agreement:
    """How often two voter groups' votes agree over the pairs of votes compared."""

    agree: int
    pairs: int
    """Pairs of votes compared."""
    items: int
    """Keys (question, model pair, turn) that gave at least one pair."""
    confusion: Confusion

    @property
    def value(self) -> float:
        """agree / pairs (NaN without pairs)."""
        return self.agree / self.pairs if self.pairs else math.nan

    @property
    def kappa(self) -> float:
        """Cohen's kappa of the confusion matrix (NaN when undefined)."""
        return cohen_kappa(self.confusion)


@dataclass(frozen=True)
class GroupAgreement:
    """One row of the agreement table: two groups (the same one twice for within-group agreement), one turn."""

    first: str
    second: str
    turn: int | None
    """None when all turns are pooled."""
    with_ties: Agreement
    without_ties: Agreement


@dataclass(frozen=True)
class Consistency:
    """A judge's position consistency on one normalization, over all categories (category None) or one."""

    judge: str
    normalization: str
    category: str | None
    pairs: int
    """Pairs judged in both orders with both verdicts parsed."""
    consistent: int
    """Pairs whose two orders name the same winner (or both a tie)."""
    first: int
    """Inconsistent pairs leaning to the answer shown first."""
    second: int
    """Inconsistent pairs leaning to the answer shown second."""
    unparsed: int
    """Pairs judged in both orders where at least one verdict could not be parsed; not in `pairs`."""
    unpaired: int
    """Pairs judged in one order only (the other call failed); not in `pairs`."""

    @property
    def value(self) -> float:
        """consistent / pairs (NaN without pairs)."""
        return self.consistent / self.pairs if self.pairs else math.nan


# ------------------------------------------------------------------------------------------------------ metrics


def cohen_kappa(confusion: Confusion) -> float:
    """(p_o − p_e) / (1 − p_e) from a count matrix; NaN when it is empty or when p_e is 1 (kappa undefined)."""
    n = sum(sum(row) for row in confusion)
    if n == 0:
        return math.nan
    observed = sum(confusion[i][i] for i in range(3)) / n
    rows = [sum(confusion[i]) for i in range(3)]
    columns = [sum(confusion[i][j] for i in range(3)) for j in range(3)]
    expected = sum(rows[k] * columns[k] for k in range(3)) / (n * n)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def vote_key(vote: Vote) -> tuple[VoteKey, Winner]:
    """The vote's key (question_id, model by name order, other model, turn) and its winner in that order."""
    if vote.model_a < vote.model_b:
        return (vote.question_id, vote.model_a, vote.model_b, vote.turn), vote.winner
    return (vote.question_id, vote.model_b, vote.model_a, vote.turn), _flip(vote.winner)


def agreement(
    votes: Iterable[Vote], first: VoterGroup, second: VoterGroup, *, ties: bool = True, turn: int | None = None
) -> Agreement:
    """Agreement of two voter groups (or of one group with itself when `first == second`), MT-Bench's way.

    Args:
        votes: All votes; only those of the two groups (and of `turn`, when given) are used.
        first: Its votes are the confusion matrix's rows.
        second: Its votes are the columns; pass `first` again for within-group agreement.
        ties: True counts every pair of votes ("with ties"); False drops pairs where either vote is a tie.
        turn: Only votes on this turn; None pools all turns (each turn is still its own key).

    Raises:
        ValueError: Two different groups share a voter (a vote would be compared with itself).
    """
    within = first == second
    gathered: dict[VoteKey, tuple[list[tuple[str, Winner]], list[tuple[str, Winner]]]] = defaultdict(lambda: ([], []))
    for vote in votes:
        if turn is not None and vote.turn != turn:
            continue
        in_first, in_second = first.matches(vote.voter), second.matches(vote.voter)
        if not within and in_first and in_second:
            raise ValueError(f"voter '{vote.voter}' is in both groups '{first.name}' and '{second.name}'")
        key, winner = vote_key(vote)
        if in_first:
            gathered[key][0].append((vote.voter, winner))
        elif in_second:
            gathered[key][1].append((vote.voter, winner))
    cells: dict[tuple[Winner, Winner], float] = defaultdict(float)
    agree = pairs = items = 0
    for row_votes, column_votes in gathered.values():
        if within:
            compared = [(x, y) for (vx, x), (vy, y) in combinations(row_votes, 2) if vx != vy]
        else:
            compared = [(x, y) for _, x in row_votes for _, y in column_votes]
        if not ties:
            compared = [(x, y) for x, y in compared if "tie" not in (x, y)]
        for x, y in compared:
            if within:
                cells[(x, y)] += 0.5
                cells[(y, x)] += 0.5
            else:
                cells[(x, y)] += 1.0
            agree += x == y
        pairs += len(compared)
        items += bool(compared)
    return Agreement(agree=agree, pairs=pairs, items=items, confusion=_confusion(cells))


def compare_groups(
    votes: Sequence[Vote], groups: Sequence[VoterGroup], *, within: bool = True, by_turn: bool = False
) -> list[GroupAgreement]:
    """The agreement table: every pair of distinct groups, in the order given, with and without ties.

    Args:
        votes: All votes.
        groups: The groups to compare; each must match at least one voter.
        within: Also compare each group with itself (MT-Bench's human–human agreement), right before its pairs
            with later groups; such a row is left out when no two of the group's voters voted on the same item.
        by_turn: One row per turn present in the votes (MT-Bench reports turn 1 and turn 2 apart) instead of
            one row pooling all turns.

    Raises:
        ValueError: Two groups have the same name, a group matches no voter, or two groups share a voter.
    """
    names = [group.name for group in groups]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"voter group '{duplicated[0]}' is defined twice")
    voters = sorted({vote.voter for vote in votes})
    for group in groups:
        if not any(group.matches(voter) for voter in voters):
            shown = ", ".join(voters[:20]) + (f", … ({len(voters)} in all)" if len(voters) > 20 else "")
            raise ValueError(
                f"voter group '{group.name}' ({', '.join(group.patterns)}) matches no voter; voters: {shown}"
            )
    pairs: list[tuple[VoterGroup, VoterGroup]] = []
    for i, group in enumerate(groups):
        if within:
            pairs.append((group, group))
        pairs.extend((group, other) for other in groups[i + 1 :])
    turns: list[int | None] = [turn for turn in sorted({vote.turn for vote in votes})] if by_turn else [None]
    rows = []
    for a, b in pairs:
        for turn in turns:
            with_ties = agreement(votes, a, b, ties=True, turn=turn)
            if a == b and not with_ties.pairs:
                continue
            without_ties = agreement(votes, a, b, ties=False, turn=turn)
            rows.append(GroupAgreement(a.name, b.name, turn, with_ties, without_ties))
    return rows


def compare_by_category(
    votes: Sequence[Vote],
    categories: Mapping[str, str],
    groups: Sequence[VoterGroup],
    *,
    within: bool = True,
    by_turn: bool = False,
) -> dict[str, list[GroupAgreement]]:
    """`compare_groups` on each category's votes, by category name: a vote's category is its question's in
    `categories` (question id → category, e.g. from a run's battles); votes on other questions are left out, and
    so is a group with no vote in a category."""
    by_category: dict[str, list[Vote]] = defaultdict(list)
    for vote in votes:
        if vote.question_id in categories:
            by_category[categories[vote.question_id]].append(vote)
    tables = {}
    for category in sorted(by_category):
        shared = by_category[category]
        present = [g for g in groups if any(g.matches(vote.voter) for vote in shared)]
        if len(present) > 1 or (within and present):
            tables[category] = compare_groups(shared, present, within=within, by_turn=by_turn)
    return tables


def unshared_comparisons(
    rows: Sequence[GroupAgreement], votes: Sequence[Vote], groups: Sequence[VoterGroup]
) -> list[str]:
    """One line per comparison of two different groups that compared no pair of votes, with what each group voted
    on (questions, models, turns), so that a mismatch of names or turns shows: such a row's figures are empty."""
    by_name = {group.name: group for group in groups}
    lines = []
    for row in rows:
        if row.first == row.second or row.with_ties.pairs:
            continue
        sides = [[vote for vote in votes if by_name[name].matches(vote.voter)] for name in (row.first, row.second)]
        questions = [{vote.question_id for vote in side} for side in sides]
        shown = []
        for name, side in zip((row.first, row.second), sides, strict=True):
            models = sorted({model for vote in side for model in (vote.model_a, vote.model_b)})
            turns = sorted({vote.turn for vote in side})
            listed = ", ".join(models[:6]) + (", …" if len(models) > 6 else "")
            shown.append(f"{name}: models {listed}; turns {', '.join(map(str, turns))}")
        turn = "" if row.turn is None else f" (turn {row.turn})"
        lines.append(
            f"{row.first} and {row.second} share no vote on the same question, model pair and turn{turn}: "
            f"{len(questions[0] & questions[1])} questions in common; " + "; ".join(shown)
        )
    return lines


def parse_group(spec: str) -> VoterGroup:
    """A group from ``NAME=PATTERN[,PATTERN...]``, or from a bare ``PATTERN`` (the group is named after it).

    Raises:
        ValueError: The name or a pattern is empty.
    """
    name, sep, patterns = spec.partition("=")
    if not sep:
        name, patterns = spec, spec
    parts = tuple(part.strip() for part in patterns.split(","))
    if not name.strip() or not all(parts):
        raise ValueError(f"voter group '{spec}': expected NAME=PATTERN[,PATTERN...] with no empty name or pattern")
    return VoterGroup(name=name.strip(), patterns=parts)


def voter_groups(votes: Iterable[Vote], *, limit: int = 12) -> list[VoterGroup]:
    """One group per distinct voter, by name, each matching exactly that voter.

    Raises:
        ValueError: More than `limit` voters (a human file has one per annotator): name groups instead.
    """
    voters = sorted({vote.voter for vote in votes})
    if len(voters) > limit:
        raise ValueError(f"{len(voters)} distinct voters (more than {limit}): define voter groups explicitly")
    return [VoterGroup(name=voter, patterns=(glob_escape(voter),)) for voter in voters]


def rename_models(votes: Iterable[Vote], names: Mapping[str, str]) -> list[Vote]:
    """The votes with model names replaced through `names` (names it lacks are kept), to match two sources."""
    return [
        replace(vote, model_a=names.get(vote.model_a, vote.model_a), model_b=names.get(vote.model_b, vote.model_b))
        for vote in votes
    ]


# ------------------------------------------------------------------------------------------------- run battles


def run_votes(battles: Iterable[Battle], *, orders: Orders = "combined", turn: int | None = None) -> list[Vote]:
    """A run's battles as votes; the voter is ``<judge>/<normalization>``. Unparsed verdicts give no vote.

    Args:
        battles: The run's battles.
        orders: "combined": one vote per pair judged in both orders with both verdicts parsed — the winner when
            both orders name the same one, otherwise a tie (MT-Bench's pairwise judge); a pair with a missing or
            unparsed order gives no vote. "separate": one vote per parsed verdict.
        turn: The turn the votes are filed under; None: each verdict's own (`Battle.turn`, the last turn of the
            conversation the judge saw, which is what MT-Bench's turn-2 votes and Chatbot Arena's votes judge; a
            per-turn template such as `mt-bench` judges each turn apart, and each vote is filed under its turn).

    Raises:
        ValueError: `turn` is below 1, or a judge judged the same pair in the same order twice.
    """
    if turn is not None and turn < 1:
        raise ValueError(f"turn must be >= 1, got {turn}")
    battles = list(battles)
    if orders == "separate":
        return [
            Vote(b.prompt_id, b.model_a, b.model_b, b.winner, _voter(b), turn or b.turn)
            for b in battles
            if b.winner is not None
        ]
    votes = []
    for (judge, normalization, prompt_id, first, second, _), (forward, reverse) in _pairs(battles).items():
        if forward is None or reverse is None or forward.winner is None or reverse.winner is None:
            continue
        one, other = forward.winner, _flip(reverse.winner)
        voter = f"{judge}/{normalization}"
        votes.append(Vote(prompt_id, first, second, one if one == other else "tie", voter, turn or forward.turn))
    return votes


def judge_agreement(
    battles: Sequence[Battle], judges: Sequence[str], normalizations: Sequence[str]
) -> list[GroupAgreement]:
    """Every pair of judges' vote-level agreement on the same games, one comparison per normalization."""
    if len(judges) < 2:
        return []
    votes = run_votes(battles)
    voters = {vote.voter for vote in votes}
    rows: list[GroupAgreement] = []
    for normalization in normalizations:
        groups = [VoterGroup(f"{j}/{normalization}", (f"{j}/{normalization}",)) for j in judges]
        present = [group for group in groups if group.name in voters]
        if len(present) > 1:
            rows += compare_groups(votes, present, within=False)
    return rows


def position_consistency(battles: Iterable[Battle]) -> list[Consistency]:
    """Each judge's position consistency per normalization: over all categories, then per category (by name).

    A pair judged in both orders is consistent when both name the same winner (or both a tie). An inconsistent
    pair leans to the first position when, counting +1 for a verdict for the answer shown first and −1 for one
    for the answer shown second, its two verdicts add up above zero (both orders favour the first answer, or one
    does and the other is a tie), and to the second position when they add up below zero.

    Raises:
        ValueError: A judge judged the same pair in the same order twice.
    """
    # One count per pair (tens of thousands in a large run), summed into the overall and category tallies after.
    pairs: Counter[tuple[str, str, str, str]] = Counter()
    for (judge, normalization, _, _, _, _), (forward, reverse) in _pairs(battles).items():
        if forward is None or reverse is None:
            category, kind = next(b for b in (forward, reverse) if b is not None).category, "unpaired"
        elif forward.winner is None or reverse.winner is None:
            category, kind = forward.category, "unparsed"
        else:
            lean = _POSITION[forward.winner] + _POSITION[reverse.winner]
            category, kind = forward.category, "consistent" if lean == 0 else "first" if lean > 0 else "second"
        pairs[(judge, normalization, category, kind)] += 1
    tallies: dict[tuple[str, str, str | None], Counter[str]] = defaultdict(Counter)
    for (judge, normalization, category, kind), count in pairs.items():
        tallies[(judge, normalization, None)][kind] += count
        tallies[(judge, normalization, category)][kind] += count
    rows = []
    for key in sorted(tallies, key=lambda k: (k[0], k[1], k[2] is not None, k[2] or "")):
        tally = tallies[key]
        rows.append(
            Consistency(
                judge=key[0],
                normalization=key[1],
                category=key[2],
                pairs=tally["consistent"] + tally["first"] + tally["second"],
                consistent=tally["consistent"],
                first=tally["first"],
                second=tally["second"],
                unparsed=tally["unparsed"],
                unpaired=tally["unpaired"],
            )
        )
    return rows


@dataclass(frozen=True)
class Reasks:
    """How often a judge's first reply had no usable verdict, over the games it judged."""

    games: int
    reasked: int
    """Games re-asked once for a verdict (`judge.REASK`)."""
    unparsed: int
    """Re-asked games still without a verdict: left out of the ratings."""


def reasks(battles: Iterable[Battle]) -> dict[str, Reasks]:
    """Each judge's re-ask counts, by judge name in order of first appearance."""
    counted = {"games", "reasked", "unparsed"}
    tallies = Counter((b.judge, kind) for b in battles for kind in ("games", *b.flags) if kind in counted)
    judges = dict.fromkeys(judge for judge, _ in tallies)  # each judge's "games" is its first entry
    return {j: Reasks(tallies[(j, "games")], tallies[(j, "reasked")], tallies[(j, "unparsed")]) for j in judges}


# ------------------------------------------------------------------------------------------------------ loading


def load_votes(path: Path, *, orders: Orders = "combined", run_turn: int | None = None) -> list[Vote]:
    """Votes from a run (its folder or battles.csv, via `run_votes`) or from a file of pairwise votes.

    A folder, or a CSV file whose header has the run columns (`is_run_path`), is read as a run; anything else as
    pairwise votes.

    Raises:
        VotesInputError: The file cannot be used (the message names file, place and field).
    """
    return load_sources([path], orders=orders, run_turn=run_turn)[0]


def load_sources(
    paths: Iterable[Path], *, orders: Orders = "combined", run_turn: int | None = None
) -> tuple[list[Vote], list[Consistency]]:
    """The votes of every path, each read as `load_votes` does, and the position consistency of the runs among them.

    Raises:
        VotesInputError: A file cannot be used (the message names file, place and field).
    """
    votes: list[Vote] = []
    consistency: list[Consistency] = []
    for path in paths:
        if is_run_path(path):
            battles = load_battles(path)
            votes += run_votes(battles, orders=orders, turn=run_turn)
            consistency += position_consistency(battles)
        else:
            votes += load_pairwise_votes(path)
    return votes, consistency


def question_categories(paths: Iterable[Path]) -> dict[str, str]:
    """The category of each question (prompt) the runs among `paths` judged (by `is_run_path`), by question id."""
    return {battle.prompt_id: battle.category for path in paths if is_run_path(path) for battle in load_battles(path)}


def is_run_path(path: Path) -> bool:
    """Whether `load_votes` reads the path as a run: a folder, or a CSV file whose header has the run columns."""
    return path.is_dir() or (path.suffix.lower() == ".csv" and _has_run_header(path))


def load_pairwise_votes(path: Path) -> list[Vote]:
    """Votes in the MT-Bench human-judgment or Chatbot Arena battles layout, by file suffix.

    Records need ``question_id`` (string or integer), ``model_a``, ``model_b``, ``winner`` (model_a, model_b, tie,
    or "tie (bothbad)", read as a tie) and ``judge`` (a string, or a list of strings such as FastChat's
    ``["gpt-4", "pair-v2"]``, joined with "/"); ``turn`` (a positive integer) is optional, 1 when absent. Other
    fields are ignored. ``.json`` holds a JSON array of objects or JSON Lines, ``.jsonl`` JSON Lines, ``.csv`` a
    header row then one vote a row, ``.parquet`` a table (needs the pyarrow package).

    Raises:
        VotesInputError: The file cannot be read, has no vote, or a record is not a valid vote.
    """
    shown = str(path)
    return [_vote(record, shown, where) for where, record in _vote_records(path, shown)]


def _vote_records(path: Path, shown: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The records of a vote file, each with its place (line, item or row), by file suffix; at least one."""
    records = read_records(path, shown, VotesInputError, required=VOTE_FIELDS)
    if not records:
        raise VotesInputError(shown, "no votes (the file is empty)")
    return records


CONVERSATIONS = ("conversation_a", "conversation_b")
"""The fields of a vote record that hold the conversations the voter saw (MT-Bench, Chatbot Arena)."""


@dataclass(frozen=True)
class VotedConversations:
    """A vote file that carries the conversations its voters saw: what a run needs to judge exactly the voted pairs
    on exactly those answers (`ArenaConfig.votes`)."""

    prompts: tuple[Prompt, ...]
    """One per question, in file order: the user turns of its conversations, its category (a record's
    ``category``, else the file's stem) and the file's stem as suite."""
    answers: Mapping[str, Mapping[str, Answer]]
    """Each model's answer (the assistant turns of its conversation), by model, then question id."""
    pairs: Mapping[str, tuple[tuple[str, str], ...]]
    """The model pairs voted on, by question id, each pair in name order."""
    votes: tuple[Vote, ...]


def load_voted_conversations(path: Path) -> VotedConversations:
    """The questions, answers, pairs and votes of a vote file whose records carry ``conversation_a`` and
    ``conversation_b`` (lists of ``{"role", "content"}``, user and assistant alternating; a JSON string in CSV).

    Both conversations of a record must have the same user turns, every record on a question the same ones, and a
    model's conversation on a question must be the same in every record: a run judges one answer per model and
    question. A record's ``turn`` may not exceed the conversation's turns.

    Raises:
        VotesInputError: The file cannot be read, or a record is not a valid vote with valid conversations.
    """
    from judge_arena.tokens import count_tokens

    shown = str(path)
    prompts: dict[str, tuple[Prompt, str]] = {}
    answers: dict[str, dict[str, tuple[tuple[str, ...], str]]] = defaultdict(dict)
    pairs: dict[str, set[tuple[str, str]]] = defaultdict(set)
    votes: list[Vote] = []
    for where, record in _vote_records(path, shown):
        vote = _vote(record, shown, where)

        def fail(field: str, reason: str, where: str = where) -> VotesInputError:
            return VotesInputError(shown, reason, where=where, field=field)

        for field in CONVERSATIONS:
            if field not in record:
                raise fail(field, "missing (a run judges the answers the voters saw)")
        users, replies_a = conversation_turns(record["conversation_a"], fail, "conversation_a")
        users_b, replies_b = conversation_turns(record["conversation_b"], fail, "conversation_b")
        if users_b != users:
            raise fail("conversation_b", "its user turns differ from conversation_a's: both must answer one prompt")
        if vote.turn > len(users):
            raise fail("turn", f"{vote.turn}, but the conversations have {len(users)} turn(s)")
        question = vote.question_id
        known = prompts.get(question)
        if known is None:
            category = record.get("category")
            category = category if isinstance(category, str) and category.strip() else path.stem
            prompts[question] = (Prompt(question, category, users, suite=path.stem), where)
        elif known[0].turns != users:
            raise fail("conversation_a", f"question '{question}' has other user turns in {known[1]}")
        for field, model, replies in (
            ("conversation_a", vote.model_a, replies_a),
            ("conversation_b", vote.model_b, replies_b),
        ):
            seen = answers[model].get(question)
            if seen is None:
                answers[model][question] = (replies, where)
            elif seen[0] != replies:
                raise fail(field, f"'{model}' answers question '{question}' otherwise in {seen[1]}")
        pairs[question].add((min(vote.model_a, vote.model_b), max(vote.model_a, vote.model_b)))
        votes.append(vote)
    return VotedConversations(
        prompts=tuple(prompt for prompt, _ in prompts.values()),
        answers={
            model: {
                question: Answer(model, question, replies, sum(count_tokens(r) for r in replies), 0.0)
                for question, (replies, _) in by_question.items()
            }
            for model, by_question in answers.items()
        },
        pairs={question: tuple(sorted(voted)) for question, voted in pairs.items()},
        votes=tuple(votes),
    )


def load_battles(path: Path) -> list[Battle]:
    """A run's battles from its battles.csv (or the run folder holding it), checked row by row.

    Raises:
        VotesInputError: The file is missing or unreadable, lacks a column, has a bad value, a label that does
            not give its winner, the same game twice, or no battle at all.
    """
    if path.is_dir():
        path = path / "battles.csv"
    shown = str(path)
    table = read_table(path, "battles.csv", error=VotesInputError)
    if table.empty:
        raise VotesInputError(shown, "no battles (the file has only a header)")
    rows = [
        (f"line {line}", {str(k): "" if v is pd.NA else v for k, v in row.items()})
        for line, row in zip(table.index, table.to_dict(orient="records"), strict=True)
    ]
    battles = []
    seen: dict[tuple[str, ...], str] = {}
    for where, row in rows:
        battle = _battle(row, shown, where)
        game = (battle.judge, battle.normalization, battle.prompt_id, str(battle.turn), battle.model_a, battle.model_b)
        if game in seen:
            raise VotesInputError(
                shown, f"the same game as {seen[game]} (judge, normalization, prompt, turn, models)", where=where
            )
        seen[game] = where
        battles.append(battle)
    return battles


# ------------------------------------------------------------------------------------------------------ helpers


def _confusion(cells: Mapping[tuple[Winner, Winner], float]) -> Confusion:
    def row(x: Winner) -> tuple[float, float, float]:
        return cells.get((x, "model_a"), 0.0), cells.get((x, "tie"), 0.0), cells.get((x, "model_b"), 0.0)

    return row("model_a"), row("tie"), row("model_b")


def _flip(winner: Winner) -> Winner:
    return "model_b" if winner == "model_a" else "model_a" if winner == "model_b" else "tie"


def _voter(battle: Battle) -> str:
    return f"{battle.judge}/{battle.normalization}"


def _pairs(battles: Iterable[Battle]) -> dict[tuple[str, str, str, str, str, int], tuple[Battle | None, Battle | None]]:
    """Battles by (judge, normalization, prompt, first model by name, second, turn): (the order shown
    first-model-first, the other order)."""
    found: dict[tuple[str, str, str, str, str, int], tuple[Battle | None, Battle | None]] = {}
    for battle in battles:
        a, b = battle.model_a, battle.model_b
        is_forward = a <= b
        first, second = (a, b) if is_forward else (b, a)
        key = (battle.judge, battle.normalization, battle.prompt_id, first, second, battle.turn)
        forward, reverse = found.get(key, (None, None))
        if (forward if is_forward else reverse) is not None:
            raise ValueError(
                f"judge '{battle.judge}' ({battle.normalization}) judged prompt '{battle.prompt_id}', "
                f"'{battle.model_a}' vs '{battle.model_b}', twice in the same order"
            )
        found[key] = (battle, reverse) if is_forward else (forward, battle)
    return found


def _has_run_header(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        # Unreadable here means unreadable as votes too; that reader reports it with the details.
        return False
    return set(RUN_SIGNATURE) <= set(header)


def _vote(record: Mapping[str, Any], shown: str, where: str) -> Vote:
    def fail(field: str, reason: str) -> VotesInputError:
        return VotesInputError(shown, reason, where=where, field=field)

    for field in VOTE_FIELDS:
        if field not in record:
            raise fail(field, "missing")
    question_id = record["question_id"]
    if isinstance(question_id, int) and not isinstance(question_id, bool):
        question_id = str(question_id)
    if not isinstance(question_id, str) or not question_id.strip():
        raise fail("question_id", f"must be a non-empty string or an integer, got {json_type(question_id)}")
    model_a = _text(record["model_a"], fail, "model_a")
    model_b = _text(record["model_b"], fail, "model_b")
    if model_a == model_b:
        raise fail("model_b", f"the same model as model_a ('{model_a}')")
    winner = record["winner"]
    if not isinstance(winner, str) or winner not in _WINNERS:
        raise fail("winner", f"must be one of {', '.join(_WINNERS)}; got {winner!r}")
    judge = record["judge"]
    if isinstance(judge, list) and judge and all(isinstance(part, str) and part.strip() for part in judge):
        judge = "/".join(judge)
    voter = _text(judge, fail, "judge", "a non-empty string or a list of them")
    turn = record.get("turn", 1)
    if isinstance(turn, str) and _DIGITS.fullmatch(turn):
        turn = int(turn)
    if not isinstance(turn, int) or isinstance(turn, bool) or turn < 1:
        raise fail("turn", f"must be a positive integer, got {turn!r}")
    return Vote(question_id, model_a, model_b, _WINNERS[winner], voter, turn)


def _battle(row: Mapping[str, Any], shown: str, where: str) -> Battle:
    def fail(field: str, reason: str) -> VotesInputError:
        return VotesInputError(shown, reason, where=where, field=field)

    names = {field: _text(row[field], fail, field) for field in ("prompt_id", "judge", "normalization")}
    model_a, model_b = _text(row["model_a"], fail, "model_a"), _text(row["model_b"], fail, "model_b")
    if model_a == model_b:
        raise fail("model_b", f"the same model as model_a ('{model_a}')")
    label = row["label"] or None
    label_set = label_set_of(label) if label is not None else None
    if label is not None and label_set is None:
        known = ", ".join(label for labels in LABEL_SETS.values() for label in labels.labels)
        raise fail("label", f"must be one of {known} or empty (unparsed); got {label!r}")
    winner = row["winner"] or None
    expected = label_set.winner(label) if label_set is not None and label is not None else None
    if winner != expected:
        raise fail("winner", f"must be {expected or 'empty'} for label {label or '(empty)'}; got {winner!r}")
    weight = float(row["weight"])
    if not math.isfinite(weight) or weight < 0:
        raise fail("weight", f"must be a finite number >= 0; got {row['weight']!r}")
    return Battle(
        prompt_id=names["prompt_id"],
        category=row["category"],
        judge=names["judge"],
        normalization=names["normalization"],
        model_a=model_a,
        model_b=model_b,
        label=label,
        winner=expected,
        weight=weight,
        flags=() if row["defence_flags"] in ("", NO_FLAGS) else tuple(row["defence_flags"].split(";")),
        suite=row["suite"] or "",
        # Runs written before battles recorded their turn judged each pair once, on the whole conversation.
        turn=int(row["turn"]) if row["turn"] not in ("", None) else 1,
    )


def _text(value: object, fail: _Fail, field: str, expected: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(field, f"must be {expected}, got {json_type(value)}")
    return value
