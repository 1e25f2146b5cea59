"""The `judge-arena` command: wires the stages together; the logic lives in the stage modules.

Exit codes: 0 success, 1 the run finished with failed calls (or a canary beat a real model, when set to fail;
for `diff` and `run --compare-to`, a gate failed), 2 bad input (config, suite, template, leaderboard, votes, runs,
gates), 3 the run stopped at its budget (`budget.max_usd`; the report covers what was done, and a rerun with a
larger budget resumes from the cache; takes precedence over 1), 130 / 143 the run was stopped by Ctrl-C (SIGINT) /
SIGTERM (the report covers what was done; the same command resumes; a second signal exits at once, without a
report).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from judge_arena.choices import FORMATS, VOTE_ORDERS
from judge_arena.choices import ORDERS as AGREEMENT_ORDERS

if TYPE_CHECKING:
    from judge_arena.arena import Inputs
    from judge_arena.config import ArenaConfig

if TYPE_CHECKING:
    from judge_arena.runs import RunFolder

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3
EXIT_SIGNAL = 128
"""Plus the signal's number: 130 when Ctrl-C (SIGINT) stopped the run, 143 for SIGTERM."""
_EXIT_OF_STATUS = {"complete": EXIT_OK, "failures": EXIT_FAILURES, "budget": EXIT_BUDGET}

_RUN_EXITS = {
    EXIT_OK: "every item done",
    EXIT_FAILURES: "done, but some calls failed (listed in failures.csv), or a canary beat a real model when the "
    "config says to fail on that, or (with --compare-to) a gate failed (each failure is named)",
    EXIT_BAD_INPUT: "bad input (config, suite, template, a --refresh name that is no candidate, a --compare-to run "
    "or gate that cannot be used): one line naming the file and field; nothing called or written",
    EXIT_BUDGET: "stopped at budget.max_usd; the report covers what was done, a rerun with a larger budget resumes",
    EXIT_SIGNAL + 2: "stopped by Ctrl-C (SIGINT); 143: by SIGTERM. The report covers what was done; the same command "
    "resumes; a second signal exits at once",
}
_READ_EXITS = {EXIT_OK: "done", EXIT_BAD_INPUT: "bad input: one line naming the file and field"}


class _BadInput(Exception):
    """An input file a command cannot use (the message names the file and field)."""


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    from judge_arena.config import parse_override

    return dict(parse_override(spec) for spec in args.set or [])


