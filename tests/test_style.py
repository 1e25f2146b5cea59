"""Style: token counts, the markdown-free 'plain' view, and Arena-Hard-Auto's style features."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from judge_arena.style import (
    NORMALIZATIONS,
    StyleFeatures,
    normalize,
    strip_markdown,
    style_features,
)
from judge_arena.tokens import count_tokens

CODE = "# a comment, not a header\ndef f(**kwargs):\n    - not a list\n    return 2 ** 3  # **not bold**"

RICH = """# Setting up

Intro with **bold**, __strong__, *emphasis*, _more_ and `inline_code()`.

## Steps

1. Install the *package*:
   - run `pip install thing`
   - check **the version**
2. Configure it
   * nested star

| Option | Default | Meaning |
|--------|:-------:|---------|
| `fast` | no      | skips **checks** |

> A quoted tip
> with [a link](https://example.org/tip).

---

![diagram of flow](flow.png)

```python
x = 1
```
"""

RICH_PLAIN = """Setting up

Intro with bold, strong, emphasis, more and inline_code().

Steps

Install the package:
run pip install thing
check the version
Configure it
nested star

Option | Default | Meaning
fast | no | skips checks

A quoted tip
with a link (https://example.org/tip).

diagram of flow

x = 1"""


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        pytest.param("# Title\n\nSome text.", "Title\n\nSome text.", id="atx-header"),
        pytest.param("### Closed ###\ntext", "Closed\n\ntext", id="atx-closing-hashes"),
        pytest.param("Title\n=====\n\nSub\n---\n\ntext", "Title\n\nSub\n\ntext", id="setext-headers"),
        pytest.param("**bold**, __strong__, *em*, _em_ and ***both***", "bold, strong, em, em and both", id="emphasis"),
        pytest.param("~~gone~~ and ~~not\nthis~~", "gone and not\nthis", id="strikethrough"),
        pytest.param("- a\n- b\n  - nested\n    * deeper\n- c", "a\nb\nnested\ndeeper\nc", id="bullets-nested"),
        pytest.param("1. one\n2. two\n   1. sub\n3. three", "one\ntwo\nsub\nthree", id="ordered-nested"),
        pytest.param("- loose\n\n  second para\n\n- next", "loose\nsecond para\nnext", id="loose-list"),
        pytest.param("Steps:\n1. one\n2. two\n\nDone.", "Steps:\n\none\ntwo\n\nDone.", id="list-after-text"),
        pytest.param(
            "| A | B | C |\n|---|:-:|--:|\n| 1 | **2** | 3 |\n| x |  | z |\n| y | | |",
            "A | B | C\n1 | 2 | 3\nx |  | z\ny",
            id="table",
        ),
        pytest.param("para\n\n---\n\nafter\n\n***\n\n___\n\nend", "para\n\nafter\n\nend", id="rules"),
        pytest.param("> quoted\n> more\n>\n> > nested", "quoted\nmore\n\nnested", id="blockquote"),
        pytest.param(
            "see [the docs](https://x.org/a) or <https://y.org>",
            "see the docs (https://x.org/a) or https://y.org",
            id="links",
        ),
        pytest.param("[ref][r] here\n\n[r]: https://r.org", "ref (https://r.org) here", id="reference-link"),
        pytest.param("[https://z.org](https://z.org) <a@b.c>", "https://z.org a@b.c", id="url-only-once"),
        # The parser percent-encodes URLs; the reader gets them as written, and an autolink's only once.
        pytest.param(
            "[Köln](https://de.wikipedia.org/wiki/Köln) <https://de.wikipedia.org/wiki/Köln>",
            "Köln (https://de.wikipedia.org/wiki/Köln) https://de.wikipedia.org/wiki/Köln",
            id="non-ascii-urls",
        ),
        pytest.param("![a *small* cat](cat.png)", "a small cat", id="image"),
        pytest.param("call `foo(**kw)` or ``a ` b``", "call foo(**kw) or a ` b", id="inline-code"),
    ],
)
def test_strip_markdown_removes_presentation_and_keeps_the_words(markdown: str, plain: str) -> None:
    assert strip_markdown(markdown) == plain


@pytest.mark.parametrize("fence", ["```", "~~~"])
def test_fenced_code_is_kept_verbatim_without_fences(fence: str) -> None:
    markdown = f"Run:\n\n{fence}python\n{CODE}\n{fence}\n\nDone."
    assert strip_markdown(markdown) == f"Run:\n\n{CODE}\n\nDone."


def test_code_keeps_its_indentation_at_the_start_of_the_answer() -> None:
    assert strip_markdown("```\n    indented()\nx = 1  \n```") == "    indented()\nx = 1  "


def test_indented_code_is_kept_verbatim() -> None:
    indented = "\n".join("    " + line for line in CODE.split("\n"))
    assert strip_markdown(f"Run:\n\n{indented}\n\nDone.") == f"Run:\n\n{CODE}\n\nDone."


def test_code_inside_a_list_item_is_kept() -> None:
    markdown = "1. Save this:\n\n   ```\n   # not a header\n   **x**\n   ```\n2. Run it"
    assert strip_markdown(markdown) == "Save this:\n# not a header\n**x**\nRun it"


@pytest.mark.parametrize(
    "text",
    [
        "Plain prose.\n\nSecond paragraph with words.",
        "2 * 3 * 4, snake_case_name and a_b_c; costs $5 (or 10%).",
        "A line\nand its continuation",
        # Outline-style text: an indented "1." is paragraph text, so its indentation is kept.
        "I. Introduction\n   A. Briefing\n      1. The mission",
    ],
)
def test_plain_text_comes_back_unchanged(text: str) -> None:
    assert strip_markdown(text) == text


def test_whitespace_is_normalized() -> None:
    assert strip_markdown("\n\n  First.\n\n\n\nSecond.  \n\n") == "First.\n\nSecond."


def test_every_word_is_kept() -> None:
    def words(text: str) -> Counter[str]:
        return Counter(re.findall(r"[^\W_]+", text))

    # Only the list numbers, the fence's info string and the image's file are presentation.
    dropped = Counter({"1": 1, "2": 1, "python": 1, "flow": 1, "png": 1})
    assert words(strip_markdown(RICH)) == words(RICH) - dropped


def test_a_whole_answer() -> None:
    assert strip_markdown(RICH) == RICH_PLAIN


@pytest.mark.parametrize(
    "text",
    [
        RICH,
        "Steps:\n1. one\n2. two\n\nDone.",
        "| A | B |\n|---|---|\n| | x |\n| 1 | |",
        "1. Loop:\n   a. first\n\n      i. Compute:\n         - ratio = max(0, r)",
        "Term &amp; entity, <b>html</b> and a [link](http://u).",
    ],
)
def test_strip_markdown_is_idempotent(text: str) -> None:
    once = strip_markdown(text)
    assert strip_markdown(once) == once


def test_normalizations() -> None:
    text = "**Bold** answer"
    assert set(NORMALIZATIONS) == {"raw", "plain"}
    assert normalize(text, "raw") == text
    assert normalize(text, "plain") == "Bold answer"


def test_unknown_normalization_names_it_and_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown normalization 'shouty'.*'plain'.*'raw'"):
        normalize("text", "shouty")


def test_count_tokens() -> None:
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    # Special-token text in an answer is ordinary text, not an error and not one special token.
    assert count_tokens("<|endoftext|>") > 1


@pytest.mark.parametrize(
    ("text", "headers", "lists", "bold"),
    [
        pytest.param("# One\n## Two\n###### Six\n####### Seven\n#NoSpace\n text # not", 3, 0, 0, id="headers"),
        pytest.param("# Real\n```python\n# comment\n## also\n**x**\n- y\n```\n## Second", 2, 0, 0, id="code-skipped"),
        pytest.param("* item\n1. item\n  - nested\n+ plus\n10. ten\n-no\n**bold** line", 0, 5, 1, id="lists"),
        pytest.param("**one** and __two__, **a** **b**, **not\nacross**, __x\ny__", 0, 0, 4, id="bold"),
        # Arena-Hard-Auto's `\s` matches a newline too.
        pytest.param("#\nword\n-\nword", 1, 1, 0, id="marker-then-newline"),
    ],
)
def test_style_features_count_as_arena_hard_auto(text: str, headers: int, lists: int, bold: int) -> None:
    assert style_features(text) == StyleFeatures(count_tokens(text), headers, lists, bold)


@pytest.mark.parametrize(
    "text",
    [
        "# a\n## b\n####### seven\n###### six",
        "#\n# x",
        "##\n# x\n#\t\n",
        " # indented\n#no space\n#",
        "\n\n### c\r\n# d",
    ],
)
def test_headers_are_counted_as_one_pattern_per_level_counts_them(text: str) -> None:
    """Arena-Hard-Auto's own count: each level's pattern apart, summed."""
    per_level = sum(len(re.findall(rf"^#{{{level}}}\s", text, re.MULTILINE)) for level in range(1, 7))
    assert style_features(text).headers == per_level


def test_style_feature_tokens_include_code() -> None:
    text = "Answer:\n```python\nprint('a long line of code that has tokens')\n```"
    assert style_features(text).tokens == count_tokens(text) > count_tokens("Answer:\n")


def test_code_removal_keeps_arena_hard_autos_quirk() -> None:
    # AH removes each block's *inside* with str.replace, everywhere: the inside of an empty block is "\n", so
    # every newline goes, and only the first header is still at a line start. Replacing whole matches
    # would leave two.
    assert style_features("# A\n# B\n```\n```").headers == 1


@pytest.fixture(scope="module")
def arena_hard_answers(shared_data: Path) -> list[tuple[str, str, str, int]]:
    """(file, question id, answer, token_len) for every answer in Arena-Hard v0.1's model_answer files."""
    folder = shared_data / "arena-hard-v0.1" / "model_answer"
    if not folder.is_dir():
        pytest.skip(f"Arena-Hard v0.1 model answers not found at {folder}")
    answers = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            turn = record["choices"][0]["turns"][0]
            answers.append((path.name, record["question_id"], turn["content"], turn["token_len"]))
    return answers


def test_count_tokens_equals_arena_hard_token_len(arena_hard_answers: list[tuple[str, str, str, int]]) -> None:
    assert len(arena_hard_answers) == 1500
    mismatches = [
        (name, qid, expected, got)
        for name, qid, text, expected in arena_hard_answers
        if (got := count_tokens(text)) != expected
    ]
    assert not mismatches, f"{len(mismatches)} mismatches (file, question, token_len, counted): {mismatches[:10]}"


Stripped = list[tuple[str, str, str, str]]


@pytest.fixture(scope="module")
def stripped_answers(arena_hard_answers: list[tuple[str, str, str, int]]) -> Stripped:
    """(file, question id, answer, strip_markdown of the answer) for every Arena-Hard v0.1 answer."""
    return [(name, qid, text, strip_markdown(text)) for name, qid, text, _ in arena_hard_answers]


def test_strip_markdown_never_empties_a_real_answer(stripped_answers: Stripped) -> None:
    assert all(text.strip() for _, _, text, _ in stripped_answers)
    emptied = [(name, qid) for name, qid, _, plain in stripped_answers if not plain.strip()]
    assert not emptied


# A fence at the start of a line, closed by a bare fence: its content as written, independent of the parser.
_FENCE = re.compile(r"^```[^`\n]*\n(.*?)\n```[ \t]*$", re.MULTILINE | re.DOTALL)


def test_strip_markdown_keeps_the_code_of_real_answers(stripped_answers: Stripped) -> None:
    blocks = [
        (name, qid, match.group(1), plain)
        for name, qid, text, plain in stripped_answers
        for match in _FENCE.finditer(text)
    ]
    assert len(blocks) > 1000
    missing = [(name, qid, code[:60]) for name, qid, code, plain in blocks if code not in plain]
    assert not missing, f"{len(missing)} of {len(blocks)} code blocks lost: {missing[:5]}"


_CODE = ("fence", "code_block")
_PARSER = MarkdownIt("commonmark")


def _outside_code(text: str, plain: str) -> str:
    # Longest first: a short block's code can also be part of a longer one.
    codes = sorted(
        (token.content.strip("\n") for token in _PARSER.parse(text) if token.type in _CODE),
        key=len,
        reverse=True,
    )
    for code in codes:
        plain = plain.replace(code, "")
    return plain


def test_strip_markdown_removes_the_markdown_arena_hard_auto_counts(stripped_answers: Stripped) -> None:
    raw: Counter[str] = Counter()
    plain: Counter[str] = Counter()
    for _, _, text, stripped in stripped_answers:
        for totals, view in ((raw, text), (plain, _outside_code(text, stripped))):
            features = style_features(view)
            totals.update(headers=features.headers, lists=features.lists, bold=features.bold)
    # What is left is text that merely looks like markdown, such as `__init__` or an indented "1." in an outline.
    assert all(raw[name] > 0 and plain[name] < 0.05 * raw[name] for name in raw), f"raw {raw}, plain {plain}"
