"""A run of several hundred items with ~30 % of requests faulted: every item ends answered or failed with its reason,
and nothing is paid twice."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from judge_arena.arena import CACHE_FILE, ArenaRun, candidate_pairs, load_inputs, play_arena
from judge_arena.config import load_config
from judge_arena.sim import SimulatorServer
from judge_arena.sim.faults import Fault, FaultInjector, FaultPlan
from judge_arena.store import Store

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "judge_arena" / "data" / "templates" / "pairwise.yaml"

PROMPTS = 12
"""12 prompts × 5 candidates: 60 answers + 10 pairs × 12 prompts × raw/plain × both orders = 480 games."""
CANDIDATES = ["sim-strong-plain", "sim-strong-markdown", "sim-good-terse", "sim-mid-plain", "sim-markdown-weak"]

FAULTS = [
    Fault("rate_limit", rate=0.04),
    Fault("rate_limit_ms", rate=0.02),
    Fault("server_error", rate=0.04),
    Fault("unavailable", rate=0.02),
    Fault("overloaded", rate=0.03),
    Fault("hang", rate=0.02),
    Fault("reset", rate=0.03),
    Fault("malformed", rate=0.03),
    Fault("cut", rate=0.02),
    Fault("drop", rate=0.02),
    Fault("empty_text", rate=0.01),
    Fault("quota", rate=0.02),
]
"""30 % of requests faulted; all transient but `quota`, which fails its call at once."""

KINDS = re.compile(
    r"^(http_\d{3}|quota_exhausted|timeout|connection|malformed|incomplete|empty|auth|bad_request|forbidden"
    r"|not_found|context_length|unreachable|stopped): "
)
"""A failure's reason starts with the kind of the fault that ended its call."""


def _config(folder: Path) -> Path:
    config = {
        "name": "faulted",
        "suites": [{"path": str(ROOT / "judge_arena/data/suites/core.jsonl"), "limit": PROMPTS}],
        "candidates": [{"name": name, "model": f"openai/{name}", "api_base": "simulator"} for name in CANDIDATES],
        "judges": [{"name": "judge", "model": "openai/sim-judge", "api_base": "simulator", "template": str(TEMPLATE)}],
        "runner": {
            "cache_dir": "cache",
            "output_dir": "runs",
            "concurrency": 16,
            "timeout_s": 1,
            "max_attempts": 4,
            "max_wait_s": 0.02,
        },
    }
    path = folder / "arena.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(path: Path, simulator_url: str) -> ArenaRun:
    return asyncio.run(play_arena(load_inputs(load_config(path)), simulator_url=simulator_url))


@pytest.fixture(scope="module")
def faulted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ArenaRun, SimulatorServer, FaultInjector, Path]]:
    folder = tmp_path_factory.mktemp("faulted")
    assert abs(sum(f.rate for f in FAULTS) - 0.30) < 1e-9
    hook = FaultPlan(FAULTS, seed=11, retry_after_s=0.01, hang_s=5).hook()
    with SimulatorServer(hook=hook) as sim:
        yield _run(_config(folder), sim.url), sim, hook, folder


def test_every_item_is_answered_or_failed_with_its_reason(
    faulted: tuple[ArenaRun, SimulatorServer, FaultInjector, Path],
) -> None:
    run, sim, hook, _ = faulted
    config = run.inputs.config
    prompts = run.inputs.prompts
    assert len(prompts) == PROMPTS

    # The faults really were many and mixed, and some calls did fail for good.
    injected = Counter(i.kind for i in hook.injections)
    assert len(injected) >= 10, injected
    assert 0.2 < len(hook.injections) / len(sim.requests) < 0.4
    assert run.failures
    assert run.stats.total_retries > 0

    answer_items = {(c.name, p.id) for c in config.candidates for p in prompts}
    game_items = {
        (judge.name, norm, a, b, p.id)
        for judge, norm, (x, y), p in itertools.product(
            config.judges, config.normalizations, candidate_pairs(config), prompts
        )
        for a, b in ((x, y), (y, x))
    }
    assert len(answer_items) + len(game_items) >= 500

    answered = Counter((a.model, a.prompt_id) for a in run.answers)
    assert max(answered.values()) == 1
    failed_answers = Counter(tuple(f.item.split(" × ")) for f in run.failures if f.stage == "generate")
    assert max(failed_answers.values(), default=1) == 1
    assert set(answered) | set(failed_answers) == answer_items
    assert not set(answered) & set(failed_answers)

    played = Counter((b.judge, b.normalization, b.model_a, b.model_b, b.prompt_id) for b in run.battles)
    assert max(played.values()) == 1
    game_failure = re.compile(r"^(?P<judge>\S+): (?P<a>\S+) vs (?P<b>\S+) on (?P<prompt>\S+) \((?P<norm>\w+)\)$")
    failed_games: Counter[tuple[str, ...]] = Counter()
    for failure in run.failures:
        if failure.stage == "judge":
            match = game_failure.match(failure.item)
            assert match, failure.item
            failed_games[(match["judge"], match["norm"], match["a"], match["b"], match["prompt"])] += 1
    assert max(failed_games.values(), default=1) == 1
    assert not set(played) & set(failed_games)
    # A game whose answer failed is accounted for by that answer's failure (it has nothing to judge).
    orphaned = {g for g in game_items if (g[2], g[4]) in failed_answers or (g[3], g[4]) in failed_answers}
    assert set(played) | set(failed_games) | orphaned == game_items
    assert set(played) <= game_items
    assert set(failed_games) <= game_items

    for failure in run.failures:
        assert KINDS.match(failure.reason), failure
    assert {f.reason.split(":")[0] for f in run.failures} >= {"quota_exhausted"}


def test_every_key_is_billed_exactly_once(faulted: tuple[ArenaRun, SimulatorServer, FaultInjector, Path]) -> None:
    run, sim, _, folder = faulted
    billed = Counter(json.dumps([r.model, [(m.role, m.content) for m in r.messages]]) for r in sim.requests if r.billed)
    assert billed
    assert max(billed.values()) == 1, [k[:120] for k, n in billed.items() if n > 1][:3]
    assert run.stats.made == len(billed)
    with Store(folder / "cache" / CACHE_FILE) as store:
        assert store.count_completions() == len(billed)
        assert store.count_failures() == run.stats.failed > 0
