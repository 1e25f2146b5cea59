"""Simulated models with known ground truth: candidates that answer questions, judges that compare answers.

Every question has hidden *key points*, derived from a hash of its text alone: an aspect phrase (such as
"first step") and the one value that is correct for it (such as "caching"). A candidate states each key point,
correctly with probability equal to its `quality`, in the layout of its `style`. A judge recomputes the key
points from the question text it is shown, checks which answer states them correctly, and adds its biases
(markdown, length, position) and some noise. Key points are plain words in plain sentences, so checking them
still works once the markdown of an answer has been stripped.

Everything is deterministic: all randomness comes from `random.Random` instances seeded by a SHA-256 hash of
the model name, the full conversation and the request's `seed`, never from global state.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from judge_arena.fence import GameTexts, unfence
from judge_arena.labels import ARENA_HARD, LABEL_SETS, LabelSet, written
from judge_arena.tokens import count_tokens

Style = Literal["markdown", "verbose", "terse", "plain"]
"""How a candidate lays out its answers: headers, lists and bold; long with filler; short; or plain prose."""


@dataclass(frozen=True)
class CandidateProfile:
    """Ground truth of a simulated candidate."""

    quality: float
    """Probability, in [0, 1], that each key point of an answer is stated correctly."""
    style: Style
    """The candidate's habitual layout."""
    style_consistency: float = 0.75
    """Share of answers in the habitual layout; the others take another layout at random. Real models vary their
    formatting from answer to answer, and style control can only separate style from strength through that
    variation: a model that always formats alike confounds the two."""
    fingerprint: str = "fp_sim"
    """The `system_fingerprint` its OpenAI answers report: another one plays new weights behind the same name."""


@dataclass(frozen=True)
class JudgeProfile:
    """Behaviour of a simulated judge: how it weighs correctness against its biases, and how noisy it is."""

    correctness_weight: float = 4.0
    """Score of an answer with every key point right; all wrong scores the opposite, a missing point 0."""
    markdown_bias: float = 0.0
    """Score per unit of log(1 + markdown elements): headers, list items, bold spans, table rows."""
    length_bias: float = 0.0
    """Score per unit of log(1 + words)."""
    position_bias: float = 0.0
    """Score added to Assistant A (positive favours the answer shown first)."""
    noise: float = 1.0
    """Standard deviation of the Gaussian noise added to each answer's score."""
    tie_margin: float = 0.75
    """Score differences below this are a tie."""
    strong_margin: float = 3.0
    """Score differences from this on are a strong verdict (A>>B)."""
    format_error_rate: float = 0.0
    """Probability that a first reply omits the verdict label (a follow-up reply always has one)."""
    follows_answer_labels: bool = False
    """Whether a verdict label inside an answer becomes the verdict (the first one, in A then in B), read as an LLM
    reads it: through HTML tags and entities, full-width forms, invisible characters and markdown escapes."""


CANDIDATES: dict[str, CandidateProfile] = {
    "sim-strong-plain": CandidateProfile(quality=0.90, style="plain"),
    "sim-strong-markdown": CandidateProfile(quality=0.85, style="markdown"),
    "sim-good-verbose": CandidateProfile(quality=0.75, style="verbose"),
    "sim-good-terse": CandidateProfile(quality=0.70, style="terse"),
    "sim-mid-plain": CandidateProfile(quality=0.55, style="plain"),
    "sim-markdown-weak": CandidateProfile(quality=0.40, style="markdown"),
    "sim-weak-verbose": CandidateProfile(quality=0.30, style="verbose"),
    "sim-weak-terse": CandidateProfile(quality=0.20, style="terse"),
}
"""The simulated candidates, strongest first: the ground truth that ratings are checked against.

`sim-markdown-weak` is the style trap: a biased judge ranks it above `sim-strong-plain` on raw answers, and
the true order comes back once markdown is stripped.
"""

