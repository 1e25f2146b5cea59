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
    """Stop litellm fetching its price map and other catalogs itself, and point tiktoken at litellm's BPE files.

    A TIKTOKEN_CACHE_DIR the user set to an existing folder is kept (it may hold more encodings).
    """
    # Forced, not defaulted: a user's LITELLM_LOCAL_MODEL_COST_MAP=False would make every import fetch the
    # price map over the network (and stall or fail offline); judge-arena never needs a newer map than the
    # bundled one, nor any catalog litellm downloads on its own initiative rather than on a call we make.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["LITELLM_OFFLINE_MODE"] = "true"
    user_cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    if user_cache and Path(user_cache).is_dir():
        return
    # litellm points tiktoken at these files itself, but only once imported; token counting must not need it.
    bundled = _litellm_tokenizers()
    if bundled is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
