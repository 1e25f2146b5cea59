"""Pairwise judging: the prompt template, rendering a game for the judge, and parsing the verdict label.

A template declares the labels its judge answers with (`labels.LABEL_SETS`) and may judge a multi-turn prompt turn
by turn and show reference answers (MT-Bench's procedure; `JudgeTemplate`). Each pair is judged in both orders
(position bias cancels out in the ratings). A reply without exactly one verdict label is re-asked once in the same
conversation, then recorded as unparsed: never a default winner, never dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from judge_arena.config import ConfigError, JudgeConfig, read_yaml
from judge_arena.defence import screen
from judge_arena.fence import TURN_PLACEHOLDERS, GameTexts, fence
from judge_arena.labels import ARENA_HARD, LABEL_SETS, LabelSet, written
from judge_arena.records import Answer, Battle, Message, Prompt
from judge_arena.store import call_key
from judge_arena.style import normalize

_WHOLE = ("question", "answer_a", "answer_b", "reference")
"""The placeholders of the whole conversation up to the judged turn (`fence.fence` names the blocks alike)."""
_PER_TURN = re.compile(rf"({'|'.join(TURN_PLACEHOLDERS.values())})_([1-9][0-9]*)")
_SIDES = ("answer_a", "answer_b")
_REFERENCE_PLACEHOLDERS = ("reference", TURN_PLACEHOLDERS["reference"])
VARIANTS = ("multi_turn", "reference", "multi_turn_reference")
"""A template's optional variants (`JudgeTemplate`), each with its own 'system' and 'user'."""
_FENCED_CODE = re.compile(r"^ {0,3}(```|~~~).*?(^ {0,3}\1|\Z)", re.MULTILINE | re.DOTALL)

Complete = Callable[[tuple[Message, ...]], Awaitable[str]]
"""Sends a conversation to the judge model and returns its reply (cached and retried by the caller)."""


