"""Style: the normalizations an answer is judged under, and the style features of an answer.

`plain` removes markdown *presentation* (headers, emphasis, list markers, tables, rules, quotes, link syntax)
and keeps every word and the content of code blocks, using a real markdown parser (markdown-it-py). The
features follow Arena-Hard-Auto's definitions, so style-controlled ratings are comparable with its own.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType

from markdown_it import MarkdownIt
from markdown_it.token import Token

from judge_arena._memo import memoized
from judge_arena.records import Answer
from judge_arena.tokens import count_tokens


@functools.cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


_BREAKS = ("softbreak", "hardbreak")
_CELL_SEPARATOR = " | "


def _render_inline(children: Sequence[Token], indents: Sequence[str] = ()) -> str:
    parts: list[str] = []
    # (URL, index of the link's first part); CommonMark links cannot nest, so one pending link is enough.
    link: tuple[str, int] | None = None
    line = 0
    for child in children:
        kind = child.type
        if kind in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif kind == "image":
            # The alt text, parsed: `content` holds its raw markdown source.
            parts.append(_render_inline(child.children or ()))
        elif kind in _BREAKS:
            parts.append("\n" + (indents[line] if line < len(indents) else ""))
            line += 1
        elif kind == "link_open" and child.markup != "autolink":
            # The parser percent-encodes the URL; decoded, it reads as the author wrote it.
            link = (_parser().normalizeLinkText(str(child.attrGet("href") or "")), len(parts))
        elif kind == "link_close" and link is not None:
            url, start = link
            link = None
            # The URL is content a reader may need; only the bracket syntax is presentation.
            if url and url != "".join(parts[start:]):
                parts.append(f" ({url})")
    return "".join(parts)


def _inline_text(token: Token) -> str:
    children = token.children or []
    lines = token.content.split("\n")
    indents: list[str] = []
    # The parser drops the indentation of continuation lines, and an indented "1. step" or "- x" that was
    # paragraph text would then read as a list item when the output is parsed again: keeping it keeps
    # `plain` idempotent. Only when every source line break is a break token can they be paired up.
    if sum(child.type in _BREAKS for child in children) == len(lines) - 1:
        indents = [source[: len(source) - len(source.lstrip())] for source in lines[1:]]
    return _render_inline(children, indents)


@memoized(16384)
def strip_markdown(text: str) -> str:
    """The answer without markdown presentation: words, line structure and code block contents kept.

    Memoised: an answer meets every other candidate in both orders, per judge, and is stripped once, not once per
    game (the cache holds about a run's answers, each beside its stripped copy).

    Blocks are separated by a blank line; list items and table rows take one line each, cells joined by " | ".
    Idempotent except where code (its fences gone) or backslash-escaped characters read as markdown again.
    """
    chunks: list[str] = []
    tight: list[bool] = []
    # Chunks from this index on belong to the current outermost list or table, whose lines are not spaced.
    group_start: int | None = None
    list_depth = 0
    row: list[str] | None = None

    def emit(content: str) -> None:
        if content.strip():
            tight.append(group_start is not None and len(chunks) > group_start)
            chunks.append(content)

    for token in _parser().parse(text):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            if list_depth == 0:
                group_start = len(chunks)
            list_depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
            if list_depth == 0:
                group_start = None
        elif kind == "table_open" and list_depth == 0:
            group_start = len(chunks)
        elif kind == "table_close" and list_depth == 0:
            group_start = None
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and row is not None:
            # Empty cells inside a row keep the columns aligned; trailing ones carry nothing.
            while row and not row[-1]:
                row.pop()
            emit(_CELL_SEPARATOR.join(row).strip())
            row = None
        elif kind == "inline":
            content = _inline_text(token)
            if row is not None:
                row.append(content.strip())
            else:
                emit(content)
        elif kind in ("fence", "code_block", "html_block"):
            # Blank lines around code are not content; indentation, the first line's included, is.
            emit(token.content.strip("\n"))
    out: list[str] = []
    for content, joined in zip(chunks, tight, strict=True):
        if out:
            out.append("\n" if joined else "\n\n")
        out.append(content)
    return "".join(out)


def _raw(text: str) -> str:
    return text


NORMALIZATIONS: Mapping[str, Callable[[str], str]] = MappingProxyType({"raw": _raw, "plain": strip_markdown})
"""The views an answer can be judged in: 'raw' as written, 'plain' with markdown presentation removed."""


def normalize(text: str, name: str) -> str:
    """Apply the named normalization; a name not in NORMALIZATIONS raises ValueError."""
    try:
        transform = NORMALIZATIONS[name]
    except KeyError:
        raise ValueError(f"unknown normalization '{name}'; known: {sorted(NORMALIZATIONS)}") from None
    return transform(text)


@dataclass(frozen=True)
class StyleFeatures:
    """Arena-Hard-Auto's style features of one answer."""

    tokens: int
    """cl100k_base tokens of the whole answer, code included."""
    headers: int
    """Lines starting with 1 to 6 '#' and a whitespace character, outside code blocks."""
    lists: int
    """Ordered ('1. ') and unordered ('- ', '* ', '+ ') list items, outside code blocks."""
    bold: int
    """'**x**' and '__x__' spans on one line, outside code blocks."""


_CODE_BLOCK = re.compile(r"```([^`]*)```")
_HEADERS = re.compile(r"^#{1,6}\s", re.MULTILINE)
r"""Arena-Hard-Auto counts each level apart (`^#{k}\s`, k = 1 to 6); a line matches at most one level and a match
ends within its line (or on its newline), so one pattern counts the same lines in one pass."""
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


def _remove_code_blocks(text: str) -> str:
    # Arena-Hard-Auto's remove_pattern, quirks kept so the counts equal its own: findall yields each block's
    # inside (the group), not the whole match, and str.replace removes that text wherever it occurs. The
    # fences stay behind, and the same text elsewhere, even inside a later block, goes too.
    for inside in _CODE_BLOCK.findall(text):
        text = text.replace(inside, "")
    return text


def style_features(text: str) -> StyleFeatures:
    """Token length and markdown counts, defined as Arena-Hard-Auto defines them (code blocks removed first)."""
    prose = _remove_code_blocks(text)
    return StyleFeatures(
        tokens=count_tokens(text),
        headers=len(_HEADERS.findall(prose)),
        lists=len(_ORDERED.findall(prose)) + len(_UNORDERED.findall(prose)),
        bold=len(_BOLD_STARS.findall(prose)) + len(_BOLD_UNDERSCORES.findall(prose)),
    )


FEATURES = tuple(feature.name for feature in fields(StyleFeatures))
"""The names of `StyleFeatures`, in order: tokens, headers, lists, bold."""


@memoized(1 << 16)
def answer_style(answer: Answer) -> StyleFeatures:
    """The style features of a whole answer, its turns joined by a blank line (computed once per answer: the
    style-controlled view and the per-model table both need them)."""
    return style_features("\n\n".join(answer.turns))


@dataclass(frozen=True)
class ModelStyle:
    """A candidate's style over its answers: the mean of each feature per answer."""

    model: str
    answers: int
    tokens: float
    """Mean cl100k_base tokens per answer."""
    headers: float
    """Mean markdown headers per answer."""
    lists: float
    """Mean list items per answer."""
    bold: float
    """Mean bold spans per answer."""


def style_by_model(answers: Iterable[Answer]) -> list[ModelStyle]:
    """Each model's mean style features per answer (`answer_style`), in order of first appearance."""
    totals: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    for answer in answers:
        features = answer_style(answer)
        totals[answer.model].append(tuple(getattr(features, name) for name in FEATURES))
    return [
        ModelStyle(model, len(rows), *(sum(column) / len(rows) for column in zip(*rows, strict=True)))
        for model, rows in totals.items()
    ]
