"""Pairwise judging: the prompt template, rendering a game for the judge, and parsing the verdict label.

Each pair is judged in both orders (position bias cancels out in the ratings). A reply without exactly one
verdict label is re-asked once in the same conversation, then recorded as unparsed: never a default winner,
never dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from judge_arena.config import ConfigError, JudgeConfig, read_yaml
from judge_arena.defence import screen
from judge_arena.fence import GameTexts, fence
from judge_arena.labels import ARENA_HARD, LabelSet, written
from judge_arena.records import Answer, Battle, Message, Prompt
from judge_arena.style import normalize

_PLACEHOLDERS = frozenset({"question", "answer_a", "answer_b"})
_FENCED_CODE = re.compile(r"^ {0,3}(```|~~~).*?(^ {0,3}\1|\Z)", re.MULTILINE | re.DOTALL)

Complete = Callable[[tuple[Message, ...]], Awaitable[str]]
"""Sends a conversation to the judge model and returns its reply (cached and retried by the caller)."""


class TemplateError(ValueError):
    """A judge template that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class JudgeTemplate:
    """A pairwise judge prompt: a system message and a user message with {question}, {answer_a}, {answer_b}."""

    system: str
    user: str

    @classmethod
    def load(cls, path: Path) -> JudgeTemplate:
        """Read a YAML template with 'system' and 'user' strings; every placeholder must be known and present."""
        try:
            data = read_yaml(path)
        except ConfigError as exc:
            raise TemplateError(str(exc)) from None
        if not isinstance(data, dict):
            raise TemplateError(f"{path}: expected a mapping with exactly the fields 'system' and 'user'")
        unknown_fields = sorted(str(key) for key in data if key not in ("system", "user"))
        if unknown_fields:
            raise TemplateError(
                f"{path}: field '{unknown_fields[0]}': unknown; expected exactly the fields 'system' and 'user'"
            )
        for field in ("system", "user"):
            if field not in data:
                raise TemplateError(f"{path}: field '{field}': required")
            if not isinstance(data[field], str) or not data[field].strip():
                raise TemplateError(f"{path}: field '{field}': must be a non-empty string")
        try:
            fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(data["user"])]
        except ValueError as exc:
            raise TemplateError(f"{path}: field 'user': {exc} (write literal braces as {{{{ and }}}})") from None
        if any(spec or conversion for name, spec, conversion in fields if name is not None):
            raise TemplateError(f"{path}: field 'user': placeholders take no '!' conversion or ':' format spec")
        found = {name for name, _, _ in fields if name is not None}
        if found != _PLACEHOLDERS:
            unknown, missing = sorted(found - _PLACEHOLDERS), sorted(_PLACEHOLDERS - found)
            raise TemplateError(f"{path}: field 'user': unknown placeholders {unknown}, missing {missing}")
        if "{" in data["system"].replace("{{", "").replace("}}", ""):
            raise TemplateError(f"{path}: field 'system': placeholders belong in 'user'")
        return cls(system=data["system"].replace("{{", "{").replace("}}", "}"), user=data["user"])

    @property
    def fingerprint(self) -> str:
        """Short hash of the template's content, shown in reports."""
        return hashlib.sha256(f"{self.system}\0{self.user}".encode()).hexdigest()[:12]


def render_game(
    template: JudgeTemplate, prompt: Prompt, answer_a: tuple[str, ...], answer_b: tuple[str, ...]
) -> tuple[Message, ...]:
    """The judge's messages for one game, each text fenced by delimiters carrying a nonce (see `fence`)."""
    user = template.user.format(**fence(GameTexts(prompt.turns, answer_a, answer_b)))
    return (Message("system", template.system), Message("user", user))


def verdict_schema(label_set: LabelSet = ARENA_HARD) -> dict[str, object]:
    """The JSON reply a judge with `structured_output` is constrained to: {"verdict": one of the set's labels}."""
    return {
        "type": "object",
        "properties": {"verdict": {"type": "string", "enum": list(label_set.labels)}},
        "required": ["verdict"],
    }


