"""The GLUE score of fine-tuning jobs: per checkpoint, per task, over seeds (docs/glue.md).

A job is a run directory with `results.json` and `.hydra/config.yaml` (any bertlab-train
run of a `glue/*` task). Jobs are grouped by their `model.init` (plus any other override
that differs between jobs of the same task, say `optimizer.lr`) and by task:

- a task's metrics are the official ones on the 0-100 scale (MRPC and QQP: F1 and
  accuracy; STS-B: Pearson and Spearman; MNLI: matched and mismatched accuracy);
- the task score is the unweighted mean of its metrics;
- the GLUE score is the mean of the nine task scores (the diagnostic set AX excluded),
  and papers (BERT, cramming) also report the average without WNLI;
- over seeds the headline is the mean; the standard deviation and the best seed are
  written next to it.

`write_glue_files(dir)` writes glue.json, glue.md and glue.csv; `collect_submission`
gathers the eleven leaderboard files into one folder and a zip per checkpoint.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf

RESULTS_FILE = "results.json"
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
HEADLINE = "mean"  # over seeds; the std and the best seed are reported beside it
NO_INIT = "none"  # the row of jobs trained from random weights (model.init=null)
SUBMISSION_DIR = "submission"


@dataclass(frozen=True)
class GlueTask:
    key: str  # glue.json's task key
    directory: str  # the task's folder in the GLUE download
    metrics: tuple[str, ...]  # results.json names of the official metrics
    submission: tuple[str, ...]  # the leaderboard file stems its test predictions fill


# In the leaderboard's column order. `task.name` of conf/task/glue/*.yaml -> the task.
GLUE_TASKS: dict[str, GlueTask] = {
    "glue/cola": GlueTask("cola", "CoLA", ("val/matthews_corrcoef",), ("CoLA",)),
    "glue/sst2": GlueTask("sst2", "SST-2", ("val/accuracy",), ("SST-2",)),
    "glue/mrpc": GlueTask("mrpc", "MRPC", ("val/f1", "val/accuracy"), ("MRPC",)),
    "glue/stsb": GlueTask("stsb", "STS-B", ("val/pearson", "val/spearman"), ("STS-B",)),
    "glue/qqp": GlueTask("qqp", "QQP", ("val/f1", "val/accuracy"), ("QQP",)),
    "glue/mnli": GlueTask(
        "mnli",
        "MNLI",
        ("val_matched/accuracy", "val_mismatched/accuracy"),
        ("MNLI-m", "MNLI-mm", "AX"),
    ),
    "glue/qnli": GlueTask("qnli", "QNLI", ("val/accuracy",), ("QNLI",)),
    "glue/rte": GlueTask("rte", "RTE", ("val/accuracy",), ("RTE",)),
    "glue/wnli": GlueTask("wnli", "WNLI", ("val/accuracy",), ("WNLI",)),
}
TASK_KEYS = [task.key for task in GLUE_TASKS.values()]
SUBMISSION_FILES = [f"{stem}.tsv" for task in GLUE_TASKS.values() for stem in task.submission]
DIAGNOSTIC_DIR = "diagnostic"  # AX: diagnostic/diagnostic.tsv, scored by the MNLI model


# ---------------------------------------------------------------- scores


def task_score(metrics: Mapping[str, float]) -> float:
    """The unweighted mean of a task's metrics (0-100)."""
    return statistics.fmean(metrics.values())


def glue_scores(task_scores: Mapping[str, float]) -> tuple[float | None, float | None]:
    """(GLUE score, average without WNLI); None unless all nine tasks have a score."""
    if any(key not in task_scores for key in TASK_KEYS):
        return None, None
    without_wnli = [task_scores[key] for key in TASK_KEYS if key != "wnli"]
    return statistics.fmean(task_scores[key] for key in TASK_KEYS), statistics.fmean(without_wnli)


# ---------------------------------------------------------------- reading jobs


@dataclass(frozen=True)
class GlueJob:
    """One fine-tuning run of a GLUE task."""

    directory: Path
    task: GlueTask
    init: str  # model.init, or NO_INIT
    seed: object
    overrides: tuple[str, ...]  # the command-line overrides, task / seed / model.init excluded
    metrics: dict[str, float]  # the official metrics, 0-100
    wall_seconds: float

    @property
    def score(self) -> float:
        return task_score(self.metrics)


