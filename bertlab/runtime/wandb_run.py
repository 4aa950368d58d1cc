"""A W&B run that needs no attention: named, grouped, offline without credentials, continued on
resume.

- `wandb_settings` fills the `WandbLogger` keys the config leaves null (conf/logger/wandb.yaml).
- `WandbRunId` saves the run's id in every checkpoint, so `resume=true` continues the same
  W&B run instead of starting a second one.
- `finished_after()` closes the run even when the job fails, so the next job of a sweep
  starts its own.
"""

from __future__ import annotations

import netrc
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from bertlab.checkpoints.io import load_checkpoint
from bertlab.runtime.hydra import sweep_dir, swept_overrides
from bertlab.runtime.rundir import RunDir

RUN_ID_KEY = "wandb_run_id"  # in the checkpoint dict


def wandb_settings(
    settings: dict,
    run_dir: RunDir,
    resume: bool,
    overrides: Sequence[str],
    tags: Sequence[str] = (),
) -> dict:
    """`settings` (the `logger.wandb` section) with W&B defaults that make sweeps readable.

    Named by the job's overrides, grouped by the multirun it belongs to, offline (no prompt)
    without credentials unless WANDB_MODE says otherwise, and the same run continued on resume.
    """
    settings = dict(settings)
    if not settings.get("name"):
        settings["name"] = " ".join(swept_overrides(overrides)) or run_dir.root.name
    if not settings.get("group"):
        settings["group"] = sweep_dir()
    if not settings.get("tags") and tags:
        settings["tags"] = list(tags)
    settings["mode"] = wandb_mode(settings)
    run_id = _run_id_to_resume(run_dir) if resume else None
    if run_id:
        settings.update(id=run_id, resume="allow")
    return settings


def wandb_mode(settings: dict) -> str:
    """`logger.wandb.mode`, else WANDB_MODE, else online with credentials and offline without."""
    return (
        settings.get("mode")
        or os.environ.get("WANDB_MODE")
        or ("online" if _has_credentials() else "offline")
    )


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _run_id_to_resume(run_dir: RunDir) -> str | None:
    if not run_dir.last_checkpoint.exists():
        return None
    return load_checkpoint(run_dir.last_checkpoint).get(RUN_ID_KEY)


class WandbRunId(pl.Callback):
    """Stores the W&B run's id in every checkpoint (`checkpoint["wandb_run_id"]`)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint[RUN_ID_KEY] = logger.version


@contextmanager
def finished_after() -> Iterator[None]:
    """Close the W&B run when the block ends, failed or not (a no-op when W&B was never used)."""
    try:
        yield
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()


def is_wandb_logger(settings: dict) -> bool:
    return str(settings.get("_target_", "")).endswith("WandbLogger")
