"""The simulator: both APIs through the real SDKs and litellm, determinism, ground truth, the request log."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import cast

import anthropic
import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam

from judge_arena.fence import GameTexts, fence
from judge_arena.judge import reask
from judge_arena.labels import ARENA_HARD
from judge_arena.sim import models
from judge_arena.sim.models import CANDIDATES, CandidateProfile, ChatMessage, correctness, markdown_elements
from judge_arena.sim.server import SimRequest, SimulatorServer, error_response

# litellm reads these at import time; without them it tries to fetch its model cost map from the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

QUESTIONS = [
    f"{form} {subject}"
    for subject in ("binary search?", "PostgreSQL indexes?", "sourdough bread?", "TCP congestion control?")
    for form in ("How does one get started with", "What are the pitfalls of", "Explain to a beginner:")
]
REASK = reask(ARENA_HARD)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def oai(sim: SimulatorServer) -> openai.OpenAI:
    sim.reset_log()
    return openai.OpenAI(base_url=sim.url + "/v1", api_key="sim", max_retries=0)


@pytest.fixture
def claude(sim: SimulatorServer) -> anthropic.Anthropic:
    sim.reset_log()
    return anthropic.Anthropic(base_url=sim.url, api_key="sim", max_retries=0)


def _typed(messages: list[dict[str, str]]) -> list[ChatCompletionMessageParam]:
    return cast("list[ChatCompletionMessageParam]", messages)


def _ask(client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> str:
    response = client.chat.completions.create(model=model, messages=_typed(messages))
    text = response.choices[0].message.content
    assert text is not None
    return text


def _post(url: str, payload: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _judge_prompt(question: list[str], answer_a: list[str], answer_b: list[str]) -> str:
    """A judge user message with the texts fenced as judge-arena fences them."""
    blocks = fence(GameTexts(tuple(question), tuple(answer_a), tuple(answer_b)))
    return "Judge these.\n\n" + "\n\n".join(blocks[name] for name in ("question", "answer_a", "answer_b")) + "\n"


def _labels(reply: str) -> list[str]:
    return [found.label for found in ARENA_HARD.find(reply)]


def _judge(client: openai.OpenAI, judge: str, question: str, answer_a: str, answer_b: str) -> str:
    messages = [
        {"role": "system", "content": "Please act as an impartial judge."},
        {"role": "user", "content": _judge_prompt([question], [answer_a], [answer_b])},
    ]
    return _ask(client, judge, messages)


def _strip_markdown(text: str) -> str:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("|")]
    text = "\n".join(re.sub(r"^\s*(?:#{1,6}|[-*+]|\d+[.)])\s+", "", line) for line in lines)
    return text.replace("**", "")


def _wins(client: openai.OpenAI, judge: str, first: dict[str, str], second: dict[str, str]) -> float:
    """Share of games (both orders, every question) that the `first` answers win; a tie counts half."""
    score = 0.0
    for q in QUESTIONS:
        for a_is_first in (True, False):
            a, b = (first[q], second[q]) if a_is_first else (second[q], first[q])
            label = _labels(_judge(client, judge, q, a, b))[-1]
            a_won = 0.5 if label == "A=B" else float(label.startswith("A"))
            score += a_won if a_is_first else 1 - a_won
    return score / (2 * len(QUESTIONS))


def _answers(client: openai.OpenAI, model: str) -> dict[str, str]:
    return {q: _ask(client, model, [{"role": "user", "content": q}]) for q in QUESTIONS}


# --- the wire formats ---------------------------------------------------------------------------------------


def test_openai_sdk_answers_with_usage_and_finish_reason(oai: openai.OpenAI) -> None:
    response = oai.chat.completions.create(
        model="sim-strong-plain", messages=[{"role": "user", "content": "How does binary search work?"}]
    )
    assert response.model == "sim-strong-plain"
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.role == "assistant"
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens > 100
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_anthropic_sdk_answers_and_accepts_both_system_forms(claude: anthropic.Anthropic) -> None:
    question: list[anthropic.types.MessageParam] = [
        {"role": "user", "content": [{"type": "text", "text": "How does binary search work?"}]}
    ]
    as_string = claude.messages.create(
        model="sim-markdown-weak", max_tokens=2000, system="Be helpful.", messages=question
    )
    as_blocks = claude.messages.create(
        model="sim-markdown-weak",
        max_tokens=2000,
        system=[{"type": "text", "text": "Be helpful."}],
        messages=question,
    )
    assert as_string.stop_reason == "end_turn"
    assert as_string.content[0].type == "text"
    assert as_string.content[0].text.startswith("## ")
    assert as_string.usage.input_tokens > 0
    assert as_string.usage.output_tokens > 100
    assert as_blocks.content == as_string.content


def test_unknown_model_is_404_in_each_providers_shape(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.NotFoundError) as openai_error:
        oai.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    assert openai_error.value.body == {
        "message": "The model `gpt-nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
    with pytest.raises(anthropic.NotFoundError) as anthropic_error:
        claude.messages.create(model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert anthropic_error.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-nope"},
    }


def test_bad_requests_are_400(sim: SimulatorServer, claude: anthropic.Anthropic) -> None:
    status, body = _post(sim.url + "/v1/chat/completions", b"{not json")
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    status, body = _post(sim.url + "/v1/chat/completions", json.dumps({"model": "sim-strong-plain"}).encode())
    assert (status, json.loads(body)["error"]["message"]) == (400, "messages: must be a non-empty list")
    status, body = _post(
        sim.url + "/v1/messages",
        json.dumps({"model": "sim-strong-plain", "messages": [{"role": "user", "content": "hi"}]}).encode(),
    )
    assert (status, json.loads(body)["error"]["type"]) == (400, "invalid_request_error")


def test_max_tokens_cuts_the_answer(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    cut = oai.chat.completions.create(
        model="sim-good-verbose", max_tokens=50, messages=[{"role": "user", "content": "Explain TCP."}]
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens <= 50
    message = claude.messages.create(
        model="sim-good-verbose", max_tokens=50, messages=[{"role": "user", "content": "Explain TCP."}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert message.content[0].text == cut.choices[0].message.content


def test_openai_stream_matches_the_plain_answer(oai: openai.OpenAI) -> None:
    messages: list[dict[str, str]] = [{"role": "user", "content": "How does binary search work?"}]
    whole = _ask(oai, "sim-strong-markdown", messages)
    chunks = list(
        oai.chat.completions.create(
            model="sim-strong-markdown",
            messages=_typed(messages),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(chunks) > 10
    assert text == whole
    assert finish == ["stop"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 100


def test_anthropic_stream_matches_the_plain_answer(claude: anthropic.Anthropic) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "How does binary search work?"}]
    whole = claude.messages.create(model="sim-weak-verbose", max_tokens=2000, messages=messages)
    with claude.messages.stream(model="sim-weak-verbose", max_tokens=2000, messages=messages) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].type == whole.content[0].type == "text"
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens


async def test_litellm_reaches_both_routes(sim: SimulatorServer) -> None:
    import litellm

    sim.reset_log()
    messages = [{"role": "user", "content": "How does binary search work?"}]
    routes = [
        ("openai/sim-strong-plain", sim.url + "/v1", "/v1/chat/completions"),
        ("anthropic/sim-strong-plain", sim.url, "/v1/messages"),
        ("anthropic/sim-strong-plain", sim.url + "/v1/messages", "/v1/messages"),
    ]
    texts = []
    for model, api_base, path in routes:
        response = await litellm.acompletion(
            model=model, api_base=api_base, api_key="sim", messages=messages, num_retries=0, max_retries=0
        )
        assert response.choices[0].finish_reason == "stop"
        assert response.usage.completion_tokens > 0
        assert sim.requests[-1].path == path
        texts.append(response.choices[0].message.content)
    assert texts[0] == texts[1] == texts[2]
    streamed = await litellm.acompletion(
        model="anthropic/sim-strong-plain", api_base=sim.url, api_key="sim", messages=messages, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" async for chunk in streamed]
    assert "".join(pieces) == texts[0]


# --- determinism --------------------------------------------------------------------------------------------


def test_same_request_same_bytes_and_seed_changes_the_answer(sim: SimulatorServer) -> None:
    def body(**extra: object) -> bytes:
        messages = [{"role": "user", "content": "What are the pitfalls of caching?"}]
        return json.dumps({"model": "sim-mid-plain", "messages": messages, "temperature": 0.7, **extra}).encode()

    first = _post(sim.url + "/v1/chat/completions", body())
    assert first == _post(sim.url + "/v1/chat/completions", body())
    assert first[0] == 200
    seeded = [json.loads(_post(sim.url + "/v1/chat/completions", body(seed=s))[1]) for s in range(4)]
    assert len({r["choices"][0]["message"]["content"] for r in seeded}) > 1


def test_every_candidate_answers_differently(oai: openai.OpenAI) -> None:
    texts = {name: _ask(oai, name, [{"role": "user", "content": QUESTIONS[0]}]) for name in CANDIDATES}
    assert len(set(texts.values())) == len(CANDIDATES)


# --- ground truth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["markdown", "verbose", "terse", "plain"])
def test_answers_carry_exactly_their_quality(style: models.Style, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CANDIDATES, "sim-perfect", CandidateProfile(quality=1.0, style=style))
    monkeypatch.setitem(CANDIDATES, "sim-hopeless", CandidateProfile(quality=0.0, style=style))
    for q in QUESTIONS:
        perfect = models.candidate_reply("sim-perfect", [ChatMessage("user", q)])
        hopeless = models.candidate_reply("sim-hopeless", [ChatMessage("user", q)])
        assert correctness(q, perfect) == (4, 0)
        assert correctness(q, hopeless) == (0, 4)
        assert correctness(q, _strip_markdown(perfect)) == (4, 0)


@pytest.mark.parametrize(
    ("model", "low", "high"),
    [
        ("sim-good-terse", 40, 80),
        ("sim-strong-plain", 150, 300),
        ("sim-good-verbose", 400, 700),
        ("sim-strong-markdown", 250, 470),
    ],
)
def test_answer_sizes_follow_style(model: str, low: int, high: int) -> None:
    sizes = [models.estimate_tokens(models.candidate_reply(model, [ChatMessage("user", q)])) for q in QUESTIONS]
    # A quarter of the answers, on average, take another layout (CandidateProfile.style_consistency).
    habitual = [size for size in sizes if low <= size <= high]
    assert len(habitual) >= len(sizes) / 2


def test_markdown_is_mostly_in_the_markdown_styles(oai: openai.OpenAI) -> None:
    for name, profile in CANDIDATES.items():
        texts = list(_answers(oai, name).values())
        formatted = sum(markdown_elements(text) > 5 for text in texts) / len(texts)
        assert formatted >= 0.5 if profile.style == "markdown" else formatted <= 0.5
        assert all(markdown_elements(_strip_markdown(text)) == 0 for text in texts)


def test_fair_judge_follows_quality(oai: openai.OpenAI) -> None:
    strong, weak = _answers(oai, "sim-strong-plain"), _answers(oai, "sim-weak-terse")
    assert _wins(oai, "sim-judge-fair", strong, weak) >= 0.8
    markdown_weak = _answers(oai, "sim-markdown-weak")
    assert _wins(oai, "sim-judge-fair", strong, markdown_weak) >= 0.7


def test_biased_judge_prefers_markdown_until_it_is_stripped(oai: openai.OpenAI) -> None:
    markdown_weak, strong_plain = _answers(oai, "sim-markdown-weak"), _answers(oai, "sim-strong-plain")
    assert _wins(oai, "sim-judge", markdown_weak, strong_plain) > 0.5
    stripped = {q: _strip_markdown(text) for q, text in markdown_weak.items()}
    assert _wins(oai, "sim-judge", stripped, strong_plain) < 0.3


def test_judge_reads_multi_turn_prompts(oai: openai.OpenAI) -> None:
    question = [QUESTIONS[0], QUESTIONS[5]]
    perfect = [models.candidate_reply("sim-strong-plain", [ChatMessage("user", q)]) for q in question]
    prompt = _judge_prompt(question, perfect, ["I do not know.", "Nor this."])
    reply = _ask(oai, "sim-judge-fair", [{"role": "user", "content": prompt}])
    assert "of 8 key points" in reply
    assert _labels(reply)[-1] in {"A>>B", "A>B"}


def test_reasked_judge_answers_with_its_label(oai: openai.OpenAI) -> None:
    strong, weak = _answers(oai, "sim-strong-plain"), _answers(oai, "sim-weak-verbose")
    forgot = 0
    for q in QUESTIONS:
        messages = [{"role": "user", "content": _judge_prompt([q], [strong[q]], [weak[q]])}]
        first = _ask(oai, "sim-judge-sloppy", messages)
        if _labels(first):
            continue
        forgot += 1
        again = _ask(
            oai,
            "sim-judge-sloppy",
            [*messages, {"role": "assistant", "content": first}, {"role": "user", "content": REASK}],
        )
        assert len(_labels(again)) == 1
    assert forgot > 0, "the sloppy judge should sometimes omit its label"
    messages = [
        {
            "role": "user",
            "content": _judge_prompt([QUESTIONS[0]], [strong[QUESTIONS[0]]], [weak[QUESTIONS[0]]]),
        }
    ]
    first = _ask(oai, "sim-judge", messages)
    again = _ask(
        oai,
        "sim-judge",
        [*messages, {"role": "assistant", "content": first}, {"role": "user", "content": REASK}],
    )
    assert _labels(again) == _labels(first)


# --- the request log and the hook ---------------------------------------------------------------------------


def test_multi_turn_request_carries_the_earlier_answer(sim: SimulatorServer, oai: openai.OpenAI) -> None:
    conversation = [{"role": "user", "content": QUESTIONS[0]}]
    first = _ask(oai, "sim-good-terse", conversation)
    conversation += [{"role": "assistant", "content": first}, {"role": "user", "content": QUESTIONS[3]}]
    second = _ask(oai, "sim-good-terse", conversation)
    assert second.startswith("Following up on my previous answer about")
    logged = sim.requests[-1].messages
    assert [m.role for m in logged] == ["user", "assistant", "user"]
    assert logged[1] == ChatMessage("assistant", first)
    assert correctness(QUESTIONS[3], second) != (0, 0)


def test_request_log_counts_and_billing(sim: SimulatorServer, oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    for q in QUESTIONS[:3]:
        _ask(oai, "sim-mid-plain", [{"role": "user", "content": q}])
    claude.messages.create(model="sim-mid-plain", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        _ask(oai, "nobody", [{"role": "user", "content": "hi"}])
    records = sim.requests
    assert [(r.path, r.model, r.status, r.billed) for r in records] == [
        *[("/v1/chat/completions", "sim-mid-plain", 200, True)] * 3,
        ("/v1/messages", "sim-mid-plain", 200, True),
        ("/v1/chat/completions", "nobody", 404, False),
    ]
    assert records[0].messages == (ChatMessage("user", QUESTIONS[0]),)
    sim.reset_log()
    assert sim.requests == []


def test_a_hook_can_answer_instead(sim: SimulatorServer, oai: openai.OpenAI) -> None:
    seen: list[str] = []

    async def rate_limit(request: SimRequest) -> web.StreamResponse | None:
        seen.append(request.model)
        if request.model != "sim-weak-terse":
            return None
        response = error_response(request.api, 429, "rate_limit_error", "slow down")
        response.headers["Retry-After"] = "7"
        return response

    sim.hook = rate_limit
    try:
        with pytest.raises(openai.RateLimitError) as limited:
            _ask(oai, "sim-weak-terse", [{"role": "user", "content": "hi"}])
        assert limited.value.response.headers["retry-after"] == "7"
        _ask(oai, "sim-good-terse", [{"role": "user", "content": "hi"}])
    finally:
        sim.hook = None
    assert seen == ["sim-weak-terse", "sim-good-terse"]
    assert [(r.status, r.billed) for r in sim.requests] == [(429, False), (200, True)]


# --- running the server -------------------------------------------------------------------------------------


def test_server_lifecycle() -> None:
    server = SimulatorServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        port = int(server.url.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError):
            server.start()
        with pytest.raises(OSError, match=r"address already in use|Errno 98"):
            SimulatorServer(port=port).start()
    server.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_serve_stops_on_a_signal_delivered_to_another_thread() -> None:
    """A process-directed signal may land on any thread; the foreground simulator must stop all the same (with a
    Python-level handler only, its idle loop slept on and the process hung)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"""
import signal, socket, threading, time
from judge_arena.sim.server import serve

def interrupt_from_this_thread():
    while True:
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.5)  # the loop is idle, waiting for its next event
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

threading.Thread(target=interrupt_from_this_thread, daemon=True).start()
serve("127.0.0.1", {port})
"""
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait()


def test_serve_runs_in_the_foreground_until_ctrl_c() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"from judge_arena.sim.server import serve; serve('127.0.0.1', {port})"
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, _ = _post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json.dumps({"model": "sim-judge", "messages": [{"role": "user", "content": "hi"}]}).encode(),
                )
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.05)
        assert status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
