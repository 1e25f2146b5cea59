"""report.html with 10,000 games: the page's size, the time to render it, and the time headless Chromium takes
from navigation to the end of the load event (the data parsed and the battle browser's first page drawn).

    .venv/bin/python bench/report_html.py [GAMES]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from chromium import Browser
from test_report_html import synthetic_run

from judge_arena.report.html import write_html_report
from judge_arena.runs import write_run


def main() -> None:
    games = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = write_run(synthetic_run(games), root, "bench")
        started = time.perf_counter()
        report = write_html_report(folder)
        render_s = time.perf_counter() - started
        print(f"{games} games: report.html {report.stat().st_size / 1e6:.1f} MB, rendered in {render_s:.1f} s")
        if shutil.which("chromium") is None:
            print("chromium not installed: load time not measured")
            return
        (root / "profile").mkdir()
        browser = Browser(root / "profile")
        try:
            loads = []
            for _ in range(3):
                browser.open(report)
                loads.append(browser.eval("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
        finally:
            browser.close()
        print(f"Chromium: loaded, parsed and the battle browser drawn in {min(loads):.2f} s (best of 3)")


if __name__ == "__main__":
    main()
