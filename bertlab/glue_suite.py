"""The Hydra callback of `experiment=glue_suite`: checks before the first job, the GLUE score after
the last.

`bertlab-train -m experiment=glue_suite model.init=CKPT glue_dir=DIR` sweeps `glue_task`
over the nine tasks (conf/experiment/glue_suite.yaml). Hydra calls this callback once
around the whole sweep, whatever the launcher:

- `on_multirun_start`: every swept task's folder must exist under `glue_dir`, so a typo
  fails in a second instead of after hours of the tasks before it;
- `on_multirun_end` (also after a failed job): glue.json, glue.md, glue.csv and report.html
  in the sweep dir, the leaderboard submission when the jobs wrote test predictions, and
  the table as one W&B Table when the jobs logged to W&B.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bertlab.dashboard import write_html_report
from bertlab.errors import ConfigError, UserError
from bertlab.glue import (
    DIAGNOSTIC_DIR,
    GLUE_TASKS,
    CheckpointRow,
    collect_submission,
    markdown_header,
    markdown_rows,
    write_glue_files,
)
from bertlab.report import load_sweep
from bertlab.runtime.hydra import override_key, parse_override
from bertlab.runtime.wandb_run import is_wandb_logger, wandb_mode

log = logging.getLogger(__name__)

SWEPT_KEY = "glue_task"  # conf/glue_task/<name>.yaml picks task=glue/<name> and its settings
EXIT_USER_ERROR = 2


def swept_tasks(config: DictConfig) -> list[str]:
    """The glue_task values of this sweep: the command line's, else the experiment's nine."""
    value = OmegaConf.select(config, f"hydra.sweeper.params.{SWEPT_KEY}", default="")
    for override in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []:
        if override_key(override) == SWEPT_KEY:
            value = override.split("=", 1)[1]
    if not value:
        return []
    parsed = parse_override(f"{SWEPT_KEY}={value}")
    if parsed.is_sweep_override():
        return [str(v) for v in parsed.sweep_string_iterator()]
    return [str(parsed.value())]


def check_task_dirs(glue_dir: str | None, tasks: list[str], predict_test: bool) -> None:
    """ConfigError naming glue_dir and the first missing task folder."""
    layout = ", ".join(f"{task.directory}/" for task in GLUE_TASKS.values())
    if not glue_dir:
        raise ConfigError(
            f"glue_dir is not set: glue_dir=DIR, the folder of the GLUE download ({layout})"
        )
    root = Path(glue_dir).expanduser()
    for name in tasks:
        task = GLUE_TASKS.get(f"glue/{name}")
        if task is None:
            continue  # an unknown glue_task fails in Hydra, naming the options
        if not (root / task.directory).is_dir():
            raise ConfigError(
                f"glue_dir={glue_dir}: no {task.directory}/ folder for glue_task={name} "
                f"(expected {root / task.directory}; the GLUE download holds {layout})"
            )
    diagnostic = root / DIAGNOSTIC_DIR / "diagnostic.tsv"
    if predict_test and "mnli" in tasks and not diagnostic.is_file():
        raise ConfigError(
            f"glue_dir={glue_dir}: no {DIAGNOSTIC_DIR}/diagnostic.tsv, which "
            "task.predict_test=true "
            f"needs for AX.tsv (expected {diagnostic})"
        )


class GlueSuiteCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            check_task_dirs(
                OmegaConf.select(config, "glue_dir", default=None),
                swept_tasks(config),
                bool(OmegaConf.select(config, "task.predict_test", default=False)),
            )
        except UserError as error:  # one line and exit 2, as bertlab-train prints user errors
            if os.environ.get("BERTLAB_DEBUG"):
                raise
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        files = write_glue_files([sweep_dir])
        if files is None:
            log.warning("no finished GLUE job under %s: no glue.json written", sweep_dir)
            return
        log.info("GLUE score: %s (and glue.md, glue.csv)", files.json)
        for archive in collect_submission(files.rows, sweep_dir):
            log.info("GLUE submission: %s", archive)
        sweep = load_sweep(sweep_dir)
        html, warning = write_html_report(sweep, files.rows, sweep_dir)
        log.info("report: %s%s", html, f" ({warning})" if warning else "")
        wandb_settings = _wandb_logger_settings(config)
        if wandb_settings is not None:
            log_wandb_table(files.rows, wandb_settings, group=str(sweep_dir))


def _wandb_logger_settings(config: DictConfig) -> dict | None:
    loggers = OmegaConf.select(config, "logger", default=None) or {}
    for section in loggers.values():
        if section is not None and is_wandb_logger(section):
            return OmegaConf.to_container(section, resolve=False)
    return None


def log_wandb_table(rows: list[CheckpointRow], settings: dict, group: str) -> None:
    """The GLUE table as one W&B Table in the sweep's group, so the project page shows the
    leaderboard.
    """
    import wandb

    mode = wandb_mode(settings)
    run = wandb.init(
        project=settings.get("project"),
        entity=settings.get("entity"),
        group=group,
        job_type="glue",
        name="GLUE",
        tags=["glue"],
        mode=mode,
        dir=group,
    )
    try:
        run.log({"glue": wandb.Table(columns=markdown_header(), data=markdown_rows(rows))})
        for row in rows:
            glue, without_wnli = row.scores
            run.summary[f"glue_score/{row.label}"] = glue
            run.summary[f"glue_score_without_wnli/{row.label}"] = without_wnli
    finally:
        run.finish()
