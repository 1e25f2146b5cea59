"""Style: the normalizations an answer is judged under, and the style features of an answer.

`plain` removes markdown *presentation* (headers, emphasis, list markers, tables, rules, quotes, link syntax)
and keeps every word and the content of code blocks, using a real markdown parser (markdown-it-py). The
features follow Arena-Hard-Auto's definitions, so style-controlled ratings are comparable with its own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from markdown_it import MarkdownIt


@functools.cache
def _encoding() -> Any:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Length in tiktoken cl100k_base tokens, special-token text counted as ordinary text (as Arena-Hard-Auto)."""
    return len(_encoding().encode(text, disallowed_special=()))


@functools.cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _inline_text(token: Any) -> str:
    parts: list[str] = []
    links: list[tuple[str, int]] = []
    for child in token.children or ():
        kind = child.type
        if kind in ("text", "code_inline", "html_inline", "image"):
            # An image's content is its alt text.
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "link_open":
            links.append((str(child.attrGet("href") or ""), len(parts)))
        elif kind == "link_close" and links:
            href, start = links.pop()
            label = "".join(parts[start:])
            # The URL is content a reader may need; only the bracket syntax is presentation.
            if href and href not in (label, f"mailto:{label}"):
                parts.append(f" ({href})")
    return "".join(parts)


def strip_markdown(text: str) -> str:
    """The answer without markdown presentation: words, line structure and code block contents kept."""
    chunks: list[tuple[str, bool]] = []
    """(text, tight): a tight chunk joins the previous one with a newline, others with a blank line."""
    list_depth = 0
    in_list_chunks = 0
    row: list[str] | None = None
    table_rows = 0

    def emit(content: str) -> None:
        nonlocal in_list_chunks
        tight = list_depth > 0 and in_list_chunks > 0
        if list_depth > 0:
            in_list_chunks += 1
        chunks.append((content, tight))

    for token in _parser().parse(text):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            if list_depth == 0:
                in_list_chunks = 0
            list_depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif kind == "table_open":
            table_rows = 0
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and row is not None:
            chunks.append(("; ".join(cell for cell in row if cell), table_rows > 0))
            table_rows += 1
            row = None
        elif kind == "inline":
            content = _inline_text(token)
            if row is not None:
                row.append(content.strip())
            else:
                emit(content)
        elif kind in ("fence", "code_block", "html_block"):
            emit(token.content.rstrip("\n"))
    out: list[str] = []
    for content, tight in chunks:
        cleaned = "\n".join(line.rstrip() for line in content.split("\n"))
        if out:
            out.append("\n" if tight else "\n\n")
        out.append(cleaned)
    return "".join(out).strip()


def _raw(text: str) -> str:
    return text


NORMALIZATIONS: Mapping[str, Callable[[str], str]] = MappingProxyType({"raw": _raw, "plain": strip_markdown})
"""The views an answer can be judged in: 'raw' as written, 'plain' with markdown presentation removed."""


def normalize(text: str, name: str) -> str:
    """Apply the named normalization."""
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
    """Lines starting with 1 to 6 '#' and a space, outside code blocks."""
    lists: int
    """Ordered ('1. ') and unordered ('- ', '* ', '+ ') list items, outside code blocks."""
    bold: int
    """'**x**' and '__x__' spans on one line, outside code blocks."""


_CODE_BLOCK = re.compile(r"```([^`]*)```")
_HEADERS = tuple(re.compile(rf"^#{{{level}}}\s", re.MULTILINE) for level in range(1, 7))
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


def style_features(text: str) -> StyleFeatures:
    """Token length and markdown counts, defined as Arena-Hard-Auto defines them (code blocks removed first)."""
    prose = _CODE_BLOCK.sub("", text)
    return StyleFeatures(
        tokens=count_tokens(text),
        headers=sum(len(pattern.findall(prose)) for pattern in _HEADERS),
        lists=len(_ORDERED.findall(prose)) + len(_UNORDERED.findall(prose)),
        bold=len(_BOLD_STARS.findall(prose)) + len(_BOLD_UNDERSCORES.findall(prose)),
    )