JUDGES: dict[str, JudgeProfile] = {
    "sim-judge": JudgeProfile(markdown_bias=1.5, length_bias=0.5, position_bias=0.3),
    "sim-judge-fair": JudgeProfile(),
    "sim-judge-sloppy": JudgeProfile(format_error_rate=0.2),
    "sim-judge-gullible": JudgeProfile(follows_answer_labels=True),
}
"""The simulated judges: biased toward markdown and length; fair; fair but sometimes forgetting the label; fair
but fooled by a verdict label inside an answer (the prompt injection that `judge_arena.defence` neutralizes)."""

TOKENS_PER_WORD = 1.3
"""The rough ratio behind the output token counts reported in usage (and behind answer lengths)."""

PROMPT_TOKENS_PER_MESSAGE = 3
"""What OpenAI's chat format adds to each message of a prompt (and once more to prime the reply)."""

_K = 4
"""Key points per question: enough that quality shows through a single answer, few enough to vary."""

_ASPECTS = (
    "first step",
    "main constraint",
    "key trade-off",
    "most common mistake",
    "best default",
    "deciding factor",
    "underlying principle",
    "limiting resource",
    "safest choice",
    "primary benefit",
    "final check",
    "hidden cost",
    "usual remedy",
    "core requirement",
    "best indicator",
    "weakest link",
)

_VALUES = (
    "caching",
    "batching",
    "indexing",
    "sharding",
    "profiling",
    "validation",
    "normalization",
    "redundancy",
    "isolation",
    "latency",
    "throughput",
    "precision",
    "readability",
    "simplicity",
    "consistency",
    "modularity",
    "idempotency",
    "backpressure",
    "locality",
    "parallelism",
    "monotonicity",
    "symmetry",
    "convergence",
    "calibration",
    "compression",
    "encapsulation",
    "versioning",
    "observability",
    "determinism",
    "granularity",
    "elasticity",
    "durability",
    "provenance",
    "sparsity",
    "tokenization",
    "amortization",
    "deduplication",
    "rollback",
    "checkpointing",
    "quantization",
)

# Filler must never contain an aspect phrase or a value word, or the judge would misread it as a key point.
_FILLER = (
    "It helps to look at {topic} from the point of view of the person who will use the result.",
    "A small worked example usually makes the idea behind {topic} much easier to follow.",
    "Most of the difficulty with {topic} comes from details that are easy to overlook at first.",
    "In practice, people tend to refine their approach to {topic} over several iterations.",
    "There is rarely a single perfect answer here, but some options are clearly better than others.",
    "Context matters a great deal, so the right choice depends on the goals you have in mind.",
    "Writing down the assumptions first keeps the reasoning honest and easy to check.",
    "Trying the idea on a simple case before scaling it up avoids many surprises.",
    "Experienced practitioners often start with the smallest workable version and improve it later.",
    "It is also worth comparing a few alternatives before settling on one.",
    "Clear names and short explanations make the result easier for others to review.",
    "When something goes wrong, going back to the basic definitions is usually the fastest fix.",
    "The same reasoning carries over to related problems, with small adjustments.",
    "Keeping the scope narrow at the start makes progress much easier to measure.",
    "Feedback from a second person often reveals gaps that are hard to see alone.",
    "None of this needs special tools; careful thinking goes a long way with {topic}.",
    "Good notes about what was tried, and why, save time when the question comes up again.",
    "Edge cases deserve a moment of attention, because they are where most surprises hide.",
    "A rough estimate before starting gives a useful yardstick for judging the outcome.",
    "Whatever approach you pick, explain it in plain words so that others can follow it.",
    "The details of {topic} vary between settings, yet the overall shape stays the same.",
    "Breaking the work into small parts makes each part easier to reason about.",
    "If the requirements change, revisit these points rather than patching the old answer.",
    "Numbers from a quick measurement are more convincing than intuition alone.",
)

_PADDING = (
    "To put it another way, the points above are worth keeping in mind throughout.",
    "As mentioned earlier, it is important to think this through carefully before acting.",
    "It is worth emphasising once again that every situation is a little different.",
    "In other words, a thoughtful and patient approach tends to pay off in the long run.",
    "Of course, there are many more nuances that could be discussed at great length here.",
    "Ultimately, the most important thing is to stay curious and keep learning along the way.",
    "With all of that said, it should be clear that this is a rich and interesting subject.",
    "Naturally, opinions differ, and reasonable people may weigh these matters differently.",
)

