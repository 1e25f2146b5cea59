"""Offline defaults for litellm and tiktoken, applied by the code that needs them, just before it imports or uses them.

Only defaults: a variable the user set is left as it is. Importing judge_arena changes nothing.
"""

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
    """Default litellm to its bundled price map with no fetches of its own, and tiktoken to litellm's BPE files.

    judge-arena never needs a newer price map than the bundled one, nor any catalog litellm downloads on its own
    initiative; without these defaults `import litellm` fetches the map over the network (and stalls offline), and
    tiktoken downloads its BPE files on first use. A user who sets any of these variables gets what they set.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return
    # litellm points tiktoken at these files itself, but only once imported; token counting must not need it.
    bundled = _litellm_tokenizers()
    if bundled is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
