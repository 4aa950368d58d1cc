"""Test-only pieces that runs build through Hydra overrides, e.g.
`+callbacks.crash._target_=support.callbacks.CrashAtStep`: importable in-process (pytest puts
tests/ on sys.path) and in child processes (PYTHONPATH=tests).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytorch_lightning as pl

from bertlab.tasks.pretrain import PretrainingModule


class CrashAtStep(pl.Callback):
    """Stands in for a crash: raises before the step with this global_step runs."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash before step {self.step + 1}")


class SignalAtStep(pl.Callback):
    """Sends this process a real signal as the step with this global_step begins."""

    def __init__(self, step: int, signal_name: str):
        self.step, self.signal_name = step, signal_name

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal_name))


NAN_AT_STEP = 7


class NanLossAtStep(PretrainingModule):
    """The pretraining module, with a NaN loss at one step (a stand-in for a diverging run)."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step == NAN_AT_STEP else loss


class StepRecorder(pl.Callback):
    """Writes this rank's (global step, loss, learning rate) per training batch to JSON."""

    def __init__(self, path: str):
        self.path = path
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.rows.append(
            {
                "global_step": trainer.global_step,
                "loss": float(outputs["loss"]),
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
            }
        )

    def on_train_end(self, trainer, module) -> None:
        Path(f"{self.path}.rank{trainer.global_rank}.json").write_text(json.dumps(self.rows))