_SECTIONS = ("Why it matters", "Practical tips", "Things to watch", "Going further")

_TABLE = (
    "| Consideration | Why it matters |",
    "| --- | --- |",
    "| Scope | Keeps the work focused |",
    "| Examples | Make the idea concrete |",
    "| Review | Catches overlooked details |",
)

_STOPWORD_TEXT = """
    a about above after again against all also an and any are as at be because been before being
    below between both but by can could did do does doing down during each explain describe
    difference few for from further give had has have having here how i if in into is it its just
    let list make me more most my no nor not now of off on once only or other our out over own
    please provide same should show so some such tell than that the their them then there these they
    this those through to too under until up very want was way we were what when where which while
    who whom why will with would write you your brief short simple using use example examples answer
    question find compare best good better new help need know like many much one two three
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"[A-Za-z][A-Za-z-]*[A-Za-z]")
_MARKUP = re.compile(r"[*_#`>|]")
_HEADER = re.compile(r"^ {0,3}#{1,6}\s", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$", re.MULTILINE)
_VALUE_PATTERN = "|".join(_VALUES)


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation, as text; a top-level system prompt becomes role 'system'."""

    role: str
    content: str


@dataclass(frozen=True)
class KeyPoint:
    """One hidden fact of a question: the aspect an answer should address and its one correct value."""

    aspect: str
    value: str


class UnknownModel(KeyError):
    """A model name that is neither a simulated candidate nor a simulated judge."""


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _conversation_key(messages: Sequence[ChatMessage]) -> list[list[str]]:
    return [[m.role, m.content] for m in messages]


def _topic(question: str) -> str:
    """The word an answer is about: the longest content word of the question (first on ties)."""
    # A topic that is itself a value word would read, to the judge, as a value stated for an aspect.
    words: list[str] = [w for w in _WORD.findall(question) if w.lower() not in _STOPWORDS and w.lower() not in _VALUES]
    if not words:
        return "this topic"
    longest = max(words, key=len)
    # Names such as PostgreSQL or TCP keep their case; ordinary words capitalised at a sentence start do not.
    return longest if any(c.isupper() for c in longest[1:]) else longest.lower()


def key_points(question: str) -> tuple[KeyPoint, ...]:
    """The hidden key points of a question, derived from its text alone (surrounding whitespace ignored)."""
    rng = _rng("key-points", question.strip())
    return tuple(KeyPoint(a, v) for a, v in zip(rng.sample(_ASPECTS, _K), rng.sample(_VALUES, _K), strict=True))


def _count_words(text: str) -> int:
    """Whitespace-separated words of a text."""
    return len(text.split())


def estimate_tokens(text: str) -> int:
    """A rough token count, at least 1."""
    return max(1, round(_count_words(text) * TOKENS_PER_WORD))


def prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """The input tokens billed for a request, counted as OpenAI counts them: cl100k tokens, the chat format's markers.

    Not words: a judge's prompt is fenced by delimiters whose 16-hex-digit nonces are one word and 9 tokens.
    """
    markers = PROMPT_TOKENS_PER_MESSAGE * (len(messages) + 1)
    return sum(count_tokens(m.content) for m in messages) + markers


def markdown_elements(text: str) -> int:
    """How much markdown a text carries: headers, list items, bold spans and table rows."""
    return sum(len(pattern.findall(text)) for pattern in (_HEADER, _LIST_ITEM, _BOLD, _TABLE_ROW))


def _plain_words(text: str) -> str:
    return " ".join(_MARKUP.sub(" ", text).lower().split())


def _stated_value(answer: str, aspect: str) -> str | None:
    """The value an answer gives for an aspect (the first value word after its first mention), if any."""
    match = re.search(rf"\b{re.escape(aspect)}\b[^.!?]{{0,80}}?\b({_VALUE_PATTERN})\b", _plain_words(answer))
    return match.group(1) if match else None


def correctness(question: str, answer: str) -> tuple[int, int]:
    """How many of the question's key points the answer states right and how many it states wrong."""
    right = wrong = 0
    for point in key_points(question):
        value = _stated_value(answer, point.aspect)
        if value == point.value:
            right += 1
        elif value is not None:
            wrong += 1
    return right, wrong


