"""The one place that makes the package safe without a network: run before litellm or tiktoken is imported."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def _litellm_tokenizers() -> Path | None:
    # find_spec locates the package without importing it: the import itself takes seconds.
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def configure_offline() -> None:
    """Stop litellm fetching its price map at import, and point tiktoken at the BPE files litellm ships.

    Both settings are forced rather than defaulted for litellm: a run must never depend on a download at import.
    A TIKTOKEN_CACHE_DIR the user set to an existing folder is kept (it may hold more encodings).
    """
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["LITELLM_OFFLINE_MODE"] = "true"
    user_cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    if user_cache and Path(user_cache).is_dir():
        return
    bundled = _litellm_tokenizers()
    if bundled is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
