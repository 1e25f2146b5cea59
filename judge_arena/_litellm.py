"""Every place judge-arena relies on litellm beyond `acompletion`'s documented arguments, in one module.

litellm is pinned exactly (pyproject.toml). The contacts below are what a newer litellm could move; each is
checked by tests/test_litellm_contact.py, whose failures name the contact that changed.

- The `client=` litellm accepts per route: an `openai.AsyncOpenAI` on the openai route, and on the anthropic route
  litellm's own `AsyncHTTPHandler` (an internal class), each built on our HTTP transport (`sdk_client`).
- The response headers litellm keeps on an answer, in `_hidden_params["additional_headers"]` (`success_headers`),
  and on an exception, in the `litellm_response_headers` attribute.
- The class litellm raises for a stream that ends before its finish reason (`MidStreamFallbackError`).
- `get_llm_provider`, which names the route of a model string (`route`).
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Mapping
from typing import Any

import httpx

from judge_arena._offline import configure_offline

RESPONSE_HEADERS_ATTRIBUTE = "litellm_response_headers"
"""Where litellm's exceptions keep the headers of the error response."""
INCOMPLETE_STREAM_CLASS = "MidStreamFallbackError"
"""The class litellm raises when a stream ends without its finish reason (matched by name: no import needed)."""
RECEIVING_ROUTES = ("openai", "anthropic")
"""The routes on which litellm accepts a client built on our transport (`sdk_client`)."""


@functools.cache
def litellm() -> Any:
    """litellm, imported on first use (the import takes seconds) and kept quiet: failures are ours to report."""
    # The import makes millions of long-lived objects: collecting garbage while it runs costs more than half a
    # second, and every later full collection would walk them all again (0.1-0.2 s holding the GIL, which stalls
    # the I/O thread that writes answers down). Collect none during the import, then set them aside for good.
    configure_offline()
    gc.disable()
    try:
        import litellm
    finally:
        gc.freeze()
        gc.enable()
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.num_retries = 0
    return litellm


@functools.cache
def route(model: str) -> str:
    """The provider litellm routes a model string to ('openai' for 'gpt-4o' as for 'openai/...').

    A model string that names a receiving route as its prefix is routed there by litellm, which is not imported
    to say so (the direct route to OpenAI-compatible servers needs no litellm at all).
    """
    prefix, _, rest = model.partition("/")
    if rest and prefix in RECEIVING_ROUTES:
        return prefix
    try:
        return str(litellm().get_llm_provider(model=model)[1])
    except Exception:
        return model.split("/", 1)[0]


def sdk_client(
    model_route: str, api_base: str | None, api_key: str | None, transport: httpx.AsyncBaseTransport, timeout_s: float
) -> Any:
    """The `client=` to hand litellm on a receiving route, sending its requests through `transport`."""
    if model_route == "openai":
        import openai

        # openai 3.x is typed for httpx2 clients and accepts httpx ones too, as litellm's own handler uses.
        http: Any = httpx.AsyncClient(transport=transport, timeout=timeout_s)
        return openai.AsyncOpenAI(api_key=api_key, base_url=api_base, http_client=http, max_retries=0)
    if model_route == "anthropic":
        litellm()  # imported our way first
        from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

        return AsyncHTTPHandler(timeout=timeout_s, transport=transport)
    raise ValueError(f"litellm takes no client of ours on the '{model_route}' route")


def success_headers(response: Any) -> Mapping[str, str]:
    """The response headers litellm keeps on an answer (whole or streamed), names prefixed `llm_provider-`."""
    hidden = getattr(response, "_hidden_params", None)
    headers = hidden.get("additional_headers") if isinstance(hidden, Mapping) else None
    return headers if isinstance(headers, Mapping) else {}