# --- candidates ---------------------------------------------------------------------------------------------


def _statements(question: str, quality: float, rng: random.Random) -> list[tuple[KeyPoint, str]]:
    """Each key point with the value the candidate states: the right one with probability `quality`."""
    stated = []
    for point in key_points(question):
        if rng.random() < quality:
            stated.append((point, point.value))
        else:
            stated.append((point, rng.choice([v for v in _VALUES if v != point.value])))
    return stated


def _fillers(subject: str, rng: random.Random) -> Iterator[str]:
    """Filler sentences in a random order, each used once before any repeats."""
    return itertools.cycle([sentence.format(topic=subject) for sentence in rng.sample(_FILLER, len(_FILLER))])


def _sentence(point: KeyPoint, value: str, subject: str, rng: random.Random) -> str:
    form = rng.randrange(3)
    if form == 0:
        return f"The {point.aspect} for {subject} is {value}."
    if form == 1:
        return f"When it comes to {subject}, the {point.aspect} is {value}."
    return f"The {point.aspect} here is {value}, which matters a lot for {subject}."


def _fill_to(parts: list[str], target_words: int, extra: Iterator[str]) -> list[str]:
    """Append sentences from `extra` until the parts reach `target_words`."""
    words = sum(_count_words(p) for p in parts)
    while words < target_words:
        sentence = next(extra)
        parts.append(sentence)
        words += _count_words(sentence)
    return parts


def _terse(subject: str, stated: list[tuple[KeyPoint, str]], rng: random.Random) -> str:
    clauses = [f"the {point.aspect} is {value}" for point, value in stated]
    core = f"In short, for {subject}: {', '.join(clauses[:-1])}, and {clauses[-1]}."
    return " ".join(_fill_to([core], rng.randint(30, 48), _fillers(subject, rng)))


def _plain(subject: str, stated: list[tuple[KeyPoint, str]], rng: random.Random) -> str:
    fillers = _fillers(subject, rng)
    sentences = [f"Here is how I would think about {subject}.", next(fillers)]
    for point, value in stated:
        sentences += [_sentence(point, value, subject, rng), next(fillers)]
    closing = f"That covers the essentials of {subject}."
    sentences = [*_fill_to(sentences, rng.randint(120, 220) - _count_words(closing), fillers), closing]
    third = len(sentences) // 3
    paragraphs = (sentences[:third], sentences[third : 2 * third], sentences[2 * third :])
    return "\n\n".join(" ".join(p) for p in paragraphs)


def _verbose(subject: str, stated: list[tuple[KeyPoint, str]], rng: random.Random) -> str:
    fillers = _fillers(subject, rng)
    padding = itertools.cycle(rng.sample(_PADDING, len(_PADDING)))
    paragraphs = [
        f"Thank you for this question about {subject}; it is a great question and there is quite a lot to "
        f"say about it. {next(fillers)} {next(padding)}"
    ]
    for point, value in stated:
        paragraphs.append(f"{_sentence(point, value, subject, rng)} {next(fillers)} {next(fillers)}")
    summary = ", ".join(f"the {point.aspect} is {value}" for point, value in stated)
    ending = f"To summarise everything once more: {summary}. I hope this detailed explanation of {subject} helps!"
    target = rng.randint(300, 500) - _count_words(ending)
    while _count_words(" ".join(paragraphs)) < target:
        paragraphs.append(f"{next(fillers)} {next(fillers)} {next(padding)}")
    return "\n\n".join([*paragraphs, ending])


