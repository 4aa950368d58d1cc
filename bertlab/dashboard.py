"""report.html: one self-contained page comparing the runs of one or more sweeps.

No server and no files beside it: plots are PNGs inlined as base64. Sections, each only
when the jobs have what it needs:

- the sweep table (bertlab/report.py) and the GLUE table (bertlab/glue.py);
- learning curves: the training loss and each task's objective against step, one colour
  per configuration, its mean over seeds as a line and the seeds' min-max as a band;
- hyperparameters: the objective against each numeric swept value, rates on a log axis;
- pretraining: validation MLM and NSP accuracy against step and against wall seconds.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from collections.abc import Sequence
from pathlib import Path

from bertlab.glue import CheckpointRow, markdown_header, markdown_rows
from bertlab.report import (
    Configuration,
    Sweep,
    configuration_label,
    numeric_values,
    read_logged_curves,
    split_override,
    table,
    task_objective,
    training_loss_metric,
)

HTML_FILE = "report.html"
PRETRAINING_METRICS = ("val/mlm_accuracy", "val/nsp_accuracy")
# Hyperparameters whose values are read on a log scale whatever their spread.
LOG_SCALE_WORDS = ("lr", "rate", "weight_decay", "eps")
Curves = dict[Path, dict[str, list[tuple[float, float]]]]


def write_html_report(
    sweep: Sweep, glue_rows: Sequence[CheckpointRow], out_dir: Path
) -> tuple[Path, str | None]:
    """Write report.html; the second value says why plots are missing (matplotlib absent)."""
    try:
        import matplotlib  # noqa: F401  (an optional extra: the tables do not need it)
    except ImportError:
        figures, warning = [], "matplotlib is not installed, report.html has no plots"
    else:
        curves = {job.directory: read_logged_curves(job.directory) for job in sweep.jobs}
        figures = [
            ("Learning curves", learning_curves_figure(sweep, curves)),
            ("Hyperparameters", hyperparameter_figure(sweep)),
            ("Pretraining", pretraining_figure(sweep, curves)),
        ]
        warning = None
    sections = [_table_section(sweep), _glue_section(glue_rows)]
    sections += [_figure_section(title, figure) for title, figure in figures if figure is not None]
    path = out_dir / HTML_FILE
    path.write_text(_page(f"bertlab report: {sweep.directory}", sections), encoding="utf-8")
    return path, warning


# ---------------------------------------------------------------- html


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
"""


def _page(title: str, sections: Sequence[str]) -> str:
    body = "\n".join(section for section in sections if section)
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table_section(sweep: Sweep) -> str:
    header, rows = table(sweep)
    direction = "higher" if sweep.objective_mode == "max" else "lower"
    note = (
        f"Ranked by <code>{html.escape(sweep.objective)}</code> ({direction} is better); "
        f"{len(sweep.jobs)} jobs, {len(sweep.skipped)} skipped; mean ± std over seeds."
    )
    return f"<h2>Runs</h2><p>{note}</p>{_html_table(header, rows)}"


def _glue_section(rows: Sequence[CheckpointRow]) -> str:
    if not rows:
        return ""
    note = (
        "Dev metrics on 0-100, mean over seeds (± std of the task score); GLUE = mean of the "
        "nine task scores. Cost: fine-tuning seconds, pretraining steps and tokens."
    )
    return f"<h2>GLUE</h2><p>{note}</p>{_html_table(markdown_header(), markdown_rows(rows))}"


def _figure_section(title: str, figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{data}'>"
    )


# ---------------------------------------------------------------- learning curves


def configuration_objective(configuration: Configuration, sweep: Sweep) -> str:
    """The configuration's own task objective (a GLUE suite has nine), else the sweep's."""
    declared, _ = task_objective(configuration.jobs[0].directory)
    return declared or sweep.objective


