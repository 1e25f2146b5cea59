"""Cache keys and cache-first calls: any change misses, failures are never served, identical calls share one."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from judge_arena.client import CallFailed, Client, Endpoint, Gate
from judge_arena.config import ModelConfig
from judge_arena.limiter import AdaptiveConcurrency, RateLimiter
from judge_arena.records import Message
from judge_arena.runner import CallRunner, CallStats
from judge_arena.sim import SimulatorServer
from judge_arena.store import CallKey, Completion, Receipt, Store, call_key

MESSAGES = (Message("system", "You judge."), Message("user", "Which is better?"))
BASE_KEY = CallKey(model="openai/m", api_base=None, params=(("temperature", 0.0),), messages=MESSAGES)


@pytest.mark.parametrize(
    "changed",
    [
        CallKey("openai/m2", None, (("temperature", 0.0),), MESSAGES),
        CallKey("anthropic/m", None, (("temperature", 0.0),), MESSAGES),
        CallKey("openai/m", "http://localhost:8000/v1", (("temperature", 0.0),), MESSAGES),
        CallKey("openai/m", None, (("temperature", 0.7),), MESSAGES),
        CallKey("openai/m", None, (("temperature", 0.0), ("max_tokens", 10)), MESSAGES),
        CallKey("openai/m", None, (("temperature", 0.0),), (MESSAGES[0], Message("user", "Which is better? "))),
        CallKey("openai/m", None, (("temperature", 0.0),), (Message("system", "You judge!"), MESSAGES[1])),
        CallKey("openai/m", None, (("temperature", 0.0),), (Message("user", "You judge."), MESSAGES[1])),
        CallKey("openai/m", None, (("temperature", 0.0),), MESSAGES[1:]),
    ],
)
def test_any_change_gives_another_key(changed: CallKey) -> None:
    assert changed.digest != BASE_KEY.digest


def test_same_request_same_key() -> None:
    again = CallKey("openai/m", None, (("temperature", 0.0),), tuple(Message(m.role, m.content) for m in MESSAGES))
    assert again.digest == BASE_KEY.digest


_AWKWARD_TEXTS = [
    "".join(map(chr, range(0x20))) + '"\\/\x7f',  # every control character, quote, backslash, slash, DEL
    "naïve café — 東京 😀 \u2028\u2029 \ufeff",
    "",
    "lone surrogate \ud800 stays as json.dumps writes it",
    "x" * 20_000,
]


@pytest.mark.parametrize("text", _AWKWARD_TEXTS)
@pytest.mark.parametrize(
    ("api_base", "params", "revision"),
    [
        (None, (), None),
        ("http://h:1/v1", (("temperature", 1e-05), ("stop", ["\n", "é"]), ("extra", {"b": 1, "a": None})), "r 1"),
    ],
)
def test_the_canonical_json_is_json_dumps_of_the_request_with_sorted_keys(
    text: str, api_base: str | None, params: tuple[tuple[str, Any], ...], revision: str | None
) -> None:
    """What every cache written so far was keyed by: the fast path must write the same characters."""
    messages = (Message("system", text), Message("user", f"{text} and more"))
    key = CallKey(f"openai/{text[:10]}", api_base, params, messages, revision)
    request = {
        "model": key.model,
        "api_base": api_base,
        "params": dict(params),
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        **({} if revision is None else {"revision": revision}),
    }
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert key.canonical_json == canonical
    # Hashed as UTF-8; a lone surrogate, which UTF-8 cannot hold, as its three bytes rather than an error.
    assert key.digest == hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@pytest.mark.parametrize("values", [(0, 0.0), (1, True), (0, False), (1.0, True)])
def test_params_equal_in_value_but_written_differently_give_different_keys(values: tuple[Any, Any]) -> None:
    """The params' JSON is memoised: by how they are written, not by equality (0 == 0.0 == False)."""
    first, second = (CallKey("openai/m", None, (("temperature", value),), MESSAGES) for value in values)
    assert first.canonical_json != second.canonical_json
    for key in (first, second, first):
        params = dict(key.params)
        assert f'"params":{json.dumps(params, sort_keys=True, separators=(",", ":"))}' in key.canonical_json


