"""`bertlab-report DIR`: a table, a CSV and plots of what won in a sweep."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.text import Text

from bertlab.report import ReportError, load_sweep, print_table, write_report

EXIT_NOTHING_TO_REPORT = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bertlab-report",
        description="Summarise a sweep (Hydra multirun directory): one row per configuration, "
        "mean and std over seeds, best first. Writes report.md, report.csv and PNG plots.",
    )
    parser.add_argument("directory", help="the sweep directory, e.g. multirun/2024-05-01/12-00-00")
    parser.add_argument(
        "--objective",
        help="metric to rank by (default: the task's objective from .hydra/config.yaml, else the first val/ metric)",
    )
    parser.add_argument(
        "--mode", choices=("max", "min"), help="whether higher or lower objective is better"
    )
    parser.add_argument("--out", help="where to write the report (default: DIR itself)")
    return parser.parse_args(argv)


def say(console: Console, prefix: str, style: str, message: str) -> None:
    # Text, not markup: paths and overrides may contain [brackets]; soft wrap keeps paths whole.
    console.print(Text.assemble((prefix, style), message), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console, errors = Console(), Console(stderr=True)
    try:
        sweep = load_sweep(args.directory, objective=args.objective, mode=args.mode)
    except ReportError as error:
        say(errors, "error: ", "red", str(error))
        return EXIT_NOTHING_TO_REPORT
    for skipped in sweep.skipped:
        say(errors, "warning: ", "yellow", f"skipped {skipped.path}: {skipped.reason}")
    files = write_report(sweep, args.out)
    if files.plot_warning:
        say(errors, "warning: ", "yellow", files.plot_warning)
    print_table(sweep, console)
    summary = (
        f"{len(sweep.jobs)} jobs in {len(sweep.configurations)} configurations, "
        f"{len(sweep.skipped)} skipped. Wrote {files.markdown}, {files.csv} and {len(files.plots)} plot(s)."
    )
    say(console, "", "", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