def as_called(judge: JudgeConfig, label_set: LabelSet = ARENA_HARD) -> JudgeConfig:
    """The judge as its calls are made: with a `response_format` of `verdict_schema` when it asks for structured
    output, in the form it names."""
    if judge.structured_output is None:
        return judge
    schema = verdict_schema(label_set)
    response_format: dict[str, object] = (
        {"type": "json_object", "schema": schema}
        if judge.structured_output == "json_object"
        else {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}}
    )
    return judge.model_copy(update={"params": {**judge.params, "response_format": response_format}})


def parse_verdict(reply: str, label_set: LabelSet = ARENA_HARD) -> str | None:
    """The verdict label in a judge's reply ('A>B', …), or None when it has none or conflicting ones.

    A reply that is a JSON object with a "verdict" field (structured output) gives the label there, as written.
    Otherwise labels inside fenced code blocks are ignored: a judge quoting code is not giving its verdict. The same
    label repeated counts once, in any case or spacing (`[[ b = a ]]` is `A=B`).
    """
    try:
        structured = json.loads(reply)
    except ValueError:
        structured = None
    if isinstance(structured, dict) and "verdict" in structured:
        verdict = structured["verdict"]
        return verdict if isinstance(verdict, str) and verdict in label_set.labels else None
    found = {label.label for label in label_set.find(_FENCED_CODE.sub("", reply))}
    return found.pop() if len(found) == 1 else None


def reask(label_set: LabelSet) -> str:
    """The follow-up sent once when a judge's reply has no usable label."""
    listed = ", ".join(written(label) for label in label_set.labels)
    problem = "Your reply did not end with exactly one final verdict label."
    return f"{problem} Reply with only one of these labels: {listed}."


@dataclass(frozen=True)
class Game:
    """One judge call to make: a prompt and two candidates' answers in a given order, in one normalization."""

    prompt: Prompt
    answer_a: Answer
    answer_b: Answer
    normalization: str


def games(prompt: Prompt, first: Answer, second: Answer, normalization: str) -> tuple[Game, Game]:
    """The pair in both orders."""
    return Game(prompt, first, second, normalization), Game(prompt, second, first, normalization)


def shown(game: Game, template: JudgeTemplate, defence: bool) -> tuple[tuple[Message, ...], tuple[str, ...]]:
    """The judge's messages for a game, its answers normalized and, with `defence`, screened; the screen's flags."""
    normalized_a = tuple(normalize(text, game.normalization) for text in game.answer_a.turns)
    normalized_b = tuple(normalize(text, game.normalization) for text in game.answer_b.turns)
    flags: tuple[str, ...] = ()
    if defence:
        screened = screen(normalized_a, normalized_b)
        normalized_a, normalized_b, flags = screened.answer_a, screened.answer_b, screened.flags
    return render_game(template, game.prompt, normalized_a, normalized_b), flags


async def judge_game(
    game: Game,
    *,
    judge: str,
    template: JudgeTemplate,
    complete: Complete,
    strong_weight: float,
    defence: bool = True,
) -> Battle:
    """Ask the judge for a verdict (re-asking once if it gives none) and return the battle it decides.

    With `defence`, the answers are screened as shown to the judge (`defence.screen`, after normalization, which
    could otherwise assemble a label out of markup): labels and delimiter look-alikes are neutralized and the
    battle flagged `neutralized:A`, `injection:B`, ….
    """
    messages, flags = shown(game, template, defence)
    reply = await complete(messages)
    replies: tuple[str, ...] = (reply,)
    label = parse_verdict(reply)
    if label is None:
        reply = await complete((*messages, Message("assistant", reply), Message("user", reask(ARENA_HARD))))
        replies += (reply,)
        label = parse_verdict(reply)
        flags += ("reasked",) if label is not None else ("reasked", "unparsed")
    winner, weight = ARENA_HARD.outcome(label, strong_weight) if label is not None else (None, 0.0)
    return Battle(
        prompt_id=game.prompt.id,
        category=game.prompt.category,
        judge=judge,
        normalization=game.normalization,
        model_a=game.answer_a.model,
        model_b=game.answer_b.model,
        label=label,
        winner=winner,
        weight=weight,
        flags=flags,
        replies=replies,
        suite=game.prompt.suite,
        turn=len(game.prompt.turns),
    )
