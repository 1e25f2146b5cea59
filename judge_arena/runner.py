"""Cache-first execution of model calls: look up the store, else call the model once and commit the result.

Identical requests within a run share one call (raw and plain views of an unformatted answer render the same judge
prompt, for instance): whether the first is still in flight or already stored, nothing is paid twice, and the
statistics count these as shared within the run, apart from answers found in the cache of an earlier run.

An answer is written down as a receipt the moment it arrives, before it is parsed; a run that finds the receipt of a
process killed before it stored the answer recovers the answer from it instead of paying for it again.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from judge_arena.budget import Budget, BudgetExceeded, Reservation
from judge_arena.client import CallFailed, Endpoint, ModelClient
from judge_arena.config import SIMULATOR, ModelConfig
from judge_arena.records import Message
from judge_arena.store import CallKey, Claim, Completion, Receipt, Served, Store, call_key

_CLAIM_POLL_S = 0.2
"""How often to look again at a call another process is making."""
_GROUP_COMMIT_S = 0.1
"""Completions grouped for one commit (`Store.put`) wait at most this long for it."""


@dataclass
class ModelCalls:
    """One model's share of the run's calls (retries are counted for the whole run only)."""

    made: int = 0
    cached: int = 0
    """Served without a call: cached, shared with an identical request, or recovered."""
    failed: int = 0
    input_tokens: int = 0
    """Of the calls made, as reported by the provider."""
    output_tokens: int = 0
    cost_usd: float = 0.0
    """Of the calls made, from their usage and the model's price (0 without a budget)."""


@dataclass
class CallStats:
    """What the run's calls did: served from cache, made and paid, failed, retried."""

    cached: int = 0
    """Served without a call from the cache as this run found it (an earlier run's, or another process's)."""
    shared: int = 0
    """Served without a call by an identical request of this run (in flight, or answered already)."""
    made: int = 0
    failed: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    """Retries by fault kind (http_429, timeout, …)."""
    recovered: int = 0
    """Answers a killed run had received but not stored, recovered from their receipts instead of paid again."""
    refused: int = 0
    """Calls not made because the budget was reached: neither failed nor cached."""
    max_usd: float | None = None
    """The run's budget in US dollars; None without one (and then no spend is estimated)."""
    spent_usd: float = 0.0
    """Cost of the calls made, from their reported usage and the models' prices (0 without a budget)."""
    by_model: dict[str, ModelCalls] = field(default_factory=dict)
    """The same counts per model name."""
    served_before: dict[str, Counter[Served]] = field(default_factory=dict)
    """Per model name, what the server had said it served for the completions this run found in the cache (served
    from it, or bypassed by a refresh)."""
    served_now: dict[str, Counter[Served]] = field(default_factory=dict)
    """Per model name, what the server says it serves: the completions received in this run (or recovered)."""

    @property
    def served(self) -> int:
        """Calls that have an answer without a call made in this run: cached, shared or recovered."""
        return self.cached + self.shared + self.recovered

    @property
    def total_retries(self) -> int:
        """All retries of the run."""
        return sum(self.retries.values())


_A = TypeVar("_A")
_R = TypeVar("_R")


class _PerTurn(Generic[_A, _R]):
    """Requests made in one turn of the event loop, answered together at its end: a stage starts its work at once
    (every item of a rerun, every call of a first run), so one store operation serves hundreds of requests.

    `answer` takes the requests in order and gives their results in order; what it raises, each request raises. A
    request whose caller was cancelled before the turn ended is not made (a claim nobody would release).
    """

    def __init__(self, answer: Callable[[list[_A]], list[_R]]) -> None:
        self._answer = answer
        self._asked: list[tuple[_A, asyncio.Future[_R]]] = []

    def __call__(self, request: _A) -> asyncio.Future[_R]:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[_R] = loop.create_future()
        if not self._asked:
            loop.call_soon(self._answer_all)
        self._asked.append((request, answered))
        return answered

    def _answer_all(self) -> None:
        asked = [(request, answered) for request, answered in self._asked if not answered.done()]
        self._asked.clear()
        try:
            results = self._answer([request for request, _ in asked])
        except Exception as error:
            for _, answered in asked:
                answered.set_exception(error)
            return
        for (_, answered), result in zip(asked, results, strict=True):
            answered.set_result(result)


class Interrupted(Exception):
    """A call not made because the run is stopping (`CallRunner.stop`): neither failed nor refused."""


