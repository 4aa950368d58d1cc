"""Summarise a finished sweep: one row per configuration, mean and std over seeds, best first.

A sweep directory (Hydra's `multirun/...`, or any folder of run directories) holds one
directory per job with `results.json` and `.hydra/`. Jobs that differ only in `seed`
form one configuration. `write_report` writes `report.md`, `report.csv` and PNG plots.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from omegaconf import OmegaConf

RESULTS_FILE = "results.json"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CONFIG_FILE = Path(".hydra") / "config.yaml"
LOGGER_METRICS_FILE = "metrics.csv"
SEED_KEY = "seed"


class ReportError(Exception):
    """Nothing to report on, or a request the sweep cannot answer; the message says which."""


class UnreadableJob(ValueError):
    """A job whose files cannot be read; it is skipped and named in the report."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Job:
    """One finished run of the sweep, as its `results.json` and `.hydra/` describe it."""

    directory: Path
    overrides: tuple[str, ...]  # without the seed: jobs with equal overrides are one configuration
    seed: str | None
    metrics: dict[str, float]
    steps: int | None = None
    wall_seconds: float | None = None


@dataclass(frozen=True)
class SkippedJob:
    path: Path
    reason: str


@dataclass
class Configuration:
    """The jobs of one configuration (all seeds) and their statistics."""

    overrides: tuple[str, ...]
    jobs: list[Job] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [job.metrics[metric] for job in self.jobs if metric in job.metrics]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        """Sample standard deviation over seeds; None with fewer than two values."""
        values = self.values(metric)
        return statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Sweep:
    directory: Path
    jobs: list[Job]
    skipped: list[SkippedJob]
    objective: str
    objective_mode: str  # "max" or "min"
    configurations: list[Configuration]  # best first by the objective

    @property
    def metric_names(self) -> list[str]:
        """The objective first, then every other metric any job logged, sorted."""
        others = {name for job in self.jobs for name in job.metrics} - {self.objective}
        return [self.objective, *sorted(others)]

    @property
    def swept_keys(self) -> list[str]:
        """Override keys whose value differs between configurations (seed excluded)."""
        parsed = [dict(map(split_override, c.overrides)) for c in self.configurations]
        return [
            key
            for key in _ordered_keys(self.configurations)
            if len({p.get(key) for p in parsed}) > 1
        ]

    @property
    def constant_overrides(self) -> list[str]:
        """Overrides every configuration shares, e.g. `task=glue/mrpc` given once on the command
        line.
        """
        swept = set(self.swept_keys)
        first = self.configurations[0].overrides if self.configurations else ()
        return [o for o in first if split_override(o)[0] not in swept]


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    csv: Path
    plots: list[Path]
    plot_warning: str | None = None  # why plots are missing, e.g. matplotlib not installed


# ---------------------------------------------------------------- reading a sweep


def split_override(override: str) -> tuple[str, str]:
    """`+optimizer.lr=2e-5` -> (`optimizer.lr`, `2e-5`); the `+`/`++`/`~` prefix is not part of the
    key.
    """
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def natural_key(path: Path) -> list:
    """Sort job directories 0, 1, 2, ..., 10 rather than 0, 1, 10, 2."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Every directory holding a `results.json` or a Hydra `.hydra/overrides.yaml`.

    Looking for `.hydra/` too finds the jobs that failed before writing results, so they
    are reported as skipped instead of vanishing from the summary.
    """
    with_results = {path.parent for path in sweep_dir.rglob(RESULTS_FILE)}
    with_hydra = {path.parent.parent for path in sweep_dir.rglob(str(OVERRIDES_FILE))}
    return sorted(with_results | with_hydra, key=natural_key)


def read_overrides(job_dir: Path, results: dict) -> list[str]:
    """The job's command-line overrides; Hydra's own record wins over the copy in results.json."""
    overrides_path = job_dir / OVERRIDES_FILE
    if not overrides_path.is_file():
        return [str(o) for o in results.get("overrides", [])]
    try:
        overrides = yaml.safe_load(overrides_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UnreadableJob(overrides_path, f"corrupt overrides.yaml: {error}") from error
    if not isinstance(overrides, list):
        raise UnreadableJob(overrides_path, "overrides.yaml is not a list of overrides")
    return [str(o) for o in overrides]


def read_results(job_dir: Path) -> dict:
    """The parsed `results.json`; UnreadableJob says what is wrong with it."""
    path = job_dir / RESULTS_FILE
    if not path.is_file():
        raise UnreadableJob(path, "no results.json (the job failed or is still running)")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UnreadableJob(path, f"corrupt results.json: {error}") from error
    metrics = results.get("metrics") if isinstance(results, dict) else None
    if not isinstance(metrics, dict):
        raise UnreadableJob(path, "results.json has no 'metrics' mapping")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()):
        raise UnreadableJob(path, "results.json 'metrics' holds a value that is not a number")
    return results


