"""`StepCheckpoint`: `checkpoints/last.ckpt` every N optimizer steps and when training ends."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    """`last.ckpt` every `every_n_train_steps` optimizer steps, and once more when training ends.

    A second ModelCheckpoint beside the best-model one (`callbacks.checkpoint`): setting
    `every_n_train_steps` on that one would make Lightning rank checkpoints at step
    boundaries with stale validation metrics and stop its epoch-end saves. Lightning's
    own `on_train_end` saves `last` only when none was ever saved, so a run stopped by
    `max_steps` between two saves would lose its final steps; this one saves them.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int | None = 500, **kwargs: Any):
        kwargs = {"save_top_k": 0, "save_last": True, "enable_version_counter": False, **kwargs}
        super().__init__(
            dirpath=dirpath, monitor=None, every_n_train_steps=every_n_train_steps, **kwargs
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step > 0 and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
