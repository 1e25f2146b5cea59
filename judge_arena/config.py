"""The arena configuration: pydantic models of the YAML file, and its loading with one clear error per problem.

Relative paths in a config file are resolved against the directory that holds the file, so a config can be run
from anywhere. API keys never appear in a config: a model names the environment variable that holds its key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, ScalarNode

from judge_arena.records import Prompt

SIMULATOR = "simulator"
"""The `api_base` value that routes a model to the built-in simulator started for the run."""


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

    path: Path = Field(description="Suite file (JSONL), relative to the config file.")
    format: Literal["auto", "judge-arena", "arena-hard", "mt-bench"] = Field(
        default="auto", description="File layout; 'auto' detects it from the first record."
    )
    name: str | None = Field(default=None, description="Suite name shown in reports; defaults to the file stem.")
    limit: int | None = Field(default=None, gt=0, description="Use only the first N prompts (quick runs).")


class PriceConfig(_Strict):
    """What a model's tokens cost, in US dollars per million tokens."""

    input_per_mtok: float = Field(ge=0, description="USD per million input (prompt) tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output (completion) tokens.")


class ModelConfig(_Strict):
    """A model reached through litellm: a candidate or a judge."""

    name: str = Field(min_length=1, description="Short unique name used in tables and the cache.")
    model: str = Field(min_length=1, description="litellm model string, e.g. 'openai/gpt-4o' or 'anthropic/...'.")
    api_base: str | None = Field(
        default=None,
        description="Endpoint URL (for local OpenAI-compatible servers), or 'simulator' for the built-in simulator.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the API key; the key itself never goes in a file.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Sampling parameters passed to the model (temperature, max_tokens, …).",
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
        return params


class JudgeConfig(ModelConfig):
    """A judge model and its pairwise prompt template."""

    template: Path = Field(
        default=Path("../prompts/judge_pairwise.yaml"),
        description="Judge prompt template (YAML with 'system' and 'user'), relative to the config file.",
    )
    defence: bool = Field(
        default=True,
        description=(
            "Neutralize verdict labels and delimiter look-alikes inside answers and flag instruction-like text "
            "before this judge sees them (`defence.screen`); false shows answers as written and flags nothing."
        ),
    )


class PairingConfig(_Strict):
    """Which candidate pairs are judged."""

    mode: Literal["all-pairs", "vs-baseline"] = Field(
        default="all-pairs",
        description="'all-pairs' judges every pair; 'vs-baseline' judges each vs the baseline.",
    )
    baseline: str | None = Field(
        default=None, description="Candidate name used as baseline (required for 'vs-baseline')."
    )


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


class RunnerConfig(_Strict):
    """How calls are made and where results go."""

    cache_dir: Path = Field(default=Path("../cache"), description="SQLite cache folder, relative to the config.")
    output_dir: Path = Field(default=Path("../runs"), description="Run reports folder, relative to the config.")
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


class CanaryConfig(_Strict):
    """Constant answers entered as extra candidates: a judge that rates one above a real model can be gamed."""

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


class BudgetConfig(_Strict):
    """A cap on the estimated spend of one run; the run stops cleanly before a call would exceed it."""

    max_usd: float = Field(
        gt=0,
        description="Most the run may spend, in US dollars, on calls it makes (cached calls are free); a rerun "
        "starts again at 0 and resumes from the cache.",
    )


class ArenaConfig(_Strict):
    """The whole arena: suites, candidates, judges, normalizations, pairing, rating and runner options."""

    name: str = Field(default="arena", description="Run name, used in report folder names.")
    suites: list[SuiteConfig] = Field(min_length=1, description="Prompt suites to run.")
    candidates: list[ModelConfig] = Field(min_length=2, description="Models that answer the prompts.")
    judges: list[JudgeConfig] = Field(min_length=1, description="Models that compare pairs of answers.")
    normalizations: list[str] = Field(
        default_factory=lambda: ["raw", "plain"],
        min_length=1,
        description="Views judged: 'raw' (as written) and 'plain' (markdown stripped).",
    )
    pairing: PairingConfig = Field(default_factory=PairingConfig, description="Which pairs are judged.")
    panel: PanelConfig = Field(default_factory=PanelConfig, description="Panel verdict, used with two or more judges.")
    rating: RatingConfig = Field(default_factory=RatingConfig, description="Rating options.")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="Call and output options.")
    canaries: CanaryConfig = Field(default_factory=CanaryConfig, description="Canary candidates (all off by default).")
    budget: BudgetConfig | None = Field(
        default=None, description="Spend cap of the run; every model then needs a known price. Unset: no cap."
    )

    @model_validator(mode="after")
    def _check_references(self) -> ArenaConfig:
        from judge_arena.style import NORMALIZATIONS

        for field, models in (("candidates", self.candidates), ("judges", self.judges)):
            names = [m.name for m in models]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{field}: duplicate names {duplicates}")
        unknown = [n for n in self.normalizations if n not in NORMALIZATIONS]
        if unknown:
            raise ValueError(f"normalizations: unknown {unknown}; known: {sorted(NORMALIZATIONS)}")
        candidate_names = {c.name for c in self.candidates}
        from judge_arena.defence import enabled_canaries

        taken = sorted(candidate_names.intersection(enabled_canaries(self.canaries)))
        if taken:
            raise ValueError(f"candidates: {taken} is the name of an enabled canary; rename the candidate")
        if self.pairing.mode == "vs-baseline" and self.pairing.baseline is None:
            raise ValueError("pairing.baseline: required when pairing.mode is 'vs-baseline'")
        for field, value in (
            ("pairing.baseline", self.pairing.baseline),
            ("rating.anchor", self.rating.anchor),
        ):
            if value is not None and value not in candidate_names:
                raise ValueError(f"{field}: '{value}' is not a candidate name")
        return self

    @property
    def uses_simulator(self) -> bool:
        """Whether any model is routed to the built-in simulator."""
        return any(m.api_base == SIMULATOR for m in [*self.candidates, *self.judges])


