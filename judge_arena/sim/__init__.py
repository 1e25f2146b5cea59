"""The simulator: OpenAI and Anthropic endpoints on loopback, serving simulated candidates and judges.

`SimulatorServer` runs it in the background (tests, `judge-arena run` on a config that uses it); `serve` runs
it in the foreground (`judge-arena sim`). `CANDIDATES` and `JUDGES` hold the ground truth.
"""

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