def find_glue_jobs(directories: Iterable[str | Path]) -> list[GlueJob]:
    """Every finished GLUE job under the directories; other and unfinished jobs are skipped."""
    jobs = []
    for directory in directories:
        for results_path in sorted(Path(directory).rglob(RESULTS_FILE)):
            job = read_glue_job(results_path.parent)
            if job is not None:
                jobs.append(job)
    return jobs


def read_glue_job(job_dir: Path) -> GlueJob | None:
    """The job in `job_dir`, or None when it is not a GLUE task or lacks its metrics."""
    try:
        results = json.loads((job_dir / RESULTS_FILE).read_text())
        config = OmegaConf.load(job_dir / CONFIG_FILE)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    task = GLUE_TASKS.get(results.get("task", ""))
    logged = results.get("metrics") or {}
    if task is None or any(name not in logged for name in task.metrics):
        return None
    init = OmegaConf.select(config, "model.init", default=None)
    return GlueJob(
        directory=job_dir,
        task=task,
        init=str(init) if init else NO_INIT,
        seed=OmegaConf.select(config, "seed", default=None),
        overrides=tuple(_other_overrides(job_dir, results)),
        metrics={name: 100.0 * float(logged[name]) for name in task.metrics},
        wall_seconds=float(results.get("wall_seconds") or 0.0),
    )


def _other_overrides(job_dir: Path, results: dict) -> list[str]:
    """Overrides that may set jobs of one checkpoint apart (lr, epochs), not
    task/seed/init/glue_dir.
    """
    try:
        overrides = yaml.safe_load((job_dir / OVERRIDES_FILE).read_text())
    except (OSError, yaml.YAMLError):
        overrides = results.get("overrides")
    ignored = {"task", "glue_task", "seed", "model.init", "glue_dir", "task.data_dir"}
    return [
        str(o)
        for o in overrides or []
        if str(o).split("=", 1)[0].lstrip("+~") not in ignored and not str(o).startswith("hydra")
    ]


# ---------------------------------------------------------------- the table


@dataclass
class TaskResult:
    """One task of one checkpoint: the jobs (one per seed) and their statistics."""

    task: GlueTask
    jobs: list[GlueJob]

    @property
    def metrics(self) -> dict[str, float]:
        """The headline: each metric's mean over seeds."""
        return {m: statistics.fmean(j.metrics[m] for j in self.jobs) for m in self.task.metrics}

    @property
    def score(self) -> float:
        return task_score(self.metrics)

    @property
    def score_std(self) -> float | None:
        """Sample standard deviation of the task score over seeds; None for one seed."""
        return statistics.stdev(j.score for j in self.jobs) if len(self.jobs) > 1 else None

    @property
    def best(self) -> GlueJob:
        return max(self.jobs, key=lambda job: job.score)

    def as_json(self) -> dict:
        best = self.best
        return {
            "metrics": self.metrics,
            "score": self.score,
            "seeds": len(self.jobs),
            "score_std": self.score_std,
            "score_best": best.score,
            "best_seed": best.seed,
            "wall_seconds": sum(job.wall_seconds for job in self.jobs),
            "jobs": [str(job.directory) for job in self.jobs],
        }


@dataclass
class CheckpointRow:
    """A row of the table: every task fine-tuned from one checkpoint, with one set of overrides."""

    init: str
    overrides: tuple[str, ...]
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    pretraining: dict = field(default_factory=dict)  # steps and tokens, when init is a bertlab run

    @property
    def label(self) -> str:
        return " ".join([self.init, *self.overrides])

    @property
    def scores(self) -> tuple[float | None, float | None]:
        return glue_scores({key: result.score for key, result in self.tasks.items()})

    @property
    def best_scores(self) -> tuple[float | None, float | None]:
        return glue_scores({key: result.best.score for key, result in self.tasks.items()})

    @property
    def wall_seconds(self) -> float:
        return sum(job.wall_seconds for result in self.tasks.values() for job in result.jobs)

    def as_json(self) -> dict:
        glue, without_wnli = self.scores
        best, best_without_wnli = self.best_scores
        return {
            "init": self.init,
            "overrides": list(self.overrides),
            "tasks": {key: self.tasks[key].as_json() for key in TASK_KEYS if key in self.tasks},
            "glue_score": glue,
            "glue_score_without_wnli": without_wnli,
            "glue_score_best_seeds": best,
            "glue_score_best_seeds_without_wnli": best_without_wnli,
            "missing_tasks": [key for key in TASK_KEYS if key not in self.tasks],
            "fine_tuning_wall_seconds": self.wall_seconds,
            **{f"pretraining_{name}": value for name, value in self.pretraining.items()},
        }