class TemplateError(ValueError):
    """A judge template that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class TemplateText:
    """One judge prompt of a template: a system message, and a user message with placeholders for the fenced texts.

    Placeholders: `{question}`, `{answer_a}`, `{answer_b}` and `{reference}` show the conversation up to the judged
    turn; `{question_N}`, `{answer_a_N}`, `{answer_b_N}` and `{ref_answer_N}` show turn N alone (MT-Bench's layout).
    """

    system: str
    user: str
    placeholders: frozenset[str]

    @property
    def last_turn(self) -> int:
        """The highest N of the turn placeholders (`{answer_a_2}`: 2), 0 without any."""
        return max((int(match[2]) for name in self.placeholders if (match := _PER_TURN.fullmatch(name))), default=0)


@dataclass(frozen=True)
class JudgeTemplate:
    """A pairwise judge prompt, the verdict labels it asks for, and its variants for turns and references.

    `base` judges the first turn, or the whole conversation at once when there is no `multi_turn` variant. With
    `multi_turn`, each turn N of a multi-turn prompt is a game of its own, on the conversation up to N (MT-Bench's
    pairwise procedure: the judge is told to focus on the last answer). `reference` and `multi_turn_reference` take
    their place for a prompt that has a reference answer for every turn shown (its suite gives references to the
    judge only in the categories it names, `SuiteConfig.reference_categories`).
    """

    base: TemplateText
    labels: LabelSet = ARENA_HARD
    multi_turn: TemplateText | None = None
    reference: TemplateText | None = None
    multi_turn_reference: TemplateText | None = None

    @classmethod
    def load(cls, path: Path) -> JudgeTemplate:
        """Read a YAML template: 'system' and 'user' strings, optionally 'labels' (a name in `labels.LABEL_SETS`,
        default 'arena-hard') and the variants of `VARIANTS`, each a mapping with 'system' and 'user'.

        Every placeholder must be known; each prompt must show the question and both answers; reference
        placeholders belong in the reference variants only.
        """
        try:
            data = read_yaml(path)
        except ConfigError as exc:
            raise TemplateError(str(exc)) from None
        if not isinstance(data, dict):
            raise TemplateError(f"{path}: expected a mapping with the fields 'system' and 'user'")
        allowed = ("system", "user", "labels", *VARIANTS)
        unknown_fields = sorted(str(key) for key in data if key not in allowed)
        if unknown_fields:
            raise TemplateError(
                f"{path}: field '{unknown_fields[0]}': unknown; expected exactly the fields 'system' and 'user', "
                f"optionally 'labels' and {', '.join(repr(v) for v in VARIANTS)}"
            )
        labels_name = data.get("labels", "arena-hard")
        if labels_name not in LABEL_SETS:
            raise TemplateError(f"{path}: field 'labels': {labels_name!r} is not one of {', '.join(LABEL_SETS)}")
        variants: dict[str, TemplateText] = {}
        for variant in VARIANTS:
            if variant not in data:
                continue
            if not isinstance(data[variant], dict):
                raise TemplateError(f"{path}: field '{variant}': must be a mapping with 'system' and 'user'")
            variants[variant] = _template_text(path, data[variant], f"{variant}.", references=variant != "multi_turn")
        return cls(
            base=_template_text(path, data, "", references=False),
            labels=LABEL_SETS[labels_name],
            **variants,
        )

    @property
    def per_turn(self) -> bool:
        """Whether each turn of a multi-turn prompt is judged as a game of its own."""
        return self.multi_turn is not None or self.multi_turn_reference is not None

    def judged_turns(self, prompt: Prompt) -> tuple[int, ...]:
        """The turns of `prompt` judged as games: each in turn with a per-turn template, else only the last."""
        return tuple(range(1, len(prompt.turns) + 1)) if self.per_turn else (len(prompt.turns),)

    def text_for(self, prompt: Prompt, turn: int) -> tuple[TemplateText, bool]:
        """The prompt the judge is sent for `prompt` judged at `turn`, and whether it is shown the references."""
        later = turn > 1 and self.per_turn
        referenced = len(prompt.references) >= turn and all(ref.strip() for ref in prompt.references[:turn])
        reference_text = self.multi_turn_reference if later else self.reference
        if referenced and reference_text is not None:
            return reference_text, True
        return (self.multi_turn or self.base) if later else self.base, False

    def check(self, prompts: Sequence[Prompt]) -> str | None:
        """Why the template cannot judge one of `prompts`, or None: a turn placeholder beyond the judged turn, or
        answers shown turn by turn that leave out the judged turn."""
        for prompt in prompts:
            for turn in self.judged_turns(prompt):
                text, _ = self.text_for(prompt, turn)
                shown = all(side in text.placeholders or f"{side}_{turn}" in text.placeholders for side in _SIDES)
                if text.last_turn > turn or not shown:
                    return (
                        f"shows answers up to turn {text.last_turn}, but prompt '{prompt.id}' is judged at turn "
                        f"{turn}{'' if self.per_turn else ' (its last)'}"
                    )
        return None

    @property
    def fingerprint(self) -> str:
        """Short hash of the template's content, shown in reports."""
        parts = [self.base.system, self.base.user]
        if self.labels is not ARENA_HARD:
            parts.append(next(name for name, labels in LABEL_SETS.items() if labels is self.labels))
        for variant in VARIANTS:
            text: TemplateText | None = getattr(self, variant)
            if text is not None:
                parts += (variant, text.system, text.user)
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _template_text(path: Path, data: dict[str, object], prefix: str, *, references: bool) -> TemplateText:
    """One 'system' and 'user' pair of a template file, checked; `prefix` names its variant in messages."""
    for field in ("system", "user"):
        if field not in data:
            raise TemplateError(f"{path}: field '{prefix}{field}': required")
        value = data[field]
        if not isinstance(value, str) or not value.strip():
            raise TemplateError(f"{path}: field '{prefix}{field}': must be a non-empty string")
    system, user = str(data["system"]), str(data["user"])
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(user)]
    except ValueError as exc:
        raise TemplateError(f"{path}: field '{prefix}user': {exc} (write literal braces as {{{{ and }}}})") from None
    if any(spec or conversion for name, spec, conversion in fields if name is not None):
        raise TemplateError(f"{path}: field '{prefix}user': placeholders take no '!' conversion or ':' format spec")
    found = frozenset(name for name, _, _ in fields if name is not None)
    unknown = sorted(name for name in found if _stem(name) is None)
    stems = {_stem(name) for name in found}
    missing = [name for name in _WHOLE[:3] if name not in stems and TURN_PLACEHOLDERS[name] not in stems]
    if unknown or missing:
        raise TemplateError(f"{path}: field '{prefix}user': unknown placeholders {unknown}, missing {missing}")
    if not references and stems & set(_REFERENCE_PLACEHOLDERS):
        raise TemplateError(
            f"{path}: field '{prefix}user': reference placeholders belong in the 'reference' and "
            "'multi_turn_reference' variants (used for prompts that have references)"
        )
    if "{" in system.replace("{{", "").replace("}}", ""):
        raise TemplateError(f"{path}: field '{prefix}system': placeholders belong in 'user'")
    return TemplateText(system=system.replace("{{", "{").replace("}}", "}"), user=user, placeholders=found)


