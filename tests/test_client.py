"""The client against the fault simulator, through litellm on both routes, streamed or not.

Every fault is diagnosed and retried (or not), Retry-After is honoured within max_wait_s, max_total_s caps a call,
keys never leak, and under mixed faults every call ends answered or failed with its reason, paid at most once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from judge_arena.arena import load_inputs, play_arena
from judge_arena.client import CallFailed, Client, Endpoint
from judge_arena.config import load_config
from judge_arena.records import Message
from judge_arena.sim.faults import FAULT_KINDS, Fault, FaultKind, FaultPlan
from judge_arena.sim.models import ChatMessage
from judge_arena.sim.server import Reply, RequestRecord, SimRequest, SimulatorServer, error_response
from judge_arena.store import Receipt

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = str(ROOT / "judge_arena" / "data" / "templates" / "pairwise.yaml")
Route = Literal["openai", "anthropic"]
ROUTES: tuple[Route, ...] = ("openai", "anthropic")
PATHS: dict[Route, str] = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
MODEL = "sim-good-terse"
KEY_ENV = "JUDGE_ARENA_TEST_KEY"
SENTINEL = "sk-sentinel-0123456789abcdefghij"
TIMEOUT_S = 2.0
"""Long enough for an answer on a loaded machine: a timeout that fires on an answer is a fault no test planned."""
HANG_TIMEOUT_S = 0.15
"""For calls whose every attempt hangs: a loaded machine only makes their timeout more certain."""
MAX_TOKENS = 64
"""Short answers: litellm spends a few milliseconds of CPU on every streamed chunk."""
FINISHED = {"stop", "length"}
"""The finish reasons of a complete answer (a short max_tokens makes most of them 'length')."""

DIAGNOSES: dict[FaultKind, tuple[str, bool]] = {
    "rate_limit": ("http_429", True),
    "rate_limit_date": ("http_429", True),
    "rate_limit_ms": ("http_429", True),
    "quota": ("quota_exhausted", False),
    "server_error": ("http_500", True),
    "unavailable": ("http_503", True),
    "overloaded": ("http_529", True),
    "hang": ("timeout", True),
    "reset": ("connection", True),
    "malformed": ("malformed", True),
    "cut": ("incomplete", True),
    "drop": ("connection", True),
    "empty_text": ("empty", True),
    "no_content": ("empty", True),
    "echo_key": ("auth", False),
    "echo_masked_key": ("auth", False),
}
"""What the client makes of each fault: the failure kind, and whether it is retried."""


STREAM_SENSITIVE: set[FaultKind] = {
    *("hang", "reset", "malformed", "cut", "drop", "empty_text", "no_content"),
    *("overloaded", "quota"),
}
"""Faults also tried on streamed calls: those whose body or transport differs when streamed, and two error statuses
(the other statuses reach litellm exactly as they do unstreamed)."""


def _cases(kinds: Iterable[FaultKind]) -> list[Any]:
    return [
        pytest.param(kind, route, stream, id=f"{kind}-{route}-{'streamed' if stream else 'whole'}")
        for kind in kinds
        for route in ROUTES
        for stream in ((False, True) if kind in STREAM_SENSITIVE else (False,))
    ]


def _diagnosis(kind: FaultKind, route: Route, stream: bool) -> tuple[str, bool]:
    if (kind, route, stream) == ("malformed", "anthropic", True):
        # litellm's Anthropic stream reader drops an event it cannot parse, then finds no stop reason.
        return "incomplete", True
    return DIAGNOSES[kind]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SENTINEL)


@pytest.fixture
def question(request: pytest.FixtureRequest) -> str:
    """A question no other test asks, so each test finds its own requests in the shared simulator's log."""
    return f"[{request.node.name}] How does binary search work?"


@pytest.fixture
def faults(sim: SimulatorServer) -> Iterator[Callable[[FaultPlan], SimulatorServer]]:
    def install(plan: FaultPlan) -> SimulatorServer:
        sim.hook = plan.hook()
        return sim

    yield install
    sim.hook = None


