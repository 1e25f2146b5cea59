"""Verdict labels: the labels a judge answers with, what each means, and where labels are written in a text.

A judge ends its reply with one label between double brackets, `[[A>>B]]`. A `LabelSet` is the set a template
asks for, each label with its score for Assistant A on a five-point scale (+2 strong, +1, 0 a tie, -1, -2);
the winner, the battle weight and the panel's inverse (a mean score back to a label) all follow from the score.
`ARENA_HARD` is Arena-Hard-Auto's five-label set, the default; `MT_BENCH` is MT-Bench's three (`[[A]]`, `[[B]]`,
`[[C]]` a tie). A judge template declares its set by name (`LABEL_SETS`).

Labels are found two ways. `LabelSet.find` reads them as written, any case and spacing (`[[ b >> a ]]`): what a
judge's reply is parsed with. `LabelSet.find_disguised` also sees labels a reader (an LLM judge) would still read
but a pattern would not: HTML tags or comments inside, HTML entities, full-width or other compatibility forms,
zero-width and bidi characters, markdown escapes and emphasis. It searches a canonical form of the text and
returns the spans of the text as written, so that the defence can neutralize exactly them.
"""

from __future__ import annotations

import bisect
import functools
import html
import itertools
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from judge_arena.records import Winner

STRONG_SCORE = 2
"""The score (for either side) of a strong verdict, which counts as `strong_weight` battles."""


def written(label: str) -> str:
    """A label as a judge writes it: `[[A>B]]`."""
    return f"[[{label}]]"


@dataclass(frozen=True)
class Found:
    """One label found in a text."""

    label: str
    """The label of the set it reads as: `A=B` for `[[ b = a ]]`."""
    as_written: str
    """What stands between the brackets, whitespace removed and disguises resolved: `b=a`."""
    start: int
    end: int
    """The span of the searched text that holds the label, brackets included."""


@dataclass(frozen=True)
class LabelSet:
    """The verdict labels a judge template asks for, each with its score for Assistant A.

    A value: templates may declare their own set (MT-Bench's `[[A]]`, `[[B]]`, `[[C]]` would score 1, -1, 0).
    """

    scores: tuple[tuple[str, int], ...]
    """Each label as written between the brackets, with its score for A: ±2 strong, ±1, 0 a tie; best for A first."""
    aliases: tuple[tuple[str, str], ...] = ()
    """Other spellings that read as a label of the set, e.g. `B=A` for `A=B`."""

    def __post_init__(self) -> None:
        if any(abs(score) > STRONG_SCORE for _, score in self.scores):
            raise ValueError(f"label scores must lie in [-{STRONG_SCORE}, {STRONG_SCORE}]: {self.scores}")
        if any(label not in self.labels for _, label in self.aliases):
            raise ValueError(f"every alias must name a label of the set: {self.aliases}")

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels, best for A first."""
        return tuple(label for label, _ in self.scores)

    @functools.cached_property
    def _score_of(self) -> dict[str, int]:
        return dict(self.scores)

    @functools.cached_property
    def _label_of_spelling(self) -> dict[str, str]:
        return {label: label for label in self.labels} | dict(self.aliases)

    @functools.cached_property
    def _label_of_key(self) -> dict[str, str]:
        return {_key(spelling): label for spelling, label in self._label_of_spelling.items()}

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        """Matches a label of the set between double brackets, any case, any whitespace around its parts."""
        spellings = sorted({*self.labels, *(alias for alias, _ in self.aliases)}, key=len, reverse=True)
        parts = (r"\s*".join(re.escape(token) for token in _TOKEN.findall(spelling)) for spelling in spellings)
        return re.compile(rf"\[\[\s*(?P<label>{'|'.join(parts)})\s*\]\]", re.IGNORECASE)

    def score(self, label: str) -> int:
        """The label's score for Assistant A; KeyError for a label not in the set."""
        return self._score_of[label]

    def winner(self, label: str) -> Winner:
        """The side a label gives the game to, or 'tie'."""
        score = self.score(label)
        return "tie" if score == 0 else "model_a" if score > 0 else "model_b"

    def outcome(self, label: str, strong_weight: float) -> tuple[Winner, float]:
        """Winner side and battle weight of a label: a strong verdict counts as `strong_weight` battles."""
        return self.winner(label), strong_weight if abs(self.score(label)) == STRONG_SCORE else 1.0

    def nearest(self, score: float) -> str:
        """The label whose score is nearest to `score` (a panel's mean); halfway goes away from a tie."""
        return min(self.labels, key=lambda label: (abs(self.score(label) - score), -abs(self.score(label))))

    def find(self, text: str) -> list[Found]:
        """The labels written in a text, in order, as a reply parser reads them."""
        return [self._found(match, match.start(), match.end()) for match in self.pattern.finditer(text)]

    def find_disguised(self, text: str) -> list[Found]:
        """The labels a reader sees in a text, written plainly or disguised, in order; spans are in `text`.

        Every label `find` sees is among them.
        """
        if not self.pattern.search(_MARKUP.sub("", _CHARACTERS.sub(_read_text, text))):
            return []  # the common case, without the offset maps
        shown = _Canonical.of(text)
        found = []
        for match in self.pattern.finditer(shown.text):
            start, end = shown.source_span(match.start(), match.end())
            found.append(self._found(match, start, end))
        return found

    def _found(self, match: re.Match[str], start: int, end: int) -> Found:
        as_written = match["label"]
        label = self._label_of_spelling.get(as_written)  # most judges write the label as asked: no folding
        if label is None:
            as_written = _WHITESPACE.sub("", as_written)
            label = self._label_of_key[_key(as_written)]
        return Found(label=label, as_written=as_written, start=start, end=end)


