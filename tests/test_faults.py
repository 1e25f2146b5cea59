"""The simulator's fault mode: plans and schedules, every fault on the wire, what the SDKs make of it, billing."""

from __future__ import annotations

import email.utils
import functools
import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, cast

import anthropic
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from judge_arena.sim.faults import FAULT_KINDS, Fault, FaultKind, FaultPlan
from judge_arena.sim.models import ChatMessage
from judge_arena.sim.server import Api, Reply, RequestRecord, SimRequest, SimulatorServer

PATHS: dict[Api, str] = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
KEY = "sk-sentinel-0123456789abcdefghij"
QUESTION = "How does binary search work?"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def plain(sim: SimulatorServer) -> Iterator[SimulatorServer]:
    """The module's simulator; the test sets its hook, which is removed afterwards."""
    yield sim
    sim.hook = None


@pytest.fixture
def question(request: pytest.FixtureRequest) -> str:
    """A question no other test asks: a request is logged when its handler ends, maybe after the next test began."""
    return f"[{request.node.name}] {QUESTION}"


def _payload(api: Api, content: str = QUESTION, model: str = "sim-good-terse", stream: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}
    if api == "anthropic":
        payload["max_tokens"] = 400
    return payload


def _post(
    sim: SimulatorServer, api: Api, payload: dict[str, Any], timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased names) and body of one request; raises on transport faults."""
    auth = {"x-api-key": KEY} if api == "anthropic" else {"Authorization": f"Bearer {KEY}"}
    request = urllib.request.Request(
        sim.url + PATHS[api], data=json.dumps(payload).encode(), headers={"Content-Type": "application/json", **auth}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def _settled(sim: SimulatorServer, question: str, count: int) -> list[RequestRecord]:
    """The requests asking `question` (or starting with it), once `count` are logged.

    A request is logged when its handler ends: a hung one when the hook sees its client go, a streamed one after
    its last byte, which the client may have read already. All are waited for: a loaded machine can take seconds.
    """
    deadline = time.monotonic() + 30.0
    while True:
        records = [r for r in sim.requests if r.messages and r.messages[-1].content.startswith(question)]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.01)


def _events(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: {")]


@functools.cache
def _http(path: str) -> web.Request:
    return make_mocked_request("POST", path)


def _mocked(content: str, model: str = "m", path: str = "/v1/chat/completions") -> SimRequest:
    reply = Reply(id="x", text="answer", finish="stop", input_tokens=1, output_tokens=1)
    api: Api = "openai" if path == PATHS["openai"] else "anthropic"
    return SimRequest(
        api=api,
        http=_http(path),
        model=model,
        body={},
        messages=(ChatMessage("user", content),),
        stream=False,
        reply=reply,
    )


# --- the plan -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "no-such-fault"}, "unknown fault kind 'no-such-fault'"),
        ({"kind": "reset", "rate": 1.5}, "rate must be within"),
        ({"kind": "reset", "first": -1}, "first must be"),
        ({"kind": "reset", "path": "/v1/completions"}, "path must be one of"),
    ],
)
def test_bad_faults_are_refused(fault: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Fault(**fault)


def test_choice_is_seeded_and_depends_only_on_key_and_count() -> None:
    plan = FaultPlan([Fault("server_error", rate=0.1), Fault("reset", rate=0.2)], seed=7)
    requests = [_mocked(f"question {i}") for i in range(3000)]
    chosen = [plan.choose(r, n) for r in requests for n in range(2)]
    # A fresh request with the same path, model and conversation is the same key: the same faults, in any order.
    assert [plan.choose(_mocked(f"question {i}"), 0) for i in reversed(range(3000))] == chosen[::2][::-1]
    assert [FaultPlan(plan.faults, seed=8).choose(r, 0) for r in requests] != chosen[::2]
    # Each fault takes its own band of one draw: the shares match the rates.
    assert chosen.count("server_error") / len(chosen) == pytest.approx(0.1, abs=0.02)
    assert chosen.count("reset") / len(chosen) == pytest.approx(0.2, abs=0.02)
    # Attempts of one key are drawn independently: a request faulted once is not faulted forever.
    faulted_first = [r for r in requests if plan.choose(r, 0) is not None]
    assert sum(plan.choose(r, 1) is None for r in faulted_first) / len(faulted_first) == pytest.approx(0.7, abs=0.05)


def test_faults_match_by_model_and_path() -> None:
    plan = FaultPlan([Fault("server_error", model="sim-judge"), Fault("overloaded", path="/v1/messages")])
    assert plan.choose(_mocked("q", "sim-judge"), 0) == "server_error"
    assert plan.choose(_mocked("q", "sim-good-terse"), 0) is None
    assert plan.choose(_mocked("q", "sim-good-terse", "/v1/messages"), 0) == "overloaded"
    assert plan.choose(_mocked("q", "sim-judge", "/v1/messages"), 0) == "server_error"


def test_schedule_faults_the_first_requests_of_each_key(plain: SimulatorServer, question: str) -> None:
    hook = FaultPlan([Fault("overloaded", first=2)]).hook()
    plain.hook = hook
    statuses = [
        _post(plain, api, _payload(api, f"{question} {which}"))[0]
        for _ in range(3)
        for api in ("openai", "anthropic")
        for which in ("first", "second")
    ]
    assert statuses == [529] * 8 + [200] * 4
    assert [(i.n, i.kind) for i in hook.injections] == [(0, "overloaded")] * 4 + [(1, "overloaded")] * 4
    assert [r.billed for r in _settled(plain, question, 12)] == [False] * 8 + [True] * 4


# --- every fault on the wire ----------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_rate_limits_carry_retry_after_and_the_providers_headers(plain: SimulatorServer, api: Api) -> None:
    plain.hook = FaultPlan(
        [Fault("rate_limit", first=1), Fault("rate_limit_date", first=2), Fault("rate_limit_ms", first=3)],
        retry_after_s=2.5,
    ).hook()
    before = time.time()
    (status, seconds, _), (_, dated, _), (_, precise, _) = (_post(plain, api, _payload(api)) for _ in range(3))
    after = time.time()
    assert status == 429
    assert seconds["retry-after"] == "3"
    # Written at some moment between the two, as whole seconds rounded up: however long the requests took.
    retry_at = email.utils.parsedate_to_datetime(dated["retry-after"]).timestamp()
    assert before + 2.5 <= retry_at <= after + 3.5
    assert (precise["retry-after-ms"], precise["retry-after"]) == ("2500", "3")
    if api == "openai":
        for unit in ("requests", "tokens"):
            assert seconds[f"x-ratelimit-remaining-{unit}"] == "0"
            assert int(seconds[f"x-ratelimit-limit-{unit}"]) > 0
            assert seconds[f"x-ratelimit-reset-{unit}"] == "2.5s"
    else:
        for unit in ("requests", "tokens", "input-tokens", "output-tokens"):
            assert seconds[f"anthropic-ratelimit-{unit}-remaining"] == "0"
            assert int(seconds[f"anthropic-ratelimit-{unit}-limit"]) > 0
            assert seconds[f"anthropic-ratelimit-{unit}-reset"].endswith("Z")


@pytest.mark.parametrize(
    ("kind", "api", "status", "error"),
    [
        ("quota", "openai", 429, {"type": "insufficient_quota", "code": "insufficient_quota"}),
        ("quota", "anthropic", 429, {"type": "rate_limit_error"}),
        ("server_error", "openai", 500, {"type": "server_error"}),
        ("server_error", "anthropic", 500, {"type": "api_error"}),
        ("unavailable", "openai", 503, {"type": "service_unavailable"}),
        ("overloaded", "anthropic", 529, {"type": "overloaded_error", "message": "Overloaded"}),
        ("echo_key", "openai", 401, {"message": f"Incorrect API key provided: {KEY}."}),
        ("echo_key", "anthropic", 401, {"type": "authentication_error"}),
    ],
)
def test_errors_come_in_the_providers_shape(
    plain: SimulatorServer, kind: FaultKind, api: Api, status: int, error: dict[str, str]
) -> None:
    plain.hook = FaultPlan([Fault(kind)]).hook()
    got, _, body = _post(plain, api, _payload(api))
    payload = json.loads(body)
    assert got == status
    assert error.items() <= payload["error"].items()
    assert ("insufficient_quota" in body.decode()) == (kind == "quota")
    assert (KEY in body.decode()) == (kind == "echo_key")
    if api == "anthropic":
        assert payload["type"] == "error"


def test_a_hung_request_lasts_until_the_client_gives_up(plain: SimulatorServer, question: str) -> None:
    plain.hook = FaultPlan([Fault("hang")], hang_s=10).hook()
    with pytest.raises(TimeoutError):
        _post(plain, "openai", _payload("openai", question), timeout=0.2)
    # 499: the server saw the client go, long before hang_s (it would answer 504 then).
    assert [(r.status, r.billed) for r in _settled(plain, question, 1)] == [(499, False)]
    plain.hook = FaultPlan([Fault("hang")], hang_s=0.1).hook()
    assert _post(plain, "anthropic", _payload("anthropic"))[0] == 504


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
def test_reset_and_drop_break_the_connection(plain: SimulatorServer, question: str, api: Api, stream: bool) -> None:
    plain.hook = FaultPlan([Fault("reset", first=1), Fault("drop", first=2)]).hook()
    with pytest.raises(ConnectionResetError):
        _post(plain, api, _payload(api, question, stream=stream))
    with pytest.raises(http.client.IncompleteRead) as dropped:
        _post(plain, api, _payload(api, question, stream=stream))
    assert dropped.value.partial
    assert [(r.status, r.billed) for r in _settled(plain, question, 2)] == [(499, False), (200, False)]


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_bodies_malformed_cut_or_empty(plain: SimulatorServer, question: str, api: Api) -> None:
    kinds: list[FaultKind] = ["malformed", "cut", "empty_text", "no_content"]
    plain.hook = FaultPlan([Fault(kind, first=i + 1) for i, kind in enumerate(kinds)]).hook()
    malformed, cut, empty, nothing, whole = (_post(plain, api, _payload(api, question))[2] for _ in range(5))
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed)
    assert whole.startswith(malformed)
    if api == "openai":
        choice = json.loads(cut)["choices"][0]
        assert choice["finish_reason"] is None
        assert json.loads(whole)["choices"][0]["message"]["content"].startswith(choice["message"]["content"])
        assert json.loads(empty)["choices"][0]["message"]["content"] == ""
        assert json.loads(nothing)["choices"][0]["message"]["content"] is None
    else:
        message = json.loads(cut)
        assert message["stop_reason"] is None
        assert json.loads(whole)["content"][0]["text"].startswith(message["content"][0]["text"])
        assert json.loads(empty)["content"] == [{"type": "text", "text": ""}]
        assert json.loads(nothing)["content"] == []
    assert [r.billed for r in _settled(plain, question, 5)] == [False] * 4 + [True]


def test_streams_cut_malformed_or_empty_openai(plain: SimulatorServer) -> None:
    kinds: list[FaultKind] = ["cut", "malformed", "no_content"]
    plain.hook = FaultPlan([Fault(kind, first=i + 1) for i, kind in enumerate(kinds)]).hook()
    cut, malformed, nothing, whole = (_post(plain, "openai", _payload("openai", stream=True))[2] for _ in range(4))
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in _events(cut))
    assert text
    assert len(text) < len("".join(e["choices"][0]["delta"].get("content") or "" for e in _events(whole)))
    assert all(e["choices"][0]["finish_reason"] is None for e in _events(cut))
    assert b"[DONE]" not in cut
    assert whole.endswith(b"data: [DONE]\n\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.decode().rstrip().splitlines()[-1].removeprefix("data: "))
    assert not any(e["choices"] and e["choices"][0]["delta"].get("content") for e in _events(nothing))
    assert _events(nothing)[-1]["choices"][0]["finish_reason"] == "stop"


def test_streams_cut_malformed_or_empty_anthropic(plain: SimulatorServer) -> None:
    kinds: list[FaultKind] = ["cut", "malformed", "empty_text", "no_content"]
    plain.hook = FaultPlan([Fault(kind, first=i + 1) for i, kind in enumerate(kinds)]).hook()
    bodies = [_post(plain, "anthropic", _payload("anthropic", stream=True))[2] for _ in range(5)]
    cut, malformed, empty, nothing, whole = (
        [line.removeprefix("event: ") for line in body.decode().splitlines() if line.startswith("event: ")]
        for body in bodies
    )
    assert cut[:3] == ["message_start", "content_block_start", "ping"]
    assert "content_block_delta" in cut
    assert not {"message_delta", "message_stop"} & set(cut)
    assert whole[-2:] == ["message_delta", "message_stop"]
    assert malformed == cut
    with pytest.raises(json.JSONDecodeError):
        json.loads(bodies[1].decode().rstrip().splitlines()[-1].removeprefix("data: "))
    assert "content_block_delta" not in empty
    assert "content_block_start" in empty
    assert not any(name.startswith("content_block") for name in nothing)
    assert nothing[-2:] == ["message_delta", "message_stop"]


def test_only_the_reply_served_in_full_is_billed(plain: SimulatorServer, question: str) -> None:
    kinds = [k for k in FAULT_KINDS if k not in ("hang", "reset", "drop")]
    plain.hook = FaultPlan([Fault(kind, first=i + 1) for i, kind in enumerate(kinds)]).hook()
    for _ in range(len(kinds) + 1):
        _post(plain, "openai", _payload("openai", question))
    records = _settled(plain, question, len(kinds) + 1)
    assert [r.billed for r in records] == [False] * len(kinds) + [True]
    assert 200 in {r.status for r in records[:-1]}  # faulted 200s (cut, empty…) are still not billed


# --- what the SDKs make of them (openai 3.x, anthropic 2.x, retries off) --------------------------------------


def _sdk_timeout(kind: FaultKind) -> float:
    """Short only for a hung request: a loaded machine must not turn another fault into a timeout."""
    return 0.25 if kind == "hang" else 10.0


def _openai_sdk(sim: SimulatorServer, stream: bool, timeout: float) -> str | None:
    client = openai.OpenAI(base_url=sim.url + "/v1", api_key=KEY, max_retries=0, timeout=timeout)
    messages = cast("Any", [{"role": "user", "content": QUESTION}])
    if not stream:
        return client.chat.completions.create(model="sim-good-terse", messages=messages).choices[0].finish_reason
    finish = None
    for chunk in client.chat.completions.create(model="sim-good-terse", messages=messages, stream=True):
        finish = (chunk.choices[0].finish_reason if chunk.choices else None) or finish
    return finish


def _anthropic_sdk(sim: SimulatorServer, stream: bool, timeout: float) -> str | None:
    client = anthropic.Anthropic(base_url=sim.url, api_key=KEY, max_retries=0, timeout=timeout)
    messages = cast("Any", [{"role": "user", "content": QUESTION}])
    if not stream:
        return client.messages.create(model="sim-good-terse", max_tokens=400, messages=messages).stop_reason
    stop = None
    for event in client.messages.create(model="sim-good-terse", max_tokens=400, messages=messages, stream=True):
        if event.type == "message_delta":
            stop = event.delta.stop_reason
    return stop


@pytest.mark.parametrize(
    ("kind", "api", "stream", "raised"),
    [
        ("malformed", "openai", False, "JSONDecodeError"),
        ("malformed", "openai", True, "JSONDecodeError"),
        ("malformed", "anthropic", False, "JSONDecodeError"),
        ("malformed", "anthropic", True, "JSONDecodeError"),
        ("drop", "openai", True, "APIConnectionError"),
        ("drop", "anthropic", False, "APIConnectionError"),
        ("drop", "anthropic", True, "RemoteProtocolError"),
        ("reset", "openai", False, "APIConnectionError"),
        ("reset", "anthropic", True, "APIConnectionError"),
        ("hang", "openai", False, "APITimeoutError"),
        ("hang", "anthropic", True, "APITimeoutError"),
        ("overloaded", "openai", False, "InternalServerError"),
        ("overloaded", "anthropic", False, "OverloadedError"),
        ("cut", "openai", False, None),
        ("cut", "openai", True, None),
        ("cut", "anthropic", False, None),
        ("cut", "anthropic", True, None),
    ],
)
def test_what_the_sdks_raise(
    plain: SimulatorServer, kind: FaultKind, api: Api, stream: bool, raised: str | None
) -> None:
    """Some faults escape the SDKs' error classes; a cut answer passes silently, with no finish reason."""
    plain.hook = FaultPlan([Fault(kind)], hang_s=5).hook()
    call = _openai_sdk if api == "openai" else _anthropic_sdk
    if raised is None:
        assert call(plain, stream, _sdk_timeout(kind)) is None
        return
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the SDK's own class, checked by name below
        call(plain, stream, _sdk_timeout(kind))
    assert type(caught.value).__name__ == raised
    sdk_error = openai.OpenAIError if api == "openai" else anthropic.AnthropicError
    assert isinstance(caught.value, sdk_error) == (raised not in ("JSONDecodeError", "RemoteProtocolError"))