def _stem(placeholder: str) -> str | None:
    """`answer_a` for `{answer_a}`, `answer_a` for `{answer_a_2}`, None for a placeholder no text fills."""
    if placeholder in _WHOLE:
        return placeholder
    match = _PER_TURN.fullmatch(placeholder)
    return match[1] if match else None


def render_game(
    template: JudgeTemplate,
    prompt: Prompt,
    answer_a: tuple[str, ...],
    answer_b: tuple[str, ...],
    turn: int | None = None,
) -> tuple[Message, ...]:
    """The judge's messages for one game at `turn` (default: the last), each text fenced by delimiters carrying a
    nonce (see `fence`): the conversation up to that turn, with the references when the template's text for it
    shows them (`JudgeTemplate.text_for`)."""
    turn = len(prompt.turns) if turn is None else turn
    text, referenced = template.text_for(prompt, turn)
    shown = GameTexts(
        prompt.turns[:turn], answer_a[:turn], answer_b[:turn], prompt.references[:turn] if referenced else ()
    )
    return (Message("system", text.system), Message("user", text.user.format(**fence(shown, text.placeholders))))


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
    structured = None
    if reply.lstrip().startswith("{"):  # only an object can hold a verdict field: spares a failed parse per reply
        with contextlib.suppress(ValueError):
            structured = json.loads(reply)
    if isinstance(structured, dict) and "verdict" in structured:
        verdict = structured["verdict"]
        return verdict if isinstance(verdict, str) and verdict in label_set.labels else None
    fenced = "```" in reply or "~~~" in reply
    found = {label.label for label in label_set.find(_FENCED_CODE.sub("", reply) if fenced else reply)}
    return found.pop() if len(found) == 1 else None


def reask(label_set: LabelSet) -> str:
    """The follow-up sent once when a judge's reply has no usable label."""
    listed = ", ".join(written(label) for label in label_set.labels)
    problem = "Your reply did not end with exactly one final verdict label."
    return f"{problem} Reply with only one of these labels: {listed}."


@dataclass(frozen=True)
class Game:
    """One judge call to make: a prompt and two candidates' answers in a given order, in one normalization, judged
    at one turn (the judge sees the conversation up to it)."""

    prompt: Prompt
    answer_a: Answer
    answer_b: Answer
    normalization: str
    turn: int = 0
    """The judged turn, counted from 1; 0 (the default) means the prompt's last."""

    @property
    def judged_turn(self) -> int:
        """The judged turn, counted from 1."""
        return self.turn or len(self.prompt.turns)


def games(prompt: Prompt, first: Answer, second: Answer, normalization: str, turn: int = 0) -> tuple[Game, Game]:
    """The pair in both orders, judged at `turn` (0: the last)."""
    return Game(prompt, first, second, normalization, turn), Game(prompt, second, first, normalization, turn)


def shown(game: Game, template: JudgeTemplate, defence: bool) -> tuple[tuple[Message, ...], tuple[str, ...]]:
    """The judge's messages for a game, its answers up to the judged turn normalized and, with `defence`, screened
    (for the template's labels); the screen's flags."""
    return show(game.prompt, game.judged_turn, *shown_turns(game), template, defence)