_TOKEN = re.compile(r"\w+|[^\w\s]+")
_WHITESPACE = re.compile(r"\s+")


def _key(spelling: str) -> str:
    return _WHITESPACE.sub("", spelling).casefold()


ARENA_HARD = LabelSet(
    scores=(("A>>B", 2), ("A>B", 1), ("A=B", 0), ("B>A", -1), ("B>>A", -2)),
    aliases=(("B=A", "A=B"),),
)
"""Arena-Hard-Auto's five labels: A much better, A better, a tie, B better, B much better."""

MT_BENCH = LabelSet(scores=(("A", 1), ("C", 0), ("B", -1)))
"""MT-Bench's pairwise labels: A better, a tie (`C`), B better. None is strong."""

LABEL_SETS: Mapping[str, LabelSet] = MappingProxyType({"arena-hard": ARENA_HARD, "mt-bench": MT_BENCH})
"""The label sets a judge template may declare (its `labels` field), by name. No label belongs to two sets, so a
label alone says which set it is from (`label_set_of`)."""


def label_set_of(label: str) -> LabelSet | None:
    """The named set (`LABEL_SETS`) a label as recorded (`A>B`, `C`) belongs to, or None."""
    return next((labels for labels in LABEL_SETS.values() if label in labels.labels), None)


# --- the canonical form a disguised label is searched in ----------------------------------------------------

# Unicode's default-ignorable code points, which render as nothing: zero-width spaces and joiners, bidi controls,
# the soft hyphen, word joiners, variation selectors, Hangul fillers, tag characters.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)

# First step: HTML entities are decoded, and non-ASCII text is read in its NFKC form (full-width `［` is `[`,
# mathematical bold `𝐀` is `A`) without invisible characters. An entity may stand for such a character.
# Both patterns open with one character class, which scans about three times faster than an alternation.
_CHARACTERS = re.compile(
    r"[&\x80-\U0010ffff]"
    r"(?:(?<=&)(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"  # an entity
    r"|(?<!&)[^\x00-\x7f]*)"  # a run of non-ASCII characters
)

