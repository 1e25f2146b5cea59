"""What a failed attempt was, and whether to try again: the one place a retry decision is made.

An attempt fails with whatever litellm, the SDKs and the HTTP libraries raised; `diagnose` turns it into a
`Diagnosis`: a kind (`http_429`, `timeout`, `auth`, …), whether another attempt may succeed, how long the server
asked to wait (Retry-After), whether the endpoint refused for load, and whether every later request to the endpoint
would fail the same way. `Redactor` makes what a failure says safe to store and print: providers echo keys.
"""

from __future__ import annotations

import datetime
import email.utils
import itertools
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from judge_arena._litellm import INCOMPLETE_STREAM_CLASS, RESPONSE_HEADERS_ATTRIBUTE


class UnusableReply(Exception):
    """A reply that arrived but cannot be used as an answer (empty, or cut off with no finish reason)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class EndpointStopped(Exception):
    """A call not made: its endpoint failed the same way too many times in a row (see `Diagnosis.persistent`)."""


@dataclass(frozen=True)
class Diagnosis:
    """What one failed attempt was."""

    kind: str
    """The failure kind recorded with a failed call: `http_<status>`, `timeout`, `connection`, `auth`, …"""
    retryable: bool
    """Whether another attempt may succeed."""
    retry_after_s: float | None = None
    """The wait the server asked for (Retry-After), if it asked."""

    @property
    def throttled(self) -> bool:
        """A refusal meaning 'too much at once' (rate limited, overloaded): the endpoint's concurrency is halved."""
        return self.kind in _THROTTLED_KINDS

    @property
    def persistent(self) -> bool:
        """A failure every request to the endpoint would meet (bad key, unknown model, no server, no credit):
        after a few in a row, the endpoint's remaining calls are not made."""
        return self.kind in _PERSISTENT_KINDS


_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
_FATAL_STATUS_KINDS = {
    400: "bad_request",
    401: "auth",
    403: "forbidden",
    404: "not_found",
    422: "bad_request",
}
_CONTEXT_MARKERS = ("context window", "context_length_exceeded", "maximum context length")
_QUOTA_MARKERS = ("insufficient_quota", "exceeded your current quota")
_THROTTLED_KINDS = {"http_429", "http_529"}
_PERSISTENT_KINDS = {"auth", "forbidden", "not_found", "quota_exhausted", "unreachable"}
STOPPED = "stopped"
"""The kind of a call not made because its endpoint was stopped."""

# Transport faults are recognised by the names of classes in an exception's MRO, so that httpx and httpx2 (the
# SDKs' fork), aiohttp, the SDKs and litellm are all covered without importing any of them here.
_TIMEOUT_CLASSES = {"TimeoutException", "APITimeoutError"}
_CONNECTION_CLASSES = {"TransportError", "APIConnectionError", "ClientConnectionError", "ClientPayloadError"}
_UNREACHABLE_CLASSES = {"ConnectionRefusedError", "gaierror"}
"""No server to talk to: nothing listens on the port, or the host name does not resolve."""


def diagnose(exc: BaseException) -> Diagnosis:
    """Classify a failed attempt by the status the server answered and by the cause, never by class name alone.

    Through litellm every error is an `openai.APIError`, but its class and status often say little: a 529 arrives
    as a plain APIError, or as an InternalServerError with status 500; a reset connection as an
    InternalServerError too. So the real HTTP status is looked for first, then the transport fault at the root of
    the chain (timeout, refused, reset or dropped connection, malformed body, stream cut before its finish reason).
    """
    if isinstance(exc, UnusableReply):
        return Diagnosis(exc.kind, True)
    if isinstance(exc, EndpointStopped):
        return Diagnosis(STOPPED, False)
    chain = _chain(exc)
    text = " ".join(str(link) for link in chain).lower()
    if any(marker in text for marker in _CONTEXT_MARKERS):
        return Diagnosis("context_length", False)
    answered = _http_error(chain)
    if answered is not None:
        return _by_status(answered[0], text, answered[1])
    for link in reversed(chain):
        fault = _transport_fault(link)
        if fault is not None:
            return Diagnosis(fault, True)
    for link in reversed(chain):
        status = _response_status(link)
        if status is not None:
            return _by_status(status[0], text, status[1])
    return Diagnosis(type(exc).__name__, False)


