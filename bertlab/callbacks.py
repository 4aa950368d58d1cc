"""Callbacks that keep long runs from losing work (docs/reliability.md).

- `StepCheckpoint`: `checkpoints/last.ckpt` every N optimizer steps and when training ends.
- `GracefulStop`: SIGTERM / SIGINT finish the current step, save `last.ckpt`, exit with a resume hint.
- `NonFiniteGuard`: a NaN/inf loss or gradient stops the run naming the step, or skips the step.
- `ExactResume`: `resume=true` continues with the same RNG states and the same position in the epoch.

All four are in conf/callbacks/default.yaml; `~callbacks.<name>` removes one.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
MID_EPOCH_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"


# ---- checkpoints every N steps ------------------------------------------------------------


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


# ---- graceful stop ------------------------------------------------------------------------


class RunInterrupted(SystemExit):
    """Raised after the stop checkpoint is written; its code is the exit status (128 + signal)."""


class GracefulStop(Callback):
    """SIGTERM or SIGINT: finish the current optimizer step, save `last.ckpt`, exit with how to resume.

    SIGTERM is Lightning's: its handler sets `trainer.received_sigterm` (under DDP, rank 0
    broadcasts it). Left alone, Lightning then exits with status 0 and no checkpoint. SIGINT
    (Ctrl-C) gets the same treatment here instead of a KeyboardInterrupt in the middle of an
    optimizer step; a second Ctrl-C interrupts at once. The decision is reduced across
    ranks, so every DDP process saves (a collective) and stops at the same step.
    """

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)
        self.sigint_received = self.sigterm_received = False
        self._previous_sigint: Any = None
        self._saved = False

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / LAST_CHECKPOINT

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
        _print_resume_hint(signal_name, trainer.global_step, self.checkpoint_path, self.run_dir)


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


# ---- numerical faults ---------------------------------------------------------------------


class NonFiniteError(FloatingPointError):
    """A NaN or infinite loss or gradient, with the step it happened at."""


class NonFiniteGuard(Callback):
    """Checks the loss and the gradients before every optimizer step.

    `action=stop` raises NonFiniteError naming the step; nothing is saved, so `last.ckpt`
    stays the last good state. `action=skip` drops that step's gradients (the optimizer
    leaves every weight and its moments untouched; the LR schedule still advances) and
    reports the count. Costs one device sync per optimizer step. Under fp16 mixed
    precision the GradScaler already skips overflowing steps, so only the loss is checked.
    """

    ACTIONS = ("stop", "skip")

    def __init__(self, action: str = "stop"):
        if action not in self.ACTIONS:
            raise ValueError(
                f"callbacks.nonfinite.action={action!r}: allowed values are {', '.join(self.ACTIONS)}"
            )
        self.action = action
        self.skipped_steps = 0
        self._bad_loss: torch.Tensor | None = None

    def on_before_backward(self, trainer: pl.Trainer, pl_module, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(loss.detach()).all()
        self._bad_loss = bad if self._bad_loss is None else self._bad_loss | bad

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module, optimizer) -> None:
        bad_loss, self._bad_loss = self._bad_loss, None
        what = self._fault(trainer, optimizer, bad_loss)
        if what is None:
            return
        step = trainer.global_step + 1
        where = f"step {step} (epoch {trainer.current_epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx})"
        if self.action == "skip":
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            log.warning("%s at %s: step skipped (%d so far)", what, where, self.skipped_steps)
            pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=True)
            return
        raise NonFiniteError(
            f"{what} at {where}; stopped without saving, so the last checkpoint is the last good "
            "state. Lower optimizer.lr, or set callbacks.nonfinite.action=skip to skip such steps"
        )

    def _fault(self, trainer: pl.Trainer, optimizer, bad_loss: torch.Tensor | None) -> str | None:
        if bad_loss is not None and bool(bad_loss):
            return "non-finite loss"
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return None  # fp16: the GradScaler skips steps with inf/NaN gradients itself
        gradients = [p.grad for group in optimizer.param_groups for p in group["params"]]
        gradients = [g for g in gradients if g is not None]
        if gradients and not torch.isfinite(torch.nn.utils.get_total_norm(gradients)):
            return "non-finite gradient"
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = state_dict.get("skipped_steps", 0)


# ---- exact resume -------------------------------------------------------------------------


class ExactResume(Callback):
    """`resume=true` continues as if never stopped: same RNG states, same place in the epoch.

    Lightning restores weights, optimizer, LR schedule, precision scaler and loop counters.
    Two things it leaves out:

    - RNG states (dropout): saved with every checkpoint, restored when training restarts.
      Every rank gets rank 0's states; with one seed for all ranks, they were equal anyway.
    - The data position. Lightning restores it only for a DataLoader with `state_dict()`,
      and not at all when `configure_optimizers` reads `trainer.estimated_stepping_batches`
      (as bertlab's does: Lightning issue 20550). So the position is taken from the
      checkpoint's loop counters, and the train sampler is told, via `resume_at(epoch,
      start)`, before its first iterator is made. Samplers without `resume_at` restart the
      epoch (Lightning's behaviour, with its warning).

    Two Lightning details would still break exactness, and are worked around here: after a
    resume from an end-of-epoch checkpoint it gives the sampler an epoch one ahead, and a
    new DataLoader iterator draws its seed from the global RNG that dropout uses.

    The W&B run continues by its id (bertlab/pipeline.py); metrics.csv is appended to
    (bertlab/loggers.py).
    """

    def __init__(self) -> None:
        self._rng_states: dict | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_states = state_dict.get("rng")

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        position = training_position(checkpoint)
        fitting = trainer.state.fn == TrainerFn.FITTING  # not trainer.validate(ckpt_path=...)
        if position is not None and fitting and trainer.datamodule is not None:
            resume_train_sampler(trainer.datamodule, *position)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        give_loaders_own_generators(trainer)
        if self._rng_states is not None:
            restore_rng_states(self._rng_states)
            self._rng_states = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning sets the sampler epoch from its "processed" counter, which after a resume
        # from an end-of-epoch checkpoint runs one ahead of trainer.current_epoch.
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(trainer.current_epoch)


def training_position(checkpoint: dict) -> tuple[int, int] | None:
    """(epoch, batches of it already trained) from a Lightning checkpoint's loop counters."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop")
    if not fit_loop:
        return None
    return checkpoint["epoch"], fit_loop["epoch_loop.batch_progress"]["current"]["processed"]


def resume_train_sampler(datamodule: pl.LightningDataModule, epoch: int, batches: int) -> None:
    """Have the next `train_dataloader()` start `epoch` after `batches` batches."""
    make_loader = datamodule.train_dataloader

    def train_dataloader():
        del datamodule.train_dataloader  # once: later reloads start epochs from their beginning
        loader = make_loader()
        sampler = getattr(loader, "sampler", None)
        if not hasattr(sampler, "resume_at"):
            log.warning("%s cannot skip to the resumed position", type(sampler).__name__)
            return loader
        if batches >= len(loader):  # saved as the epoch ended: the next one starts afresh
            sampler.resume_at(epoch + 1, 0)
        else:  # a sampler of indices counts items; one of whole batches (batch_size=None) batches
            sampler.resume_at(epoch, batches * (loader.batch_size or 1))
        # Lightning cannot see that this loader resumes mid-epoch and would warn otherwise.
        warnings.filterwarnings("ignore", message=MID_EPOCH_WARNING, category=PossibleUserWarning)
        return loader

    datamodule.train_dataloader = train_dataloader


def give_loaders_own_generators(trainer: pl.Trainer) -> None:
    """Each new DataLoader iterator draws a seed, from the global RNG unless the loader has a
    generator. Whether Lightning makes a new train iterator right after a resume depends on
    where in the epoch the checkpoint was taken, so those draws would shift dropout's RNG."""
    val_loaders = trainer.val_dataloaders
    if not isinstance(val_loaders, (list, tuple)):
        val_loaders = [val_loaders]
    for loader in [trainer.train_dataloader, *val_loaders]:
        if isinstance(loader, DataLoader) and loader.generator is None:
            loader.generator = torch.Generator().manual_seed(torch.initial_seed())


def capture_rng_states() -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors and plain values (weights_only loads it)."""
    numpy_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_as_tuples(states["python"]))
    cuda_states = states.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def _as_tuples(value):
    """random.setstate wants the nested tuples that a checkpoint round trip may turn into lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
