"""`bertlab-report DIR [DIR ...]`: tables, plots, report.html and the GLUE score of sweeps."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from bertlab.dashboard import write_html_report
from bertlab.glue import collect_submission, write_glue_files
from bertlab.report import ReportError, load_sweep, print_table, write_report

EXIT_NOTHING_TO_REPORT = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bertlab-report",
        description="Summarise sweeps (Hydra multirun directories) or runs: one row per "
        "configuration, mean and std over seeds, best first. Writes report.md, report.csv, "
        "PNG plots and a self-contained report.html; where GLUE jobs are present also "
        "glue.json, glue.md and glue.csv (and the submission when they wrote test predictions).",
    )
    parser.add_argument(
        "directories",
        nargs="+",
        metavar="DIR",
        help="sweep or run directories, e.g. multirun/2024-05-01/12-00-00; several are compared",
    )
    parser.add_argument(
        "--objective",
        help=(
            "metric to rank by (default: the task's objective from .hydra/config.yaml, else the "
            "first val/ metric)"
        ),
    )
    parser.add_argument(
        "--mode", choices=("max", "min"), help="whether higher or lower objective is better"
    )
    parser.add_argument("--out", help="where to write the report (default: the first DIR)")
    return parser.parse_args(argv)


def say(console: Console, prefix: str, style: str, message: str) -> None:
    # Text, not markup: paths and overrides may contain [brackets]; soft wrap keeps paths whole.
    console.print(Text.assemble((prefix, style), message), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console, errors = Console(), Console(stderr=True)
    try:
        sweep = load_sweep(args.directories, objective=args.objective, mode=args.mode)
    except ReportError as error:
        say(errors, "error: ", "red", str(error))
        return EXIT_NOTHING_TO_REPORT
    for skipped in sweep.skipped:
        say(errors, "warning: ", "yellow", f"skipped {skipped.path}: {skipped.reason}")
    out_dir = Path(args.out or args.directories[0])
    files = write_report(sweep, out_dir)
    glue = write_glue_files(args.directories, out_dir)
    if glue is not None:
        collect_submission(glue.rows, out_dir)
    html, html_warning = write_html_report(sweep, glue.rows if glue else [], out_dir)
    for warning in {files.plot_warning, html_warning} - {None}:
        say(errors, "warning: ", "yellow", warning)
    print_table(sweep, console)
    written = [files.markdown, files.csv, html] + ([glue.json] if glue else [])
    summary = (
        f"{len(sweep.jobs)} jobs in {len(sweep.configurations)} configurations, "
        f"{len(sweep.skipped)} skipped. Wrote {', '.join(map(str, written))} "
        f"and {len(files.plots)} plot(s)."
    )
    say(console, "", "", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
