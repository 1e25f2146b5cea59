"""Every contact with litellm's internals (`judge_arena/_litellm.py`) still holds on the installed litellm.

Run this file first when trying a newer litellm: each failure names the contact that moved and what depends on it.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import httpx
import pytest

from judge_arena import _litellm
from judge_arena.errors import diagnose, error_headers

VERSION = importlib.metadata.version("litellm")
ANSWERS: dict[str, dict[str, Any]] = {
    "openai": {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    },
    "anthropic": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
}
BASES = {"openai": "http://contact.test/v1", "anthropic": "http://contact.test"}


class Recording(httpx.AsyncBaseTransport):
    """Answers every request with one canned response, and keeps the requests."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = (status, body, headers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, headers = self._answer
        return httpx.Response(status, json=body, headers=headers)


def _moved(contact: str, consequence: str) -> str:
    return f"litellm {VERSION}: {contact} changed (judge_arena/_litellm.py) — {consequence}"


async def _call(route: str, transport: Recording) -> Any:
    client = _litellm.sdk_client(route, BASES[route], "key-contact-test", transport, 10.0)
    return await _litellm.litellm().acompletion(
        model=f"{route}/m",
        messages=[{"role": "user", "content": "ping"}],
        api_base=BASES[route],
        api_key="key-contact-test",
        client=client,
        max_tokens=8,
        num_retries=0,
        max_retries=0,
    )


@pytest.mark.parametrize("route", _litellm.RECEIVING_ROUTES)
async def test_requests_go_through_the_client_we_hand_litellm(route: str) -> None:
    transport = Recording(200, ANSWERS[route], {"x-ratelimit-remaining-requests": "7"})
    response = await _call(route, transport)
    assert transport.requests, _moved(
        f"the `client=` taken on the {route} route",
        "requests bypass our transport: no receipts, no raw-body checks, a replayed receipt would be a paid request",
    )
    assert response.choices[0].message.content == "hi"
    headers = {name.lower(): value for name, value in _litellm.success_headers(response).items()}
    assert any(name.endswith("x-ratelimit-remaining-requests") and v == "7" for name, v in headers.items()), _moved(
        "_hidden_params['additional_headers'] on an answer",
        "the limiter no longer sees the provider's rate-limit headers",
    )


@pytest.mark.parametrize("route", _litellm.RECEIVING_ROUTES)
async def test_an_error_keeps_its_status_and_headers(route: str) -> None:
    refusal = {"error": {"type": "rate_limit_error", "message": "slow down"}}
    transport = Recording(429, refusal, {"retry-after": "7"})
    with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever litellm raises is what diagnose must read
        await _call(route, transport)
    diagnosis = diagnose(raised.value)
    assert diagnosis.kind == "http_429", _moved("the exception chain of an HTTP error", "errors are misclassified")
    assert {k.lower(): v for k, v in error_headers(raised.value).items()}.get("retry-after") == "7", _moved(
        f"the error response's headers ({_litellm.RESPONSE_HEADERS_ATTRIBUTE} or the HTTP error in the chain)",
        "Retry-After and rate-limit headers of refusals are lost",
    )
    assert diagnosis.retry_after_s == 7.0


def test_the_incomplete_stream_error_keeps_its_name() -> None:
    exceptions = _litellm.litellm().exceptions
    assert hasattr(exceptions, _litellm.INCOMPLETE_STREAM_CLASS), _moved(
        f"litellm.exceptions.{_litellm.INCOMPLETE_STREAM_CLASS}",
        "a stream cut before its finish reason is no longer told apart from other errors",
    )


@pytest.mark.parametrize(
    ("model", "route"),
    [
        ("gpt-4o-mini", "openai"),
        ("openai/anything", "openai"),
        ("anthropic/claude-x", "anthropic"),
        ("hosted_vllm/m", "hosted_vllm"),
        ("gemini/gemini-2.0-flash", "gemini"),
    ],
)
def test_routes_are_named_as_before(model: str, route: str) -> None:
    assert _litellm.route(model) == route, _moved(
        "get_llm_provider", "receipts are taken on the wrong routes, or a replay is sent as a real request"
    )