@dataclass
class FakeClock:
    """Time that passes only when told: by the waits the client sleeps, or by a test."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """A client whose waits and retries are recorded; waits are not slept unless `real_sleep`."""

    client: Client
    sleeps: list[float] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)


def _harness(
    *,
    max_attempts: int = 3,
    max_wait_s: float = 10.0,
    max_total_s: float | None = None,
    concurrency: int = 4,
    timeout_s: float = TIMEOUT_S,
    real_sleep: bool = False,
    clock: FakeClock | None = None,
) -> Harness:
    """With a `clock`, the client's budgets tell time by it, and each wait advances it instead of being slept."""
    sleeps: list[float] = []
    retries: list[str] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)
        if clock is not None:
            clock.now += seconds
            await asyncio.sleep(0)
        elif real_sleep:
            await asyncio.sleep(seconds)

    client = Client(
        concurrency=concurrency,
        timeout_s=timeout_s,
        max_attempts=max_attempts,
        max_wait_s=max_wait_s,
        max_total_s=max_total_s,
        on_retry=retries.append,
        sleep=record,
        clock=clock or time.monotonic,
    )
    return Harness(client, sleeps, retries)


def _endpoint(sim: SimulatorServer, route: Route, model: str = MODEL) -> Endpoint:
    api_base = f"{sim.url}/v1" if route == "openai" else sim.url
    return Endpoint(model=f"{route}/{model}", api_base=api_base, api_key_env=KEY_ENV)


def _params(stream: bool) -> dict[str, Any]:
    return {"max_tokens": MAX_TOKENS, "stream": True} if stream else {"max_tokens": MAX_TOKENS}


async def _ask(harness: Harness, sim: SimulatorServer, route: Route, question: str, stream: bool = False) -> Any:
    return await harness.client.complete(_endpoint(sim, route), (Message("user", question),), _params(stream))


async def _fail(
    harness: Harness, sim: SimulatorServer, route: Route, question: str, stream: bool = False
) -> CallFailed:
    with pytest.raises(CallFailed) as failed:
        await _ask(harness, sim, route, question, stream)
    return failed.value


LOG_WAIT_S = 30.0
"""How long requests that were made may take to be logged: a loaded machine can take seconds."""
EXTRA_WAIT_S = 3.0
"""How long to watch for a request that should not have been made."""


async def _log_of(
    sim: SimulatorServer, question: str, count: int, prefix: bool = False, wait_s: float = LOG_WAIT_S
) -> list[RequestRecord]:
    """The question's requests (or those of questions starting with it) once `count` are logged, or after `wait_s`.

    A hung request is logged only when the hook sees its client go, a little after the client gave up. To check
    that no more than N requests were made, ask for N + 1 with `wait_s=EXTRA_WAIT_S`.
    """
    deadline = time.monotonic() + wait_s
    while True:
        records = [
            r
            for r in sim.requests
            if r.messages
            and (r.messages[-1].content.startswith(question) if prefix else r.messages[-1].content == question)
        ]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module", autouse=True)
def _warm(sim: SimulatorServer) -> None:
    """One call per route first: litellm's first call sets itself up for longer than the tests' timeouts."""

    async def warm() -> None:
        client = Client(concurrency=1, timeout_s=30, max_attempts=1, max_wait_s=1)
        for route in ROUTES:
            keyed = _endpoint(sim, route)
            keyless = Endpoint(keyed.model, keyed.api_base, api_key_env=None)
            await client.complete(keyless, (Message("user", "warm-up"),), {"max_tokens": 10})

    asyncio.run(warm())


# --- every fault, both routes, streamed or not ----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "route", "stream"), _cases(FAULT_KINDS))
async def test_every_fault_is_diagnosed_and_retried_or_not(
    faults: Callable[[FaultPlan], SimulatorServer], question: str, kind: FaultKind, route: Route, stream: bool
) -> None:
    sim = faults(FaultPlan([Fault(kind)], retry_after_s=2, hang_s=10))
    harness = _harness(max_attempts=2, timeout_s=HANG_TIMEOUT_S if kind == "hang" else TIMEOUT_S)
    failure = await _fail(harness, sim, route, question, stream)
    expected_kind, retried = _diagnosis(kind, route, stream)
    assert (failure.kind, failure.attempts) == (expected_kind, 2 if retried else 1), failure.message
    assert harness.retries == [expected_kind] * (failure.attempts - 1)
    records = await _log_of(sim, question, failure.attempts)
    assert len(records) == failure.attempts
    assert not any(r.billed for r in records)


