"""The `judge-arena` command: wires the stages together; the logic lives in the stage modules.

Exit codes: 0 success, 1 the run finished with failed calls, 2 bad input (config, suite, template).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from judge_arena.config import ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_BAD_INPUT = 2


def _run(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.arena import load_inputs, run_arena
    from judge_arena.report.files import write_report
    from judge_arena.report.terminal import LiveProgress, print_run
    from judge_arena.views import rate_views

    inputs = load_inputs(load_config(args.config))
    with LiveProgress(console) as progress:
        run = run_arena(inputs, progress)
    views = rate_views(inputs.config, run.battles)
    folder = write_report(run, views)
    print_run(console, run, views, folder)
    return EXIT_FAILURES if run.failures else EXIT_OK


def _validate(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.arena import candidate_pairs, load_inputs

    inputs = load_inputs(load_config(args.config))
    config = inputs.config
    games = len(candidate_pairs(config)) * len(inputs.prompts) * len(config.judges) * len(config.normalizations)
    console.print(
        f"[green]ok[/green] {args.config}: {len(inputs.prompts)} prompts, {len(config.candidates)} candidates, "
        f"{len(config.judges)} judges, {games * 2} judge games at most"
    )
    return EXIT_OK


def _simulate(args: argparse.Namespace, console: Console) -> int:
    from judge_arena.sim.server import serve

    console.print(
        f"simulator on http://{args.host}:{args.port} (OpenAI: /v1/chat/completions, Anthropic: /v1/messages)"
    )
    serve(args.host, args.port)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="judge-arena", description="An arena of LLM candidates judged by LLMs.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="generate, judge (raw and plain), rate, report")
    run.add_argument("config", type=Path, help="arena config (YAML)")
    run.set_defaults(handler=_run)
    validate = commands.add_parser("validate", help="check a config, its suites and templates; call nothing")
    validate.add_argument("config", type=Path, help="arena config (YAML)")
    validate.set_defaults(handler=_validate)
    sim = commands.add_parser("sim", help="serve the simulated models (OpenAI and Anthropic APIs) in the foreground")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.set_defaults(handler=_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `judge-arena` console script."""
    args = _parser().parse_args(argv)
    console = Console()
    try:
        code: int = args.handler(args, console)
    except ConfigError as exc:
        message = f"[red]error:[/red] {escape(str(exc))}"
        Console(stderr=True, soft_wrap=True).print(message, highlight=False, emoji=False)
        return EXIT_BAD_INPUT
    return code


if __name__ == "__main__":
    sys.exit(main())