def glue_table(jobs: Sequence[GlueJob]) -> list[CheckpointRow]:
    """One row per checkpoint (and per value of any override that differs between jobs)."""
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if jobs else set()
    rows: dict[tuple, CheckpointRow] = {}
    for job in jobs:
        distinct = tuple(o for o in job.overrides if o not in shared)
        key = (job.init, tuple(sorted(distinct)))
        row = rows.setdefault(key, CheckpointRow(job.init, distinct))
        row.tasks.setdefault(job.task.key, TaskResult(job.task, [])).jobs.append(job)
    for row in rows.values():
        row.pretraining = pretraining_cost(row.init)
    return list(rows.values())


def pretraining_cost(init: str) -> dict:
    """Steps and tokens seen by a bertlab pretraining checkpoint, read from its run dir.

    A `.ckpt` at RUN/checkpoints/NAME.ckpt: RUN/results.json gives the steps (else the
    checkpoint's global_step); tokens are steps x global batch x max_seq_length from
    RUN/.hydra/config.yaml, the sequence slots trained on (padding included).
    """
    path = Path(init)
    if path.suffix != ".ckpt" or not path.is_file():
        return {}
    run_dir = path.parent.parent
    try:
        steps = int(json.loads((run_dir / RESULTS_FILE).read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        steps = _checkpoint_global_step(path)
    if steps is None:
        return {}
    cost = {"steps": steps}
    try:
        config = OmegaConf.load(run_dir / CONFIG_FILE)
    except (OSError, yaml.YAMLError):
        return cost
    per_step = [
        OmegaConf.select(config, key, default=None)
        for key in (
            "task.batch_size",
            "task.max_seq_length",
            "trainer.accumulate_grad_batches",
            "trainer.devices",
            "trainer.num_nodes",
        )
    ]
    if all(isinstance(value, int) for value in per_step):
        cost["tokens"] = steps * _product(per_step)
    return cost


def _checkpoint_global_step(path: Path) -> int | None:
    import torch  # only for a checkpoint without its run's results.json

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an unreadable checkpoint only costs the cost column
        return None
    return checkpoint.get("global_step")


def _product(values: Iterable[int]) -> int:
    result = 1
    for value in values:
        result *= value
    return result


# ---------------------------------------------------------------- files


def glue_json(rows: Sequence[CheckpointRow]) -> dict:
    return {
        "headline": f"{HEADLINE} over seeds (0-100); score_std and score_best beside it",
        "checkpoints": {row.label: row.as_json() for row in rows},
    }


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _task_cell(result: TaskResult | None) -> str:
    """`89.3/85.4` for a two-metric task, `± std` over seeds when there are several."""
    if result is None:
        return "-"
    cell = "/".join(_number(v) for v in result.metrics.values())
    std = result.score_std
    return cell if std is None else f"{cell} ± {std:.1f}"


def markdown_header() -> list[str]:
    names = [task.directory for task in GLUE_TASKS.values()]
    return [
        "checkpoint",
        *names,
        "GLUE",
        "GLUE w/o WNLI",
        "fine-tune s",
        "pretrain steps",
        "pretrain tokens",
    ]


def markdown_rows(rows: Sequence[CheckpointRow]) -> list[list[str]]:
    """The table cells, shared by glue.md and report.html."""
    cells = []
    for row in rows:
        glue, without_wnli = row.scores
        cells.append(
            [
                row.label,
                *(_task_cell(row.tasks.get(key)) for key in TASK_KEYS),
                _number(glue),
                _number(without_wnli),
                f"{row.wall_seconds:.0f}",
                str(row.pretraining.get("steps", "-")),
                _tokens(row.pretraining.get("tokens")),
            ]
        )
    return cells


def _tokens(count: int | None) -> str:
    if count is None:
        return "-"
    for unit, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def render_markdown(rows: Sequence[CheckpointRow]) -> str:
    header = markdown_header()
    lines = [
        "# GLUE (dev)",
        "",
        "Metrics on 0-100: MRPC and QQP F1/accuracy, STS-B Pearson/Spearman, MNLI matched/"
        "mismatched, CoLA Matthews, others accuracy. Each cell is the mean over seeds "
        "(± the task score's standard deviation with several seeds). GLUE = mean of the "
        "nine task scores (a task's score is the mean of its metrics); AX is not scored.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in markdown_rows(rows)]
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[CheckpointRow], path: Path) -> None:
    """One row per checkpoint, full precision: each metric, task score, std and seeds per task."""
    columns = ["checkpoint", "init", "overrides"]
    for task in GLUE_TASKS.values():
        columns += [f"{task.key}_{metric}" for metric in task.metrics]
        columns += [f"{task.key}_score", f"{task.key}_score_std", f"{task.key}_seeds"]
    columns += [
        "glue_score",
        "glue_score_without_wnli",
        "glue_score_best_seeds",
        "fine_tuning_wall_seconds",
        "pretraining_steps",
        "pretraining_tokens",
    ]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for row in rows:
            record: dict = {"checkpoint": row.label, "init": row.init}
            record["overrides"] = " ".join(row.overrides)
            for key, result in row.tasks.items():
                for metric, value in result.metrics.items():
                    record[f"{key}_{metric}"] = value
                record[f"{key}_score"] = result.score
                record[f"{key}_score_std"] = result.score_std
                record[f"{key}_seeds"] = len(result.jobs)
            record["glue_score"], record["glue_score_without_wnli"] = row.scores
            record["glue_score_best_seeds"] = row.best_scores[0]
            record["fine_tuning_wall_seconds"] = row.wall_seconds
            record["pretraining_steps"] = row.pretraining.get("steps")
            record["pretraining_tokens"] = row.pretraining.get("tokens")
            writer.writerow({k: "" if v is None else v for k, v in record.items()})


@dataclass(frozen=True)
class GlueFiles:
    json: Path
    markdown: Path
    csv: Path
    rows: list[CheckpointRow]


def write_glue_files(
    directories: Sequence[str | Path], out_dir: str | Path | None = None
) -> GlueFiles | None:
    """glue.json, glue.md and glue.csv for the GLUE jobs under `directories`; None if there are
    none.
    """
    rows = glue_table(find_glue_jobs(directories))
    if not rows:
        return None
    out = Path(out_dir) if out_dir is not None else Path(directories[0])
    out.mkdir(parents=True, exist_ok=True)
    files = GlueFiles(out / "glue.json", out / "glue.md", out / "glue.csv", rows)
    files.json.write_text(json.dumps(glue_json(rows), indent=2) + "\n")
    files.markdown.write_text(render_markdown(rows))
    write_csv(rows, files.csv)
    return files


# ---------------------------------------------------------------- leaderboard submission


def slug(text: str) -> str:
    """A folder name for a checkpoint row: `runs/a/checkpoints/last.ckpt` ->
    `runs_a_checkpoints_last.ckpt`.
    """
    return re.sub(r"[^\w.-]+", "_", text).strip("_")[-100:] or NO_INIT


def collect_submission(rows: Sequence[CheckpointRow], out_dir: Path) -> list[Path]:
    """Per row with test predictions: `submission/<row>/` with the eleven files, and its zip.

    Each task's files come from its best seed (by dev task score). Rows whose jobs wrote
    no predictions (task.predict_test=false) are left out; missing files are listed in
    `submission/<row>/MISSING.txt` so an incomplete upload is noticed before the server does.
    """
    zips = []
    for row in rows:
        found = {
            f"{stem}.tsv": result.best.directory / f"{stem}.tsv"
            for result in row.tasks.values()
            for stem in result.task.submission
            if (result.best.directory / f"{stem}.tsv").is_file()
        }
        if not found:
            continue
        folder = out_dir / SUBMISSION_DIR / slug(row.label)
        folder.mkdir(parents=True, exist_ok=True)
        for name, source in found.items():
            (folder / name).write_bytes(source.read_bytes())
        missing = [name for name in SUBMISSION_FILES if name not in found]
        if missing:
            (folder / "MISSING.txt").write_text("\n".join(missing) + "\n")
        archive = folder.parent / f"{folder.name}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name in SUBMISSION_FILES:
                if name in found:
                    bundle.write(folder / name, arcname=name)  # the server wants them at the top
        zips.append(archive)
    return zips