@pytest.mark.parametrize(("kind", "route", "stream"), _cases([k for k in FAULT_KINDS if DIAGNOSES[k][1]]))
async def test_a_transient_fault_then_the_answer(
    faults: Callable[[FaultPlan], SimulatorServer], question: str, kind: FaultKind, route: Route, stream: bool
) -> None:
    sim = faults(FaultPlan([Fault(kind, first=1)], retry_after_s=2, hang_s=10))
    harness = _harness()
    completion = await _ask(harness, sim, route, question, stream)
    assert completion.text
    assert completion.finish_reason in FINISHED
    assert completion.output_tokens > 0
    assert harness.retries == [_diagnosis(kind, route, stream)[0]]
    records = await _log_of(sim, question, 2)
    assert sorted(r.billed for r in records) == [False, True]


@pytest.mark.parametrize("route", ROUTES)
async def test_a_streamed_answer_is_assembled_with_its_usage(sim: SimulatorServer, question: str, route: Route) -> None:
    streamed = await _ask(_harness(), sim, route, question, stream=True)
    whole = await _ask(_harness(), sim, route, question)
    assert streamed == type(whole)(**{**vars(whole), "latency_s": streamed.latency_s})
    assert streamed.input_tokens > 0
    assert streamed.output_tokens > 0
    assert [r.stream for r in await _log_of(sim, question, 2)] == [True, False]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("kind", ["cut", "empty_text"])
async def test_litellm_fills_in_a_missing_finish_reason(
    faults: Callable[[FaultPlan], SimulatorServer], question: str, kind: FaultKind, route: Route
) -> None:
    """Measured on litellm 1.110.2: why the client reads the raw body before believing `finish_reason`."""
    import litellm

    sim = faults(FaultPlan([Fault(kind)]))
    endpoint = _endpoint(sim, route)
    response = await litellm.acompletion(
        model=endpoint.model,
        messages=[{"role": "user", "content": question}],
        api_base=endpoint.api_base,
        api_key=SENTINEL,
        max_tokens=MAX_TOKENS,
        num_retries=0,
        max_retries=0,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop"  # the body said null (cut) or a real stop (empty_text)
    if kind == "cut":
        assert choice.message.content
    else:
        assert choice.message.content == ("" if route == "openai" else None)


# --- fail fast ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (400, "bad parameter", "bad_request"),
        (400, "This model's maximum context length is 8192 tokens", "context_length"),
        (401, "invalid x-api-key", "auth"),
        (403, "forbidden", "forbidden"),
        (404, "no such model", "not_found"),
        (422, "unprocessable", "bad_request"),
    ],
)
async def test_client_errors_fail_at_once(
    sim: SimulatorServer, question: str, route: Route, status: int, message: str, kind: str
) -> None:
    async def refuse(request: SimRequest) -> web.StreamResponse:
        return error_response(request.api, status, "invalid_request_error", message)

    sim.hook = refuse
    try:
        failure = await _fail(_harness(), sim, route, question)
    finally:
        sim.hook = None
    assert (failure.kind, failure.attempts) == (kind, 1)


async def test_an_unknown_model_fails_at_once(sim: SimulatorServer, question: str) -> None:
    harness = _harness()
    endpoint = _endpoint(sim, "openai", model="no-such-model")
    with pytest.raises(CallFailed) as failed:
        await harness.client.complete(endpoint, (Message("user", question),), {})
    assert (failed.value.kind, failed.value.attempts) == ("not_found", 1)


async def _failed(harness: Harness, endpoint: Endpoint, question: str) -> CallFailed:
    with pytest.raises(CallFailed) as failed:
        await harness.client.complete(endpoint, (Message("user", question),), {})
    return failed.value


def _stop_notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "judge_arena.client" and r.levelname == "WARNING"]


@pytest.mark.parametrize("route", ROUTES)
async def test_an_unknown_model_is_stopped_after_three_calls_and_said_once(
    sim: SimulatorServer, question: str, route: Route, caplog: pytest.LogCaptureFixture
) -> None:
    harness = _harness()
    endpoint = replace(_endpoint(sim, route, model="no-such-model"), name="ghost")
    failures = [await _failed(harness, endpoint, f"{question} {i}") for i in range(6)]
    assert [(f.kind, f.attempts) for f in failures] == [("not_found", 1)] * 3 + [("stopped", 0)] * 3
    reason = failures[3].message
    assert all(f.message == reason for f in failures[3:])
    assert f"ghost (openai/no-such-model at {endpoint.api_base})".replace("openai", route) in reason
    assert "not_found" in reason
    assert "no-such-model" in reason.split("The server said:")[1]
    assert _stop_notices(caplog) == [reason]
    assert len(await _log_of(sim, question, 4, prefix=True, wait_s=EXTRA_WAIT_S)) == 3
    assert harness.client.stopped(endpoint) == reason
    # Another model on the same server is still called.
    assert (await _ask(harness, sim, route, question)).text


