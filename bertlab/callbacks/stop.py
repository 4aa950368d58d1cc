"""`GracefulStop`: SIGTERM / SIGINT finish the current step, save `last.ckpt`, exit with a resume
hint.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from bertlab.runtime.rundir import RunDir


class RunInterrupted(SystemExit):
    """Raised after the stop checkpoint is written; its code is the exit status (128 + signal)."""


class GracefulStop(Callback):
    """SIGTERM or SIGINT: finish the current optimizer step, save `last.ckpt`, exit with how to
    resume.

    SIGTERM is Lightning's: its handler sets `trainer.received_sigterm` (under DDP, rank 0
    broadcasts it). Left alone, Lightning then exits with status 0 and no checkpoint. SIGINT
    (Ctrl-C) gets the same treatment here instead of a KeyboardInterrupt in the middle of an
    optimizer step; a second Ctrl-C interrupts at once. The decision is reduced across
    ranks, so every DDP process saves (a collective) and stops at the same step.
    """

    def __init__(self, run_dir: str):
        self.run_dir = RunDir(Path(run_dir))
        self.sigint_received = self.sigterm_received = False
        self._previous_sigint: Any = None
        self._saved = False

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir.last_checkpoint

    # Ctrl-C --------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sigint_received = self.sigterm_received = self._saved = False
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.sigint_received:  # the second Ctrl-C: the user does not want to wait
            raise KeyboardInterrupt
        self.sigint_received = True
        print(
            "\nCtrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
            file=sys.stderr,
        )

    def _restore_sigint(self) -> None:
        if (
            self._previous_sigint is not None
            and threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint()

    # the stop itself -----------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        stepped = _optimizer_stepped(trainer, batch_idx)
        if trainer.received_sigterm:
            self.sigterm_received = True
            if not stepped:  # Lightning would stop after this very batch, mid-accumulation
                _defer_lightning_sigterm(trainer)
        if not stepped:
            return  # the summed gradients of an unfinished accumulation are in no checkpoint
        local = self.sigterm_received or self.sigint_received
        if not trainer.strategy.reduce_boolean_decision(local, all=False):
            return
        signal_name = "SIGTERM" if self.sigterm_received else "SIGINT"
        self._save(trainer, signal_name)
        self._restore_sigint()
        raise RunInterrupted(128 + getattr(signal, signal_name).value)

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        """Lightning's own SIGTERM exit (e.g. during validation): still save, and exit non-zero."""
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            return
        exception.code = 128 + signal.SIGTERM.value
        # A lone process may save here; under DDP the ranks may not all be here (no collective).
        if not self._saved and trainer.world_size == 1 and trainer.global_step > 0:
            self._save(trainer, "SIGTERM")

    def _save(self, trainer: pl.Trainer, signal_name: str) -> None:
        trainer.save_checkpoint(self.checkpoint_path)
        self._saved = True
        _print_resume_hint(
            signal_name, trainer.global_step, self.checkpoint_path, self.run_dir.root
        )


def _defer_lightning_sigterm(trainer: pl.Trainer) -> None:
    """Lightning checks its SIGTERM flag after every batch; this callback stops at the end of
    the optimizer step instead (Lightning has no public way to defer, hence the private flag)."""
    trainer._signal_connector.received_sigterm = False


def _optimizer_stepped(trainer: pl.Trainer, batch_idx: int) -> bool:
    return (batch_idx + 1) % trainer.accumulate_grad_batches == 0 or trainer.is_last_batch


@rank_zero_only
def _print_resume_hint(signal_name: str, step: int, checkpoint: Path, run_dir: Path) -> None:
    print(
        f"{signal_name}: stopped after step {step}; saved {checkpoint}\n"
        f"resume with the same command plus: resume=true hydra.run.dir={run_dir}",
        file=sys.stderr,
        flush=True,
    )