def read_job(job_dir: Path) -> Job:
    results = read_results(job_dir)
    overrides = read_overrides(job_dir, results)
    seeds = [value for key, value in map(split_override, overrides) if key == SEED_KEY]
    return Job(
        directory=job_dir,
        overrides=tuple(o for o in overrides if split_override(o)[0] != SEED_KEY),
        seed=seeds[-1] if seeds else None,
        metrics={name: float(value) for name, value in results["metrics"].items()},
        steps=results.get("steps"),
        wall_seconds=results.get("wall_seconds"),
    )


def read_jobs(job_dirs: Iterable[Path]) -> tuple[list[Job], list[SkippedJob]]:
    jobs, skipped = [], []
    for job_dir in job_dirs:
        try:
            jobs.append(read_job(job_dir))
        except UnreadableJob as error:
            skipped.append(SkippedJob(error.path, error.reason))
    return jobs, skipped


def task_objective(job_dir: Path) -> tuple[str | None, str | None]:
    """`task.objective` and `task.objective_mode` from the job's saved Hydra config, if any."""
    config_path = job_dir / CONFIG_FILE
    try:
        config = OmegaConf.load(config_path)
    except (OSError, yaml.YAMLError):  # no usable config: fall back to --objective or a val metric
        return None, None
    return (
        OmegaConf.select(config, "task.objective", default=None),
        OmegaConf.select(config, "task.objective_mode", default=None),
    )


def guess_mode(metric: str) -> str:
    """Losses, perplexities and errors go down; accuracies, F1 and correlations go up."""
    return "min" if re.search(r"loss|perplexity|error", metric) else "max"


def choose_objective(
    jobs: Sequence[Job], objective: str | None, mode: str | None
) -> tuple[str, str]:
    """The requested metric, else the task's declared objective, else the first `val` metric."""
    declared, declared_mode = task_objective(jobs[0].directory)
    if objective is None:
        objective = declared or _first_validation_metric(jobs)
    logged = {name for job in jobs for name in job.metrics}
    if objective not in logged:
        raise ReportError(
            f"objective {objective!r} is in no job's metrics; logged: {', '.join(sorted(logged))}"
        )
    if mode is None:
        mode = declared_mode if objective == declared and declared_mode else guess_mode(objective)
    if mode not in ("max", "min"):
        raise ReportError(f"objective mode {mode!r}: use 'max' or 'min'")
    return objective, mode


def _first_validation_metric(jobs: Sequence[Job]) -> str:
    for job in jobs:
        for name in job.metrics:
            if name.startswith("val"):
                return name
    raise ReportError("no job logged a validation metric; name one with --objective")


def _ordered_keys(configurations: Sequence[Configuration]) -> list[str]:
    keys: dict[str, None] = {}
    for configuration in configurations:
        keys.update((split_override(o)[0], None) for o in configuration.overrides)
    return list(keys)


def group_by_configuration(jobs: Iterable[Job]) -> list[Configuration]:
    configurations: dict[tuple[str, ...], Configuration] = {}
    for job in jobs:
        key = tuple(
            sorted(job.overrides)
        )  # the order of overrides on the command line is no difference
        configurations.setdefault(key, Configuration(job.overrides)).jobs.append(job)
    return list(configurations.values())


def rank_configurations(
    configurations: list[Configuration], objective: str, mode: str
) -> list[Configuration]:
    """Best first; configurations without the objective last."""

    def sort_key(configuration: Configuration) -> tuple[bool, float]:
        mean = configuration.mean(objective)
        if mean is None or math.isnan(mean):
            return True, 0.0
        return False, -mean if mode == "max" else mean

    return sorted(configurations, key=sort_key)


def load_sweep(
    sweep_dir: str | Path | Sequence[str | Path],
    objective: str | None = None,
    mode: str | None = None,
) -> Sweep:
    """Read every job under `sweep_dir` (or several); ReportError when there is nothing to report.

    Jobs of several directories are told apart by a `source=DIR` entry among their
    overrides, so equal overrides in two sweeps stay two configurations.
    """
    directories = (
        [Path(sweep_dir)] if isinstance(sweep_dir, str | Path) else list(map(Path, sweep_dir))
    )
    jobs, skipped = [], []
    for directory in directories:
        if not directory.is_dir():
            raise ReportError(f"{directory}: not a directory")
        found, unreadable = read_jobs(find_job_dirs(directory))
        if len(directories) > 1:
            found = [
                replace(job, overrides=(f"source={directory}", *job.overrides)) for job in found
            ]
        jobs, skipped = jobs + found, skipped + unreadable
    sweep_dir = Path(os.path.commonpath(directories)) if len(directories) > 1 else directories[0]
    if not jobs:
        found = f" ({len(skipped)} job(s) without readable results)" if skipped else ""
        names = ", ".join(map(str, directories))
        raise ReportError(f"{names}: no {RESULTS_FILE} found under it{found}")
    objective, mode = choose_objective(jobs, objective, mode)
    configurations = rank_configurations(group_by_configuration(jobs), objective, mode)
    return Sweep(sweep_dir, jobs, skipped, objective, mode, configurations)


