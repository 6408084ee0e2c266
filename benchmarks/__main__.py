"""``python -m benchmarks report FILE.json``: render a results file's Markdown again.

The report is a pure function of the results JSON, so a committed results file can be
re-rendered without re-running anything: the main and load runs' (``benchmarks.report``)
and the Ray scaling run's (``benchmarks.ray_scaling``). ``-o FILE`` writes it; else it
goes to stdout. The benchmark itself runs as ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.ray_scaling import render_markdown as render_ray_scaling
from benchmarks.report import render_load_markdown, render_markdown


def render(results: Mapping[str, Any]) -> str:
    """The Markdown report of any results JSON: a load run's, a Ray scaling run's, or the main."""
    if results.get("mode") == "load":
        return render_load_markdown(results)
    if "ray" in results and "local" in results:
        return render_ray_scaling(results)
    return render_markdown(results)


def main(argv: Sequence[str] | None = None) -> int:
    """Render each given results JSON; 0 on success, 2 on a file that cannot be read."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="Render the Markdown report of a results JSON.")
    report.add_argument("results", type=Path, help="a results .json written by a benchmark run")
    report.add_argument("-o", "--output", type=Path, help="write the Markdown here")
    options = parser.parse_args(argv)
    try:
        results = json.loads(options.results.read_text(encoding="utf-8"))
        markdown = render(results)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: cannot render {options.results}: {exc}", file=sys.stderr)
        return 2
    if options.output is None:
        sys.stdout.write(markdown)
    else:
        options.output.write_text(markdown, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
