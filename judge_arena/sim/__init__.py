"""The simulator: OpenAI and Anthropic endpoints on loopback, serving simulated candidates and judges.

`SimulatorServer` runs it in the background (tests, `judge-arena run` on a config that uses it); `serve` runs
it in the foreground (`judge-arena sim`). `CANDIDATES` and `JUDGES` hold the ground truth.

Each name is imported on first use: the ground truth (`sim.models`) is read by reports of simulated runs, which
need not import the server's HTTP library (aiohttp, a tenth of a second to import and to tear down).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from judge_arena.sim.models import CANDIDATES, JUDGES, CandidateProfile, JudgeProfile
    from judge_arena.sim.server import RequestRecord, SimulatorServer, serve

__all__ = [
    "CANDIDATES",
    "JUDGES",
    "CandidateProfile",
    "JudgeProfile",
    "RequestRecord",
    "SimulatorServer",
    "serve",
]

_MODULE_OF = {
    "CANDIDATES": "models",
    "JUDGES": "models",
    "CandidateProfile": "models",
    "JudgeProfile": "models",
    "RequestRecord": "server",
    "SimulatorServer": "server",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
