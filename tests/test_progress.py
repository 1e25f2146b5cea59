"""What a run shows while it works: plain lines at a steady interval in a log, bars with rate and ETA in a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from judge_arena.report.terminal import LiveProgress, LogProgress, progress_display
from judge_arena.runner import CallStats


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _log_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80, force_terminal=False), out


def test_a_log_gets_a_plain_line_at_a_steady_interval() -> None:
    console, out = _log_console()
    clock = FakeClock()
    with LogProgress(console, interval_s=30.0, clock=clock) as progress:
        progress.start("answers", 100)
        progress.start("verdicts", 2400)
        for _ in range(40):
            progress.advance("answers")
        assert out.getvalue() == ""  # nothing before the interval has passed
        clock.now += 30.0
        progress.calls(CallStats(made=35, shared=5, failed=2, max_usd=0.2, spent_usd=0.0512))
        clock.now += 10.0
        progress.advance("verdicts")  # within the next interval: no line
        assert len(out.getvalue().splitlines()) == 1
        clock.now += 20.0
        progress.advance("verdicts")
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "[30s] answers 40/100, verdicts 0/2,400; 1.3/s, ETA 30m45s; 35 calls made, 2 failed, $0.0512 of $0.2 spent"
    )
    assert lines[1].startswith("[1m00s] answers 40/100, verdicts 2/2,400; 0.7/s, ETA 58m31s; 35 calls made")
    assert len(lines) == 3
    assert lines[2].startswith("[1m00s] answers 40/100, verdicts 2/2,400")
    assert all(len(line) > 80 for line in lines)  # never wrapped at the log's 80 columns


def test_the_display_is_chosen_by_whether_the_output_is_a_terminal() -> None:
    assert isinstance(progress_display(_log_console()[0]), LogProgress)
    assert isinstance(progress_display(Console(file=io.StringIO(), force_terminal=True)), LiveProgress)


def test_bars_show_rate_and_eta_and_the_counters_do_not_squeeze_them() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system=None)
    with LiveProgress(console) as progress:
        progress.start("answers", 240)
        progress.start("verdicts", 2400)
        for _ in range(12):
            progress.advance("answers")
        progress.calls(CallStats(made=900, shared=530, cached=1200, failed=3, max_usd=20.0, spent_usd=1.2345))
    answers = next(line for line in out.getvalue().splitlines() if "answers " in line and "12/240" in line)
    bar = answers.rsplit("answers", 1)[1].split("12/240")[0]
    assert len(bar) >= 40, bar
    assert "━" in bar, bar
    assert "/s" in answers, answers
    assert "…" not in answers, answers
    assert "-:--:--" in answers or ":" in answers.split("/s", 1)[1]  # time left, then time elapsed
    assert "900 calls made, 530 shared within this run (identical requests), 1200 from the cache" in out.getvalue()
