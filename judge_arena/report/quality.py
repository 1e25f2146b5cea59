"""The judges' quality as a run folder records it (summary.json's "judge_quality"): per judge, its re-asks and its
position consistency over all categories.

It is measured once, from the run's battles, when the summary is made (`judge_quality`); the page and the terminal
read it back from the summary (`read_judge_quality`) instead of measuring it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from judge_arena.agreement import Consistency, Reasks, position_consistency, reasks
from judge_arena.records import Battle


def judge_quality(battles: Sequence[Battle]) -> dict[str, dict[str, Any]]:
    """Each judge's re-ask counts and position consistency over all categories, as summary.json's "judge_quality"
    holds them: by judge name in order of first appearance."""
    consistency = position_consistency(battles)
    return {
        judge: {
            **asdict(counts),
            "position_consistency": [asdict(c) for c in consistency if c.judge == judge and c.category is None],
        }
        for judge, counts in reasks(battles).items()
    }


@dataclass(frozen=True)
class JudgeQuality:
    """summary.json's "judge_quality" read back as records."""

    reasks: dict[str, Reasks]
    """Each judge's re-ask counts, by judge name in order of first appearance (as `agreement.reasks` gives them)."""
    consistency: list[Consistency]
    """Each judge's position consistency per normalization over all categories, in `position_consistency`'s order."""


def read_judge_quality(summary: Mapping[str, Any]) -> JudgeQuality | None:
    """The judges' quality a run's summary records; None when it records none (a folder of battles rated from a
    file)."""
    recorded: Mapping[str, Mapping[str, Any]] | None = summary.get("judge_quality")
    if recorded is None:
        return None
    return JudgeQuality(
        reasks={judge: Reasks(q["games"], q["reasked"], q["unparsed"]) for judge, q in recorded.items()},
        # Recorded judge by judge in order of appearance; position_consistency orders them by name.
        consistency=sorted(
            (Consistency(**row) for q in recorded.values() for row in q["position_consistency"]),
            key=lambda c: (c.judge, c.normalization),
        ),
    )