def test_get_many_finds_committed_and_grouped_completions_in_one_call(tmp_path: Path) -> None:
    keys = [CallKey("openai/m", None, (("n", n),), MESSAGES) for n in range(1_203)]  # more than one query's worth
    with Store(tmp_path / "c.sqlite") as store:
        for n, key in enumerate(keys):
            if n % 3 == 0:
                continue
            if n % 3 == 1:
                store.put_receipt(key, Receipt("application/json", b"{}", 0.1))  # held for the group commit
            store.put(key, Completion(f"answer {n}", "stop", 1, 1, 0.1))
        assert store.grouped > 0
        found = store.get_many([key.digest for key in [*keys, keys[1]]])
        assert found == {
            key.digest: Completion(f"answer {n}", "stop", 1, 1, 0.1) for n, key in enumerate(keys) if n % 3
        }
        assert all(store.get(key) == found.get(key.digest) for key in keys[:30])


class _FakeClient:
    """Stands in for the network client: counts calls, fails while told to."""

    def __init__(self, failures: int = 0, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.failures = failures
        self.delay_s = delay_s
        self._gate = Gate(AdaptiveConcurrency(1), RateLimiter())

    async def complete(
        self,
        endpoint: Endpoint,
        messages: tuple[Message, ...],
        params: Mapping[str, Any],
        on_receipt: Callable[[Receipt], None] | None = None,
        on_billed: Callable[[int, int], None] | None = None,
    ) -> Completion:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.failures:
            self.failures -= 1
            raise CallFailed("http_503", "service unavailable", attempts=4)
        return Completion(f"reply to {messages[-1].content}", "stop", 5, 7, 0.01)

    async def recover(
        self, endpoint: Endpoint, messages: tuple[Message, ...], params: Mapping[str, Any], receipt: Receipt
    ) -> Completion | None:
        return None

    def gate(self, endpoint: Endpoint) -> Gate:
        return self._gate

    async def aclose(self) -> None:
        pass


MODEL = ModelConfig(name="m", model="openai/m", api_base="http://127.0.0.1:9/v1", params={"temperature": 0})


def _runner(store: Store, client: _FakeClient) -> CallRunner:
    return CallRunner(store, lambda _on_retry: client, simulator=None)


async def test_second_call_is_served_from_cache(tmp_path: Path) -> None:
    client = _FakeClient()
    with Store(tmp_path / "c.sqlite") as store:
        runner = _runner(store, client)
        first = await runner.complete(MODEL, MESSAGES)
        second = await runner.complete(MODEL, MESSAGES)
        assert first == second
        assert client.calls == 1
        # answered earlier in this run: shared within the run, not "from cache" (a fresh cache looked pre-filled)
        assert (runner.stats.made, runner.stats.shared, runner.stats.cached) == (1, 1, 0)
    with Store(tmp_path / "c.sqlite") as reopened:
        later = _runner(reopened, client)
        assert await later.complete(MODEL, MESSAGES) == first
        assert (later.stats.made, later.stats.shared, later.stats.cached) == (0, 0, 1)
    assert client.calls == 1


async def test_cached_requests_are_served_without_a_call_and_counted_as_complete_counts_them(tmp_path: Path) -> None:
    client = _FakeClient()
    other = (Message("user", "Not asked yet"),)
    with Store(tmp_path / "c.sqlite") as store:
        first = await _runner(store, client).complete(MODEL, MESSAGES)
        changes: list[CallStats] = []
        runner = CallRunner(
            store, lambda _on_retry: client, simulator=None, refresh=["refreshed"], on_change=changes.append
        )
        refreshed = MODEL.model_copy(update={"name": "refreshed"})
        digest, other_digest = call_key(MODEL, MESSAGES).digest, call_key(MODEL, other).digest
        served = await runner.cached([(MODEL, digest), (MODEL, other_digest), (MODEL, digest), (refreshed, digest)])
        assert len(changes) == 1  # the progress display is told once for the batch, not once per request served
        # Found in the cache (twice: counted twice, as two calls of `complete` would be); not cached; and a model
        # answering anew, whatever the cache holds, left to `complete`.
        assert served == [first, None, first, None]
        assert (runner.stats.cached, runner.stats.shared, runner.stats.made) == (2, 0, 0)
        assert runner.stats.by_model["m"].cached == 2
        assert sum(runner.stats.served_before["m"].values()) == 2
        assert await runner.complete(MODEL, other) == Completion("reply to Not asked yet", "stop", 5, 7, 0.01)
        # Stored by this run: served again, it is shared within the run.
        assert await runner.cached([(MODEL, other_digest)]) == [await runner.complete(MODEL, other)]
        assert (runner.stats.cached, runner.stats.shared, runner.stats.made) == (2, 2, 1)
    assert client.calls == 2


async def test_the_cached_requests_of_one_turn_of_the_event_loop_are_looked_up_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each judge item asks for its games' replies: asked in the same turn, they take one lookup, not one each."""
    client = _FakeClient()
    with Store(tmp_path / "c.sqlite") as store:
        runner = _runner(store, client)
        questions = [(Message("user", f"question {n}"),) for n in range(6)]
        answered = [await runner.complete(MODEL, question) for question in questions]
        lookups: list[int] = []
        get_many = store.get_many

        def counted(digests: Sequence[str]) -> dict[str, Completion]:
            lookups.append(len(digests))
            return get_many(digests)

        monkeypatch.setattr(store, "get_many", counted)
        served = await asyncio.gather(
            *(runner.cached([(MODEL, call_key(MODEL, question).digest)]) for question in questions)
        )
        assert served == [[completion] for completion in answered]
        assert lookups == [len(questions)]


async def test_changed_params_miss_the_cache(tmp_path: Path) -> None:
    client = _FakeClient()
    with Store(tmp_path / "c.sqlite") as store:
        runner = _runner(store, client)
        await runner.complete(MODEL, MESSAGES)
        await runner.complete(MODEL.model_copy(update={"params": {"temperature": 0.5}}), MESSAGES)
        await runner.complete(MODEL.model_copy(update={"api_base": "http://127.0.0.1:10/v1"}), MESSAGES)
    assert client.calls == 3


async def test_failures_are_recorded_not_cached(tmp_path: Path) -> None:
    client = _FakeClient(failures=1)
    with Store(tmp_path / "c.sqlite") as store:
        runner = _runner(store, client)
        with pytest.raises(CallFailed, match="http_503"):
            await runner.complete(MODEL, MESSAGES)
        assert store.count_completions() == 0
        assert store.count_failures() == 1
        assert runner.stats.failed == 1
        retried = await runner.complete(MODEL, MESSAGES)
        assert retried.text == "reply to Which is better?"
        assert client.calls == 2
        assert store.count_completions() == 1


async def test_identical_calls_in_flight_share_one_request(tmp_path: Path) -> None:
    client = _FakeClient(delay_s=0.05)
    with Store(tmp_path / "c.sqlite") as store:
        runner = _runner(store, client)
        results = await asyncio.gather(*(runner.complete(MODEL, MESSAGES) for _ in range(5)))
    assert len(set(results)) == 1
    assert client.calls == 1
    assert (runner.stats.made, runner.stats.shared, runner.stats.cached) == (1, 4, 0)


async def test_a_shared_failure_reaches_every_waiter(tmp_path: Path) -> None:
    client = _FakeClient(failures=1, delay_s=0.05)
    with Store(tmp_path / "c.sqlite") as store:
        runner = _runner(store, client)
        results = await asyncio.gather(*(runner.complete(MODEL, MESSAGES) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, CallFailed) for r in results)
    assert client.calls == 1


def test_claims_block_other_owners_until_released_or_dead(tmp_path: Path) -> None:
    with Store(tmp_path / "c.sqlite") as mine, Store(tmp_path / "c.sqlite") as other:
        assert mine.claim(BASE_KEY) == "claimed"
        assert mine.claim(BASE_KEY) == "claimed"  # re-claiming one's own call is fine
        assert other.claim(BASE_KEY) == "busy"
        mine.release(BASE_KEY)
        assert other.claim(BASE_KEY) == "claimed"
        other.put(BASE_KEY, Completion("done", "stop", 1, 1, 0.1))
        other.release(BASE_KEY)
        assert mine.claim(BASE_KEY) == "done"


def test_claims_made_together_are_those_made_one_at_a_time(tmp_path: Path) -> None:
    done, busy, free, again = (CallKey("openai/m", None, (("n", n),), MESSAGES) for n in range(4))
    left = Receipt("application/json", b"{}", 0.1)  # by a process that died before it stored the answers
    with Store(tmp_path / "c.sqlite") as mine, Store(tmp_path / "c.sqlite") as other:
        for answered in (done, again):
            mine.put(answered, Completion("done", "stop", 1, 1, 0.1))
        for received in (busy, free, again):
            other.put_receipt(received, left)
        assert other.claim(busy) == "claimed"
        claims = [(done, False), (busy, False), (free, False), (again, True), (free, False)]
        assert mine.claim_all(claims) == [
            ("done", None),
            ("busy", None),
            ("claimed", left),
            ("claimed", None),  # made again: the receipt is not used
            ("claimed", left),
        ]
        assert other.claim_all([(free, False), (again, True)]) == [("busy", None), ("busy", None)]
        assert mine.claim_all([]) == []


def test_more_claims_at_once_than_one_statement_takes(tmp_path: Path) -> None:
    keys = [CallKey("openai/m", None, (("n", n),), MESSAGES) for n in range(1200)]
    with Store(tmp_path / "c.sqlite") as mine, Store(tmp_path / "c.sqlite") as other:
        for key in keys[::3]:
            mine.put(key, Completion("done", "stop", 1, 1, 0.1))
        claims = mine.claim_all([(key, False) for key in keys])
        assert [claim for claim, _ in claims] == ["done" if n % 3 == 0 else "claimed" for n in range(1200)]
        assert [claim for claim, _ in other.claim_all([(key, True) for key in keys])] == [
            "claimed" if n % 3 == 0 else "busy" for n in range(1200)
        ]


@pytest.mark.parametrize("turns", range(5))
async def test_a_call_cancelled_while_claiming_leaves_no_claim(tmp_path: Path, turns: int) -> None:
    """Claims are made together at the end of the event loop's turn: a call cancelled at any point of that, its claim
    made or not, leaves none behind (another process could never make the call)."""
    key = CallKey(MODEL.model, MODEL.api_base, tuple(sorted(MODEL.params.items())), MESSAGES)
    with Store(tmp_path / "c.sqlite") as store, Store(tmp_path / "c.sqlite") as other:
        runner = _runner(store, _FakeClient(delay_s=60))
        call = asyncio.create_task(runner.complete(MODEL, MESSAGES))
        for _ in range(turns):
            await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert other.claim(key) == "claimed"


async def test_a_claim_that_fails_fails_its_call_unless_cancelled(tmp_path: Path) -> None:
    def locked(calls: object) -> list[Any]:
        raise sqlite3.OperationalError("database is locked")

    with Store(tmp_path / "c.sqlite") as store:
        store.claim_all = locked  # type: ignore[method-assign]
        runner = _runner(store, _FakeClient())
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await runner.complete(MODEL, MESSAGES)
        call = asyncio.create_task(runner.complete(MODEL, MESSAGES))
        for _ in range(2):  # the claims fail at the end of the first turn; the call is cancelled before it resumes
            await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


async def test_calls_started_together_release_every_claim(tmp_path: Path) -> None:
    questions = [(Message("user", f"question {n}"),) for n in range(20)]
    with Store(tmp_path / "c.sqlite") as store, Store(tmp_path / "c.sqlite") as other:
        runner = _runner(store, _FakeClient())
        answers = await asyncio.gather(*(runner.complete(MODEL, messages) for messages in questions))
        assert [answer.text for answer in answers] == [f"reply to question {n}" for n in range(20)]
        keys = [CallKey(MODEL.model, MODEL.api_base, (("temperature", 0),), messages) for messages in questions]
        assert other.claim_all([(key, True) for key in keys]) == [("claimed", None)] * 20


def test_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Store(tmp_path / "c.sqlite") as store:
        store._db.execute(
            "INSERT INTO claims VALUES (?, ?, ?, ?, ?)",
            (BASE_KEY.digest, "killed-run", socket.gethostname(), int(dead.stdout), time.time()),
        )
        assert store.claim(BASE_KEY) == "claimed"
        store._db.execute(
            "UPDATE claims SET owner = 'live-run', pid = ? WHERE key = ?", (os.getppid(), BASE_KEY.digest)
        )
        assert store.claim(BASE_KEY) == "busy"


_CLAIMING_CHILD = """
import sys, time
from pathlib import Path
from judge_arena.records import Message
from judge_arena.store import CallKey, Store

store = Store(Path(sys.argv[1]))
messages = (Message("system", "You judge."), Message("user", "Which is better?"))
key = CallKey("openai/m", None, (("temperature", 0.0),), messages)
assert key.digest == sys.argv[2]
print(store.claim(key), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="a zombie is told apart through /proc")
def test_claim_of_a_killed_process_not_yet_reaped_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", _CLAIMING_CHILD, str(path), BASE_KEY.digest], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "claimed"
        os.kill(child.pid, signal.SIGKILL)
        # Deliberately not reaped: the child is a zombie, its pid still taken, until child.wait() below.
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            time.sleep(0.01)
        with Store(path) as store:
            assert store.claim(BASE_KEY) == "claimed"
    finally:
        child.kill()
        child.wait()


def test_a_receipt_is_kept_until_its_call_is_stored_or_failed(tmp_path: Path) -> None:
    receipt = Receipt("application/json", b'{"choices": []}', 0.25)
    other = CallKey("openai/m2", None, (), MESSAGES)
    with Store(tmp_path / "c.sqlite") as store:
        store.put_receipt(BASE_KEY, receipt)
        store.put_receipt(other, receipt)
        with Store(tmp_path / "c.sqlite") as another_process:
            assert another_process.receipt(BASE_KEY) == receipt
        store.put(BASE_KEY, Completion("done", "stop", 1, 1, 0.25))
        store.record_failure(other, "malformed", "not JSON", 1)
        assert store.receipt(other) is None
        assert store.get(other) is None
        # The completion waits for the group commit: its receipt keeps the answer until then.
        assert store.get(BASE_KEY) is not None
        assert store.receipt(BASE_KEY) == receipt
        store.flush()
        assert store.receipt(BASE_KEY) is None
        assert store.get(BASE_KEY) is not None


def test_completions_with_receipts_are_committed_in_one_group_with_their_claims_released(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    receipt = Receipt("application/json", b"{}", 0.1)
    kept = [CallKey("openai/m", None, (("n", n),), MESSAGES) for n in range(3)]
    unkept = CallKey("openai/m", None, (("n", 99),), MESSAGES)
    with Store(path) as store, Store(path) as another_process:
        for key in [*kept, unkept]:
            assert store.claim(key) == "claimed"
        for key in kept:
            store.put_receipt(key, receipt)
            store.put(key, Completion(f"answer {key.params}", "stop", 1, 1, 0.1))
            store.release(key)
        store.put(unkept, Completion("no receipt", "stop", 1, 1, 0.1))
        store.release(unkept)
        assert store.grouped == len(kept)
        # Without a receipt nothing else keeps the answer: committed at once, its claim dropped.
        assert another_process.get(unkept) is not None
        assert another_process.claim(unkept) == "done"
        # Grouped ones: not in the file yet, and still claimed, so the other process waits instead of paying.
        assert all(another_process.get(key) is None for key in kept)
        assert all(another_process.claim(key) == "busy" for key in kept)
        store.flush()
        assert store.grouped == 0
        assert [another_process.get(key) for key in kept] == [store.get(key) for key in kept]
        assert all(another_process.claim(key) == "done" for key in kept)
        assert all(another_process.receipt(key) is None for key in kept)


def test_closing_the_store_commits_the_grouped_completions(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Store(path) as store:
        store.put_receipt(BASE_KEY, Receipt("application/json", b"{}", 0.1))
        store.put(BASE_KEY, Completion("kept", "stop", 1, 1, 0.1))
    with Store(path) as reopened:
        assert reopened.get(BASE_KEY) == Completion("kept", "stop", 1, 1, 0.1)
        assert reopened.receipt(BASE_KEY) is None


async def test_an_answer_a_dead_process_received_is_recovered_not_paid_again(tmp_path: Path) -> None:
    def client(_on_retry: Callable[[str], None]) -> Client:
        return Client(concurrency=2, timeout_s=30, max_attempts=1, max_wait_s=1)

    with SimulatorServer() as sim:
        base = f"{sim.url}/v1"
        model = ModelConfig(name="m", model="openai/sim-good-terse", api_base=base, params={"max_tokens": 50})
        key = CallKey(model.model, model.api_base, tuple(sorted(model.params.items())), MESSAGES)
        receipts: list[Receipt] = []
        first = client(print)
        answered = await first.complete(Endpoint.of(model, None), MESSAGES, model.params, receipts.append)
        await first.aclose()
        with Store(tmp_path / "c.sqlite") as store:
            store.put_receipt(key, receipts[0])  # left behind by a process killed before it stored the answer
            runner = CallRunner(store, client, simulator=None)
            try:
                recovered = await runner.complete(model, MESSAGES)
            finally:
                await runner.aclose()
            assert recovered == replace(answered, latency_s=receipts[0].latency_s)
            assert (runner.stats.recovered, runner.stats.made, runner.stats.cached) == (1, 0, 0)
            assert store.get(key) == recovered
            assert store.receipt(key) is None
        assert sum(r.billed for r in sim.requests) == 1