def seed_band(
    configuration: Configuration, curves: Curves, metric: str
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(steps, mean, min, max) over the configuration's seeds, at every step any seed logged."""
    per_step: dict[float, list[float]] = {}
    for job in configuration.jobs:
        for step, value in dict(curves[job.directory].get(metric, [])).items():  # last row wins
            per_step.setdefault(step, []).append(value)
    steps = sorted(per_step)
    return (
        steps,
        [statistics.fmean(per_step[s]) for s in steps],
        [min(per_step[s]) for s in steps],
        [max(per_step[s]) for s in steps],
    )


def learning_curves_figure(sweep: Sweep, curves: Curves):
    """One panel for the training loss and one per objective; a band spans the seeds."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    logged = {name for job_curves in curves.values() for name in job_curves}
    panels: dict[str, list[Configuration]] = {}
    loss = training_loss_metric(logged)
    if loss:
        panels[loss] = list(sweep.configurations)
    for configuration in sweep.configurations:
        objective = configuration_objective(configuration, sweep)
        if objective in logged:
            panels.setdefault(objective, []).append(configuration)
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(5.5 * columns, 3.8 * rows), layout="constrained")
    colours = {id(c): f"C{i % 10}" for i, c in enumerate(sweep.configurations)}
    for index, (metric, configurations) in enumerate(panels.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        for configuration in configurations:
            steps, mean, low, high = seed_band(configuration, curves, metric)
            if not steps:
                continue
            colour = colours[id(configuration)]
            label = configuration_label(configuration, sweep.swept_keys)
            axes.plot(steps, mean, color=colour, marker="o", markersize=3, label=label)
            if len(configuration.jobs) > 1:
                axes.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
        axes.set(xlabel="step", ylabel=metric, title=metric)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps, not 1.925
        axes.grid(alpha=0.3)
        if len(configurations) <= 10:
            axes.legend(fontsize="x-small")
    return figure


# ---------------------------------------------------------------- hyperparameters


def log_scale(key: str, values: Sequence[float]) -> bool:
    """Rates span decades: a log axis when the name says rate or the values span 10x."""
    if min(values) <= 0:
        return False
    named = any(word in key.split(".")[-1] for word in LOG_SCALE_WORDS)
    return named or max(values) / min(values) >= 10


def hyperparameter_figure(sweep: Sweep):
    """The objective against each numeric swept key: jobs as dots, mean ± std per configuration."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    keyed = []
    for key in sweep.swept_keys:
        configurations = [
            c for c in sweep.configurations if key in dict(map(split_override, c.overrides))
        ]
        xs = numeric_values(dict(map(split_override, c.overrides))[key] for c in configurations)
        if xs:
            keyed.append((key, configurations, xs))
    if not keyed:
        return None
    figure = Figure(figsize=(5.5 * len(keyed), 4), layout="constrained")
    for index, (key, configurations, xs) in enumerate(keyed):
        axes = figure.add_subplot(1, len(keyed), index + 1)
        for x, configuration in zip(xs, configurations, strict=True):
            values = configuration.values(sweep.objective)
            axes.scatter([x] * len(values), values, color="C0", alpha=0.35, s=18)
            mean, std = configuration.mean(sweep.objective), configuration.std(sweep.objective)
            if mean is not None:
                axes.errorbar(x, mean, yerr=std or 0.0, fmt="o", color="C1", capsize=4)
        if log_scale(key, xs):
            axes.set_xscale("log")
            axes.xaxis.set_minor_formatter(NullFormatter())
        ticks = sorted(set(xs))
        if len(ticks) <= 8:  # label the values tried, not matplotlib's powers of ten
            axes.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
        axes.tick_params(axis="x", labelrotation=30)
        axes.set(xlabel=key, ylabel=sweep.objective, title=f"{sweep.objective} vs {key}")
        axes.grid(alpha=0.3)
    return figure


# ---------------------------------------------------------------- pretraining


def pretraining_figure(sweep: Sweep, curves: Curves):
    """Validation MLM and NSP accuracy against step and against wall seconds, one line per job.

    metrics.csv has no clock; a step's wall time is step x the job's seconds per step
    (results.json's wall_seconds / steps), which counts setup time into the rate.
    """
    from matplotlib.figure import Figure

    jobs = [job for job in sweep.jobs if PRETRAINING_METRICS[0] in curves[job.directory]]
    metrics = [m for m in PRETRAINING_METRICS if any(m in curves[j.directory] for j in jobs)]
    if not jobs:
        return None
    figure = Figure(figsize=(11, 3.8 * len(metrics)), layout="constrained")
    labels = {
        job.directory: configuration_label(configuration, sweep.swept_keys)
        + (f" seed={job.seed}" if job.seed is not None else "")
        for configuration in sweep.configurations
        for job in configuration.jobs
    }
    for row, metric in enumerate(metrics):
        by_step = figure.add_subplot(len(metrics), 2, 2 * row + 1)
        by_time = figure.add_subplot(len(metrics), 2, 2 * row + 2)
        for colour, job in enumerate(jobs):
            points = sorted(dict(curves[job.directory].get(metric, [])).items())
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            style = {"color": f"C{colour % 10}", "marker": "o", "markersize": 3}
            by_step.plot(steps, values, label=labels.get(job.directory), **style)
            if job.steps and job.wall_seconds:
                seconds_per_step = job.wall_seconds / job.steps
                by_time.plot([s * seconds_per_step for s in steps], values, **style)
        by_step.set(xlabel="step", ylabel=metric, title=f"{metric} vs step")
        by_time.set(xlabel="wall seconds (at the job's mean step rate)", ylabel=metric)
        by_time.set_title(f"{metric} vs wall seconds")
        for axes in (by_step, by_time):
            axes.grid(alpha=0.3)
        if len(jobs) <= 10:
            by_step.legend(fontsize="x-small")
    return figure