class CallRunner:
    """Serves model calls from the store, or makes them through the client and stores the result."""

    def __init__(
        self,
        store: Store,
        client_factory: Callable[[Callable[[str], None]], ModelClient],
        simulator: Callable[[], str] | None,
        on_change: Callable[[CallStats], None] | None = None,
        budget: Budget | None = None,
        local_urls: Mapping[str, str] | None = None,
        refresh: Collection[str] = (),
    ) -> None:
        """`simulator` gives the simulator's URL (starting it the first time, see `arena.model_servers`) for the
        models routed to it. `refresh` names the models whose calls are made anew, once in this run each, instead
        of served from the cache (whose entries the new answers replace)."""
        self.stats = CallStats(max_usd=budget.max_usd if budget else None)
        self._budget = budget
        self._store = store
        self._client = client_factory(self._count_retry)
        self._simulator = simulator
        self._local_urls = local_urls
        self._refresh = frozenset(refresh)
        self._on_change = on_change
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}
        self._answered: set[str] = set()
        """Digests of the calls this run stored: a later identical request is shared, not from an earlier run."""
        self._look_up: _PerTurn[list[str], dict[str, Completion]] = _PerTurn(self._look_up_all)
        """The store's completions of some key digests, by digest: the `cached` requests of a turn looked up
        together."""
        self._stopping = False
        self._endpoints: dict[str, Endpoint] = {}
        """An endpoint of each limiter key this run has called, to close their gates when it stops."""
        self._calling = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._group_commit: asyncio.TimerHandle | None = None
        self._claim_one: _PerTurn[tuple[CallKey, bool], tuple[Claim, Receipt | None]] = _PerTurn(
            lambda calls: self._store.claim_all(calls)
        )
        """`Store.claim_all`: the claims of a turn (the key, and whether it is made again) made in one transaction."""

    def stop(self) -> None:
        """Make no new call from now on (each raises Interrupted): calls waiting for their endpoint are not sent;
        the calls in flight go on."""
        self._stopping = True
        for endpoint in self._endpoints.values():
            self._client.gate(endpoint).concurrency.close()

    async def idle(self) -> None:
        """Return once no call is in flight (after `stop`, once every call made has returned)."""
        await self._idle.wait()

    def _count_retry(self, kind: str) -> None:
        self.stats.retries[kind] += 1
        self._changed()

    def _of(self, model: ModelConfig) -> ModelCalls:
        calls = self.stats.by_model.get(model.name)
        if calls is None:  # not `setdefault`: it would build a ModelCalls on every call of the run
            calls = self.stats.by_model[model.name] = ModelCalls()
        return calls

    def _saw(self, seen: dict[str, Counter[Served]], model: ModelConfig, completion: Completion) -> None:
        served = seen.get(model.name)
        if served is None:
            served = seen[model.name] = Counter()
        served[completion.served] += 1

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.stats)

    async def complete(self, model: ModelConfig, messages: tuple[Message, ...]) -> Completion:
        """The completion of this request: cached, shared with an identical call in flight, or made now.

        A model named in `refresh` has its call made anew (once in this run), whatever the cache holds.

        Raises:
            CallFailed: The call failed for good (recorded in the store).
            BudgetExceeded: The call would take the run past its budget; it was not made.
        """
        key = call_key(model, messages)
        digest = key.digest
        again = model.name in self._refresh and digest not in self._answered
        cached = self._store.get(key)
        if cached is not None and again and digest not in self._answered:
            self._saw(self.stats.served_before, model, cached)
        if cached is not None and not again:
            return self._served(model, digest, cached)
        pending = self._in_flight.get(digest)
        if pending is not None:
            shared = await asyncio.shield(pending)
            self.stats.shared += 1
            self._of(model).cached += 1
            self._changed()
            return shared
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_flight[digest] = future
        try:
            completion = await self._claimed_or_made(model, key, again)
        except (CallFailed, BudgetExceeded, Interrupted) as failure:
            future.set_exception(failure)
            future.exception()  # marks it retrieved: only the waiters re-raise it
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._in_flight[digest]
        future.set_result(completion)
        return completion

    async def cached(self, requests: Sequence[tuple[ModelConfig, str]]) -> list[Completion | None]:
        """The completion of each request, a model and its call's key digest (`store.call_key`), that the cache holds
        (counted as `complete` counts it); None where `complete` must share or make it (a model named in `refresh`
        always). Looked up at the end of this turn of the event loop, with the requests of every other caller in it:
        one query for hundreds of items, not one each.

        What lets a rerun served from the cache decide its games on the spot, without a task and a query each.
        """
        found = await self._look_up([digest for model, digest in requests if model.name not in self._refresh])
        served: list[Completion | None] = []
        for model, digest in requests:
            cached = None if model.name in self._refresh else found.get(digest)
            if cached is not None:
                self._count_served(model, digest, cached)
            served.append(cached)
        if any(completion is not None for completion in served):
            self._changed()  # once for the batch: a progress display formats its counters each time
        return served

    def _look_up_all(self, lookups: list[list[str]]) -> list[dict[str, Completion]]:
        found = self._store.get_many([digest for digests in lookups for digest in digests])
        return [found] * len(lookups)

    def _served(self, model: ModelConfig, digest: str, cached: Completion) -> Completion:
        """Count a completion served from the store (shared when this run stored it, else cached), and say so."""
        self._count_served(model, digest, cached)
        self._changed()
        return cached

    def _count_served(self, model: ModelConfig, digest: str, cached: Completion) -> None:
        if digest in self._answered:
            self.stats.shared += 1
        else:
            self._saw(self.stats.served_before, model, cached)
            self.stats.cached += 1
        self._of(model).cached += 1

    async def _claimed_or_made(self, model: ModelConfig, key: CallKey, again: bool) -> Completion:
        """Wait while another process makes this call; else claim it, make it (or recover the answer a dead process
        received, unless it is made `again`), store it and release the claim."""
        while (claimed := await self._claim(key, again))[0] == "busy":
            if self._stopping:
                raise Interrupted(f"the run stopped while another process was making the call to {key.model}")
            await asyncio.sleep(_CLAIM_POLL_S)
        claim, receipt = claimed
        if claim == "done":
            done = self._store.get(key)
            if done is not None:
                self.stats.cached += 1
                self._of(model).cached += 1
                self._changed()
                return done
        try:
            # The simulator is started for the first call it answers: a run served from the cache starts none.
            simulator_url = self._simulator() if self._simulator and model.api_base == SIMULATOR else None
            endpoint = Endpoint.of(model, simulator_url, self._local_urls)
            recovered = await self._client.recover(endpoint, key.messages, model.params, receipt) if receipt else None
            if recovered is not None:
                self._stored(key, recovered)
                self._saw(self.stats.served_now, model, recovered)
                self.stats.recovered += 1
                self._of(model).cached += 1
                self._changed()
                return recovered
            return await self._made(model, endpoint, key)
        finally:
            self._store.release(key)

    async def _made(self, model: ModelConfig, endpoint: Endpoint, key: CallKey) -> Completion:
        """Make the call within the budget, keeping its answer's receipt until the completion is stored."""
        if self._stopping:
            raise Interrupted(f"the run stopped before the call to {key.model} was made")
        try:
            reservation = await self._budget.reserve(model, key.messages) if self._budget else None
        except BudgetExceeded:
            self.stats.refused += 1
            self._changed()
            raise
        self._endpoints.setdefault(endpoint.limiter_key, endpoint)
        self._calling += 1
        self._idle.clear()
        try:
            completion = await self._client.complete(
                endpoint,
                key.messages,
                model.params,
                on_receipt=functools.partial(self._store.put_receipt, key),
                on_billed=functools.partial(self._billed, model, reservation) if reservation else None,
            )
            self._stored(key, completion)
        except CallFailed as failure:
            self._store.record_failure(key, failure.kind, failure.message, failure.attempts)
            self.stats.failed += 1
            self._of(model).failed += 1
            self._changed()
            raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopping and task is not None and not task.cancelling():
                # The endpoint's gate was closed by `stop` before this call was sent: not made, not failed.
                raise Interrupted(f"the run stopped before the call to {key.model} was sent") from None
            raise
        finally:
            if self._budget and reservation:
                self._budget.release(reservation)
            self._calling -= 1
            if not self._calling:
                self._idle.set()
        self.stats.made += 1
        self._saw(self.stats.served_now, model, completion)
        calls = self._of(model)
        calls.made += 1
        calls.input_tokens += completion.input_tokens
        calls.output_tokens += completion.output_tokens
        self._changed()
        return completion

    async def _claim(self, key: CallKey, again: bool) -> tuple[Claim, Receipt | None]:
        """`Store.claim_all` of this call with the others asked for in the same turn of the event loop (a stage starts
        its calls at once): the claim, and the receipt a dead process left for the call if it is claimed."""
        claimed = self._claim_one((key, again))
        try:
            return await claimed
        except asyncio.CancelledError:
            made = claimed.done() and not claimed.cancelled() and claimed.exception() is None
            if made and claimed.result()[0] == "claimed":
                self._store.release(key)  # claimed just as the call was cancelled: no one would release it
            raise

    def _stored(self, key: CallKey, completion: Completion) -> None:
        """Store a completion made in this run; one grouped for a later commit is committed within
        `_GROUP_COMMIT_S`."""
        self._store.put(key, completion)
        self._answered.add(key.digest)
        if self._store.grouped and self._group_commit is None:
            self._group_commit = asyncio.get_running_loop().call_later(_GROUP_COMMIT_S, self._commit_group)

    def _commit_group(self) -> None:
        self._group_commit = None
        self._store.flush()

    def _billed(self, model: ModelConfig, reservation: Reservation, input_tokens: int, output_tokens: int) -> None:
        if self._budget:
            self._budget.bill(reservation, input_tokens, output_tokens)
            self._of(model).cost_usd += self._budget.spent_usd - self.stats.spent_usd
            self.stats.spent_usd = self._budget.spent_usd
            self._changed()

    async def aclose(self) -> None:
        """Commit the completions still grouped, and close the client's connections (call before the event loop
        ends)."""
        if self._group_commit is not None:
            self._group_commit.cancel()
            self._group_commit = None
        self._store.flush()
        await self._client.aclose()