async def test_calls_queued_for_an_endpoint_when_it_is_stopped_are_not_made(
    sim: SimulatorServer, question: str
) -> None:
    harness = _harness(concurrency=1)
    endpoint = _endpoint(sim, "openai", model="no-such-model")
    outcomes = await asyncio.gather(
        *(harness.client.complete(endpoint, (Message("user", f"{question} {i}"),), {}) for i in range(8)),
        return_exceptions=True,
    )
    kinds = [o.kind if isinstance(o, CallFailed) else o for o in outcomes]
    assert kinds == ["not_found"] * 3 + ["stopped"] * 5
    assert len(await _log_of(sim, question, 4, prefix=True, wait_s=EXTRA_WAIT_S)) == 3


@pytest.mark.parametrize("stop_after", [3, None], ids=["stopped", "never-stopped"])
def test_a_run_stops_calling_a_model_the_server_does_not_know_and_records_every_call_not_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stop_after: int | None
) -> None:
    prompts = 12
    config = {
        "name": "fail-fast",
        "suites": [{"path": str(ROOT / "judge_arena/data/suites/core.jsonl"), "limit": prompts}],
        "candidates": [
            {"name": name, "model": f"openai/{model}", "api_base": "simulator"}
            for name, model in [("real", "sim-strong-plain"), ("ghost", "sim-no-such"), ("terse", MODEL)]
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator", "template": TEMPLATE}],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "concurrency": 2, "stop_after_failures": stop_after},
    }
    (tmp_path / "arena.yaml").write_text(yaml.safe_dump(config))
    with SimulatorServer() as sim:
        run = asyncio.run(play_arena(load_inputs(load_config(tmp_path / "arena.yaml")), simulator_url=sim.url))
        asked = sum(r.model == "sim-no-such" for r in sim.requests)
        url = f"{sim.url}/v1"
    ghost = [f for f in run.failures if f.item.startswith("ghost ×")]
    assert len(ghost) == prompts  # every answer not made is a failure with its reason, none dropped
    assert {a.model for a in run.answers} == {"real", "terse"}
    assert len(run.battles) == 2 * 2 * prompts
    assert len(run.failures) == prompts
    kinds = Counter(f.reason.split(":")[0] for f in ghost)
    if stop_after is None:
        assert (asked, kinds, _stop_notices(caplog)) == (prompts, {"not_found": prompts}, [])
        return
    assert 3 <= asked <= 3 + 2  # what was in flight when the third failure came back
    assert kinds == {"not_found": asked, "stopped": prompts - asked}
    (notice,) = _stop_notices(caplog)
    assert notice.startswith(f"ghost (openai/sim-no-such at {url}) stopped after 3 calls in a row")
    assert "does not exist" in notice


async def test_a_refused_connection_is_retried_then_the_endpoint_stopped(
    sim: SimulatorServer, question: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    harness = _harness(max_attempts=2)
    nowhere = Endpoint(f"openai/{MODEL}", f"http://127.0.0.1:{port}/v1", api_key_env=None, name="nowhere")
    failures = [await _failed(harness, nowhere, question) for _ in range(4)]
    assert [(f.kind, f.attempts) for f in failures] == [("unreachable", 2)] * 3 + [("stopped", 0)]
    assert harness.retries == ["unreachable"] * 3
    assert _stop_notices(caplog) == [failures[3].message]
    assert f"127.0.0.1:{port}" in failures[3].message


async def test_only_failures_in_a_row_of_one_persistent_kind_stop_an_endpoint(
    sim: SimulatorServer, question: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse(request: SimRequest) -> web.StreamResponse | None:
        said = request.messages[-1].content
        if "auth" in said:
            return error_response(request.api, 401, "invalid_request_error", "invalid key")
        if "gone" in said:
            return error_response(request.api, 403, "permission_error", "forbidden")
        if "busy" in said:
            return error_response(request.api, 500, "server_error", "busy")
        return None

    harness = _harness(max_attempts=1)
    endpoint = _endpoint(sim, "openai")
    sim.hook = refuse
    try:
        kinds = []
        for i, what in enumerate(["auth", "auth", "ok", "auth", "auth", "gone", "auth", "busy", "busy", "busy"]):
            try:
                await harness.client.complete(endpoint, (Message("user", f"{question} {what} {i}"),), {})
                kinds.append("ok")
            except CallFailed as failure:
                kinds.append(failure.kind)
    finally:
        sim.hook = None
    assert kinds == ["auth", "auth", "ok", "auth", "auth", "forbidden", "auth"] + ["http_500"] * 3
    assert harness.client.stopped(endpoint) is None
    assert _stop_notices(caplog) == []


# --- Retry-After ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("kind", "retry_after_s", "max_wait_s", "waits"),
    [
        ("rate_limit", 2.0, 10.0, (2.0, 2.0)),
        ("rate_limit", 2.0, 0.5, (0.5, 0.5)),
        # Whole seconds, read some time after they were written: above the first retry's backoff (≤ 0.5 s) is
        # what shows the date was read.
        ("rate_limit_date", 3.0, 10.0, (0.6, 4.0)),
        ("rate_limit_date", 3.0, 0.5, (0.5, 0.5)),
        ("rate_limit_ms", 0.25, 10.0, (0.25, 0.25)),  # Retry-After says 1 s; retry-after-ms is the precise one
    ],
)
async def test_retry_after_is_honoured_within_max_wait(
    faults: Callable[[FaultPlan], SimulatorServer],
    question: str,
    route: Route,
    kind: FaultKind,
    retry_after_s: float,
    max_wait_s: float,
    waits: tuple[float, float],
) -> None:
    sim = faults(FaultPlan([Fault(kind, first=1)], retry_after_s=retry_after_s))
    harness = _harness(max_wait_s=max_wait_s)
    await _ask(harness, sim, route, question)
    assert len(harness.sleeps) == 1
    assert waits[0] <= harness.sleeps[0] <= waits[1]


@pytest.mark.parametrize("route", ROUTES)
async def test_an_unreadable_retry_after_falls_back_to_backoff(
    sim: SimulatorServer, question: str, route: Route
) -> None:
    first = True

    async def garbled(request: SimRequest) -> web.StreamResponse | None:
        nonlocal first
        if not first:
            return None
        first = False
        response = error_response(request.api, 503, "service_unavailable", "busy")
        response.headers["Retry-After"] = "when pigs fly"
        return response

    sim.hook = garbled
    harness = _harness(max_wait_s=0.3)
    try:
        await _ask(harness, sim, route, question)
    finally:
        sim.hook = None
    assert len(harness.sleeps) == 1
    assert 0 <= harness.sleeps[0] <= 0.3


# --- the total time cap ---------------------------------------------------------------------------------------


async def test_max_total_s_caps_attempts_and_waits(
    faults: Callable[[FaultPlan], SimulatorServer], question: str
) -> None:
    sim = faults(FaultPlan([Fault("rate_limit")], retry_after_s=10))
    # Waits of 10 s on a fake clock: after three (30 s), a fourth would end past the 35 s budget.
    harness = _harness(max_attempts=20, max_total_s=35, clock=FakeClock())
    failure = await _fail(harness, sim, "openai", question)
    assert (failure.kind, failure.attempts, harness.sleeps) == ("http_429", 4, [10.0] * 3)


async def test_a_hung_attempt_ends_with_the_calls_budget(
    faults: Callable[[FaultPlan], SimulatorServer], question: str
) -> None:
    """The attempt is cut when the budget is spent, though its request timeout is far away; no attempt follows."""
    # Uncut, the attempt would last until the server gives up on it: a 504 after hang_s, not a timeout.
    sim = faults(FaultPlan([Fault("hang")], hang_s=10))
    harness = _harness(max_attempts=20, max_total_s=0.5, timeout_s=20)
    failure = await _fail(harness, sim, "anthropic", question)
    assert (failure.kind, failure.attempts, harness.sleeps) == ("timeout", 1, [])


async def test_a_wait_past_the_budget_is_not_waited(
    faults: Callable[[FaultPlan], SimulatorServer], question: str
) -> None:
    sim = faults(FaultPlan([Fault("rate_limit")], retry_after_s=5))
    harness = _harness(max_attempts=5, max_total_s=2.0)
    failure = await _fail(harness, sim, "openai", question)
    assert (failure.kind, failure.attempts, harness.sleeps) == ("http_429", 1, [])


async def test_time_queued_for_the_endpoint_is_not_spent_from_the_budget(sim: SimulatorServer, question: str) -> None:
    clock = FakeClock()
    injector = FaultPlan([Fault("server_error", first=1, model="sim-mid-plain")]).hook()

    async def slow(request: SimRequest) -> web.StreamResponse | None:
        if request.model == MODEL:
            clock.now += 100.0  # the first call takes 100 s while the second one waits for the endpoint
        return await injector(request)

    sim.hook = slow
    # One request at a time: the second call's first attempt fails 100 s after it was made, far past its budget of
    # 10 s, though its own attempts take no time. Counted from the call, it would fail.
    harness = _harness(concurrency=1, max_wait_s=0.01, max_total_s=10, clock=clock)
    first, second = (_endpoint(sim, "openai", model) for model in (MODEL, "sim-mid-plain"))
    try:
        answers = await asyncio.gather(
            *(harness.client.complete(e, (Message("user", question),), {}) for e in (first, second))
        )
    finally:
        sim.hook = None
    assert all(a.text for a in answers)
    assert harness.retries == ["http_500"]


# --- receipts -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("route", ROUTES)
async def test_an_answer_kept_on_arrival_is_recovered_with_no_request(
    sim: SimulatorServer, question: str, route: Route, stream: bool
) -> None:
    receipts: list[Receipt] = []
    endpoint, messages = _endpoint(sim, route), (Message("user", question),)
    answered = await _harness().client.complete(endpoint, messages, _params(stream), on_receipt=receipts.append)
    assert len(receipts) == 1
    receipt = receipts[0]
    assert receipt.content_type.startswith("text/event-stream" if stream else "application/json")
    assert 0 < receipt.latency_s <= answered.latency_s

    fresh = _harness().client  # as in a process started after the one that received the answer died
    recovered = await fresh.recover(endpoint, messages, _params(stream), receipt)
    assert recovered == replace(answered, latency_s=receipt.latency_s)
    assert len(await _log_of(sim, question, 2, wait_s=EXTRA_WAIT_S)) == 1, "the recovery asked the simulator"


async def test_a_route_litellm_serves_itself_recovers_nothing(sim: SimulatorServer, question: str) -> None:
    """On a route under litellm's own HTTP stack, a replay would be a real (paid) request: it is not attempted."""
    receipts: list[Receipt] = []
    messages = (Message("user", question),)
    await _harness().client.complete(_endpoint(sim, "openai"), messages, _params(False), on_receipt=receipts.append)
    elsewhere = Endpoint(f"hosted_vllm/{MODEL}", f"{sim.url}/v1", api_key_env=None)
    assert await _harness().client.recover(elsewhere, messages, _params(False), receipts[0]) is None
    assert len(await _log_of(sim, question, 2, wait_s=EXTRA_WAIT_S)) == 1


@pytest.mark.parametrize("route", ROUTES)
async def test_an_answer_is_written_down_while_the_event_loop_is_busy(
    sim: SimulatorServer, question: str, route: Route
) -> None:
    """Answers are read on the client's I/O thread: one arriving while the run's loop is busy (parsing, rendering)
    is written down at once, not when the loop comes round to it."""
    asked, blocked, received = threading.Event(), threading.Event(), threading.Event()

    async def held(request: SimRequest) -> None:
        asked.set()
        while not blocked.is_set():  # answered (and billed) as usual once the run's loop is blocked
            await asyncio.sleep(0.01)

    sim.hook = held
    try:
        call = asyncio.create_task(
            _harness().client.complete(
                _endpoint(sim, route), (Message("user", question),), _params(False), on_receipt=lambda _: received.set()
            )
        )
        while not asked.is_set():
            await asyncio.sleep(0.01)
        blocked.set()
        # The event loop is blocked here: an answer written down on it could never arrive while it waits.
        arrived = received.wait(timeout=60)
        answered = await call
    finally:
        sim.hook = None
    assert arrived
    assert answered.text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("kind", "kept"), [("malformed", True), ("cut", True), ("server_error", False)])
async def test_an_unusable_answer_is_kept_but_not_recovered(
    faults: Callable[[FaultPlan], SimulatorServer], question: str, route: Route, kind: FaultKind, kept: bool
) -> None:
    """The receipt is taken before parsing, so a 200 with a broken body is kept too; only errors are not."""
    sim = faults(FaultPlan([Fault(kind)]))
    receipts: list[Receipt] = []
    endpoint, messages = _endpoint(sim, route), (Message("user", question),)
    failure = await _fail_with(_harness(max_attempts=1), endpoint, messages, receipts.append)
    assert failure.kind == DIAGNOSES[kind][0]
    assert len(receipts) == (1 if kept else 0)
    for receipt in receipts:
        assert await _harness().client.recover(endpoint, messages, _params(False), receipt) is None
    assert len(await _log_of(sim, question, 2, wait_s=EXTRA_WAIT_S)) == 1


async def _fail_with(
    harness: Harness, endpoint: Endpoint, messages: tuple[Message, ...], on_receipt: Callable[[Receipt], None]
) -> CallFailed:
    with pytest.raises(CallFailed) as failed:
        await harness.client.complete(endpoint, messages, _params(False), on_receipt=on_receipt)
    return failed.value


# --- secrets --------------------------------------------------------------------------------------------------


def _echo(repeats: int, status: int) -> Callable[[SimRequest], Awaitable[web.StreamResponse]]:
    async def echo(request: SimRequest) -> web.StreamResponse:
        sent = request.http.headers.get("x-api-key") or request.http.headers["Authorization"].removeprefix("Bearer ")
        masked = f"{sent[:8]}***{sent[-4:]}"
        message = "; ".join([f"Incorrect API key provided: {sent} (shown as {masked})"] * repeats)
        return error_response(request.api, status, "invalid_request_error", message)

    return echo


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("repeats", "status"),
    [(1, 401), (12, 401), (1, 500)],
    ids=["auth", "echoed-past-the-cut", "retried"],
)
async def test_an_echoed_key_never_leaks(
    sim: SimulatorServer,
    question: str,
    route: Route,
    stream: bool,
    repeats: int,
    status: int,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.hook = _echo(repeats, status)
    try:
        failure = await _fail(_harness(), sim, route, question, stream)
    finally:
        sim.hook = None
    assert failure.kind == ("auth" if status == 401 else "http_500")
    assert "[redacted]" in failure.message or "REDACTED" in failure.message
    out, err = capfd.readouterr()
    for text in (str(failure), repr(failure), failure.message, caplog.text, out, err):
        assert "sk-sentinel" not in text
        assert SENTINEL[-12:] not in text
    # No link back to the exception that quoted the key, for a traceback to print.
    assert failure.__cause__ is None
    assert failure.__context__ is None


async def test_the_faults_echo_is_redacted_too(faults: Callable[[FaultPlan], SimulatorServer], question: str) -> None:
    sim = faults(FaultPlan([Fault("echo_key")]))
    failure = await _fail(_harness(), sim, "openai", question)
    assert failure.kind == "auth"
    assert "Incorrect API key provided: [redacted]" in failure.message
    assert SENTINEL not in str(failure)


# --- mixed faults ---------------------------------------------------------------------------------------------


@functools.cache
def _mocked_http(path: str) -> web.Request:
    return make_mocked_request("POST", path)


def _predicted(plan: FaultPlan, route: Route, stream: bool, question: str, max_attempts: int) -> tuple[str | None, int]:
    """What the plan makes of one call: the failure kind (None: answered) and the number of requests."""
    request = SimRequest(
        api=route,
        http=_mocked_http(PATHS[route]),
        model=MODEL,
        body={},
        messages=(ChatMessage("user", question),),
        stream=stream,
        reply=Reply(id="", text="", finish="stop", input_tokens=0, output_tokens=0),
    )
    for n in range(max_attempts):
        fault = plan.choose(request, n)
        if fault is None:
            return None, n + 1
        kind, retried = _diagnosis(fault, route, stream)
        if not retried or n + 1 == max_attempts:
            return kind, n + 1
    raise AssertionError("max_attempts must be ≥ 1")


async def test_mixed_faults_every_call_answered_or_failed_and_paid_once(
    faults: Callable[[FaultPlan], SimulatorServer], question: str
) -> None:
    plan = FaultPlan([Fault(kind, rate=0.3 / len(FAULT_KINDS)) for kind in FAULT_KINDS], seed=2024, hang_s=10)
    sim = faults(plan)
    # The long timeout matters here: 16 calls at once keep the event loop busy, and a timeout that fires on an answer
    # already sent would be a fault the plan did not make (and a second bill, which the test would catch).
    harness = _harness(max_attempts=4, max_wait_s=0.01, concurrency=16, real_sleep=True)
    # Streamed calls cost litellm ten times the CPU of whole ones: one in ten keeps the test fast.
    calls = [(route, i % 10 == 0, f"{question} #{i} {route}") for i in range(100) for route in ROUTES]

    async def call(route: Route, stream: bool, text: str) -> Any:
        try:
            return await _ask(harness, sim, route, text, stream)
        except CallFailed as failure:
            return failure

    outcomes = await asyncio.gather(*(call(*c) for c in calls))
    predicted = [_predicted(plan, route, stream, text, 4) for route, stream, text in calls]
    log = await _log_of(sim, question, sum(count for _, count in predicted), prefix=True)
    faulted = sum(not r.billed for r in log) / len(log)
    assert 0.2 < faulted < 0.4
    for (route, stream, text), outcome, (kind, count) in zip(calls, outcomes, predicted, strict=True):
        records = [r for r in log if r.messages[-1].content == text]
        assert len(records) == count, (route, stream, text)
        if isinstance(outcome, CallFailed):
            assert (outcome.kind, outcome.attempts) == (kind, count)
            assert outcome.message
            assert not any(r.billed for r in records)
        else:
            assert kind is None
            assert outcome.text
            assert outcome.finish_reason in FINISHED
            assert sum(r.billed for r in records) == 1
    failed = sum(isinstance(o, CallFailed) for o in outcomes)
    assert 0 < failed < len(calls) // 10


# --- validate --ping ------------------------------------------------------------------------------------------


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """One line per model, however long, on the CLI's console."""
    monkeypatch.setenv("COLUMNS", "300")


def _ping_config(folder: Path, sim: SimulatorServer, extra: list[dict[str, Any]]) -> Path:
    config = {
        "name": "ping",
        "suites": [{"path": str(ROOT / "judge_arena/data/suites/core.jsonl"), "limit": 2}],
        "candidates": [
            {"name": "plain", "model": "openai/sim-strong-plain", "api_base": f"{sim.url}/v1"},
            {"name": "markdown", "model": "anthropic/sim-strong-markdown", "api_base": sim.url},
            *extra,
        ],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": f"{sim.url}/v1", "template": TEMPLATE}],
        "runner": {"cache_dir": "cache", "output_dir": "runs", "timeout_s": 30},
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_validate_ping_calls_each_model_once_and_reports_each(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str], wide: None
) -> None:
    from judge_arena.cli import main

    before = len(sim.requests)
    assert main(["validate", "--ping", str(_ping_config(tmp_path, sim, []))]) == 0
    # The config's line and one per model; the cost estimate's table between them is not the ping's.
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("ok ", "fail "))]
    assert len(lines) == 4
    assert lines[0].startswith("ok ")
    for line, name in zip(lines[1:], ["plain", "markdown", "judge"], strict=True):
        assert re.fullmatch(rf"ok +{name} \(.+ at http://127\.0\.0\.1:\d+(/v1)?\): \d+\.\d\d s", line), line
    assert sorted(r.model for r in sim.requests[before:]) == ["sim-judge", "sim-strong-markdown", "sim-strong-plain"]
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "runs").exists()


def test_validate_ping_names_each_model_that_fails_and_exits_1(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str], wide: None
) -> None:
    from judge_arena.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broken = [
        {"name": "ghost", "model": "openai/sim-no-such", "api_base": f"{sim.url}/v1"},
        {"name": "nowhere", "model": "openai/sim-judge", "api_base": f"http://127.0.0.1:{port}/v1"},
    ]
    assert main(["validate", "--ping", str(_ping_config(tmp_path, sim, broken))]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("ok ", "fail "))]
    assert [line.split()[0] for line in lines] == ["ok", "ok", "ok", "fail", "fail", "ok"]
    assert "ghost (openai/sim-no-such" in lines[3]
    assert "not_found:" in lines[3]
    assert "does not exist" in lines[3]
    assert f"nowhere (openai/sim-judge at http://127.0.0.1:{port}/v1): unreachable:" in lines[4]


def test_validate_without_ping_calls_nothing(
    tmp_path: Path, sim: SimulatorServer, capsys: pytest.CaptureFixture[str], wide: None
) -> None:
    from judge_arena.cli import main

    before = len(sim.requests)
    assert main(["validate", str(_ping_config(tmp_path, sim, []))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok ")
    assert "estimate of the calls to make" in out
    assert len(sim.requests) == before