# ---------------------------------------------------------------- tables


def format_statistic(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def short_value(value: str) -> str:
    """Optuna's `2.368863950364079e-05` as `2.369e-05`; the CSV keeps every digit."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 8 else f"{number:.4g}"


def table(sweep: Sweep) -> tuple[list[str], list[list[str]]]:
    """Header and rows shared by the Markdown file and the printed table."""
    swept = sweep.swept_keys
    header = ["rank", *swept, "seeds", *sweep.metric_names]
    rows = []
    for rank, configuration in enumerate(sweep.configurations, start=1):
        values = dict(map(split_override, configuration.overrides))
        rows.append(
            [
                str(rank),
                *(short_value(values.get(key, "-")) for key in swept),
                str(len(configuration.jobs)),
                *(
                    format_statistic(configuration.mean(m), configuration.std(m))
                    for m in sweep.metric_names
                ),
            ]
        )
    return header, rows


def render_markdown(sweep: Sweep) -> str:
    header, rows = table(sweep)
    direction = "higher" if sweep.objective_mode == "max" else "lower"
    lines = [
        f"# Sweep report: {sweep.directory}",
        "",
        f"Objective: `{sweep.objective}` ({direction} is better). "
        f"{len(sweep.jobs)} jobs in {len(sweep.configurations)} configurations; "
        f"{len(sweep.skipped)} skipped. Mean ± sample standard deviation over seeds.",
    ]
    if sweep.constant_overrides:
        lines += ["", "Common overrides: " + " ".join(f"`{o}`" for o in sweep.constant_overrides)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if sweep.skipped:
        lines += ["", "## Skipped jobs", ""] + [f"- `{s.path}`: {s.reason}" for s in sweep.skipped]
    return "\n".join(lines) + "\n"


def write_csv(sweep: Sweep, path: Path) -> None:
    """Full-precision numbers, one row per configuration, for spreadsheets and pandas."""
    swept = sweep.swept_keys
    metric_columns = [f"{m}_{stat}" for m in sweep.metric_names for stat in ("mean", "std")]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "rank",
                "overrides",
                *swept,
                "seeds",
                *metric_columns,
                "steps_mean",
                "wall_seconds_mean",
                "jobs",
            ]
        )
        for rank, configuration in enumerate(sweep.configurations, start=1):
            values = dict(map(split_override, configuration.overrides))
            statistics_ = [
                _blank_if_none(s)
                for m in sweep.metric_names
                for s in (configuration.mean(m), configuration.std(m))
            ]
            writer.writerow(
                [
                    rank,
                    " ".join(configuration.overrides),
                    *(values.get(key, "") for key in swept),
                    len(configuration.jobs),
                    *statistics_,
                    _blank_if_none(_mean_of(job.steps for job in configuration.jobs)),
                    _blank_if_none(_mean_of(job.wall_seconds for job in configuration.jobs)),
                    ";".join(
                        str(job.directory.relative_to(sweep.directory))
                        for job in configuration.jobs
                    ),
                ]
            )


def _mean_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _blank_if_none(value: float | None) -> float | str:
    return "" if value is None else value


def print_table(sweep: Sweep, console=None) -> None:
    """The report table on the terminal, via rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    header, rows = table(sweep)
    direction = "higher" if sweep.objective_mode == "max" else "lower"
    rich_table = Table(title=f"{sweep.directory}: {sweep.objective} ({direction} is better)")
    for column in header:
        rich_table.add_column(column, justify="left" if column in sweep.swept_keys else "right")
    for row in rows:
        rich_table.add_row(*row)
    console.print(rich_table)


# ---------------------------------------------------------------- plots


def numeric_values(values: Iterable[str]) -> list[float] | None:
    """The values as floats, or None if any is not a number (e.g. `model=base`)."""
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def configuration_label(configuration: Configuration, swept: Sequence[str]) -> str:
    labels = [o for o in configuration.overrides if split_override(o)[0] in swept]
    return " ".join(labels) or "(defaults)"


def _safe_file_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def plot_objective_vs_hyperparameters(sweep: Sweep, out_dir: Path) -> list[Path]:
    """One PNG per numeric swept hyperparameter: every job as a dot, each configuration's mean ±
    std.
    """
    from matplotlib.figure import Figure

    paths = []
    for key in sweep.swept_keys:
        configurations = [
            c for c in sweep.configurations if key in dict(map(split_override, c.overrides))
        ]
        xs = numeric_values(dict(map(split_override, c.overrides))[key] for c in configurations)
        if not xs:
            continue
        figure = Figure(figsize=(6, 4), layout="constrained")
        axes = figure.add_subplot()
        for x, configuration in zip(xs, configurations, strict=True):
            values = configuration.values(sweep.objective)
            axes.scatter([x] * len(values), values, color="C0", alpha=0.35, s=18)
            mean, std = configuration.mean(sweep.objective), configuration.std(sweep.objective)
            if mean is not None:
                axes.errorbar(x, mean, yerr=std or 0.0, fmt="o", color="C1", capsize=4)
        if min(xs) > 0 and max(xs) / min(xs) >= 10:  # learning rates span decades
            axes.set_xscale("log")
        axes.set(
            xlabel=key,
            ylabel=sweep.objective,
            title=f"{sweep.objective} vs {key} (dots: jobs, bars: mean ± std)",
        )
        path = out_dir / f"objective_vs_{_safe_file_name(key)}.png"
        figure.savefig(path, dpi=100)
        paths.append(path)
    return paths


def read_logged_curves(job_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series per metric from the job's CSV-logger files (resumed runs add
    versions).
    """
    curves: dict[str, list[tuple[float, float]]] = {}
    for path in sorted(job_dir.rglob(LOGGER_METRICS_FILE), key=natural_key):
        with path.open(newline="") as file:
            for row in csv.DictReader(file):
                step = row.get("step")
                for name, value in row.items():
                    if (
                        name not in ("step", "epoch")
                        and value not in (None, "")
                        and step not in (None, "")
                    ):
                        curves.setdefault(name, []).append((float(step), float(value)))
    return curves


def training_loss_metric(names: Iterable[str]) -> str | None:
    candidates = sorted(n for n in names if n.startswith("train") and "loss" in n)
    # Lightning logs both `train/loss_step` and `train/loss_epoch` for on_step+on_epoch metrics.
    for preferred in ("train/loss", "train/loss_step"):
        if preferred in candidates:
            return preferred
    return candidates[0] if candidates else None


def plot_learning_curves(sweep: Sweep, out_dir: Path) -> list[Path]:
    """Training loss and the objective against step, one line per job, one colour per
    configuration.
    """
    from matplotlib.figure import Figure

    curves = {job.directory: read_logged_curves(job.directory) for job in sweep.jobs}
    logged = {name for job_curves in curves.values() for name in job_curves}
    metrics = [m for m in (training_loss_metric(logged), sweep.objective) if m in logged]
    if not metrics:
        return []
    figure = Figure(figsize=(6 * len(metrics), 4), layout="constrained")
    swept = sweep.swept_keys
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), index + 1)
        for colour, configuration in enumerate(sweep.configurations):
            label = configuration_label(configuration, swept)
            for job in configuration.jobs:
                points = curves[job.directory].get(metric, [])
                if points:
                    steps, values = zip(*points, strict=True)
                    # markers: a short run may have a single validation point
                    axes.plot(
                        steps,
                        values,
                        color=f"C{colour % 10}",
                        alpha=0.7,
                        marker="o",
                        markersize=3,
                        label=label,
                    )
                    label = None  # one legend entry per configuration, not per seed
        axes.set(xlabel="step", ylabel=metric, title=metric)
        if index == len(metrics) - 1 and len(sweep.configurations) <= 12:
            axes.legend(fontsize="small")
    path = out_dir / "learning_curves.png"
    figure.savefig(path, dpi=100)
    return [path]


def write_plots(sweep: Sweep, out_dir: Path) -> tuple[list[Path], str | None]:
    try:
        import matplotlib  # noqa: F401  (an optional extra: the tables do not need it)
    except ImportError:
        return [], "matplotlib is not installed, no plots written: pip install 'bertlab[report]'"
    return plot_objective_vs_hyperparameters(sweep, out_dir) + plot_learning_curves(
        sweep, out_dir
    ), None


# ---------------------------------------------------------------- all of it


def write_report(sweep: Sweep, out_dir: str | Path | None = None) -> ReportFiles:
    """Write `report.md`, `report.csv` and the PNG plots into `out_dir` (default: the sweep
    directory).
    """
    out_dir = Path(out_dir) if out_dir is not None else sweep.directory
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, csv_path = out_dir / "report.md", out_dir / "report.csv"
    markdown_path.write_text(render_markdown(sweep))
    write_csv(sweep, csv_path)
    plots, plot_warning = write_plots(sweep, out_dir)
    return ReportFiles(markdown_path, csv_path, plots, plot_warning)