def load_config(path: Path) -> ArenaConfig:
    """Read, validate and resolve a config file; raise ConfigError naming the file and field on any problem.

    Relative paths become absolute (against the file's folder), suite and template files must exist, and every
    `api_key_env` must be set in the environment, so that a run never starts on a config it cannot finish.
    """
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {_yaml_kind(raw)}")
    try:
        config = ArenaConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt required key also reports the required one as missing; the unknown key points at the typo.
        first = next((error for error in errors if error["type"] == "extra_forbidden"), errors[0])
        if not first["loc"] and first["type"] == "value_error":
            # The checks across fields (ArenaConfig._check_references) name their field in the message.
            raise ConfigError(f"{path}: {first.get('ctx', {}).get('error', first['msg'])}") from None
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: field '{field}': {first['msg']}") from None
    return _resolve(config, path)


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
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path} line {line}: not valid UTF-8 (byte {column} of the line)") from None
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


def _yaml_kind(value: object) -> str:
    kinds = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return kinds.get(type(value), type(value).__name__)


def _resolve(config: ArenaConfig, path: Path) -> ArenaConfig:
    base = path.resolve().parent

    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    def existing_file(p: Path, field: str) -> Path:
        resolved = absolute(p)
        if resolved.is_dir():
            raise ConfigError(f"{path}: field '{field}': is a directory, not a file: {resolved}")
        if not resolved.is_file():
            raise ConfigError(f"{path}: field '{field}': file not found: {resolved}")
        return resolved

    suites = [
        suite.model_copy(update={"path": existing_file(suite.path, f"suites.{i}.path")})
        for i, suite in enumerate(config.suites)
    ]
    judges = [
        judge.model_copy(update={"template": existing_file(judge.template, f"judges.{i}.template")})
        for i, judge in enumerate(config.judges)
    ]
    for field, models in (("candidates", config.candidates), ("judges", config.judges)):
        for i, model in enumerate(models):
            if model.api_key_env is not None and not os.environ.get(model.api_key_env):
                raise ConfigError(
                    f"{path}: field '{field}.{i}.api_key_env': environment variable {model.api_key_env} is not set"
                )
    if config.budget is not None:
        from judge_arena.budget import check_prices

        check_prices(config, path)
    runner = config.runner.model_copy(
        update={
            "cache_dir": absolute(config.runner.cache_dir),
            "output_dir": absolute(config.runner.output_dir),
        }
    )
    return config.model_copy(update={"suites": suites, "judges": judges, "runner": runner})