def _run(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.config import load_config

    config = load_config(args.config, _overrides(args))
    if args.dry_run:
        from judge_arena.arena import check_refresh, load_inputs

        check_refresh(config, args.refresh or ())
        _print_estimate(load_inputs(config), console, refresh=args.refresh or ())
        return EXIT_OK
    baseline = _baseline(args.compare_to, config) if args.compare_to else None
    return _play(config, console, refresh=args.refresh or (), baseline=baseline)


def _baseline(spec: str, config: ArenaConfig) -> tuple[str, RunFolder]:
    """The run `--compare-to` names, resolved and read before the run (so `latest` is the previous run), with the
    config's gates checked against it."""
    from judge_arena.diff import check_gates
    from judge_arena.runs import load_run, resolve_run

    try:
        path = resolve_run(spec, config.runner.output_dir)
        baseline = load_run(path)
        check_gates(config, baseline, path.name)
    except ValueError as exc:
        raise _BadInput(f"--compare-to: {exc}") from None
    return path.name, baseline


def _demo(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.config import DEMO_CONFIG, config_from_dict, read_yaml

    return _play(config_from_dict(read_yaml(DEMO_CONFIG), args.folder, _overrides(args)), console)


def _play(
    config: ArenaConfig,
    console: Console,
    *,
    refresh: Sequence[str] = (),
    baseline: tuple[str, RunFolder] | None = None,
) -> int:
    from judge_arena.interrupt import Interrupt, on_signals
    from judge_arena.pipeline import run_arena
    from judge_arena.report.terminal import print_run, progress_display

    with on_signals(Interrupt()) as interrupt, progress_display(console) as progress:
        result = run_arena(config, progress=progress, interrupt=interrupt, refresh=refresh)
    print_run(console, result.run, result.views, result.folder)
    if result.run.interrupted is not None:
        return EXIT_SIGNAL + result.run.interrupted
    code = _EXIT_OF_STATUS[result.status]
    if baseline is None:
        return code
    if result.status == "budget":
        console.print(f"not compared with {escape(baseline[0])}: the run stopped at its budget")
        return code
    return max(code, _compared(console, baseline, result.folder))


def _compared(console: Console, baseline: tuple[str, RunFolder], folder: Path) -> int:
    """Print the diff of the run in `folder` against the baseline and its gates; exit 0 when every gate holds."""
    from judge_arena.diff import compare_runs
    from judge_arena.report.diff import print_diff
    from judge_arena.runs import load_run

    name, old = baseline
    try:
        result, outcomes = compare_runs(old, load_run(folder), old_name=name, new_name=folder.name)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    print_diff(console, result, outcomes)
    return EXIT_OK if all(g.passed for g in outcomes) else EXIT_FAILURES


def _validate(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.arena import load_inputs, planned_games
    from judge_arena.config import load_config

    inputs = load_inputs(load_config(args.config, _overrides(args)))
    config = inputs.config
    games = planned_games(inputs)
    console.print(
        f"[green]ok[/green] {args.config}: {len(inputs.prompts)} prompts, {len(config.candidates)} candidates, "
        f"{len(config.judges)} judges, {games} judge games at most"
    )
    from judge_arena.report.terminal import unanswered_messages

    for line in unanswered_messages(inputs):
        console.print(f"[yellow]{escape(line)}[/yellow]")
    _print_estimate(inputs, console)
    return _ping(config, console) if args.ping else EXIT_OK


def _print_estimate(inputs: Inputs, console: Console, refresh: Sequence[str] = ()) -> None:
    from judge_arena.arena import CACHE_FILE
    from judge_arena.estimate import earlier_answers, estimate_run
    from judge_arena.report.estimate import print_estimate
    from judge_arena.store import CacheReader

    earlier = earlier_answers(inputs.config)
    with CacheReader(inputs.config.runner.cache_dir / CACHE_FILE) as cache:
        print_estimate(console, estimate_run(inputs, cache.get, refresh, earlier))


def _generate(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.config import load_config
    from judge_arena.interrupt import Interrupt, on_signals
    from judge_arena.pipeline import generate_answers
    from judge_arena.report.terminal import print_generated, progress_display

    config = load_config(args.config, _overrides(args))
    with on_signals(Interrupt()) as interrupt, progress_display(console) as progress:
        run = generate_answers(config, progress=progress, interrupt=interrupt)
    print_generated(console, run)
    if run.interrupted is not None:
        return EXIT_SIGNAL + run.interrupted
    return _EXIT_OF_STATUS[run.status]


def _ping(config: ArenaConfig, console: Console) -> int:
    import asyncio

    from judge_arena.arena import model_servers
    from judge_arena.client import ping_models

    with model_servers(config) as (simulator, local_urls):
        models = [*(c for c in config.candidates if c.called), *config.judges]
        simulator_url = simulator() if simulator else None
        pings = asyncio.run(ping_models(models, simulator_url, local_urls, timeout_s=config.runner.timeout_s))
    for ping in pings:
        if ping.failure is None:
            console.print(f"[green]ok[/green]   {escape(ping.endpoint.describe())}: {ping.latency_s:.2f} s")
        else:
            console.print(f"[red]fail[/red] {escape(ping.endpoint.describe())}: {escape(str(ping.failure))}")
    return EXIT_FAILURES if any(ping.failure for ping in pings) else EXIT_OK


def _metrics(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.metrics import compare, load_leaderboard, load_model_map
    from judge_arena.report.metrics import print_metrics
    from judge_arena.runs import resolve_run

    try:
        evaluated = load_leaderboard(
            resolve_run(args.evaluated, args.runs_dir),
            fmt=args.format,
            judge=args.judge,
            normalization=args.normalization,
            style_control=args.style_control,
        )
        reference = load_leaderboard(
            resolve_run(args.reference, args.runs_dir),
            fmt=args.reference_format,
            judge=args.reference_judge,
            normalization=args.reference_normalization,
            style_control=args.reference_style_control,
        )
        model_map = load_model_map(args.map) if args.map else None
        result = compare(evaluated, reference, model_map=model_map, agreement_order=args.agreement_order)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    print_metrics(console, result)
    return EXIT_OK


def _agreement(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.agreement import (
        compare_by_category,
        compare_groups,
        load_sources,
        parse_group,
        question_categories,
        rename_models,
        unshared_comparisons,
    )
    from judge_arena.agreement import voter_groups as default_groups
    from judge_arena.config import ConfigError, load_config
    from judge_arena.metrics import load_model_map
    from judge_arena.report.agreement import print_agreement
    from judge_arena.runs import resolve_run

    paths = list(args.votes)
    if args.judge is not None:
        config = load_config(args.judge)
        if config.votes is None:
            raise ConfigError(f"{args.judge}: field 'votes': required with --judge (the vote file the run judges)")
        code = _play(config, console)
        if code != EXIT_OK:
            return code
        paths = [resolve_run(f"latest:{config.name}", config.runner.output_dir), config.votes, *paths]
    if not paths:
        raise _BadInput("agreement: give vote files or runs, or --judge CONFIG")
    try:
        sources = [resolve_run(source, args.runs_dir) for source in paths]
        votes, consistency = load_sources(sources, orders=args.orders, run_turn=args.run_turn)
        if args.map:
            votes = rename_models(votes, load_model_map(args.map))
        groups = [parse_group(spec) for spec in args.group or []] or default_groups(votes)
        within = not args.no_within
        rows = compare_groups(votes, groups, within=within, by_turn=args.by_turn)
        categories = question_categories(sources)
        by_category = compare_by_category(votes, categories, groups, within=within, by_turn=args.by_turn)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    print_agreement(console, rows, consistency, by_category)
    unshared = unshared_comparisons(rows, votes, groups)
    for line in unshared:
        console.print(f"[red]{escape(line)}[/red]", soft_wrap=True)
    return EXIT_FAILURES if unshared else EXIT_OK


def _rate(args: argparse.Namespace, console: Console) -> int:
    from pydantic import ValidationError

    from judge_arena.config import RatingConfig
    from judge_arena.pipeline import rate_battles
    from judge_arena.rating import MIN_PROMPTS
    from judge_arena.report.terminal import print_views

    options = {
        "bootstrap_rounds": args.rounds,
        "seed": args.seed,
        "bootstrap_unit": args.unit,
        "anchor": args.anchor,
        "anchor_rating": args.anchor_rating,
        "style_control": args.style_control,
        "category_min_prompts": args.min_prompts,
        "category_map": args.category_map,
    }
    try:
        rating = RatingConfig.model_validate({key: value for key, value in options.items() if value is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _BadInput(f"option '{error['loc'][0]}': {error['msg']}") from None
    try:
        rated = rate_battles(args.battles, rating, baseline=args.baseline, output_dir=args.output_dir, name=args.name)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    models = sorted(set(rated.battles["model_a"]) | set(rated.battles["model_b"]))
    print_views(console, rated.views, models, args.min_prompts or MIN_PROMPTS)
    console.print(f"{len(rated.battles)} battles of {len(models)} models rated; report: {rated.folder}")
    return EXIT_OK


def _report(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.report.html import write_html_report
    from judge_arena.runs import RunFolderError, resolve_run

    try:
        path = write_html_report(resolve_run(args.run, args.runs_dir))
    except RunFolderError as exc:
        raise _BadInput(str(exc)) from None
    console.print(f"wrote {escape(str(path))}")
    return EXIT_OK


def _runs(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.runs import list_runs, resolve_run

    try:
        if args.path:
            console.print(str(resolve_run(args.path, args.runs_dir)), highlight=False, soft_wrap=True)
            return EXIT_OK
        entries = list_runs(args.runs_dir, args.name)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    if args.json:
        rows = [{**asdict(entry), "path": str(entry.path)} for entry in entries]
        console.print_json(json.dumps(rows))
        return EXIT_OK
    from judge_arena.report.runs import print_runs

    print_runs(console, entries, args.runs_dir)
    return EXIT_OK


def _diff(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.diff import compare_runs, parse_gate
    from judge_arena.report.diff import diff_data, diff_markdown, print_diff
    from judge_arena.runs import load_run, resolve_run

    if args.html is not None and not args.html.parent.is_dir():
        raise _BadInput(f"--html {args.html}: the folder {args.html.parent} does not exist")
    try:
        old_path, new_path = (resolve_run(spec, args.runs_dir) for spec in (args.old, args.new))
        old, new = load_run(old_path), load_run(new_path)
        gates = [parse_gate(spec) for spec in args.gate or []]
        result, outcomes = compare_runs(
            old, new, gates, old_name=old_path.name, new_name=new_path.name, rounds=args.rounds, method=args.method
        )
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    if args.json:
        print(json.dumps(diff_data(result, outcomes), indent=2))
    elif args.markdown:
        print(diff_markdown(result, outcomes), end="")
    else:
        print_diff(console, result, outcomes)
    if args.html is not None:
        from judge_arena.report.html import write_diff_report

        written = write_diff_report(args.html, result, outcomes)
        Console(stderr=True).print(f"wrote {escape(str(written))}", highlight=False)
    return EXIT_OK if all(g.passed for g in outcomes) else EXIT_FAILURES


def _simulate(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.sim.server import serve

    console.print(
        f"simulator on http://{args.host}:{args.port} (OpenAI: /v1/chat/completions, Anthropic: /v1/messages)"
    )
    serve(args.host, args.port)
    return EXIT_OK


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, exits: dict[int, str]
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its exit codes."""
    codes = "\n".join(
        textwrap.fill(meaning, 100, initial_indent=f"  {code:>3}  ", subsequent_indent=" " * 7)
        for code, meaning in exits.items()
    )
    return commands.add_parser(
        name,
        help=summary.replace("%", "%%"),
        description=summary,
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="judge-arena", description="An arena of LLM candidates judged by LLMs.")
    parser.add_argument("--version", action="version", version=f"judge-arena {version('judge-arena')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = _command(commands, "run", "generate, judge (raw and plain), rate, report", _RUN_EXITS)
    run.add_argument("config", type=Path, help="arena config (YAML)")
    _set_option(run)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the calls to make (net of the cache), their estimated tokens and cost, and whether the budget "
        "would stop the run; call nothing, write nothing",
    )
    run.add_argument(
        "--refresh",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="candidates whose answers are made anew instead of taken from the cache (which they replace); judge "
        "calls are then made only for games whose answers changed",
    )
    run.add_argument(
        "--compare-to",
        metavar="RUN",
        help="after the run, diff it against RUN (a folder, run id, latest or latest:NAME, resolved before the run "
        "starts, so latest is the previous run) with the config's gates: exit 1 when a gate fails",
    )
    run.set_defaults(handler=_run)
    generate = _command(
        commands,
        "generate",
        "make the candidates' answers alone, into the cache (no judge is called, no run folder written): a "
        "--dry-run then knows which plain-view games are their raw game again, judged once",
        {
            EXIT_OK: "every answer made (or in the cache)",
            EXIT_FAILURES: "some answers failed (each is named)",
            EXIT_BAD_INPUT: _RUN_EXITS[EXIT_BAD_INPUT],
            EXIT_BUDGET: "stopped at budget.max_usd; a rerun with a larger budget resumes",
            EXIT_SIGNAL + 2: "stopped by Ctrl-C (SIGINT); 143: by SIGTERM; the same command resumes",
        },
    )
    generate.add_argument("config", type=Path, help="arena config (YAML)")
    _set_option(generate)
    generate.set_defaults(handler=_generate)
    demo = _command(
        commands,
        "demo",
        "run the built-in demo arena on the simulator (offline, no key); its cache and runs go in FOLDER",
        _RUN_EXITS,
    )
    demo.add_argument("folder", type=Path, nargs="?", default=Path(), help="where cache/ and runs/ go (default: .)")
    _set_option(demo)
    demo.set_defaults(handler=_demo)
    validate = _command(
        commands,
        "validate",
        "check a config, its suites and templates; call nothing unless --ping",
        {
            EXIT_OK: "the config is usable (and, with --ping, every model answered)",
            EXIT_FAILURES: "with --ping: a model did not answer (each is named with what failed)",
            EXIT_BAD_INPUT: "bad input (config, suite, template): one line naming the file and field",
        },
    )
    validate.add_argument("config", type=Path, help="arena config (YAML)")
    validate.add_argument("--ping", action="store_true", help="make one tiny call to each model; exit 1 if any fails")
    _set_option(validate)
    validate.set_defaults(handler=_validate)
    metrics = _command(
        commands,
        "metrics",
        "compare a leaderboard with a reference: separability, agreement, correlation, Brier",
        _READ_EXITS,
    )
    metrics.add_argument(
        "evaluated",
        type=Path,
        help="run folder (or run id, latest, latest:NAME) or leaderboard.csv, Arena-Hard JSONL, or Arena CSV",
    )
    metrics.add_argument("reference", type=Path, help="the reference leaderboard, in any of the same formats")
    metrics.add_argument(
        "--map", type=Path, help="JSON map of model names, reference → evaluated (the other way round is detected)"
    )
    metrics.add_argument(
        "--agreement-order",
        choices=AGREEMENT_ORDERS,
        default=AGREEMENT_ORDERS[0],
        help="order separated pairs by their (lower, upper) intervals, as Arena-Hard-Auto, or by point estimates",
    )
    for prefix, whose in (("", "evaluated"), ("reference-", "reference")):
        metrics.add_argument(f"--{prefix}format", choices=FORMATS, default="auto", help=f"{whose} file format")
        metrics.add_argument(f"--{prefix}judge", help=f"judge of the {whose} run's view (run files only)")
        metrics.add_argument(f"--{prefix}normalization", help=f"normalization of the {whose} run's view")
        metrics.add_argument(
            f"--{prefix}style-control",
            help=f"style control of the {whose} run's view: none, or the style set of its raw+sc view",
        )
    _runs_dir(metrics)
    metrics.set_defaults(handler=_metrics)
    agreement = _command(
        commands,
        "agreement",
        "vote-level agreement between judges and humans (MT-Bench's procedure), kappa, consistency",
        {
            EXIT_OK: "done",
            EXIT_FAILURES: "two groups compared share no vote on the same question, model pair and turn (each "
            "is named), or with --judge, the run's own exit code (1, 3, 130, 143) when it did not complete",
            EXIT_BAD_INPUT: "bad input: one line naming the file and field",
        },
    )
    agreement.add_argument(
        "votes",
        type=Path,
        nargs="*",
        help="run folders (or run ids, latest, latest:NAME), battles.csv, vote files",
    )
    agreement.add_argument(
        "--judge",
        type=Path,
        metavar="CONFIG",
        help="first run CONFIG, whose 'votes' file carries the conversations, then compare its run with those votes "
        "(and any VOTES given)",
    )
    agreement.add_argument(
        "--group", action="append", help="voter group NAME=PATTERN[,PATTERN] (shell patterns); default: each voter"
    )
    agreement.add_argument(
        "--orders", choices=VOTE_ORDERS, default="combined", help="a run's two orders: one combined vote or two votes"
    )
    agreement.add_argument(
        "--run-turn", type=int, help="turn a run's votes are filed under; default: each verdict's own (its last turn)"
    )
    agreement.add_argument("--by-turn", action="store_true", help="one row per turn")
    agreement.add_argument("--no-within", action="store_true", help="skip agreement within each group")
    agreement.add_argument("--map", type=Path, help="JSON map of model names applied to every vote")
    _runs_dir(agreement)
    agreement.set_defaults(handler=_agreement)
    rate = _command(
        commands,
        "rate",
        "rate a battles file made elsewhere (Chatbot Arena / FastChat, MT-Bench human judgments, a run's battles.csv; "
        "JSON, JSONL, CSV, Parquet) into the boards and run folder a run gets",
        _READ_EXITS,
    )
    rate.add_argument("battles", type=Path, help="the battles file, or a run folder")
    rate.add_argument("--baseline", help="model the win rates are against (and the anchor, unless --anchor)")
    rate.add_argument("--anchor", help="model pinned at --anchor-rating (default: the baseline, else the mean)")
    rate.add_argument("--anchor-rating", type=float, help="rating of the anchor (default: 1000)")
    rate.add_argument("--rounds", type=int, help="bootstrap rounds, at least 100 (default: 100)")
    rate.add_argument("--seed", type=int, help="bootstrap seed (default: 0)")
    rate.add_argument(
        "--unit", choices=("prompt", "battle"), help="bootstrap unit (default: prompt when every battle has one)"
    )
    rate.add_argument(
        "--style-control",
        choices=("both", "length", "markdown", "none"),
        help="covariates of the raw+sc view when the file has style features (default: both)",
    )
    rate.add_argument("--min-prompts", type=int, help="prompts per model for a category's board (default: 2)")
    rate.add_argument("--category-map", type=Path, help="YAML or JSON file mapping categories to groups")
    rate.add_argument("--output-dir", type=Path, default=Path("runs"), help="where the run folder goes (default: runs)")
    rate.add_argument("--name", default="rated", help="run name, the start of the folder's name (default: rated)")
    rate.set_defaults(handler=_rate)
    report = _command(commands, "report", "write (or refresh) a run folder's report.html from its files", _READ_EXITS)
    report.add_argument("run", help="the run: a folder, a run id, latest or latest:NAME")
    _runs_dir(report)
    report.set_defaults(handler=_report)
    runs = _command(
        commands, "runs", "list the runs under an output folder (name, time, models, status, cost)", _READ_EXITS
    )
    _runs_dir(runs)
    runs.add_argument("--name", help="only the runs of this run name")
    runs.add_argument("--json", action="store_true", help="print the list as JSON")
    runs.add_argument("--path", metavar="RUN", help="print the folder of one run (a run id, latest or latest:NAME)")
    runs.set_defaults(handler=_runs)
    diff = _command(
        commands,
        "diff",
        "compare two runs: rating changes with 95 % intervals per view and category; check gates",
        {
            EXIT_OK: "every gate holds (or there are none)",
            EXIT_FAILURES: "a gate failed (each failure is named)",
            EXIT_BAD_INPUT: "bad input (a run folder, a gate): one line naming the file and field",
        },
    )
    diff.add_argument("old", help="the earlier run: a folder, a run id, latest or latest:NAME")
    diff.add_argument("new", help="the later run, likewise")
    _runs_dir(diff)
    diff.add_argument(
        "--gate",
        action="append",
        help="MODEL:KEY=VALUE[:KEY=VALUE…], e.g. my-model:max_drop=25:views=plain,raw+sc or "
        "my-model:not_significantly_worse_than=prod-model (added to the new run's config gates)",
    )
    diff.add_argument(
        "--method", choices=("paired", "independent"), help="bootstrap; default: paired when the runs share prompts"
    )
    diff.add_argument("--rounds", type=int, help="bootstrap rounds; default: the new run's")
    output = diff.add_mutually_exclusive_group()
    output.add_argument("--markdown", action="store_true", help="a short Markdown summary (for a CI comment)")
    output.add_argument("--json", action="store_true", help="the whole diff and the gates as JSON")
    diff.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="also write the diff as one self-contained HTML page (changes plotted with their intervals, gates); "
        "the exit code is the gates' all the same",
    )
    diff.set_defaults(handler=_diff)
    sim = _command(
        commands,
        "sim",
        "serve the simulated models (OpenAI and Anthropic APIs) in the foreground",
        {EXIT_OK: "stopped with Ctrl-C"},
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sim.add_argument("--port", type=int, default=8765, help="port to listen on (default: %(default)s)")
    sim.set_defaults(handler=_simulate)
    return parser


def _set_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--set",
        action="append",
        metavar="PATH=VALUE",
        help="override a config value, e.g. runner.concurrency=8 or candidates.NAME.params.temperature=0 (a list "
        "item by its name or index; VALUE read as YAML); repeatable",
    )


def _runs_dir(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="output folder run ids are looked up in (default: runs)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `judge-arena` console script."""
    args = _parser().parse_args(argv)
    from judge_arena.config import ConfigError  # not before: --help and --version need no config

    console = Console()
    try:
        code: int = args.handler(args, console)
    except (ConfigError, _BadInput) as exc:
        message = f"[red]error:[/red] {escape(str(exc))}"
        Console(stderr=True, soft_wrap=True).print(message, highlight=False, emoji=False)
        return EXIT_BAD_INPUT
    return code


if __name__ == "__main__":
    sys.exit(main())
