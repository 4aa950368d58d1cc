"""The run's loggers, from the `logger` config group; a CSV logger that continues on resume.

Every logger is given the whole resolved config as its run config; the W&B logger gets
the defaults of bertlab/runtime/wandb_run.py.

`AppendingCSVLogger`: Lightning's `CSVLogger` deletes an existing `metrics.csv` when it
opens its directory, so `resume=true` would lose every row logged before the interruption. With
`append=True`
(the config sets it to `${resume}`) the file is kept and new rows go below the old ones;
a column that appears only after the resume rewrites the header, as Lightning does.
Rows logged between the last checkpoint and the interruption stay in the file, so a
step can appear twice; the later row is the one the resumed run computed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from bertlab.runtime.rundir import RunDir
from bertlab.runtime.wandb_run import is_wandb_logger, wandb_settings


def build_loggers(cfg: DictConfig, run_dir: RunDir, overrides: Sequence[str]) -> list[Logger]:
    """Instantiate `cfg.logger`; each logger is given the whole resolved config as its run
    config.
    """
    loggers = []
    for section in (cfg.get("logger") or {}).values():
        settings = OmegaConf.to_container(section, resolve=True)
        if is_wandb_logger(settings):
            # A GLUE suite's jobs are told apart on the dashboard by task and checkpoint.
            tags = [cfg.task.name, f"init={cfg.model.init}"[-64:]]  # W&B: 64 characters a tag
            settings = wandb_settings(settings, run_dir, cfg.resume, overrides, tags)
        loggers.append(instantiate(settings))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(resolved)
    return loggers


class AppendingCSVLogger(CSVLogger):
    def __init__(self, *args, append: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            writer_class = _AppendingWriter if self.append else ExperimentWriter
            self._experiment = writer_class(log_dir=self.log_dir)
        return self._experiment


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep the previous rows and learn their columns (instead of deleting the file)."""
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self.metrics_keys = list(csv.DictReader(handle).fieldnames or [])