# Second step: markup a reader looks through is removed: HTML tags and comments, markdown's backslash escapes
# and emphasis markers. A tag or comment holding a bracket is kept, since removing it could hide a label.
_MARKUP = re.compile(
    r"[<\\*_~`]"
    r"(?:(?<=<)(?:!--[^\[\]]*?-->|/?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\[\]]*)?/?>)"  # a comment or tag
    r"|(?<=\\)(?=[!-/:-@\[-`{-~])"  # the backslash of an escape
    r"|(?<=[*_~`])[*_~`]*)"  # emphasis and code markers
)

_Piece = tuple[str, int, int]
"""Text of the new version, and the span of the old text it stands for."""


@functools.lru_cache(maxsize=4096)
def _read_character(character: str) -> str:
    return "" if _INVISIBLE.match(character) else unicodedata.normalize("NFKC", character)


def _unchanged(text: str) -> bool:
    return unicodedata.is_normalized("NFKC", text) and not _INVISIBLE.search(text)


def _read_characters(match: re.Match[str]) -> list[_Piece]:
    text, start = match[0], match.start()
    if text.startswith("&"):
        return [("".join(map(_read_character, html.unescape(text))), start, match.end())]
    if _unchanged(text):
        return [(text, start, match.end())]
    # Character by character, so that a label's span can start or end inside the run.
    return [(_read_character(c), start + i, start + i + 1) for i, c in enumerate(text)]


def _read_text(match: re.Match[str]) -> str:
    return "".join(new for new, _, _ in _read_characters(match))


def _remove_markup(match: re.Match[str]) -> list[_Piece]:
    return []


@dataclass(frozen=True)
class _Rewrite:
    """A text with some matches rewritten, and the map from the new text's offsets back to the old one's.

    The new text is cut in pieces, each standing for a span of the old text: a piece equal to its span maps
    character to character, any other piece as a whole to its span. Removed text leaves no piece.
    """

    text: str
    starts: tuple[int, ...]
    """Where each piece starts in the new text."""
    sources: tuple[tuple[int, int, bool], ...]
    """Each piece's span in the old text, and whether the piece is a copy of it."""

    @classmethod
    def of(cls, text: str, pattern: re.Pattern[str], rewrite: Callable[[re.Match[str]], list[_Piece]]) -> _Rewrite:
        pieces: list[_Piece] = []
        copied = 0
        for match in pattern.finditer(text):
            pieces += ((text[copied : match.start()], copied, match.start()), *rewrite(match))
            copied = match.end()
        pieces.append((text[copied:], copied, len(text)))
        kept = [(new, start, end) for new, start, end in pieces if new]
        starts = itertools.accumulate((len(new) for new, _, _ in kept[:-1]), initial=0)
        sources = tuple((start, end, new == text[start:end]) for new, start, end in kept)
        return cls("".join(new for new, _, _ in kept), tuple(starts) if kept else (), sources)

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The old text's span behind the new text's non-empty span `[start, end)`."""
        return self._source(start)[0], self._source(end - 1)[1]

    def _source(self, offset: int) -> tuple[int, int]:
        piece = bisect.bisect_right(self.starts, offset) - 1
        source_start, source_end, copy = self.sources[piece]
        if not copy:
            return source_start, source_end
        at = source_start + offset - self.starts[piece]
        return at, at + 1


@dataclass(frozen=True)
class _Canonical:
    """A text as a reader sees it (`_CHARACTERS` read, then `_MARKUP` removed), with spans back into the text."""

    characters: _Rewrite
    markup: _Rewrite

    @classmethod
    def of(cls, text: str) -> _Canonical:
        characters = _Rewrite.of(text, _CHARACTERS, _read_characters)
        return cls(characters, _Rewrite.of(characters.text, _MARKUP, _remove_markup))

    @property
    def text(self) -> str:
        return self.markup.text

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        return self.characters.source_span(*self.markup.source_span(start, end))