def error_headers(exc: BaseException) -> Mapping[str, str]:
    """The headers of the error response a failed attempt got; empty when no response came."""
    chain = _chain(exc)
    answered = _http_error(chain)
    if answered is not None and answered[1]:
        return answered[1]
    for link in chain:
        headers = getattr(link, RESPONSE_HEADERS_ATTRIBUTE, None)
        if isinstance(headers, Mapping) and headers:
            return headers
    return {}


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date."""
    lowered = {key.lower(): value for key, value in headers.items()}
    milliseconds = _number(lowered.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = lowered.get("retry-after")
    seconds = _number(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - time.time())


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first.

    Suppressed contexts are followed too: litellm and the SDKs re-raise inside `except` blocks, often with
    `from None`, and the status of the real HTTP response or the transport error is only down there.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 16 and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _response_status(exc: BaseException) -> tuple[int, Mapping[str, str]] | None:
    """The status and headers of the HTTP response an exception carries, if it carries one."""
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return None
    headers = getattr(response, "headers", None)
    if not isinstance(headers, Mapping):
        headers = getattr(exc, RESPONSE_HEADERS_ATTRIBUTE, None)
    return status, headers if isinstance(headers, Mapping) else {}


def _http_error(chain: list[BaseException]) -> tuple[int, Mapping[str, str]] | None:
    """The error status the server really answered with: from the innermost HTTPStatusError in the chain.

    litellm's own exceptions carry a status of their own choosing: 500 for a connection reset, 408 for a timeout,
    500 again for Anthropic's 529 'overloaded'. Only an HTTP library's status error proves a response came.
    """
    for exc in reversed(chain):
        if "HTTPStatusError" in _class_names(exc):
            return _response_status(exc)
    return None


def _transport_fault(exc: BaseException) -> str | None:
    """The kind of fault an exception is when no HTTP error response came: timeout, connection, malformed…"""
    names = _class_names(exc)
    if isinstance(exc, json.JSONDecodeError):
        return "malformed"
    if INCOMPLETE_STREAM_CLASS in names and "finish_reason" in str(exc):
        return "incomplete"
    if isinstance(exc, TimeoutError) or names & _TIMEOUT_CLASSES:
        return "timeout"
    if names & _UNREACHABLE_CLASSES:
        return "unreachable"
    if isinstance(exc, ConnectionError) or names & _CONNECTION_CLASSES:
        return "connection"
    return None


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return max(0.0, number) if number is not None and math.isfinite(number) else None


def _by_status(status: int, text: str, headers: Mapping[str, str]) -> Diagnosis:
    if status == 429 and any(marker in text for marker in _QUOTA_MARKERS):
        return Diagnosis("quota_exhausted", False)
    if status in _RETRYABLE_STATUS:
        return Diagnosis(f"http_{status}", True, retry_after_s(headers))
    return Diagnosis(_FATAL_STATUS_KINDS.get(status, f"http_{status}"), False)


REDACTED = "[redacted]"
_SHORTEST_SECRET = 8
"""Any run of this many characters of a key is redacted: a masked or cut echo still gives away that much."""
_KEY_SHAPES = re.compile(
    r"\b(?:(?:sk|sk-ant|key)-[A-Za-z0-9_*.-]{6,}|AIza[A-Za-z0-9_*.-]{6,})"  # well-known key prefixes
    r"|[A-Za-z0-9_-]*(?:\*{3,}|•{3,}|…)[A-Za-z0-9_-]+"  # a masked echo such as 'AbCd1234***wxyz'
    r"|(?<=\[redacted\])[*•….]+[A-Za-z0-9_-]{1,8}"  # the visible end of a masked key whose start was redacted
)
"""The second line of defence: keys recognised by their shape, for a key the run did not read itself."""
_REPEATED = re.compile(r"(?:\[redacted\])+")


class Redactor:
    """Removes the run's keys from what failures say, before anything is stored or printed.

    Providers echo keys in error messages, whole, masked (`AIzaSyA1b2***wxyz`) or cut. Every key the run reads
    is added; any piece of one at least eight characters long is replaced, then anything shaped like a key.
    """

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._pieces: set[str] = set()

    def add(self, key: str) -> None:
        """Redact this key from now on (a key shorter than eight characters is redacted whole)."""
        if key in self._keys:
            return
        self._keys.add(key)
        width = min(_SHORTEST_SECRET, len(key))
        self._pieces.update(key[i : i + width] for i in range(len(key) - width + 1))

    def __call__(self, text: str) -> str:
        """The text with every piece of a known key, and anything shaped like a key, replaced by `[redacted]`."""
        secret = [False] * len(text)
        for width in {len(piece) for piece in self._pieces}:
            for start in range(len(text) - width + 1):
                if text[start : start + width] in self._pieces:
                    secret[start : start + width] = [True] * width
        runs = itertools.groupby(zip(text, secret, strict=True), key=lambda pair: pair[1])
        kept = "".join(REDACTED if hidden else "".join(c for c, _ in run) for hidden, run in runs)
        return _REPEATED.sub(REDACTED, _KEY_SHAPES.sub(REDACTED, kept))