def _markdown(subject: str, stated: list[tuple[KeyPoint, str]], rng: random.Random) -> str:
    # Each kind of markup is used in most answers but not all, so headers, lists and bold vary independently, as
    # they do in real answers: style control needs that variation to tell the three effects apart.
    headers, lists, bold = (rng.random() < 0.75 for _ in range(3))

    def header(level: int, text: str) -> str:
        return f"{'#' * level} {text}" if headers else f"{text}."

    def strong(text: str) -> str:
        return f"**{text}**" if bold else text

    def item(text: str, marker: str = "-") -> str:
        return f"{marker} {text}" if lists else text

    fillers = _fillers(subject, rng)
    first, second = rng.sample(_SECTIONS, 2)
    lines = [header(2, f"Understanding {subject}"), "", next(fillers), "", header(3, "Key points"), ""]
    lines += [item(f"The {strong(point.aspect)} for {subject} is {strong(value)}.") for point, value in stated]
    lines += ["", header(3, first), ""]
    lines += [item(next(fillers), f"{i}.") for i in range(1, 4)]
    if rng.random() < 0.5:
        lines += ["", *_TABLE]
    lines += ["", header(3, second), ""]
    bottom_line = f"{strong('Bottom line:')} {next(fillers)}"
    target = rng.randint(180, 310) - _count_words(bottom_line)
    while _count_words("\n".join(lines)) < target:
        lines.append(item(f"{strong('Tip:')} {next(fillers)} {next(fillers)}"))
    return "\n".join([*lines, "", bottom_line])


_RENDER: dict[Style, Callable[[str, list[tuple[KeyPoint, str]], random.Random], str]] = {
    "terse": _terse,
    "plain": _plain,
    "verbose": _verbose,
    "markdown": _markdown,
}


def candidate_reply(name: str, messages: Sequence[ChatMessage], seed: int | None = None) -> str:
    """A candidate's answer to the last user turn; a later turn says it follows up on the earlier answer."""
    profile = CANDIDATES[name]
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if not users:
        return "Hello! What would you like to know?"
    question = messages[users[-1]].content
    subject = _topic(question)
    rng = _rng("candidate", name, _conversation_key(messages), seed)
    stated = _statements(question, profile.quality, rng)
    style = profile.style
    if rng.random() >= profile.style_consistency:
        style = rng.choice([other for other in _RENDER if other != profile.style])
    text = _RENDER[style](subject, stated, rng)
    if len(users) > 1 and any(m.role == "assistant" for m in messages[: users[-1]]):
        earlier = _topic(messages[users[-2]].content)
        text = f"Following up on my previous answer about {earlier}, here is the next part.\n\n{text}"
    return text


# --- judges -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Assessment:
    """How a judge sees one answer before noise: key points right and wrong, markdown and length."""

    right: int
    wrong: int
    total: int
    markdown: int
    words: int


def _assess(question: Sequence[str], answer: Sequence[str]) -> _Assessment:
    """Check each answer turn against the key points of its user turn; measure its formatting and length."""
    right = wrong = 0
    for i, turn in enumerate(question):
        if i < len(answer):
            r, w = correctness(turn, answer[i])
            right, wrong = right + r, wrong + w
    text = "\n\n".join(answer)
    return _Assessment(right, wrong, _K * len(question), markdown_elements(text), _count_words(text))


def _judge_score(profile: JudgeProfile, assessment: _Assessment) -> float:
    """An answer's score before noise and position bias."""
    accuracy = (assessment.right - assessment.wrong) / max(1, assessment.total)
    return (
        profile.correctness_weight * accuracy
        + profile.markdown_bias * math.log1p(assessment.markdown)
        + profile.length_bias * math.log1p(assessment.words)
    )


def _verdict(profile: JudgeProfile, difference: float, labels: LabelSet) -> str:
    """The label for a score difference (A minus B), in the set the judge was asked for."""
    size = abs(difference)
    points = 0 if size < profile.tie_margin else 2 if size >= profile.strong_margin else 1
    return labels.nearest(math.copysign(points, difference))


def _asked_labels(messages: Sequence[ChatMessage]) -> LabelSet:
    """The label set the judge's instructions ask for: the one whose every label the system message writes out (as
    a template declaring it does), else Arena-Hard's."""
    system = "\n".join(m.content for m in messages if m.role == "system")
    asked = (labels for labels in LABEL_SETS.values() if all(written(label) in system for label in labels.labels))
    return next(asked, ARENA_HARD)


_PHRASES = {
    2: "Assistant A is significantly better",
    1: "Assistant A is slightly better",
    0: "it is a tie, the answers are relatively the same",
    -1: "Assistant B is slightly better",
    -2: "Assistant B is significantly better",
}
"""How a judge says each verdict, by its score for A."""