def shown_turns(game: Game) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Both answers up to the judged turn, normalized as the game shows them (before screening)."""
    turn = game.judged_turn
    return (
        tuple(normalize(text, game.normalization) for text in game.answer_a.turns[:turn]),
        tuple(normalize(text, game.normalization) for text in game.answer_b.turns[:turn]),
    )


def show(
    prompt: Prompt,
    turn: int,
    answer_a: tuple[str, ...],
    answer_b: tuple[str, ...],
    template: JudgeTemplate,
    defence: bool,
) -> tuple[tuple[Message, ...], tuple[str, ...]]:
    """`shown` of a game whose answers are normalized already (`shown_turns`)."""
    flags: tuple[str, ...] = ()
    if defence:
        screened = screen(answer_a, answer_b, template.labels)
        answer_a, answer_b, flags = screened.answer_a, screened.answer_b, screened.flags
    return render_game(template, prompt, answer_a, answer_b, turn), flags


JudgeRequest = tuple[JudgeConfig, JudgeTemplate, Game]
"""A game to show its judge: the judge as called (`judge.as_called`), its template, and the game."""
Shown = tuple[tuple[Message, ...], tuple[str, ...], str]
"""What a game shows its judge: the messages, the screen's flags, and the call's cache key digest."""


def shown_requests(requests: Sequence[JudgeRequest]) -> list[Shown]:
    """What each game shows its judge (`judge.shown`) and its call's cache key. Games of one prompt that show one
    judge the same texts are rendered and keyed once: the plain game of two answers without markdown is their raw
    game."""
    rendered: dict[tuple[str, str, int, tuple[str, ...], tuple[str, ...]], Shown] = {}
    shown = []
    for judge, template, game in requests:
        texts = shown_turns(game)
        seen = (game.prompt.id, judge.name, game.judged_turn, *texts)
        if (request := rendered.get(seen)) is None:
            messages, flags = show(game.prompt, game.judged_turn, *texts, template, judge.defence)
            request = rendered[seen] = (messages, flags, call_key(judge, messages).digest)
        shown.append(request)
    return shown


def request_keys(requests: Sequence[JudgeRequest]) -> list[tuple[str, tuple[str, ...]]]:
    """`shown_requests` without the messages (run in the second process): each call's key digest and flags."""
    return [(digest, flags) for _, flags, digest in shown_requests(requests)]


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

    The verdict is read in the template's label set. With `defence`, the answers are screened as shown to the judge
    (`defence.screen`, after normalization, which could otherwise assemble a label out of markup): labels and
    delimiter look-alikes are neutralized and the battle flagged `neutralized:A`, `injection:B`, ….
    """
    messages, flags = shown(game, template, defence)
    return await judge_shown(
        game, messages, flags, judge=judge, labels=template.labels, complete=complete, strong_weight=strong_weight
    )


async def judge_shown(
    game: Game,
    messages: tuple[Message, ...],
    flags: tuple[str, ...],
    *,
    judge: str,
    labels: LabelSet,
    complete: Complete,
    strong_weight: float,
    reply: str | None = None,
) -> Battle:
    """`judge_game` for a game already rendered as `messages` with the screen's `flags` (`shown`); `reply` is the
    judge's first reply when it is known already (a cached one without a verdict: only the re-ask is left)."""
    if reply is None:
        reply = await complete(messages)
    decided = decide(game, reply, flags, judge=judge, labels=labels, strong_weight=strong_weight)
    if decided is not None:
        return decided
    second = await complete((*messages, Message("assistant", reply), Message("user", reask(labels))))
    label = parse_verdict(second, labels)
    flags += ("reasked",) if label is not None else ("reasked", "unparsed")
    return _battle(game, judge, label, labels, strong_weight, flags, (reply, second))


def decide(
    game: Game, reply: str, flags: tuple[str, ...], *, judge: str, labels: LabelSet, strong_weight: float
) -> Battle | None:
    """The battle the judge's first `reply` decides, or None when it holds no usable verdict (it is re-asked).

    What a run does for a game whose reply is cached: it is decided on the spot, no call awaited."""
    label = parse_verdict(reply, labels)
    return None if label is None else _battle(game, judge, label, labels, strong_weight, flags, (reply,))


def _battle(
    game: Game,
    judge: str,
    label: str | None,
    labels: LabelSet,
    strong_weight: float,
    flags: tuple[str, ...],
    replies: tuple[str, ...],
) -> Battle:
    winner, weight = labels.outcome(label, strong_weight) if label is not None else (None, 0.0)
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
        turn=game.judged_turn,
    )