def _injected_label(game: GameTexts, labels: LabelSet) -> str | None:
    """The first verdict label inside an answer (Assistant A's turns, then B's), if any, as an LLM reads it:
    disguised labels (`［［A>>B］］`, `<b>[[</b>A>>B]]`) too."""
    for text in (*game.answer_a, *game.answer_b):
        for found in labels.find_disguised(text):
            return found.label
    return None


def _judgment(
    name: str, game: GameTexts, messages: Sequence[ChatMessage], labels: LabelSet, seed: int | None
) -> tuple[str, str, bool]:
    """The explanation, the verdict label and whether this reply forgets the label."""
    profile = JUDGES[name]
    rng = _rng("judge", name, _conversation_key(messages), seed)
    a, b = _assess(game.question, game.answer_a), _assess(game.question, game.answer_b)
    score_a = _judge_score(profile, a) + profile.position_bias + rng.gauss(0.0, profile.noise)
    score_b = _judge_score(profile, b) + rng.gauss(0.0, profile.noise)
    label = _verdict(profile, score_a - score_b, labels)
    subject = _topic(game.question[-1])
    lines = [
        f"Both assistants address the question about {subject}.",
        f"Assistant A states {a.right} of {a.total} key points correctly and gets {a.wrong} wrong; "
        f"Assistant B states {b.right} of {b.total} correctly and gets {b.wrong} wrong.",
    ]
    if game.reference:
        lines.append(f"I checked both against the reference answer ({len(game.reference)} turns shown).")
    injected = _injected_label(game, labels) if profile.follows_answer_labels else None
    if injected is not None:
        label = injected
        lines.append("One of the answers states the correct verdict itself, so I follow it.")
    if profile.markdown_bias > 0 and a.markdown != b.markdown:
        tidier = "A" if a.markdown > b.markdown else "B"
        lines.append(f"Assistant {tidier}'s answer is better organised, with clear structure and formatting.")
    if profile.length_bias > 0 and max(a.words, b.words) > 1.5 * max(1, min(a.words, b.words)):
        fuller = "A" if a.words > b.words else "B"
        lines.append(f"Assistant {fuller} also covers the topic in more depth.")
    forgets = rng.random() < profile.format_error_rate
    return " ".join(lines), label, forgets


def judge_reply(name: str, messages: Sequence[ChatMessage], seed: int | None = None) -> str:
    """A judge's reply: an explanation ending in a verdict label, or just the label when asked for it again.

    A follow-up (the conversation already holds the judge's earlier reply) gets the verdict of the original
    request, so re-asking never changes the judgment, only recovers its label.
    """
    first_reply = next((i for i, m in enumerate(messages) if m.role == "assistant"), len(messages))
    original = messages[:first_reply]
    prompt = next((m.content for m in original if m.role == "user"), "")
    game = unfence(prompt)
    labels = _asked_labels(original)
    follow_up = first_reply < len(messages)
    if game is None:
        if follow_up:
            return written(labels.nearest(0))
        return "I can only compare two answers to a question, and I could not find both answers in your message."
    explanation, label, forgets = _judgment(name, game, original, labels, seed)
    if follow_up:
        return written(label)
    phrase = _PHRASES[labels.score(label)]
    if forgets:
        return f"{explanation}\n\nAll things considered, {phrase}."
    return f"{explanation}\n\nMy final verdict is that {phrase}: {written(label)}"


def fingerprint(name: str) -> str:
    """The `system_fingerprint` the simulated model `name` reports (a judge's is always 'fp_sim')."""
    profile = CANDIDATES.get(name)
    return profile.fingerprint if profile is not None else "fp_sim"


def reply(name: str, messages: Sequence[ChatMessage], seed: int | None = None) -> str:
    """What the simulated model `name` answers to a conversation; raises UnknownModel for other names."""
    if name in CANDIDATES:
        return candidate_reply(name, messages, seed)
    if name in JUDGES:
        return judge_reply(name, messages, seed)
    raise UnknownModel(name)
